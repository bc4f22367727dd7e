"""The monitor's decisions: who is up, who is down, when to remind. Pure.

Every method takes the current time as a ``Now``; nothing here reads a clock,
touches a socket or a file. Liveness is judged by the monitor's own receive
time on the monotonic clock, never by the device's clock, so a Pi in the wrong
time zone or with a drifting clock cannot cause a false alarm.

Deadlines live in one heap with at most one live entry per device. A
heartbeat only moves the device's deadline in its record; when the old heap
entry comes due it is pushed again at the new deadline. So a heartbeat costs
O(1), a due deadline O(log n), and detection time does not grow with the
number of devices (no periodic scan of all of them).
"""

import heapq
from dataclasses import dataclass

from appliance.monitor.events import Event, Kind, State
from appliance.timefmt import format_duration

# A difference this large between the wall clock's and the monotonic clock's progress since a device was last
# heard is a step of the wall clock (NTP setting it), not the slow slew NTP makes (at most 0.5 ms a second).
WALL_STEP_S = 1.0


@dataclass(frozen=True)
class Restored:
    """What the store remembers of a device across a monitor restart (wall-clock times)."""

    state: State
    last_heard_at: float | None = None
    outage_started_at: float | None = None
    last_alert_at: float | None = None


class _Record:
    __slots__ = ("config", "state", "heard_mono", "heard_wall", "outage_started_at", "last_alert_at",
                 "deadline", "gen")

    def __init__(self, config):
        self.config = config
        self.state = State.NEW
        self.heard_mono = None
        self.heard_wall = None
        self.outage_started_at = None
        self.last_alert_at = None
        self.deadline = None  # monotonic; None while NEW (a new device is never alerted)
        self.gen = 0


@dataclass(frozen=True, slots=True)
class DeviceView:
    """A read-only look at one device, for the API, metrics and logs."""

    name: str
    state: State
    last_heard_at: float | None
    outage_started_at: float | None
    max_silence_s: float
    reminder_every_s: float


class Machine:
    """The state of every monitored device.

    ``started`` is when the monitor started: no device is declared down until
    the monitor has run for that device's ``max_silence_s`` (startup grace),
    because a monitor that was itself down must not declare everyone down.
    """

    def __init__(self, devices, *, started, restored=None):
        self._started = started
        self._records = {}
        self._heap = []
        self.reconfigure(devices, started, restored=restored or {})

    # -- configuration -------------------------------------------------

    def reconfigure(self, devices, now, *, restored=None):
        """Apply a new device list without losing the state of devices that stay.

        ``devices`` is an iterable of MonitoredDevice. New devices start in
        ``restored`` state when given, else NEW. Returns nothing: a change of
        config is not a change of any device's state.
        """
        restored = restored or {}
        wanted = {d.name: d for d in devices}
        for name in list(self._records):
            if name not in wanted:
                del self._records[name]  # its heap entry dies of a missing record
        for name, config in wanted.items():
            record = self._records.get(name)
            if record is None:
                record = self._records[name] = _Record(config)
                if name in restored:
                    self._restore(record, restored[name], now)
            elif record.config != config:
                record.config = config
                self._reschedule(record, now)

    def _restore(self, record, saved, now):
        record.state = saved.state
        record.heard_wall = saved.last_heard_at
        record.outage_started_at = saved.outage_started_at
        record.last_alert_at = saved.last_alert_at
        self._reschedule(record, now)

    def _grace_end(self, record):
        return self._started.mono + record.config.max_silence_s

    def _reschedule(self, record, now):
        """Recompute the deadline from the record (after a restore or a config change)."""
        if record.state is State.UP:
            limit = record.config.max_silence_s
            if record.heard_mono is not None:
                deadline = record.heard_mono + limit
            elif record.heard_wall is not None:
                # Known only on the wall clock (restored from the store, e.g. a device
                # removed and added again by a reload): count the silence from it.
                deadline = now.mono + min(limit, max(0.0, record.heard_wall + limit - now.wall))
            else:
                deadline = now.mono
            self._set_deadline(record, max(deadline, self._grace_end(record)))
        elif record.state is State.DOWN:
            every = record.config.reminder_every_s
            if not every:
                record.deadline = None
                record.gen += 1
                return
            last = record.last_alert_at if record.last_alert_at is not None else now.wall
            # The last reminder is known only on the wall clock (it survived a restart).
            due = now.mono + max(0.0, min(every, last + every - now.wall))
            self._set_deadline(record, max(due, self._grace_end(record)))

    def _set_deadline(self, record, when):
        record.deadline = when
        record.gen += 1
        heapq.heappush(self._heap, (when, record.gen, record.config.name))

    # -- inputs --------------------------------------------------------

    def heartbeat(self, name, now, *, heard_at=None):
        """A heartbeat from ``name`` arrived; return the events it causes.

        ``heard_at`` is the wall-clock time the heartbeat was made, when it is
        known to be earlier than ``now`` (a line read from an access log);
        by default it is ``now``. Raises KeyError for an unknown device.
        """
        record = self._records[name]
        self._follow_wall_step(record, now)
        heard_wall = now.wall if heard_at is None else min(heard_at, now.wall)
        heard_mono = now.mono - (now.wall - heard_wall)
        # Only a log line can be older than what we know (a log read out of order); a
        # heartbeat received now is news even when the wall clock stepped back meanwhile.
        if heard_at is not None and record.heard_wall is not None and heard_wall < record.heard_wall:
            return []
        limit = record.config.max_silence_s
        if heard_mono + limit <= now.mono:
            record.heard_wall = heard_wall  # too old to mean the device is up now
            return []
        record.heard_mono, record.heard_wall = heard_mono, heard_wall
        old = record.state
        # Grace applies to log lines too: replayed old lines must not bring a DOWN before the grace ends.
        deadline = max(heard_mono + limit, self._grace_end(record))
        if old is State.UP:
            record.deadline = deadline  # the heap entry is pushed on when it comes due
            return []
        if old is State.NEW:
            self._set_deadline(record, deadline)
            record.state = State.UP
            return [Event(name, Kind.FIRST_SEEN, old, State.UP, now.wall, "first heartbeat received",
                          last_heard_at=heard_wall)]
        started = record.outage_started_at if record.outage_started_at is not None else heard_wall
        outage_s = max(0.0, heard_wall - started)
        record.state = State.UP
        record.outage_started_at = None
        record.last_alert_at = now.wall
        self._set_deadline(record, deadline)
        return [Event(name, Kind.UP, old, State.UP, now.wall,
                      f"heartbeat received again after {format_duration(outage_s)} of silence",
                      last_heard_at=heard_wall, outage_started_at=started, outage_s=outage_s)]

    def due(self, now):
        """Fire every deadline that has passed; return the events, oldest deadline first."""
        events = []
        heap = self._heap
        while heap and heap[0][0] <= now.mono:
            when, gen, name = heapq.heappop(heap)
            record = self._records.get(name)
            if record is None or record.gen != gen or record.deadline is None:
                continue  # superseded entry
            if record.deadline > now.mono:
                heapq.heappush(heap, (record.deadline, gen, name))  # moved on by heartbeats
                continue
            events.append(self._fire(record, now))
        return events

    def _follow_wall_step(self, record, now):
        """Move the record's wall times by any step of the wall clock since the device was last heard.

        Lengths of silence then come out as the monotonic clock measured them,
        and times are on the clock the monitor shows now: a step of a day
        during an outage makes it neither a day longer nor negative. Without a
        monotonic reading (restored from the store) there is nothing to compare.
        """
        if record.heard_mono is None or record.heard_wall is None:
            return
        step = (now.wall - now.mono) - (record.heard_wall - record.heard_mono)
        if abs(step) < WALL_STEP_S:
            return
        record.heard_wall += step
        if record.outage_started_at is not None:
            record.outage_started_at += step
        if record.last_alert_at is not None:
            record.last_alert_at += step

    def _fire(self, record, now):
        name = record.config.name
        self._follow_wall_step(record, now)
        heard = record.heard_wall
        if record.state is State.UP:
            record.state = State.DOWN
            record.outage_started_at = heard if heard is not None else now.wall
            record.last_alert_at = now.wall
            self._reschedule(record, now)
            silent = now.wall - record.outage_started_at
            return Event(name, Kind.DOWN, State.UP, State.DOWN, now.wall,
                         f"no heartbeat for {format_duration(silent)}",
                         last_heard_at=heard, outage_started_at=record.outage_started_at, outage_s=silent)
        record.last_alert_at = now.wall
        self._reschedule(record, now)
        outage_s = now.wall - record.outage_started_at
        return Event(name, Kind.REMINDER, State.DOWN, State.DOWN, now.wall,
                     f"still no heartbeat after {format_duration(outage_s)}",
                     last_heard_at=heard, outage_started_at=record.outage_started_at, outage_s=outage_s)

    # -- outputs -------------------------------------------------------

    def next_due(self):
        """The monotonic time of the earliest heap entry, or None when nothing is scheduled."""
        return self._heap[0][0] if self._heap else None

    def view(self, name):
        """A DeviceView of one device; raises KeyError for an unknown one."""
        r = self._records[name]
        return DeviceView(name, r.state, r.heard_wall, r.outage_started_at, r.config.max_silence_s,
                          r.config.reminder_every_s)

    def views(self):
        """DeviceViews of all devices, in name order."""
        return [self.view(n) for n in sorted(self._records)]

    def rows(self):
        """(name, State, last heard wall-clock time or None) of every device, in name order: lighter than views."""
        records = self._records
        return [(n, records[n].state, records[n].heard_wall) for n in sorted(records)]

    def state_of(self, name):
        """The State of one device (cheaper than ``view``, for every heartbeat); raises KeyError for an unknown one."""
        return self._records[name].state

    def states(self):
        """{name: State} of every device: cheap enough for a page that shows a hundred of ten thousand."""
        return {name: r.state for name, r in self._records.items()}

    def census(self, now, *, quiet_fraction=0.5):
        """(up, quiet): how many devices are UP, and how many of those were last heard ``quiet_fraction`` of
        their max_silence_s ago or longer (they may be the next to go down). O(devices): for the self-check,
        which asks at most once a second while DOWNs come in."""
        up = quiet = 0
        for r in self._records.values():
            if r.state is not State.UP:
                continue
            up += 1
            heard = r.heard_mono
            if heard is None and r.heard_wall is not None:
                heard = now.mono - max(0.0, now.wall - r.heard_wall)
            if heard is None or now.mono - heard >= quiet_fraction * r.config.max_silence_s:
                quiet += 1
        return up, quiet

    def regrace(self, now):
        """Start the startup grace again at ``now``: the monitor was not running meanwhile (its process was
        stopped or starved), so no device goes down before it has run for that device's max_silence_s again."""
        self._started = now
        for r in self._records.values():
            if r.state is State.UP and r.deadline is not None:
                r.deadline = max(r.deadline, self._grace_end(r))  # the heap entry is pushed on when it comes due

    def __contains__(self, name):
        return name in self._records

    def __len__(self):
        return len(self._records)

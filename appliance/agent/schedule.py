"""When a target's next heartbeat is due: a steady cadence, with backed-off retries in between.

Everything here runs on the monotonic clock only, so a wall-clock step of
hours (a Pi without an RTC getting NTP) neither fires nor delays a beat.
Pure: callers pass the time in, tests pass numbers.
"""

from dataclasses import dataclass, replace

from appliance.backoff import backoff_s

def retry_delay_s(consecutive_failures, interval_s, rand):
    """Seconds to wait before retrying after ``consecutive_failures`` (>= 1) failed sends in a row.

    Doubles from ``min(2 s, interval_s)`` and never exceeds ``interval_s``,
    with jitter, so agents behind one router that lost power together do not
    retry in lockstep.
    """
    return backoff_s(consecutive_failures, first_s=min(2.0, interval_s), max_s=interval_s, rand=rand)


@dataclass(frozen=True)
class Schedule:
    """One target's timetable, in monotonic seconds.

    ``slot_mono`` is the next beat on the steady cadence; ``next_mono`` the
    next attempt, which is the slot or, after a failure, an earlier retry.
    """

    interval_s: float
    slot_mono: float
    next_mono: float

    @classmethod
    def starting_at(cls, now_mono, interval_s):
        """A timetable whose first beat is due at once."""
        return cls(interval_s=interval_s, slot_mono=now_mono, next_mono=now_mono)

    def due(self, now_mono):
        """True when an attempt is due at ``now_mono``."""
        return now_mono >= self.next_mono

    def delay_s(self, now_mono):
        """Seconds from ``now_mono`` until the next attempt (0 when it is due)."""
        return max(0.0, self.next_mono - now_mono)

    def after_attempt(self, started_mono, finished_mono, *, consecutive_failures, rand):
        """The timetable after an attempt that ran from ``started_mono`` to ``finished_mono``.

        With no failures the next attempt is the next cadence slot. After a
        failure it is a retry, backed off from when the attempt finished, but
        never later than the next slot.
        """
        slot = self._next_slot(started_mono)
        if consecutive_failures == 0:
            return replace(self, slot_mono=slot, next_mono=slot)
        retry = finished_mono + retry_delay_s(consecutive_failures, self.interval_s, rand)
        return replace(self, slot_mono=slot, next_mono=min(slot, retry))

    def skipped(self, now_mono):
        """The timetable when the attempt due at ``now_mono`` is not made (paused): no catching up later."""
        if not self.due(now_mono):
            return self
        slot = self._next_slot(now_mono)
        return replace(self, slot_mono=slot, next_mono=slot)

    def due_at(self, now_mono):
        """The timetable with an attempt due at ``now_mono`` (after a resume); the cadence is unchanged."""
        return replace(self, next_mono=min(self.next_mono, now_mono))

    def _next_slot(self, now_mono):
        if now_mono < self.slot_mono:
            return self.slot_mono  # a retry between beats leaves the cadence alone
        # previous due + interval, not finished + interval: a slow send does not make the beats drift
        slot = self.slot_mono + self.interval_s
        if slot <= now_mono:
            # Fell behind by more than an interval (suspended, overloaded): the beat
            # being made now stands for the missed ones; skip ahead rather than burst.
            slot = now_mono + self.interval_s
        return slot

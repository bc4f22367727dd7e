"""The monitor service: the state machine, its store, its alerts and its inputs, wired together.

It runs one scheduler thread that sleeps until the next deadline (no periodic
scan of all devices), one thread per alert channel, and, with an access log,
one follower thread. The HTTP side calls ``receive``; it never waits for disk
or for alerts.
"""

import hmac
import logging
import os
import sys
import threading

from appliance.alerts.channels import build_channels
from appliance.auth import session_key
from appliance.clock import SystemClock
from appliance.config.schema import Monitor
from appliance.monitor.accesslog import AccessLogFollower
from appliance.monitor.device_reads import DeviceReads
from appliance.monitor.dispatch import Dispatcher
from appliance.monitor.events import Event, Kind, State
from appliance.monitor.explain import Explainer, log_event
from appliance.monitor.intake import BadHeartbeat, parse_heartbeat
from appliance.monitor.lastbeats import LastBeats, json_text
from appliance.monitor.machine import Machine
from appliance.monitor.pauses import Pauses
from appliance.monitor.runlog import STALL_S
from appliance.monitor.selfwatch import SelfWatch
from appliance.monitor.quiet import Quiet
from appliance.monitor.quiet_controls import QuietControls
from appliance.monitor.store import Store

log = logging.getLogger("phonehome.monitor")

FLUSH_EVERY_S = 1.0
ACCESS_LOG_POLL_S = 0.2
DB_NAME = "monitor.sqlite3"
# Compared against when the device is unknown, so the answer takes as long as for a known one.
_NO_TOKEN = b"\0" * 32


class Answer:
    """What the HTTP layer sends back: a status code and a JSON-able body."""

    __slots__ = ("status", "body")

    def __init__(self, status, body):
        self.status, self.body = status, body


class MonitorService(QuietControls, DeviceReads):
    """Receives heartbeats, fires deadlines, records events and queues alerts."""

    def __init__(self, config, *, clock=None, channels=None, retry_first_s=10.0, on_events=None):
        self._clock = clock or SystemClock()
        # Hook for the agent's peer watchdog: on_events(events) is called with the events just stored, under
        # this service's lock; it must return at once and must not call back into the service.
        self._on_events = on_events
        self.config = config
        settings = config.monitor or Monitor()
        self.store = Store(os.path.join(config.data_dir, DB_NAME))
        now = self._clock.now()
        self._lock = threading.Lock()
        self._tokens = _tokens(settings)
        self.machine = Machine(settings.devices, started=now, restored=self.store.restored())
        self._pauses = Pauses(self.store.pauses(), now=now)
        # Site pauses, acknowledged outages, flapping; the ack links' key comes from the secret in data_dir.
        self._quiet = Quiet(self.store, settings, self._pauses, secret=session_key(config.data_dir), now=now)
        self._beats = LastBeats(self.store.last_beat_texts())  # compact: see lastbeats
        self._explain = Explainer(self.machine, self._beats, settings.devices, window_s=settings.site_window_s,
                                  notify_reboots=settings.notify_reboots)
        # The run log (the gap before this start is said once), the canaries, mass silences, the alerts they hold.
        self.selfwatch = SelfWatch(self.store, self.machine, settings, now, clock=self._clock, lock=self._lock,
                                   wake=lambda: self._wake.set())
        # DOWNs held for a site window when the monitor stopped: their windows go on (or end at the first tick).
        self._unsettled = self._explain.restore(held=self.selfwatch.skip_held(self.store.held_downs()),
                                                site_outages=self.store.site_outages(),
                                                open_causes=self.store.open_causes(), now=now)
        self._verdicts = {name: sys.intern(v) for name, v in
                          ((name, (b.get("time") or {}).get("verdict")) for name, b in self._beats.items())
                          if v not in (None, "unknown")}
        self._dirty = {}
        self._outages = self.store.outage_counts()
        self.received_total = 0
        self._sleep_until = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads = []
        self._next_flush = None
        self._unrecorded = []
        self._beats_failing = False
        if channels is None:
            channels = build_channels(config.alerts)
        self.dispatcher = Dispatcher(self.store, channels, clock=self._clock,
                                     give_up_after_s=config.alerts.give_up_after_s, retry_first_s=retry_first_s,
                                     ack_link=self._quiet.ack_link)
        self._follower = None
        if settings.access_log:
            self._follower = AccessLogFollower(settings.access_log, _magics(settings), self._heard_in_log)
        if not settings.devices:
            log.warning("monitor has no devices: add [[monitor.devices]] to the config and reload")

    # -- inputs --------------------------------------------------------

    def receive(self, body, content_type, authorization):
        """Handle one heartbeat request; return an Answer (200, 400 or 401).

        A bad or unauthorised heartbeat changes no state.
        """
        now = self._clock.now()
        try:
            beat = parse_heartbeat(body, content_type, received_at=now.wall)
        except BadHeartbeat as exc:
            return Answer(400, {"ok": False, "error": str(exc), "field": exc.field})
        scheme, _, token = (authorization or "").partition(" ")
        expected = self._tokens.get(beat["device"])
        valid = hmac.compare_digest(token.strip().encode(), expected.encode() if expected else _NO_TOKEN)
        if scheme.lower() != "bearer" or expected is None or not expected or not valid:
            return Answer(401, {"ok": False, "error": "unknown device or wrong token: check that the device's "
                                                      "name and token match [[monitor.devices]]"})
        with self._lock:
            if beat["device"] not in self.machine:  # removed by a reload since the token was read
                return Answer(401, {"ok": False, "error": "unknown device: it is no longer in [[monitor.devices]]"})
            self.received_total += 1
            self.selfwatch.check.beat(now)  # the way in works: a proof of the monitor's own connectivity
            beat["received_at"] = now.wall
            # A second estimate of the device's clock offset, independent of its own NTP check: its send
            # time against our receive time (it includes the one-way network delay, a few ms).
            beat["clock_offset_ms"] = (beat["sent_at"] - now.wall) * 1000 if beat.pop("sent_at_known") else None
            previous, old = self._beats.get(beat["device"]), self.machine.state_of(beat["device"])
            events = self.machine.heartbeat(beat["device"], now)
            # The cause of an outage it ends, or a reboot while up, read from this beat and the one before.
            events = self._explain.on_beat(previous, beat, old, events, now)
            events += self._clock_change(beat, now)
            self._beats[beat["device"]] = beat
            self._dirty[beat["device"]] = (now.wall, self._beats.raw(beat["device"]))
            state = self.machine.view(beat["device"]).state.value
            if events:
                self._record(events, now)
            self._nudge()
        return Answer(200, {"ok": True, "received_at": now.wall, "state": state})

    def _clock_change(self, beat, now):
        """An event when the device's clock verdict differs from the last one it reported.

        "unknown" (an agent that has not finished its first check, e.g. just
        restarted) and beats without a report say nothing about the clock, so
        they neither make an event nor reset the comparison.
        """
        new = beat.get("time")
        if not new or new["verdict"] == "unknown":
            return []
        device = beat["device"]
        old = self._verdicts.get(device)
        self._verdicts[device] = sys.intern(new["verdict"])  # one "ok" for all devices, not one each
        if old is None or old == new["verdict"]:
            return []
        state = self.machine.view(device).state
        reason = f"clock check {old} -> {new['verdict']}"
        if new.get("reason"):
            reason += f": {new['reason']}"
        return [Event(device, Kind.CLOCK, state, state, now.wall, reason)]

    def _heard_in_log(self, name, line_epoch):
        now = self._clock.now()
        with self._lock:
            if name not in self.machine:
                return
            self.received_total += 1
            self.selfwatch.check.beat(now)
            events = self.machine.heartbeat(name, now, heard_at=line_epoch)
            view = self.machine.view(name)
            if view.state is not State.NEW:  # kept across a restart, like an HTTP heartbeat's time
                self._dirty[name] = (view.last_heard_at, self._beats.raw(name) or {})
            if events:
                self._record(events, now)
            self._nudge()

    def _nudge(self):
        """Wake the scheduler when a deadline now comes before the time it sleeps until."""
        for due in (self.machine.next_due(), self._explain.next_due(), self._quiet.next_due(),
                    self.selfwatch.check.next_due()):
            if due is not None and (self._sleep_until is None or due < self._sleep_until):
                self._wake.set()
        if self._dirty and self._next_flush is None:
            self._wake.set()

    # -- the scheduler -------------------------------------------------

    def tick(self, now):
        """Fire due deadlines and flush heartbeats; return seconds until there is work again."""
        batch = None
        with self._lock:
            if self._unrecorded or self._unsettled:
                self._record([], now)  # events a failed write left behind go first, in order
            events = self.machine.due(now)
            site_events, settle = self._explain.due(now, self._muted_at(now))  # site windows that ended
            if events or site_events or settle:
                self._record(events, now, planned=site_events, settle=settle)
            steady = self._quiet.due(now, self.machine)  # after the changes above: flapping devices steady again
            if steady:
                self._record([], now, planned=steady)
            over, released = self.selfwatch.due(now)  # held DOWNs whose time came; the end of a mass silence
            if over or released:
                self._record([], now, planned=over, settle=released)
            alive = self.selfwatch.alive_due(now)
            # Written behind, at most once a second: the first tick that sees new
            # heartbeats only schedules the write, so a burst becomes one transaction.
            if self._dirty and self._next_flush is None:
                self._next_flush = now.mono + FLUSH_EVERY_S
            elif self._dirty and now.mono >= self._next_flush:
                batch, self._dirty = self._dirty, {}
                self._next_flush = None
            waits = [60.0]
            for due in (self.machine.next_due(), self._explain.next_due(), self._quiet.next_due(),
                        self.selfwatch.check.next_due()):
                if due is not None:
                    waits.append(due - now.mono)
            if self._next_flush is not None:
                waits.append(self._next_flush - now.mono)
            if self._unrecorded or self._unsettled:
                waits.append(1.0)
            delay = max(0.0, min(waits))
            self._sleep_until = now.mono + delay
        if batch:
            self._write_beats(batch)  # outside the lock: heartbeats keep flowing while SQLite writes
        if alive:
            self.selfwatch.alive(now)  # the run log, at most once a minute
        return delay

    def flush(self):
        """Write the heartbeats received since the last flush now."""
        with self._lock:
            batch, self._dirty = self._dirty, {}
            self._next_flush = None
        self._write_beats(batch)

    def _write_beats(self, batch):
        try:
            self.store.save_heartbeats((name, heard, json_text(beat)) for name, (heard, beat) in batch.items())
        except Exception as exc:
            with self._lock:  # keep them for the next try; newer heartbeats win
                for name, value in batch.items():
                    self._dirty.setdefault(name, value)
            if not self._beats_failing:
                log.error("cannot write heartbeat times to %s (%s); keeping them in memory and retrying",
                          self.store.path, exc)
            with self._lock:
                self.selfwatch.store_failed(self.store.path, exc)
            self._beats_failing = True
            return
        if self._beats_failing:
            log.info("heartbeat times written to %s again", self.store.path)
            with self._lock:
                self.selfwatch.store_failed(self.store.path, None)
        self._beats_failing = False

    def _muted_at(self, now):
        return lambda name: self._quiet.pause_of(name, now) is not None

    def _record(self, events, now, *, planned=(), settle=()):
        """Store events (after any a failed write left behind) and queue their alerts, unless paused at ``now``.

        ``events`` (from the machine or a heartbeat) get their causes and sites
        first (see explain.Explainer.plan); ``planned`` are site alerts made
        already, ``settle`` what becomes of DOWNs held for a site window. The
        machine has already changed state, so an event whose write failed is
        kept and written on the next tick: a transition is never lost to a
        passing disk error.
        """
        events = self._quiet.screen(events, now)  # flapping devices and acknowledged outages: stored, not sent
        fresh, more = self._explain.plan(events, now, self._muted_at(now)) if events else ([], [])
        # While the monitor doubts its own connectivity, DOWN alerts are held (see selfcheck).
        fresh, more = self.selfwatch.plan(list(planned) + fresh, list(settle) + more, now, self._muted_at(now))
        pending = self._unrecorded + fresh
        settles = self._unsettled + more
        muted = self._quiet.muted({e.device for e in pending if e.alerts}, now)
        # Alerts an earlier failed write left to the dispatcher's memory: their rows say which went out.
        told = self.dispatcher.freeze_unstored() if self._unrecorded else None
        try:
            stored = self.store.record(pending, self.dispatcher.channel_names, muted=muted, settle=settles,
                                       told=told)
        except Exception as exc:
            if told is not None:
                self.dispatcher.thaw_unstored()
            if not self._unrecorded and not self._unsettled:
                log.error("cannot write events to %s (%s); keeping %d in memory, sending their alerts from "
                          "memory and retrying every second", self.store.path, exc, len(pending) + len(settles))
            self.selfwatch.store_failed(self.store.path, exc)
            self._unrecorded, self._unsettled = pending, settles
            # A full or read-only disk must not silence alerts: they go out from memory (see dispatch).
            self.dispatcher.send_unstored([e for e in fresh if _alerts_now(e, muted)])
            return
        if told is not None:
            self.dispatcher.unstored_stored(pending)
        self.selfwatch.store_failed(self.store.path, None)
        if self._unrecorded or self._unsettled:
            log.info("wrote %d held-back event(s) to %s", len(self._unrecorded) + len(self._unsettled),
                     self.store.path)
        self._unrecorded = []
        # Held DOWNs whose site alert went out before they could be written: merged with the next write.
        self._unsettled = self._explain.stored(stored, now)
        self.selfwatch.stored(stored, now)
        for e in stored:
            if e.kind is Kind.DOWN:
                self._outages[e.device] = self._outages.get(e.device, 0) + 1
            log_event(e, muted, window_s=self._explain.window_s, why_quiet=lambda e: self._quiet.why_quiet(e, now))
        for s in settles:
            if s.release and s.by == "site":
                log.info("%s: DOWN alerted after the site window%s", s.device, f": {s.reason}" if s.reason else "")
        if any(e.alerts and not e.held and (e.kind is Kind.SITE_DOWN or e.device not in muted) for e in stored) \
                or any(s.release for s in settles):
            self.dispatcher.wake()
        if self._on_events is not None and stored:
            try:
                self._on_events(tuple(stored))
            except Exception:  # the hook is a report: it must never hold up the monitor
                log.exception("the on_events hook failed")

    # -- life cycle ----------------------------------------------------

    def start(self):
        """Start the scheduler, the alert workers and the access-log follower."""
        self.dispatcher.start()
        self._spawn("monitor-deadlines", self._run)
        if self._follower is not None:
            self._spawn("monitor-accesslog", self._follow)
        self.selfwatch.start()

    def _spawn(self, name, target):
        t = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _run(self):
        planned = None
        while not self._stopping.is_set():
            self._wake.clear()
            now = self._clock.now()
            if planned is not None and now.mono - planned > STALL_S:  # stopped or starved meanwhile: a gap
                with self._lock:
                    self.selfwatch.stalled(now, now.mono - planned)
            try:
                delay = self.tick(now)
            except Exception:  # keep judging devices even if one write failed; say so once per failure
                log.exception("monitor scheduler step failed; retrying in 1 s")
                delay = 1.0
            planned = self._clock.now().mono + delay
            self._wake.wait(delay)

    def _follow(self):
        while not self._stopping.is_set():
            try:
                self._follower.poll()
            except Exception:
                log.exception("reading the access log failed; retrying in 5 s")
                self._stopping.wait(5.0)
            self._stopping.wait(ACCESS_LOG_POLL_S)

    def stop(self):
        """Stop every thread, write what is pending and close the store. Idempotent."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=5)
        self.dispatcher.stop()
        with self._lock:
            if self._unrecorded or self._unsettled:
                self._record([], self._clock.now())
        self.flush()
        self.selfwatch.stop(self._clock.now())  # the run log's clean stop
        self.store.close()

    def reload(self, config):
        """Apply a new config without losing any device's state."""
        settings = config.monitor or Monitor()
        now = self._clock.now()
        with self._lock:
            self.config = config
            self._tokens = _tokens(settings)
            self.machine.reconfigure(settings.devices, now, restored=self.store.restored())
            # DOWNs held for a site their device is no longer in go out with the next write.
            self._unsettled += self._explain.configure(settings.devices, window_s=settings.site_window_s,
                                                       notify_reboots=settings.notify_reboots)
            self._quiet.configure(settings)
            self.selfwatch.configure(settings)
            self._nudge()
        self.dispatcher.configure(build_channels(config.alerts), give_up_after_s=config.alerts.give_up_after_s)
        if self._follower is not None:
            self._follower.update_magics(_magics(settings))
        elif settings.access_log:
            log.warning("monitor.access_log was added; restart the monitor to start following it")
        log.info("monitor config reloaded: %d device(s)", len(settings.devices))


def _tokens(settings):
    """{name: token} sharing the config's strings (not a bytes copy of each: 65 bytes a device)."""
    return {d.name: d.token for d in settings.devices}


def _alerts_now(event, muted):
    """True when ``event``'s alert goes out now (the store would queue it as pending, not held or muted)."""
    if not event.alerts or event.held or event.self_held:
        return False
    return event.kind in (Kind.SITE_DOWN, Kind.MASS_SILENCE, Kind.MASS_SILENCE_END) or event.device not in muted


def _magics(settings):
    return {d.magic: d.name for d in settings.devices if d.magic}

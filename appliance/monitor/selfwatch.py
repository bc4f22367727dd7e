"""The monitor watching itself, wired for the service: its run log, its canaries and its self-check.

``SelfWatch`` is what ``MonitorService`` holds: it starts the run log (and
says the gap since the last run once), restores the alerts a stopped monitor
held, runs the canary prober in its own thread, and passes the service's
events and heartbeats to the pure ``selfcheck.SelfCheck``. Every method but
``start``/``stop`` and the prober's thread runs under the service's lock.
"""

import logging
import threading

from appliance.alerts.messages import Times
from appliance.errors import StoreError
from appliance.monitor.canaries import CanaryProber
from appliance.monitor.connectivity import Connectivity
from appliance.monitor.runlog import RunLog, describe_gap, describe_stall, grace_text
from appliance.monitor.selfcheck import QUIET_FRACTION, SelfCheck
from appliance.timefmt import format_duration

log = logging.getLogger("phonehome.monitor")


class SelfWatch:
    """The run log, the canaries and the self-check of one MonitorService.

    ``store`` is its Store, ``machine`` its Machine, ``settings`` the Monitor
    table, ``clock`` its clock and ``now`` the start. ``lock`` is the
    service's lock and ``wake()`` wakes its scheduler: the prober's thread
    and the pages take the one, the prober calls the other.
    """

    def __init__(self, store, machine, settings, now, *, clock, lock, wake, tz=None):
        self._store, self._machine, self._lock, self._wake, self._tz = store, machine, lock, wake, tz
        self._clock = clock
        self.runs = RunLog(store, now)
        self._grace = grace_text(d.max_silence_s for d in settings.devices)
        self.gap = describe_gap(self.runs.previous, now.wall, grace=self._grace, tz=tz)
        if self.gap:
            log.warning("%s", self.gap)
        # For the device list: the gap without the grace, which it states while the grace lasts.
        self._shown_gap = describe_gap(self.runs.previous, now.wall, tz=tz)
        self._grace_ends = now.wall + max((d.max_silence_s for d in settings.devices), default=0.0)
        self.check = SelfCheck(settings.devices, share=settings.mass_silence_share,
                               min_devices=settings.mass_silence_min_devices, tz=tz)
        self.check.restore(store.self_holds(), episode=store.open_mass_silence(), now=now)
        if self.check.held_count():
            log.info("%d alert(s) held by the self-check when the monitor stopped: each goes out once the "
                     "monitor's connectivity is confirmed and the device stays silent its max_silence_s",
                     self.check.held_count())
        self._prober = CanaryProber(settings.canary_urls)
        self._every_s = settings.canary_every_s
        self._probe_now = threading.Event()
        self._stopping = threading.Event()
        self._thread = None
        self._started = False
        self._alive_failing = False
        self._store_problem = None

    # -- from the service, under its lock ---------------------------------------

    def skip_held(self, held):
        """Store.held_downs() without the alerts this self-check holds (they are not a site window's)."""
        ours = self.check.held_ids()
        return [row for row in held if row[0] not in ours]

    def plan(self, events, settles, now, muted):
        """See SelfCheck.plan; a new hold asks the canaries at once."""
        before = self.check.held_count()
        out = self.check.plan(events, settles, now, muted=muted, state_of=self._state, census=self._census,
                              last_heard=self._last_heard)
        if self.check.held_count() > before and self._prober.urls:
            self._probe_now.set()
        return out

    def stored(self, events, now):
        self.check.stored(events, now, last_heard=self._last_heard)

    def due(self, now):
        return self.check.due(now, state_of=self._state)

    def _state(self, name):
        return self._machine.state_of(name) if name in self._machine else None

    def _last_heard(self, name):
        return self._machine.view(name).last_heard_at if name in self._machine else None

    def _census(self, now):
        return self._machine.census(now, quiet_fraction=QUIET_FRACTION)

    def configure(self, settings):
        self._grace = grace_text(d.max_silence_s for d in settings.devices)
        self.check.configure(settings.devices, share=settings.mass_silence_share,
                             min_devices=settings.mass_silence_min_devices)
        if tuple(settings.canary_urls) != self._prober.urls:
            self._prober = CanaryProber(settings.canary_urls)
            if not settings.canary_urls:  # no canaries: what the old ones said no longer holds anything
                self.check.connectivity = Connectivity()
            elif self._started and self._thread is None:
                self._start_thread()
        self._every_s = settings.canary_every_s
        self._probe_now.set()

    def stalled(self, now, late_s):
        """The scheduler woke ``late_s`` seconds late: the monitor was not running; its startup grace starts again."""
        self._machine.regrace(now)
        log.warning("%s", describe_stall(late_s, now.wall, grace=self._grace, tz=self._tz))
        self._shown_gap = describe_stall(late_s, now.wall, tz=self._tz)
        self._grace_ends = now.wall + max((v.max_silence_s for v in self._machine.views()), default=0.0)

    # -- the canaries -------------------------------------------------------------

    def canary_result(self, probe, now):
        """Take one Probe's result (from the prober's thread or a test); log a change of connectivity once."""
        with self._lock:
            changed = self.check.canary(probe.ok, now, probe.describe())
        if changed:
            (log.info if probe.ok else log.warning)("monitor connectivity %s: %s", "ok" if probe.ok else "lost",
                                                     probe.describe())
        self._wake()

    def probe(self):
        """Probe the canaries once and take the result; returns the Probe."""
        result = self._prober.probe()
        self.canary_result(result, self._clock.now())
        return result

    def start(self):
        """Start the prober's thread when there are canaries (else when a reload adds some)."""
        self._started = True
        if self._prober.urls:
            self._start_thread()

    def _start_thread(self):
        self._thread = threading.Thread(target=self._run, name="monitor-canaries", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stopping.is_set():
            self._probe_now.clear()
            try:
                if self._prober.urls:
                    self.probe()
            except Exception:  # a bug here must not stop the checks: say it, back off
                log.exception("probing the canaries failed; trying again in %s", format_duration(self._every_s))
            self._probe_now.wait(self._every_s)
            if self._stopping.is_set():
                return

    # -- the run log -----------------------------------------------------------------

    def alive_due(self, now):
        return self.runs.alive_due(now)

    def alive(self, now):
        """Write alive_at (outside the service's lock). A failure is said once and retried a minute later."""
        try:
            self.runs.alive(now)
        except StoreError as exc:
            if not self._alive_failing:  # a warning: it only makes the next start's gap less exact
                log.warning("cannot write the monitor's run log: %s; trying again in a minute", exc)
            self._alive_failing = True
            return
        self._alive_failing = False

    def stop(self, now):
        """Stop the prober and write the clean stop. Idempotent enough: a second stop writes the time again."""
        self._stopping.set()
        self._probe_now.set()
        if self._thread is not None:
            # Not for a probe under way (up to 5 s a canary): its result only changes memory, never the store.
            self._thread.join(timeout=1.0)
            self._thread = None
        try:
            self.runs.stopped(now)
        except StoreError as exc:
            log.error("cannot write the monitor's clean stop: %s", exc)

    def store_failed(self, path, exc):
        """The database at ``path`` refused a write with ``exc`` (None: it takes writes again); for ``summary``."""
        self._store_problem = None if exc is None else (
            f"Cannot write to its database {path} ({exc}): events are kept in memory and their alerts sent from "
            f"there; free space on that disk or make data_dir writable, and they are written.")

    # -- for people ------------------------------------------------------------------

    def summary(self):
        """One line for the device list: the gap before this run, the connectivity, a mass silence ("" if none)."""
        with self._lock:
            return self._summary(self._clock.now())

    def _summary(self, now):
        times = Times(now.wall, self._tz)
        parts = [self._store_problem] if self._store_problem else []
        if self._shown_gap:
            grace = f"; startup grace until {times.short(self._grace_ends)}" if now.wall < self._grace_ends else ""
            parts.append(f"Running since {times.zoned(self.runs.started_at)}; before that the {self._shown_gap}{grace}.")
        c = self.check.connectivity
        if c.state != "unknown" or self._prober.urls:
            since = f" since {times.short(c.changed_at)}" if c.changed_at is not None else ""
            parts.append(f"Connectivity {c.state}{since}" + (f" ({c.detail})." if c.detail else "."))
        started = self.check.episode_started_at()
        if started is not None:
            parts.append(f"Mass silence since {times.short(started)}: {self.check.held_count()} alert(s) held "
                         f"until the monitor's connectivity is confirmed.")
        elif self.check.held_count():
            parts.append(f"{self.check.held_count()} DOWN alert(s) held until the monitor's connectivity is "
                         f"confirmed.")
        return " ".join(parts)

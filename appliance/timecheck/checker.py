"""The clock checker: asks the NTP servers and the time service on a schedule and keeps the verdict.

``tick(now)`` is one step that tests call directly; the thread only repeats
``delay = tick(clock.now())`` and waits. The schedule runs on the monotonic
clock: every ``until_synced_every_s`` until the first good NTP answer (after
boot the clock may be hours off until NTP fixes it), then every
``check_every_s``. A change of verdict is one log line and one
``on_change(old, new)`` call, which LEDs, the display and the web page
consume; a check that fails is logged once and retried, never stopping the
agent.
"""

import functools
import logging
import os
import threading
from dataclasses import dataclass

from appliance.agent.transport import Resolver
from appliance.timecheck.history import FILE_NAME, OffsetHistory
from appliance.timecheck.ntp import query_servers
from appliance.timecheck.system import check_zone, read_system
from appliance.timecheck.tracking import ServerStatus, track
from appliance.timecheck.verdict import OK, UNKNOWN, decide

log = logging.getLogger("phonehome.timecheck")

_STOP_JOIN_SLACK_S = 10.0


@dataclass(frozen=True)
class TimeStatus:
    """The latest clock check, or ``verdict`` "unknown" before the first one has finished.

    ``offset_ms`` (positive: our clock is ahead of the servers) and
    ``jitter_ms`` are the servers' consensus, None without usable answers;
    ``servers`` one ServerStatus per configured server; ``service`` the time
    service found (timesyncd, chrony, ntpd, ntpsec, "none"; None before the
    first check) and ``synchronized`` what it says; ``system_zone`` the
    system's zone and ``wanted_zone`` the configured one ("" = not checked);
    ``checked_at`` the wall-clock epoch seconds of the check; ``service_detail``
    one line from the time service; ``zone_matches`` None when not checked.
    """

    verdict: str = UNKNOWN
    reason: str = "not checked yet"
    offset_ms: float | None = None
    jitter_ms: float | None = None
    servers: tuple[ServerStatus, ...] = ()
    service: str | None = None
    synchronized: bool | None = None
    system_zone: str | None = None
    wanted_zone: str = ""
    checked_at: float | None = None
    service_detail: str = ""
    zone_matches: bool | None = None

    def as_payload(self):
        """The heartbeat's compact summary (JSON-able): verdict, reason, offset_ms, jitter_ms, service,
        synchronized, zone, checked_at (epoch s)."""
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "offset_ms": None if self.offset_ms is None else round(self.offset_ms, 1),
            "jitter_ms": None if self.jitter_ms is None else round(self.jitter_ms, 1),
            "service": self.service,
            "synchronized": self.synchronized,
            "zone": self.system_zone,
            "checked_at": None if self.checked_at is None else round(self.checked_at),
        }


class TimeChecker:
    """Checks the clock on its own thread (``start``/``stop``) or when called (``tick``, ``check_now``).

    ``time_config`` is the config's ``Time``; ``clock`` has ``now()``
    returning a Now; ``data_dir`` holds ``time-history.json`` (None: history
    in memory only). ``query(specs, *, timeout_s)`` returns one ServerAnswer
    per spec (default: ntp.query_servers); ``system()`` returns a
    SystemReading (default: system.read_system); ``on_change(old, new)`` is
    called with two TimeStatus on every change of verdict.
    """

    def __init__(self, time_config, *, clock, data_dir, query=None, system=None, on_change=None):
        self._config = time_config
        self._clock = clock
        self._query = query or functools.partial(query_servers, resolve=Resolver().resolve)
        self._system = system or read_system
        self._on_change = on_change
        self._history = OffsetHistory(os.path.join(data_dir, FILE_NAME) if data_dir else None)
        self._history.load()
        self._status = TimeStatus(wanted_zone=time_config.timezone)
        self._tracks = {}
        self._synced = False
        self._failures = 0
        self._next_mono = None
        self._lock = threading.Lock()  # one check at a time: the loop's and check_now()'s
        self._stopping = threading.Event()
        self._thread = None

    @property
    def status(self):
        """The latest TimeStatus."""
        return self._status

    @property
    def history(self):
        """The OffsetHistory (``history.points()`` for the chart)."""
        return self._history

    def tick(self, now):
        """Check the clock if a check is due at ``now`` (a Now); return seconds until the next one is due."""
        if self._next_mono is None or now.mono >= self._next_mono:
            self._check(now)
        return max(0.0, self._next_mono - now.mono)

    def check_now(self):
        """Check the clock at once and return the new TimeStatus (the old one if the check failed)."""
        self._check(self._clock.now())
        return self._status

    def start(self):
        """Check on a thread of its own until ``stop()``. Calling it again does nothing."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="clock check", daemon=True)
        self._thread.start()

    def stop(self):
        """Stop the thread (waiting for a check under way) and write the history file. Idempotent."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(self._config.timeout_s + _STOP_JOIN_SLACK_S)
            self._thread = None
        with self._lock:
            self._history.flush()

    def _run(self):
        while not self._stopping.is_set():
            delay = self.tick(self._clock.now())
            self._stopping.wait(delay)

    def _check(self, now):
        with self._lock:
            try:
                new = self._measure(now)
            except Exception as exc:  # noqa: BLE001 - the agent must outlive any failure of a check
                self._failures += 1
                retry_s = min(self._config.check_every_s,
                              self._config.until_synced_every_s * 2 ** min(self._failures - 1, 30))
                if self._failures == 1:
                    log.warning("clock check failed (%s: %s); retrying, first in %.0f s",
                                type(exc).__name__, exc, retry_s, exc_info=log.isEnabledFor(logging.DEBUG))
                self._next_mono = now.mono + retry_s
                return
            if self._failures:
                log.info("clock check works again after %d failed attempt(s)", self._failures)
                self._failures = 0
            self._next_mono = now.mono + (self._config.check_every_s if self._synced
                                          else self._config.until_synced_every_s)
            self._history.add(now, new.offset_ms, new.verdict)
            self._history.maybe_flush(now.mono)
            old, self._status = self._status, new
        if old.verdict != new.verdict:
            (log.info if new.verdict == OK else log.warning)(
                "clock check: %s -> %s: %s", old.verdict, new.verdict, new.reason)
            if self._on_change is not None:
                try:
                    self._on_change(old, new)
                except Exception:  # noqa: BLE001 - a broken consumer must not stop the checks
                    log.exception("a consumer of the clock verdict failed on %s -> %s", old.verdict, new.verdict)

    def _measure(self, now):
        config = self._config
        reading, failure = [], []

        def read():
            try:
                reading.append(self._system())
            except BaseException as exc:  # noqa: BLE001 - handed to the checking thread below
                failure.append(exc)

        # The time service is read while the servers are asked: one check lasts one round trip.
        reader = threading.Thread(target=read, name="clock check: system", daemon=True)
        reader.start()
        answers = self._query(config.servers, timeout_s=config.timeout_s) if config.servers else ()
        reader.join()
        if failure:
            raise failure[0]
        system = reading[0]
        servers = tuple(track(self._tracks.get(a.server), a) for a in answers)
        self._tracks = {s.server: s for s in servers}
        if not config.servers or any(a.ok for a in answers):
            self._synced = True
        zone = check_zone(system.zone, config.timezone)
        verdict = decide(servers, system.sync, zone, max_offset_ms=config.max_offset_ms)
        return TimeStatus(verdict=verdict.name, reason=verdict.reason, offset_ms=verdict.offset_ms,
                          jitter_ms=verdict.jitter_ms, servers=servers, service=system.sync.service,
                          synchronized=system.sync.synchronized, system_zone=system.zone,
                          wanted_zone=config.timezone, checked_at=now.wall, service_detail=system.sync.detail,
                          zone_matches=zone.matches)

"""The clock checker: asks the NTP servers and the time service on a schedule and keeps the verdict.

``tick(now)`` is one step that tests call directly; the thread only repeats
``delay = tick(clock.now())`` and waits. The schedule runs on the monotonic
clock. Until the first good NTP answer (after boot the clock may be hours
off until NTP fixes it) checks come fast: ``until_synced_every_s`` after the
first, then backing off (``appliance.backoff.backoff_s``, doubling, with
jitter) up to ``check_every_s``, so a Pi whose UDP port 123 is blocked does
not ask every 30 s forever. After the first good answer, every
``check_every_s``. A server that answers with the kiss-of-death RATE ("ask
less often") is not asked again until ``check_every_s`` after that answer,
i.e. until the next regular check; meanwhile it keeps its last answer.

A change of verdict is one log line and one ``on_change(old, new)`` call,
which LEDs, the display and the web page consume. A check that fails, or
anything else that goes wrong in the thread, is logged once per streak of
failures and retried with the same back-off, never stopping the agent.

One check lasts about ``timeout_s``: the servers are asked at once while the
time service is read within the same budget; a reading that still hangs
after ``timeout_s`` + ``slack_s`` fails the check. ``stop()`` returns within
about ``timeout_s`` + ``slack_s`` even when a check hangs.
"""

import functools
import logging
import os
import random
import threading
import time
from dataclasses import dataclass

from appliance.agent.transport import Resolver
from appliance.backoff import backoff_s
from appliance.timecheck.history import FILE_NAME, OffsetHistory
from appliance.timecheck.ntp import KISS, query_servers
from appliance.timecheck.system import check_zone, read_system
from appliance.timecheck.tracking import ServerStatus, track
from appliance.timecheck.verdict import OK, UNKNOWN, decide, short_reason

log = logging.getLogger("phonehome.timecheck")

SLACK_S = 1.0  # beyond timeout_s, for thread and process start-up on a busy Pi


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
        """The heartbeat's compact summary (JSON-able): verdict, reason (at most 200 characters, as the
        monitor accepts), offset_ms, jitter_ms, service, synchronized, zone, checked_at (epoch s)."""
        return {
            "verdict": self.verdict,
            "reason": short_reason(self.reason),
            "offset_ms": None if self.offset_ms is None else round(self.offset_ms, 1),
            "jitter_ms": None if self.jitter_ms is None else round(self.jitter_ms, 1),
            "service": self.service,
            "synchronized": self.synchronized,
            "zone": self.system_zone,
            "checked_at": None if self.checked_at is None else round(self.checked_at),
        }


class _Reading:
    """``system()`` called on a thread of its own, so the time service is read while the servers are asked."""

    def __init__(self, system):
        self._system = system
        self._value = self._error = None
        self._thread = threading.Thread(target=self._read, name="clock check: system", daemon=True)
        self._thread.start()

    def _read(self):
        try:
            self._value = self._system()
        except BaseException as exc:  # noqa: BLE001 - handed to the checking thread by result()
            self._error = exc

    def running(self):
        return self._thread.is_alive()

    def result(self, deadline_mono, timeout_s):
        """The SystemReading; raises what ``system()`` raised, or TimeoutError if it runs past ``deadline_mono``."""
        self._thread.join(max(0.0, deadline_mono - time.monotonic()))
        if self._thread.is_alive():
            raise TimeoutError(f"reading the time service took longer than {timeout_s:g} s")
        if self._error is not None:
            raise self._error
        return self._value


class TimeChecker:
    """Checks the clock on its own thread (``start``/``stop``) or when called (``tick``, ``check_now``).

    ``time_config`` is the config's ``Time``; ``clock`` has ``now()``
    returning a Now; ``data_dir`` holds ``time-history.json`` (None: history
    in memory only). ``query(specs, *, timeout_s)`` returns one ServerAnswer
    per spec (default: ntp.query_servers); ``system()`` returns a
    SystemReading (default: system.read_system within ``timeout_s``);
    ``on_change(old, new)`` is called with two TimeStatus on every change of
    verdict; ``rand()`` (a float in [0, 1)) jitters the back-off; ``slack_s``
    is how much longer than ``timeout_s`` a check and ``stop()`` may take.
    Never raises because of a bad history file: it starts a new one.
    """

    def __init__(self, time_config, *, clock, data_dir, query=None, system=None, on_change=None,
                 rand=random.random, slack_s=SLACK_S):
        self._config = time_config
        self._clock = clock
        self._query = query or functools.partial(query_servers, resolve=Resolver().resolve)
        self._system = system or functools.partial(read_system, timeout_s=time_config.timeout_s)
        self._on_change = on_change
        self._rand = rand
        self._slack_s = slack_s
        self._history = OffsetHistory(os.path.join(data_dir, FILE_NAME) if data_dir else None)
        try:
            self._history.load()
        except Exception:  # noqa: BLE001 - load() catches what a bad file raises; this is for what it missed
            log.exception("the clock history could not be loaded; starting a new one")
            self._history = OffsetHistory(self._history.path)
        self._status = TimeStatus(wanted_zone=time_config.timezone)
        self._tracks = {}
        self._synced = False
        self._unsynced_checks = 0  # checks in a row without a good answer, before the first good one
        self._failures = 0  # failed attempts in a row
        self._rate_limited = {}  # server -> monotonic time before which it is not asked (kiss-of-death RATE)
        self._reading = None  # the latest _Reading of the time service
        self._next_mono = None
        self._lock = threading.Lock()  # one check at a time: the loop's and check_now()'s
        self._stopping = threading.Event()  # each start() gets its own: an old loop never comes back
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
        """Check the clock if a check is due at ``now`` (a Now); return seconds until the next one is due.

        A failed check is logged and retried (the return value is its
        back-off); what escapes is a bug, which the thread's loop logs and
        backs off from too.
        """
        if self._next_mono is None or now.mono >= self._next_mono:
            self._check(now)
        return max(0.0, self._next_mono - now.mono)

    def check_now(self):
        """Check the clock at once and return the new TimeStatus (the old one if the check failed)."""
        self._check(self._clock.now())
        return self._status

    def start(self):
        """Check on a thread of its own until ``stop()``. Calling it again while it runs does nothing."""
        if self._thread is not None:
            return
        # A fresh event per start: a loop that stop() could not wait for ends when its check does,
        # instead of being revived by this start and running beside the new one.
        self._stopping = stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(stopping,), name="clock check", daemon=True)
        self._thread.start()

    def stop(self):
        """Stop the thread and write the history file, within about ``timeout_s`` + ``slack_s``. Idempotent.

        A check under way is waited for until then; one that hangs longer is
        left to end on its own (its thread then stops).
        """
        budget_s = self._config.timeout_s + self._slack_s
        deadline = time.monotonic() + budget_s
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(budget_s)
            if thread.is_alive():
                log.warning("the clock check did not end within %g s; stopping without it", budget_s)
        # Wait for a check under way (it holds the lock) only as long as is left; the write is atomic either way.
        locked = self._lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
        try:
            self._history.flush()
        finally:
            if locked:
                self._lock.release()

    def _run(self, stopping):
        while not stopping.is_set():
            try:
                delay = self.tick(self._clock.now())
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any bug; logged once per streak
                delay = self._failed(exc)
            stopping.wait(delay)

    def _failed(self, exc):
        # One log line per streak of failures; the delay before the next attempt, backing off.
        self._failures += 1
        retry_s = self._backoff_s(self._failures)
        if self._failures == 1:
            log.warning("clock check failed (%s: %s); retrying, first in %.0f s",
                        type(exc).__name__, exc, retry_s, exc_info=log.isEnabledFor(logging.DEBUG))
        return retry_s

    def _backoff_s(self, attempt):
        config = self._config
        return backoff_s(attempt, first_s=config.until_synced_every_s, max_s=config.check_every_s, rand=self._rand)

    def _check(self, now):
        with self._lock:
            try:
                new = self._measure(now)
            except Exception as exc:  # noqa: BLE001 - the agent must outlive any failure of a check
                self._next_mono = now.mono + self._failed(exc)
                return
            self._next_mono = now.mono + (self._config.check_every_s if self._synced
                                          else self._backoff_s(self._unsynced_checks))
            old, self._status = self._status, new
            self._history.add(now, new.offset_ms, new.verdict)
            self._history.maybe_flush(now.mono)
            if self._failures:
                log.info("clock check works again after %d failed attempt(s)", self._failures)
                self._failures = 0
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
        if self._reading is not None and self._reading.running():
            # At most one reader thread: one that hangs is not joined by another every check.
            raise TimeoutError("reading the time service still hangs from an earlier check")
        # The time service is read while the servers are asked: one check lasts one round trip.
        deadline_mono = time.monotonic() + config.timeout_s + self._slack_s
        self._reading = reading = _Reading(self._system)
        asked = [spec for spec in config.servers if now.mono >= self._rate_limited.get(spec, now.mono)]
        answers = {a.server: a for a in (self._query(tuple(asked), timeout_s=config.timeout_s) if asked else ())}
        system = reading.result(deadline_mono, config.timeout_s)
        servers = tuple(track(self._tracks.get(spec), answers[spec]) if spec in answers else self._tracks[spec]
                        for spec in config.servers)
        self._tracks = {s.server: s for s in servers}
        for a in answers.values():
            if a.code == KISS and a.refid == "RATE":
                self._rate_limited[a.server] = now.mono + config.check_every_s
            else:
                self._rate_limited.pop(a.server, None)
        if not config.servers or any(a.ok for a in answers.values()):
            self._synced = True
        elif not self._synced:
            self._unsynced_checks += 1
        zone = check_zone(system.zone, config.timezone)
        verdict = decide(servers, system.sync, zone, max_offset_ms=config.max_offset_ms)
        return TimeStatus(verdict=verdict.name, reason=verdict.reason, offset_ms=verdict.offset_ms,
                          jitter_ms=verdict.jitter_ms, servers=servers, service=system.sync.service,
                          synchronized=system.sync.synchronized, system_zone=system.zone,
                          wanted_zone=config.timezone, checked_at=now.wall, service_detail=system.sync.detail,
                          zone_matches=zone.matches)

"""The heartbeat sender: phones every configured target home, each on its own thread.

Each target has a TargetWorker with a ``tick(now)`` step that tests call
directly; its thread only repeats ``delay = tick(clock.now())`` and waits.
A slow or failing target never delays another target or its own next beat,
since every send is bounded by ``heartbeat.timeout_s``.

The log gets one line per change of a target's state (ok, failing,
restored), never one per failed minute, and never a token.
"""

import functools
import logging
import os
import random
import threading
from dataclasses import dataclass, replace

from appliance.agent import transport
from appliance.agent.beathistory import BeatHistory
from appliance.agent.failures import STATE_FILE, FailureLog, target_key
from appliance.agent.schedule import Schedule
from appliance.agent.system import read_boot_id, read_uptime_s
from appliance.agent.targets import Beat, Result, build_request, judge
from appliance.errors import SendError
from appliance.timefmt import format_duration

log = logging.getLogger("phonehome.agent")

# How late a target's loop may be before the agent calls itself stuck and stops feeding systemd's watchdog.
STUCK_SLACK_S = 30.0


@dataclass(frozen=True)
class TargetStatus:
    """How one target is doing. Times are epoch seconds (UTC); None means "not yet".

    ``last_received_at`` is the monitor's clock when it received the last
    delivered beat (phonehome kind only); with ``last_ok_at`` (when that
    beat was sent) and ``last_rtt_ms`` it gives the Pi's clock offset.
    """

    label: str
    kind: str
    url: str
    state: str = "unknown"
    last_ok_at: float | None = None
    last_rtt_ms: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    last_attempt_at: float | None = None
    last_received_at: float | None = None
    beats_ok: int = 0  # delivered beats since the agent started (a status LED blinks once per beat)


@dataclass(frozen=True)
class TargetHistory:
    """One target's last day, for the web page: ``points`` (beathistory.RttPoint, a slot a minute, oldest
    first) and ``windows`` (failures.Window, the last failure windows, oldest first). Kept in memory only."""

    label: str
    kind: str
    points: tuple
    windows: tuple


@dataclass(frozen=True)
class Attempt:
    """The outcome of one send to one target: ``result`` when delivered, else ``error``."""

    label: str
    ok: bool
    result: Result | None = None
    error: str | None = None


class TargetWorker:
    """Sends one target's heartbeats: a steady cadence, and backed-off retries after failures.

    ``send`` is transport.send with its resolver bound; ``uptime`` returns
    seconds since boot or None; ``started`` is the Now at which the agent
    started.
    """

    def __init__(self, target, *, device, boot_id, started, clock, send, failures, interval_s, timeout_s,
                 uptime, rand, paused, time_status=lambda: None, peers=lambda: None):
        self.target = target
        self._time_status = time_status
        self._peers = peers
        self._device = device
        self._boot_id = boot_id
        self._started = started
        self._clock = clock
        self._send = send
        self._failures = failures
        self._key = target_key(target)
        self._timeout_s = timeout_s
        self._uptime = uptime
        self._rand = rand
        self._paused = paused
        self._lock = threading.Lock()  # one send at a time: the thread's and beat_now's
        self._seq = 0
        self._failing_since_mono = None
        self._schedule = Schedule.starting_at(started.mono, interval_s)
        self._status = TargetStatus(label=target.label, kind=target.kind, url=target.url)
        self.history = BeatHistory()  # the page's chart and history: in memory, never written to disk
        self.wake = threading.Event()
        self.alive_until = None  # monotonic time by which run()'s loop must come round again (None: not running)

    def stuck(self, now_mono):
        """True when this target's loop runs but has not come round when it should have (a hung send or thread)."""
        return self.alive_until is not None and now_mono > self.alive_until

    @property
    def status(self):
        """This target's TargetStatus (a frozen snapshot; reading it never waits for a send)."""
        return self._status

    def tick(self, now):
        """Send this target's heartbeat if one is due at ``now``; return seconds until the next is due.

        While paused nothing is sent, and beats missed meanwhile are not made
        up later. A failed send is recorded, never raised.
        """
        with self._lock:  # decided under the lock: a beat_now() may have just sent
            if self._paused.is_set():
                self._schedule = self._schedule.skipped(now.mono)
                return self._schedule.delay_s(now.mono)
            if not self._schedule.due(now.mono):
                return self._schedule.delay_s(now.mono)
            _, took_s = self._attempt_locked(now)
            # The send took time; waiting the full delay after it would make the beats drift.
            return self._schedule.delay_s(now.mono + took_s)

    def attempt(self):
        """Send one heartbeat now, whatever the schedule says; return its Attempt.

        Waits for a send already in flight to this target (at most the timeout) first.
        """
        with self._lock:
            attempt, _ = self._attempt_locked(self._clock.now())
            return attempt

    def _attempt_locked(self, now):
        """Send and update the timetable; return (Attempt, seconds the send took by ``clock``)."""
        before = self._clock.now().mono
        attempt = self._send_beat(now)
        took_s = self._clock.now().mono - before
        self._schedule = self._schedule.after_attempt(
            now.mono, now.mono + took_s, consecutive_failures=self._status.consecutive_failures, rand=self._rand)
        return attempt, took_s

    def due_now(self, now):
        """Make an attempt due at ``now`` (after a resume) and wake the thread."""
        with self._lock:
            self._schedule = self._schedule.due_at(now.mono)
        self.wake.set()

    def run(self, stopping):
        """The thread's loop: tick, wait, until ``stopping`` is set (stop() also sets ``wake``)."""
        while not stopping.is_set():
            # A send ends within its timeout, and tick() may first wait for a beat_now() send to end: a loop
            # that has not come round after two of them (and the slack) is stuck.
            self.alive_until = self._clock.now().mono + 2 * self._timeout_s + STUCK_SLACK_S
            try:
                delay_s = self.tick(self._clock.now())
            except Exception:  # a bug must not end this target's heartbeats; back off, never spin
                delay_s = self._schedule.interval_s
                log.exception("heartbeat to %s: unexpected error; trying again in %g s", self.target.label, delay_s)
            self.alive_until = self._clock.now().mono + delay_s + STUCK_SLACK_S
            self.wake.wait(delay_s)
            self.wake.clear()

    def _send_beat(self, now):
        self._seq += 1
        target = self.target
        beat = Beat(
            device=self._device,
            sent_at=now.wall,
            seq=self._seq,
            boot_id=self._boot_id,
            uptime_s=self._uptime(),
            # From the monotonic time since start: right even if NTP stepped the wall clock since.
            agent_started_at=now.wall - (now.mono - self._started.mono),
            send_failures=self._failures.carried(self._key, now.wall, mono=now.mono) if target.kind == "phonehome" else (),
            previous_rtt_ms=self._status.last_rtt_ms,
            time=self._time_status() if target.kind == "phonehome" else None,
            peers=self._peers() if target.kind == "phonehome" else None,
        )
        try:
            method, url, headers, body = build_request(target, beat)
            response = self._send(method, url, headers=headers, body=body, timeout_s=self._timeout_s)
            result = judge(target, response)
        except SendError as exc:
            self._failed(now, str(exc))
            return Attempt(target.label, ok=False, error=str(exc))
        self._succeeded(now, result)
        return Attempt(target.label, ok=True, result=result)

    def _failed(self, now, error):
        old = self._status
        self._failures.failed(self._key, now.wall, mono=now.mono)
        self.history.failed(now.wall)
        if old.state != "failing":
            self._failing_since_mono = now.mono
            log.warning("heartbeat to %s failing: %s; retrying", old.label, error)
        else:
            log.debug("heartbeat to %s still failing (%d in a row): %s", old.label, old.consecutive_failures + 1,
                      error)
        self._status = replace(old, state="failing", last_error=error, last_attempt_at=now.wall,
                               consecutive_failures=old.consecutive_failures + 1)

    def _succeeded(self, now, result):
        old = self._status
        self._failures.succeeded(self._key, now.wall, acknowledged=200 <= result.status < 300, mono=now.mono)
        self.history.succeeded(now.wall, result.rtt_ms)
        if old.state == "failing":
            log.info("heartbeat to %s restored after %s (%d failed send%s)", old.label,
                     format_duration(now.mono - self._failing_since_mono), old.consecutive_failures,
                     "" if old.consecutive_failures == 1 else "s")
        elif old.state == "unknown":
            log.info("heartbeat to %s ok (round trip %.0f ms)", old.label, result.rtt_ms)
        self._status = replace(old, state="ok", last_ok_at=now.wall, last_rtt_ms=result.rtt_ms, last_error=None,
                               beats_ok=old.beats_ok + 1,
                               consecutive_failures=0, last_attempt_at=now.wall,
                               last_received_at=result.received_at)


class HeartbeatSender:
    """Phones home to every target in ``config.heartbeat``, one worker thread per target.

    ``clock`` gives Now readings (appliance.clock.SystemClock in production);
    ``data_dir`` holds agent-state.json; ``boot_id`` defaults to the
    kernel's; ``uptime`` returns seconds since boot or None; ``rand``
    returns floats in [0, 1) for retry jitter; ``resolver`` is a
    transport.Resolver (a fresh one by default); ``ca_file`` replaces the
    system's certificate authorities (tests); ``time_status`` returns the
    clock check's summary dict that every phonehome beat carries (or None);
    ``peers`` returns the ``peers`` list every phonehome beat carries (or
    None: the field is left out). Use as a context manager, or
    call start() and stop(). ``workers`` holds one TargetWorker per target,
    in config order; tests tick them by hand instead of starting threads.
    """

    def __init__(self, config, *, clock, data_dir, boot_id=None, uptime=read_uptime_s, rand=random.random,
                 resolver=None, ca_file=None, time_status=lambda: None, peers=lambda: None):
        self._clock = clock
        self._stopping = threading.Event()
        self._paused = threading.Event()
        self._threads = []
        if boot_id is None:
            boot_id = read_boot_id()
        if not boot_id:
            log.warning("this system has no boot id (not Linux?): the monitor will not learn of reboots from it, "
                        "and send-failure windows will not survive an agent restart")
        heartbeat = config.heartbeat
        self.failures = FailureLog(os.path.join(data_dir, STATE_FILE), boot_id=boot_id)
        send = functools.partial(transport.send, resolver=resolver or transport.Resolver(), ca_file=ca_file)
        started = clock.now()
        self.workers = tuple(
            TargetWorker(target, device=config.device.name, boot_id=boot_id, started=started, clock=clock,
                         send=send, failures=self.failures, interval_s=heartbeat.interval_s,
                         timeout_s=heartbeat.timeout_s, uptime=uptime, rand=rand, paused=self._paused,
                         time_status=time_status, peers=peers)
            for target in heartbeat.targets)
        self._join_s = heartbeat.timeout_s + 1.0

    def start(self):
        """Start one thread per target; the first beats go out at once. Calling it again does nothing."""
        if self._threads or self._stopping.is_set():
            return
        for worker in self.workers:
            thread = threading.Thread(target=worker.run, args=(self._stopping,), daemon=True,
                                      name=f"heartbeat {worker.target.label}")
            thread.start()
            self._threads.append(thread)

    def stop(self):
        """Stop the threads (each finishes its send in flight, at most heartbeat.timeout_s) and save
        the failure counts. Idempotent."""
        self._stopping.set()
        for worker in self.workers:
            worker.wake.set()
        for thread in self._threads:
            thread.join(self._join_s)
            if thread.is_alive():
                log.warning("%s did not stop within %g s; leaving it behind", thread.name, self._join_s)
        self.failures.flush()

    def stuck(self, now_mono):
        """The labels of the targets whose loop is stuck at monotonic time ``now_mono`` (see TargetWorker.stuck)."""
        return [w.target.label for w in self.workers if w.stuck(now_mono)]

    def pause(self):
        """Send nothing until resume() (the demo's simulated outage); beats missed meanwhile are not made up."""
        self._paused.set()

    def resume(self):
        """Send again, starting with a beat to every target right away."""
        self._paused.clear()
        now = self._clock.now()
        for worker in self.workers:
            worker.due_now(now)

    @property
    def paused(self):
        """True between pause() and resume()."""
        return self._paused.is_set()

    def beat_now(self, *, kinds=None):
        """Send a heartbeat to every target now, in parallel; return their Attempts in config order.

        ``kinds`` (e.g. ("phonehome",)) limits it to targets of those kinds.
        Takes at most heartbeat.timeout_s, plus the rest of any send already
        in flight to a target. While paused nothing is sent and each Attempt
        says so.
        """
        workers = [w for w in self.workers if kinds is None or w.target.kind in kinds]
        if self._paused.is_set():
            return tuple(Attempt(w.target.label, ok=False, error="heartbeats are paused") for w in workers)
        attempts = [None] * len(workers)

        def attempt(i, worker):
            attempts[i] = worker.attempt()
            worker.wake.set()  # its timetable changed (a retry may now be due sooner)

        threads = [threading.Thread(target=attempt, args=(i, w), daemon=True, name=f"beat now {w.target.label}")
                   for i, w in enumerate(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return tuple(attempts)

    def status(self):
        """A TargetStatus per target, in config order; never waits for a send."""
        return tuple(worker.status for worker in self.workers)

    def history(self):
        """A TargetHistory per target, in config order: the last 24 h of round trips and the last failure
        windows, from memory (a restart starts them afresh); never waits for a send."""
        return tuple(TargetHistory(w.target.label, w.target.kind, w.history.points(), w.history.windows())
                     for w in self.workers)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

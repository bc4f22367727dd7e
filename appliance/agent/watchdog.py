"""The relay of the peer watchdog: power-cycles a watched Pi that stays silent, and says so.

``PeerWatchdog.tick(now)`` reads the peer's state from the monitor inside the
agent, asks hardware.relay.PowerCycler what to do, switches the relay, and
reports every attempt: one log line, a record in memory and in
``data_dir/peer-relay.json`` (written atomically, so ``power_cycle_min_gap_s``
holds across restarts), the heartbeat's ``peers`` list (through the notifier,
at once) and an alert. Its thread only repeats ``tick`` and waits; the monitor
wakes it when the peer changes.

The alerts go through the same channels as the inside monitor's
(``[alerts]``), but not through its delivery queue, which holds only the
monitor's own events: ``AlertOutbox`` sends each through every channel on its
own thread, retrying a bounded number of times with back-off.

GPIO that cannot be used (not a Raspberry Pi, the pin in use) is said once in
the log and tried again every RETRY_GPIO_S; the monitor and the heartbeats go
on without power cycles meanwhile.
"""

import json
import logging
import os
import random
import threading
import time

from appliance.alerts.messages import Message
from appliance.atomic import write_atomic
from appliance.backoff import backoff_s
from appliance.errors import DeliveryError
from appliance.timefmt import format_duration
from hardware.errors import HardwareUnavailable
from hardware.relay import CAME_BACK, CAME_BACK_LATE, MAX_WAIT_S, NOT_BACK, OFF, ON, PeerRelay, PowerCycle, \
    PowerCycler

log = logging.getLogger("phonehome.peer")

STATE_FILE = "peer-relay.json"
RETRY_GPIO_S = 60.0
ALERT_TRIES = 6               # each alert, per channel: the first try and 5 retries
ALERT_RETRY_FIRST_S = 10.0    # then doubling, with jitter, up to ALERT_RETRY_MAX_S: about 5 minutes in all
ALERT_RETRY_MAX_S = 120.0


class PeerWatchdog:
    """Power-cycles ``config.peer.device`` through the relay on ``config.peer.relay_pin``.

    ``service()`` returns the inside monitor's MonitorService (or None);
    ``notify()`` asks for a heartbeat to the phonehome targets now;
    ``pin_factory`` is gpiozero's (None: the default one, owned by the
    relay); ``channels`` are the alert channels (None: built from
    ``config.alerts``); ``open_relay`` makes the PeerRelay (tests).
    """

    def __init__(self, config, *, service, clock, notify=lambda: None, pin_factory=None, channels=None,
                 retry_first_s=ALERT_RETRY_FIRST_S, open_relay=PeerRelay):
        from appliance.alerts.channels import build_channels

        peer = config.peer
        self.device = peer.device
        self._peer = peer
        self._watcher = config.device.name or "this Pi"
        self._service = service
        self._clock = clock
        self._notify = notify
        self._pin_factory = pin_factory
        self._open_relay = open_relay
        self._path = os.path.join(config.data_dir, STATE_FILE)
        self.relay = None
        self._gpio_retry_mono = None
        self._gpio_failing = False
        self._save_failing = False
        self.cycler = PowerCycler(after_s=peer.power_cycle_after_s, off_s=peer.power_cycle_off_s,
                                  min_gap_s=peer.power_cycle_min_gap_s, started=clock.now(), history=self._load())
        if channels is None:
            channels = build_channels(config.alerts)
        self.alerts = AlertOutbox(channels, clock=clock, retry_first_s=retry_first_s)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = None

    def cycles(self):
        """The remembered power cycles (relay.PowerCycle), oldest first."""
        return self.cycler.cycles

    # -- one step, callable from tests -------------------------------------

    def tick(self, now):
        """Open the relay if due, do what the PowerCycler says at ``now``; return seconds until the next tick."""
        self._open(now)
        view = self._view(now)
        if view is None:
            return MAX_WAIT_S
        for _ in range(3):  # an action done makes the next tick's answer a wait, never another action at once
            step = self.cycler.tick(now, view["state"], view["last_heard_at"])
            if step.news is not None:
                self._settled(step, view, now)
            if step.action is None:
                return step.wait_s
            if not self._switch(step.action, view, now):
                return max(1.0, min(MAX_WAIT_S, self._gpio_retry_mono - now.mono))
        return 0.0

    def _view(self, now):
        service = self._service()
        if service is None:
            return None
        try:
            return service.device(self.device, now)
        except KeyError:  # removed from [[monitor.devices]] by a reload this watchdog has not seen yet
            return None

    def _open(self, now):
        if self.relay is not None or (self._gpio_retry_mono is not None and now.mono < self._gpio_retry_mono):
            return
        try:
            self.relay = self._open_relay(self._peer.relay_pin, active_high=self._peer.relay_active_high,
                                          pin_factory=self._pin_factory)
        except HardwareUnavailable as exc:
            self._gpio_lost(now, exc)
            return
        if self._gpio_failing:
            log.info("GPIO works again: the relay of %s is back", self.device)
        self._gpio_failing = False

    def _gpio_lost(self, now, exc):
        if self.relay is not None:
            _close(self.relay)
            self.relay = None
        self._gpio_retry_mono = now.mono + RETRY_GPIO_S
        if not self._gpio_failing:
            log.warning("%s; the peer watchdog goes on without power cycles; trying again every %.0f s", exc,
                        RETRY_GPIO_S)
        self._gpio_failing = True

    def _switch(self, action, view, now):
        """Switch the relay; True when it was done."""
        if self.relay is None:
            if self._gpio_retry_mono is None:
                self._gpio_retry_mono = now.mono
            return False
        silent_s = self.cycler.silent_s(now)
        try:
            (self.relay.power_off if action == OFF else self.relay.power_on)()
        except HardwareUnavailable as exc:
            self._gpio_lost(now, exc)
            return False
        cycle = self.cycler.done(action, now)
        if action == ON:
            log.info("%s: power back on after %s off", self.device, format_duration(self._peer.power_cycle_off_s))
            return True
        off = format_duration(self._peer.power_cycle_off_s)
        summary = f"{self.device} silent for {format_duration(silent_s)}: power-cycled it (off {off})"
        log.warning("%s", summary)
        self._save()
        self._alert(view, "POWER CYCLE", "power-cycle", summary, cycle, now)
        self._notify()
        return True

    def _settled(self, step, view, now):
        if step.news == CAME_BACK_LATE:
            log.info("%s came back %s after its power cycle", self.device, format_duration(step.after_s))
        elif step.news == CAME_BACK:
            summary = f"{self.device} came back {format_duration(step.after_s)} after the power cycle"
            log.info("%s", summary)
            self._alert(view, "BACK AFTER POWER CYCLE", "power-cycle-back", summary, step.cycle, now)
        elif step.news == NOT_BACK:
            summary = (f"{self.device} did not come back within {format_duration(step.after_s)} after the "
                       f"power cycle; the next is not before {format_duration(self._peer.power_cycle_min_gap_s)} "
                       f"after it")
            log.warning("%s", summary)
            self._alert(view, "NOT BACK AFTER POWER CYCLE", "power-cycle-not-back", summary, step.cycle, now)
            return
        self._save()
        self._notify()

    def _alert(self, view, headline, kind, summary, cycle, now):
        if view.get("alerts_paused"):
            log.info("%s: not alerting: its alerts are paused", self.device)
            return
        lines = [summary + ".", "", f"Power off: {_when(cycle.at)}"]
        if cycle.came_back_at is not None:
            lines.append(f"Heard again: {_when(cycle.came_back_at)}")
        if view.get("last_heard_at") is not None and cycle.came_back_at is None:
            lines.append(f"Last heard: {_when(view['last_heard_at'])}")
        lines += [f"Watched by: {self._watcher}", "", f"\u2014 phonehome peer watchdog on {self._watcher}"]
        self.alerts.put(Message(subject=f"{headline}: {self.device}", body="\n".join(lines) + "\n",
                                device=self.device, kind=kind, at=now.wall))

    # -- the state file ------------------------------------------------------

    def _load(self):
        try:
            with open(self._path, encoding="utf-8") as f:
                data = json.load(f)
            if data.get("device") != self.device:
                return ()  # another peer's history: its gap says nothing about this one
            return tuple(PowerCycle(at=float(c["at"]), came_back_at=None if c.get("came_back_at") is None
                                    else float(c["came_back_at"])) for c in data["cycles"])
        except FileNotFoundError:
            return ()
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("cannot read %s (%s); starting without the record of earlier power cycles",
                        self._path, exc)
            return ()

    def _save(self):
        data = {"device": self.device, "cycles": [c.as_json() for c in self.cycler.cycles]}
        try:
            os.makedirs(os.path.dirname(self._path), exist_ok=True)
            write_atomic(self._path, json.dumps(data, indent=1) + "\n")
        except OSError as exc:
            if not self._save_failing:
                log.error("cannot write %s (%s): the power cycles are kept in memory only, so a restart "
                          "forgets power_cycle_min_gap_s; make data_dir writable", self._path, exc.strerror or exc)
            self._save_failing = True
            return
        self._save_failing = False

    # -- the thread ------------------------------------------------------------

    def start(self):
        self.alerts.start()
        self._thread = threading.Thread(target=self._run, name=f"peer relay {self.device}", daemon=True)
        self._thread.start()
        return self

    def wake(self):
        """The peer changed: tick now rather than at the time the last tick named."""
        self._wake.set()

    def _run(self):
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                delay = self.tick(self._clock.now())
            except Exception:  # a bug must not leave the peer without power: stop() still switches it on
                log.exception("peer watchdog step failed (a bug: please report it); retrying in 10 s")
                delay = 10.0
            self._wake.wait(delay)

    def stop(self):
        """Stop the thread, give the peer its power back (also in the middle of a power cycle), release the
        pin and stop the alerts (an alert still being retried is dropped). Idempotent."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None
        if self.relay is not None:
            if self.cycler.phase == "off":
                now = self._clock.now()
                try:
                    self.relay.power_on()
                    self.cycler.done(ON, now)
                    log.warning("%s: stopping in the middle of a power cycle: its power is back on", self.device)
                except HardwareUnavailable as exc:
                    log.error("%s: could not switch its power back on at stop: %s", self.device, exc)
            _close(self.relay)
            self.relay = None
        self.alerts.stop()


def _when(epoch_s):
    return time.strftime("%a %Y-%m-%d %H:%M:%S %Z", time.localtime(epoch_s))


def _close(relay):
    try:
        relay.close()
    except Exception:
        log.debug("closing the peer's relay failed", exc_info=True)


class AlertOutbox:
    """Sends messages through alert channels on one thread, each retried a bounded number of times.

    Every message goes to every channel in ``channels`` (appliance.alerts
    channels). A retryable DeliveryError is retried after a back-off from
    ``retry_first_s`` doubling up to ``retry_max_s``, at most ``tries``
    times in all; one that cannot be retried is given up at once. Retry
    times run on the monotonic clock. Nothing is kept across a restart.
    """

    def __init__(self, channels, *, clock, retry_first_s=ALERT_RETRY_FIRST_S, retry_max_s=ALERT_RETRY_MAX_S,
                 tries=ALERT_TRIES, rand=random.random):
        self._channels = list(channels)
        self._clock = clock
        self._retry = dict(first_s=retry_first_s, max_s=retry_max_s, rand=rand)
        self._tries = tries
        self._pending = []  # [channel, message, attempts so far, monotonic time of the next try]
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = None

    def configure(self, channels):
        """Send later messages through ``channels``; those already queued keep theirs."""
        with self._lock:
            self._channels = list(channels)

    def put(self, message):
        """Queue ``message`` for every channel; returns at once."""
        now = self._clock.now()
        with self._lock:
            if not self._channels:
                log.warning("no alert channel is configured, so nobody is told: %s", message.subject)
            self._pending += [[channel, message, 0, now.mono] for channel in self._channels]
        self._wake.set()

    def tick(self, now):
        """Send what is due at ``now``; return seconds until the next retry, None when nothing is queued."""
        with self._lock:
            due = [p for p in self._pending if p[3] <= now.mono]
        for item in due:
            channel, message, attempts, _ = item
            try:
                channel.send(message)
            except DeliveryError as exc:
                attempts += 1
                if not exc.retryable or attempts >= self._tries:
                    why = "retrying cannot help" if not exc.retryable else f"{attempts} tries"
                    log.error("alert %r via %s given up (%s): %s", message.subject, channel.label, why, exc)
                    self._drop(item)
                else:
                    item[2], item[3] = attempts, now.mono + backoff_s(attempts, **self._retry)
                    log.warning("alert %r via %s failed, retrying: %s", message.subject, channel.label, exc)
                continue
            log.info("alert sent via %s: %s", channel.label, message.subject)
            self._drop(item)
        with self._lock:
            if not self._pending:
                return None
            return max(0.0, min(p[3] for p in self._pending) - now.mono)

    def _drop(self, item):
        with self._lock:
            self._pending = [p for p in self._pending if p is not item]

    def start(self):
        self._thread = threading.Thread(target=self._run, name="peer alerts", daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                delay = self.tick(self._clock.now())
            except Exception:
                log.exception("sending the peer watchdog's alerts failed; retrying in 30 s")
                delay = 30.0
            self._wake.wait(60.0 if delay is None else delay)

    def stop(self, *, join_s=35.0):
        """Stop the thread (an alert being sent finishes first, at most ``join_s``). Idempotent."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(join_s)
            self._thread = None

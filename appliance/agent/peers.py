"""The peer watchdog's side of the agent: what this Pi tells its cloud monitor about the peers it watches,
telling it at once when one changes, and the relay that power-cycles a silent one.

The monitor inside the agent (``[monitor]`` with ``[[monitor.devices]]``)
decides who is up or down and alerts through ``[alerts]`` on its own, so a
peer's failure is reported even when this Pi cannot reach its cloud monitor.
``PeerWatch`` adds to it:

* the ``peers`` list every heartbeat to a phonehome target carries
  (``peers_payload``);
* a beat to the phonehome targets as soon as the inside monitor records a
  peer going down or up, or the relay power-cycles it (``BeatNotifier``): the
  monitor's ``on_events`` hook only sets a flag, and the beat is sent from the
  notifier's own thread, never under the monitor's lock;
* the relay (``appliance.agent.watchdog.PeerWatchdog``) when ``[peer]
  relay_pin`` is set.
"""

import logging
import threading

log = logging.getLogger("phonehome.agent")

MAX_PEERS = 50   # peers in one heartbeat: down ones first, then by name
MAX_CYCLES = 5   # power cycles per peer in one heartbeat: the most recent, oldest first
# The monitor's events that change what the heartbeat says of a peer (a reminder or a clock change does not).
# By kind value ("down", "up", "first-seen"): the monitor may add kinds of its own.
BEAT_ON = frozenset({"down", "up", "first-seen"})


def peers_payload(devices, cycles=None):
    """The heartbeat's ``peers`` list: one dict per watched device.

    ``devices`` are MonitorService.devices() dicts; ``cycles`` maps a device
    name to its relay.PowerCycles, oldest first. Each entry is
    ``{"name", "state" ("up", "down" or "new"), "last_heard_at" (epoch s or
    None), "down_since" (epoch s while down, else None), "power_cycles":
    [{"at", "came_back_at"}]}``; at most MAX_PEERS entries (down ones first,
    then by name) with at most MAX_CYCLES power cycles each.
    """
    cycles = cycles or {}
    down = sorted((d for d in devices if d["state"] == "down"), key=lambda d: d["name"])
    others = sorted((d for d in devices if d["state"] != "down"), key=lambda d: d["name"])
    return [{
        "name": d["name"],
        "state": d["state"],
        "last_heard_at": d["last_heard_at"],
        "down_since": d["outage_started_at"] if d["state"] == "down" else None,
        "power_cycles": [c.as_json() for c in tuple(cycles.get(d["name"], ()))[-MAX_CYCLES:]],
    } for d in (down + others)[:MAX_PEERS]]


class BeatNotifier:
    """Calls ``beat()`` on its own thread whenever ``notify()`` was called since the last call began.

    Notifications that arrive while a beat is under way make one more beat,
    not one each. ``notify`` never blocks, so it may be called under another
    object's lock. ``beat`` is expected to be bounded (HeartbeatSender.beat_now
    is, by heartbeat.timeout_s); an exception from it is logged.
    """

    def __init__(self, beat):
        self._beat = beat
        self._due = threading.Event()
        self._stopping = threading.Event()
        self._thread = None

    def notify(self):
        self._due.set()

    def start(self):
        self._thread = threading.Thread(target=self._run, name="peer beats", daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while True:
            self._due.wait()
            if self._stopping.is_set():
                return
            self._due.clear()
            try:
                self._beat()
            except Exception:  # a bug here must not end the reports; the regular beats go on regardless
                log.exception("sending a heartbeat about a peer's change failed")

    def stop(self, *, join_s=15.0):
        """Stop the thread (a beat under way finishes first, waited for at most ``join_s``). Idempotent."""
        self._stopping.set()
        self._due.set()
        if self._thread is not None:
            self._thread.join(join_s)
            self._thread = None


class PeerWatch:
    """The peer watchdog's parts that live beside the inside monitor, swapped as the config changes.

    ``service()`` returns the inside monitor's MonitorService (None when it
    does not run); ``beat()`` sends a heartbeat to the phonehome targets now.
    ``pin_factory``, ``channels`` and ``retry_first_s`` go to the relay's
    PeerWatchdog (tests hand in gpiozero's MockFactory and their own channels).
    """

    def __init__(self, *, service, beat, clock, pin_factory=None, channels=None, retry_first_s=None):
        self._service = service
        self._clock = clock
        self._options = {"pin_factory": pin_factory, "channels": channels}
        if retry_first_s is not None:
            self._options["retry_first_s"] = retry_first_s
        self._beat = beat
        self._notifier = None
        self._key = None
        self._alerts = None
        self._payload_failing = False
        self.watchdog = None

    def apply(self, config):
        """Start, restart or stop the parts ``config`` asks for. Never raises: the relay is a help, heartbeats
        and the monitor go on without it."""
        if config.monitor is not None and self._notifier is None:
            self._notifier = BeatNotifier(self._beat).start()
        elif config.monitor is None:
            self._stop_notifier()
        wanted = config.monitor is not None and config.peer.relay_pin is not None
        key = (config.peer, config.data_dir, config.device.name) if wanted else None
        if key != self._key:
            self._stop_watchdog()
            self._key = key
            if key is not None:
                self._start_watchdog(config)
        elif self.watchdog is not None and config.alerts != self._alerts:
            self._configure_alerts(config)

    def _start_watchdog(self, config):
        from appliance.agent.watchdog import PeerWatchdog

        try:
            self.watchdog = PeerWatchdog(config, service=self._service, clock=self._clock,
                                         notify=self._notify, **self._options).start()
            self._alerts = config.alerts
        except Exception:  # e.g. an alert channel that cannot be built: the rest goes on
            log.exception("the peer watchdog's relay could not start; the monitor and heartbeats go on")
            self.watchdog = None

    def _configure_alerts(self, config):
        from appliance.alerts.channels import build_channels

        try:
            self.watchdog.alerts.configure(build_channels(config.alerts))
            self._alerts = config.alerts
        except Exception:
            log.exception("the peer watchdog keeps its previous alert channels")

    def on_events(self, events):
        """MonitorService's hook, called with the monitor's lock held: flags a beat and wakes the relay.

        Returns at once and never calls back into the monitor.
        """
        if any(getattr(e.kind, "value", e.kind) in BEAT_ON for e in events):
            self._notify()
            watchdog = self.watchdog
            if watchdog is not None:
                watchdog.wake()

    def _notify(self):
        notifier = self._notifier
        if notifier is not None:
            notifier.notify()

    def payload(self):
        """The heartbeat's ``peers`` list (see peers_payload), or None when no monitor with devices runs.

        Never raises: a heartbeat goes out without the list rather than not at all.
        """
        try:
            service = self._service()
            devices = service.devices() if service is not None else ()
            if not devices:
                return None
            watchdog = self.watchdog
            cycles = {watchdog.device: watchdog.cycles()} if watchdog is not None else {}
            payload = peers_payload(devices, cycles)
        except Exception:
            if not self._payload_failing:
                log.exception("heartbeats go out without their 'peers' list (a bug: please report it)")
            self._payload_failing = True
            return None
        self._payload_failing = False
        return payload

    def _stop_watchdog(self):
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None

    def stop(self):
        """Stop the relay (its peer keeps or gets its power) and the notifier. Idempotent."""
        self._stop_watchdog()
        self._key = None
        self._stop_notifier()

    def _stop_notifier(self):
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier.stop()

"""The agent role: heartbeats, plus a monitor inside when the config has a [monitor] table.

It starts with an empty or missing config, as on a new appliance's first
boot: it says "not configured" once and waits for settings; the runtime
re-applies the config whenever the file changes.
"""

import logging
import os
import threading

from appliance.agent.peers import PeerWatch
from appliance.clock import SystemClock
from appliance.errors import PhonehomeError
from appliance.roles import MonitorRole

log = logging.getLogger("phonehome.agent")

NETWORK_READ_S = 10.0
REBOOT_COMMAND = ("systemctl", "reboot")


def reboot():
    """Reboot the machine; return None, or what went wrong."""
    import subprocess

    try:
        done = subprocess.run(REBOOT_COMMAND, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not run {' '.join(REBOOT_COMMAND)}: {exc}"
    if done.returncode != 0:
        return f"{' '.join(REBOOT_COMMAND)} failed: {(done.stderr or done.stdout).strip() or done.returncode}"
    log.warning("rebooting, as asked from the web page")
    return None


class AgentRole:
    """Runs what the config asks for and swaps parts when the config changes."""

    def __init__(self, config, *, config_path="", clock=None, pin_factory=None):
        self._config = config
        self._config_path = config_path
        self._clock = clock or SystemClock()
        self.sender = None
        self.monitor = None
        self.time = None
        self.panel = None
        self.setup = None
        self.paused = False
        self._network = None
        self._network_read_mono = None
        self._setup_stamp = None
        self._snapshot_lock = threading.Lock()
        self.web = None
        self.wifi = None
        self.control = None  # the runtime's Control (set by runtime.serve): reloads and restarts on its loop
        # The peer watchdog's reports and relay; ``pin_factory`` is gpiozero's for the relay (tests: MockFactory).
        self.peers = PeerWatch(service=lambda: getattr(self.monitor, "service", None), beat=self._beat_peers,
                               clock=self._clock, pin_factory=pin_factory)

    @property
    def config(self):
        """The config now running."""
        return self._config

    @property
    def config_path(self):
        return self._config_path

    def reload_now(self, *, wait_s=10.0):
        """Re-read the config file and apply it now; return runtime.Applied (None if it took over ``wait_s``).

        Under ``runtime.serve`` the daemon's loop does it, so two reloads never overlap.
        """
        from appliance.runtime import Applied, reload_config

        if self.control is not None:
            return self.control.reload(wait_s=wait_s)
        ok, error = reload_config(self, self._config_path)
        return Applied(ok, self._clock.now().wall, error)

    def start(self):
        # The monitor first, so a Pi that phones itself (the demo) does not start with a refused beat;
        # a monitor that cannot start is logged and never keeps the Pi from phoning home.
        self._apply_monitor(self._config)
        self.peers.apply(self._config)
        self._apply_time(self._config)
        self._apply_sender(self._config)
        self._apply_panel(self._config)
        self._apply_web(self._config)
        self._apply_system(self._config)
        return self

    def apply(self, config):
        old, self._config = self._config, config
        if (old.time, old.data_dir) != (config.time, config.data_dir):
            self._apply_time(config)
        if (old.device, old.heartbeat, old.data_dir) != (config.device, config.heartbeat, config.data_dir):
            self._stop_sender()
            self._apply_sender(config)
        if (old.display, old.leds, old.button, old.data_dir) != (config.display, config.leds, config.button,
                                                                 config.data_dir):
            self._stop_panel()
            self._apply_panel(config)
        if config.monitor is None:
            self._stop_monitor()
        self._apply_monitor(config)
        self.peers.apply(config)
        if (old.web.listen, old.data_dir) != (config.web.listen, config.data_dir):
            self._apply_web(config, old=self.web)
        if (old.wifi, old.system) != (config.wifi, config.system):
            self._apply_system(config)

    def _apply_system(self, config):
        """The setup hotspot and the read-only root flag; neither may stop heartbeats when it fails."""
        from appliance import rootfs
        from appliance.wifi import WifiManager

        if self.wifi is None or self.wifi.config != config.wifi:
            if self.wifi is not None:
                self.wifi.stop()
            self.wifi = WifiManager(config.wifi, clock=self._clock)
            self.wifi.start()
        if self._config_path:
            try:
                rootfs.set_flag(self._config_path, config.system.read_only_root)
            except OSError as exc:
                log.error("cannot set the read-only root flag next to %s: %s", self._config_path, exc)

    def _apply_web(self, config, *, old=None):
        """Serve the setup page and dashboard on web.listen; a page that cannot start never stops heartbeats.

        On a change of address the new server starts first and the old one
        stops a moment later, so the request that saved the change still gets
        its answer; when the new address cannot be used, the old server stays.
        """
        listen = config.web.listen
        if not listen:
            self.web = None
            if old is not None:
                threading.Timer(1.0, old.stop).start()
            log.info("web page off (web.listen is empty)")
            return
        same_port = old is not None and old.listen.rpartition(":")[2] == listen.rpartition(":")[2]
        if same_port:
            old.stop()  # the same port on another host (or a new data_dir): the old socket holds the port
        server = self._serve_web(listen)
        if server is None and old is not None and not same_port:
            log.error("the web page stays on http://%s/", old.listen)
            self.web = old
            return
        if server is None and same_port:
            server = self._serve_web(old.listen)  # back where it was, so the owner is not locked out
        self.web = server
        if old is not None and not same_port:
            threading.Timer(1.0, old.stop).start()

    def _serve_web(self, listen):
        from web import create_agent_app
        from web.server import HttpServer

        try:
            server = HttpServer(create_agent_app(self, reboot=reboot), listen).start()
        except OSError as exc:
            log.error("the web page cannot listen on %s (%s); change web.listen or stop what uses that port; "
                      "heartbeats go on", listen, exc.strerror)
            return None
        except Exception:
            log.exception("the web page could not start; heartbeats go on")
            return None
        log.info("web page on http://%s/", listen)
        return server

    def _stop_web(self):
        if self.web is not None:
            self.web.stop()
            self.web = None

    def _apply_monitor(self, config):
        if config.monitor is None:
            return
        try:
            if self.monitor is None:
                self.monitor = MonitorRole(config, clock=self._clock, web_mode="appliance",
                                           on_events=self.peers.on_events).start()
            else:
                self.monitor.apply(config)
        except PhonehomeError as exc:
            log.error("the monitor inside this agent is not running: %s; heartbeats go on", exc)
            self.monitor = None

    def _apply_time(self, config):
        """Start the clock check, stopping a running one first (it writes its history).

        It runs from first boot on, configured or not: the owner wants to see the
        clock. The new checker is swapped in whole, so a heartbeat never sees a
        half-made one.
        """
        from appliance.timecheck.checker import TimeChecker

        old = self.time
        if old is not None:
            try:
                old.stop()
            except Exception:
                log.exception("stopping the previous clock check failed; starting the new one all the same")
        try:
            checker = TimeChecker(config.time, clock=self._clock, data_dir=config.data_dir)
            checker.start()
        except Exception:  # the clock check is a report: it must never keep the Pi from phoning home
            log.exception("the clock check could not start; heartbeats go on without a clock report")
            checker = None
        self.time = checker

    def _time_payload(self):
        checker = self.time  # read once: a reload may swap it meanwhile
        return checker.status.as_payload() if checker is not None else None

    def _apply_sender(self, config):
        from appliance.agent.heartbeats import HeartbeatSender

        if not config.agent_configured:
            if config.monitor is None:
                where = self._config_path or "the config file"
                log.warning("not configured: set [device] name and at least one [[heartbeat.targets]] in %s; "
                            "waiting for settings", where)
            return
        try:
            os.makedirs(config.data_dir, exist_ok=True)
        except OSError as exc:
            log.warning("cannot create data_dir %s (%s): heartbeats go on, but send failures will not be "
                        "remembered across a restart; set data_dir to a writable directory", config.data_dir,
                        exc.strerror)
        self.sender = HeartbeatSender(config, clock=self._clock, data_dir=config.data_dir,
                                      time_status=self._time_payload, peers=self.peers.payload)
        if self.paused:
            self.sender.pause()
        self.sender.start()
        log.info("agent '%s' phoning home every %g s to %s", config.device.name, config.heartbeat.interval_s,
                 ", ".join(t.label for t in config.heartbeat.targets))

    def _beat_peers(self):
        """A peer changed: tell the phonehome targets now rather than with the next beat."""
        sender = self.sender  # read once: a reload may swap it meanwhile
        if sender is not None:
            sender.beat_now(kinds=("phonehome",))

    def pause(self):
        """Stop sending heartbeats (the demo's simulated outage) until resume()."""
        self.paused = True
        if self.sender is not None:
            self.sender.pause()

    def resume(self):
        self.paused = False
        if self.sender is not None:
            self.sender.resume()

    def _stop_sender(self):
        if self.sender is not None:
            self.sender.stop()
            self.sender = None

    def _apply_panel(self, config):
        """The OLED, LEDs and button, when any is configured; absent hardware is retried by the panel itself."""
        with self._snapshot_lock:
            setup = self._current_setup()
        if not setup.claimed:
            log.info("setup code %s: enter it at %s to claim this appliance", setup.code, setup.url)
        if config.display.driver == "none" and not config.leds.pins and config.button.pin is None:
            return
        try:
            from hardware.panel import StatusPanel

            self.panel = StatusPanel(config, snapshot=self.snapshot, clock=self._clock,
                                     config_path=self._config_path).start()
        except Exception:  # the panel is a report: it must never keep the Pi from phoning home
            log.exception("the status display could not start; heartbeats go on")
            self.panel = None

    def healthy(self, now_mono):
        """False while a heartbeat loop is stuck: the runtime then stops feeding systemd's watchdog."""
        sender = self.sender
        return sender is None or not sender.stuck(now_mono)

    def snapshot(self):
        """The appliance's status now (status.Snapshot) for the display, the LEDs and the web page."""
        from appliance.agent.system import read_uptime_s
        from appliance.network import read_network
        from appliance.status import Peer, build_snapshot

        now = self._clock.now()
        with self._snapshot_lock:  # the display's and the LEDs' threads both ask; one reads the files
            # The network is read at most every NETWORK_READ_S: it changes rarely and reading it may run iw.
            if self._network_read_mono is None or now.mono - self._network_read_mono >= NETWORK_READ_S:
                self._network, self._network_read_mono = read_network(), now.mono
            setup = self._current_setup()
        # Each part is read once: a reload may swap or stop it meanwhile.
        sender, checker, config, monitor = self.sender, self.time, self._config, self.monitor
        service = getattr(monitor, "service", None)
        peers = () if service is None else \
            [Peer(d["name"], d["state"], d["last_heard_at"]) for d in service.devices(now)]
        return build_snapshot(now.wall, device_name=config.device.name, configured=config.agent_configured,
                              targets=sender.status() if sender is not None else (),
                              time_status=checker.status if checker is not None else None,
                              network=self._network, uptime_s=read_uptime_s(), setup=setup, peers=peers)

    def _current_setup(self):
        """The setup state, read again whenever setup.json changed (a factory reset, a claim on the web page)."""
        from appliance.setup import FILE_NAME, load_setup

        try:
            stamp = os.stat(os.path.join(self._config.data_dir, FILE_NAME)).st_mtime_ns
        except OSError:
            stamp = None
        if stamp != self._setup_stamp or self.setup is None:
            before = self.setup
            self.setup, self._setup_stamp = load_setup(self._config.data_dir), stamp
            if before is not None and not self.setup.claimed and self.setup.code != before.code:
                log.info("new setup code %s: enter it at %s to claim this appliance", self.setup.code,
                         self.setup.url)
        return self.setup

    def _stop_panel(self):
        if self.panel is not None:
            self.panel.stop()
            self.panel = None

    def _stop_time(self):
        if self.time is not None:
            self.time.stop()
            self.time = None

    def _stop_monitor(self):
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None

    def stop(self):
        self.peers.stop()  # first: the relay gives its peer the power back
        if self.wifi is not None:
            self.wifi.stop()
        self._stop_web()
        self._stop_panel()
        self._stop_sender()
        self._stop_time()
        self._stop_monitor()

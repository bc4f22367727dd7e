"""The agent's Wi-Fi part: looks at NetworkManager every few seconds, opens and closes the setup hotspot, and
joins the network a person chose on the Wi-Fi page.

``tick(now)`` is one look and the actions it calls for (tests call it directly); the thread only repeats it.
The decision is ``hotspot.step``; what it sees comes from ``nmcli.Nmcli``. Each change of state is one log
line. Stopping leaves an open hotspot open: a restarted agent (a reload, an update) takes it over, so a
person connected to it is not thrown off.
"""

import logging
import threading
from dataclasses import dataclass, replace

from appliance.clock import SystemClock
from appliance.wifi import hotspot
from appliance.wifi.nmcli import HOTSPOT, HOTSPOT_ADDRESS, WIFI_TYPE, Nmcli, WifiError, join_problem

log = logging.getLogger("phonehome.wifi")

POLL_S = 5.0
IDLE_POLL_S = 30.0  # without usable Wi-Fi: a USB Wi-Fi stick plugged in later is still noticed
STOP_WAIT_S = 5.0
# Connections that lead somewhere. Not: lo (listed since NetworkManager 1.42), tunnels, Wi-Fi P2P.
UPLINK_TYPES = {"ethernet", "wifi", "gsm", "cdma", "bond", "bridge", "vlan", "team", "pppoe", "infiniband"}
PAGE_URL = f"http://{HOTSPOT_ADDRESS}/wifi"


@dataclass(frozen=True)
class View:
    """What the Wi-Fi page shows: the state and why, when it began (wall-clock epoch s), the connections
    up [nmcli.Device], whether the hotspot is up, and why the Wi-Fi cannot be used ("" when it can)."""

    state: str = hotspot.STARTING
    reason: str = "not looked yet"
    since_wall: float | None = None
    uplinks: tuple = ()
    hotspot_up: bool = False
    problem: str = ""


@dataclass(frozen=True)
class JoinResult:
    """How a join ended: ``ok``, and a message for people; ``at_wall`` in epoch seconds."""

    ssid: str
    ok: bool
    message: str
    at_wall: float


class WifiManager:
    """The setup hotspot and joins for the [wifi] table ``config``.

    ``clock`` has ``now()`` returning a clock.Now; ``nmcli`` is an nmcli.Nmcli (default: the system's).
    """

    def __init__(self, config, *, clock=None, nmcli=None, poll_s=POLL_S):
        self.config = config
        self._clock = clock or SystemClock()
        self._nm = nmcli or Nmcli()
        self._poll_s = poll_s
        self._timing = hotspot.Timing(after_s=config.hotspot_after_s)
        self._state = hotspot.first(self._clock.now().mono)
        self._tick_lock = threading.Lock()  # one look at a time: the thread's, a join's and a test's
        self._join_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = None
        self._join_thread = None
        self._ssid = None
        self._page_mono = None
        self._failed = set()  # actions that failed, logged once until they work again
        self.view = View()
        self.last_flip = None
        self.networks = []  # the last list seen, kept: the radio cannot scan while it is the hotspot
        self.networks_at = None  # wall-clock epoch seconds of that list
        self.joining = ""  # the network being joined
        self.last_join = None  # JoinResult

    @property
    def hotspot_up(self):
        """True when the last look saw the hotspot up."""
        return self.view.hotspot_up

    @property
    def ssid(self):
        """The hotspot's name, phonehome-XXXX: the last four hex digits of the Wi-Fi MAC, so two differ."""
        if self._ssid is None:
            try:
                mac = self._nm.hardware_address(self.config.interface).replace(":", "").upper()
            except WifiError:
                mac = ""
            if len(mac) < 4:
                return "phonehome-setup"  # asked again next time
            self._ssid = f"phonehome-{mac[-4:]}"
        return self._ssid

    def start(self):
        """Look on a thread of its own until ``stop()``; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="wifi", daemon=True)
            self._thread.start()
        return self

    def stop(self):
        """Stop looking, within about STOP_WAIT_S (a command under way finishes on its own). Idempotent."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(STOP_WAIT_S)

    def _run(self):
        while not self._stopping.is_set():
            try:
                delay = self.tick(self._clock.now())
            except Exception:  # noqa: BLE001 - the agent must outlive any bug here; heartbeats go on
                log.exception("the Wi-Fi check failed; trying again in %g s", IDLE_POLL_S)
                delay = IDLE_POLL_S
            self._stopping.wait(delay)

    def page_used(self):
        """Someone has the Wi-Fi page open: an open hotspot does not step aside for a retry meanwhile."""
        self._page_mono = self._clock.now().mono

    def tick(self, now):
        """Look once at ``now`` (a clock.Now), act on the decision; return seconds until the next look."""
        with self._tick_lock:
            facts, uplinks = self._look()
            state, actions, flip = hotspot.step(self._state, facts, now.mono, enabled=self.config.hotspot,
                                                timing=self._timing)
            self._state = state
            if flip is not None:
                self.last_flip = flip
                self._log(flip)
            since_wall = now.wall - (now.mono - state.since)
            self.view = View(state.name, flip.reason if flip else self.view.reason, since_wall, tuple(uplinks),
                             facts.hotspot, facts.problem)
            for action in actions:
                if not self._stopping.is_set():
                    self._act(action)
        return IDLE_POLL_S if state.name == hotspot.OFF else self._poll_s

    def _look(self):
        try:
            devices = self._nm.devices()
        except WifiError as exc:
            return hotspot.Facts(problem=str(exc)), []
        interface = self.config.interface
        wifi = next((d for d in devices if d.name == interface), None)
        problem = ""
        if wifi is None or wifi.type != "wifi":
            problem = (f"NetworkManager has no Wi-Fi device {interface!r}; set wifi.interface to the Wi-Fi device "
                       f"'nmcli device status' lists")
        elif wifi.state in ("unmanaged", "unavailable"):
            problem = (f"the Wi-Fi device {interface} is {wifi.state} in NetworkManager (switched off? "
                       f"'nmcli radio wifi on' switches it on)")
        up = wifi is not None and wifi.connected and wifi.connection == HOTSPOT
        uplinks = [d for d in devices if d.connected and d.type in UPLINK_TYPES and d.connection != HOTSPOT]
        saved = up and not uplinks and self._saved_wifi()
        return hotspot.Facts(problem=problem, uplink=uplinks[0].connection if uplinks else "", hotspot=up,
                             joining=self.joining, saved_wifi=saved, page_mono=self._page_mono), uplinks

    def _saved_wifi(self):
        try:
            return any(p.type == WIFI_TYPE and p.autoconnect and p.name != HOTSPOT for p in self._nm.profiles())
        except WifiError:
            return False

    def _log(self, flip):
        detail = ""
        if flip.new == hotspot.HOTSPOT:
            detail = f" (Wi-Fi {self.ssid}: join it and open {PAGE_URL})"
        if flip.new == hotspot.OFF:
            log.info("setup hotspot idle: %s", self._state.why)  # once per reason: nothing is wrong with the rest
            return
        calm = flip.new in (hotspot.ONLINE, hotspot.JOINING) or flip.old == hotspot.STARTING  # e.g. a boot
        level = logging.INFO if calm else logging.WARNING
        log.log(level, "wifi: %s -> %s: %s%s", flip.old, flip.new, flip.reason, detail)

    def _act(self, action):
        try:
            if action == hotspot.OPEN:
                self._refresh_networks()  # the last chance: an open hotspot holds the radio
                self._nm.hotspot_up(self.config.interface, self.ssid)
            else:
                self._nm.hotspot_down()
        except WifiError as exc:
            if action not in self._failed:
                log.error("the setup hotspot could not %s: %s", action, exc)
            self._failed.add(action)
            return
        # The page goes by this until the next look: a hotspot just opened is open.
        self.view = replace(self.view, hotspot_up=action == hotspot.OPEN)
        if action in self._failed:
            log.info("the setup hotspot could %s again", action)
            self._failed.discard(action)

    def _refresh_networks(self):
        try:
            self.networks = self._nm.networks(self.config.interface)
            self.networks_at = self._clock.now().wall
        except WifiError as exc:
            log.warning("could not list the Wi-Fi networks in range: %s", exc)

    def networks_in_range(self):
        """([nmcli.Network], wall-clock time of the list or None, error message or "").

        While the hotspot is up (or a join runs) the list from before is given: the radio cannot scan then.
        """
        if not self.hotspot_up and not self.joining:
            try:
                self.networks = self._nm.networks(self.config.interface)
                self.networks_at = self._clock.now().wall
            except WifiError as exc:
                return self.networks, self.networks_at, str(exc)
        return self.networks, self.networks_at, ""

    def join(self, ssid, passphrase, *, delay_s=0.0):
        """Join ``ssid`` on a thread of its own after ``delay_s`` (so the page's answer leaves before the
        hotspot closes); ``last_join`` holds the outcome. Raises WifiError while another join runs."""
        with self._join_lock:
            if self.joining:
                raise WifiError(f"the appliance is joining '{self.joining}' now; wait for the result and try again")
            self.joining = ssid
            self._join_thread = threading.Thread(target=self._join, args=(ssid, passphrase, delay_s),
                                                 name="wifi join", daemon=True)
            self._join_thread.start()

    def wait_join(self, timeout_s):
        """Wait up to ``timeout_s`` for a join under way; return ``last_join``."""
        thread = self._join_thread
        if thread is not None:
            thread.join(timeout_s)
        return self.last_join

    def _join(self, ssid, passphrase, delay_s):
        seen = next((n for n in self.networks if n.ssid == ssid), None)
        try:
            self.tick(self._clock.now())  # the decision knows of the join before the hotspot goes down for it
            if self._stopping.wait(delay_s):
                raise WifiError("the agent stopped before the join began; try again")
            self._nm.join(self.config.interface, ssid, passphrase, hidden=seen is None,
                          key_mgmt=seen.key_mgmt if seen is not None else "wpa-psk")
            result = JoinResult(ssid, True, f"joined '{ssid}'", self._clock.now().wall)
            log.info("wifi: joined '%s', as asked on the Wi-Fi page", ssid)
        except WifiError as exc:
            result = JoinResult(ssid, False, join_problem(ssid, exc), self._clock.now().wall)
            log.warning("wifi: could not join '%s': %s", ssid, exc)
        except Exception:  # noqa: BLE001 - the page must get an answer whatever happened
            log.exception("wifi: joining '%s' failed", ssid)
            result = JoinResult(ssid, False, f"could not join '{ssid}': an unexpected error (the service log "
                                             f"has the details)", self._clock.now().wall)
        with self._join_lock:
            self.last_join, self.joining = result, ""
        if not self._stopping.is_set():
            self.tick(self._clock.now())  # at once: a failed join from the hotspot reopens it now

"""Wi-Fi for the appliance: the setup hotspot when there is no network, and joining a network from the page.

``WifiManager`` runs on its own thread in the agent: every few seconds it asks NetworkManager what is up and
lets HotspotPolicy decide; the web page asks it for the networks in range and to join one.
"""

import logging
import threading
import time

from appliance.wifi import nmcli
from appliance.wifi.hotspot import HotspotPolicy, Seen
from appliance.wifi.nmcli import HOTSPOT, HOTSPOT_ADDRESS, WifiError

log = logging.getLogger("phonehome.wifi")

POLL_S = 5.0
__all__ = ["WifiManager", "WifiError", "HOTSPOT_ADDRESS"]


class WifiManager:
    """The hotspot and the Wi-Fi page's actions for one interface (``config`` is the [wifi] table)."""

    def __init__(self, config, *, monotonic=time.monotonic, tools=nmcli):
        self.config = config
        self._monotonic = monotonic
        self._nm = tools
        self._policy = HotspotPolicy(config.hotspot_after_s)
        self._stopping = threading.Event()
        self._thread = None
        self._page_used_at = None
        self._said = None
        self.hotspot_up = False
        self.networks = []  # the last scan, kept: the radio cannot scan while it is the hotspot
        self.joining = None  # the SSID being joined, while it lasts
        self.last_join = None  # (ssid, None or the error) of the last join

    @property
    def ssid(self):
        return self._nm.hotspot_name(self.config.interface)

    def start(self):
        if not self.config.hotspot:
            log.info("setup hotspot off ([wifi] hotspot = false)")
            return
        self._thread = threading.Thread(target=self._run, daemon=True, name="wifi")
        self._thread.start()

    def stop(self):
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(nmcli.JOIN_TIMEOUT_S + 15)

    def page_used(self):
        """The Wi-Fi page was used: someone is setting the appliance up, keep the hotspot open for them."""
        self._page_used_at = self._monotonic()

    def _run(self):
        while not self._stopping.is_set():
            self.step(self._monotonic())
            self._stopping.wait(POLL_S)

    def _say(self, key, level, message, *args):
        """Log only when the situation changes: one line per change, not one per poll."""
        if self._said != key:
            self._said = key
            log.log(level, message, *args)

    def step(self, now):
        """Look at NetworkManager once and act on the policy's decision."""
        try:
            devices = self._nm.devices()
        except WifiError as exc:
            self._say("nm", logging.WARNING, "setup hotspot idle: %s", exc)
            return
        interface = self.config.interface
        has_wifi = any(d[0] == interface and d[1] == "wifi" for d in devices)
        if not has_wifi:
            self._say("no-wifi", logging.INFO, "setup hotspot idle: no Wi-Fi device %s", interface)
        up = [d for d in devices if d[2].startswith("connected") and d[1] in ("wifi", "ethernet")]
        self.hotspot_up = any(d[3] == HOTSPOT for d in up)
        online = any(d[3] != HOTSPOT for d in up)
        seen = Seen(has_wifi=has_wifi, online=online or self.joining is not None, hotspot_up=self.hotspot_up,
                    page_used_at=self._page_used_at)
        action = self._policy.decide(now, seen)
        try:
            if action == "open":
                self._open()
            elif action == "close":
                self._nm.hotspot_down()
                self.hotspot_up = False
                why = "a network is up" if online else "trying the saved Wi-Fi networks for a minute"
                self._say("closed", logging.INFO, "setup hotspot %s closed: %s", self.ssid, why)
        except WifiError as exc:
            self._say(f"error-{action}", logging.ERROR, "setup hotspot could not %s: %s", action, exc)
        if online and not self.hotspot_up:
            self._say("online", logging.INFO, "network up; setup hotspot not needed")

    def _open(self):
        try:
            self.networks = self._nm.scan(self.config.interface)
        except WifiError as exc:
            log.warning("Wi-Fi scan before opening the hotspot failed: %s", exc)
        self._nm.hotspot_up(self.ssid, self.config.interface)
        self.hotspot_up = True
        self._say("open", logging.WARNING, "no network for %g s: setup hotspot %s open; join it and open "
                  "http://%s/ to choose a Wi-Fi network", self.config.hotspot_after_s, self.ssid, HOTSPOT_ADDRESS)

    def scan(self):
        """The networks in range (the last scan while the hotspot holds the radio)."""
        if not self.hotspot_up:
            self.networks = self._nm.scan(self.config.interface)
        return self.networks

    def join(self, ssid, password):
        """Join ``ssid`` in the background (the hotspot closes for it); the page shows ``last_join`` later."""
        self.joining = ssid
        threading.Thread(target=self._join, args=(ssid, password), daemon=True, name="wifi join").start()

    def _join(self, ssid, password):
        try:
            self._nm.join(ssid, password, self.config.interface)
            self.last_join = (ssid, None)
            log.info("joined Wi-Fi network %r", ssid)
        except WifiError as exc:
            self.last_join = (ssid, str(exc))
            log.error("could not join Wi-Fi network %r: %s", ssid, exc)
        finally:
            self.joining = None

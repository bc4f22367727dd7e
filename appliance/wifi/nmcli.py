"""NetworkManager through its command line, ``nmcli``: devices, networks in range, joining one, the hotspot.

A thin edge: each method runs one or a few nmcli commands, each with a timeout, and reads nmcli's terse
output (``-t``: fields split by ':', a ':' or '\\' inside a value escaped with '\\') with ``split_terse``.
Every failure is a WifiError whose message says what happened and what to do.
"""

import ipaddress
import os
import re
import subprocess
from dataclasses import dataclass

from appliance.errors import PhonehomeError

HOTSPOT = "phonehome-hotspot"  # the hotspot's connection profile
HOTSPOT_ADDRESS = "10.42.0.1"
HOTSPOT_NETWORK = ipaddress.ip_network("10.42.0.0/24")
WIFI_TYPE = "802-11-wireless"  # a Wi-Fi profile's type in terse output
# nmcli's exit statuses (man nmcli): 8 NetworkManager is not running, 10 no such connection or device.
NOT_RUNNING, NOT_FOUND = 8, 10
# English whatever the system's language (states are matched as text), UTF-8 because SSIDs may be.
ENV_LOCALE = {"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
_UUID = re.compile(r"\(([0-9a-fA-F-]{36})\)")


class WifiError(PhonehomeError):
    """nmcli failed or could not run; ``code`` is its exit status (None: it did not run or did not finish)."""

    def __init__(self, message, *, code=None):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Device:
    """One line of ``nmcli device status``: ``state`` as nmcli words it ("connected", "unavailable", …)."""

    name: str
    type: str
    state: str
    connection: str

    @property
    def connected(self):
        return self.state.startswith("connected")  # also "connected (externally)"


@dataclass(frozen=True)
class Profile:
    """A saved connection profile."""

    name: str
    uuid: str
    type: str
    autoconnect: bool


@dataclass(frozen=True)
class Network:
    """A Wi-Fi network in range: ``signal`` in percent, ``security`` as nmcli says it ("" for an open one)."""

    ssid: str
    signal: int
    security: str
    in_use: bool = False

    @property
    def bars(self):
        """0 to 4 signal bars, drawn as nmcli draws them."""
        return sum(self.signal > limit for limit in (5, 30, 55, 80))

    @property
    def secured(self):
        return bool(self.security)

    @property
    def key_mgmt(self):
        """NetworkManager's key management for a passphrase: SAE for a network that only speaks WPA3."""
        words = self.security.split()
        return "sae" if "WPA3" in words and not {"WPA1", "WPA2"} & set(words) else "wpa-psk"


def split_terse(line):
    """The fields of one line of ``nmcli -t`` output (':' separated; '\\:' and '\\\\' are escapes)."""
    fields, current, escaped = [], [], False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields


class Nmcli:
    """nmcli, run as ``program``. ``timeout_s`` bounds a question, ``scan_timeout_s`` a scan for networks,
    ``activate_timeout_s`` bringing a connection up (association, passphrase and DHCP)."""

    def __init__(self, *, program="nmcli", timeout_s=10.0, scan_timeout_s=30.0, activate_timeout_s=45.0):
        self.program = program
        self.timeout_s = timeout_s
        self.scan_timeout_s = scan_timeout_s
        self.activate_timeout_s = activate_timeout_s

    def devices(self):
        """Every network device NetworkManager knows: [Device]."""
        out = self._run("-t", "-f", "DEVICE,TYPE,STATE,CONNECTION", "device", "status")
        return [Device(*(split_terse(line) + ["", "", ""])[:4]) for line in out.splitlines() if line]

    def profiles(self):
        """Every saved connection profile: [Profile]."""
        out = self._run("-t", "-f", "NAME,UUID,TYPE,AUTOCONNECT", "connection", "show")
        rows = [(split_terse(line) + ["", "", ""])[:4] for line in out.splitlines() if line]
        return [Profile(name, uuid, kind, auto == "yes") for name, uuid, kind, auto in rows]

    def hardware_address(self, interface):
        """The device's MAC address, e.g. 'B8:27:EB:12:AB:CD'."""
        out = self._run("-g", "GENERAL.HWADDR", "device", "show", interface)
        return split_terse(out.strip())[0] if out.strip() else ""

    def networks(self, interface, *, rescan="auto"):
        """The Wi-Fi networks ``interface`` sees, one per name (its strongest access point), strongest first.

        ``rescan``: "auto" scans when NetworkManager's list is old, "yes" always, "no" never. Hidden
        networks (no name) are left out: there is nothing to choose them by.
        """
        out = self._run("-t", "-f", "IN-USE,SSID,SIGNAL,SECURITY", "device", "wifi", "list", "ifname", interface,
                        "--rescan", rescan, timeout_s=self.scan_timeout_s)
        best = {}
        for line in out.splitlines():
            in_use, ssid, signal, security = (split_terse(line) + ["", "", ""])[:4]
            if not ssid or ssid == "--":
                continue
            network = Network(ssid, int(signal) if signal.isdigit() else 0, "" if security == "--" else security,
                              in_use == "*")
            known = best.get(ssid)
            if known is None or (network.in_use, network.signal) > (known.in_use, known.signal):
                best[ssid] = network
        return sorted(best.values(), key=lambda n: (not n.in_use, -n.signal, n.ssid))

    def hotspot_up(self, interface, ssid):
        """Open the hotspot ``ssid`` on ``interface`` at HOTSPOT_ADDRESS, with DHCP and DNS for its clients.

        The profile is made the first time (``save no``: it lives in memory until NetworkManager restarts,
        so it never wears the SD card nor outlives a move of the card to another Pi, whose MAC differs).
        """
        try:
            self._activate("id", HOTSPOT)
            return
        except WifiError as exc:
            if exc.code != NOT_FOUND:
                raise
        self._run("connection", "add", "save", "no", "type", "wifi", "ifname", interface, "con-name", HOTSPOT,
                  "autoconnect", "no", "ssid", ssid, "802-11-wireless.mode", "ap", "802-11-wireless.band", "bg",
                  "ipv4.method", "shared", "ipv4.addresses", f"{HOTSPOT_ADDRESS}/24")
        self._activate("id", HOTSPOT)

    def hotspot_down(self):
        """Close the hotspot; nothing happens when it is not up."""
        try:
            self._run("connection", "down", "id", HOTSPOT)
        except WifiError as exc:
            if exc.code != NOT_FOUND:
                raise

    def join(self, interface, ssid, passphrase, *, key_mgmt="wpa-psk", hidden=False):
        """Join the Wi-Fi network ``ssid`` (no passphrase: an open network); return the new profile's UUID.

        A new profile is made and brought up; if that fails it is deleted again, so a wrong passphrase
        leaves no broken profile behind and a profile saved earlier for the same name keeps working.
        Once it works, older profiles of the same name are deleted (the new one replaces them).
        NetworkManager keeps trying this network for ever after a loss (autoconnect-retries 0): an
        appliance must come back by itself when the router does. ``hidden``: the network does not
        announce its name, so it is asked for by name. Raises WifiError.
        """
        # nmcli takes the passphrase on its command line: on the appliance no other user can read it there.
        args = ["connection", "add", "type", "wifi", "ifname", interface, "con-name", ssid, "autoconnect", "yes",
                "ssid", ssid, "connection.autoconnect-retries", "0"]
        if hidden:
            args += ["802-11-wireless.hidden", "yes"]
        if passphrase:
            args += ["802-11-wireless-security.key-mgmt", key_mgmt, "802-11-wireless-security.psk", passphrase]
        found = _UUID.search(self._run(*args))
        if not found:
            raise WifiError(f"nmcli made a profile for '{ssid}' but did not say its UUID; look at 'nmcli "
                            f"connection show' and delete the extra one")
        uuid = found.group(1)
        try:
            self._activate("uuid", uuid)
        except WifiError:
            self._delete(uuid)
            raise
        for profile in self.profiles():
            if profile.type == WIFI_TYPE and profile.name == ssid and profile.uuid != uuid:
                self._delete(profile.uuid)
        return uuid

    def _activate(self, kind, name):
        wait_s = int(self.activate_timeout_s)
        self._run("--wait", str(wait_s), "connection", "up", kind, name, timeout_s=wait_s + 5)

    def _delete(self, uuid):
        try:
            self._run("connection", "delete", "uuid", uuid)
        except WifiError:
            pass  # best effort: the profile is already gone, or NetworkManager is; nothing to undo

    def _run(self, *args, timeout_s=None):
        """nmcli's standard output; raises WifiError with what went wrong and what to do."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        what = _command(args)
        try:
            done = subprocess.run([self.program, *args], capture_output=True, text=True, errors="replace",
                                  timeout=timeout_s, env={**os.environ, **ENV_LOCALE})
        except FileNotFoundError:
            raise WifiError(f"{self.program} is not installed: Wi-Fi is managed with NetworkManager "
                            f"(apt-get install network-manager)") from None
        except OSError as exc:
            raise WifiError(f"cannot run {self.program} ({exc.strerror}); check that it is NetworkManager's "
                            f"nmcli") from None
        except subprocess.TimeoutExpired:
            raise WifiError(f"NetworkManager did not answer 'nmcli {what}' within {timeout_s:g} s; try again in "
                            f"a minute, or restart it with 'sudo systemctl restart NetworkManager'") from None
        if done.returncode == NOT_RUNNING:
            raise WifiError("NetworkManager is not running; start it with 'sudo systemctl start NetworkManager'",
                            code=NOT_RUNNING)
        if done.returncode != 0:
            raise WifiError(said(done.stderr or done.stdout) or f"nmcli {what} failed (exit status "
                                                                f"{done.returncode})", code=done.returncode)
        return done.stdout


def _command(args):
    """The command's words for messages: "connection up", "device wifi list"."""
    for i, arg in enumerate(args):
        if arg in ("device", "connection"):
            return " ".join(args[i:i + (3 if args[i + 1:i + 2] == ("wifi",) else 2)])
    return " ".join(args)


def join_problem(ssid, error):
    """Why joining ``ssid`` failed, in plain words with what to do, from the WifiError nmcli gave."""
    text = str(error)
    if "Secrets were required" in text or "802.1X supplicant" in text or "psk" in text.lower():
        return f"'{ssid}' did not accept the passphrase; check it (capital letters count) and try again"
    if "could not be found" in text or "No network with SSID" in text or "not visible" in text:
        return (f"'{ssid}' is not in range; check the name (capital letters count), that the router is on, "
                f"and that the appliance is near enough")
    if "IP configuration" in text or "DHCP" in text:
        return (f"the appliance reached '{ssid}' but got no address from its router (DHCP); restart the router, "
                f"or check that it hands out addresses")
    if error.code is None or "Timeout" in text or "timed out" in text:
        return f"no answer from '{ssid}' in time ({text}); move the appliance nearer the router and try again"
    return f"could not join '{ssid}': {text}"


def said(text):
    """What nmcli said, without its 'Error: ' prefixes and 'Hint:' lines: one line for people."""
    lines = [line.strip().removeprefix("Error: ") for line in text.splitlines()]
    return "; ".join(line for line in lines if line and not line.startswith("Hint:")).rstrip(".")

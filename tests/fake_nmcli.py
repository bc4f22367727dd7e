"""A stand-in for NetworkManager's ``nmcli`` (NetworkManager cannot run in the tests), put first on PATH.

It is a small Python program that keeps NetworkManager's state in a JSON file: devices, saved profiles, the
networks in range and the passphrase each accepts. It answers exactly the commands appliance.wifi.nmcli
sends, in nmcli's terse format (':' separated, ':' and '\\' escaped), with nmcli's messages and exit
statuses; anything else exits 2 and is recorded under "unknown", so a test sees a command nmcli would not
get. Like a real Wi-Fi chip, the device cannot list networks while it is a hotspot, and bringing a
connection up on it drops the one it had.
"""

import fcntl
import json
import os
import stat
import sys
import time
from contextlib import contextmanager

PROGRAM = r'''#!PYTHON
import fcntl, json, os, sys, time, uuid

STATE = STATEFILE

def esc(value):
    return str(value).replace("\\", "\\\\").replace(":", "\\:")

def table(rows):
    for row in rows:
        print(":".join(esc(v) for v in row))

def fail(message, code):
    print("Error: " + message, file=sys.stderr)
    return code

def wifi_device(s, name):
    return next((d for d in s["devices"] if d["device"] == name and d["type"] == "wifi"), None)

def profile(s, kind, key):
    return next((p for p in s["profiles"] if p["uuid" if kind == "uuid" else "name"] == key), None)

def drop(s, key, *, by="connection"):
    for d in s["devices"]:
        if d.get(by) == key:
            d["state"], d["connection"], d["uuid"] = "disconnected", "", ""

def up(s, p):
    device = wifi_device(s, p["ifname"])
    if device is None:
        return fail("Connection activation failed: No suitable device found for this connection.", 4)
    device["state"], device["connection"], device["uuid"] = "disconnected", "", ""  # the radio leaves what it had
    if p["mode"] == "ap":
        if s.get("ap_fails"):
            return fail("Connection activation failed: (5) IP configuration could not be reserved (no available "
                        "address, timeout, etc.).\nHint: use 'journalctl -xe NM_CONNECTION=" + p["uuid"] +
                        " + NM_DEVICE=wlan0' to get more details.", 4)
    else:
        hidden = p["settings"].get("802-11-wireless.hidden") == "yes" and p["ssid"] in s["passphrases"]
        if p["ssid"] not in [n["ssid"] for n in s["networks"]] and not hidden:
            return fail("Connection activation failed: The Wi-Fi network could not be found\nHint: use "
                        "'journalctl -xe NM_CONNECTION=" + p["uuid"] + " + NM_DEVICE=wlan0' to get more details.", 4)
        if s["passphrases"].get(p["ssid"], "") != p.get("psk", ""):
            return fail("Connection activation failed: Secrets were required, but not provided.", 4)
    device["state"], device["connection"], device["uuid"] = "connected", p["name"], p["uuid"]
    print("Connection successfully activated (D-Bus active path: /org/freedesktop/NetworkManager/ActiveConnection/7)")
    return 0

def answer(s, args):
    options = {}
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        options[flag] = None if flag == "-t" else args.pop(0)
    time.sleep(s.get("slow_s", 0))  # a NetworkManager that hangs
    if s.get("stopped"):
        return fail("NetworkManager is not running.", 8)
    if options.get("-f") == "DEVICE,TYPE,STATE,CONNECTION" and args == ["device", "status"]:
        table([d["device"], d["type"], d["state"], d["connection"]] for d in s["devices"])
    elif options.get("-f") == "NAME,UUID,TYPE,AUTOCONNECT" and args == ["connection", "show"]:
        table([p["name"], p["uuid"], p["type"], p["autoconnect"]] for p in s["profiles"])
    elif options.get("-g") == "GENERAL.HWADDR" and args[:2] == ["device", "show"] and len(args) == 3:
        device = next((d for d in s["devices"] if d["device"] == args[2]), None)
        if device is None:
            return fail("Device '" + args[2] + "' not found.", 10)
        print(esc(device.get("hwaddr", "")))
    elif (options.get("-f") == "IN-USE,SSID,SIGNAL,SECURITY" and args[:4] == ["device", "wifi", "list", "ifname"]
          and len(args) == 7 and args[5] == "--rescan" and args[6] in ("auto", "yes", "no")):
        device = wifi_device(s, args[4])
        if device is None:
            return fail("Device '" + args[4] + "' not found.", 10)
        active = profile(s, "uuid", device.get("uuid"))
        if active and active["mode"] == "ap":
            return 0  # the radio is the hotspot: it sees no other network
        joined = active["ssid"] if active else None
        table(["*" if n["ssid"] == joined else " ", n["ssid"], n["signal"], n["security"]] for n in s["networks"])
    elif args[:2] == ["connection", "add"]:
        words = args[2:]
        if len(words) % 2:
            return fail("value for '" + words[-1] + "' is missing.", 2)
        given = dict(zip(words[::2], words[1::2]))
        p = {"name": given.pop("con-name"), "uuid": str(uuid.uuid4()), "type": "802-11-wireless",
             "autoconnect": given.pop("autoconnect", "yes"), "ifname": given.pop("ifname"),
             "ssid": given.pop("ssid"), "mode": given.pop("802-11-wireless.mode", "infrastructure"),
             "psk": given.pop("802-11-wireless-security.psk", ""), "save": given.pop("save", "yes")}
        if given.pop("type") != "wifi":
            return fail("only Wi-Fi profiles are made here", 2)
        p["settings"] = given
        s["profiles"].append(p)
        print("Connection '" + p["name"] + "' (" + p["uuid"] + ") successfully added.")
    elif args[:2] == ["connection", "up"] and len(args) == 4 and args[2] in ("id", "uuid"):
        p = profile(s, args[2], args[3])
        if p is None:
            return fail("unknown connection '" + args[3] + "'.", 10)
        return up(s, p)
    elif args[:2] == ["connection", "down"] and args[2:3] == ["id"] and len(args) == 4:
        if not any(d["connection"] == args[3] for d in s["devices"]):
            return fail("'" + args[3] + "' is not an active connection.\nError: no active connection provided.", 10)
        drop(s, args[3])
        print("Connection '" + args[3] + "' successfully deactivated (D-Bus active path: "
              "/org/freedesktop/NetworkManager/ActiveConnection/7)")
    elif args[:3] == ["connection", "delete", "uuid"] and len(args) == 4:
        p = profile(s, "uuid", args[3])
        if p is None:
            return fail("unknown connection '" + args[3] + "'.\nError: cannot delete unknown connection(s): '" +
                        args[3] + "'.", 10)
        drop(s, p["uuid"], by="uuid")
        s["profiles"].remove(p)
        print("Connection '" + p["name"] + "' (" + p["uuid"] + ") successfully deleted.")
    else:
        s["unknown"].append(sys.argv[1:])
        return fail("argument '" + (args[0] if args else "") + "' not understood.", 2)
    return 0

with open(STATE + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    with open(STATE) as f:
        s = json.load(f)
    s["calls"].append(sys.argv[1:])
    s["locale"] = os.environ.get("LC_ALL")
    status = answer(s, list(sys.argv[1:]))
    with open(STATE, "w") as f:
        json.dump(s, f)
sys.exit(status)
'''

WLAN = {"device": "wlan0", "type": "wifi", "state": "disconnected", "connection": "", "hwaddr": "B8:27:EB:12:AB:CD"}
ETH = {"device": "eth0", "type": "ethernet", "state": "unavailable", "connection": ""}
LO = {"device": "lo", "type": "loopback", "state": "connected (externally)", "connection": "lo"}
P2P = {"device": "p2p-dev-wlan0", "type": "wifi-p2p", "state": "disconnected", "connection": ""}
NETWORKS = [
    {"ssid": "Home", "signal": 72, "security": "WPA2"},
    {"ssid": "Home", "signal": 40, "security": "WPA2"},  # a second access point of the same network
    {"ssid": "Café: guest \\ 5G", "signal": 90, "security": ""},  # ':' and '\' come escaped
    {"ssid": "", "signal": 50, "security": "WPA2"},  # a hidden network
    {"ssid": "New house", "signal": 20, "security": "WPA3"},
]
PASSPHRASES = {"Home": "correct horse", "Café: guest \\ 5G": "", "New house": "battery staple"}


def saved(ssid, passphrase="", *, uuid="5f0e9b0c-1111-4222-8333-944455556666", autoconnect="yes"):
    """A Wi-Fi profile saved before (from the boot partition, or an earlier join)."""
    return {"name": ssid, "uuid": uuid, "type": "802-11-wireless", "autoconnect": autoconnect, "ifname": "wlan0",
            "ssid": ssid, "mode": "infrastructure", "psk": passphrase, "save": "yes", "settings": {}}


class FakeNmcli:
    """The stand-in, installed as ``nmcli`` in ``tmp_path`` and first on PATH (through ``monkeypatch``).

    ``devices``, ``networks``, ``passphrases`` and ``profiles`` start the state (default: a Pi with Wi-Fi,
    no cable, three networks in range and nothing saved).
    """

    def __init__(self, tmp_path, monkeypatch, *, devices=(WLAN, ETH, LO, P2P), networks=NETWORKS,
                 passphrases=None, profiles=()):
        self.path = tmp_path / "nm-state.json"
        bin_dir = tmp_path / "fake-nm-bin"
        bin_dir.mkdir()
        program = bin_dir / "nmcli"
        program.write_text(PROGRAM.replace("PYTHON", sys.executable).replace("STATEFILE", repr(str(self.path))))
        program.chmod(program.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        self.path.write_text(json.dumps({
            "devices": [dict(d) for d in devices], "networks": list(networks),
            "passphrases": dict(PASSPHRASES if passphrases is None else passphrases),
            "profiles": [dict(p) for p in profiles], "calls": [], "unknown": []}))

    @contextmanager
    def change(self):
        """``with nm.change() as state:`` edit the state (locked against the program)."""
        with open(f"{self.path}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = json.loads(self.path.read_text())
            yield state
            self.path.write_text(json.dumps(state))

    def state(self):
        return json.loads(self.path.read_text())

    def calls(self):
        """Every command line nmcli got, as lists of arguments."""
        return self.state()["calls"]

    def device(self, name):
        return next(d for d in self.state()["devices"] if d["device"] == name)

    def set_device(self, name, state, connection=""):
        with self.change() as s:
            for d in s["devices"]:
                if d["device"] == name:
                    d["state"], d["connection"] = state, connection

    def profile_names(self):
        return [p["name"] for p in self.state()["profiles"]]

    def wait_for(self, predicate, timeout_s=10.0):
        """Wait until ``predicate(state)`` holds (a join runs on a thread of its own); fail after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while not predicate(self.state()):
            assert time.monotonic() < deadline, "the fake NetworkManager never reached the state waited for"
            time.sleep(0.02)

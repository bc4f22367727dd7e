"""NetworkManager through ``nmcli``: what the Wi-Fi device sees, joining a network, the setup hotspot.

Every call has a timeout and fails with WifiError, whose message says what happened and what to do.
"""

import os
import subprocess

from appliance.errors import PhonehomeError

HOTSPOT = "phonehome-hotspot"
HOTSPOT_ADDRESS = "10.42.0.1"
CALL_TIMEOUT_S = 20.0
JOIN_TIMEOUT_S = 45


class WifiError(PhonehomeError):
    pass


def split_terse(line):
    """The fields of one line of ``nmcli -t`` output (':' separated; '\\:' and '\\\\' escaped)."""
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


def nmcli(*args, timeout=CALL_TIMEOUT_S):
    try:
        done = subprocess.run(["nmcli", *args], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise WifiError("nmcli is not installed: Wi-Fi needs NetworkManager (apt-get install network-manager)") \
            from None
    except subprocess.TimeoutExpired:
        raise WifiError(f"NetworkManager did not answer within {timeout:g} s; try again, or reboot the "
                        f"appliance") from None
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().removeprefix("Error: ")
        raise WifiError(message or f"nmcli {args[0]} failed ({done.returncode})")
    return done.stdout


def devices():
    """[(device, type, state, connection)] as NetworkManager sees them."""
    out = nmcli("-t", "-f", "DEVICE,TYPE,STATE,CONNECTION", "device", "status")
    return [tuple(split_terse(line)[:4]) for line in out.splitlines() if line]


def scan(interface):
    """The networks in range, strongest first, one entry per name: [{ssid, signal, security, in_use}]."""
    out = nmcli("-t", "-f", "IN-USE,SSID,SIGNAL,SECURITY", "device", "wifi", "list", "ifname", interface,
                "--rescan", "auto")
    best = {}
    for line in out.splitlines():
        in_use, ssid, signal, security = (split_terse(line) + ["", "", "", ""])[:4]
        if not ssid:
            continue  # hidden networks have no name to offer
        entry = {"ssid": ssid, "signal": int(signal or 0), "security": security or "open", "in_use": in_use == "*"}
        if ssid not in best or entry["signal"] > best[ssid]["signal"]:
            best[ssid] = entry
    return sorted(best.values(), key=lambda e: (-e["in_use"], -e["signal"], e["ssid"]))


def connections():
    out = nmcli("-t", "-f", "NAME", "connection", "show")
    return {split_terse(line)[0] for line in out.splitlines() if line}


def join(ssid, password, interface):
    """Join ``ssid``; a failed attempt leaves no half-made profile behind."""
    before = connections()
    args = ["--wait", str(JOIN_TIMEOUT_S), "device", "wifi", "connect", ssid]
    if password:
        args += ["password", password]
    try:
        nmcli(*args, "ifname", interface, timeout=JOIN_TIMEOUT_S + 10)
    except WifiError:
        for name in connections() - before:
            nmcli("connection", "delete", name)
        raise


def hotspot_up(ssid, interface):
    if HOTSPOT in connections():
        nmcli("connection", "delete", HOTSPOT)
    nmcli("connection", "add", "type", "wifi", "ifname", interface, "con-name", HOTSPOT, "autoconnect", "no",
          "ssid", ssid, "802-11-wireless.mode", "ap", "802-11-wireless.band", "bg",
          "ipv4.method", "shared", "ipv4.addresses", f"{HOTSPOT_ADDRESS}/24", "ipv6.method", "disabled")
    nmcli("connection", "up", HOTSPOT, timeout=JOIN_TIMEOUT_S)


def hotspot_down():
    nmcli("connection", "down", HOTSPOT)


def hotspot_name(interface, sys_class_net="/sys/class/net"):
    """phonehome-XXXX: the last four hex digits of the Wi-Fi MAC address, so two appliances differ."""
    try:
        with open(os.path.join(sys_class_net, interface, "address")) as f:
            mac = f.read().strip().replace(":", "")
    except OSError:
        mac = "0000"
    return f"phonehome-{mac[-4:].upper()}"

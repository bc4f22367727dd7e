"""What the appliance's network looks like from inside: the default route's interface, its address, Wi-Fi.

Read from the kernel (/proc and an ioctl), plus ``iw`` for the Wi-Fi name when
it is installed; nothing is sent on the network. Every reader returns None
for what it cannot find and never raises.
"""

import fcntl
import socket
import struct
import subprocess

from appliance.status import Network

_SIOCGIFADDR = 0x8915


def read_network(*, route_path="/proc/net/route", wireless_path="/proc/net/wireless", address_of=None,
                 ssid_of=None):
    """A Network for the interface that holds the default route (None fields where unknown)."""
    interface = default_interface(route_path)
    if interface is None:
        return Network()
    ip = (address_of or ipv4_address)(interface)
    signal = wifi_signal_dbm(interface, wireless_path)
    ssid = (ssid_of or wifi_ssid)(interface) if signal is not None else None
    return Network(interface=interface, ip=ip, wifi_ssid=ssid, wifi_signal_dbm=signal)


def default_interface(route_path="/proc/net/route"):
    """The interface of the IPv4 default route, or None."""
    try:
        with open(route_path, encoding="ascii", errors="replace") as f:
            next(f, None)  # the header
            for line in f:
                fields = line.split()
                # Destination 00000000 is the default route; flag 0x1 means it is up.
                if len(fields) >= 4 and fields[1] == "00000000" and int(fields[3], 16) & 1:
                    return fields[0]
    except (OSError, ValueError):
        return None
    return None


def ipv4_address(interface):
    """The interface's IPv4 address as text, or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            packed = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, struct.pack("256s", interface.encode()[:15]))
        return socket.inet_ntoa(packed[20:24])
    except OSError:
        return None


def wifi_signal_dbm(interface, wireless_path="/proc/net/wireless"):
    """The Wi-Fi signal level in dBm from /proc/net/wireless, or None when the interface is not wireless."""
    try:
        with open(wireless_path, encoding="ascii", errors="replace") as f:
            for line in f:
                name, sep, rest = line.partition(":")
                if sep and name.strip() == interface:
                    level = rest.split()[2].rstrip(".")
                    return int(float(level))
    except (OSError, ValueError, IndexError):
        return None
    return None


def wifi_ssid(interface, *, run=subprocess.run):
    """The name of the Wi-Fi network ``interface`` is connected to (from ``iw``), or None."""
    try:
        out = run(["iw", "dev", interface, "link"], capture_output=True, text=True, timeout=2).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("SSID:"):
            return line[len("SSID:"):].strip() or None
    return None

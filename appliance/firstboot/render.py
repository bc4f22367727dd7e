"""What the imports write, as text: NetworkManager keyfiles, cmdline.txt, authorized_keys. Nothing touches the disk."""

import base64
import hashlib
import re

from appliance.firstboot.parse import KEY_TYPES

REGDOM = "cfg80211.ieee80211_regdom="
SSHD_TEXT = ("# Keys only: the image has no password anywhere.\n"
             "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def keyfile_string(value):
    """``value`` escaped as GLib's key files (NetworkManager's keyfiles) need it, as GLib itself writes it.

    A backslash starts an escape, and spaces at the start would be dropped on reading.
    """
    out = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    body = out.lstrip(" ")
    return "\\s" * (len(out) - len(body)) + body


def keyfile_ssid(ssid):
    """An SSID as NetworkManager itself writes it: readable when it is printable ASCII, else a byte list."""
    data = ssid.encode()
    if all(0x20 <= b < 0x7F for b in data):
        # NetworkManager reads a string of numbers and ';' as bytes: its own ';' are escaped to stay a string.
        return keyfile_string(ssid.replace(";", "\\;"))
    return "".join(f"{b};" for b in data)


def connection_file(ssid):
    """The keyfile's name for ``ssid``: the name itself when it is safe in a path, else made safe and told apart.

    The hash keeps two names that are made safe alike ("a b", "a_b") in two files.
    """
    safe = _SAFE.sub("_", ssid)
    if safe.startswith("."):  # NetworkManager skips hidden files
        safe = "_" + safe[1:]
    if safe != ssid:
        safe += "-" + hashlib.sha256(ssid.encode()).hexdigest()[:6]
    return f"{safe}.nmconnection"


def nm_keyfile(network, uuid):
    """A NetworkManager keyfile for ``network`` (a parse.Network), with connection UUID ``uuid``."""
    lines = ["[connection]", f"id={keyfile_string(network.ssid)}", f"uuid={uuid}", "type=wifi",
             f"autoconnect-priority={network.priority}", "",
             "[wifi]", "mode=infrastructure", f"ssid={keyfile_ssid(network.ssid)}"]
    if network.hidden:
        lines.append("hidden=true")
    lines.append("")
    if network.psk:
        lines += ["[wifi-security]", f"key-mgmt={'sae' if network.sae else 'wpa-psk'}",
                  f"psk={keyfile_string(network.psk)}", ""]
    lines += ["[ipv4]", "method=auto", "", "[ipv6]", "method=auto", ""]
    return "\n".join(lines)


def keyfile_uuid(text):
    """The connection UUID in a keyfile's text, or None."""
    match = re.search(r"^uuid=(\S+)$", text, re.MULTILINE)
    return match.group(1) if match else None


def with_country(cmdline, country):
    """cmdline.txt with the Wi-Fi regulatory country set on its (only) line; everything else kept."""
    first, _, rest = cmdline.partition("\n")
    args = [a for a in first.split() if not a.startswith(REGDOM)]
    return " ".join(args + [REGDOM + country]) + "\n" + rest


def modprobe_text(country):
    return f"# The Wi-Fi country from the SD card's boot partition.\noptions cfg80211 ieee80211_regdom={country}\n"


def _blobs(text):
    found = set()
    for line in text.splitlines():
        fields = line.split()
        for i, field in enumerate(fields[:-1]):
            if field in KEY_TYPES:
                found.add(fields[i + 1])
    return found


def with_keys(existing, keys):
    """(authorized_keys text with ``keys`` added, the keys that were new); a key already there is not repeated.

    Keys are told apart by their key material, so the same key with another comment counts as there.
    """
    have = _blobs(existing)
    new = []
    for key in keys:
        blob = base64.b64encode(key.blob).decode()
        if blob not in have:
            have.add(blob)
            new.append(key)
    text = existing if not existing or existing.endswith("\n") else existing + "\n"
    return text + "".join(f"{key.line}\n" for key in new), new

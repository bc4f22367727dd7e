"""The files a user puts on the SD card's boot partition, read: text in, data or a FileProblem out.

Nothing here touches the disk. Messages name the file and line, say what would be accepted and never repeat
a password: the error file they end up in sits on a partition any PC can read.
"""

import base64
import hashlib
import re
from dataclasses import dataclass

COUNTRY = re.compile(r"^[A-Z]{2}$")
HEX_PSK = re.compile(r"^[0-9a-fA-F]{64}$")
KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
             "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
# NetworkManager's range for connection.autoconnect-priority.
PRIORITY_RANGE = (-999, 999)


class FileProblem(ValueError):
    """What is wrong with a file, in words for the person who wrote it."""


@dataclass(frozen=True)
class Network:
    """One Wi-Fi network: ``psk`` is "" for an open one, else 8-63 characters or 64 hex digits (a ready key)."""

    ssid: str
    psk: str
    priority: int = 0
    hidden: bool = False  # not announced: NetworkManager must probe for it by name (wpa_supplicant's scan_ssid=1)
    sae: bool = False  # WPA3-only (key_mgmt=SAE)


@dataclass(frozen=True)
class Wifi:
    country: str  # "" when the file gives none
    networks: tuple


@dataclass(frozen=True)
class PublicKey:
    """One authorized_keys line, kept whole (options and comment included)."""

    line: str
    kind: str
    blob: bytes

    @property
    def fingerprint(self):
        """As ``ssh-keygen -l`` shows it: SHA256:… (safe to log; it identifies the key, it does not unlock)."""
        return "SHA256:" + base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")


def text_of(raw, name):
    """The text of a file's bytes; a byte-order mark (Windows Notepad writes one) is dropped."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FileProblem(f"{name}: not UTF-8 text; save it as UTF-8 (in Notepad: Save as, Encoding UTF-8)") \
            from None


def check_country(country, where):
    country = country.strip().upper()
    if country and not COUNTRY.match(country):
        raise FileProblem(f"{where}: country must be a two-letter country code such as GB, US or DE, "
                          f"got {country!r}")
    return country


def check_network(ssid, psk, where, *, priority=0, hidden=False, sae=False):
    size = len(ssid.encode())
    if not 1 <= size <= 32:
        raise FileProblem(f"{where}: the network name (ssid) must be 1 to 32 bytes, got {size}")
    if psk and not HEX_PSK.match(psk) and not 8 <= len(psk.encode()) <= 63:
        raise FileProblem(f"{where}: the Wi-Fi password must be 8 to 63 characters (or 64 hex digits), "
                          f"got {len(psk)} characters; for an open network leave it out")
    low, high = PRIORITY_RANGE
    if not low <= priority <= high:
        raise FileProblem(f"{where}: priority must be a whole number from {low} to {high}, got {priority}")
    return Network(ssid, psk, priority, hidden, sae)


def _unquote(value):
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1], True
    return value, False


def parse_wpa_supplicant(text):
    """The networks and country of a wpa_supplicant.conf, as Raspberry Pi OS users write it."""
    country, networks, block = "", [], None
    for line_no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"wpa_supplicant.conf line {line_no}"
        if re.match(r"^network\s*=\s*\{$", line):
            if block is not None:
                raise FileProblem(f"{where}: a network={{ block starts before the previous one ends with }}")
            block = {"at": where}
        elif line == "}":
            if block is None:
                raise FileProblem(f"{where}: '}}' without a network={{ block")
            networks.append(_network_from(block))
            block = None
        elif "=" in line:
            key, value = (part.strip() for part in line.split("=", 1))
            if block is None:
                if key == "country":
                    country = check_country(value, where)
            else:
                block[key] = value
        else:  # the line is not repeated: it may be a password typed without psk=
            raise FileProblem(f"{where}: expected key=value, network={{ or }}")
    if block is not None:
        raise FileProblem(f"wpa_supplicant.conf: the network={{ block that starts at {block['at']} has no closing }}")
    if not networks:
        raise FileProblem("wpa_supplicant.conf: no network={ ssid=\"…\" psk=\"…\" } block")
    return Wifi(country, tuple(networks))


def _network_from(block):
    where = f"the network at {block['at']}"
    if "ssid" not in block:
        raise FileProblem(f"{where}: no ssid=\"…\" line; write the network's name, e.g. ssid=\"Home\"")
    ssid, quoted = _unquote(block["ssid"])
    if ssid and not quoted:  # wpa_supplicant's hex form of an SSID
        try:
            ssid = bytes.fromhex(ssid).decode()
        except ValueError:
            raise FileProblem(f"{where}: ssid must be in double quotes, e.g. ssid=\"Home\"") from None
    if "wep_key0" in block or "wep_key1" in block:
        raise FileProblem(f"{where}: WEP is not supported (it is broken); switch the router to WPA2 or WPA3")
    mode = block.get("key_mgmt", "WPA-PSK").upper().split()
    psk, quoted = _unquote(block.get("psk", ""))
    if mode == ["NONE"]:
        psk = ""
    elif not any(m in ("WPA-PSK", "WPA-PSK-SHA256", "SAE") for m in mode):
        raise FileProblem(f"{where}: key_mgmt={' '.join(mode)} is not supported; use WPA-PSK (WPA2), SAE (WPA3) "
                          f"or NONE (an open network); enterprise Wi-Fi can be set up with nmcli over SSH")
    elif not psk:
        raise FileProblem(f"{where}: no psk=\"…\" (for an open network write key_mgmt=NONE)")
    elif not quoted and not HEX_PSK.match(psk):
        raise FileProblem(f"{where}: psk must be in double quotes, or 64 hex digits without them")
    try:
        priority = int(block.get("priority", "0"))
    except ValueError:
        raise FileProblem(f"{where}: priority must be a whole number, got {block['priority']!r}") from None
    return check_network(ssid, psk, where, priority=priority, hidden=block.get("scan_ssid", "0") == "1",
                         sae=bool(psk) and mode == ["SAE"])


def parse_simple_wifi(text):
    """phonehome-wifi.txt: ssid=, password= (leave out for an open network) and country= lines.

    Quotes around a value are optional; they keep spaces at its ends.
    """
    values = {}
    for line_no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower()
        where = f"phonehome-wifi.txt line {line_no}"
        if not sep or key not in ("ssid", "password", "country"):
            # Only the key is repeated: a mistyped "pasword=" line holds the password.
            got = f"got '{key}='" if sep else "got a line without '='"
            raise FileProblem(f"{where}: expected ssid=, password= or country=, {got}")
        if key in values:
            raise FileProblem(f"{where}: {key}= appears twice; the file holds one network (put several in "
                              f"wpa_supplicant.conf)")
        values[key] = _unquote(value)[0]
    if not values.get("ssid"):
        raise FileProblem("phonehome-wifi.txt: no ssid= line; write the network's name, e.g. ssid=Home")
    network = check_network(values["ssid"], values.get("password", ""), "phonehome-wifi.txt")
    return Wifi(check_country(values.get("country", ""), "phonehome-wifi.txt"), (network,))


def parse_authorized_keys(text):
    """The OpenSSH public keys of an authorized_keys file (options and comments allowed), as PublicKey."""
    keys = []
    for line_no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"authorized_keys line {line_no}"
        if "PRIVATE KEY" in line or line.startswith("PuTTY-User-Key-File"):
            raise FileProblem(f"{where}: this is a PRIVATE key, never put it on the card; delete this file "
                              f"from the card now and put the public key's line there instead (the .pub file, "
                              f"e.g. ~/.ssh/id_ed25519.pub)")
        if line.startswith("---- BEGIN SSH2 PUBLIC KEY"):
            raise FileProblem(f"{where}: a public key in PuTTY's format; OpenSSH needs one line: copy it from "
                              f"PuTTYgen's 'Public key for pasting into OpenSSH authorized_keys file' box")
        fields = line.split()
        if "ssh-dss" in fields:
            raise FileProblem(f"{where}: a DSA key, which OpenSSH refuses; make an ed25519 key with "
                              f"'ssh-keygen -t ed25519' and put its .pub line here")
        at = next((i for i, field in enumerate(fields) if field in KEY_TYPES), None)
        if at is None or at + 1 >= len(fields):
            raise FileProblem(f"{where}: not an SSH public key; expected a line like 'ssh-ed25519 AAAA… you@pc'")
        try:
            blob = base64.b64decode(fields[at + 1], validate=True)
        except ValueError:
            raise FileProblem(f"{where}: the key's base64 part is damaged; copy the line again from the .pub "
                              f"file") from None
        # The blob starts with its own key type: a line whose two halves disagree was pasted wrongly.
        if len(blob) < 4 or blob[4:4 + int.from_bytes(blob[:4], "big")].decode(errors="replace") != fields[at]:
            raise FileProblem(f"{where}: the key's base64 part does not match its type {fields[at]!r}; copy the "
                              f"line again from the .pub file")
        keys.append(PublicKey(line, fields[at], blob))
    if not keys:
        raise FileProblem("authorized_keys: no key in the file; put the line of your .pub file there")
    return keys

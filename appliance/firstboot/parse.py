"""Pure parsing of the files a user puts on the SD card's boot partition: text in, data or problems out."""

import base64
import re
from dataclasses import dataclass

COUNTRY = re.compile(r"^[A-Z]{2}$")
KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
             "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com", "ssh-dss")
HEX_PSK = re.compile(r"^[0-9a-fA-F]{64}$")


class FileProblem(ValueError):
    """What is wrong with a file, in words for the person who wrote it."""


@dataclass(frozen=True)
class Network:
    ssid: str
    psk: str  # "" for an open network; 8-63 characters, or 64 hex digits (a precomputed key)
    priority: int = 0


@dataclass(frozen=True)
class Wifi:
    country: str  # "" when the file gives none
    networks: tuple


def check_network(ssid, psk, where):
    if not ssid or len(ssid.encode()) > 32:
        raise FileProblem(f"{where}: ssid must be 1 to 32 bytes, got {len(ssid.encode())}")
    if psk and not HEX_PSK.match(psk) and not 8 <= len(psk) <= 63:
        raise FileProblem(f"{where}: the Wi-Fi password must be 8 to 63 characters (or 64 hex digits), "
                          f"got {len(psk)} characters; for an open network leave it out")
    return Network(ssid, psk)


def check_country(country, where):
    country = country.strip().upper()
    if country and not COUNTRY.match(country):
        raise FileProblem(f"{where}: country must be a two-letter country code such as GB, US or DE, "
                          f"got {country!r}")
    return country


def _unquote(value):
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1], True
    return value, False


def parse_wpa_supplicant(text):
    """The networks and country of a wpa_supplicant.conf, as Raspberry Pi OS users write it."""
    country, networks, block, line_no = "", [], None, 0
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
        else:
            raise FileProblem(f"{where}: expected key=value, network={{ or }}, got {line!r}")
    if block is not None:
        raise FileProblem(f"wpa_supplicant.conf: the network={{ block that starts at {block['at']} has no closing }}")
    if not networks:
        raise FileProblem("wpa_supplicant.conf: no network={ ssid=\"…\" psk=\"…\" } block")
    return Wifi(country, tuple(networks))


def _network_from(block):
    where = f"the network at {block['at']}"
    ssid, quoted = _unquote(block.get("ssid", ""))
    if ssid and not quoted:  # wpa_supplicant's hex form of an SSID
        try:
            ssid = bytes.fromhex(ssid).decode()
        except ValueError:
            raise FileProblem(f"{where}: ssid must be in double quotes, e.g. ssid=\"Home\"") from None
    psk, quoted = _unquote(block.get("psk", ""))
    if psk and not quoted and not HEX_PSK.match(psk):
        raise FileProblem(f"{where}: psk must be in double quotes, or 64 hex digits without them")
    if block.get("key_mgmt", "").upper() == "NONE":
        psk = ""
    elif not psk:
        raise FileProblem(f"{where}: no psk=\"…\" (for an open network write key_mgmt=NONE)")
    try:
        priority = int(block.get("priority", "0"))
    except ValueError:
        raise FileProblem(f"{where}: priority must be a whole number, got {block['priority']!r}") from None
    network = check_network(ssid, psk, where)
    return Network(network.ssid, network.psk, priority)


def parse_simple_wifi(text):
    """phonehome-wifi.txt: ssid=, password= (leave out for an open network) and country= lines."""
    values = {}
    for line_no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("ssid", "password", "country"):
            raise FileProblem(f"phonehome-wifi.txt line {line_no}: expected ssid=, password= or country=, "
                              f"got {line!r}")
        values[key] = value.strip()
    network = check_network(values.get("ssid", ""), values.get("password", ""), "phonehome-wifi.txt")
    return Wifi(check_country(values.get("country", ""), "phonehome-wifi.txt"), (network,))


def parse_authorized_keys(text):
    """The OpenSSH public key lines of an authorized_keys file (options and comments allowed)."""
    keys = []
    for line_no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"authorized_keys line {line_no}"
        if "PRIVATE KEY" in line:
            raise FileProblem(f"{where}: this is a PRIVATE key; never put it on the card. Put the .pub file's "
                              f"line there instead (e.g. the contents of ~/.ssh/id_ed25519.pub)")
        fields = line.split()
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
            raise FileProblem(f"{where}: the key's base64 part does not match its type {fields[at]!r}")
        keys.append(line)
    if not keys:
        raise FileProblem("authorized_keys: no key in the file")
    return keys

"""Pre-configuration from the SD card's FAT boot partition, imported at boot (``phonehome firstboot``).

A user may put these files on the partition a PC shows before the Pi boots (see the README):
``phonehome.toml`` (the config), ``wpa_supplicant.conf`` or ``phonehome-wifi.txt`` (Wi-Fi and its country)
and ``authorized_keys`` (SSH). Each is validated, imported, then removed from the card, because any PC can
read that partition and the files hold secrets. A file that does not validate is left where it is, nothing of
it is imported, and ``phonehome-error.txt`` beside it says what is wrong. ``phonehome-imported.txt`` records
what was imported and when (never a secret). It runs at every boot and does nothing when there is nothing new.
"""

import logging
import os
import shutil
import subprocess
import time
import tomllib
import uuid

import tomli_w

from appliance.atomic import fsync_dir, write_atomic
from appliance.config import load_config, parse_config
from appliance.errors import ConfigError
from appliance.firstboot.parse import FileProblem, parse_authorized_keys, parse_simple_wifi, parse_wpa_supplicant

log = logging.getLogger("phonehome.firstboot")

CONFIG_FILE = "phonehome.toml"
WIFI_FILES = {"wpa_supplicant.conf": parse_wpa_supplicant, "phonehome-wifi.txt": parse_simple_wifi}
KEYS_FILE = "authorized_keys"
ERROR_FILE = "phonehome-error.txt"
RECORD_FILE = "phonehome-imported.txt"
CONNECTIONS = "/etc/NetworkManager/system-connections"
REGDOM = "cfg80211.ieee80211_regdom="


def run(boot, root, config_path):
    """Import whatever is on the boot partition at ``boot`` into the system at ``root``; return the problems."""
    done, problems = [], []
    steps = [(CONFIG_FILE, lambda path: _import_config(path, config_path))]
    steps += [(name, lambda path, parse=parse: _import_wifi(path, parse, boot, root))
              for name, parse in WIFI_FILES.items()]
    steps.append((KEYS_FILE, lambda path: _import_keys(path, root)))
    for name, step in steps:
        path = os.path.join(boot, name)
        if not os.path.isfile(path):
            continue
        try:
            what = step(path)
        except (FileProblem, ConfigError) as exc:
            problems.append(f"{name}: {exc}")
            log.error("%s on the boot partition was not imported: %s", name, exc)
            continue
        os.unlink(path)
        done.append(what)
        log.info("imported %s from the boot partition: %s; removed it from the card", name, what)
    error_file = os.path.join(boot, ERROR_FILE)
    if problems:
        write_atomic(error_file, "phonehome could not import these files from this card, so it left them here:\n\n"
                     + "\n".join(f"- {p}" for p in problems)
                     + "\n\nFix them on a PC and boot the Pi again. Files that were fine were imported.\n")
    elif os.path.exists(error_file) and not any(os.path.exists(os.path.join(boot, n)) for n, _ in steps):
        os.unlink(error_file)
    if done:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        with open(os.path.join(boot, RECORD_FILE), "a") as f:
            f.writelines(f"{stamp}: {what}\n" for what in done)
    if done or problems:
        fsync_dir(boot)
    return problems


def _import_config(path, config_path):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FileProblem("not UTF-8 text; save the file as UTF-8") from None
    config = parse_config(text, source=CONFIG_FILE, base_dir=os.path.dirname(config_path))
    text = _keep_web_address(text, config_path)
    if os.path.exists(config_path):
        shutil.copy2(config_path, config_path + ".bak")
    write_atomic(config_path, text, mode=0o600)
    directory = os.stat(os.path.dirname(config_path))
    os.chown(config_path, directory.st_uid, directory.st_gid)  # the agent saves to it from its web page
    name = config.device.name or "(no device name yet)"
    return f"config for device {name} with {len(config.heartbeat.targets)} heartbeat target(s)"


def _keep_web_address(text, config_path):
    """A file that does not say where the web page listens keeps the appliance's current address.

    Otherwise the page would move to the schema's default, 127.0.0.1, where nobody on the LAN can reach it.
    """
    table = tomllib.loads(text)
    if "listen" in table.get("web", {}):
        return text
    try:
        listen = load_config(config_path).web.listen
    except ConfigError:
        return text
    table.setdefault("web", {})["listen"] = listen
    return tomli_w.dumps(table)


def _import_wifi(path, parse, boot, root):
    with open(path, encoding="utf-8", errors="replace") as f:
        wifi = parse(f.read())
    directory = os.path.join(root, CONNECTIONS.lstrip("/"))
    os.makedirs(directory, mode=0o755, exist_ok=True)
    for network in wifi.networks:
        target = os.path.join(directory, f"{connection_id(network.ssid)}.nmconnection")
        write_atomic(target, nm_keyfile(network), mode=0o600)
    if wifi.country:
        _set_country(wifi.country, boot, root)
    names = ", ".join(repr(n.ssid) for n in wifi.networks)
    return f"Wi-Fi {names}" + (f", country {wifi.country}" if wifi.country else "")


def connection_id(ssid):
    """A NetworkManager connection name (and file name) for ``ssid``: readable, safe in a path."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in ssid)
    return f"wifi-{safe}"


def nm_keyfile(network):
    """A NetworkManager keyfile for ``network`` (written as a file: NetworkManager need not be running)."""
    lines = ["[connection]", f"id={connection_id(network.ssid)}",
             f"uuid={uuid.uuid5(uuid.NAMESPACE_OID, 'phonehome-wifi-' + network.ssid)}", "type=wifi",
             "autoconnect=true", f"autoconnect-priority={network.priority}", "",
             "[wifi]", "mode=infrastructure", f"ssid={network.ssid}", ""]
    if network.psk:
        lines += ["[wifi-security]", "key-mgmt=wpa-psk", f"psk={network.psk}", ""]
    lines += ["[ipv4]", "method=auto", "", "[ipv6]", "method=auto", ""]
    return "\n".join(lines)


def with_country(cmdline, country):
    """cmdline.txt (one line) with the Wi-Fi regulatory country set, everything else kept."""
    args = [a for a in cmdline.split() if not a.startswith(REGDOM)]
    return " ".join(args + [REGDOM + country]) + "\n"


def _set_country(country, boot, root):
    cmdline = os.path.join(boot, "cmdline.txt")
    if os.path.exists(cmdline):
        with open(cmdline) as f:
            write_atomic(cmdline, with_country(f.read(), country))
    modprobe = os.path.join(root, "etc/modprobe.d/phonehome-wifi-country.conf")
    os.makedirs(os.path.dirname(modprobe), exist_ok=True)
    write_atomic(modprobe, f"# The Wi-Fi country from the boot partition.\noptions cfg80211 ieee80211_regdom={country}\n")


def _import_keys(path, root):
    with open(path, encoding="utf-8", errors="replace") as f:
        keys = parse_authorized_keys(f.read())
    ssh = os.path.join(root, "root/.ssh")
    os.makedirs(ssh, mode=0o700, exist_ok=True)
    os.chmod(ssh, 0o700)
    target = os.path.join(ssh, "authorized_keys")
    try:
        with open(target) as f:
            have = [line.rstrip("\n") for line in f]
    except FileNotFoundError:
        have = []
    new = [k for k in keys if k not in have]
    write_atomic(target, "".join(f"{line}\n" for line in have + new), mode=0o600)
    _enable_ssh(root)
    return f"{len(new)} new SSH key(s) for root ({len(keys) - len(new)} already there); SSH switched on"


def _enable_ssh(root):
    live = root == "/" and os.path.isdir("/run/systemd/system")
    command = ["systemctl", "enable", "ssh.service"] if root == "/" else \
        ["systemctl", f"--root={root}", "enable", "ssh.service"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise FileProblem(f"the keys were installed but SSH could not be switched on: {done.stderr.strip()}")
    if live:  # this boot too, not only the next one
        subprocess.run(["systemctl", "start", "--no-block", "ssh.service"], capture_output=True)

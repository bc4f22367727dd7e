"""Pre-configuration from the SD card's FAT boot partition, imported at boot (``phonehome firstboot``).

A user may put these files on the partition a PC shows before the Pi boots (see the README):
``phonehome.toml`` (the config), ``wpa_supplicant.conf`` or ``phonehome-wifi.txt`` (Wi-Fi and its country)
and ``authorized_keys`` (SSH). Each is validated, imported, then removed from the card, because any PC can
read that partition and the files hold secrets. A file that does not validate is left where it is, nothing of
it is imported, and ``phonehome-error.txt`` beside it says what is wrong. ``phonehome-imported.txt`` records
what was imported and when (never a secret). It runs at every boot and writes nothing when there is nothing new.
"""

import dataclasses
import logging
import os
import shutil
import time
import tomllib
import uuid

import tomli_w

from appliance.atomic import fsync_dir, write_atomic
from appliance.config import DEFAULT_PATH, load_config, parse_config
from appliance.errors import ConfigError, PhonehomeError
from appliance.firstboot import render, ssh
from appliance.firstboot.parse import FileProblem, parse_simple_wifi, parse_wpa_supplicant, text_of
from appliance.rootfs import root_mount

log = logging.getLogger("phonehome.firstboot")

CONFIG_FILE = "phonehome.toml"
WIFI_FILES = {"wpa_supplicant.conf": parse_wpa_supplicant, "phonehome-wifi.txt": parse_simple_wifi}
ERROR_FILE = "phonehome-error.txt"
RECORD_FILE = "phonehome-imported.txt"
CONNECTIONS = "/etc/NetworkManager/system-connections"
MODPROBE = "/etc/modprobe.d/phonehome-wifi-country.conf"


@dataclasses.dataclass(frozen=True)
class Card:
    """Where the files come from (``boot``, the FAT partition) and go: the system at ``root``, its config file.

    ``read_only_root``: the root is the RAM overlay of [system] read_only_root, so files written outside the
    directories it keeps (the config, Wi-Fi networks) are gone at the next boot.
    """

    boot: str
    root: str = "/"
    config_path: str = DEFAULT_PATH
    systemctl: str | None = None
    read_only_root: bool = False

    def path(self, absolute):
        return os.path.join(self.root, absolute.lstrip("/"))


def card_for(boot, root="/", config_path=None):
    """The Card for this machine: the config under ``root`` unless given, systemctl if installed."""
    read_only = False
    if root == "/":
        try:
            with open("/proc/mounts") as f:
                read_only = root_mount(f.read())[0] == "overlay"
        except OSError:
            pass
    return Card(boot=boot, root=root, config_path=config_path or os.path.join(root, DEFAULT_PATH.lstrip("/")),
                systemctl=shutil.which("systemctl"), read_only_root=read_only)


def run(card, *, now_wall):
    """Import whatever is on ``card.boot``; return the problems (empty: all imported, or nothing there).

    ``now_wall`` (epoch seconds) stamps phonehome-imported.txt. A file that does not validate changes
    nothing; a file stays on the card until it is imported; one bad file does not hold up the others.
    """
    steps = [(CONFIG_FILE, _import_config)] + [(name, _import_wifi) for name in WIFI_FILES]
    steps.append((ssh.KEYS_FILE, ssh.import_keys))
    done, problems = [], []
    for name, step in steps:
        path = os.path.join(card.boot, name)
        if not os.path.isfile(path):
            if os.path.isfile(path + ".txt"):
                problems.append(f"{name}.txt: rename it to {name} (Windows adds .txt and hides it); it was not "
                                f"imported")
            continue
        try:
            with open(path, "rb") as f:
                what = step(card, name, text_of(f.read(), name))
        except (FileProblem, PhonehomeError) as exc:  # ConfigError is one
            problems.append(str(exc))
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            problems.append(f"{name}: could not be imported: {exc.strerror or exc}{where}; it is tried again at "
                            f"the next boot")
        else:
            os.unlink(path)
            done.append(f"{name}: {what}")
            log.info("imported %s from the boot partition and removed it from there: %s", name, what)
    for problem in problems:
        log.error("not imported, left on the boot partition: %s", problem.replace("\n  ", " "))
    changed = _note_problems(card.boot, problems)
    if done:
        _record(card.boot, done, now_wall)
    if done or changed:
        fsync_dir(card.boot)  # the removals too: no secret may come back after a power cut
    return problems


def _note_problems(boot, problems):
    """Write (or remove) the error file a user sees on a PC; return whether it changed."""
    path = os.path.join(boot, ERROR_FILE)
    if not problems:
        if not os.path.exists(path):
            return False
        os.unlink(path)
        return True
    items = "".join("- " + p.replace("\n", "\n  ") + "\n" for p in problems)
    text = (f"phonehome could not import these files from this card, so they are still here:\n\n{items}\n"
            "Fix them on a PC and start the appliance again with the card; this note goes away once they are "
            "imported.\n")
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return False  # the same problems as at the last boot: spare the card a write
    except FileNotFoundError:
        pass
    write_atomic(path, text)
    return True


def _record(boot, done, now_wall):
    path = os.path.join(boot, RECORD_FILE)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            before = f.read()
    except FileNotFoundError:
        before = "What phonehome imported from this card (the files themselves are removed):\n"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now_wall))
    write_atomic(path, before + "".join(f"{stamp}  {what}\n" for what in done))


def _import_config(card, name, text):
    config_path = card.config_path
    config = parse_config(text, source=name, base_dir=os.path.dirname(os.path.abspath(config_path)))
    text = _keep_web_address(text, config_path)
    owner = os.stat(os.path.dirname(os.path.abspath(config_path)))
    kept = os.path.exists(config_path)
    if kept:
        with open(config_path, "rb") as f:
            _write_owned(config_path + ".bak", f.read(), owner)
    _write_owned(config_path, text, owner)
    device = f"device {config.device.name!r}" if config.device.name else "no device name yet"
    return (f"the config ({device}, {len(config.heartbeat.targets)} heartbeat target(s))"
            + ("; the previous one is kept as phonehome.toml.bak" if kept else ""))


def _write_owned(path, data, owner):
    # The agent, running as the config directory's owner, saves settings into this file from its web page;
    # 0600 as everywhere the config is written: it holds tokens.
    write_atomic(path, data, mode=0o600)
    if (owner.st_uid, owner.st_gid) != (os.geteuid(), os.getegid()):
        os.chown(path, owner.st_uid, owner.st_gid)


def _keep_web_address(text, config_path):
    """A file that does not say where the web page listens keeps the appliance's current address.

    Otherwise the page would move to the schema's default, 127.0.0.1, where nobody on the LAN can reach it.
    """
    table = tomllib.loads(text)
    if "listen" in table.get("web", {}) or not os.path.exists(config_path):
        return text
    try:
        listen = load_config(config_path).web.listen
    except ConfigError:
        return text
    table.setdefault("web", {})["listen"] = listen
    return tomli_w.dumps(table)


def _import_wifi(card, name, text):
    wifi = WIFI_FILES[name](text)
    directory = card.path(CONNECTIONS)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    for network in wifi.networks:
        target = os.path.join(directory, render.connection_file(network.ssid))
        # The same network imported again keeps its UUID: NetworkManager sees one connection, updated.
        try:
            with open(target, encoding="utf-8", errors="replace") as f:
                known = render.keyfile_uuid(f.read())
        except FileNotFoundError:
            known = None
        write_atomic(target, render.nm_keyfile(network, known or str(uuid.uuid4())), mode=0o600)
    if wifi.country:
        _set_country(card, wifi.country)
    names = ", ".join(repr(n.ssid) + ("" if n.psk else " (open)") for n in wifi.networks)
    return f"Wi-Fi {names}" + (f"; country {wifi.country}" if wifi.country else "")


def _set_country(card, country):
    """The Wi-Fi country on the kernel command line (in force from the first moment) and for modprobe."""
    cmdline = os.path.join(card.boot, "cmdline.txt")
    try:
        with open(cmdline, encoding="utf-8") as f:
            before = f.read()
    except FileNotFoundError:
        before = None
    if before is not None and render.with_country(before, country) != before:
        write_atomic(cmdline, render.with_country(before, country))
    modprobe = card.path(MODPROBE)
    os.makedirs(os.path.dirname(modprobe), exist_ok=True)
    write_atomic(modprobe, render.modprobe_text(country))

"""authorized_keys from the boot partition: root's keys, key-only sshd settings, and SSH switched on."""

import os
import subprocess

from appliance.atomic import write_atomic
from appliance.errors import PhonehomeError
from appliance.firstboot import render
from appliance.firstboot.parse import FileProblem, parse_authorized_keys

KEYS_FILE = "authorized_keys"
UNIT = "ssh.service"
UNIT_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
SSHD_CONF = "/etc/ssh/sshd_config.d/phonehome.conf"
SYSTEMCTL_TIMEOUT_S = 60


class SshProblem(PhonehomeError):
    """SSH could not be switched on; the message says why and what to do."""


def import_keys(card, name, text):
    """Add the keys in ``text`` to root's authorized_keys and switch SSH on; return what was done, for the record.

    Raises FileProblem for a bad file and SshProblem when SSH cannot be switched on (the keys are then
    installed already; a later boot adds nothing twice).
    """
    keys = parse_authorized_keys(text)
    if card.read_only_root:
        raise FileProblem(f"{name}: the root file system is read-only ([system] read_only_root), so SSH keys "
                          f"put in now would be gone at the next boot; turn read_only_root off on the web page, "
                          f"restart, and the file is imported at the next boot")
    unit = _unit_file(card)
    directory = card.path("/root/.ssh")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)  # sshd ignores keys in a directory others may write to
    target = os.path.join(directory, "authorized_keys")
    try:
        with open(target, encoding="utf-8", errors="replace") as f:
            existing = f.read()
    except FileNotFoundError:
        existing = ""
    text, new = render.with_keys(existing, keys)
    write_atomic(target, text, mode=0o600)
    _write_if_changed(card.path(SSHD_CONF), render.SSHD_TEXT)
    _enable(card, unit)
    told = ", ".join(key.fingerprint for key in new)
    return (f"{len(new)} new SSH key(s) for root" + (f" ({told})" if told else "")
            + f", {len(keys) - len(new)} already there; SSH switched on (keys only, no passwords)")


def _write_if_changed(path, text):
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(path, text)


def _unit_file(card):
    """The ssh unit's path on the target system (as systemd there sees it); checked before anything is written."""
    for directory in UNIT_DIRS:
        absolute = f"{directory}/{UNIT}"
        if os.path.isfile(card.path(absolute)):
            return absolute
    raise SshProblem(f"{KEYS_FILE}: SSH is not installed on this system (no {UNIT}); install openssh-server, "
                     f"then start again with the file on the card")


def _enable(card, unit):
    if card.systemctl:
        command = [card.systemctl, "enable", UNIT] if card.root == "/" else \
            [card.systemctl, f"--root={card.root}", "enable", UNIT]
        _systemctl(command)
        if card.root == "/" and os.path.isdir("/run/systemd/system"):
            # This boot too, not only the next: ssh.service waits for this unit (Before=), so no deadlock.
            _systemctl([card.systemctl, "start", "--no-block", UNIT])
        return
    _enable_by_links(card, unit)


def _systemctl(command):
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SshProblem(f"{KEYS_FILE}: the keys are installed but '{' '.join(command[1:])}' did not finish in "
                         f"{SYSTEMCTL_TIMEOUT_S} s; SSH is tried again at the next boot") from None
    if done.returncode != 0:
        raise SshProblem(f"{KEYS_FILE}: the keys are installed but SSH could not be switched on "
                         f"('{' '.join(command[1:])}': {(done.stderr or done.stdout).strip()}); it is tried again "
                         f"at the next boot")


def _enable_by_links(card, unit):
    """What ``systemctl enable`` does, for a tree without systemctl: the [Install] section's links."""
    wanted_by, aliases = [], []
    section = None
    with open(card.path(unit), encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("["):
                section = line
            elif section == "[Install]" and "=" in line:
                key, value = (part.strip() for part in line.split("=", 1))
                if key == "WantedBy":
                    wanted_by += value.split()
                elif key == "Alias":
                    aliases += value.split()
    if not wanted_by:
        raise SshProblem(f"{KEYS_FILE}: {unit} has no WantedBy= in its [Install] section, so it cannot be "
                         f"switched on; reinstall openssh-server")
    links = [f"/etc/systemd/system/{target}.wants/{UNIT}" for target in wanted_by]
    links += [f"/etc/systemd/system/{alias}" for alias in aliases]
    for link in links:
        path = card.path(link)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.islink(path) and os.readlink(path) == unit:
            continue
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(unit, path)

"""``phonehome install``: make this virtual environment's phonehome a system service.

Run as root from the venv phonehome was installed into (the SD image does the same inside the image):

    sudo python3 -m venv /opt/phonehome/venv
    sudo /opt/phonehome/venv/bin/pip install /path/to/checkout-or-wheel
    sudo /opt/phonehome/venv/bin/phonehome install

It creates the ``phonehome`` user and the gpio/i2c/spi groups, udev and polkit rules, /etc/phonehome with a
first config (the web page on the network, nothing else), /var/lib/phonehome, and the systemd units pointing at
this venv, then enables them. Every step says what it did or that it was already so; running it again changes
nothing that is already right, and never touches an existing config. ``root`` installs into another root
tree (an image being built), with the tools' own --root options.
"""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources

from appliance.config import parse_config
from appliance.errors import PhonehomeError

USER = "phonehome"
GROUPS = ("gpio", "i2c", "spi")
OPTIONAL_GROUPS = ("netdev",)  # NetworkManager's group on Debian, where it exists
CONFIG = "/etc/phonehome/phonehome.toml"
DATA = "/var/lib/phonehome"
INSTALL_COMMANDS = ("sudo python3 -m venv /opt/phonehome/venv\n"
                    "sudo /opt/phonehome/venv/bin/pip install /path/to/phonehome\n"
                    "sudo /opt/phonehome/venv/bin/phonehome install")
# Files shipped in appliance/system and where they go.
RULES = {"60-phonehome-gpio.rules": "/etc/udev/rules.d/60-phonehome-gpio.rules",
         "50-phonehome.rules": "/etc/polkit-1/rules.d/50-phonehome.rules"}
HOTSPOT_DNS = ("dnsmasq-shared-phonehome.conf", "/etc/NetworkManager/dnsmasq-shared.d/phonehome.conf")
TEMPLATE_PREFIX = "/opt/phonehome/venv"


class InstallError(PhonehomeError):
    pass


@dataclass(frozen=True)
class Plan:
    """What to install: into ``root``, units for the venv at ``prefix``, which units, and a new config's listen."""

    root: str = "/"
    prefix: str = sys.prefix
    listen: str = "0.0.0.0:80"
    monitor: bool = False
    enable: bool = True

    def path(self, absolute):
        return os.path.join(self.root, absolute.lstrip("/"))

    @property
    def units(self):
        return ("phonehome-agent.service",) + (("phonehome-monitor.service",) if self.monitor else ())

    def tool(self, *command):
        """A user/group tool run on ``root`` (its --root option, which chroots into the tree)."""
        return [*command[:1], *(["--root", os.path.abspath(self.root)] if self.root != "/" else []), *command[1:]]


def check_can_install(prefix=sys.prefix, base_prefix=sys.base_prefix, euid=None):
    """None, or why this process cannot install (not root, not in a venv) and what to run instead."""
    euid = os.geteuid() if euid is None else euid
    if prefix == base_prefix:
        return f"phonehome is not running from a virtual environment; install it into one first:\n{INSTALL_COMMANDS}"
    if euid != 0:
        return f"installing system services needs root; run: sudo {prefix}/bin/phonehome install"
    return None


def new_config_text(listen):
    """The first config: the web page on ``listen``; the agent waits, 'not configured', for the setup page."""
    text = ("# Written by 'phonehome install'. The web page writes the rest when you set the appliance up.\n"
            f"[web]\nlisten = \"{listen}\"\n")
    parse_config(text, source="--listen")  # a bad address fails here, naming the option, before anything is written
    return text


def _names(path):
    """The names in a passwd- or group-style file (empty when it does not exist)."""
    try:
        with open(path) as f:
            return {line.split(":", 1)[0] for line in f if ":" in line}
    except FileNotFoundError:
        return set()


def _ids(plan):
    with open(plan.path("/etc/passwd")) as f:
        for line in f:
            fields = line.split(":")
            if fields[0] == USER:
                return int(fields[2]), int(fields[3])
    raise InstallError(f"user {USER} is missing from {plan.path('/etc/passwd')} after useradd")


def _run(command):
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise InstallError(f"{' '.join(command)} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def _shipped(name):
    return resources.files("appliance").joinpath("system", name).read_text()


def _write(plan, absolute, text, say, *, mode=0o644, owner=None):
    """Write a file we own (units, rules); say whether it changed."""
    path = plan.path(absolute)
    try:
        with open(path) as f:
            same = f.read() == text
    except FileNotFoundError:
        same = False
    if not same:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    os.chmod(path, mode)
    if owner:
        os.chown(path, *owner)
    say(f"{absolute}: {'already up to date' if same else 'written'}")
    return not same


def _users(plan, say):
    groups = _names(plan.path("/etc/group"))
    for group in GROUPS:
        if group in groups:
            say(f"group {group}: already there")
        else:
            _run(plan.tool("groupadd", "--system", group))
            say(f"group {group}: created")
    if USER in _names(plan.path("/etc/passwd")):
        say(f"user {USER}: already there")
    else:
        _run(plan.tool("useradd", "--system", "--user-group", "--home-dir", DATA, "--no-create-home",
                       "--shell", "/usr/sbin/nologin", "--comment", "phonehome appliance", USER))
        say(f"user {USER}: created")
    wanted = [g for g in GROUPS + OPTIONAL_GROUPS if g in _names(plan.path("/etc/group"))]
    _run(plan.tool("usermod", "--append", "--groups", ",".join(wanted), USER))
    say(f"user {USER}: in groups {', '.join(wanted)}")


def _directories(plan, owner, say):
    for absolute in (os.path.dirname(CONFIG), DATA):
        path = plan.path(absolute)
        existed = os.path.isdir(path)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o750)
        os.chown(path, *owner)
        say(f"{absolute}: {'already there' if existed else 'created'} (owner {USER}, mode 0750)")
    config = plan.path(CONFIG)
    if os.path.exists(config):
        say(f"{CONFIG}: kept as it is")
        return
    # The agent saves settings into this file from its web page: it must own it (0600: it will hold tokens).
    _write(plan, CONFIG, new_config_text(plan.listen), say, mode=0o600, owner=owner)


def _system_files(plan, say):
    changed = False
    for unit in ("phonehome-agent.service", "phonehome-monitor.service"):
        text = _shipped(unit).replace(TEMPLATE_PREFIX, plan.prefix)
        changed |= _write(plan, f"/etc/systemd/system/{unit}", text, say)
    for name, absolute in RULES.items():
        _write(plan, absolute, _shipped(name), say)
    if os.path.isdir(plan.path("/etc/NetworkManager")):
        _write(plan, HOTSPOT_DNS[1], _shipped(HOTSPOT_DNS[0]), say)
    return changed


def _enable(plan, changed, say):
    if not plan.enable:
        say("units written, not enabled (--no-enable)")
        return
    if not shutil.which("systemctl"):
        raise InstallError("systemctl not found: phonehome's units need systemd")
    live = plan.root == "/" and os.path.isdir("/run/systemd/system")
    if live and changed:
        _run(["systemctl", "daemon-reload"])
    _run(plan.tool("systemctl", "enable", *plan.units) if plan.root != "/" else ["systemctl", "enable", *plan.units])
    say(f"enabled {', '.join(plan.units)}")
    if live:
        _run(["systemctl", "restart", *plan.units])
        say(f"started {', '.join(plan.units)}; the setup code: sudo {plan.prefix}/bin/phonehome setup-code")


def install(plan, say=print):
    """Carry out ``plan``; raises InstallError saying which step failed and why."""
    new_config_text(plan.listen)
    _users(plan, say)
    owner = _ids(plan)
    _directories(plan, owner, say)
    changed = _system_files(plan, say)
    _enable(plan, changed, say)
    host, _, port = plan.listen.rpartition(":")
    where = "http://<this device's address>" + ("" if port == "80" else f":{port}")
    say(f"done: the web page is at {where}/ (set [web] listen in {CONFIG} to move it)")

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

import tomli_w

from appliance.atomic import write_atomic
from appliance.config import load_config, parse_config
from appliance.errors import ConfigError, PhonehomeError

USER = "phonehome"
GROUPS = ("gpio", "i2c", "spi")
OPTIONAL_GROUPS = ("netdev",)  # NetworkManager's group on Debian, where it exists
CONFIG = "/etc/phonehome/phonehome.toml"
DATA = "/var/lib/phonehome"
UNIT_DIR = "/etc/systemd/system"
INSTALL_COMMANDS = ("sudo python3 -m venv /opt/phonehome/venv\n"
                    "sudo /opt/phonehome/venv/bin/pip install /path/to/checkout-or-wheel\n"
                    "sudo /opt/phonehome/venv/bin/phonehome install")
# Files shipped in appliance/system and where they go.
RULES = {"60-phonehome-gpio.rules": "/etc/udev/rules.d/60-phonehome-gpio.rules",
         "50-phonehome.rules": "/etc/polkit-1/rules.d/50-phonehome.rules"}
HOTSPOT_DNS = ("dnsmasq-shared-phonehome.conf", "/etc/NetworkManager/dnsmasq-shared.d/phonehome.conf")
# The venv path the shipped units name; replaced by the venv being installed from.
TEMPLATE_PREFIX = "/opt/phonehome/venv"
CONFIG_HEADER = ("# Written by 'phonehome install'. The appliance's web page writes the rest when you set it up;\n"
                 "# 'phonehome config-reference' lists every setting.\n")


class InstallError(PhonehomeError):
    """A step of ``phonehome install`` cannot be done; the message says which, why, and what to do."""


@dataclass(frozen=True)
class Plan:
    """What to install: into ``root``, units for the venv at ``prefix``, which units, and a new config's listen."""

    root: str = "/"
    prefix: str = sys.prefix
    listen: str = "0.0.0.0:80"
    monitor: bool = False
    enable: bool = True

    def path(self, absolute):
        """Where the system path ``absolute`` is in the tree being installed into."""
        return os.path.join(self.root, absolute.lstrip("/"))

    @property
    def executable(self):
        return f"{self.prefix}/bin/phonehome"

    @property
    def units(self):
        # One or the other: an agent with a [monitor] table already runs a monitor inside, on the same config.
        return ("phonehome-monitor.service",) if self.monitor else ("phonehome-agent.service",)

    def tool(self, *command):
        """``command`` acting on ``root``: useradd, groupadd, usermod and systemctl all take --root DIR."""
        return [*command[:1], *(["--root", os.path.abspath(self.root)] if self.root != "/" else []), *command[1:]]


def check_can_install(prefix=sys.prefix, base_prefix=sys.base_prefix, euid=None):
    """None, or why this process cannot install (not root, not in a venv) and what to run instead."""
    euid = os.geteuid() if euid is None else euid
    if prefix == base_prefix:
        return ("phonehome is not running from a virtual environment, so its units would have no venv to "
                f"start; install it into one and run its phonehome install:\n{INSTALL_COMMANDS}")
    if euid != 0:
        return f"installing system services needs root; run: sudo {prefix}/bin/phonehome install"
    return None


def check_plan(plan):
    """Raise InstallError for a plan that cannot work; called before anything is written."""
    if not os.path.isdir(plan.root):
        raise InstallError(f"--root: {plan.root!r} is not a directory; give the root of the tree to install "
                           "into (a mounted image, a chroot), or leave it out to install into this system")
    # The path goes into ExecStart= as it is: systemd would split it at blanks and expand % and $.
    if any(c.isspace() or c in "%$\"'\\" for c in plan.prefix):
        raise InstallError(f"the virtual environment's path {plan.prefix!r} has a blank or one of % $ \" ' \\, "
                           "which a systemd unit cannot run as it is; make the venv at a plain path such as "
                           "/opt/phonehome/venv")
    if not os.access(plan.path(plan.executable), os.X_OK):
        inside = f" inside {plan.root}" if plan.root != "/" else ""
        raise InstallError(f"{plan.executable} is missing{inside}, so the units would start nothing; "
                           f"install phonehome into that venv first:\n{INSTALL_COMMANDS}")
    new_config_text(plan.listen)


def new_config_text(listen):
    """The first config: the web page on ``listen``; the agent waits, 'not configured', for the setup page.

    Raises InstallError naming --listen when the address would not validate.
    """
    text = CONFIG_HEADER + tomli_w.dumps({"web": {"listen": listen}})
    try:
        parse_config(text)
    except ConfigError as exc:
        problems = "; ".join(p.replace("web.listen", "--listen", 1) for p in exc.problems)
        raise InstallError(f"{problems}; nothing was changed") from None
    return text


def _passwd_ids(plan):
    """(uid, gid) of USER in the tree's /etc/passwd, or None."""
    try:
        with open(plan.path("/etc/passwd")) as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if fields[0] == USER and len(fields) >= 4:
                    return int(fields[2]), int(fields[3])
    except FileNotFoundError:
        pass
    return None


def _groups(plan):
    """{group name: set of its listed members} from the tree's /etc/group (empty when there is none)."""
    groups = {}
    try:
        with open(plan.path("/etc/group")) as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 4:
                    groups[fields[0]] = set(filter(None, fields[3].split(",")))
    except FileNotFoundError:
        pass
    return groups


def _run(command):
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise InstallError(f"{' '.join(command)} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
    return done.stdout


def _shipped(name):
    return resources.files("appliance").joinpath("system", name).read_text()


def _write(plan, absolute, text, say):
    """Write a file phonehome ships (a unit, a rule), root's, 0644; say and return whether it changed."""
    path = plan.path(absolute)
    try:
        with open(path) as f:
            same = f.read() == text
    except FileNotFoundError:
        same = False
    if not same:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, text, mode=0o644)
    say(f"{absolute}: {'already up to date' if same else 'written'}")
    return not same


def _users(plan, say):
    groups = _groups(plan)
    for group in GROUPS:
        if group in groups:
            say(f"group {group}: already there")
        else:
            _run(plan.tool("groupadd", "--system", group))
            say(f"group {group}: created")
    if _passwd_ids(plan):
        say(f"user {USER}: already there")
    else:
        _run(plan.tool("useradd", "--system", "--user-group", "--home-dir", DATA, "--no-create-home",
                       "--shell", "/usr/sbin/nologin", "--comment", "phonehome appliance", USER))
        say(f"user {USER}: created")
    groups = _groups(plan)
    wanted = [g for g in GROUPS + OPTIONAL_GROUPS if g in groups]
    missing = [g for g in wanted if USER not in groups[g]]
    if missing:
        _run(plan.tool("usermod", "--append", "--groups", ",".join(missing), USER))
        say(f"user {USER}: added to {', '.join(missing)}")
    else:
        say(f"user {USER}: already in {', '.join(wanted)}")
    ids = _passwd_ids(plan)
    if ids is None:
        raise InstallError(f"user {USER} is missing from {plan.path('/etc/passwd')} after useradd")
    return ids


def _directories(plan, owner, say):
    # The agent's web page saves the config by renaming a new file into /etc/phonehome: it must own the
    # directory. systemd's ConfigurationDirectory= makes it writable under ProtectSystem=strict, never its owner.
    for absolute in (os.path.dirname(CONFIG), DATA):
        path = plan.path(absolute)
        existed = os.path.isdir(path)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o750)
        os.chown(path, *owner)
        say(f"{absolute}: {'already there' if existed else 'created'}, owner {USER}, mode 0750")
    config = plan.path(CONFIG)
    if os.path.lexists(config):
        say(f"{CONFIG}: already there, left as it is")
        return
    # 0600, as the page's own saves (save_config) leave it: it will hold tokens and the e-mail password.
    write_atomic(config, new_config_text(plan.listen), mode=0o600)
    os.chown(config, *owner)
    say(f"{CONFIG}: written ([web] listen = {plan.listen}), owner {USER}, mode 0600")


def _system_files(plan, say):
    """Write the units and rules; return True when a unit changed (systemd must re-read them)."""
    changed = False
    for unit in plan.units:
        text = _shipped(unit).replace(TEMPLATE_PREFIX, plan.prefix)
        changed |= _write(plan, f"{UNIT_DIR}/{unit}", text, say)
    for name, absolute in RULES.items():
        _write(plan, absolute, _shipped(name), say)
    # Only with NetworkManager: its setup hotspot answers every name with the appliance (a captive portal).
    if os.path.isdir(plan.path("/etc/NetworkManager")):
        _write(plan, HOTSPOT_DNS[1], _shipped(HOTSPOT_DNS[0]), say)
    return changed


def _enable(plan, changed, say):
    """Enable the units; on a running system also (re)start them. Returns True when they were started."""
    if not plan.enable:
        say(f"{', '.join(plan.units)}: written, not enabled (--no-enable)")
        return False
    if not shutil.which("systemctl"):
        raise InstallError("systemctl not found: phonehome runs as a systemd service; run this on a systemd "
                           "system, or pass --no-enable and start 'phonehome agent' some other way")
    live = plan.root == "/" and os.path.isdir("/run/systemd/system")
    if live and changed:
        _run(["systemctl", "daemon-reload"])
    wants = plan.path(f"{UNIT_DIR}/multi-user.target.wants")
    was = [u for u in plan.units if os.path.lexists(os.path.join(wants, u))]
    # systemctl --root works on the files alone: right for an image tree or a chroot with no systemd running.
    _run(plan.tool("systemctl", "enable", *plan.units))
    for unit in plan.units:
        say(f"{unit}: {'already enabled' if unit in was else 'enabled'}")
    if live:
        _run(["systemctl", "restart", *plan.units])
        say(f"{', '.join(plan.units)}: (re)started")
    return live


def install(plan, say=print):
    """Carry out ``plan``, one line through ``say`` per step; raises InstallError saying what failed and why."""
    check_plan(plan)
    owner = _users(plan, say)
    _directories(plan, owner, say)
    changed = _system_files(plan, say)
    started = _enable(plan, changed, say)
    page = _page(plan)
    if page is None:
        say(f"done: [web] listen in {CONFIG} is empty, so the appliance has no web page")
        return
    when = "now" if started else "once phonehome-agent runs"
    say(f"done: the web page is at {page} {when}; claim it with the setup code on the display, in "
        f"'journalctl -u phonehome-agent', or from 'sudo {plan.executable} setup-code'")


def _page(plan):
    """The web page's address as the config now says (an existing config may move it), or None for none."""
    try:
        listen = load_config(plan.path(CONFIG)).web.listen
    except ConfigError:
        listen = plan.listen  # the agent will say what is wrong with the file; the page is where it was asked
    if not listen:
        return None
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "<this device's address>"
    return f"http://{host}" + ("/" if port == "80" else f":{port}/")

"""The read-only root option: the flag early boot reads, and what is mounted now.

The config says ``[system] read_only_root``; early boot cannot read TOML, so the agent mirrors the setting as
a flag file beside the config (``/etc/phonehome/read-only-root``). The SD image's initramfs script
``phonehome-overlay`` (appliance/system/initramfs) looks for it on the card and, when it is there, mounts the
root as a RAM overlay over the card, and says in /run/phonehome-overlay how that went.
"""

import logging
import os
from dataclasses import dataclass

from appliance.atomic import fsync_dir, write_atomic

log = logging.getLogger("phonehome.rootfs")

FLAG = "read-only-root"
# Read when ``state`` is called, so a test can point them at its own files.
MOUNTS = "/proc/mounts"
BOOT_REPORT = "/run/phonehome-overlay"  # written by the initramfs script: "on", "off: why" or "failed: why"

OVERLAY = "read-only (overlay)"
READ_ONLY = "read-only"
WRITABLE = "writable"


def flag_path(config_path):
    """The flag file's path: the config file's directory + "/read-only-root"."""
    return os.path.join(os.path.dirname(os.path.abspath(config_path)), FLAG)


def set_flag(config_path, enabled):
    """Create (``enabled``) or remove the flag beside ``config_path``; return True when it changed.

    An existing flag is left as it is, so its age says since when it is set. Raises OSError when the
    directory is not writable.
    """
    path = flag_path(config_path)
    if os.path.exists(path) == enabled:
        return False
    if enabled:
        write_atomic(path, "phonehome: [system] read_only_root is true in the config; the initramfs mounts the "
                           "root file system read-only with a RAM overlay while this file is here.\n")
    else:
        os.unlink(path)
        fsync_dir(os.path.dirname(path))
    log.info("read-only root file system %s from the next boot", "on" if enabled else "off")
    return True


@dataclass(frozen=True)
class RootState:
    """The root file system now (``mounted``: OVERLAY, READ_ONLY or WRITABLE) and at the next boot.

    ``wanted`` is True while the flag asks for the overlay; ``problem`` says why the overlay that was asked
    for at this boot is not there (the rescue switch, or what failed), "" otherwise.
    """

    mounted: str
    wanted: bool
    problem: str = ""

    @property
    def overlay(self):
        return self.mounted == OVERLAY

    @property
    def reboot_pending(self):
        """True when the next boot mounts the root otherwise than now."""
        return self.wanted != self.overlay

    @property
    def text(self):
        """One line for a person: what is mounted now and what a reboot changes."""
        if self.problem and self.wanted and not self.overlay:
            return f"{self.mounted}: the read-only root was not set up at this boot ({self.problem})"
        if self.reboot_pending:
            return f"{self.mounted}; {OVERLAY if self.wanted else WRITABLE} after the next reboot"
        return self.mounted


def root_mount(mounts_text):
    """(type, options) of the mount of / in effect, from /proc/mounts text; ("", "") when none is listed.

    The last mount of / is the one in effect (an initramfs's rootfs stays listed under the real root).
    """
    found = ("", "")
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[1] == "/":
            found = (fields[2], fields[3])
    return found


def describe(mounts_text, *, wanted, report=""):
    """The RootState from /proc/mounts text, the flag, and the initramfs script's report. Pure."""
    kind, options = root_mount(mounts_text)
    if kind == "overlay":
        mounted = OVERLAY
    elif "ro" in options.split(","):
        mounted = READ_ONLY
    else:
        mounted = WRITABLE
    outcome, _, why = report.strip().partition(":")
    problem = why.strip() if outcome in ("off", "failed") and mounted != OVERLAY else ""
    return RootState(mounted=mounted, wanted=wanted, problem=problem)


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def state(config_path, *, mounts=None, boot_report=None):
    """The RootState now: /proc/mounts, the flag beside ``config_path`` ("": no config, no flag) and the boot
    report. Never raises: a file that cannot be read counts as empty."""
    wanted = bool(config_path) and os.path.exists(flag_path(config_path))
    return describe(_read(mounts or MOUNTS), wanted=wanted, report=_read(boot_report or BOOT_REPORT))

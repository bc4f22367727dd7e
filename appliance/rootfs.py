"""The read-only root option: a flag file the SD image's initramfs reads, and what is mounted now.

The config says ``[system] read_only_root``; early boot cannot read TOML, so the agent mirrors the setting as
a flag file next to the config (``/etc/phonehome/read-only-root``), which the initramfs script
``phonehome-overlay`` looks for on the real root before it puts a RAM overlay over it.
"""

import logging
import os
from dataclasses import dataclass

from appliance.atomic import fsync_dir, write_atomic

log = logging.getLogger("phonehome.rootfs")

FLAG = "read-only-root"


def flag_path(config_path):
    return os.path.join(os.path.dirname(os.path.abspath(config_path)), FLAG)


def set_flag(config_path, enabled):
    """Make the flag say ``enabled``; return True when it changed. Raises OSError when it cannot be written."""
    path = flag_path(config_path)
    if os.path.exists(path) == enabled:
        return False
    if enabled:
        write_atomic(path, "The initramfs mounts the root file system read-only at the next boot "
                           "([system] read_only_root in phonehome.toml).\n")
    else:
        os.unlink(path)
        fsync_dir(os.path.dirname(path))
    log.info("read-only root %s from the next boot", "on" if enabled else "off")
    return True


@dataclass(frozen=True)
class RootState:
    read_only: bool  # the root is the overlay now
    wanted: bool  # the flag asks for it at the next boot

    @property
    def text(self):
        now = "read-only (RAM overlay)" if self.read_only else "writable"
        if self.read_only != self.wanted:
            return f"{now}; {'read-only' if self.wanted else 'writable'} after the next reboot"
        return now


def root_is_overlay(mounts_text):
    """True when /proc/mounts says / is an overlay (the last mount of / is the one in effect)."""
    kind = None
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == "/":
            kind = fields[2]
    return kind == "overlay"


def state(config_path, mounts="/proc/mounts"):
    try:
        with open(mounts) as f:
            overlay = root_is_overlay(f.read())
    except OSError:
        overlay = False
    return RootState(read_only=overlay, wanted=os.path.exists(flag_path(config_path)))

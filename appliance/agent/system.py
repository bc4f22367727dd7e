"""What the heartbeat says about the Pi itself: which boot this is and how long it has been up.

A boot id that changed between two heartbeats means the Pi restarted (on an
appliance that is a power cut); a boot id that stayed the same across a
silence means it stayed up and lost the Internet. Both readers take their
path as an argument so tests can hand in a file of their own.
"""

import logging

log = logging.getLogger("phonehome.agent")

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
UPTIME_PATH = "/proc/uptime"


def read_boot_id(path=BOOT_ID_PATH):
    """The kernel's random id of the current boot, e.g. '3f2b…-…'; the same for every process until the next boot.

    Returns "" when the file cannot be read or is empty (not Linux, or /proc
    not mounted); the caller then cannot tell a reboot from an agent restart
    and should say so once. Never raises.
    """
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError as exc:
        log.debug("cannot read the boot id from %s: %s", path, exc.strerror or exc)
        return ""


def read_uptime_s(path=UPTIME_PATH):
    """Seconds since the kernel booted (the first number in /proc/uptime), as a float.

    Returns None when the file cannot be read or parsed (not Linux); the
    heartbeat then carries ``"uptime_s": null`` rather than a made-up figure.
    Never raises.
    """
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            first = f.read().split()[0]
        return float(first)
    except (OSError, IndexError, ValueError) as exc:
        log.debug("cannot read the uptime from %s: %s", path, exc)
        return None

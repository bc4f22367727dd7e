"""What the heartbeat says about the Pi itself: which boot this is and how long it has been up.

A boot id that changed between two heartbeats means the Pi restarted (on an
appliance that is a power cut); a boot id that stayed the same across a
silence means it stayed up and lost the Internet. Both readers take their
path as an argument so tests can hand in a file of their own.

Test hook: when the environment variable ``PHONEHOME_PROC_DIR`` names a
directory, both readers take their files from it instead of /proc
(``sys/kernel/random/boot_id`` and ``uptime`` under it). End-to-end tests use
it to play a power cut: they restart the ``phonehome agent`` process with a
new boot id in that directory, with no change to the code. The variable is
read on every call, never at import, and a production system leaves it unset.
"""

import logging
import os

log = logging.getLogger("phonehome.agent")

PROC_DIR = "/proc"
PROC_DIR_ENV = "PHONEHOME_PROC_DIR"
BOOT_ID_FILE = "sys/kernel/random/boot_id"
UPTIME_FILE = "uptime"
BOOT_ID_PATH = os.path.join(PROC_DIR, BOOT_ID_FILE)
UPTIME_PATH = os.path.join(PROC_DIR, UPTIME_FILE)


def proc_path(name, *, environ=None):
    """The path of /proc's file ``name`` (e.g. "uptime"): under $PHONEHOME_PROC_DIR when it is set (a test
    hook, see the module's docstring), else under /proc. ``environ`` defaults to os.environ."""
    environ = os.environ if environ is None else environ
    return os.path.join(environ.get(PROC_DIR_ENV) or PROC_DIR, name)


def read_boot_id(path=None):
    """The kernel's random id of the current boot, e.g. '3f2b…-…'; the same for every process until the next boot.

    ``path`` defaults to /proc/sys/kernel/random/boot_id (or its stand-in
    under $PHONEHOME_PROC_DIR). Returns "" when the file cannot be read or
    is empty (not Linux, or /proc not mounted); the caller then cannot tell
    a reboot from an agent restart and should say so once. Never raises.
    """
    if path is None:
        path = proc_path(BOOT_ID_FILE)
        if os.environ.get(PROC_DIR_ENV):
            log.warning("reading the boot id and uptime from %s, not /proc (%s is set: a test hook)",
                        os.environ[PROC_DIR_ENV], PROC_DIR_ENV)
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError as exc:
        log.debug("cannot read the boot id from %s: %s", path, exc.strerror or exc)
        return ""


def read_uptime_s(path=None):
    """Seconds since the kernel booted (the first number in /proc/uptime, or in its stand-in under
    $PHONEHOME_PROC_DIR), as a float.

    Returns None when the file cannot be read or parsed (not Linux); the
    heartbeat then carries ``"uptime_s": null`` rather than a made-up figure.
    Never raises.
    """
    if path is None:
        path = proc_path(UPTIME_FILE)
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            first = f.read().split()[0]
        return float(first)
    except (OSError, IndexError, ValueError) as exc:
        log.debug("cannot read the uptime from %s: %s", path, exc)
        return None

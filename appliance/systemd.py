"""sd_notify without a dependency: tells systemd we are ready and alive; a no-op elsewhere, never raises."""

import os
import socket


def notify(state):
    """Send ``state`` (e.g. "READY=1", "STATUS=…") to systemd when NOTIFY_SOCKET is set; return True if sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(address)
            s.sendall(state.encode())
        return True
    except OSError:
        return False


def watchdog_interval_s(env=None, pid=None):
    """Seconds between the WATCHDOG=1 pings systemd wants from this process (half its WatchdogSec), or None.

    As sd_watchdog_enabled(): WATCHDOG_USEC set, and WATCHDOG_PID unset or this process.
    """
    env = os.environ if env is None else env
    pid = os.getpid() if pid is None else pid
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0 or env.get("WATCHDOG_PID", str(pid)) != str(pid):
        return None
    return usec / 2e6

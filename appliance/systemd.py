"""sd_notify without a dependency: tells systemd we are ready; a no-op elsewhere, never raises."""

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

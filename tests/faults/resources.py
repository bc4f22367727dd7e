"""What a process holds, counted: the fault suite checks that failures leave threads and open files flat."""

import os
import threading
import time


def counts():
    """(threads, open file descriptors) of this process."""
    return threading.active_count(), len(os.listdir("/proc/self/fd"))


def settled(before, timeout_s=3.0):
    """The counts once they are back at ``before``, or after ``timeout_s``: lookup threads that outlived
    their caller, a server's connection threads (a dripping one writes once a second) and the deadline
    timers end by themselves shortly after a beat."""
    deadline = time.monotonic() + timeout_s
    now = counts()
    while (now[0] > before[0] or now[1] > before[1]) and time.monotonic() < deadline:
        time.sleep(0.05)
        now = counts()
    return now

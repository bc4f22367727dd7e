"""The monitor process's allocator settings: one malloc arena, so memory freed by one thread serves the next.

glibc gives each thread that allocates its own arena (up to 8 per core).
The monitor's HTTP worker threads each decode heartbeats and build answers,
and each arena keeps the high-water mark of the threads that used it; with
100,000 devices that adds up to several hundred bytes per device that no
device uses. Python holds the GIL while it allocates, so one arena costs no
parallelism here. A no-op where the C library is not glibc.
"""

import ctypes
import ctypes.util
import logging

log = logging.getLogger("phonehome.monitor")

_M_ARENA_MAX = -8  # from glibc's malloc.h


def one_malloc_arena():
    """Ask glibc for a single malloc arena; True when it took the setting. Call before threads start."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to set
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return mallopt(_M_ARENA_MAX, 1) == 1

"""The last day of one target's heartbeats, for the web page's chart and history: in memory only.

Round-trip times are kept one slot per minute of wall-clock time, for 24 h:
a ring of 1,440 slots allocated once, so memory stays the same (about
29 kB a target) whatever the heartbeat interval. Within a slot the largest
round trip stays (a spike remains visible) and failed sends are counted; a
slot with failures and no delivered beat is a gap on the chart.

The last 50 windows of failed sends (``failures.MAX_WINDOWS``) are kept too (the same
``failures.Windows`` the heartbeats carry, but never acknowledged away):
the FailureLog drops a window as soon as the monitor has it, while the page
should still show it afterwards.

Nothing here is written to disk: a beat a minute must not wear the SD
card, and a restart starting a fresh chart is an acceptable price.
"""

import math
import operator
import threading
from array import array
from typing import NamedTuple

from appliance.agent.failures import Windows

KEEP_S = 24 * 3600
SLOT_S = 60


class RttPoint(NamedTuple):
    """One slot: ``at`` its start (epoch seconds, UTC), ``rtt_ms`` the largest round trip in it (None when
    every send in it failed), ``failures`` how many sends in it failed. (A tuple: a day of them is made on
    every page load, and tuples are the cheapest to make.)"""

    at: float
    rtt_ms: float | None
    failures: int = 0


class BeatHistory:
    """Round trips per slot and failure windows of one target; thread-safe (the worker writes, the page reads).

    Times are the beats' wall-clock epoch seconds. The ring index of a slot
    is its number modulo the ring's size, so a slot a day later reuses the
    memory of the one it replaces. A wall clock stepped back or forth (a Pi
    without an RTC getting NTP) only overwrites or leaves behind slots:
    ``points`` keeps those within ``keep_s`` of the latest beat's, either
    side, so a step back never hides the beats that follow it.
    """

    def __init__(self, *, keep_s=KEEP_S, slot_s=SLOT_S):
        self.keep_s = keep_s
        self.slot_s = slot_s
        size = max(1, int(keep_s // slot_s))
        self._slots = array("q", [-1]) * size      # which slot number each ring entry holds; -1: none yet
        self._rtt_ms = array("d", [math.nan]) * size  # NaN: no delivered beat in that slot
        self._failures = array("i", [0]) * size
        self._newest = None
        self._windows = Windows()
        self._lock = threading.Lock()

    def succeeded(self, at, rtt_ms):
        """Record a delivered beat sent at epoch ``at`` that took ``rtt_ms``; closes an open failure window."""
        with self._lock:
            i = self._entry(at)
            old = self._rtt_ms[i]
            if math.isnan(old) or rtt_ms > old:
                self._rtt_ms[i] = rtt_ms
            self._windows = self._windows.succeeded(at, acknowledged=False)

    def failed(self, at):
        """Record a failed send at epoch ``at``; opens a failure window or counts one more failure in it."""
        with self._lock:
            i = self._entry(at)
            self._failures[i] += 1
            self._windows = self._windows.failed(at)

    def _entry(self, at):
        slot = int(at // self.slot_s)
        i = slot % len(self._slots)
        if self._slots[i] != slot:
            self._slots[i], self._rtt_ms[i], self._failures[i] = slot, math.nan, 0
        self._newest = slot
        return i

    def points(self):
        """The slots within ``keep_s`` of the latest beat's, oldest first: a tuple of RttPoint."""
        with self._lock:
            if self._newest is None:
                return ()
            newest, slots, rtts, failures = self._newest, self._slots.tolist(), self._rtt_ms.tolist(), \
                self._failures.tolist()
        size, slot_s = len(slots), self.slot_s
        points = [RttPoint(slot * slot_s, None if math.isnan(rtt) else rtt, failed)
                  for slot, rtt, failed in zip(slots, rtts, failures) if slot >= 0 and abs(slot - newest) < size]
        points.sort(key=operator.itemgetter(0))  # the ring is a rotated run in order: sorting it is one pass
        return tuple(points)

    def windows(self):
        """The failure windows, oldest first (failures.Window; ``to_at`` None for one still open)."""
        with self._lock:
            w = self._windows
        return (*w.closed, *((w.open,) if w.open is not None else ()))

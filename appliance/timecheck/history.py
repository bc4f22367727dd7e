"""Seven days of clock offsets for the web page's chart: in memory, and in a small file written rarely.

A point is (epoch seconds, offset in ms or None, verdict). At most one point
is kept per 5-minute slot, so faster checks cost no memory: within a slot
the largest offset stays (a spike remains visible) with the worst verdict
seen. Seven days are at most 2,016 points (~40 kB of JSON).

The file (``time-history.json`` in data_dir) is written atomically every 6 h
and when the checker stops, not after every check, to spare the SD card; a
power cut loses at most the last 6 h of points, which the chart shows as a
gap. A missing or unreadable file starts a new history with one log line.

A point's time is the wall clock corrected by the measured offset (the
servers' time, when they answered): a Pi that booted hours behind after a
power cut still files its first points at the right place on the chart.
When no server answered there is nothing to correct with, and an
uncorrected wall clock older than the newest point is the stale clock of a
Pi that has just booted: such a check is not recorded, and above all prunes
nothing (pruning against it would throw the whole week away).

A file that cannot be read starts a new history; a point in it that makes
no sense (a time or offset that is not a finite number, a verdict this
version does not know) is skipped, with one log line for the file.
"""

import json
import logging
import math
import os
import threading
from dataclasses import dataclass

from appliance.atomic import write_atomic
from appliance.timecheck.verdict import PRECEDENCE

log = logging.getLogger("phonehome.timecheck")

FILE_NAME = "time-history.json"
KEEP_S = 7 * 86400
SLOT_S = 300
FLUSH_EVERY_S = 6 * 3600
FORMAT_VERSION = 1
VERDICT_CODES = ("ok", "drifting", "unsynced", "unreachable", "wrong-zone")  # stored as their index


@dataclass(frozen=True)
class Point:
    """One check on the chart: ``at`` epoch seconds (UTC), ``offset_ms`` (positive: ahead) or None, ``verdict``."""

    at: float
    offset_ms: float | None
    verdict: str


def _worse(a, b):
    rank = {name: i for i, name in enumerate(PRECEDENCE)}
    return a if rank.get(a, 0) <= rank.get(b, 0) else b


def merge(older, newer):
    """The one point a slot keeps of two: the larger offset (a known one beats None), the worse verdict. Pure."""
    size = (lambda p: -1.0 if p.offset_ms is None else abs(p.offset_ms))
    kept = newer if size(newer) >= size(older) else older
    return Point(kept.at, kept.offset_ms, _worse(older.verdict, newer.verdict))


def encode(points):
    """The file's bytes for ``points`` (sorted by time): compact JSON, offsets to 0.1 ms."""
    rows = [[int(p.at), None if p.offset_ms is None else round(p.offset_ms, 1), VERDICT_CODES.index(p.verdict)]
            for p in points]
    return json.dumps({"version": FORMAT_VERSION, "verdicts": VERDICT_CODES, "points": rows},
                      separators=(",", ":")).encode("ascii")


def _number(value):
    # A finite int or float from JSON (not a bool, not Infinity/NaN, not an int too large for a float).
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"not a number: {value!r}")
    value = float(value)  # OverflowError for an int beyond a float's range
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value!r}")
    return value


def _point(row, names):
    at, offset, code = row
    if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code < len(names):
        raise ValueError(f"no verdict numbered {code!r}")
    if names[code] not in VERDICT_CODES:
        raise ValueError(f"unknown verdict {names[code]!r}")
    return Point(_number(at), None if offset is None else _number(offset), names[code])


def decode(data):
    """The points in a file's bytes; a point that makes no sense is skipped (one log line for all of them).

    Raises ValueError (or a subclass), TypeError or KeyError when the bytes are not a history file.
    """
    table = json.loads(data)
    if not isinstance(table, dict) or table.get("version") != FORMAT_VERSION:
        raise ValueError(f"not a version {FORMAT_VERSION} clock history")
    names, rows = table["verdicts"], table["points"]
    if not isinstance(names, list) or not isinstance(rows, list):
        raise TypeError("'verdicts' and 'points' must be lists")
    points, skipped = [], []
    for row in rows:
        try:
            points.append(_point(row, names))
        except (TypeError, ValueError, OverflowError) as exc:  # ValueError: also a row that is not 3 long
            skipped.append(f"{row!r}: {exc}")
    if skipped:
        log.warning("clock history: skipped %d bad point(s) (the first: %s)", len(skipped), skipped[0][:200])
    return points


class OffsetHistory:
    """The offset history, bounded to ``keep_s`` around the newest check and one point per ``slot_s``.

    ``path`` None keeps it in memory only (the CLI). ``writes`` counts the
    file writes, ``bytes_written`` their size.
    """

    def __init__(self, path=None, *, keep_s=KEEP_S, slot_s=SLOT_S, flush_every_s=FLUSH_EVERY_S):
        self.path = path
        self.keep_s = keep_s
        self.slot_s = slot_s
        self.flush_every_s = flush_every_s
        self.writes = 0
        self.bytes_written = 0
        self._slots = {}
        self._dirty = False
        self._flush_due_mono = None
        self._failing = False
        self._lock = threading.Lock()  # the web page reads points while the checker adds them

    def load(self):
        """Read the file, if any; a missing or unreadable one starts an empty history (one log line)."""
        if self.path is None:
            return
        try:
            with open(self.path, "rb") as f:
                points = decode(f.read())
        except FileNotFoundError:
            log.info("no clock history at %s yet; starting one", self.path)
            return
        except (OSError, ValueError, KeyError, TypeError, IndexError, OverflowError, RecursionError) as exc:
            # RecursionError: JSON nested thousands deep. Whatever the file holds, the checks go on.
            log.warning("clock history %s is unreadable (%s); starting a new one", self.path, exc)
            return
        with self._lock:
            for p in points:
                self._put(p)

    def add(self, now, offset_ms, verdict):
        """Record one check made at ``now`` (a Now); its time is the wall clock corrected by ``offset_ms``.

        Returns False, recording nothing, when ``offset_ms`` is None and the
        wall clock is older than the newest point: an uncorrected stale clock.
        """
        at = now.wall - (offset_ms / 1000.0 if offset_ms is not None else 0.0)
        with self._lock:
            if offset_ms is None and self._slots and at < max(p.at for p in self._slots.values()):
                return False
            self._put(Point(at, offset_ms, verdict))
            for slot in [s for s, p in self._slots.items() if abs(p.at - at) > self.keep_s]:
                del self._slots[slot]  # too old, or from a clock that once ran days ahead
            self._dirty = True
        if self._flush_due_mono is None:
            self._flush_due_mono = now.mono + self.flush_every_s
        return True

    def _put(self, point):
        slot = int(point.at // self.slot_s)
        older = self._slots.get(slot)
        self._slots[slot] = point if older is None else merge(older, point)

    def points(self):
        """Every point, oldest first (a tuple of Point)."""
        with self._lock:
            return tuple(sorted(self._slots.values(), key=lambda p: p.at))

    def maybe_flush(self, now_mono):
        """Write the file if there is something new and a write is due: every ``flush_every_s`` from the first
        point added. Returns True when it wrote."""
        if self._flush_due_mono is None or now_mono < self._flush_due_mono:
            return False
        while self._flush_due_mono <= now_mono:
            self._flush_due_mono += self.flush_every_s  # a steady cadence, whether this write works or not
        return self.flush()

    def flush(self):
        """Write the file now if anything changed since the last write; True when it wrote. Never raises."""
        if self.path is None or not self._dirty:
            return False
        try:
            data = encode(self.points())
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            write_atomic(self.path, data)
        except (OSError, ValueError, TypeError) as exc:
            if not self._failing:
                hint = ("check that data_dir exists and this user may write it" if isinstance(exc, OSError)
                        else "a point cannot be stored; this is a bug, please report it")
                log.warning("cannot write the clock history %s (%s); keeping it in memory and trying again in "
                            "%.0f h; %s", self.path, getattr(exc, "strerror", None) or exc,
                            self.flush_every_s / 3600, hint)
            self._failing = True
            return False
        if self._failing:
            log.info("clock history written to %s again", self.path)
        self._failing = False
        self._dirty = False
        self.writes += 1
        self.bytes_written += len(data)
        return True

"""Durations as people read them, in one place for logs, event reasons and alerts."""

import math


def format_duration(seconds):
    """A duration for people, rounded down: "45 s", "12 min", "1 h 5 min", "2 d 3 h".

    Negative or NaN durations (a clock stepped backwards) read "0 s".
    """
    s = int(seconds) if seconds is not None and math.isfinite(seconds) and seconds > 0 else 0
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"

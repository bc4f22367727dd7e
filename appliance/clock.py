"""The two clocks phonehome uses, named.

``mono`` (time.monotonic) schedules and measures intervals; a wall-clock step
of hours (a Pi without an RTC getting NTP) cannot fire or delay anything that
is timed by it. ``wall`` (epoch seconds, UTC) is only for what a person reads,
what is stored, and what crosses the wire. Pure logic takes a ``Now`` as an
argument, so its tests construct one instead of sleeping.
"""

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Now:
    """One reading of both clocks, in seconds."""

    mono: float
    wall: float

    def later(self, seconds):
        """The reading ``seconds`` later on both clocks (for tests and schedules)."""
        return Now(self.mono + seconds, self.wall + seconds)


class SystemClock:
    """The real clocks."""

    def now(self):
        return Now(time.monotonic(), time.time())

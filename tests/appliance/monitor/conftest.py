"""A clock the test moves by hand, for the monitor's service and alert dispatcher."""

import pytest

from appliance.clock import Now

T0 = Now(mono=1000.0, wall=1_700_000_000.0)


class ManualClock:
    """Reads ``now`` until the test moves it with ``advance`` (both clocks) or ``step_wall`` (wall only)."""

    def __init__(self, start=T0):
        self.current = start

    def now(self):
        return self.current

    def advance(self, seconds):
        """Move both clocks on by ``seconds``; return the new reading."""
        self.current = self.current.later(seconds)
        return self.current

    def step_wall(self, seconds):
        """Step only the wall clock (NTP correcting a Pi without an RTC); return the new reading."""
        self.current = Now(self.current.mono, self.current.wall + seconds)
        return self.current


@pytest.fixture
def clock():
    """A ManualClock reading T0 (mono 1000 s, wall 2023-11-14 22:13:20 UTC)."""
    return ManualClock()

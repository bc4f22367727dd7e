"""A clock the test moves by hand, for the monitor's service and alert dispatcher; New York wall times for the
tests whose alerts and causes write times in the monitor host's zone."""

import time
from datetime import datetime
from zoneinfo import ZoneInfo

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


NY = ZoneInfo("America/New_York")


def ny(text, day=14):
    """Epoch seconds of a New York wall time "10:48:00" on 2025-01-``day`` (or of a full "2025-01-14 10:48")."""
    if len(text) <= 8:
        text = f"2025-01-{day:02d} {text}"
    return datetime.fromisoformat(text).replace(tzinfo=NY).timestamp()


@pytest.fixture
def new_york(monkeypatch):
    """The monitor's host runs in New York time: causes and alerts write their times in its zone."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()

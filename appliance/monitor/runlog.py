"""The monitor's run log: when it ran, so that it can say when it did not. Pure but for the store it is given.

Each start adds a run (started_at, alive_at, stopped_at; wall-clock epoch
seconds). The scheduler writes alive_at at most once a minute (never per
heartbeat; it wakes at least once a minute); a clean stop writes stopped_at. At the next start the gap since
the previous run's end (its stop, or after a crash its last alive_at) is said
once in the log and on the device list. The startup grace (machine.Machine)
covers any gap: no device is declared down until the monitor has run for
that device's max_silence_s again. A scheduler that wakes far later than it
meant to (the process was stopped, or starved) is such a gap too.
"""

from dataclasses import dataclass

from appliance.alerts.messages import Times
from appliance.timefmt import format_duration

ALIVE_EVERY_S = 60.0
# A scheduler step this much later than planned means the monitor was not running meanwhile.
STALL_S = 30.0


@dataclass(frozen=True)
class Run:
    """One run of the monitor; ``stopped_at`` is None while it runs and after a crash."""

    id: int
    started_at: float
    alive_at: float
    stopped_at: float | None


def grace_text(max_silences):
    """ "300 s" or "60–600 s (each device's max_silence_s)"; None without devices."""
    values = sorted(set(max_silences))
    if not values:
        return None
    if len(values) == 1:
        return f"{values[0]:g} s"
    return f"{values[0]:g}\u2013{values[-1]:g} s (each device's max_silence_s)"


def describe_gap(previous, started_at, *, grace=None, tz=None):
    """The sentence about the time before ``started_at`` when the monitor was not running; None on a first start.

    ``previous`` is the run before (a Run), ``grace`` the startup grace as
    text (see grace_text), ``tz`` the zone for the times (None: the host's).
    After a crash the gap starts at the last time the run was known alive
    (written at most a minute apart, so it may have lived up to a minute more).
    """
    if previous is None:
        return None
    times = Times(started_at, tz)
    crashed = previous.stopped_at is None
    end = previous.alive_at if crashed else previous.stopped_at
    gap_s = max(0.0, started_at - end)
    text = f"monitor was not running from {times.short(end)} to {times.zoned(started_at)} ({format_duration(gap_s)})"
    if crashed:
        text += "; it did not stop cleanly (a crash, a kill or a power cut), last known alive at the start of the gap"
    if grace:
        text += f"; startup grace of {grace} applies"
    return text


def describe_stall(late_s, now_wall, *, grace=None, tz=None):
    """The sentence about a scheduler step ``late_s`` seconds late (the process was stopped or starved)."""
    times = Times(now_wall, tz)
    text = (f"monitor was not running from {times.short(now_wall - late_s)} to {times.zoned(now_wall)} "
            f"({format_duration(late_s)}): its scheduler woke that late (the process was stopped, suspended "
            f"or starved)")
    if grace:
        text += f"; startup grace of {grace} applies again"
    return text


class RunLog:
    """This run in the store: ``previous`` (the Run before, or None) and when alive_at is next due.

    ``store`` has start_run, run_alive and run_stopped (see store_self).
    """

    def __init__(self, store, now):
        self._store = store
        self.previous, self.run_id = store.start_run(now.wall)
        self.started_at = now.wall
        self._next_alive = now.mono + ALIVE_EVERY_S

    def alive_due(self, now):
        """True when alive_at should be written now (then it is next due a minute later)."""
        if now.mono < self._next_alive:
            return False
        self._next_alive = now.mono + ALIVE_EVERY_S
        return True

    def alive(self, now):
        self._store.run_alive(self.run_id, now.wall)

    def stopped(self, now):
        self._store.run_stopped(self.run_id, now.wall)

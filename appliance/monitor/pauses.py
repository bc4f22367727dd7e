"""Paused alerts: which devices' alerts nobody wants right now, and until when. Pure.

A pause silences alerts only: the device's transitions are still judged,
stored and shown. A timed pause ends on the monotonic clock while the
process runs, so a wall-clock step (a Pi getting NTP) neither ends it early
nor stretches it; the wall-clock end is kept for people and for a restart,
as the dispatcher keeps its retry times.
"""

from dataclasses import dataclass

# What the web page offers: (form value, seconds or None for "until resumed", label).
DURATIONS = (("1h", 3600.0, "1 hour"), ("1d", 86400.0, "1 day"), ("until-resumed", None, "until resumed"))


def check_pause_s(for_s):
    """Raise ValueError unless ``for_s`` is None (until resumed) or a positive number of seconds."""
    if for_s is not None and not (isinstance(for_s, (int, float)) and for_s > 0 and for_s != float("inf")):
        raise ValueError(f"a pause lasts a positive number of seconds or until resumed, got {for_s!r}")


@dataclass(frozen=True)
class Pause:
    """One device's pause as people read it: wall-clock epoch seconds; ``until`` None means until resumed."""

    paused_at: float
    until: float | None


class Pauses:
    """The devices whose alerts are paused. Every method that judges takes the current time as a ``Now``."""

    def __init__(self, stored=None, *, now):
        """``stored`` is the store's {device: (paused_at, until)}; pauses that ended while stopped are dropped."""
        self._pauses = {}  # device -> (Pause, monotonic end or None)
        for device, (paused_at, until) in (stored or {}).items():
            if until is None or until > now.wall:
                end = None if until is None else now.mono + (until - now.wall)
                self._pauses[device] = (Pause(paused_at, until), end)

    def pause(self, device, now, *, for_s=None):
        """Pause ``device`` for ``for_s`` seconds (None: until resumed), replacing any pause; return the Pause.

        Raises ValueError when ``for_s`` is not a positive number of seconds.
        """
        check_pause_s(for_s)
        pause = Pause(now.wall, None if for_s is None else now.wall + for_s)
        self._pauses[device] = (pause, None if for_s is None else now.mono + for_s)
        return pause

    def resume(self, device):
        """End ``device``'s pause; True when it had one (ended or not)."""
        return self._pauses.pop(device, None) is not None

    def get(self, device, now):
        """``device``'s Pause while it lasts, else None."""
        entry = self._pauses.get(device)
        if entry is None:
            return None
        pause, end = entry
        if end is not None and now.mono >= end:
            del self._pauses[device]
            return None
        return pause

    def muted(self, devices, now):
        """The subset of ``devices`` whose alerts are paused at ``now``."""
        return {d for d in devices if self.get(d, now) is not None}

    def active(self, now):
        """{device: Pause} of every pause that lasts at ``now``."""
        return {d: p for d in list(self._pauses) if (p := self.get(d, now)) is not None}

"""Flapping: a device whose state changes too often gets one notice and, once steady, one summary. Pure.

A device is flapping when it changed state (DOWN or UP) more than
``threshold`` times within ``window_s`` (an hour). From the change that
crosses the line, its per-change alerts are summarised: one FLAPPING notice
goes out, its changes are still recorded, and once it has kept one state for
``quiet_s`` the episode ends with one summary. After that it starts afresh:
it must cross the line again to be flapping again.

Per device only the times of its last ``threshold + 1`` changes are kept, so
a change costs O(1) and memory is bounded by devices × (threshold + 1).
Windows and quiet periods run on the monotonic clock; the wall-clock times
are for people and for the store, from which a restarted monitor reopens an
episode (its quiet period counted from the last change's wall time). The
quiet deadlines live in one heap with at most one live entry per episode: a
change only moves the episode's deadline, and the old entry is pushed on when
it comes due, as the state machine does with its deadlines.
"""

import heapq
from collections import deque
from dataclasses import dataclass, replace

WINDOW_S = 3600.0


@dataclass(frozen=True)
class Episode:
    """One flapping episode as people read it; times are wall-clock epoch seconds.

    ``first_at`` is the first change of the window that made the device
    flapping, ``last_at`` its latest change, ``changes`` how many changes
    from ``first_at`` to ``last_at``, both included.
    """

    device: str
    first_at: float
    changes: int
    last_at: float


class Flapping:
    """The devices that change state too often. Every method that judges takes the current time as a ``Now``.

    ``threshold`` 0 turns the detection off (nothing is kept).
    """

    def __init__(self, *, threshold, quiet_s, window_s=WINDOW_S):
        self._recent = {}    # device -> deque of (mono, wall) of its last changes, while it is not flapping
        self._episodes = {}  # device -> [Episode, quiet end (monotonic), generation]
        self._heap = []      # (quiet end, generation, device)
        self._gen = 0
        self.threshold, self.quiet_s, self.window_s = threshold, quiet_s, window_s

    def configure(self, *, threshold, quiet_s, devices=None):
        """Use new settings; with ``devices`` (names), forget the others. Open episodes keep their changes.

        A changed ``quiet_s`` moves open episodes' deadlines by the difference.
        """
        if devices is not None:
            keep = set(devices)
            for device in [d for d in self._recent if d not in keep]:
                del self._recent[device]
            for device in [d for d in self._episodes if d not in keep]:
                del self._episodes[device]  # its heap entry dies of a missing episode
        if threshold != self.threshold:
            self._recent = {d: deque(times, maxlen=threshold + 1) for d, times in self._recent.items()} \
                if threshold else {}
        if quiet_s != self.quiet_s:
            for device, entry in self._episodes.items():
                self._schedule(device, entry[0], entry[1] + quiet_s - self.quiet_s)
        self.threshold, self.quiet_s = threshold, quiet_s

    def change(self, device, now):
        """``device`` changed state at ``now``; return (began, Episode or None).

        The Episode is the device's open one after this change (None: it is
        not flapping); ``began`` is True for the change that made it flapping.
        """
        entry = self._episodes.get(device)
        if entry is not None:
            episode = replace(entry[0], changes=entry[0].changes + 1, last_at=now.wall)
            entry[0], entry[1] = episode, now.mono + self.quiet_s  # the heap entry is pushed on when it comes due
            return False, episode
        if not self.threshold:
            return False, None
        times = self._recent.get(device)
        if times is None:
            times = self._recent[device] = deque(maxlen=self.threshold + 1)
        times.append((now.mono, now.wall))
        if len(times) <= self.threshold or now.mono - times[0][0] >= self.window_s:
            return False, None
        del self._recent[device]
        episode = Episode(device, first_at=times[0][1], changes=len(times), last_at=now.wall)
        self._schedule(device, episode, now.mono + self.quiet_s)
        return True, episode

    def _schedule(self, device, episode, end):
        self._gen += 1
        self._episodes[device] = [episode, end, self._gen]
        heapq.heappush(self._heap, (end, self._gen, device))

    def episode(self, device):
        """``device``'s open Episode, or None when it is not flapping."""
        entry = self._episodes.get(device)
        return None if entry is None else entry[0]

    def episodes(self):
        """{device: Episode} of every open episode."""
        return {device: entry[0] for device, entry in self._episodes.items()}

    def restore(self, episodes, now):
        """Reopen Episodes kept across a restart; each ends ``quiet_s`` after its last change (wall clock)."""
        for episode in episodes:
            left = max(0.0, min(self.quiet_s, episode.last_at + self.quiet_s - now.wall))
            self._recent.pop(episode.device, None)
            self._schedule(episode.device, episode, now.mono + left)

    def due(self, now):
        """End the episodes whose device kept its state for ``quiet_s``; return them, the earliest first."""
        ended = []
        heap = self._heap
        while heap and heap[0][0] <= now.mono:
            _, gen, device = heapq.heappop(heap)
            entry = self._episodes.get(device)
            if entry is None or entry[2] != gen:
                continue  # superseded
            if entry[1] > now.mono:
                heapq.heappush(heap, (entry[1], gen, device))  # moved on by changes
                continue
            del self._episodes[device]
            ended.append(entry[0])
        return ended

    def next_due(self):
        """The monotonic time the next heap entry comes due (maybe early: it may have moved on), or None."""
        return self._heap[0][0] if self._heap else None

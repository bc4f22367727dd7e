"""Failed-login counting per client, so a LAN device cannot guess the password or the setup code."""

import threading
import time
from collections import OrderedDict, deque


class FailureLimiter:
    """At most ``max_failures`` failures per client in any ``window_s``; then the client waits.

    Memory is bounded: at most ``max_clients`` clients are remembered, the
    least recently seen forgotten first. ``now`` is a monotonic clock.
    """

    def __init__(self, *, max_failures=5, window_s=300.0, max_clients=1024, now=time.monotonic):
        self.max_failures = max_failures
        self.window_s = window_s
        self._max_clients = max_clients
        self._now = now
        self._failures = OrderedDict()  # client -> deque of monotonic failure times
        self._lock = threading.Lock()

    def begin(self, client):
        """Count an attempt as failed until it succeeds, and return 0; or, when ``client`` must wait, the seconds.

        Checked and counted in one step, so parallel requests cannot slip
        more guesses past the limit than it allows.
        """
        now = self._now()
        with self._lock:
            times = self._recent(client, now)
            if len(times) >= self.max_failures:
                return max(0.0, times[0] + self.window_s - now)
            times.append(now)
            self._failures.move_to_end(client)
            while len(self._failures) > self._max_clients:
                self._failures.popitem(last=False)
            return 0.0

    def refund(self, client):
        """Take back the attempt ``begin`` counted: nothing secret was checked (a form mistake)."""
        with self._lock:
            times = self._failures.get(client)
            if times:
                times.pop()

    def succeeded(self, client):
        with self._lock:
            self._failures.pop(client, None)

    def _recent(self, client, now):
        times = self._failures.setdefault(client, deque(maxlen=self.max_failures))
        while times and times[0] + self.window_s <= now:
            times.popleft()
        return times

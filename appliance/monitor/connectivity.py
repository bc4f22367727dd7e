"""The monitor's own connectivity, as its canaries say it. Pure: every method takes the time as a ``Now``.

The canaries (``canaries.CanaryProber``) are asked every
``monitor.canary_every_s``; this keeps what their last answer means and
since when, so that the self-check (``selfcheck``) can tell whether the
monitor could have heard a device all along.
"""


class Connectivity:
    """The monitor's own connectivity as its canaries and the heartbeats it receives tell it.

    ``state`` is "unknown" (no canaries, or none probed yet), "ok" (a canary
    answered the last probe) or "lost" (none did). ``ok_since`` is the
    monotonic time of the first of the answers in a row that make it ok now.
    """

    def __init__(self):
        self.state = "unknown"
        self.changed_at = None      # wall time of the last change, for people
        self.checked_at = None      # wall time of the last probe
        self.detail = ""
        self.ok_since = None

    def canary(self, ok, now, detail=""):
        """A probe's result; return True when the state changed (log it once)."""
        new = "ok" if ok else "lost"
        self.checked_at, self.detail = now.wall, detail
        if ok and self.state != "ok":
            self.ok_since = now.mono
        elif not ok:
            self.ok_since = None
        if new == self.state:
            return False
        self.state, self.changed_at = new, now.wall
        return True

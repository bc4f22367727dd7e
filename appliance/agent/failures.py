"""Send-failure windows: when this agent could not deliver its heartbeats, per target.

After an outage, the first heartbeat that gets through tells the monitor
"my sends failed from X to Y, N times" while the boot id says "and I did not
reboot": together that reads as an Internet outage, not a power cut.

A window opens at the first failed send (``from`` = that send's epoch),
counts the failures, and closes at the next successful send (``to`` = that
send's epoch); the send that closes it already carries it. Closed windows
are carried until a 2xx from the same target acknowledges them, then
dropped; at most MAX_WINDOWS are kept.

Windows survive agent restarts but not reboots: they are saved with the
boot id, and a file from another boot is discarded (the monitor learns of a
power cut from the boot id instead). To spare the SD card the file is
written only when a window opens, closes or is acknowledged, and on a clean
stop, never once per failed minute; a crash can therefore undercount
``failures``, while ``from`` and ``to`` stay exact.
"""

import json
import logging
import os
import threading
from dataclasses import dataclass, replace

from appliance.atomic import write_atomic

log = logging.getLogger("phonehome.agent")

STATE_FILE = "agent-state.json"
MAX_WINDOWS = 50


@dataclass(frozen=True)
class Window:
    """A stretch of failed sends to one target; epoch seconds (UTC). ``to_at`` is None while open."""

    from_at: float
    to_at: float | None = None
    failures: int = 1

    def as_json(self):
        """The window as the heartbeat payload carries it."""
        return {"from": self.from_at, "to": self.to_at, "failures": self.failures}


@dataclass(frozen=True)
class Windows:
    """One target's windows: at most one open, then the closed ones not yet acknowledged, oldest first."""

    open: Window | None = None
    closed: tuple[Window, ...] = ()

    def failed(self, at):
        """After a failed send at epoch ``at``: opens a window or counts one more failure."""
        if self.open is None:
            return replace(self, open=Window(from_at=at))
        return replace(self, open=replace(self.open, failures=self.open.failures + 1))

    def succeeded(self, at, *, acknowledged):
        """After a successful send at epoch ``at``: closes the open window; drops all if ``acknowledged``.

        The send at ``at`` carried every closed window (see ``carried``), so
        an acknowledgement covers them all.
        """
        if acknowledged:
            return Windows()
        if self.open is None:
            return self
        return Windows(closed=(*self.closed, replace(self.open, to_at=at))[-MAX_WINDOWS:])

    def carried(self, at):
        """The windows a send at epoch ``at`` carries: the closed ones and the open one as if it closes now."""
        closing = () if self.open is None else (replace(self.open, to_at=at),)
        return (*self.closed, *closing)[-MAX_WINDOWS:]

    def differs_in_shape(self, other):
        """True when a window opened, closed or was dropped between ``self`` and ``other`` (not just a count)."""
        return (self.open is None) != (other.open is None) or self.closed != other.closed


def target_key(target):
    """The stable key of a target in the state file: its kind and URL (the token stays out)."""
    return f"{target.kind} {target.url}"


class FailureLog:
    """Every target's windows, saved in ``path`` with the boot id.

    Thread-safe: each target's worker thread records its own sends.
    ``write`` is injectable so tests can count the writes.
    """

    def __init__(self, path, *, boot_id, write=write_atomic):
        self.path = path
        self._boot_id = boot_id
        self._write = write
        self._lock = threading.Lock()
        self._dirty = False  # counts changed since the last save
        self._save_failed = False
        self._windows = self._load()

    def windows(self, key):
        """The Windows of the target with ``key``."""
        with self._lock:
            return self._windows.get(key, Windows())

    def carried(self, key, at):
        """The windows a send to ``key`` at epoch ``at`` carries, as a tuple of Window."""
        return self.windows(key).carried(at)

    def failed(self, key, at):
        """Record a failed send to ``key`` at epoch ``at``; saves only when this opens a window."""
        self._update(key, lambda w: w.failed(at))

    def succeeded(self, key, at, *, acknowledged):
        """Record a successful send to ``key`` at epoch ``at``; ``acknowledged`` when the answer was a 2xx."""
        self._update(key, lambda w: w.succeeded(at, acknowledged=acknowledged))

    def flush(self):
        """Save failure counts not yet saved (on a clean stop)."""
        with self._lock:
            if self._dirty:
                self._save()

    def _update(self, key, change):
        with self._lock:
            old = self._windows.get(key, Windows())
            new = change(old)
            if new == old:
                return
            if new == Windows():
                self._windows.pop(key, None)
            else:
                self._windows[key] = new
            if old.differs_in_shape(new):
                self._save()
            else:
                self._dirty = True

    def _save(self):
        state = {"boot_id": self._boot_id, "targets": {
            key: {"open": w.open and w.open.as_json(), "closed": [c.as_json() for c in w.closed]}
            for key, w in self._windows.items()}}
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._write(self.path, json.dumps(state, indent=1) + "\n", mode=0o600)
        except OSError as exc:
            if not self._save_failed:
                log.warning("cannot save %s: %s; send-failure windows will not survive an agent restart "
                            "(check that the data directory is writable)", self.path, exc.strerror or exc)
            self._save_failed = True
            return
        self._save_failed = False
        self._dirty = False

    def _load(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                state = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: cannot read it (%s); earlier send-failure windows are lost", self.path, exc)
            return {}
        try:
            if not self._boot_id or state["boot_id"] != self._boot_id:
                log.info("discarding the send-failure windows in %s: they are from an earlier boot "
                         "(the monitor learns of the reboot from the boot id)", self.path)
                return {}
            return {key: Windows(open=_window(w["open"]), closed=tuple(_window(c) for c in w["closed"]))
                    for key, w in state["targets"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("ignoring %s: not a phonehome agent state file (%s: %s); earlier send-failure "
                        "windows are lost", self.path, type(exc).__name__, exc)
            return {}


def _window(table):
    if table is None:
        return None
    to_at = table["to"]
    return Window(from_at=float(table["from"]), to_at=None if to_at is None else float(to_at),
                  failures=int(table["failures"]))

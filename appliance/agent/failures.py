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

Each edge is also kept on the monotonic clock, and a send carries the
windows moved onto the wall clock it reads now: when NTP steps the wall
clock during an outage (a day back, say), a window still spans the outage
on the clock its heartbeat's ``sent_at`` is read on, instead of ending
before it began. The monotonic clock counts from boot, so it holds across
agent restarts for exactly as long as windows are kept.
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
# A wall clock this much further on (or back) than the monotonic clock since a window's edge was read has been
# stepped (NTP slews by at most 0.5 ms a second); a smaller difference leaves the edge exactly as read.
WALL_STEP_S = 1.0


@dataclass(frozen=True)
class Window:
    """A stretch of failed sends to one target; epoch seconds (UTC). ``to_at`` is None while open.

    ``from_mono`` and ``to_mono`` are the same edges on the monotonic clock
    (seconds since boot), None when unknown (a file from an older agent).
    """

    from_at: float
    to_at: float | None = None
    failures: int = 1
    from_mono: float | None = None
    to_mono: float | None = None

    def as_json(self):
        """The window as the heartbeat payload carries it."""
        return {"from": self.from_at, "to": self.to_at, "failures": self.failures}

    def on_wall_clock(self, at, mono):
        """This window with its edges on the wall clock that reads epoch ``at`` at monotonic ``mono``
        (unchanged when either monotonic reading is unknown)."""
        if mono is None:
            return self
        return replace(self, from_at=_moved(self.from_at, self.from_mono, at, mono),
                       to_at=_moved(self.to_at, self.to_mono, at, mono))


@dataclass(frozen=True)
class Windows:
    """One target's windows: at most one open, then the closed ones not yet acknowledged, oldest first."""

    open: Window | None = None
    closed: tuple[Window, ...] = ()

    def failed(self, at, *, mono=None):
        """After a failed send at epoch ``at`` (monotonic ``mono``): opens a window or counts one more failure."""
        if self.open is None:
            return replace(self, open=Window(from_at=at, from_mono=mono))
        return replace(self, open=replace(self.open, failures=self.open.failures + 1))

    def succeeded(self, at, *, acknowledged, mono=None):
        """After a successful send at epoch ``at`` (monotonic ``mono``): closes the open window; drops all if
        ``acknowledged``.

        The send at ``at`` carried every closed window (see ``carried``), so
        an acknowledgement covers them all.
        """
        if acknowledged:
            return Windows()
        if self.open is None:
            return self
        return Windows(closed=(*self.closed, replace(self.open, to_at=at, to_mono=mono))[-MAX_WINDOWS:])

    def carried(self, at, *, mono=None):
        """The windows a send at epoch ``at`` (monotonic ``mono``) carries: the closed ones and the open one as
        if it closes now, on the wall clock as it reads now."""
        closing = () if self.open is None else (replace(self.open, to_at=at, to_mono=mono),)
        return tuple(w.on_wall_clock(at, mono) for w in (*self.closed, *closing)[-MAX_WINDOWS:])

    def differs_in_shape(self, other):
        """True when a window opened, closed or was dropped between ``self`` and ``other`` (not just a count)."""
        return (self.open is None) != (other.open is None) or self.closed != other.closed


def _moved(edge_at, edge_mono, at, mono):
    """``edge_at`` moved by the step the wall clock made since it was read (as read when under WALL_STEP_S)."""
    if edge_at is None or edge_mono is None:
        return edge_at
    step = (at - mono) - (edge_at - edge_mono)
    return edge_at + step if abs(step) >= WALL_STEP_S else edge_at


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

    def carried(self, key, at, *, mono=None):
        """The windows a send to ``key`` at epoch ``at`` (monotonic ``mono``) carries, as a tuple of Window."""
        return self.windows(key).carried(at, mono=mono)

    def failed(self, key, at, *, mono=None):
        """Record a failed send to ``key`` at epoch ``at`` (monotonic ``mono``); saves only when this opens a
        window."""
        self._update(key, lambda w: w.failed(at, mono=mono))

    def succeeded(self, key, at, *, acknowledged, mono=None):
        """Record a successful send to ``key`` at epoch ``at`` (monotonic ``mono``); ``acknowledged`` when the
        answer was a 2xx."""
        self._update(key, lambda w: w.succeeded(at, acknowledged=acknowledged, mono=mono))

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
            key: {"open": w.open and _saved(w.open), "closed": [_saved(c) for c in w.closed]}
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


def _saved(window):
    monos = {"from_mono": window.from_mono, "to_mono": window.to_mono}
    return {**window.as_json(), **{k: v for k, v in monos.items() if v is not None}}


def _window(table):
    if table is None:
        return None
    to_at, from_mono, to_mono = table["to"], table.get("from_mono"), table.get("to_mono")
    return Window(from_at=float(table["from"]), to_at=None if to_at is None else float(to_at),
                  failures=int(table["failures"]), from_mono=None if from_mono is None else float(from_mono),
                  to_mono=None if to_mono is None else float(to_mono))

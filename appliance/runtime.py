"""Running a role (agent or monitor) as a daemon: signals, config reloads, orderly stop.

A role is an object with ``start()``, ``apply(config)`` and ``stop()``. The
config file is re-read on SIGHUP and whenever it changes on disk (the setup
page writes it), so a saved change takes effect without a restart. A config
that does not validate is reported and the running one is kept.
"""

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

from appliance import systemd
from appliance.config import load_config
from appliance.errors import ConfigError

log = logging.getLogger("phonehome")

CONFIG_POLL_S = 2.0


class ConfigWatcher:
    """Notices when the config file was replaced or edited (by its inode, size and mtime)."""

    def __init__(self, path):
        self.path = path
        self._seen = self._signature()

    def _signature(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def changed(self):
        """True once per change of the file since the last call."""
        now = self._signature()
        if now == self._seen:
            return False
        self._seen = now
        return True


@dataclass(frozen=True)
class Applied:
    """How a reload ended: ``ok``, at wall-clock ``at`` (epoch seconds), and what went wrong if not."""

    ok: bool
    at: float
    error: str = ""


class Control:
    """How other threads (the web page) ask the running daemon to reload, restart or stop.

    Every reload and stop happens on the daemon's main loop, so a config is
    never applied by two threads at once, and a web request that asked for a
    reload never stops the server it is answered by.
    """

    def __init__(self):
        self.stopping = threading.Event()
        self.restart_requested = False
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._asked = 0
        self._done = 0
        self._last = None

    def reload(self, *, wait_s=10.0):
        """Ask for a reload of the config file and wait for it; return Applied, or None if it took too long."""
        with self._cond:
            self._asked += 1
            ticket = self._asked
        self._wake.set()
        with self._cond:
            self._cond.wait_for(lambda: self._done >= ticket or self.stopping.is_set(), timeout=wait_s)
            return self._last if self._done >= ticket else None

    def restart(self):
        """Stop in order, then start the same command again (see ``restart_process``)."""
        self.restart_requested = True
        self.stop()

    def stop(self):
        self.stopping.set()
        self._wake.set()

    def _wait(self, timeout_s):
        self._wake.wait(timeout_s)
        self._wake.clear()

    def _take(self):
        """The reload requests made so far (a number to hand to ``_finish``), 0 when there are none."""
        with self._cond:
            return self._asked if self._asked > self._done else 0

    def _finish(self, upto, applied):
        with self._cond:
            self._done, self._last = max(self._done, upto), applied
            self._cond.notify_all()


def serve(role, config_path, *, control=None, poll_s=CONFIG_POLL_S, install_signals=True, clock=time.time):
    """Start ``role``, keep applying config changes until stopped, then stop it. Returns 0.

    ``role.control`` is set to the Control before the role starts, for the
    parts (the web page) that ask for reloads.
    """
    control = control or Control()
    sighup = threading.Event()
    if install_signals:
        signal.signal(signal.SIGTERM, lambda *_: control.stop())
        signal.signal(signal.SIGINT, lambda *_: control.stop())
        signal.signal(signal.SIGHUP, lambda *_: (sighup.set(), control._wake.set()))
    watcher = ConfigWatcher(config_path)
    watchdog = Watchdog(role, systemd.watchdog_interval_s())
    role.control = control
    role.start()
    systemd.notify("READY=1")
    try:
        while not control.stopping.is_set():
            watchdog.feed(time.monotonic())
            control._wait(watchdog.wait_s(poll_s))
            if control.stopping.is_set():
                break
            asked = control._take()
            if asked or sighup.is_set() or watcher.changed():
                sighup.clear()
                watcher.changed()  # a reload reads the file as it is now: that change is seen
                ok, error = reload_config(role, config_path)
                if asked:
                    control._finish(asked, Applied(ok, clock(), error))
    finally:
        systemd.notify("RELOADING=1" if control.restart_requested else "STOPPING=1")
        role.stop()
    return 0


class Watchdog:
    """Feeds systemd's watchdog from the main loop, only while the role says it is healthy.

    A hung main loop stops the pings by itself; a hung heartbeat loop stops them through ``role.healthy``.
    Either way systemd kills and restarts the service after WatchdogSec.
    """

    def __init__(self, role, every_s):
        self._healthy = getattr(role, "healthy", lambda now_mono: True)
        self.every_s = every_s
        self._said_stuck = False

    def wait_s(self, poll_s):
        return poll_s if self.every_s is None else min(poll_s, self.every_s)

    def feed(self, now_mono):
        if self.every_s is None:
            return
        if self._healthy(now_mono):
            if self._said_stuck:
                log.warning("the heartbeat loop is running again; feeding systemd's watchdog again")
                self._said_stuck = False
            systemd.notify("WATCHDOG=1")
        elif not self._said_stuck:
            log.error("a heartbeat loop is stuck; no longer feeding systemd's watchdog, which will restart phonehome")
            self._said_stuck = True


def restart_process():
    """Replace this process with a fresh run of the same command (same PID, so systemd keeps watching it)."""
    log.warning("restarting phonehome as asked from the web page")
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, "-m", "appliance", *sys.argv[1:]])


def reload_config(role, config_path):
    """Load the config and apply it to ``role``; keep the running config when it is invalid.

    Returns (ok, error): error says what went wrong, for the web page.
    """
    try:
        # A file that vanished for a moment (an editor's save, an upgrade) is not an empty config.
        config = load_config(config_path, missing_ok=False)
    except ConfigError as exc:
        log.error("config not reloaded, keeping the running one: %s", exc)
        return False, str(exc)
    try:
        role.apply(config)
    except Exception as exc:  # a part that cannot start must not stop the rest, heartbeats above all
        log.exception("config from %s applied only in part; the parts that failed are said above", config_path)
        return False, f"applied only in part: {exc}; the service log says more"
    log.info("config reloaded from %s", config_path)
    return True, ""

"""Running a role (agent or monitor) as a daemon: signals, config reloads, orderly stop.

A role is an object with ``start()``, ``apply(config)`` and ``stop()``. The
config file is re-read on SIGHUP and whenever it changes on disk (the setup
page writes it), so a saved change takes effect without a restart. A config
that does not validate is reported and the running one is kept.
"""

import logging
import os
import signal
import threading

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


def serve(role, config_path, *, stopping=None, poll_s=CONFIG_POLL_S, install_signals=True):
    """Start ``role``, keep applying config changes until stopped, then stop it. Returns 0."""
    stopping = stopping or threading.Event()
    reload_now = threading.Event()
    if install_signals:
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        signal.signal(signal.SIGINT, lambda *_: stopping.set())
        signal.signal(signal.SIGHUP, lambda *_: reload_now.set())
    watcher = ConfigWatcher(config_path)
    role.start()
    systemd.notify("READY=1")
    try:
        while not stopping.is_set():
            stopping.wait(poll_s)
            if stopping.is_set():
                break
            if reload_now.is_set() or watcher.changed():
                reload_now.clear()
                reload_config(role, config_path)
    finally:
        systemd.notify("STOPPING=1")
        role.stop()
    return 0


def reload_config(role, config_path):
    """Load the config and apply it to ``role``; keep the running config when it is invalid."""
    try:
        # A file that vanished for a moment (an editor's save, an upgrade) is not an empty config.
        config = load_config(config_path, missing_ok=False)
    except ConfigError as exc:
        log.error("config not reloaded, keeping the running one: %s", exc)
        return False
    try:
        role.apply(config)
    except Exception:  # a part that cannot start must not stop the rest, heartbeats above all
        log.exception("config from %s applied only in part; the parts that failed are said above", config_path)
        return False
    log.info("config reloaded from %s", config_path)
    return True

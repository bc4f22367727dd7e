"""The roles ``phonehome`` runs, built from a config: start, apply a new config, stop.

Started in dependency order and stopped in reverse, inside ``finally`` by the
runtime, so a failure half-way leaves nothing running.
"""

import logging

from appliance.config.schema import Monitor
from appliance.errors import ListenError, PhonehomeError

log = logging.getLogger("phonehome")


class MonitorRole:
    """The monitor service and its HTTP server."""

    def __init__(self, config, *, clock=None, channels=None, retry_first_s=10.0, web_mode="monitor",
                 on_events=None):
        self._config = config
        self._web_mode = web_mode  # "appliance" inside an agent: the password comes from claiming the Pi
        # on_events: MonitorService's hook (the agent's peer watchdog), kept across a restart of the service.
        self._options = dict(clock=clock, channels=channels, retry_first_s=retry_first_s, on_events=on_events)
        self.service = None
        self.server = None

    def start(self):
        from appliance.monitor.service import MonitorService

        self.service = MonitorService(self._config, **self._options)
        self.service.start()
        try:
            self.server = self._serve(self._listen(self._config))
        except BaseException:
            self.service.stop()
            raise
        return self

    @staticmethod
    def _listen(config):
        return (config.monitor or Monitor()).listen

    def _serve(self, listen):
        from web import create_monitor_app
        from web.server import HttpServer

        try:
            server = HttpServer(create_monitor_app(self.service, mode=self._web_mode), listen).start()
        except OSError as exc:
            raise ListenError(f"monitor cannot listen on {listen}: {exc.strerror}; "
                              f"change monitor.listen or stop what uses that port") from None
        log.info("monitor listening on http://%s (%d device(s))", listen,
                 len((self._config.monitor or Monitor()).devices))
        return server

    def apply(self, config):
        """Apply a new config; parts that cannot change in place are restarted, and on failure the old stay."""
        old = self._config
        if (old.data_dir, _access_log(old)) != (config.data_dir, _access_log(config)):
            self._restart(config)
            return
        self._config = config
        self.service.reload(config)
        if self._listen(config) != self.server.listen:
            self._move(self._listen(config))

    def _restart(self, config):
        """A new database or access log: stop and start again, back on the old config if that fails."""
        old = self._config
        self.stop()
        self._config = config
        try:
            self.start()
        except PhonehomeError as exc:
            log.error("%s; going on with the previous data_dir and access_log", exc)
            self._config = old
            self.start()

    def _move(self, listen):
        """Listen on a new address; when only the host changed the port must be freed first."""
        old = self.server
        try:
            self.server = self._serve(listen)
        except ListenError:
            old.stop()  # e.g. 127.0.0.1:8081 -> 0.0.0.0:8081: the old socket holds the port
            try:
                self.server = self._serve(listen)
            except ListenError as exc:
                log.error("%s; still listening on %s", exc, old.listen)
                self.server = self._serve(old.listen)
            return
        old.stop()

    def stop(self):
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.service is not None:
            self.service.stop()
            self.service = None


def _access_log(config):
    return (config.monitor or Monitor()).access_log

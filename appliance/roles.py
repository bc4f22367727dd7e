"""The roles ``phonehome`` runs, built from a config: start, apply a new config, stop.

Started in dependency order and stopped in reverse, inside ``finally`` by the
runtime, so a failure half-way leaves nothing running.
"""

import logging

from appliance.config.schema import Monitor
from appliance.errors import PhonehomeError

log = logging.getLogger("phonehome")


class ListenError(PhonehomeError):
    """The HTTP server could not bind its address."""


class MonitorRole:
    """The monitor service and its HTTP server."""

    def __init__(self, config, *, clock=None, channels=None, retry_first_s=10.0):
        self._config = config
        self._options = dict(clock=clock, channels=channels, retry_first_s=retry_first_s)
        self.service = None
        self.server = None

    def start(self):
        from appliance.monitor.service import MonitorService

        self.service = MonitorService(self._config, **self._options)
        self.service.start()
        try:
            self._serve(self._listen(self._config))
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
            self.server = HttpServer(create_monitor_app(self.service), listen).start()
        except OSError as exc:
            raise ListenError(f"monitor cannot listen on {listen}: {exc.strerror}; "
                              f"change monitor.listen or stop what uses that port") from None
        log.info("monitor listening on http://%s (%d device(s))", listen,
                 len((self._config.monitor or Monitor()).devices))

    def apply(self, config):
        old_listen = self._listen(self._config)
        self._config = config
        self.service.reload(config)
        if self._listen(config) != old_listen:
            old_server = self.server
            try:
                self._serve(self._listen(config))
            except ListenError as exc:
                log.error("%s; still listening on %s", exc, old_listen)
                return
            old_server.stop()

    def stop(self):
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.service is not None:
            self.service.stop()

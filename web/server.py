"""Serving a WSGI app with waitress in a thread that can be stopped."""

import logging
import threading

from waitress.server import create_server

log = logging.getLogger("phonehome.web")


class HttpServer:
    """A waitress server on ``listen`` (HOST:PORT), started and stopped from code.

    Raises OSError from the constructor when the address cannot be bound, so
    the caller can say which setting to change.
    """

    def __init__(self, app, listen, *, threads=4, max_body=1024 * 1024):
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        self._server = create_server(app, host=host, port=int(port), threads=threads,
                                     max_request_body_size=max_body, ident="phonehome",
                                     clear_untrusted_proxy_headers=True, channel_timeout=30)
        self.port = self._server.effective_port
        self.listen = listen
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._serve, name=f"http-{self.listen}", daemon=True)
        self._thread.start()
        return self

    def _serve(self):
        try:
            self._server.run()
        except OSError:  # closing the socket at stop ends run() this way
            pass

    def stop(self):
        self._server.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

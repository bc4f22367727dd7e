"""Serving a WSGI app with waitress in a thread that can be stopped."""

import logging
import threading

from waitress import wasyncore
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
        """Close the listening socket and every connection, and end waitress's threads. Idempotent."""
        server = self._server
        if self._thread is not None and self._thread.is_alive():
            # Closed from inside waitress's own loop, which then ends at once instead of at its next
            # one-second poll.
            try:
                server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
            except OSError:
                wasyncore.close_all(server._map)
            self._thread.join(timeout=10)
        else:
            server.close()
        server.task_dispatcher.shutdown()  # waitress leaves its worker threads running otherwise

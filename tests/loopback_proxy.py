"""A TCP forwarder on 127.0.0.1 that a test can cut and restore: a device's Internet path, in miniature.

While cut, new connections are accepted and closed at once (the sender sees the connection drop, as with a
dead uplink that a router answers with a reset) and open ones are closed.
"""

import socket
import threading


class SwitchableProxy:
    def __init__(self, upstream_port):
        self.upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.cut = False
        self._open = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"proxy :{self.port}").start()

    def set_cut(self, cut):
        self.cut = cut
        if cut:
            with self._lock:
                for sock in list(self._open):
                    _close(sock)
                self._open.clear()

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.cut:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                _close(sock)
                with self._lock:
                    self._open.discard(sock)

    def close(self):
        self._closed = True
        self.set_cut(True)
        _close(self._listener)


def _close(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass

"""Real collaborators for the agent's tests: HTTP servers on 127.0.0.1 that answer, stay silent,
drip, or speak TLS with a private CA; a resolver that never leaves the machine; a clock tests move."""

import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

from appliance.agent.heartbeats import HeartbeatSender
from appliance.agent.transport import Resolver
from appliance.clock import Now
from appliance.config.schema import Config, Device, Heartbeat

RECEIVED_AT = 1_750_000_000.25  # what the fake monitor says its clock read


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict
    body: bytes
    at_mono: float

    def json(self):
        return json.loads(self.body)


class RecordingServer:
    """A real ThreadingHTTPServer on 127.0.0.1 that records every request and answers as told.

    By default it answers like a phonehome monitor and an Uptime Kuma push
    endpoint at once: 200 with {"ok": true, "received_at": RECEIVED_AT}.
    """

    received_at = RECEIVED_AT

    def __init__(self, *, ssl_context=None):
        self.requests = []
        self.reply_json(200, {"ok": True, "received_at": RECEIVED_AT})
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.requests.append(Recorded(self.command, self.path, dict(self.headers.items()), body,
                                                  time.monotonic()))
                status, headers, content = recorder.answer
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = _handle

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def reply(self, status, body=b"", *, headers=None):
        """Answer every following request with this."""
        self.answer = (status, headers or {}, body)

    def reply_json(self, status, obj):
        self.reply(status, json.dumps(obj).encode(), headers={"Content-Type": "application/json"})

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class RawServer:
    """A TCP server on 127.0.0.1 that accepts connections and hands each to ``serve(conn, stop)`` in a thread."""

    def __init__(self, serve, *, ssl_context=None):
        self._serve = serve
        self._ssl_context = ssl_context
        self._stop = threading.Event()
        self._conns = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._handshake_and_serve, args=(conn,), daemon=True).start()

    def _handshake_and_serve(self, conn):
        if self._ssl_context is not None:
            try:
                conn = self._ssl_context.wrap_socket(conn, server_side=True)
            except OSError:
                return
            self._conns.append(conn)
        self._serve(conn, self._stop)

    def close(self):
        self._stop.set()
        self._thread.join()
        self._sock.close()
        for conn in self._conns:
            conn.close()


def _never_answer(conn, stop):
    stop.wait()


def dripping(drip_s, *, headers_first):
    """A RawServer handler sending a 200-byte answer one byte every ``drip_s`` seconds
    (after sending the status line and headers at once, if ``headers_first``)."""
    head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 200\r\n\r\n"

    def serve(conn, stop):
        conn.settimeout(1.0)
        try:
            conn.recv(65536)
            if headers_first:
                conn.sendall(head)
            for byte in (b"" if headers_first else head) + b"x" * 200:
                if stop.wait(drip_s):
                    return
                conn.sendall(bytes([byte]))
        except OSError:
            return  # the client gave up, as it should

    return serve


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, mono=1000.0, wall=1_750_000_000.0):
        self._now = Now(mono, wall)

    def now(self):
        return self._now

    def advance(self, seconds):
        """Both clocks ``seconds`` later; returns the new Now."""
        self._now = self._now.later(seconds)
        return self._now

    def step_wall(self, seconds):
        """Only the wall clock jumps (NTP setting a Pi's clock); returns the new Now."""
        self._now = Now(self._now.mono, self._now.wall + seconds)
        return self._now


class Hosts:
    """A getaddrinfo that answers from a table and counts calls; any other name does not exist."""

    def __init__(self, table):
        self.table = table
        self.calls = []

    def __call__(self, host, port, *args, **kwargs):
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in self.table[host]]


@pytest.fixture
def server():
    s = RecordingServer()
    yield s
    s.close()


@pytest.fixture
def silent_server():
    s = RawServer(_never_answer)
    yield s
    s.close()


@pytest.fixture
def drip_server(ca):
    """Makes dripping servers; with ``tls`` they speak TLS with a certificate for monitor.test."""
    servers = []

    def make(drip_s=0.2, *, headers_first=False, tls=False):
        context = None
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("monitor.test").configure_cert(context)
        servers.append(RawServer(dripping(drip_s, headers_first=headers_first), ssl_context=context))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def closed_port(free_port):
    """A port on 127.0.0.1 nothing listens on: connecting to it is refused."""
    return free_port()


@pytest.fixture(scope="session")
def ca():
    return trustme.CA()


@pytest.fixture
def ca_file(ca, tmp_path):
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def tls_server(ca):
    """A RecordingServer speaking TLS with a certificate for monitor.test; ``sni`` records the names asked for."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("monitor.test").configure_cert(context)
    sni = []
    context.sni_callback = lambda sock, name, ctx: sni.append(name)
    s = RecordingServer(ssl_context=context)
    s.sni = sni
    yield s
    s.close()


@pytest.fixture
def hosts():
    """The fake name table; tests add names. monitor.test and wrong.test are 127.0.0.1."""
    return Hosts({"monitor.test": ["127.0.0.1"], "wrong.test": ["127.0.0.1"]})


@pytest.fixture
def resolver(hosts):
    return Resolver(getaddrinfo=hosts)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def make_config():
    def make(*targets, interval_s=60.0, timeout_s=2.0):
        return Config(device=Device(name="home"),
                      heartbeat=Heartbeat(interval_s=interval_s, timeout_s=timeout_s, targets=tuple(targets)))

    return make


@pytest.fixture
def make_sender(tmp_path, clock, resolver):
    """Builds HeartbeatSenders with test defaults (fake clock, fixed boot id and uptime, no jitter)
    and stops them all at the end."""
    senders = []

    def make(config, **options):
        defaults = dict(clock=clock, data_dir=str(tmp_path / "data"), boot_id="boot-1", uptime=lambda: 123.0,
                        rand=lambda: 0.0, resolver=resolver)
        senders.append(HeartbeatSender(config, **{**defaults, **options}))
        return senders[-1]

    yield make
    for s in senders:
        s.stop()


@pytest.fixture
def wait_for():
    """Polls ``predicate`` until true; fails the test after ``timeout_s``."""

    def wait(predicate, timeout_s=3.0, what="the condition"):
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
            time.sleep(0.01)

    return wait

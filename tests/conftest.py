"""Real collaborators shared by every test folder: free loopback ports, a silent TCP server and an SMTP sink
(aiosmtpd)."""

import email
import email.policy
import ipaddress
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

SMTP_USER, SMTP_PASSWORD = "alerts@example.com", "correct horse"


def _loopback(host):
    if host in (None, "", "localhost"):
        return True
    try:
        address = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified  # 0.0.0.0 is this host: binding, not traffic


@pytest.fixture(autouse=True)
def only_loopback(monkeypatch):
    """Tests talk to 127.0.0.1 only: a lookup of any other name, or a connection elsewhere, fails the test.

    (Subprocesses are kept on loopback by their configs; this guards the test process itself.)
    """
    real_getaddrinfo = socket.getaddrinfo
    real_connect, real_connect_ex, real_sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, bytes):
            host = host.decode()
        if not _loopback(host):
            raise AssertionError(f"a test tried to look up {host!r}: tests talk only to 127.0.0.1")
        return real_getaddrinfo(host, *args, **kwargs)

    def checked(address):
        if isinstance(address, tuple) and not _loopback(address[0]):
            raise AssertionError(f"a test tried to reach {address!r}: tests talk only to 127.0.0.1")

    def connect(self, address):
        checked(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        checked(address)
        return real_connect_ex(self, address)

    def sendto(self, data, *args):
        checked(args[-1])
        return real_sendto(self, data, *args)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket.socket, "sendto", sendto)


def _free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (aiosmtpd cannot bind port 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    """Factory: ``free_port()`` -> a port on 127.0.0.1 that nothing listens on."""
    return _free_port


@pytest.fixture
def silent_port():
    """A port that accepts TCP connections (the kernel's backlog does) and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


class Sink:
    """aiosmtpd handler that keeps every message; ``refuse`` maps addresses to RCPT replies."""

    def __init__(self, refuse=None):
        self.envelopes = []
        self.refuse = refuse or {}
        self.port = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    @property
    def messages(self):
        """What arrived so far, parsed (email.message.EmailMessage), in arrival order."""
        return [email.message_from_bytes(e.content, policy=email.policy.default) for e in list(self.envelopes)]


def _authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode() \
        and auth_data.password == SMTP_PASSWORD.encode()
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@pytest.fixture
def smtp_server():
    """Factory: ``smtp_server(refuse={address: reply}, auth=False, **aiosmtpd options) -> (sink, port)``.

    ``sink.envelopes`` holds what arrived; ``auth=True`` requires SMTP_USER /
    SMTP_PASSWORD (over plain text too). Servers stop after the test.
    """
    controllers = []

    def start(*, refuse=None, auth=False, **kwargs):
        sink = Sink(refuse)
        if auth:
            kwargs.update(authenticator=_authenticator, auth_require_tls=False)
        controller = Controller(sink, hostname="127.0.0.1", port=_free_port(), **kwargs)
        controller.start()
        controllers.append(controller)
        sink.port = controller.port
        return sink, controller.port

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def smtp_sink(smtp_server):
    """A running SMTP sink on 127.0.0.1: ``.port``, ``.messages``."""
    sink, _ = smtp_server()
    return sink


@pytest.fixture
def smtp_login():
    """(username, password) that ``smtp_server(auth=True)`` accepts."""
    return SMTP_USER, SMTP_PASSWORD


class PingServer:
    """A heartbeat target on 127.0.0.1 (kind "url"): 200 "OK" for any path but /fail…, which gets 500 with a
    one-line reason. It notes when each beat arrives; ``wait_for(n)`` waits for the n-th without polling."""

    def __init__(self):
        self.times = []
        self.arrived = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                status, body = (500, b"database on fire") if self.path.startswith("/fail") else (200, b"OK")
                # Counted before the answer: a client that has its answer can count on the beat being noted.
                with server.arrived:
                    server.times.append(time.monotonic())
                    server.arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = self.base + "/ping"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def beats(self):
        return len(self.times)

    def wait_for(self, beats, *, timeout_s=10.0):
        """True once ``beats`` beats have arrived in all (False if they did not within ``timeout_s``)."""
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.times) >= beats, timeout=timeout_s)

    def beats_within(self, seconds):
        """How many beats arrived in the last ``seconds``."""
        since = time.monotonic() - seconds
        return sum(1 for t in list(self.times) if t >= since)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def ping():
    """A PingServer, closed after the test."""
    server = PingServer()
    yield server
    server.close()

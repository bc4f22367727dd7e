"""Real collaborators on 127.0.0.1: an SMTP sink (aiosmtpd), silent and dripping
TCP servers, an HTTP server that records what Apprise posts, and a private CA."""

import json
import socket
import ssl
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from zoneinfo import ZoneInfo

import pytest
import trustme

from appliance.alerts.messages import compose
from appliance.config.schema import Email
from appliance.monitor.events import Event, Kind, State

NEW_YORK = ZoneInfo("America/New_York")


def at(text, tz=NEW_YORK):
    """Epoch seconds of a local wall time such as "2025-01-14 10:55" in ``tz``."""
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def _event(kind, device="home", *, when=None, start=None, last=None, reason=None):
    """An event like the monitor's state machine emits; times are New York wall times."""
    if kind == "down":
        when = when or "2025-01-14 10:55"
        return Event(device, Kind.DOWN, State.UP, State.DOWN, at(when), reason or "no heartbeat for 300 s",
                     last_heard_at=at(last or "2025-01-14 10:50"), outage_started_at=at(when))
    if kind == "reminder":
        when, start = when or "2025-01-14 14:55", start or "2025-01-14 10:55"
        return Event(device, Kind.REMINDER, State.DOWN, State.DOWN, at(when), reason or "still no heartbeat",
                     last_heard_at=at(last or "2025-01-14 10:50"), outage_started_at=at(start),
                     outage_s=at(when) - at(start))
    if kind == "up":
        when, start = when or "2025-01-14 11:42", start or "2025-01-14 10:55"
        return Event(device, Kind.UP, State.DOWN, State.UP, at(when), reason or "heartbeat received",
                     last_heard_at=at(when), outage_started_at=at(start), outage_s=at(when) - at(start))
    if kind == "first-seen":
        return Event(device, Kind.FIRST_SEEN, State.NEW, State.UP, at(when or "2025-01-14 09:00"),
                     reason or "first heartbeat", last_heard_at=at(when or "2025-01-14 09:00"))
    raise ValueError(kind)


@pytest.fixture
def make_event():
    """Factory: ``make_event(kind, device="home", when=..., start=..., last=..., reason=...)``.

    ``kind`` is "down", "reminder", "up" or "first-seen"; times are New York wall times like "2025-01-14 10:55".
    """
    return _event


@pytest.fixture
def at_ny():
    """``at_ny("2025-01-14 10:55")``: epoch seconds of a New York wall time."""
    return at


@pytest.fixture
def alert():
    """Factory: ``alert("down" | "reminder" | "up", device="home")`` -> the composed Message (New York time)."""
    return lambda kind, device="home": compose(_event(kind, device), tz=NEW_YORK)


def _email_config(port, **overrides):
    options = dict(smtp_host="127.0.0.1", smtp_port=port, sender="phonehome@example.com",
                   to=("me@example.com",), security="none", timeout_s=5.0)
    options.update(overrides)
    return Email(**options)


@pytest.fixture
def email_config():
    """Factory: ``email_config(port, **overrides)`` -> an Email config for 127.0.0.1 (security none, 5 s)."""
    return _email_config


@pytest.fixture
def closed_port(free_port):
    """A port on 127.0.0.1 where connections are refused."""
    return free_port()


@pytest.fixture
def dripping_port():
    """A port whose server starts a greeting and then sends one byte every 0.1 s, never ending the line.

    smtplib's per-operation timeout never fires against it; only an overall
    deadline does. It gives up after 5 s so a client without one fails the
    test instead of hanging it.
    """
    stop = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                try:
                    conn.sendall(b"220-")
                    for _ in range(50):
                        if stop.wait(0.1):
                            break
                        conn.sendall(b".")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    listener.close()


@pytest.fixture(scope="session")
def ca():
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca):
    """Server-side SSL context with a certificate for 127.0.0.1 from the private CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_tls(ca):
    """Client-side SSL context that trusts the private CA."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


class _Recorder(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append((self.path, json.loads(body)))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    """An HTTP server on 127.0.0.1 recording (path, JSON body) of each POST; set ``.status`` to fail them."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.requests, server.status = [], 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(2)

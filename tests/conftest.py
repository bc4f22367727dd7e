"""Real collaborators shared by every test folder: free loopback ports, a silent TCP server and an SMTP sink
(aiosmtpd)."""

import email
import email.policy
import socket

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

SMTP_USER, SMTP_PASSWORD = "alerts@example.com", "correct horse"


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

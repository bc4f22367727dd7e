"""Real NTP servers on 127.0.0.1 for the clock checks' tests: Debian's chronyd (never touching the clock)
and hand-built responders that lie; a resolver that fails the test if it is ever asked to look a name up."""

import os
import shutil

import pytest

from appliance.agent.transport import Resolver
from appliance.timecheck.loopback import CHRONYD, FakeNtpServer, LoopbackChrony

ANSWER_TIMEOUT_S = 2.0  # where a loopback server must answer: generous, so a busy CI machine does not fail it
SILENCE_TIMEOUT_S = 0.3  # where nothing answers: the wait is the test's cost, so short


def _need(what, path):
    """Skip without ``path``, or fail when CI is set (.ci/run installs chrony there)."""
    if path and os.path.exists(path):
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing but CI is set: .ci/run installs it with 'apt-get install chrony'")
    pytest.skip(f"{what} is not installed; 'apt-get install chrony' to test against a real NTP server")


@pytest.fixture(scope="session")
def chrony(tmp_path_factory):
    """A real chronyd serving NTP at stratum 8 on 127.0.0.1 (``.spec``, ``.socket_path``), started once."""
    _need(f"chronyd ({CHRONYD})", CHRONYD)
    server = LoopbackChrony(str(tmp_path_factory.mktemp("chrony")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def chronyc():
    """The path of the real chronyc (skips, or fails under CI, without it)."""
    path = shutil.which("chronyc") or "/usr/bin/chronyc"
    _need("chronyc", path)
    return path


@pytest.fixture
def ntp_server():
    """Factory: ``ntp_server(skew_s=…, stratum=…, leap=…, refid=…, zero_transmit=…, processing_s=…,
    silent=…)`` -> a running FakeNtpServer on 127.0.0.1; all stop after the test."""
    servers = []

    def start(**behaviour):
        server = FakeNtpServer(**behaviour).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def no_dns():
    """A Resolver whose system lookup fails the test: proves a name was answered without a network query.

    The Resolver turns any error of its lookup thread into an ordinary "lookup failed", so raising alone
    would pass unnoticed: the attempts are recorded, and the test fails at teardown if there was one.
    """
    asked = []

    def getaddrinfo(*args, **kwargs):
        asked.append(args)
        raise AssertionError(f"a real DNS lookup was attempted: getaddrinfo{args}")

    yield Resolver(getaddrinfo=getaddrinfo)
    assert not asked, f"a real DNS lookup was attempted: {asked}"

"""Network faults seen by the agent: servers on 127.0.0.1 that refuse, stay silent, fail TLS, answer 500 or
drip one byte a second, and a DNS server that fails (in a network namespace of its own, see netns_dns.py).

Everything goes through the agent's real sending code: a HeartbeatSender with the real transport and
resolver, its workers' ``attempt()`` for counted beats and its threads (``start()``) for the real loop.
Targets are IP literals here, so nothing is looked up in this process; the DNS faults run glibc's real
resolver against a DNS server of ours, in a namespace with no route off this machine.

Each beat must end within ``timeout_s`` + SLACK_S; heartbeats must resume within one ``interval_s`` (+ SLACK_S)
of the fault clearing; threads and open files must be as many after 10,000 failed beats as before.
"""

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
import trustme

from appliance.agent.heartbeats import HeartbeatSender
from appliance.clock import SystemClock
from appliance.config.schema import Config, Device, Heartbeat, Target
from tests.faults.resources import counts, settled

pytestmark = pytest.mark.fault

TIMEOUT_S = 0.3
INTERVAL_S = 0.5
# What a beat may take beyond its timeout: the deadline's timer thread waking a blocked read, on a busy
# 2-core machine.
SLACK_S = 0.3

# The beats that fail at once, by fault (10,000 in all), and the slow ones (each takes the whole timeout).
FAST_FAILURES = {"refused": 3000, "http-500": 3000, "tls-garbage": 2000, "tls-untrusted": 2000}
SLOW_FAILURES = {"silent": 24, "drip": 24}
DNS_FAILURES = {"servfail": 1500, "nxdomain": 1500, "silent": 24}


class FaultServer:
    """A TCP server on 127.0.0.1 whose behaviour is ``mode``, switchable while the agent sends to it.

    ``ok`` answers like a phonehome monitor (and notes when the beat arrived); ``http-500`` answers 500;
    ``silent`` accepts and never says a word; ``drip`` sends a 200 answer one byte a second; ``refused``
    closes the listening socket, so connections are refused until another mode opens it again (same port).
    With ``tls``, ``ok`` and ``http-500`` speak TLS with a certificate the agent trusts, ``tls-untrusted``
    with one from a CA it does not know, and ``tls-garbage`` answers the handshake with plain text.
    """

    def __init__(self, *, tls=None, untrusted=None):
        self._tls, self._untrusted = tls, untrusted
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.arrivals = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/api/heartbeat"
        self.mode = "ok"
        self._accepting = self._start_accepting()

    def set_mode(self, mode):
        with self._lock:
            if mode == "refused" and self._listener is not None:
                self._listener.close()
                self._listener = None
                self._accepting.join()
            elif mode != "refused" and self._listener is None:
                self._listener = socket.create_server(("127.0.0.1", self.port))
                self._accepting = self._start_accepting()
            self.mode = mode

    def _start_accepting(self):
        self._listener.settimeout(0.05)
        thread = threading.Thread(target=self._accept, args=(self._listener,), daemon=True, name="fault server")
        thread.start()
        return thread

    def _accept(self, listener):
        while not self._stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed: refusing from now on
            threading.Thread(target=self._serve, args=(conn, self.mode), daemon=True, name="fault conn").start()

    def _serve(self, conn, mode):
        try:
            with conn:
                conn.settimeout(2.0)
                if mode == "tls-garbage":
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\nthis port does not speak TLS\r\n")
                    return
                if mode == "tls-untrusted":
                    with self._untrusted.wrap_socket(conn, server_side=True):
                        return  # the handshake fails: the agent does not trust the certificate
                if self._tls is not None:
                    with self._tls.wrap_socket(conn, server_side=True) as wrapped:
                        self._converse(wrapped, mode)
                else:
                    self._converse(conn, mode)
        except OSError:
            pass  # the agent gave up or hung up, as it may

    def _converse(self, conn, mode):
        if mode == "silent":
            self._wait_for_close(conn)
        elif mode == "drip":
            self._read_request(conn)
            for byte in _answer(200, {"ok": True, "received_at": time.time()}):
                conn.sendall(bytes([byte]))
                if self._stop.wait(1.0):
                    return
        else:
            self._read_request(conn)
            if mode == "ok":
                self.arrivals.append(time.monotonic())
                conn.sendall(_answer(200, {"ok": True, "received_at": time.time()}))
            else:
                conn.sendall(_answer(500, {"ok": False, "error": "database on fire"}))

    def _wait_for_close(self, conn):
        conn.settimeout(0.1)
        while not self._stop.is_set():
            try:
                if not conn.recv(4096):
                    return
            except TimeoutError:
                continue

    @staticmethod
    def _read_request(conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                raise ConnectionResetError("the agent hung up mid-request")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = conn.recv(4096)
            if not chunk:
                raise ConnectionResetError("the agent hung up mid-request")
            body += chunk

    def close(self):
        self._stop.set()
        self.set_mode("refused")


def _answer(status, obj):
    body = json.dumps(obj).encode()
    return (f"HTTP/1.1 {status} {'OK' if status == 200 else 'Internal Server Error'}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode() + body


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """(trusted server context, untrusted server context, the agent's CA file)."""
    trusted_ca, unknown_ca = trustme.CA(), trustme.CA()
    trusted = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trusted_ca.issue_cert("127.0.0.1").configure_cert(trusted)
    untrusted = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    unknown_ca.issue_cert("127.0.0.1").configure_cert(untrusted)
    ca_file = tmp_path_factory.mktemp("pki") / "ca.pem"
    trusted_ca.cert_pem.write_to_path(str(ca_file))
    return trusted, untrusted, str(ca_file)


@pytest.fixture
def servers(pki):
    """Factory: ``servers(tls=False)`` -> a FaultServer, closed after the test."""
    made = []

    def make(*, tls=False):
        trusted, untrusted, _ = pki
        made.append(FaultServer(tls=trusted if tls else None, untrusted=untrusted))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.fixture
def senders(tmp_path, pki):
    """Factory: ``senders(url)`` -> a HeartbeatSender on the real clocks, transport and resolver; stopped after."""
    made = []

    def make(url):
        target = Target(url=url, kind="phonehome", token="t0ken")
        config = Config(device=Device(name="home"),
                        heartbeat=Heartbeat(interval_s=INTERVAL_S, timeout_s=TIMEOUT_S, targets=(target,)))
        made.append(HeartbeatSender(config, clock=SystemClock(), data_dir=str(tmp_path / f"data{len(made)}"),
                                    boot_id="boot-1", uptime=lambda: 1.0, ca_file=pki[2]))
        return made[-1]

    yield make
    for sender in made:
        sender.stop()


TLS_FAULTS = {"tls-garbage", "tls-untrusted"}
EXPECTED_ERRORS = {
    "refused": "connection refused by 127.0.0.1:",
    "http-500": "HTTP 500 from 127.0.0.1: database on fire",
    "tls-garbage": "TLS handshake with 127.0.0.1 failed: ",
    "tls-untrusted": "TLS handshake with 127.0.0.1 failed: certificate verify failed",
    "silent": "no answer from 127.0.0.1 within 0.3 s",
    "drip": "no answer from 127.0.0.1 within 0.3 s",
}


def timed_attempt(worker):
    started = time.monotonic()
    attempt = worker.attempt()
    return time.monotonic() - started, attempt


@pytest.mark.parametrize("fault", list(EXPECTED_ERRORS))
def test_every_beat_ends_within_its_timeout(fault, servers, senders):
    server = servers(tls=fault in TLS_FAULTS)
    server.set_mode(fault)
    worker = senders(server.url).workers[0]
    for _ in range(5 if fault in FAST_FAILURES else 3):
        took_s, attempt = timed_attempt(worker)
        assert not attempt.ok
        assert attempt.error.startswith(EXPECTED_ERRORS[fault]), attempt.error
        assert took_s <= TIMEOUT_S + SLACK_S, f"a beat to a {fault} server took {took_s:.3f} s"
    assert worker.status.state == "failing"


@pytest.mark.parametrize("fault", list(EXPECTED_ERRORS))
def test_heartbeats_resume_within_one_interval_after_the_fault_clears(fault, servers, senders):
    """The real loop (the sender's thread, real clocks) sends through the fault, then the server heals."""
    server = servers(tls=fault in TLS_FAULTS)
    server.set_mode(fault)
    sender = senders(server.url)
    worker = sender.workers[0]
    sender.start()
    deadline = time.monotonic() + 5.0
    while worker.status.consecutive_failures < 2:  # the first beat and a backed-off retry at least
        assert time.monotonic() < deadline, f"the agent did not try the {fault} server twice in 5 s"
        time.sleep(0.01)
    assert server.arrivals == []
    cleared = time.monotonic()
    server.set_mode("ok")
    while not server.arrivals:
        assert time.monotonic() < cleared + 5.0, f"no heartbeat within 5 s of the {fault} fault clearing"
        time.sleep(0.005)
    waited_s = server.arrivals[0] - cleared
    assert waited_s <= INTERVAL_S + SLACK_S, f"the first beat after the {fault} fault came {waited_s:.3f} s later"
    deadline = time.monotonic() + 1.0
    while worker.status.state != "ok":
        assert time.monotonic() < deadline, "the beat arrived but the agent does not call the target ok"
        time.sleep(0.005)


def test_threads_and_open_files_stay_flat_over_10000_failures(servers, senders):
    """Threads and file descriptors before and after failed beats: 10,000 that fail at once (FAST_FAILURES:
    3,000 refused, 3,000 HTTP 500, 2,000 TLS handshakes answered in plain text, 2,000 with a certificate the
    agent does not trust) and 48 that take the whole timeout (SLOW_FAILURES: 24 to a silent listener, 24 to a
    server that drips a byte a second). DNS failures are counted in their own process (see the next test)."""
    plain, tls = servers(), servers(tls=True)
    # The slow faults on servers of their own, to run side by side (each target has its own worker, as in the
    # agent) and keep this test's time down.
    own = {fault: servers() for fault in SLOW_FAILURES}
    server_of = {**{fault: tls if fault in TLS_FAULTS else plain for fault in FAST_FAILURES}, **own}
    workers = {fault: senders(server.url).workers[0] for fault, server in server_of.items()}
    # One good beat on each connection kind first, so what is made once (CA files, imports) is not growth.
    for worker in workers.values():
        assert worker.attempt().ok
    before = settled(counts(), 0.5)
    failed, worst = {}, {}

    def fail(fault, n):
        server_of[fault].set_mode(fault)
        failed[fault], worst[fault] = 0, 0.0
        for _ in range(n):
            took_s, attempt = timed_attempt(workers[fault])
            failed[fault] += not attempt.ok
            worst[fault] = max(worst[fault], took_s)

    peak = before
    for fault, n in FAST_FAILURES.items():
        fail(fault, n)
        peak = tuple(map(max, peak, counts()))
    slow = [threading.Thread(target=fail, args=item) for item in SLOW_FAILURES.items()]
    for thread in slow:
        thread.start()
    for thread in slow:
        thread.join()
    peak = tuple(map(max, peak, counts()))
    after = settled(before)
    assert failed == {**FAST_FAILURES, **SLOW_FAILURES}
    assert sum(FAST_FAILURES.values()) == 10_000
    assert max(worst.values()) <= TIMEOUT_S + SLACK_S, worst
    assert after[0] <= before[0] and after[1] <= before[1], \
        f"(threads, fds) before {before}, after {after} (at most {peak} while failing)"
    for fault, worker in workers.items():
        assert worker.status.consecutive_failures == {**FAST_FAILURES, **SLOW_FAILURES}[fault]


NETNS_SCRIPT = os.path.join(os.path.dirname(__file__), "netns_dns.py")


def test_dns_failures_in_a_namespace_of_their_own():
    """glibc's real resolver, through transport.Resolver, asks a DNS server of ours that answers SERVFAIL
    (1,500 beats), NXDOMAIN (1,500) or nothing (24); in a network namespace with only loopback, so no query can
    leave this machine. Each beat ends within its timeout, threads and files stay flat, and the real loop
    delivers within one interval once the DNS server answers."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs root, unshare(1) and ip(8) (iproute2) for a network namespace (CI runs as root)")
    probe = subprocess.run(["unshare", "--net", "--mount", "--", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {probe.stderr.strip()}")
    options = {"timeout_s": TIMEOUT_S, "interval_s": INTERVAL_S, "failures": DNS_FAILURES}
    done = subprocess.run(["unshare", "--net", "--mount", "--", sys.executable, NETNS_SCRIPT, json.dumps(options)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["interfaces"] == ["lo"]
    modes = report["modes"]
    assert {mode: m["attempts"] - m["delivered"] for mode, m in modes.items()} == DNS_FAILURES
    assert modes["servfail"]["errors"] == [
        "DNS lookup for monitor.fault.test failed: Temporary failure in name resolution"]
    assert modes["nxdomain"]["errors"] == ["DNS lookup for monitor.fault.test failed: Name or service not known"]
    assert all(e.startswith("DNS lookup for monitor.fault.test ") for e in modes["silent"]["errors"])
    assert report["dns_queries"] >= DNS_FAILURES["servfail"] + DNS_FAILURES["nxdomain"]  # really asked
    for mode, m in modes.items():
        assert m["worst_s"] <= TIMEOUT_S + SLACK_S, f"a beat with DNS {mode} took {m['worst_s']:.3f} s"
    assert all(a <= b for a, b in zip(report["after"], report["before"])), report
    resume = report["resume"]
    assert resume["state_before"] == "failing" and resume["state_after"] == "ok", resume
    assert resume["first_beat_mono"] is not None, "no beat arrived after DNS answered again"
    assert resume["first_beat_mono"] - resume["cleared_mono"] <= INTERVAL_S + SLACK_S, resume

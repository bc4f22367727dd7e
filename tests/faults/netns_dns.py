"""DNS failures seen by the agent's real resolver, inside a network namespace of their own.

Run by test_network_faults.py as ``unshare --net --mount -- python netns_dns.py '<json options>'``, as root.
The new namespace has only a loopback interface, and /etc/resolv.conf is bind-mounted (in the new mount
namespace only) over a file naming 127.0.0.1, where this script answers DNS itself: SERVFAIL, NXDOMAIN,
nothing at all, or (``ok``) 127.0.0.1. So glibc's getaddrinfo, called by transport.Resolver exactly as in
production, asks a real DNS server, and no query can leave the machine: there is no route off it.

The agent's HeartbeatSender sends to http://monitor.fault.test:<port>/, an HTTP server in this namespace. The
script prints one JSON object with what it measured; the test judges it.
"""

import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from appliance.agent.heartbeats import HeartbeatSender  # noqa: E402
from appliance.clock import SystemClock  # noqa: E402
from appliance.config.schema import Config, Device, Heartbeat, Target  # noqa: E402
from tests.faults.resources import counts, settled  # noqa: E402

HOST = "monitor.fault.test"
RCODES = {"servfail": 2, "nxdomain": 3}


class DnsResponder:
    """A UDP DNS server on 127.0.0.1:53 whose answer is ``mode``: servfail, nxdomain, silent or ok."""

    def __init__(self, mode):
        self.mode = mode
        self.queries = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 53))
        threading.Thread(target=self._serve, daemon=True, name="dns responder").start()

    def _serve(self):
        while True:
            query, peer = self._sock.recvfrom(512)
            self.queries += 1
            answer = self._answer(query, self.mode)
            if answer is not None:
                self._sock.sendto(answer, peer)

    @staticmethod
    def _answer(query, mode):
        if mode == "silent" or len(query) < 12:
            return None
        qid, flags = struct.unpack("!HH", query[:4])
        end = 12
        while query[end]:
            end += 1 + query[end]
        question = query[12:end + 5]  # the name, its zero byte, QTYPE and QCLASS
        qtype = struct.unpack("!H", query[end + 1:end + 3])[0]
        rd = flags & 0x0100
        if mode in RCODES:
            return struct.pack("!HHHHHH", qid, 0x8080 | rd | RCODES[mode], 1, 0, 0, 0) + question
        if qtype != 1:  # AAAA and the rest: the name exists, with no such record
            return struct.pack("!HHHHHH", qid, 0x8480 | rd, 1, 0, 0, 0) + question
        record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + socket.inet_aton("127.0.0.1")
        return struct.pack("!HHHHHH", qid, 0x8480 | rd, 1, 1, 0, 0) + question + record


class Monitor:
    """An HTTP server answering every POST like a phonehome monitor; notes when each beat arrived."""

    def __init__(self):
        self.arrivals = []
        monitor = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                monitor.arrivals.append(time.monotonic())
                body = json.dumps({"ok": True, "received_at": time.time()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


def isolate(workdir):
    """Bring up loopback and point this namespace's resolver at 127.0.0.1; refuse to go on otherwise."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    conf = os.path.join(workdir, "resolv.conf")
    with open(conf, "w") as f:
        # One try of one second: a resolver that never answers frees its lookup thread soon.
        f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    subprocess.run(["mount", "--bind", conf, "/etc/resolv.conf"], check=True)
    with open("/etc/resolv.conf") as f:
        if f.read().split()[:2] != ["nameserver", "127.0.0.1"]:
            raise SystemExit("resolv.conf was not replaced; refusing to look anything up")
    interfaces = [name for _, name in socket.if_nameindex()]
    if interfaces != ["lo"]:
        raise SystemExit(f"this namespace has interfaces besides lo: {interfaces}")


def timed(worker):
    started = time.monotonic()
    attempt = worker.attempt()
    return time.monotonic() - started, attempt


def main(options):
    timeout_s, interval_s = options["timeout_s"], options["interval_s"]
    workdir = tempfile.mkdtemp(prefix="phonehome-dns-")
    isolate(workdir)
    dns = DnsResponder("servfail")
    monitor = Monitor()
    url = f"http://{HOST}:{monitor.port}/api/heartbeat"
    config = Config(device=Device(name="home"), heartbeat=Heartbeat(
        interval_s=interval_s, timeout_s=timeout_s, targets=(Target(url=url, kind="phonehome", token="t0ken"),)))
    sender = HeartbeatSender(config, clock=SystemClock(), data_dir=workdir, boot_id="boot-1", uptime=lambda: 1.0)
    worker = sender.workers[0]
    report = {"modes": {}}

    # Every failure mode once before counting, so what is made once (imports, caches) is not counted as growth.
    for mode in ("servfail", "nxdomain", "ok"):
        dns.mode = mode
        timed(worker)
    before = settled(counts(), 0.5)

    for mode, n in options["failures"].items():
        dns.mode = mode
        worst, errors, delivered = 0.0, set(), 0
        for _ in range(n):
            took_s, attempt = timed(worker)
            worst = max(worst, took_s)
            if attempt.ok:
                delivered += 1
            else:
                errors.add(attempt.error)
        report["modes"][mode] = {"attempts": n, "delivered": delivered, "worst_s": worst,
                                 "errors": sorted(errors)[:5]}
    during = counts()
    after = settled(before, 3.0)
    report.update(before=before, during=during, after=after)

    # The real loop: DNS fails, then answers; the first beat must arrive within one interval of that.
    dns.mode = "servfail"
    arrived = len(monitor.arrivals)
    sender.start()
    time.sleep(2 * interval_s)  # a few failed beats and retries first
    failing = worker.status.state
    cleared = time.monotonic()
    dns.mode = "ok"
    deadline = cleared + 5 * interval_s
    while len(monitor.arrivals) == arrived and time.monotonic() < deadline:
        time.sleep(0.01)
    sender.stop()
    report["resume"] = {"state_before": failing, "cleared_mono": cleared,
                        "first_beat_mono": monitor.arrivals[arrived] if len(monitor.arrivals) > arrived else None,
                        "state_after": worker.status.state}
    report["dns_queries"] = dns.queries
    report["interfaces"] = [name for _, name in socket.if_nameindex()]
    print(json.dumps(report))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))

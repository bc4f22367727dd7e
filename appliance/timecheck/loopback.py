"""NTP servers on 127.0.0.1 for tests, benchmarks and the demo; nothing here leaves the machine.

``FakeNtpServer`` builds replies by hand and can lie in every way the checks
must survive: a skewed clock, a kiss-of-death, stratum 16, leap 3, a zero
transmit time, a reply to another question, a negative round-trip delay,
silence. ``LoopbackChrony`` runs Debian's chronyd as a real
server (``local stratum 8``) on a free port with ``-x``, so it never touches
the system clock. Like gpiozero's MockFactory they ship with the package, so
the benchmark and the demo use the same fakes as the tests.
"""

import os
import socket
import struct
import subprocess
import threading
import time

import ntplib

from appliance.timecheck.ntp import request_ntp

CHRONYD = "/usr/sbin/chronyd"
_NTP_EPOCH_OFFSET_S = 2_208_988_800  # 1900-01-01 to 1970-01-01


def ntp_timestamp(epoch_s):
    """The 8 bytes of an NTP timestamp for ``epoch_s`` (Unix seconds)."""
    seconds = epoch_s + _NTP_EPOCH_OFFSET_S
    whole = int(seconds)
    return struct.pack("!II", whole & 0xFFFFFFFF, int((seconds - whole) * 2 ** 32) & 0xFFFFFFFF)


def free_udp_port():
    """A UDP port on 127.0.0.1 that nothing is bound to (a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeNtpServer:
    """A hand-built NTP server on 127.0.0.1 (a free port): answers every query as its attributes say.

    ``skew_s`` seconds are added to its clock (positive: it is ahead of us,
    so our offset against it is negative); ``stratum`` 0 with ``refid``
    b"RATE" is a kiss-of-death; ``leap`` 3 or stratum 16 is unsynchronised;
    ``zero_transmit`` sends a zero transmit timestamp; ``wrong_origin``
    answers with an origin timestamp that is not the query's (a late or
    forged reply); ``processing_s`` is how long it claims to have held the
    query (receive to transmit time; more than the round trip makes the
    delay negative); ``silent`` never answers. Attributes may change while it runs. ``queries`` counts the
    packets it received. Use as a context manager, or ``start()``/``stop()``.
    """

    def __init__(self, *, skew_s=0.0, stratum=2, leap=0, refid=b"\xc0\x00\x02\x01", zero_transmit=False,
                 wrong_origin=False, processing_s=0.0, silent=False):
        self.skew_s = skew_s
        self.stratum = stratum
        self.leap = leap
        self.refid = refid
        self.zero_transmit = zero_transmit
        self.wrong_origin = wrong_origin
        self.processing_s = processing_s
        self.silent = silent
        self.queries = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = None

    @property
    def spec(self):
        """This server as a [time] servers entry: "127.0.0.1:PORT"."""
        return f"127.0.0.1:{self.port}"

    def start(self):
        self._thread = threading.Thread(target=self._serve, name=f"fake ntp {self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop answering and close the port. Idempotent."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None
        self._sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def reply_to(self, query):
        """The reply packet (48 bytes) this server sends for ``query``."""
        now = time.time() + self.skew_s
        version = (query[0] >> 3) & 0x7 or 4
        first = (self.leap << 6) | (version << 3) | 4
        header = struct.pack("!BBbb", first, self.stratum, query[2], -20)
        header += struct.pack("!II", 0, 0) + self.refid.ljust(4, b"\0")[:4]  # root delay, root dispersion, refid
        transmit = bytes(8) if self.zero_transmit else ntp_timestamp(now)
        origin = ntp_timestamp(now - 60) if self.wrong_origin else query[40:48]
        return header + ntp_timestamp(now - 16) + origin + ntp_timestamp(now - self.processing_s) + transmit

    def _serve(self):
        while not self._stopping.is_set():
            try:
                query, peer = self._sock.recvfrom(1024)
            except (TimeoutError, OSError):
                continue
            self.queries += 1
            if self.silent or len(query) < 48:
                continue
            try:
                self._sock.sendto(self.reply_to(query), peer)
            except OSError:
                pass


class LoopbackChrony:
    """Debian's chronyd as an NTP server on 127.0.0.1 at ``port`` (default: a free one), files in ``directory``.

    It serves its own clock at ``local stratum 8`` and runs with ``-x``:
    it never adjusts the system clock. ``socket_path`` is its command socket
    (``chronyc -h SOCKET``). It runs as the current user (``-u root`` for
    root, so the drift file and command socket in ``directory`` work).
    """

    def __init__(self, directory, *, port=None, chronyd=CHRONYD):
        self.directory = directory
        self.port = port or free_udp_port()
        self.chronyd = chronyd
        self.socket_path = os.path.join(directory, "chronyd.sock")
        self.log_path = os.path.join(directory, "chronyd.log")
        self._process = None

    @property
    def spec(self):
        return f"127.0.0.1:{self.port}"

    def start(self, *, timeout_s=10.0):
        """Start chronyd and wait until it answers NTP. Raises RuntimeError (with its log) when it does not."""
        conf = os.path.join(self.directory, "chrony.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write("\n".join([
                "local stratum 8", "allow 127.0.0.1", "bindaddress 127.0.0.1", f"port {self.port}",
                "cmdport 0", f"bindcmdaddress {self.socket_path}",
                f"pidfile {os.path.join(self.directory, 'chronyd.pid')}",
                f"driftfile {os.path.join(self.directory, 'chrony.drift')}", ""]))
        user = ["-u", "root"] if os.geteuid() == 0 else ["-U"]
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen([self.chronyd, "-f", conf, "-x", "-d", *user],
                                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                request_ntp("127.0.0.1", self.port, timeout_s=0.2)
                return self
            except (OSError, ntplib.NTPException):
                time.sleep(0.05)
        self.stop()
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            raise RuntimeError(f"chronyd did not answer on 127.0.0.1:{self.port} within {timeout_s:g} s; "
                               f"its log:\n{f.read()}")

    def stop(self):
        """Stop chronyd (the one this object started). Idempotent."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

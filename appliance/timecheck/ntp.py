"""Ask NTP servers what time it is; every outcome is a ``ServerAnswer``, never an exception.

ntplib encodes and decodes the packets, but the request itself is ours, for
three reasons: ntplib's ``NTPClient.request`` uses an unconnected UDP socket,
so a closed port (ICMP "port unreachable") looks like silence for the whole
timeout; it calls getaddrinfo itself, which no timeout can interrupt; and it
accepts any packet from the server's address, even one that answers an
earlier question. Here names go through the agent's ``Resolver`` (bounded,
and ``.invalid`` names never reach the DNS), the socket is connected, and a
reply counts only when it echoes our transmit timestamp.

Sign: ``offset_ms`` is positive when OUR clock is AHEAD of the server
(ntplib's and ntpq's offset is the server minus us; we negate it), so
"clock 2.3 s ahead" reads the way the number does.
"""

import logging
import socket
import threading
import time
from dataclasses import dataclass

import ntplib

from appliance.agent.transport import Resolver
from appliance.config.schema import split_host_port
from appliance.errors import SendError

log = logging.getLogger("phonehome.timecheck")

NTP_PORT = 123
NTP_VERSION = 4
_HEADER_BYTES = 48
_JOIN_SLACK_S = 1.0  # beyond timeout_s, for thread start-up on a busy Pi

# ServerAnswer.code values: stable for programs (the web page, the payload); ``status`` is for people.
OK = "ok"
UNRESOLVABLE = "unresolvable"
TIMEOUT = "timeout"
REFUSED = "refused"
KISS = "kiss"
UNSYNCHRONISED = "unsynchronised"
BAD_REPLY = "bad-reply"
ERROR = "error"
REPLIED = frozenset({OK, KISS, UNSYNCHRONISED, BAD_REPLY})  # a packet came back: counts for reach

_KISS_HINTS = {
    "RATE": "the server asks us to ask less often",
    "DENY": "the server refuses us",
    "RSTR": "the server refuses us",
}


@dataclass(frozen=True)
class ServerAnswer:
    """One server's answer to one question.

    ``server`` is as configured ("host" or "host:port"); ``code`` is one of
    ok, unresolvable, timeout, refused, kiss, unsynchronised, bad-reply,
    error; ``status`` says the same for a person, with what to check where
    that helps ("ok", "no answer within 5 s (is outbound UDP port 123
    allowed?)", "kiss-of-death RATE (…)"). ``offset_ms`` (positive: our clock is
    ahead of the server) and ``delay_ms`` (round trip) are set for ok answers
    only; ``stratum``, ``leap`` (0-3) and ``refid`` whenever a packet came
    back. ``address`` is the IP asked, when the name resolved.
    """

    server: str
    code: str
    status: str
    address: str | None = None
    offset_ms: float | None = None
    delay_ms: float | None = None
    stratum: int | None = None
    leap: int | None = None
    refid: str | None = None
    detail: str = ""

    @property
    def ok(self):
        """True when the answer can be used to judge our clock."""
        return self.code == OK

    @property
    def replied(self):
        """True when a packet came back, usable or not (what ntpq's reach counts)."""
        return self.code in REPLIED


def refid_text(ref_id, stratum):
    """The reference id as ntpq shows it: an IPv4 address for stratum 2-15, else its ASCII (GPS, RATE, INIT)."""
    raw = int(ref_id).to_bytes(4, "big")
    if 2 <= stratum <= 15:
        return ".".join(str(b) for b in raw)
    text = raw.rstrip(b"\0").decode("ascii", "replace")
    return text if text and text.isprintable() else raw.hex().upper()


def request_ntp(address, port, *, timeout_s):
    """Send one client packet to ``address`` (an IP) and return ntplib.NTPStats with dest_timestamp set.

    Raises TimeoutError when no matching reply arrives within ``timeout_s``
    seconds, ConnectionRefusedError when the port is closed (ICMP), other
    OSError for network errors, ntplib.NTPException for a reply that is not
    an NTP packet.
    """
    deadline = time.monotonic() + timeout_s
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((address, port))  # connected: an ICMP "port unreachable" comes back as ECONNREFUSED
        query = ntplib.NTPPacket(mode=3, version=NTP_VERSION,
                                 tx_timestamp=ntplib.system_to_ntp_time(time.time())).to_data()
        s.send(query)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer within {timeout_s:g} s")
            s.settimeout(left)
            data = s.recv(1024)
            dest = ntplib.system_to_ntp_time(time.time())
            if len(data) < _HEADER_BYTES:
                raise ntplib.NTPException(f"not an NTP packet ({len(data)} bytes)")
            if data[24:32] != query[40:48]:
                continue  # answers an earlier question (or is forged): keep waiting for ours
            stats = ntplib.NTPStats()
            stats.from_data(data[:_HEADER_BYTES])
            stats.dest_timestamp = dest
            return stats


def judge_reply(server, address, stats):
    """The ServerAnswer for a reply packet (ntplib.NTPStats with dest_timestamp): usable or why not. Pure."""
    common = dict(server=server, address=address, stratum=stats.stratum, leap=stats.leap,
                  refid=refid_text(stats.ref_id, stats.stratum))
    if stats.tx_timestamp == 0:
        return ServerAnswer(code=BAD_REPLY, status="bad reply: zero transmit time", **common)
    if stats.mode not in (4, 5):
        return ServerAnswer(code=BAD_REPLY, status=f"bad reply: mode {stats.mode}, not a server's answer", **common)
    if stats.stratum == 0:
        kiss = common["refid"]
        hint = _KISS_HINTS.get(kiss, "the server will not serve us now")
        return ServerAnswer(code=KISS, status=f"kiss-of-death {kiss} ({hint})", **common)
    why = [f"stratum {stats.stratum}"] if stats.stratum >= 16 else []
    why += ["leap 3"] if stats.leap == 3 else []
    if why:
        return ServerAnswer(code=UNSYNCHRONISED, status=f"unsynchronised ({', '.join(why)})", **common)
    if stats.delay < 0:
        # The server claims it held our query longer than the whole round trip took. Its interval
        # (offset ± delay/2) would be inside out, and an inside-out interval overlaps every other.
        return ServerAnswer(code=BAD_REPLY, status="bad reply: negative round-trip delay", **common)
    return ServerAnswer(code=OK, status="ok", offset_ms=-stats.offset * 1000.0, delay_ms=stats.delay * 1000.0,
                        **common)


def no_answer_status(port, timeout_s):
    """The status of a server that stayed silent: what happened and what to check."""
    return f"no answer within {timeout_s:g} s (is outbound UDP port {port} allowed?)"


def query_server(spec, *, timeout_s, resolve=None, request=request_ntp):
    """Ask the server ``spec`` ("host" or "host:port", port 123 by default) once; return a ServerAnswer.

    Ends within about ``timeout_s`` seconds, DNS included. ``resolve(host,
    port, *, timeout_s)`` returns IP strings or raises SendError (default: a
    fresh agent Resolver); ``request(address, port, *, timeout_s)`` is
    ``request_ntp`` or a fake. Never raises: every failure is an answer
    whose ``status`` says what happened.
    """
    started = time.monotonic()
    try:
        host, port = split_host_port(spec, default_port=NTP_PORT)
        if port is None or not host:
            return ServerAnswer(spec, ERROR, f"bad server name {spec!r}: use HOST or HOST:PORT")
        resolve = resolve or Resolver().resolve
        try:
            addresses = resolve(host, port, timeout_s=timeout_s)
        except SendError as exc:
            late = "within" in str(exc) or "hanging" in str(exc)
            status = (f"DNS lookup gave no answer within {timeout_s:g} s" if late
                      else "unresolvable host (check the name)")
            return ServerAnswer(spec, UNRESOLVABLE, status, detail=str(exc))
        address = addresses[0]
        left = max(0.001, timeout_s - (time.monotonic() - started))
        try:
            stats = request(address, port, timeout_s=left)
        except TimeoutError:
            return ServerAnswer(spec, TIMEOUT, no_answer_status(port, timeout_s), address=address)
        except ConnectionRefusedError:
            return ServerAnswer(spec, REFUSED, "port closed (ICMP refused; wrong port?)", address=address)
        except ntplib.NTPException as exc:
            return ServerAnswer(spec, BAD_REPLY, f"bad reply: {exc}", address=address)
        except OSError as exc:
            return ServerAnswer(spec, ERROR, f"network error: {exc.strerror or exc}", address=address)
        return judge_reply(spec, address, stats)
    except Exception as exc:  # noqa: BLE001 - a check must never stop the agent; the answer says what broke
        log.debug("asking %s failed unexpectedly", spec, exc_info=True)
        return ServerAnswer(spec, ERROR, f"unexpected error: {type(exc).__name__}: {exc}")


def query_servers(specs, *, timeout_s, resolve=None, request=request_ntp):
    """Ask every server in ``specs`` at once (one thread each); return their ServerAnswers in the same order.

    Takes about one round trip to the slowest server, at most about
    ``timeout_s`` seconds. Never raises.
    """
    resolve = resolve or Resolver().resolve
    answers = [None] * len(specs)

    def ask(i, spec):
        answers[i] = query_server(spec, timeout_s=timeout_s, resolve=resolve, request=request)

    threads = [threading.Thread(target=ask, args=(i, spec), name=f"ntp {spec}", daemon=True)
               for i, spec in enumerate(specs)]
    deadline = time.monotonic() + timeout_s + _JOIN_SLACK_S
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return tuple(a if a is not None else ServerAnswer(spec, TIMEOUT, no_answer_status(_port(spec), timeout_s))
                 for spec, a in zip(specs, answers))


def _port(spec):
    return split_host_port(spec, default_port=NTP_PORT)[1] or NTP_PORT

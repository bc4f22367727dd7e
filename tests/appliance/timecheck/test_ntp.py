"""Asking NTP servers: a real chronyd, and responders that lie in every way a server can; never an exception."""

import threading
import time

import ntplib
import pytest

from appliance.agent.transport import Resolver
from appliance.timecheck.loopback import free_udp_port
from appliance.timecheck.ntp import judge_reply, query_server, query_servers, refid_text

from .conftest import ANSWER_TIMEOUT_S, SILENCE_TIMEOUT_S


def ask(spec, resolver, *, timeout_s=ANSWER_TIMEOUT_S, **kwargs):
    return query_server(spec, timeout_s=timeout_s, resolve=resolver.resolve, **kwargs)


def test_a_real_chrony_answers_ok_with_a_small_offset(chrony, no_dns):
    answer = ask(chrony.spec, no_dns)
    assert (answer.code, answer.status) == ("ok", "ok"), answer
    assert answer.stratum in (8, 9)  # 'local stratum 8'
    assert answer.leap == 0
    assert answer.refid == "127.127.1.1"  # chrony's local reference, shown the way ntpq shows it
    assert abs(answer.offset_ms) < 50 and 0 <= answer.delay_ms < 50
    assert answer.address == "127.0.0.1"


def test_a_server_ahead_gives_a_negative_offset(ntp_server, no_dns):
    # Sign: positive = OUR clock is ahead. The server is 2.3 s ahead, so we are 2.3 s behind.
    answer = ask(ntp_server(skew_s=2.3).spec, no_dns)
    assert answer.ok
    assert answer.offset_ms == pytest.approx(-2300, abs=50)
    behind = ask(ntp_server(skew_s=-2.3).spec, no_dns)
    assert behind.offset_ms == pytest.approx(2300, abs=50)


@pytest.mark.parametrize("behaviour, code, status", [
    (dict(stratum=0, refid=b"RATE"), "kiss", "kiss-of-death RATE (the server asks us to ask less often)"),
    (dict(stratum=0, refid=b"DENY"), "kiss", "kiss-of-death DENY (the server refuses us)"),
    (dict(stratum=0, refid=b"RSTR"), "kiss", "kiss-of-death RSTR (the server refuses us)"),
    (dict(stratum=16, refid=b"INIT"), "unsynchronised", "unsynchronised (stratum 16)"),
    (dict(leap=3), "unsynchronised", "unsynchronised (leap 3)"),
    (dict(stratum=16, leap=3), "unsynchronised", "unsynchronised (stratum 16, leap 3)"),
    (dict(zero_transmit=True), "bad-reply", "bad reply: zero transmit time"),
    # It claims to have held our query 10 s, longer than the round trip took: a negative delay.
    (dict(processing_s=10.0), "bad-reply", "bad reply: negative round-trip delay"),
])
def test_a_reply_that_cannot_be_used_says_why(ntp_server, no_dns, behaviour, code, status):
    answer = ask(ntp_server(**behaviour).spec, no_dns)
    assert (answer.code, answer.status) == (code, status)
    assert answer.offset_ms is None and answer.delay_ms is None  # not a usable measurement
    assert answer.replied  # but the server is reachable


def test_a_kiss_of_death_shows_its_code_as_refid(ntp_server, no_dns):
    assert ask(ntp_server(stratum=0, refid=b"RATE").spec, no_dns).refid == "RATE"


def test_a_negative_delay_is_a_bad_reply_not_a_measurement():
    # The same check on a table: receive 10 s before transmit, but the round trip took 1 s.
    stats = ntplib.NTPStats()
    stats.mode, stats.stratum, stats.leap, stats.ref_id = 4, 2, 0, 0xC0000201
    stats.orig_timestamp, stats.recv_timestamp = 3_900_000_000.0, 3_900_000_000.2
    stats.tx_timestamp, stats.dest_timestamp = 3_900_000_010.2, 3_900_000_001.0
    assert stats.delay < 0
    answer = judge_reply("ntp.lan", "192.0.2.1", stats)
    assert (answer.code, answer.status, answer.offset_ms, answer.delay_ms) == (
        "bad-reply", "bad reply: negative round-trip delay", None, None)
    stats.tx_timestamp = 3_900_000_000.3
    assert judge_reply("ntp.lan", "192.0.2.1", stats).ok


def test_a_silent_server_is_no_answer_within_the_timeout(ntp_server, no_dns):
    server = ntp_server(silent=True)
    started = time.monotonic()
    answer = ask(server.spec, no_dns, timeout_s=SILENCE_TIMEOUT_S)
    elapsed = time.monotonic() - started
    assert (answer.code, answer.status) == (
        "timeout", f"no answer within 0.3 s (is outbound UDP port {server.port} allowed?)")
    assert server.queries == 1
    assert SILENCE_TIMEOUT_S * 0.9 <= elapsed < SILENCE_TIMEOUT_S + 5


def test_the_default_port_is_named_in_the_silence_hint(no_dns):
    def silent(address, port, *, timeout_s):
        raise TimeoutError

    answer = ask("192.0.2.1", no_dns, request=silent)
    assert answer.status.endswith("(is outbound UDP port 123 allowed?)")


def test_a_reply_to_another_question_is_ignored(ntp_server, no_dns):
    answer = ask(ntp_server(wrong_origin=True).spec, no_dns, timeout_s=SILENCE_TIMEOUT_S)
    assert answer.code == "timeout"


def test_a_closed_port_is_refused_at_once(no_dns):
    started = time.monotonic()
    answer = ask(f"127.0.0.1:{free_udp_port()}", no_dns)
    assert (answer.code, answer.status) == ("refused", "port closed (ICMP refused; wrong port?)")
    assert time.monotonic() - started < ANSWER_TIMEOUT_S  # the ICMP error, not the timeout, ended it


@pytest.mark.parametrize("name", ["unresolvable.invalid", "ntp.unresolvable.invalid:11123", "NTP.INVALID",
                                  "ntp.invalid.", "NTP.Invalid.:123"])
def test_an_invalid_name_is_unresolvable_without_a_dns_query(no_dns, name):
    answer = ask(name, no_dns)  # no_dns fails the test if getaddrinfo is called
    assert (answer.code, answer.status) == ("unresolvable", "unresolvable host (check the name)")
    assert "Name or service not known" in answer.detail


def test_a_hanging_dns_lookup_ends_within_the_timeout():
    release = threading.Event()

    def hang(*args, **kwargs):
        release.wait(5)
        raise OSError("released")

    try:
        answer = ask("ntp.example.lan", Resolver(getaddrinfo=hang), timeout_s=SILENCE_TIMEOUT_S)
    finally:
        release.set()
    assert (answer.code, answer.status) == ("unresolvable", "DNS lookup gave no answer within 0.3 s")


@pytest.mark.parametrize("spec", ["127.0.0.1:0", "127.0.0.1:99999", ":123"])
def test_a_bad_server_name_is_an_answer_not_an_exception(spec, no_dns):
    answer = ask(spec, no_dns)
    assert answer.code == "error" and "HOST:PORT" in answer.status


@pytest.mark.parametrize("error, code, status", [
    (TimeoutError(), "timeout", "no answer within 2 s (is outbound UDP port 123 allowed?)"),
    (ConnectionRefusedError(), "refused", "port closed (ICMP refused; wrong port?)"),
    (OSError(101, "Network is unreachable"), "error", "network error: Network is unreachable"),
    (ZeroDivisionError("boom"), "error", "unexpected error: ZeroDivisionError: boom"),
])
def test_every_failure_of_the_request_is_an_answer(no_dns, error, code, status):
    def request(address, port, *, timeout_s):
        raise error

    answer = ask("127.0.0.1:123", no_dns, request=request)
    assert (answer.code, answer.status) == (code, status)


def test_servers_are_asked_at_once_and_answers_keep_their_order(ntp_server, no_dns, chrony):
    silent = [ntp_server(silent=True) for _ in range(3)]
    specs = [s.spec for s in silent] + [chrony.spec]
    started = time.monotonic()
    answers = query_servers(specs, timeout_s=ANSWER_TIMEOUT_S, resolve=no_dns.resolve)  # chrony must answer
    elapsed = time.monotonic() - started
    assert [a.server for a in answers] == specs
    assert [a.code for a in answers] == ["timeout", "timeout", "timeout", "ok"]
    assert elapsed < 2.5 * ANSWER_TIMEOUT_S  # one after the other would take 3 timeouts


@pytest.mark.parametrize("ref_id, stratum, text", [
    (0xC0A80101, 2, "192.168.1.1"),
    (0x7F7F0101, 8, "127.127.1.1"),
    (int.from_bytes(b"GPS\0", "big"), 1, "GPS"),
    (int.from_bytes(b"RATE", "big"), 0, "RATE"),
    (int.from_bytes(b"INIT", "big"), 16, "INIT"),
    (0x01020304, 1, "01020304"),  # not printable: hex, as chrony shows it
])
def test_refid_reads_as_ntpq_shows_it(ref_id, stratum, text):
    assert refid_text(ref_id, stratum) == text

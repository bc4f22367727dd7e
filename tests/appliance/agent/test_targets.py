import dataclasses
import json

import pytest

from appliance import __version__
from appliance.agent.failures import Window
from appliance.agent.targets import Beat, build_request, judge, uptime_kuma_url, url_with_time
from appliance.agent.transport import Response
from appliance.config.schema import Target
from appliance.errors import SendError

TOKEN = "s3cret-token-123"
PHONEHOME = Target(url="https://monitor.example.com/api/heartbeat", kind="phonehome", token=TOKEN)
HEALTHCHECKS = Target(url="https://hc-ping.com/0b5f1c3e-uuid", kind="healthchecks")
KUMA = Target(url="https://kuma.example.com/api/push/AbCd?status=up&msg=OK&ping=", kind="uptime-kuma")
URL = Target(url="http://server.example.com/raspberrypiPhoneHome?", kind="url")

BEAT = Beat(device="home", sent_at=1_750_000_123.75, seq=7, boot_id="b00t", uptime_s=4567.5,
            agent_started_at=1_750_000_000.0,
            send_failures=(Window(1_749_990_000.0, 1_749_990_600.0, 10),), previous_rtt_ms=23.4)


def answer(status, body=b"", **headers):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return Response(status=status, body=body, elapsed_s=0.0234, headers=headers)


# --- requests ------------------------------------------------------------------------------------

def test_phonehome_request():
    method, url, headers, body = build_request(PHONEHOME, BEAT)
    assert (method, url) == ("POST", PHONEHOME.url)
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"phonehome/{__version__}"
    assert json.loads(body) == {
        "device": "home", "sent_at": 1_750_000_123.75, "seq": 7, "boot_id": "b00t", "uptime_s": 4567.5,
        "agent_started_at": 1_750_000_000.0,
        "send_failures": [{"from": 1_749_990_000.0, "to": 1_749_990_600.0, "failures": 10}],
        "version": __version__,
    }
    assert TOKEN.encode() not in body


def test_phonehome_carries_the_clock_check_and_other_kinds_do_not():
    report = {"verdict": "ok", "reason": "clock within 2 ms of 4 servers", "offset_ms": 1.5}
    beat = dataclasses.replace(BEAT, time=report)
    assert json.loads(build_request(PHONEHOME, beat)[3])["time"] == report
    for kind, url in (("healthchecks", "https://hc.example/ping/x"), ("url", "http://www.example/p?")):
        method, target_url, _, body = build_request(Target(url=url, kind=kind), beat)
        assert body is None and "verdict" not in target_url


PEERS = [{"name": "garage-pi", "state": "down", "last_heard_at": 1_750_000_000.0, "down_since": 1_750_000_300.0,
          "power_cycles": [{"at": 1_750_000_600.0, "came_back_at": None}]}]


def test_phonehome_carries_the_peers_only_when_there_are_some_and_other_kinds_never():
    assert "peers" not in json.loads(build_request(PHONEHOME, BEAT)[3])
    beat = dataclasses.replace(BEAT, peers=PEERS)
    assert json.loads(build_request(PHONEHOME, beat)[3])["peers"] == PEERS
    assert json.loads(build_request(PHONEHOME, dataclasses.replace(BEAT, peers=[]))[3])["peers"] == []
    for target in (HEALTHCHECKS, KUMA, URL):
        assert build_request(target, beat) == build_request(target, BEAT)


def test_phonehome_unknown_boot_id_is_null():
    _, _, _, body = build_request(PHONEHOME, Beat(device="home", sent_at=1.0, seq=1, boot_id="", uptime_s=None,
                                                  agent_started_at=1.0))
    assert json.loads(body)["boot_id"] is None
    assert json.loads(body)["uptime_s"] is None


def test_healthchecks_request_uses_the_url_as_is():
    assert build_request(HEALTHCHECKS, BEAT)[:2] == ("GET", HEALTHCHECKS.url)
    assert build_request(HEALTHCHECKS, BEAT)[3] is None


@pytest.mark.parametrize("url, rtt_ms, expected", [
    ("https://k/api/push/AbCd", None, "https://k/api/push/AbCd?status=up&msg=OK&ping="),
    ("https://k/api/push/AbCd?status=up&msg=OK&ping=", 23.4, "https://k/api/push/AbCd?status=up&msg=OK&ping=23"),
    ("https://k/api/push/AbCd?status=down&extra=1", 7.6, "https://k/api/push/AbCd?status=up&extra=1&msg=OK&ping=8"),
])
def test_uptime_kuma_url(url, rtt_ms, expected):
    assert uptime_kuma_url(url, rtt_ms) == expected


def test_uptime_kuma_request_pings_with_previous_round_trip():
    assert build_request(KUMA, BEAT)[1] == "https://kuma.example.com/api/push/AbCd?status=up&msg=OK&ping=23"


@pytest.mark.parametrize("url, expected", [
    ("http://server/raspberrypiPhoneHome?", "http://server/raspberrypiPhoneHome?1750000123"),  # the original
    ("http://server/p?a=1&", "http://server/p?a=1&1750000123"),
    ("http://server/p?t=", "http://server/p?t=1750000123"),
    ("http://server/p?a=1", "http://server/p?a=1&1750000123"),
    ("http://server/p", "http://server/p?1750000123"),
])
def test_url_gets_the_epoch_appended_like_the_crontab_line(url, expected):
    assert url_with_time(url, 1_750_000_123.75) == expected


def test_url_request():
    assert build_request(URL, BEAT)[:2] == ("GET", "http://server.example.com/raspberrypiPhoneHome?1750000123")


# --- answers -------------------------------------------------------------------------------------

def test_phonehome_success_keeps_the_monitors_time():
    result = judge(PHONEHOME, answer(200, {"received_at": 1_750_000_124.5}))
    assert (result.status, result.rtt_ms, result.received_at) == (200, pytest.approx(23.4), 1_750_000_124.5)


@pytest.mark.parametrize("response, message", [
    (answer(401, {"error": "unknown token"}),
     "the monitor at monitor.example.com rejected the token (HTTP 401): check that this device's token is "
     "the same in the agent's [[heartbeat.targets]] and the monitor's [[monitor.devices]]"),
    (answer(500, {"error": "database is locked"}), "HTTP 500 from monitor.example.com: database is locked"),
    (answer(404, b"<html>Not Found</html>"), "HTTP 404 from monitor.example.com"),
    (answer(301, b"", location="https://new.example.com/api/heartbeat"),
     "HTTP 301 from monitor.example.com: a redirect to https://new.example.com/api/heartbeat, not followed; "
     "put the final URL in the config"),
    (answer(200, b"OK"), "monitor.example.com answered HTTP 200 without phonehome's JSON (no 'received_at'); "
                         "check that the URL is a phonehome monitor's heartbeat URL"),
    (answer(204), "HTTP 204 from monitor.example.com"),
])
def test_phonehome_failures(response, message):
    with pytest.raises(SendError) as caught:
        judge(PHONEHOME, response)
    assert str(caught.value) == message
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize("status", [200, 201, 204])
def test_healthchecks_success_is_any_2xx(status):
    assert judge(HEALTHCHECKS, answer(status, b"OK")).status == status


def test_healthchecks_failure_quotes_a_short_text_answer():
    with pytest.raises(SendError, match="^HTTP 404 from hc-ping.com: not found$"):
        judge(HEALTHCHECKS, answer(404, b"not found\n"))


def test_uptime_kuma_success():
    assert judge(KUMA, answer(200, {"ok": True})).status == 200


@pytest.mark.parametrize("response, message", [
    (answer(404, {"ok": False, "msg": "Monitor not found or not active."}),
     "kuma.example.com refused the push (HTTP 404): 'Monitor not found or not active.'; "
     "check the push URL in Uptime Kuma"),
    (answer(200, b"OK"), 'kuma.example.com answered HTTP 200 without {"ok": true}; '
                         "check that the URL is an Uptime Kuma push URL"),
    (answer(502, b"Bad Gateway"), "HTTP 502 from kuma.example.com: Bad Gateway"),
])
def test_uptime_kuma_failures(response, message):
    with pytest.raises(SendError) as caught:
        judge(KUMA, response)
    assert str(caught.value) == message


@pytest.mark.parametrize("status", [200, 302, 404, 500])
def test_url_any_answer_is_delivered(status):
    # The point is the line in the web server's access log, whatever the server answers.
    assert judge(URL, answer(status)).status == status

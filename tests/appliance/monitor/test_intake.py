"""Heartbeat bodies from outside: good ones parsed, bad ones rejected with the field named."""

import json

import pytest

from appliance.monitor.intake import BadHeartbeat, parse_heartbeat

GOOD = {"device": "home", "sent_at": 1_700_000_000.5, "seq": 3, "boot_id": "3f1c-44aa-9e0b", "uptime_s": 12.5}


def parse(body, content_type="application/json"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_heartbeat(raw, content_type, received_at=1_700_000_100.0)


def test_agent_json_body():
    beat = parse(dict(GOOD, send_failures=[{"from": 1, "to": 2, "failures": 3}], version="0.1.0", extra="x"))
    assert beat["device"] == "home" and beat["seq"] == 3 and beat["uptime_s"] == 12.5
    assert beat["send_failures"] == [{"from": 1.0, "to": 2.0, "failures": 3}]
    assert "extra" not in beat


def test_curl_form_needs_only_the_device():
    beat = parse(b"device=home", "application/x-www-form-urlencoded")
    assert beat["device"] == "home" and beat["sent_at"] == 1_700_000_100.0 and beat["boot_id"] is None


def test_curl_form_with_boot_id_and_uptime():
    beat = parse(b"device=home&sent_at=1700000000&boot_id=3f1c-44aa%0A&uptime_s=1234.56",
                 "application/x-www-form-urlencoded; charset=utf-8")
    assert beat["boot_id"] == "3f1c-44aa" and beat["uptime_s"] == 1234.56 and beat["sent_at"] == 1.7e9


@pytest.mark.parametrize("body, field, words", [
    (b"not json", "", "not valid JSON"),
    (b"[1, 2]", "", "JSON object"),
    ({k: v for k, v in GOOD.items() if k != "device"}, "device", "required"),
    ({k: v for k, v in GOOD.items() if k != "seq"}, "seq", "required"),
    (dict(GOOD, device="a b"), "device", "device's name"),
    (dict(GOOD, device=7), "device", "device's name"),
    (dict(GOOD, sent_at="now"), "sent_at", "must be a number"),
    (dict(GOOD, sent_at=-1), "sent_at", "at least 0"),
    (dict(GOOD, sent_at=True), "sent_at", "must be a number"),
    (dict(GOOD, seq=-1), "seq", "whole number"),
    (dict(GOOD, seq=1.5), "seq", "whole number"),
    (dict(GOOD, boot_id="x" * 65), "boot_id", "boot_id"),
    (dict(GOOD, boot_id="../etc"), "boot_id", "boot_id"),
    (dict(GOOD, uptime_s=float("nan")), "uptime_s", "must be a number"),
    (dict(GOOD, send_failures="x"), "send_failures", "list"),
    (dict(GOOD, send_failures=[{"from": 5, "to": 4, "failures": 1}]), "send_failures[0].to", "at least 5"),
    (dict(GOOD, send_failures=[{"from": 1, "to": 2, "failures": -1}]), "send_failures[0].failures", "whole"),
    (dict(GOOD, send_failures=[{"from": 1, "to": 2}] * 101), "send_failures", "at most 100"),
    (dict(GOOD, version="x" * 33), "version", "32 characters"),
])
def test_bad_json_bodies_name_the_field(body, field, words):
    with pytest.raises(BadHeartbeat) as info:
        parse(body)
    assert info.value.field == field
    assert words in str(info.value)


@pytest.mark.parametrize("body, field", [
    (b"sent_at=1", "device"),
    (b"device=home&seq=x", "seq"),
    (b"device=home&uptime_s=abc", "uptime_s"),
    (b"device=h%20me", "device"),
    (b"device=home&boot_id=%00%01", "boot_id"),
])
def test_bad_forms_name_the_field(body, field):
    with pytest.raises(BadHeartbeat) as info:
        parse(body, "application/x-www-form-urlencoded")
    assert info.value.field == field


def test_unsupported_content_type_says_what_is_accepted():
    with pytest.raises(BadHeartbeat, match="application/json or application/x-www-form-urlencoded"):
        parse(b"<xml/>", "text/xml")


def test_a_clock_report_is_checked_field_by_field():
    report = {"verdict": "ok", "reason": "clock within 3 ms of 4 servers", "offset_ms": -3.2, "jitter_ms": 0.4,
              "service": "chrony", "synchronized": True, "zone": "Europe/Berlin", "checked_at": 1.7e9}
    assert parse(dict(GOOD, time=report))["time"] == report
    for bad, field in ((["ok"], "time"), ({"verdict": "OK!"}, "time.verdict"),
                       ({"verdict": "ok", "offset_ms": "3"}, "time.offset_ms"),
                       ({"verdict": "ok", "reason": 7}, "time.reason"),
                       ({"verdict": "ok", "synchronized": "yes"}, "time.synchronized")):
        with pytest.raises(BadHeartbeat) as info:
            parse(dict(GOOD, time=bad))
        assert info.value.field == field


def test_sent_at_is_known_only_when_the_device_said_it():
    assert parse(GOOD)["sent_at_known"] is True
    assert parse(b"device=home", "application/x-www-form-urlencoded")["sent_at_known"] is False
    assert parse(dict(GOOD, sent_at_known=False))["sent_at_known"] is True  # not taken from outside


def test_a_long_clock_reason_is_cut_not_refused():
    beat = parse(dict(GOOD, time={"verdict": "unreachable", "reason": "x" * 400, "zone": "UTC"}))
    assert len(beat["time"]["reason"]) == 200 and beat["time"]["reason"].endswith("…")


# -- what a watching Pi reports of its peers ------------------------------------------

PEER = {"name": "garage-pi", "state": "down", "last_heard_at": 1_700_000_000.0, "down_since": 1_700_000_000.0,
        "power_cycles": [{"at": 1_700_000_600.0, "came_back_at": None}]}


def test_peer_reports_are_kept_with_unknown_keys_dropped():
    beat = parse(dict(GOOD, peers=[dict(PEER, colour="red"), {"name": "cabin", "state": "new"}]))
    assert beat["peers"] == [
        {"name": "garage-pi", "state": "down", "last_heard_at": 1.7e9, "down_since": 1.7e9,
         "power_cycles": [{"at": 1_700_000_600.0, "came_back_at": None}]},
        {"name": "cabin", "state": "new", "last_heard_at": None, "down_since": None, "power_cycles": []},
    ]
    assert "peers" not in parse(GOOD)


def test_a_peer_listed_twice_counts_once():
    beat = parse(dict(GOOD, peers=[PEER, dict(PEER, state="up")]))
    assert [p["state"] for p in beat["peers"]] == ["down"]


@pytest.mark.parametrize("peers, field, words", [
    ("garage-pi", "peers", "list of at most 50"),
    ([PEER] * 51, "peers", "list of at most 50"),
    (["garage-pi"], "peers[0]", "must be an object"),
    ([{"state": "up"}], "peers[0].name", "device name"),
    ([dict(PEER, name="garage pi")], "peers[0].name", "device name"),
    ([PEER, dict(PEER, state="sleeping")], "peers[1].state", "one of up, down, new"),
    ([dict(PEER, state=None)], "peers[0].state", "one of up, down, new"),
    ([dict(PEER, last_heard_at="yesterday")], "peers[0].last_heard_at", "must be a number"),
    ([dict(PEER, down_since=-5)], "peers[0].down_since", "at least 0"),
    ([dict(PEER, power_cycles={"at": 1})], "peers[0].power_cycles", "at most 5"),
    ([dict(PEER, power_cycles=[{"at": 1}] * 6)], "peers[0].power_cycles", "at most 5"),
    ([dict(PEER, power_cycles=[7])], "peers[0].power_cycles[0]", "must be an object"),
    ([dict(PEER, power_cycles=[{"came_back_at": 5}])], "peers[0].power_cycles[0].at", "must be a number"),
    ([dict(PEER, power_cycles=[{"at": 10, "came_back_at": 5}])], "peers[0].power_cycles[0].came_back_at",
     "at least 10"),
])
def test_bad_peer_reports_name_the_field(peers, field, words):
    with pytest.raises(BadHeartbeat) as info:
        parse(dict(GOOD, peers=peers))
    assert info.value.field == field
    assert words in str(info.value)

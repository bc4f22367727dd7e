"""The monitor's HTTP API on a real waitress server on 127.0.0.1, spoken to with requests.

The device list and the metrics are read as a script does, with the [web] api_token.

Two servers per module, because stopping waitress takes a second: ``untouched``
only ever gets requests that must be refused, so after each one it still has no
device heard, no event and no heartbeat counted; ``monitor`` takes good ones.
"""

import json
import re
import time

import pytest
import requests

from appliance.config.schema import Alerts, Config, Monitor, MonitoredDevice, Web
from appliance.roles import MonitorRole

TOKEN = "home-token-0123456789"
CABIN_TOKEN = "cabin-token-9876543210"
API_TOKEN = "api-token-for-scripts-0123"
READ = {"Authorization": f"Bearer {API_TOKEN}"}
GOOD = {"device": "home", "sent_at": 1_700_000_000.5, "seq": 3, "boot_id": "3f1c-44aa-9e0b", "uptime_s": 12.5}
FORM = "application/x-www-form-urlencoded"


def _start_monitor(directory, port):
    """A running MonitorRole with ``.url``: devices home and cabin (tokens) and logpi (magic only)."""
    access_log = directory / "access.log"
    access_log.write_text("")
    config = Config(
        data_dir=str(directory / "data"),
        monitor=Monitor(listen=f"127.0.0.1:{port}", access_log=str(access_log), devices=(
            MonitoredDevice(name="home", token=TOKEN),
            MonitoredDevice(name="cabin", token=CABIN_TOKEN),
            MonitoredDevice(name="logpi", magic="raspberrypiPhoneHome"),
        )),
        alerts=Alerts(outbox_dir=str(directory / "outbox")),
        web=Web(api_token=API_TOKEN),
    )
    role = MonitorRole(config).start()
    role.url = f"http://{config.monitor.listen}"
    return role


@pytest.fixture(scope="module")
def monitor(tmp_path_factory, free_port):
    """A monitor for good heartbeats; tests compare before and after, as others beat too."""
    role = _start_monitor(tmp_path_factory.mktemp("monitor"), free_port())
    yield role
    role.stop()


@pytest.fixture(scope="module")
def untouched(tmp_path_factory, free_port):
    """A monitor that is only ever sent requests it must refuse."""
    role = _start_monitor(tmp_path_factory.mktemp("untouched"), free_port())
    yield role
    role.stop()


def post(monitor, body, *, content_type="application/json", authorization=f"Bearer {TOKEN}"):
    """POST ``body`` (a dict is sent as JSON; bytes, str or an iterator as they are) to the heartbeat URL."""
    data = json.dumps(body) if isinstance(body, dict) else body
    headers = {"Content-Type": content_type}
    if authorization is not None:
        headers["Authorization"] = authorization
    return requests.post(f"{monitor.url}/api/v1/heartbeat", data=data, headers=headers, timeout=5)


def devices(monitor):
    r = requests.get(f"{monitor.url}/api/v1/devices", headers=READ, timeout=5)
    assert r.status_code == 200
    return {d["name"]: d for d in r.json()["devices"]}


def assert_nothing_changed(untouched):
    """No device heard, none up, no event stored, no heartbeat counted."""
    for name, d in devices(untouched).items():
        assert (d["state"], d["last_heard_at"], d["last_heartbeat"]) == ("new", None, None), name
    assert untouched.service.store.events() == []
    assert untouched.service.received_total == 0


# -- accepted heartbeats ------------------------------------------------


def test_a_good_json_heartbeat_is_answered_with_the_monitors_time_and_the_state(monitor):
    before = time.time()
    r = post(monitor, GOOD)
    after = time.time()
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    # Not a page: the short policy, no page-only headers (every byte counts on metered mobile data).
    assert r.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert "X-Frame-Options" not in r.headers and "Referrer-Policy" not in r.headers
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    body = r.json()
    assert body["ok"] is True and body["state"] == "up"
    # The monitor's own clock, not the device's sent_at.
    assert before <= body["received_at"] <= after
    home = devices(monitor)["home"]
    assert home["state"] == "up" and home["last_heard_at"] == body["received_at"]
    assert home["last_heartbeat"]["seq"] == 3 and home["last_heartbeat"]["boot_id"] == "3f1c-44aa-9e0b"


def test_the_curl_form_needs_only_the_device(monitor):
    r = post(monitor, "device=home", content_type=FORM)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "up"
    home = devices(monitor)["home"]
    assert home["state"] == "up" and home["last_heard_at"] == r.json()["received_at"]
    # sent_at defaults to the time of receipt, the other fields to "not said".
    received = r.json()["received_at"]
    assert home["last_heartbeat"] == {"sent_at": received, "received_at": received, "seq": 0, "boot_id": None,
                                      "uptime_s": None, "version": None, "agent_started_at": None}
    assert home["clock_offset_ms"] is None  # no sent_at: the device's clock is unknown


def test_clock_check_and_the_monitors_own_offset_estimate_are_shown(monitor):
    report = {"verdict": "drifting", "reason": "clock 2.3 s ahead of 3 servers", "offset_ms": 2300.0,
              "jitter_ms": 1.2, "service": "timesyncd", "synchronized": True, "zone": "UTC", "checked_at": 1.0}
    ahead = dict(GOOD, sent_at=time.time() + 60, time=report)  # this device's clock runs a minute fast
    r = post(monitor, ahead)
    assert r.status_code == 200, r.text
    home = devices(monitor)["home"]
    assert home["time"] == report
    assert 59_000 < home["clock_offset_ms"] < 61_000
    metrics = requests.get(f"{monitor.url}/metrics", headers=READ, timeout=5).text
    assert 'phonehome_device_clock_offset_seconds{device="home",source="device"} 2.3' in metrics
    assert 'phonehome_device_clock_offset_seconds{device="home",source="monitor"} 59.' in metrics or \
        'phonehome_device_clock_offset_seconds{device="home",source="monitor"} 60' in metrics


def test_the_scheme_bearer_is_case_insensitive(monitor):
    assert post(monitor, GOOD, authorization=f"bearer {TOKEN}").status_code == 200


def test_a_body_of_exactly_64_kib_is_read_and_judged(monitor):
    body = json.dumps(GOOD).encode()
    body += b" " * (64 * 1024 - len(body))  # JSON allows trailing white space
    assert post(monitor, body).status_code == 200


# -- refused heartbeats --------------------------------------------------

DEEP = b'{"device": "home", "x": ' + b"[" * 30000 + b"]" * 30000 + b"}"  # under 64 KiB, past the recursion limit


@pytest.mark.parametrize("body, content_type, field, words", [
    (b"not json", "application/json", "", "not valid JSON"),
    (b"", "application/json", "", "not valid JSON"),
    (b"[1, 2]", "application/json", "", "JSON object"),
    (DEEP, "application/json", "", "not valid JSON"),
    (b"\xff\xfe{}", "application/json", "", "not valid JSON"),
    (b"<beat/>", "text/xml", "", "application/json or application/x-www-form-urlencoded"),
    ({k: v for k, v in GOOD.items() if k != "sent_at"}, "application/json", "sent_at", "required"),
    (dict(GOOD, device="home/../x"), "application/json", "device", "device's name"),
    (dict(GOOD, seq=-1), "application/json", "seq", "whole number"),
    (dict(GOOD, seq="9" * 5000), "application/json", "seq", "whole number"),
    (json.dumps(GOOD).replace('"uptime_s": 12.5', '"uptime_s": 1e999'), "application/json", "uptime_s",
     "must be a number"),
    (dict(GOOD, send_failures=[{"from": 1, "to": 2}] * 101), "application/json", "send_failures", "at most 100"),
    (b"sent_at=1", FORM, "device", "required"),
    (b"device=home&seq=often", FORM, "seq", "must be a number"),
    (b"device=h%20me", FORM, "device", "device's name"),
    (b"device=home&\xff", FORM, "", "not UTF-8"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None)
def test_a_bad_body_is_400_naming_the_field_and_changes_nothing(untouched, body, content_type, field, words):
    r = post(untouched, body, content_type=content_type)
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"] == "application/json"
    answer = r.json()
    assert answer["ok"] is False and answer["field"] == field
    assert words in answer["error"]
    assert len(r.content) < 500  # the bad value is quoted, not echoed back in full
    assert_nothing_changed(untouched)


@pytest.mark.parametrize("device, authorization", [
    ("garage", f"Bearer {TOKEN}"),           # not configured
    ("home", "Bearer wrong-token-0123456"),
    ("home", f"Bearer {CABIN_TOKEN}"),       # another device's token
    ("home", None),                          # no header
    ("home", ""),
    ("home", TOKEN),                         # no scheme
    ("home", f"Basic {TOKEN}"),
    ("home", "Bearer"),
    ("home", "Bearer "),
    ("home", f"Bearer {TOKEN[:-1]}"),        # a prefix of the token
    ("logpi", "Bearer "),                    # magic-only device: an empty token must not pass
    ("logpi", "Bearer"),
])
def test_an_unknown_device_or_a_wrong_token_is_401_and_changes_nothing(untouched, device, authorization):
    r = post(untouched, dict(GOOD, device=device), authorization=authorization)
    assert r.status_code == 401, r.text
    answer = r.json()
    assert answer["ok"] is False and "[[monitor.devices]]" in answer["error"]
    assert_nothing_changed(untouched)


def _chunks(total):
    """The body as a generator, so requests sends it chunked with no Content-Length."""
    sent = 0
    while sent < total:
        n = min(4096, total - sent)
        sent += n
        yield b" " * n


@pytest.mark.parametrize("make_body", [
    lambda: b" " * (64 * 1024 + 1),
    lambda: _chunks(64 * 1024 + 1),
], ids=["content-length", "chunked"])
def test_a_body_over_64_kib_is_413_json(untouched, make_body):
    r = post(untouched, make_body())
    assert r.status_code == 413, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert "64 KiB" in r.json()["error"]
    assert_nothing_changed(untouched)


def test_a_body_past_the_servers_own_cap_is_refused_too(untouched):
    # waitress refuses bodies over 1 MiB before Flask sees them (its answer is text/plain).
    r = post(untouched, _chunks(1024 * 1024 + 1))
    assert r.status_code == 413
    assert_nothing_changed(untouched)


# -- other endpoints -----------------------------------------------------


def test_get_on_the_heartbeat_url_is_405_naming_post(untouched):
    r = requests.get(f"{untouched.url}/api/v1/heartbeat", timeout=5)
    assert r.status_code == 405
    assert r.headers["Content-Type"] == "application/json"
    assert "POST" in r.json()["error"]
    assert_nothing_changed(untouched)


def test_an_unknown_path_is_404_json(untouched):
    r = requests.get(f"{untouched.url}/api/v2/heartbeat", timeout=5)
    assert r.status_code == 404
    assert r.json() == {"ok": False, "error": "no such endpoint; the API is under /api/v1/"}


def test_the_device_list_holds_no_token(monitor):
    assert post(monitor, GOOD).status_code == 200
    r = requests.get(f"{monitor.url}/api/v1/devices", headers=READ, timeout=5)
    assert sorted(d["name"] for d in r.json()["devices"]) == ["cabin", "home", "logpi"]
    for secret in (TOKEN, CABIN_TOKEN, "raspberrypiPhoneHome"):
        assert secret not in r.text


@pytest.mark.parametrize("path", ["/api/v1/devices", "/metrics"])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-api-token-0123", f"Basic {API_TOKEN}", API_TOKEN,
                                           f"Bearer {TOKEN}"])  # a device's token reads nothing
def test_the_device_list_and_metrics_need_the_api_token_or_a_login(untouched, path, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    r = requests.get(f"{untouched.url}{path}", headers=headers, timeout=5)
    assert r.status_code == 401
    assert r.headers["Content-Type"] == "application/json"
    assert r.json()["ok"] is False and "api_token" in r.json()["error"]
    assert requests.get(f"{untouched.url}{path}", headers=READ, timeout=5).status_code == 200


def test_the_pages_are_behind_the_login(untouched):
    r = requests.get(f"{untouched.url}/devices/home", allow_redirects=False, timeout=5)
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    r = requests.get(f"{untouched.url}/", timeout=5)         # no password yet: how to set one
    assert r.status_code == 200 and "phonehome monitor set-password" in r.text
    assert r.headers["Content-Type"].startswith("text/html")


# -- metrics -------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-z_]+)(?:\{device="([A-Za-z0-9._-]+)"(?:,source="(device|monitor)")?\})? (\S+)$')


def metrics(monitor):
    """{(name, device or None): value} from /metrics, checking the text format line by line."""
    r = requests.get(f"{monitor.url}/metrics", headers=READ, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert r.text.endswith("\n")
    samples, described = {}, {}
    for line in r.text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[len("# HELP "):].partition(" ")
            assert help_text and name not in described, line
            described[name] = None
        elif line.startswith("# TYPE "):
            name, _, kind = line[len("# TYPE "):].partition(" ")
            assert name in described and described[name] is None, f"TYPE before HELP or twice: {line}"
            assert kind in ("gauge", "counter"), line
            described[name] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, device, source, value = match.groups()
            assert described.get(name), f"sample before its HELP and TYPE: {line}"
            key = (name, device) if source is None else (name, device, source)
            assert key not in samples, f"sample twice: {line}"
            samples[key] = float(value)
    return samples


def test_metrics_count_accepted_heartbeats_only_and_show_who_is_up(monitor):
    before = metrics(monitor)
    assert post(monitor, GOOD).status_code == 200
    assert post(monitor, dict(GOOD, seq=4)).status_code == 200
    assert post(monitor, b"not json").status_code == 400
    assert post(monitor, GOOD, authorization="Bearer wrong-token-0123").status_code == 401
    assert post(monitor, b" " * (65 * 1024)).status_code == 413
    after = metrics(monitor)
    received = "phonehome_heartbeats_received_total", None
    assert after[received] - before.get(received, 0) == 2
    assert after[("phonehome_device_up", "home")] == 1
    assert 0 <= after[("phonehome_device_seconds_since_heartbeat", "home")] < 5
    # cabin never phoned home: no up/down sample yet, but its outage counter is there.
    assert ("phonehome_device_up", "cabin") not in after
    assert ("phonehome_device_seconds_since_heartbeat", "cabin") not in after
    assert after[("phonehome_device_outages_total", "cabin")] == 0


def test_metrics_of_a_monitor_nobody_phoned(untouched):
    samples = metrics(untouched)
    assert samples == {("phonehome_device_outages_total", "cabin"): 0, ("phonehome_device_outages_total", "home"): 0,
                       ("phonehome_device_outages_total", "logpi"): 0,
                       ("phonehome_heartbeats_received_total", None): 0}

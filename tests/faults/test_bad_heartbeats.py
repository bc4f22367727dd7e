"""Bad input, generated: the heartbeat endpoint attacked by hypothesis, and the pause API beside it.

Random requests and near-valid heartbeats (a good beat with one field broken), JSON bodies and the one-line curl
form. The properties: no 500 and no exception but the documented one; the refusal names the bad field; and a refused
input changes nothing (device states, stored events and heartbeats). Beside them: the pause API (JSON bodies like
the heartbeat's), text the intake must accept, drawn by every page that shows it, and bodies too deep or too large.

The examples are derandomized and no example database is kept, so every run (and CI) tries the same inputs.
"""

import io
import json
import math
import re
import time
import tracemalloc
from urllib.parse import urlencode

import pytest
import requests
from hypothesis import event, given
from hypothesis import strategies as st

from appliance.alerts.channels import OutboxChannel
from appliance.auth import Passwords
from appliance.clock import Now
from appliance.config.schema import Alerts, Config, Monitor, MonitoredDevice, Web
from appliance.monitor.service import MonitorService
from appliance.roles import MonitorRole
from tests.faults.strategies import PASSWORD, examples, path_steps
from web import create_monitor_app

pytestmark = pytest.mark.fault


T0 = Now(mono=1000.0, wall=1_700_000_000.0)
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")  # the device name rule, written out again
BOOT_ID_RULE = re.compile(r"[A-Za-z0-9-]{1,64}")
VERDICT_RULE = re.compile(r"[a-z][a-z-]{0,19}")


class FixedClock:
    def now(self):
        return T0


# -- the heartbeat endpoint -------------------------------------------------------------------------------------

TOKENS = {"home": "home-token-0123", "cabin": "cabin-token-4567"}
API_TOKEN = "api-token-for-scripts-0123"


@pytest.fixture(scope="module")
def monitor(tmp_path_factory):
    """A MonitorService on a real SQLite file behind the real Flask app (test client); home has beaten once."""
    root = tmp_path_factory.mktemp("monitor")
    config = Config(data_dir=str(root / "data"), alerts=Alerts(outbox_dir=str(root / "outbox")),
                    web=Web(api_token=API_TOKEN),
                    monitor=Monitor(devices=tuple(MonitoredDevice(name=n, token=t) for n, t in TOKENS.items())))
    service = MonitorService(config, clock=FixedClock(),
                             channels=[OutboxChannel(str(root / "outbox"), stream=io.StringIO())])
    Passwords(config.data_dir).set(PASSWORD)
    app = create_monitor_app(service)
    app.config["WTF_CSRF_ENABLED"] = False  # the login form's token is tested in tests/web; here the beats attack
    client = app.test_client()
    r = client.post("/api/v1/heartbeat", data=json.dumps(good_beat()), content_type="application/json",
                    headers={"Authorization": f"Bearer {TOKENS['home']}"})
    assert r.status_code == 200, r.get_json()
    service.flush()
    yield service, client
    service.stop()


def good_beat():
    """A heartbeat with every optional part, each holding one entry, so every field has a path to break."""
    return {
        "device": "home", "sent_at": T0.wall - 0.2, "seq": 7, "boot_id": "3f1c-44aa-9e0b", "uptime_s": 600.5,
        "agent_started_at": T0.wall - 300, "version": "0.1.0",
        "send_failures": [{"from": T0.wall - 900, "to": T0.wall - 800, "failures": 3}],
        "time": {"verdict": "ok", "reason": "in step", "service": "timesyncd", "zone": "UTC", "offset_ms": 1.5,
                 "jitter_ms": 0.3, "checked_at": T0.wall - 60, "synchronized": True},
        "peers": [{"name": "garage-pi", "state": "down", "last_heard_at": T0.wall - 700, "down_since": T0.wall - 400,
                   "power_cycles": [{"at": T0.wall - 100, "came_back_at": None}]}],
    }


def snapshot(service):
    """Everything a heartbeat could change: device views, counters, stored events and stored heartbeats."""
    service.flush()
    return (service.devices(), service.received_total, service.store.events(limit=10_000),
            service.store.last_beats())


def post(client, body, content_type, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.post("/api/v1/heartbeat", data=body, headers=headers)


def assert_refusal(r, *, prefixed=True):
    """A 4xx in JSON that says what is wrong and names the field it gives: the intake's message starts with it
    (``prefixed``), the other APIs' messages say it in their sentence."""
    assert 400 <= r.status_code < 500, (r.status_code, r.get_data()[:300])
    answer = r.get_json()
    assert answer["ok"] is False and answer["error"].strip(), answer
    if "field" in answer and answer["field"]:
        assert (answer["error"].startswith(f"{answer['field']}: ") if prefixed
                else answer["field"] in answer["error"] or repr(answer["field"])[1:-1] in answer["error"]), answer
    return answer


# Header values as a client can send them: latin-1 text without line breaks (HTTP has no other way).
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80)
# JSON values of every kind, nested, with non-finite and huge numbers and any unicode.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10**400, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20)
beat_like = st.dictionaries(
    st.sampled_from(["device", "sent_at", "seq", "boot_id", "uptime_s", "time", "peers", "send_failures",
                     "version", "agent_started_at"]) | st.text(max_size=10), json_values, max_size=8)
bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),
    beat_like.map(lambda d: json.dumps(d).encode()),
    st.dictionaries(st.sampled_from(["device", "sent_at", "seq", "uptime_s", "boot_id", "x"]),
                    st.text(max_size=30), max_size=5).map(lambda d: urlencode(d).encode()),
    st.integers(min_value=1, max_value=20_000).map(lambda n: b"[" * n + b"]" * n),
)
content_types = st.one_of(st.none(), st.sampled_from([
    "application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "application/x-www-form-urlencoded",
    "text/plain", "multipart/form-data; boundary=x", "", ";;;"]), header_text)
authorizations = st.one_of(st.none(), st.sampled_from([f"Bearer {t}" for t in TOKENS.values()]),
                           st.sampled_from(["Bearer", "Bearer ", "Basic aG9tZTp4", f"bearer  {TOKENS['home']}  "]),
                           header_text)


@examples(2500)
@given(body=bodies, content_type=content_types, authorization=authorizations)
def test_random_requests_are_never_a_500_and_a_refusal_changes_nothing(monitor, body, content_type, authorization):
    service, client = monitor
    before = snapshot(service)
    r = post(client, body, content_type, authorization)
    if r.status_code == 200:  # a curl-style form with a known device and its token is a good heartbeat
        assert r.get_json()["ok"] is True
        return
    assert_refusal(r)
    assert snapshot(service) == before


def _bad_numbers(low=0.0):
    """JSON values that are not a number >= ``low``: NaN, infinities, too large for a float, below, other kinds."""
    below = [] if low == -math.inf else [st.floats(max_value=low - 1e-6, min_value=-1e300),
                                         st.integers(max_value=math.floor(low) - 1, min_value=-10**20)]
    return st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, True, False, "12", None, [1], {"a": 1}]),
                     st.integers(min_value=10**309, max_value=10**400), st.text(max_size=8), *below)


def _not_whole(low=0):
    return st.one_of(st.sampled_from([True, False, None, "3", 3.0, 1.5, math.nan, [3]]),
                     st.integers(max_value=low - 1, min_value=-10**30))


not_str = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.lists(st.integers(), max_size=2),
                    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
not_str_or_null = not_str.filter(lambda v: v is not None)
_W, _P, _C = "send_failures[0]", "peers[0]", "peers[0].power_cycles[0]"
# (path to the field, bad values for it); a path is where the intake's message must point.
BREAKS = [
    ("device", st.one_of(not_str, st.text(max_size=70).filter(lambda s: not NAME_RULE.fullmatch(s)))),
    ("sent_at", _bad_numbers()), ("uptime_s", _bad_numbers().filter(lambda v: v is not None)),
    ("agent_started_at", _bad_numbers().filter(lambda v: v is not None)),
    ("seq", _not_whole()),
    ("boot_id", st.one_of(not_str_or_null, st.text(max_size=70).filter(lambda s: not BOOT_ID_RULE.fullmatch(s)))),
    ("version", st.one_of(not_str_or_null, st.text(min_size=33, max_size=50))),
    ("send_failures", st.one_of(st.sampled_from([None, {}, "x", 1]), st.lists(st.just({}), min_size=101,
                                                                             max_size=101))),
    (_W, st.one_of(not_str, st.text(max_size=5))),
    (f"{_W}.from", _bad_numbers()), (f"{_W}.to", _bad_numbers(low=T0.wall - 900)), (f"{_W}.failures", _not_whole()),
    ("time", st.one_of(not_str_or_null.filter(lambda v: not isinstance(v, dict)), st.text(max_size=5))),
    ("time.verdict", st.one_of(not_str, st.text(max_size=25).filter(lambda s: not VERDICT_RULE.fullmatch(s)))),
    ("time.reason", not_str_or_null), ("time.zone", not_str_or_null),
    ("time.offset_ms", _bad_numbers(low=-math.inf).filter(lambda v: v is not None)),
    ("time.checked_at", _bad_numbers(low=-math.inf).filter(lambda v: v is not None)),
    ("time.synchronized", st.one_of(st.integers(), st.text(max_size=5), st.floats())),
    ("peers", st.one_of(st.sampled_from([{}, "x", 1, True]), st.lists(st.just({}), min_size=51, max_size=51))),
    (_P, st.one_of(not_str_or_null.filter(lambda v: not isinstance(v, dict)), st.text(max_size=5))),
    (f"{_P}.name", st.one_of(not_str, st.text(max_size=70).filter(lambda s: not NAME_RULE.fullmatch(s)))),
    (f"{_P}.state", st.one_of(not_str, st.text(max_size=8).filter(lambda s: s not in ("up", "down", "new")))),
    (f"{_P}.down_since", _bad_numbers().filter(lambda v: v is not None)),
    (f"{_P}.power_cycles", st.one_of(st.sampled_from([None, {}, "x"]), st.lists(st.just({"at": 1}), min_size=6,
                                                                               max_size=8))),
    (_C, st.one_of(not_str_or_null.filter(lambda v: not isinstance(v, dict)), st.text(max_size=5))),
    (f"{_C}.at", _bad_numbers()),
    (f"{_C}.came_back_at", _bad_numbers(low=T0.wall - 100).filter(lambda v: v is not None)),
]


def broken(path, value):
    """good_beat() with the field at ``path`` ("peers[0].power_cycles[0].at") set to ``value``."""
    beat = good_beat()
    steps = path_steps(path)
    parent = beat
    for step in steps[:-1]:
        parent = parent[step]
    parent[steps[-1]] = value
    return beat


@examples(2000)
@given(data=st.data())
def test_a_heartbeat_with_one_bad_field_is_a_400_naming_that_field_and_changes_nothing(monitor, data):
    service, client = monitor
    path, values = data.draw(st.sampled_from(BREAKS), label="field")
    value = data.draw(values, label="value")
    beat = broken(path, value)
    before = snapshot(service)
    r = post(client, json.dumps(beat, allow_nan=True).encode(), "application/json", f"Bearer {TOKENS['home']}")
    answer = assert_refusal(r)
    # An object where an object is due is judged by its own fields: the message names the first bad one in it.
    named = answer["field"]
    assert r.status_code == 400 and (named == path or named.startswith(f"{path}.")), (path, value, answer)
    assert snapshot(service) == before


@examples(60)
@given(field=st.sampled_from(["device", "sent_at", "seq", "boot_id", "uptime_s"]))
def test_a_heartbeat_without_a_required_field_is_a_400_naming_it(monitor, field):
    service, client = monitor
    beat = good_beat()
    del beat[field]
    before = snapshot(service)
    answer = assert_refusal(post(client, json.dumps(beat).encode(), "application/json", f"Bearer {TOKENS['home']}"))
    assert answer["field"] == field
    assert snapshot(service) == before


# Any text, with what JSON can carry that UTF-8 cannot (lone surrogates), controls, bidi overrides and zero widths.
odd_text = st.lists(st.one_of(st.text(max_size=8), st.sampled_from(["\ud800", "\udc80", "\udfff", "\u202e", "\x00",
                                                                    "\u200b", "<script>", "&amp;", "\r\n"])),
                    max_size=6).map("".join)


@pytest.fixture(scope="module")
def reader(monitor):
    """A logged-in test client on the monitor's pages."""
    client = monitor[1].application.test_client()
    assert client.post("/login", data={"password": PASSWORD}).status_code == 302
    return client


@examples(300)
@given(version=odd_text, reason=odd_text, service=odd_text, zone=odd_text)
def test_any_text_in_a_heartbeat_is_accepted_and_every_page_that_shows_it_still_works(monitor, reader, version,
                                                                                       reason, service, zone):
    """Optional texts are kept (cut to length), never a reason to lose a beat; the pages draw them."""
    service_, client = monitor
    beat = {**good_beat(), "version": version[:32],
            "time": {**good_beat()["time"], "reason": reason, "service": service, "zone": zone}}
    r = post(client, json.dumps(beat).encode(), "application/json", f"Bearer {TOKENS['home']}")
    assert r.status_code == 200, r.get_json()
    for url in ("/", "/devices/home", "/api/v1/devices", "/metrics"):
        page = reader.get(url)
        assert page.status_code == 200, (url, page.status_code)
        page.get_data(as_text=True)


@st.composite
def near_valid_pauses(draw):
    """{"device" or "site": name, "for_s": seconds or null}, each part right or wrong, sometimes with an extra key."""
    names, lengths = st.sampled_from(["home", "cabin", "nowhere", ""]), st.sampled_from(
        [None, 60, 0, -1, 2678401, 10**400, -10**400, 1e308, math.nan, math.inf, True, "3600"])
    body = {draw(st.sampled_from(["device", "site"])): draw(names if draw(st.integers(0, 4)) else json_values)}
    if draw(st.integers(0, 4)):
        body["for_s"] = draw(lengths if draw(st.integers(0, 4)) else json_values)
    if not draw(st.integers(0, 9)):
        body[draw(st.text(max_size=6))] = draw(json_values)
    return body


pause_bodies = st.one_of(near_valid_pauses(), json_values)


@examples(600)
@given(path=st.sampled_from(["/api/v1/pauses", "/api/v1/pauses/resume"]), body=pause_bodies)
def test_the_pause_api_refuses_bad_bodies_without_a_500_and_without_a_change(monitor, path, body):
    service, client = monitor
    before = (snapshot(service), service.pauses())
    r = client.post(path, data=json.dumps(body, allow_nan=True), content_type="application/json",
                    headers={"Authorization": f"Bearer {API_TOKEN}"})
    if r.status_code == 200:
        event("paused or resumed")
        return
    answer = assert_refusal(r, prefixed=False)
    if answer.get("field"):
        assert answer["field"] in ("device", "site", "for_s") or answer["field"] == str(next(
            k for k in body if k not in ("device", "site", "for_s")))[:40], answer
    assert (snapshot(service), service.pauses()) == before


@examples(600)
@given(field=st.sampled_from(["device", "sent_at", "seq", "uptime_s", "boot_id"]), value=st.text(max_size=40))
def test_a_curl_form_with_one_bad_field_is_a_400_naming_it_or_a_good_beat(monitor, field, value):
    """The one-line crontab form (only ``device`` required): a value that is not a name, a number or a boot id
    is a 400 naming its field; nothing changes unless the beat is good."""
    service, client = monitor
    sent = {"device": "home", "sent_at": str(T0.wall), "seq": "3", "uptime_s": "60", "boot_id": "3f1c-44aa-9e0b",
            field: value}
    before = snapshot(service)
    r = post(client, urlencode(sent).encode(), "application/x-www-form-urlencoded", f"Bearer {TOKENS['home']}")
    if r.status_code == 200:
        event("good beat")
        return
    answer = assert_refusal(r)
    if field == "device" and NAME_RULE.fullmatch(value):  # a well-formed name of no device of ours
        assert r.status_code == 401, answer
    else:
        assert r.status_code == 400 and answer["field"] == field, (field, value, answer)
    assert snapshot(service) == before


@examples(40)
@given(depth=st.integers(min_value=500, max_value=30_000), opener=st.sampled_from([b"[", b'{"a":', b'[{"b":']))
def test_deeply_nested_json_is_refused_quickly(monitor, depth, opener):
    service, client = monitor
    closer = b"]" if opener == b"[" else (b"}" if opener == b'{"a":' else b"}]")
    body = b'{"device": "home", "sent_at": 1, "seq": 1, "boot_id": "b", "uptime_s": 1, "peers": ' \
           + opener * depth + b"1" + closer * depth + b"}"
    before = snapshot(service)
    started = time.monotonic()
    r = post(client, body, "application/json", f"Bearer {TOKENS['home']}")
    assert time.monotonic() - started < 2.0
    answer = assert_refusal(r)
    # Past 64 KiB the body is too large; under it, too deep for the parser or not a list of peers.
    if len(body) > 64 * 1024:
        assert r.status_code == 413
    else:
        assert answer["field"] in ("", "peers", "peers[0]", "peers[0].name")
    assert snapshot(service) == before


def test_a_huge_body_to_the_real_server_costs_bounded_time_and_memory(tmp_path, free_port):
    """20 MB sent chunked (no Content-Length) to waitress: refused after at most its 1 MiB cap is read, quickly,
    without the monitor holding the body in memory, and nothing changes."""
    config = Config(data_dir=str(tmp_path / "data"), alerts=Alerts(outbox_dir=str(tmp_path / "outbox")),
                    monitor=Monitor(listen=f"127.0.0.1:{free_port()}",
                                    devices=(MonitoredDevice(name="home", token=TOKENS["home"]),)))
    role = MonitorRole(config).start()
    try:
        before = snapshot(role.service)

        def chunks():
            piece = b'{"device": "home", "pad": "' + b"x" * (64 * 1024)
            for _ in range(20 * 1024 * 1024 // len(piece)):
                yield piece

        tracemalloc.start()
        started = time.monotonic()
        try:
            r = requests.post(f"http://{config.monitor.listen}/api/v1/heartbeat", data=chunks(), timeout=10,
                              headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKENS['home']}"})
            status = r.status_code
        except requests.ConnectionError:  # the server may close the connection while the client still sends
            status = None
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert status in (413, None)
        assert elapsed < 5.0
        # The server's side lives in this process too: its peak (with the client's) stays far below the 20 MB sent.
        assert peak < 6 * 1024 * 1024, peak
        assert snapshot(role.service) == before
    finally:
        role.stop()

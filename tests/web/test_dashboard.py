"""The dashboard: every fact in HTML behind the login, the OLED's picture, the charts' JSON, the vendored chart
library, and nothing the CSP would block. Heartbeats go to real HTTP servers on 127.0.0.1."""

import io
import json
import os
import re
import time

import pytest
from PIL import Image

from appliance.agent.beathistory import RttPoint
from appliance.agent.failures import Window
from appliance.agent.heartbeats import TargetHistory, TargetStatus
from appliance.monitor.events import Event, Kind, State
from appliance.status import Network
from appliance.timecheck.history import Point
from web import dashboard

STATIC = os.path.join(os.path.dirname(dashboard.__file__), "static")
VENDOR = os.path.join(STATIC, "vendor", "uplot")
AT = 1_790_000_000.0


def wait_until(predicate, what, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)


def beating(appliance_factory, ping, closed_port, extra=""):
    """An appliance with a target that answers (``ping``) and one that refuses, after the first beat to each."""
    appliance = appliance_factory(f"""
[device]
name = "home"
[heartbeat]
interval_s = 3600
timeout_s = 2
[[heartbeat.targets]]
kind = "url"
url = "{ping.url}"
name = "pinger"
[[heartbeat.targets]]
kind = "url"
url = "http://127.0.0.1:{closed_port}/ping"
name = "nowhere"
{extra}""")
    sender = appliance.role.sender
    wait_until(lambda: [s.state for s in sender.status()] == ["ok", "failing"], "the first beats")
    return appliance


@pytest.fixture
def closed_port(free_port):
    return free_port()


def text(html):
    """The page's text with tags and runs of white space collapsed, for reading facts off it."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# -- the page ---------------------------------------------------------------------------------------------

def test_the_dashboard_and_its_data_need_a_login(appliance):
    assert appliance.browser().get("/").headers["Location"].endswith("/setup")
    appliance.claimed_browser()
    stranger = appliance.browser()
    assert stranger.get("/").headers["Location"].endswith("/login?next=/")
    assert stranger.client.get("/display.png").status_code == 302
    history = stranger.get("/api/v1/history")
    assert history.status_code == 401 and history.json["ok"] is False


def test_each_target_shows_its_state_and_round_trip_after_real_beats(appliance_factory, ping, closed_port):
    appliance = beating(appliance_factory, ping, closed_port)
    ok, failing = appliance.role.sender.status()
    page = appliance.claimed_browser().get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    cards = re.findall(r'<section class="card target".*?</section>', html, re.S)
    assert len(cards) == 2
    assert "pinger" in cards[0] and 'class="state ok"' in cards[0]
    assert f'<dd class="rtt">{dashboard.ms_text(ok.last_rtt_ms)}</dd>' in cards[0]
    assert re.search(r'<dd class="last-ok">(just now|\d+ s ago)</dd>', cards[0])
    assert "nowhere" in cards[1] and 'class="state failing"' in cards[1]
    assert failing.last_error in text(cards[1]) and '<dd class="rtt">–</dd>' in cards[1]
    history = text(re.search(r'<section id="history".*?</section>', html, re.S).group(0))
    assert "nowhere: heartbeats failing" in history and "1 failed send so far" in history
    assert "this appliance started" in history


def test_the_clock_network_setup_and_uptime_are_on_the_page(appliance_factory, monkeypatch):
    wifi = Network(interface="wlan0", ip="192.168.1.23", wifi_ssid="HomeNet", wifi_signal_dbm=-61)
    monkeypatch.setattr("appliance.network.read_network", lambda: wifi)
    appliance = appliance_factory()
    checker = appliance.role.time
    wait_until(lambda: checker.status.checked_at is not None, "the first clock check")
    verdict = checker.status.verdict
    page = appliance.claimed_browser().get("/").get_data(as_text=True)
    clock = re.search(r'<section class="card" aria-labelledby="h-time">.*?</section>', page, re.S).group(0)
    assert f'<span class="state {verdict}">{verdict}</span>' in clock
    assert text(checker.status.reason) in text(clock)
    words = text(page)
    assert "Interface wlan0" in words and "IP address 192.168.1.23" in words and "Wi-Fi HomeNet, -61 dBm" in words
    assert "Setup claimed" in words and "Uptime " in words
    assert "Not phoning home yet" in words  # no device name nor target yet


def test_the_page_shows_the_oled_mirror(appliance):
    html = appliance.claimed_browser().get("/").get_data(as_text=True)
    img = re.search(r'<img class="oled"[^>]*>', html).group(0)
    assert 'src="/display.png"' in img and 'width="128"' in img and 'height="64"' in img
    assert re.search(r'alt="The Status page a display would show: (SETUP|NO NET), not sending beats"', img)


def test_the_page_has_no_inline_script_or_style(appliance_factory, ping, closed_port):
    browser = beating(appliance_factory, ping, closed_port).claimed_browser()
    html = browser.get("/").get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html, re.I), "an inline <script>"
    assert not re.search(r"<style\b", html, re.I), "a <style> element"
    assert not re.search(r"\sstyle\s*=", html, re.I), "a style attribute"
    assert not re.search(r"\son[a-z]+\s*=", html, re.I), "an inline event handler"
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "something fetched from elsewhere"
    scripts = re.findall(r'<script src="([^"]+)" defer></script>', html)
    assert scripts == ["/static/vendor/uplot/uPlot.iife.min.js", "/static/dashboard.js"]
    for url in scripts + re.findall(r'<link rel="stylesheet" href="([^"]+)"', html):
        assert browser.get(url).status_code == 200, url


# -- the OLED's picture ----------------------------------------------------------------------------------

@pytest.mark.parametrize("display, size", [("", (128, 64)), ('[display]\nheight = 32\nrotate = 90\n', (32, 128))])
def test_without_a_display_the_picture_is_the_status_page_a_display_would_show(appliance_factory, display, size):
    browser = appliance_factory(display).claimed_browser()
    response = browser.client.get("/display.png")  # the client itself: Browser.get reads pages as text
    assert response.status_code == 200 and response.mimetype == "image/png"
    image = Image.open(io.BytesIO(response.data))
    assert image.format == "PNG" and image.size == size
    assert image.convert("1").getbbox() is not None  # something is drawn


def test_with_a_display_the_picture_is_the_frame_it_shows(appliance_factory, tmp_path):
    appliance = appliance_factory(f"""
[display]
driver = "emulator"
emulator_file = "{tmp_path / 'oled.png'}"
page_s = 3600
""")
    display = appliance.role.panel.display
    wait_until(lambda: display.frame is not None, "the display's first frame")
    browser = appliance.claimed_browser()
    for _ in range(20):  # the frame can change while it is fetched (an age ticking): then look again
        before = display.frame
        data = browser.client.get("/display.png").data
        if display.frame is before:
            break
    image = Image.open(io.BytesIO(data))
    assert image.size == before.size == (128, 64)
    assert image.convert("1").tobytes() == before.tobytes()


# -- the charts' data ------------------------------------------------------------------------------------

def test_history_json_has_the_round_trips_of_the_beats(appliance_factory, ping, closed_port):
    appliance = beating(appliance_factory, ping, closed_port)
    ok, _ = appliance.role.sender.status()
    history = appliance.claimed_browser().get("/api/v1/history").json
    minute = int(ok.last_ok_at // 60 * 60)
    assert history["rtt"]["pinger"] == [[minute, round(ok.last_rtt_ms, 1)]]
    [[at, rtt]] = history["rtt"]["nowhere"]
    assert rtt is None  # every send that minute failed: a gap in the line
    assert isinstance(history["offset"], list) and abs(history["now"] - time.time()) < 60
    assert all(len(p) == 3 for p in history["offset"])


def test_a_monitor_inside_shows_its_peers_and_their_events(appliance_factory, free_port):
    port = free_port()
    appliance = appliance_factory(f"""
[device]
name = "home"
[heartbeat]
interval_s = 3600
timeout_s = 2
[[heartbeat.targets]]
url = "http://127.0.0.1:{port}/api/v1/heartbeat"
token = "home-token-0123456789"
name = "myself"
[monitor]
listen = "127.0.0.1:{port}"
[[monitor.devices]]
name = "home"
token = "home-token-0123456789"
[[monitor.devices]]
name = "garage"
token = "garage-token-0123456789"
""")
    store = appliance.role.monitor.service.store
    wait_until(lambda: store.events(limit=5), "the monitor's first event")
    html = appliance.claimed_browser().get("/").get_data(as_text=True)
    peers = re.search(r'<section id="peers".*?</section>', html, re.S).group(0)
    rows = {row.split()[0]: row for row in (text(r).strip() for r in re.findall(r"<tr>.*?</tr>", peers, re.S)[1:])}
    assert re.fullmatch(r"home up (just now|\d+ s ago)", rows["home"]) and rows["garage"] == "garage new never"
    history = text(re.search(r'<section id="history".*?</section>', html, re.S).group(0))
    assert "home: first-seen" in history


# -- the vendored chart library --------------------------------------------------------------------------

def test_the_chart_library_is_vendored_with_its_licence_and_origin():
    for name in ("uPlot.iife.min.js", "uPlot.min.css", "LICENSE", "README.md"):
        assert os.path.getsize(os.path.join(VENDOR, name)) > 0, name
    with open(os.path.join(VENDOR, "LICENSE"), encoding="utf-8") as f:
        assert "MIT License" in f.read()
    with open(os.path.join(VENDOR, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    with open(os.path.join(VENDOR, "uPlot.iife.min.js"), encoding="utf-8") as f:
        banner = f.readline()
    version = re.search(r"\(v(\d+\.\d+\.\d+)\)", banner).group(1)
    assert f"uplot@{version}" in readme and "npm pack" in readme


def test_the_chart_library_needs_no_csp_relaxation():
    """The CSP's style-src 'self' blocks style attributes and <style> elements, not element.style properties."""
    with open(os.path.join(VENDOR, "uPlot.iife.min.js"), encoding="utf-8") as f:
        code = f.read()
    assert "setAttribute(\"style\"" not in code and "setAttribute('style'" not in code
    assert "cssText" not in code and "createElement(\"style\")" not in code and "insertRule" not in code
    assert not re.search(r"\beval\(|new Function\(", code)


# -- the facts, as plain functions ------------------------------------------------------------------------

def test_ago_and_ms_text():
    assert [dashboard.ago(None, AT), dashboard.ago(AT, AT), dashboard.ago(AT - 150, AT)] == \
        ["never", "just now", "2 min ago"]
    assert [dashboard.ms_text(None), dashboard.ms_text(41.6), dashboard.ms_text(1234.0)] == ["–", "42 ms", "1.2 s"]


def test_targets_on_one_host_get_their_own_line():
    assert dashboard.unique_labels(["hc-ping.com", "home", "hc-ping.com"]) == ["hc-ping.com", "home", "hc-ping.com (2)"]


def test_cards_and_chart_data_from_statuses_and_histories():
    status = TargetStatus(label="monitor", kind="phonehome", url="https://m.example/x", state="failing",
                          last_ok_at=AT - 120, last_rtt_ms=80.0, last_error="no answer from m.example within 10 s",
                          consecutive_failures=2)
    points = (RttPoint(AT - 180, 40.0), RttPoint(AT - 120, 80.0), RttPoint(AT - 60, None, 2))
    history = TargetHistory("monitor", "phonehome", points, (Window(AT - 60, None, 2),))
    [card] = dashboard.target_cards((status,), (history,), AT)
    assert (card.state, card.last_ok, card.rtt, card.last_error) == ("failing", "2 min ago", "80 ms",
                                                                     "no answer from m.example within 10 s")
    assert card.day == "2 minutes with beats; median 40 ms, largest 80 ms; 1 minute with failed sends"
    offsets = (Point(AT - 600, 3.24, "ok"), Point(AT - 300, None, "unreachable"))
    data = dashboard.chart_data((history,), offsets, AT, zone="Europe/Berlin")
    assert data == {"now": AT, "zone": "Europe/Berlin",
                    "rtt": {"monitor": [[AT - 180, 40.0], [AT - 120, 80.0], [AT - 60, None]]},
                    "offset": [[AT - 600, 3.2, "ok"], [AT - 300, None, "unreachable"]]}
    json.dumps(data)


def test_history_items_newest_first_from_every_source():
    history = TargetHistory("monitor", "phonehome", (), (Window(AT - 3600, AT - 3000, 10), Window(AT - 60, None, 1)))
    offsets = (Point(AT - 900, 1.0, "ok"), Point(AT - 600, 900.0, "drifting"), Point(AT - 300, 2.0, "ok"))
    events = [Event("garage", Kind.DOWN, State.UP, State.DOWN, AT - 1200, "silent for 5 min")]
    items = dashboard.history_items(dashboard.failure_items((history,), AT), dashboard.clock_items(offsets),
                                    dashboard.peer_items(events), [None])
    assert [(i.kind, i.state, i.what) for i in items] == [
        ("heartbeat", "failing", "monitor: heartbeats failing"),
        ("clock", "ok", "clock check: drifting → ok"),
        ("clock", "drifting", "clock check: ok → drifting"),
        ("peer", "down", "garage: down"),
        ("heartbeat", "failing", "monitor: heartbeats failed"),
    ]
    assert items[-1].detail.startswith("for 10 min, until ") and items[-1].detail.endswith("; 10 failed sends")
    assert len(dashboard.history_items(dashboard.clock_items(offsets * 40), limit=7)) == 7


def test_summaries_for_people_without_the_charts():
    assert dashboard.day_summary(()) == "no beats in the last 24 h"
    histories = (TargetHistory("a", "url", (RttPoint(AT, 30.0), RttPoint(AT + 60, 90.0), RttPoint(AT + 120, 50.0)), ()),
                 TargetHistory("a", "url", (RttPoint(AT, None, 1),), ()))
    assert dashboard.rtt_summary(histories) == "a: median 50 ms, largest 90 ms; a (2): no round trips yet"
    assert dashboard.rtt_summary(()) == "no heartbeat targets"
    assert dashboard.offset_summary(()) == "no clock checks recorded yet"
    assert dashboard.offset_summary((Point(AT, -12.0, "ok"),)) == \
        "checks in 1 five-minute slot; largest offset 12 ms; all ok"

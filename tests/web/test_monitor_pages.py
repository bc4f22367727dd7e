"""The monitor's pages: a MonitorService on a real SQLite file, driven by a hand-moved clock and tick(now), and
Flask's test client on ``create_monitor_app`` with CSRF on. The admin password is set the way a person does it,
with ``phonehome monitor set-password``."""

import io
import json
import os
import re
import subprocess
import sys

import pytest

from appliance.auth import Passwords
from appliance.cli import main
from appliance.clock import Now
from appliance.config.schema import Alerts, Config, Monitor, MonitoredDevice, Web
from appliance.monitor.service import MonitorService
from web import create_monitor_app
from web.security import PUBLIC, TOKEN_ONLY, TOKEN_OR_SESSION

from .conftest import PASSWORD, Browser

API_TOKEN = "pages-api-token-0123456789"
T0 = Now(mono=1000.0, wall=1_700_000_000.0)
PHONEHOME = os.path.join(os.path.dirname(sys.executable), "phonehome")


class ManualClock:
    def __init__(self):
        self.current = T0

    def now(self):
        return self.current

    def advance(self, seconds):
        self.current = self.current.later(seconds)
        return self.current


class RunningMonitor:
    """A MonitorService (threads not started: the test ticks it) with devices ``names``, its app and a config
    file for the CLI. Alerts go to an outbox directory, a real channel."""

    def __init__(self, tmp_path, names):
        self.data_dir = str(tmp_path / "data")
        self.outbox = tmp_path / "outbox"
        self.config_path = str(tmp_path / "phonehome.toml")
        devices = "".join(f'[[monitor.devices]]\nname = "{n}"\ntoken = "{n}-token-123"\nmax_silence_s = 300\n'
                          for n in names)
        with open(self.config_path, "w") as f:
            f.write(f'data_dir = "{self.data_dir}"\n[web]\napi_token = "{API_TOKEN}"\n[alerts]\n'
                    f'outbox_dir = "{self.outbox}"\n[monitor]\nlisten = "127.0.0.1:8081"\n{devices}')
        self.config = Config(
            data_dir=self.data_dir, web=Web(api_token=API_TOKEN), alerts=Alerts(outbox_dir=str(self.outbox)),
            monitor=Monitor(devices=tuple(MonitoredDevice(name=n, token=f"{n}-token-123", max_silence_s=300)
                                          for n in names)))
        self.clock = ManualClock()
        self.service = MonitorService(self.config, clock=self.clock)
        self.app = create_monitor_app(self.service)

    def beat(self, name, **fields):
        body = json.dumps({"device": name, "sent_at": self.clock.now().wall, "seq": 1, "boot_id": "b00t-1",
                           "uptime_s": 3600.0, **fields}).encode()
        answer = self.service.receive(body, "application/json", f"Bearer {name}-token-123")
        assert answer.status == 200, answer.body

    def tick(self, seconds):
        self.service.tick(self.clock.advance(seconds))

    def browser(self):
        return Browser(self.app.test_client())

    def logged_in(self):
        browser = self.browser()
        response = browser.post("/login", {"password": PASSWORD, "next": "/"})
        assert response.status_code == 302, response.get_data(as_text=True)
        return browser

    def outbox_files(self):
        return sorted(os.listdir(self.outbox)) if self.outbox.exists() else []


def set_password(monitor, password=PASSWORD):
    """``phonehome monitor set-password --password-stdin`` in this process; returns the exit code."""
    stdin = sys.stdin
    sys.stdin = io.StringIO(password + "\n")
    try:
        return main(["monitor", "set-password", "--config", monitor.config_path, "--password-stdin"])
    finally:
        sys.stdin = stdin


@pytest.fixture
def monitor_factory(tmp_path):
    made = []

    def make(names=("cabin", "garage", "home"), *, password=True):
        monitor = RunningMonitor(tmp_path, names)
        made.append(monitor)
        if password:
            assert set_password(monitor) == 0
        return monitor

    yield make
    for monitor in made:
        monitor.service.stop()


@pytest.fixture
def monitor(monitor_factory):
    return monitor_factory()


def text(response):
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def rows(response):
    """The device names in the list's table, in order."""
    return re.findall(r'<td class="name"><a href="/devices/[^"]+">([^<]+)</a>', response.get_data(as_text=True))


# -- the login model ------------------------------------------------------------


def test_every_page_needs_a_login(monitor):
    browser = monitor.browser()
    checked = []
    for rule in monitor.app.url_map.iter_rules():
        if rule.endpoint in PUBLIC | TOKEN_ONLY | TOKEN_OR_SESSION:
            continue
        url = rule.build({"name": "home"} if "name" in rule.arguments else {})[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if method == "GET":
                response = browser.get(url)
            else:  # with a good CSRF token, so the login check itself is what answers
                response = browser.post(url, {"duration": "1h"}, page="/login")
            assert response.status_code == 302, (method, url)
            assert response.headers["Location"].startswith("/login"), (method, url)
            checked.append((method, rule.endpoint))
    assert {e for _, e in checked} >= {"monitor_pages.devices", "monitor_pages.device", "monitor_pages.pause",
                                       "monitor_pages.resume", "auth.change_password", "auth.logout"}
    assert monitor.service.device("home")["alerts_paused"] is False


def test_without_a_password_the_pages_say_to_run_set_password(monitor_factory):
    monitor = monitor_factory(password=False)
    browser = monitor.browser()
    response = browser.get("/", follow_redirects=True)
    assert response.status_code == 200
    assert "phonehome monitor set-password" in text(response)
    assert browser.get("/devices/home").headers["Location"].startswith("/login")


def test_the_password_set_on_the_command_line_logs_in_and_a_new_one_logs_browsers_out(monitor):
    browser = monitor.logged_in()
    assert browser.get("/").status_code == 200
    assert set_password(monitor, "another good password") == 0
    assert browser.get("/").status_code == 302                 # logged out by the new password
    assert browser.post("/login", {"password": PASSWORD}).status_code == 401
    assert browser.post("/login", {"password": "another good password"}).status_code == 302


@pytest.mark.parametrize("argv, stdin, message", [
    (["--password-stdin"], "short\n", "at least 8 characters"),
    (["--password-stdin"], "", "at least 8 characters"),
    ([], "a good long password\n", "pipe it in with --password-stdin"),  # no terminal to ask on
])
def test_set_password_refuses_bad_input_and_changes_nothing(monitor_factory, monkeypatch, capsys, argv, stdin,
                                                           message):
    monitor = monitor_factory(password=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    assert main(["monitor", "set-password", "--config", monitor.config_path, *argv]) == 2
    assert message in capsys.readouterr().err
    assert not Passwords(monitor.data_dir).is_set


def test_set_password_asks_twice_on_a_terminal(monitor_factory, monkeypatch, capsys):
    monitor = monitor_factory(password=False)
    monkeypatch.setattr(sys, "stdin", type("Tty", (io.StringIO,), {"isatty": lambda self: True})())
    answers = iter(["a good long password", "a good long passwort"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["monitor", "set-password", "--config", monitor.config_path]) == 2
    assert "the two passwords differ" in capsys.readouterr().err
    assert not Passwords(monitor.data_dir).is_set
    answers = iter(["a good long password"] * 2)
    assert main(["monitor", "set-password", "--config", monitor.config_path]) == 0
    assert Passwords(monitor.data_dir).check("a good long password")


def test_set_password_as_the_installed_command(monitor_factory):
    monitor = monitor_factory(password=False)
    done = subprocess.run([PHONEHOME, "monitor", "set-password", "--config", monitor.config_path,
                           "--password-stdin"], input="from a script 123\n", capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "admin password set in" in done.stdout and "http://127.0.0.1:8081/" in done.stdout
    assert Passwords(monitor.data_dir).check("from a script 123")
    assert oct(os.stat(Passwords(monitor.data_dir).path).st_mode & 0o777) == "0o600"


def test_password_stdin_without_set_password_is_a_usage_error(monitor, capsys):
    assert main(["monitor", "--config", monitor.config_path, "--password-stdin"]) == 2
    assert "goes with 'phonehome monitor set-password'" in capsys.readouterr().err


# -- the device list ---------------------------------------------------------------


def test_the_list_shows_state_last_seen_uptime_clock_and_the_current_outage(monitor):
    drifting = {"verdict": "drifting", "offset_ms": 2300.0, "reason": "2.3 s ahead"}
    monitor.beat("home", time=drifting)
    monitor.beat("garage")
    monitor.tick(200)
    monitor.beat("home", time=drifting)                                     # home stays up; garage goes silent
    monitor.tick(100)
    browser = monitor.logged_in()
    page = browser.get("/")
    assert page.status_code == 200
    assert rows(page) == ["garage", "cabin", "home"]           # down first, then by name
    body = text(page)
    assert '<span class="state down">down</span>' in body
    assert "5 min, since" in body                              # garage's outage so far
    assert "1 min ago" in body and "5 min ago" in body         # last seen
    assert "1 h 1 min" in body                                 # home's uptime: 3600 s at the beat + 100 s since
    assert "+2.3 s" in body and '<span class="state drifting">drifting</span>' in body
    assert "never" in body                                     # cabin: never heard
    assert 'href="/?state=down">Down <span class="count">1</span>' in body


def test_the_list_is_paginated_filtered_and_searched(monitor_factory):
    names = [f"pi-{i:03d}" for i in range(250)]
    monitor = monitor_factory(names)
    for name in names[:10]:
        monitor.beat(name)
    monitor.tick(300)                                          # pi-000..pi-009 down
    browser = monitor.logged_in()
    first = browser.get("/")
    assert len(rows(first)) == 100 and rows(first)[:11] == names[:10] + ["pi-010"]
    assert "Page 1 of 3" in text(first) and 'href="/?page=2"' in text(first)
    last = browser.get("/?page=3")
    assert rows(last) == names[200:]
    assert rows(browser.get("/?page=99")) == names[200:]      # past the end: the last page
    assert rows(browser.get("/?state=down")) == names[:10]
    assert rows(browser.get("/?state=new&q=PI-24")) == names[240:250]
    matching = sorted((n for n in names if "1" in n), key=lambda n: (n not in names[:10], n))
    assert len(matching) > 100
    searched = browser.get("/?q=1&page=2")
    assert rows(searched) == matching[100:200]
    assert 'href="/?page=1&amp;q=1"' in text(searched)         # page links keep the search
    nothing = browser.get("/?q=zzz")
    assert nothing.status_code == 200 and "No device whose name contains" in text(nothing)


@pytest.mark.parametrize("query, words", [
    ("page=abc", "page must be a whole number from 1 up, got 'abc'"),
    ("page=0", "page must be a whole number"),
    ("page=-1", "page must be a whole number"),
    ("page=1.5", "page must be a whole number"),
    ("page=%D9%A3", "page must be a whole number"),            # an Arabic-Indic three: a digit, not ours
    ("page=99999999999999", "page must be a whole number"),
    ("state=sideways", "state must be one of down, up, new, paused"),
    ("q=" + "x" * 101, "q (the name to search for) must be at most 100 characters"),
])
def test_bad_list_arguments_are_400_saying_what_to_send(monitor, query, words):
    response = monitor.logged_in().get("/?" + query)
    assert response.status_code == 400
    assert words[0].upper() + words[1:] in text(response).replace("&#39;", "'")


@pytest.mark.parametrize("query", ["page=", "page=1", "state=", "state=all", "state=DOWN", "q="])
def test_empty_or_default_list_arguments_are_fine(monitor, query):
    assert monitor.logged_in().get("/?" + query).status_code == 200


def test_the_list_of_a_monitor_without_devices_says_how_to_add_one(monitor_factory):
    monitor = monitor_factory(names=())
    assert "[[monitor.devices]]" in text(monitor.logged_in().get("/"))


# -- a device's page -------------------------------------------------------------------


def test_the_device_page_shows_the_outage_history_newest_first(monitor):
    monitor.beat("home")
    monitor.tick(300)                                          # DOWN at T0 + 300, started T0
    monitor.clock.advance(600)
    monitor.beat("home")                                       # UP at T0 + 900: 15 min
    monitor.tick(300)                                          # DOWN again at T0 + 1200, ongoing
    monitor.tick(120)
    page = monitor.logged_in().get("/devices/home")
    assert page.status_code == 200
    body = text(page)
    assert "2 recorded" in body
    history = body[body.index('<table class="outages">'):]
    cells = re.findall(r'<td(?: class="[^"]*")?>(.*?)</td>', history)
    assert len(cells) == 10
    assert "ongoing" in cells[2] and cells[3] == "7 min so far" and cells[4] == "—"  # cause: not known yet
    assert cells[8] == "15 min" and cells[9] == "—"
    assert "down for 7 min" in body


def test_the_outage_history_shows_what_the_evidence_told_of_the_cause(monitor):
    monitor.beat("home")
    monitor.tick(300)                                          # DOWN at T0 + 300, started T0
    monitor.clock.advance(600)
    monitor.beat("home", boot_id="b00t-2", uptime_s=120.0)     # a new boot 2 min before T0 + 900: a power cut
    body = text(monitor.logged_in().get("/devices/home"))
    cells = re.findall(r'<td(?: class="[^"]*")?>(.*?)</td>', body[body.index('<table class="outages">'):])
    assert cells[3] == "15 min" and cells[4].startswith("power cut, 13 min (rebooted ")


def test_the_outage_history_is_paginated(monitor, monkeypatch):
    monkeypatch.setattr("web.monitor_pages.OUTAGES_PER_PAGE", 2)
    for _ in range(3):
        monitor.beat("home")
        monitor.tick(300)
        monitor.clock.advance(60)
    browser = monitor.logged_in()
    first, second = browser.get("/devices/home"), browser.get("/devices/home?page=2")
    assert text(first).count("<tr>") == 3 and "Page 1 of 2" in text(first)   # header + 2 outages
    assert text(second).count("<tr>") == 2
    assert 'href="/devices/home?page=1"' in text(second)


@pytest.mark.parametrize("url, status, words", [
    ("/devices/garden", 404, "There is no device named 'garden' on this monitor"),
    ("/devices/home?page=abc", 400, "Page must be a whole number"),
    ("/no/such/page", 404, "There is no such page here"),
])
def test_bad_device_urls_say_what_to_do(monitor, url, status, words):
    response = monitor.logged_in().get(url)
    assert response.status_code == status
    assert words in text(response).replace("&#39;", "'")
    assert response.headers["Content-Type"].startswith("text/html")


# -- pausing alerts -------------------------------------------------------------------


def test_pause_from_the_page_silences_alerts_and_resume_brings_them_back(monitor):
    browser = monitor.logged_in()
    monitor.beat("home")
    response = browser.post("/devices/home/pause", {"duration": "until-resumed"}, page="/devices/home")
    assert response.status_code == 302 and response.headers["Location"] == "/devices/home"
    page = text(browser.get("/devices/home"))
    assert "Alerts for home paused until you resume them" in page     # the flash
    assert "Alerts paused until resumed." in page
    assert '<span class="state paused" title="alerts paused until resumed">paused</span>' in text(browser.get("/"))
    monitor.tick(300)                                                 # DOWN while paused
    monitor.service.dispatcher.tick("outbox", monitor.clock.now())
    assert monitor.service.device("home")["state"] == "down" and monitor.outbox_files() == []
    assert monitor.service.store.outages(device="home")[0]["ended_at"] is None   # still recorded

    response = browser.post("/devices/home/resume", {}, page="/devices/home")
    assert response.status_code == 302
    assert "Alerts for home are on again." in text(browser.get("/devices/home"))
    monitor.clock.advance(60)
    monitor.beat("home")                                              # UP: told
    monitor.service.dispatcher.tick("outbox", monitor.clock.now())
    assert len(monitor.outbox_files()) == 1 and "UP" in monitor.outbox_files()[0].upper()


def test_a_timed_pause_shows_when_it_ends(monitor):
    browser = monitor.logged_in()
    browser.post("/devices/home/pause", {"duration": "1h"}, page="/devices/home")
    page = text(browser.get("/devices/home"))
    assert "Alerts paused until " in page and "for 1 hour, until" in page
    assert monitor.service.device("home")["alerts_paused_until"] == T0.wall + 3600
    monitor.tick(3600)
    assert "Alerts are on" in text(browser.get("/devices/home"))


@pytest.mark.parametrize("form, words", [
    ({"duration": "2h"}, "duration must be one of 1h, 1d, until-resumed, got '2h'"),
    ({"duration": ""}, "duration is missing"),
    ({}, "duration is missing"),
    ({"duration": "1h" * 50}, "got '1h1h1h1h1h1h1h1h1h1h'"),     # quoted short, not echoed whole
])
def test_a_bad_pause_duration_is_400_naming_the_field(monitor, form, words):
    response = monitor.logged_in().post("/devices/home/pause", form, page="/devices/home")
    assert response.status_code == 400
    body = text(response).replace("&#39;", "'")
    assert words in body and 'id="e-duration"' in body
    assert monitor.service.device("home")["alerts_paused"] is False


def test_pausing_an_unknown_device_is_404(monitor):
    response = monitor.logged_in().post("/devices/garden/pause", {"duration": "1h"}, page="/")
    assert response.status_code == 404 and "no device named 'garden'" in text(response).replace("&#39;", "'")


def test_a_pause_without_the_csrf_token_is_refused(monitor):
    browser = monitor.logged_in()
    response = browser.client.post("/devices/home/pause", data={"duration": "1h"})
    assert response.status_code == 400 and "CSRF" in text(response)
    assert monitor.service.device("home")["alerts_paused"] is False


# -- the API beside the pages ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/devices", "/metrics"])
def test_scripts_read_the_api_with_the_token_and_get_json_401_without(monitor, path):
    client = monitor.app.test_client()
    assert client.get(path, headers={"Authorization": f"Bearer {API_TOKEN}"}).status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
        response = client.get(path, headers=headers)
        assert response.status_code == 401 and response.json["ok"] is False
        assert "api_token" in response.json["error"]
    assert monitor.logged_in().get(path).status_code == 200     # or a session


def test_the_api_shows_the_pause(monitor):
    monitor.service.pause("home", for_s=86400)
    client = monitor.app.test_client()
    devices = client.get("/api/v1/devices", headers={"Authorization": f"Bearer {API_TOKEN}"}).json["devices"]
    home = {d["name"]: d for d in devices}["home"]
    assert home["alerts_paused"] is True and home["alerts_paused_until"] == T0.wall + 86400

"""Quieting alerts on the monitor's pages and API: a site's pause switch, acknowledging an outage from its device's
page or from the link in an alert, the pauses API with the API token, and ``phonehome monitor pause`` against a
monitor that answers on 127.0.0.1. A MonitorService on a real SQLite file, driven by a hand-moved clock; Flask's
test client with CSRF on, or a real waitress server for the command line."""

import email
import email.policy
import io
import json
import re
import sys

import pytest

from appliance.cli import main
from appliance.clock import Now
from appliance.config import load_config
from appliance.monitor.acks import LINK_VALID_S, make_token
from appliance.monitor.service import MonitorService
from web import create_monitor_app
from web.security import PUBLIC
from web.server import HttpServer

from .conftest import PASSWORD, Browser

API_TOKEN = "quiet-api-token-0123456789"
BEARER = {"Authorization": f"Bearer {API_TOKEN}"}
T0 = Now(mono=1000.0, wall=1_700_000_000.0)
DEVICES = (("garage-pi", "home"), ("home", "home"), ("cabin", ""))


class ManualClock:
    def __init__(self):
        self.current = T0

    def now(self):
        return self.current

    def advance(self, seconds):
        self.current = self.current.later(seconds)
        return self.current


class QuietMonitor:
    """A monitor with two devices at site "home" and one without a site, its config file (for the command line),
    its app, and alerts in an outbox directory. ``public_url`` puts acknowledgement links in alerts."""

    def __init__(self, tmp_path, port, *, api_token=API_TOKEN, public_url="https://monitor.example.com"):
        self.data_dir = str(tmp_path / "data")
        self.outbox = tmp_path / "outbox"
        self.config_path = str(tmp_path / "phonehome.toml")
        self.listen = f"127.0.0.1:{port}"
        devices = "".join(f'[[monitor.devices]]\nname = "{n}"\ntoken = "{n}-token-123"\nmax_silence_s = 300\n'
                          f'reminder_every_s = 3600\nsite = "{s}"\n' for n, s in DEVICES)
        token = f'api_token = "{api_token}"\n' if api_token else ""
        with open(self.config_path, "w") as f:
            f.write(f'data_dir = "{self.data_dir}"\n[web]\n{token}[alerts]\noutbox_dir = "{self.outbox}"\n'
                    f'[monitor]\nlisten = "{self.listen}"\npublic_url = "{public_url}"\nack_duration_s = 7200\n'
                    f'{devices}')
        self.config = load_config(self.config_path)
        self.clock = ManualClock()
        self.service = MonitorService(self.config, clock=self.clock)
        self.app = create_monitor_app(self.service)
        self.server = None

    def serve(self):
        """Answer on monitor.listen, as a running `phonehome monitor` does."""
        self.server = HttpServer(self.app, self.listen).start()

    def beat(self, name):
        body = json.dumps({"device": name, "sent_at": self.clock.now().wall, "seq": 1, "boot_id": "b00t-1",
                           "uptime_s": 3600.0}).encode()
        assert self.service.receive(body, "application/json", f"Bearer {name}-token-123").status == 200

    def tick(self, seconds):
        self.service.tick(self.clock.advance(seconds))

    def down(self, name="cabin"):
        """``name`` heard, then silent: DOWN; return its outage id."""
        self.beat(name)
        self.tick(300)
        return self.service.store.current_outage(name)

    def browser(self):
        return Browser(self.app.test_client())

    def logged_in(self):
        browser = self.browser()
        assert browser.post("/login", {"password": PASSWORD, "next": "/"}).status_code == 302
        return browser

    def link(self, name, outage_id, *, expires_at=None):
        """The path of the acknowledgement link an alert about ``name``'s outage carries."""
        expires_at = expires_at if expires_at is not None else self.clock.now().wall + LINK_VALID_S
        return f"/ack/{make_token(self.service._quiet.link_key, name, outage_id, expires_at)}"

    def sent(self):
        """Deliver what is due; return the outbox's messages as "subject\nbody", oldest first."""
        self.service.dispatcher.tick("outbox", self.clock.now())
        paths = sorted(self.outbox.glob("*.eml")) if self.outbox.exists() else []
        messages = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in paths]
        return [f"{m['Subject']}\n{m.get_content()}" for m in messages]

    def stop(self):
        if self.server is not None:
            self.server.stop()
        self.service.stop()


@pytest.fixture
def make_monitor(tmp_path, free_port):
    made = []

    def make(**options):
        monitor = QuietMonitor(tmp_path, free_port(), **options)
        made.append(monitor)
        stdin = sys.stdin
        sys.stdin = io.StringIO(PASSWORD + "\n")
        try:
            assert main(["monitor", "set-password", "--config", monitor.config_path, "--password-stdin"]) == 0
        finally:
            sys.stdin = stdin
        return monitor

    yield make
    for monitor in made:
        monitor.stop()


@pytest.fixture
def monitor(make_monitor):
    return make_monitor()


def text(response):
    return re.sub(r"\s+", " ", response.get_data(as_text=True)).replace("&#39;", "'")


# -- the acknowledgement link -----------------------------------------------------------------


def test_the_link_in_an_alert_opens_a_page_whose_button_acknowledges_without_a_login(monitor):
    outage = monitor.down()
    body = next(b for b in monitor.sent() if b.startswith("DOWN: cabin"))
    path = re.search(r"https://monitor\.example\.com(/ack/\S+)", body).group(1)
    assert path == monitor.link("cabin", outage, expires_at=T0.wall + 300 + LINK_VALID_S)
    browser = monitor.browser()                                # not logged in
    page = browser.get(path)
    assert page.status_code == 200
    assert "Acknowledge for 2 h 0 min" in text(page) and "down since" in text(page)
    assert monitor.service.device("cabin")["acknowledged"] is False   # a GET changes nothing (mail scanners)
    response = browser.post(path)                              # the page's form, with its CSRF token
    assert response.status_code == 302 and response.headers["Location"] == path
    page = text(browser.get(path))
    assert "Outage of cabin acknowledged: no reminders until " in page and "with a link" in page
    info = monitor.service.device("cabin")
    assert info["acknowledged"] and info["acknowledged_by"] == "link"
    assert info["acknowledged_until"] == T0.wall + 300 + 7200
    monitor.tick(3600)                                         # the reminder: recorded, not sent
    assert not any("REMINDER" in b for b in monitor.sent())


def test_the_links_post_needs_the_pages_csrf_token(monitor):
    path = monitor.link("cabin", monitor.down())
    browser = monitor.browser()
    browser.get(path)
    response = browser.client.post(path, data={})
    assert response.status_code == 400 and "CSRF" in text(response)
    assert monitor.service.device("cabin")["acknowledged"] is False


def test_the_ack_pages_are_public_on_purpose_and_nothing_else_is_new_there():
    assert {"quiet_pages.ack_link", "quiet_pages.ack_link_confirm"} <= PUBLIC
    assert {e for e in PUBLIC if e.startswith("quiet_")} == {"quiet_pages.ack_link", "quiet_pages.ack_link_confirm"}


@pytest.mark.parametrize("mangle", [
    lambda path: path[:-4],                                    # cut short
    lambda path: path.replace(".", ".A", 1),                   # a changed MAC
    lambda path: "/ack/not-a-token",
])
def test_a_forged_link_is_refused_with_a_page_that_says_what_to_do(monitor, mangle):
    path = mangle(monitor.link("cabin", monitor.down()))
    # the POST with a good CSRF token (from the login page): the link itself is what is refused
    for response in (monitor.browser().get(path), monitor.browser().post(path, page="/login")):
        assert response.status_code == 400
        page = text(response)
        assert "This acknowledgement link is not valid: it was changed or cut short on the way" in page
        assert "acknowledge on the device's page" in page and "<form" not in page.split("<main>")[1]
    assert monitor.service.device("cabin")["acknowledged"] is False


def test_a_link_made_with_another_key_is_forged(monitor):
    from appliance.monitor.acks import link_key

    outage = monitor.down()
    path = f"/ack/{make_token(link_key(b'someone else' * 3), 'cabin', outage, T0.wall + 86400)}"
    assert monitor.browser().get(path).status_code == 400


def test_an_expired_link_is_refused_with_a_page_that_says_so(monitor):
    path = monitor.link("cabin", monitor.down())
    monitor.clock.advance(LINK_VALID_S + 1)
    response = monitor.browser().get(path)
    assert response.status_code == 410
    assert "This acknowledgement link has expired (links in alerts work for 7 days)" in text(response)


def test_a_link_to_an_outage_that_is_over_acknowledges_nothing(monitor):
    path = monitor.link("cabin", monitor.down())
    browser = monitor.browser()
    browser.get(path)
    monitor.beat("cabin")                                      # back up
    page = text(browser.get(path))
    assert "This outage is over" in page and "Acknowledge for" not in page
    response = browser.client.post(path, data={"csrf_token": browser.token})
    assert response.status_code == 409
    assert "Nothing was acknowledged: that outage of cabin is over" in text(response)
    assert monitor.service.device("cabin")["acknowledged"] is False


def test_the_link_opens_under_the_public_urls_host_name(monitor):
    path = monitor.link("cabin", monitor.down())
    client = monitor.app.test_client()
    assert client.get(path, headers={"Host": "monitor.example.com"}).status_code == 200
    assert client.get(path, headers={"Host": "evil.example.net"}).status_code == 421


# -- the device page's button ----------------------------------------------------------------


def test_acknowledge_from_the_device_page(monitor):
    monitor.down()
    browser = monitor.logged_in()
    page = text(browser.get("/devices/cabin"))
    assert "Acknowledge this outage for 2 h 0 min" in page
    response = browser.post("/devices/cabin/ack", {}, page="/devices/cabin")
    assert response.status_code == 302 and response.headers["Location"] == "/devices/cabin"
    page = text(browser.get("/devices/cabin"))
    assert "Outage of cabin acknowledged: no reminders until" in page
    assert "Outage acknowledged</strong> (from the dashboard)" in page and "Acknowledge again for 2 h 0 min" in page
    assert "acknowledged</span>" in text(browser.get("/"))   # the list marks it


def test_acknowledging_a_device_that_is_up_is_409_saying_why(monitor):
    monitor.beat("cabin")
    browser = monitor.logged_in()
    response = browser.post("/devices/cabin/ack", {}, page="/devices/cabin")
    assert response.status_code == 409
    assert "nothing was acknowledged: cabin is not down, so there is no outage to acknowledge" in text(response)


def test_the_device_ack_needs_the_csrf_token(monitor):
    monitor.down()
    browser = monitor.logged_in()
    response = browser.client.post("/devices/cabin/ack", data={})
    assert response.status_code == 400 and "CSRF" in text(response)
    assert monitor.service.device("cabin")["acknowledged"] is False


def test_a_flapping_device_is_marked_on_the_list_and_its_page(monitor):
    monitor.beat("cabin")
    for _ in range(2):
        monitor.tick(300)                                      # DOWN
        monitor.beat("cabin")                                  # UP
    monitor.tick(300)                                          # the 5th change
    browser = monitor.logged_in()
    assert 'title="5 changes since ' in text(browser.get("/")) and ">flapping</span>" in text(browser.get("/"))
    page = text(browser.get("/devices/cabin"))
    assert "5 changes since" in page and "until it keeps one state for 1 h 0 min" in page


# -- a site's page -------------------------------------------------------------------------------


def test_pause_a_site_from_its_page_and_resume_it(monitor):
    browser = monitor.logged_in()
    page = text(browser.get("/"))
    assert '<a href="/sites/home">home</a>' in page                 # the list links the sites
    page = text(browser.get("/sites/home"))
    assert "2 devices, 0 down" in page and 'href="/devices/garage-pi"' in page
    response = browser.post("/sites/home/pause", {"duration": "1d"}, page="/sites/home")
    assert response.status_code == 302 and response.headers["Location"] == "/sites/home"
    page = text(browser.get("/sites/home"))
    assert "Alerts for site home and its devices paused for 1 day, until" in page
    assert monitor.service.device("garage-pi")["site_paused_until"] == T0.wall + 86400
    page = text(browser.get("/devices/home"))
    assert "Site home's alerts are paused until" in page
    assert '<a href="/sites/home">home <span class="state paused">paused</span></a>' in text(browser.get("/"))
    response = browser.post("/sites/home/resume", {}, page="/sites/home")
    assert response.status_code == 302
    assert "Alerts for site home are on again." in text(browser.get("/sites/home"))
    assert monitor.service.device("home")["alerts_paused"] is False


@pytest.mark.parametrize("form, status, words", [
    ({"duration": "2h"}, 400, "duration must be one of 1h, 1d, until-resumed, got '2h'"),
    ({}, 400, "duration is missing"),
])
def test_a_bad_site_pause_is_refused_naming_the_field(monitor, form, status, words):
    response = monitor.logged_in().post("/sites/home/pause", form, page="/sites/home")
    assert response.status_code == status and words in text(response)
    assert monitor.service.pauses() == []


def test_an_unknown_site_is_404(monitor):
    browser = monitor.logged_in()
    assert browser.get("/sites/cabin").status_code == 404            # a device without a site
    response = browser.post("/sites/nowhere/pause", {"duration": "1h"}, page="/")
    assert response.status_code == 404 and "no site named 'nowhere'" in text(response)


# -- the pauses API ----------------------------------------------------------------------------------


def test_scripts_pause_and_resume_with_the_api_token(monitor):
    client = monitor.app.test_client()
    response = client.post("/api/v1/pauses", json={"site": "home", "for_s": 7200}, headers=BEARER)
    assert response.status_code == 200, response.json
    assert response.json == {"ok": True, "pause": {"site": "home", "paused_at": T0.wall, "until": T0.wall + 7200}}
    response = client.post("/api/v1/pauses", json={"device": "cabin", "for_s": None}, headers=BEARER)
    assert response.json["pause"] == {"device": "cabin", "paused_at": T0.wall, "until": None}
    listed = client.get("/api/v1/pauses", headers=BEARER).json
    assert listed == {"ok": True, "pauses": [{"device": "cabin", "paused_at": T0.wall, "until": None},
                                             {"site": "home", "paused_at": T0.wall, "until": T0.wall + 7200}]}
    devices = {d["name"]: d for d in client.get("/api/v1/devices", headers=BEARER).json["devices"]}
    assert devices["home"]["alerts_paused"] and devices["home"]["site_paused"] and devices["home"]["site"] == "home"
    response = client.post("/api/v1/pauses/resume", json={"site": "home"}, headers=BEARER)
    assert response.json == {"ok": True, "site": "home", "resumed": True}
    response = client.post("/api/v1/pauses/resume", json={"site": "home"}, headers=BEARER)
    assert response.json["resumed"] is False
    assert [p.get("device") for p in monitor.service.pauses()] == ["cabin"]


@pytest.mark.parametrize("body, field, words", [
    ({"for_s": 60}, "device", "send exactly one of device (a device's name) or site"),
    ({"device": "home", "site": "home", "for_s": 60}, "site", "not both"),
    ({"device": "home"}, "for_s", "for_s is missing"),
    ({"device": "home", "for_s": 0}, "for_s", "for_s must be a positive number of seconds, or null"),
    ({"device": "home", "for_s": "1h"}, "for_s", "got '1h'"),
    ({"device": "home", "for_s": True}, "for_s", "got True"),
    ({"device": "home", "for_s": 40 * 86400}, "for_s", "at most 2678400 s (31 days)"),
    ({"device": 7, "for_s": 60}, "device", "device must be a device's name as a string, got 7"),
    ({"device": "", "for_s": 60}, "device", "got ''"),
    ({"device": "home", "for_s": 60, "until": 5}, "until", "unknown field 'until'"),
    ([], None, "the body must be a JSON object"),
    ("not json", None, "the body must be a JSON object"),
])
def test_a_bad_pause_is_400_naming_the_field_and_changes_nothing(monitor, body, field, words):
    client = monitor.app.test_client()
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    response = client.post("/api/v1/pauses", headers=BEARER, **kwargs)
    assert response.status_code == 400 and response.json["ok"] is False
    assert response.json.get("field") == field and words in response.json["error"]
    assert monitor.service.pauses() == []


@pytest.mark.parametrize("body, field", [({"device": "garden", "for_s": 60}, "device"),
                                         ({"site": "cabin", "for_s": 60}, "site")])
def test_pausing_an_unknown_device_or_site_is_404_naming_it(monitor, body, field):
    response = monitor.app.test_client().post("/api/v1/pauses", json=body, headers=BEARER)
    assert response.status_code == 404 and response.json["field"] == field
    assert f"there is no {field} named" in response.json["error"]


def test_the_pauses_api_refuses_a_wrong_token_and_a_stranger(monitor):
    client = monitor.app.test_client()
    body = {"device": "home", "for_s": 60}
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
        response = client.post("/api/v1/pauses", json=body, headers=headers)
        assert response.status_code == 401 and response.json["ok"] is False
    assert monitor.service.pauses() == []


def test_a_logged_in_browser_needs_its_csrf_token_to_pause_through_the_api(monitor):
    browser = monitor.logged_in()
    body = {"device": "home", "for_s": 60}
    response = browser.client.post("/api/v1/pauses", json=body)       # a session, no CSRF token: refused
    assert response.status_code == 400 and "CSRF" in response.json["error"]
    assert monitor.service.pauses() == []
    browser.get("/devices/home")                                        # a page gives it its token
    response = browser.client.post("/api/v1/pauses", json=body, headers={"X-CSRFToken": browser.token})
    assert response.status_code == 200 and response.json["ok"] is True
    assert browser.client.get("/api/v1/pauses").json["pauses"][0]["device"] == "home"   # reading needs none


# -- phonehome monitor pause / resume ------------------------------------------------------------


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_command_pauses_and_resumes_through_the_running_monitor(monitor, capsys):
    monitor.serve()
    code, out, err = run(capsys, "monitor", "pause", "home", "--for", "2h", "--config", monitor.config_path)
    assert code == 0, err
    assert out.startswith("alerts for home paused for 2 h 0 min, until ") and "outages are still recorded" in out
    assert monitor.service.device("home")["device_paused_until"] == T0.wall + 7200
    code, out, err = run(capsys, "monitor", "pause", "--site", "home", "--for", "until-resumed",
                         "--config", monitor.config_path)
    assert (code, out) == (0, "alerts for site home and its devices paused until resumed; outages are still "
                              "recorded\n")
    assert monitor.service.device("garage-pi")["site_paused"] is True
    code, out, err = run(capsys, "monitor", "resume", "--site", "home", "--config", monitor.config_path)
    assert (code, out) == (0, "alerts for site home and its devices resumed\n")
    code, out, err = run(capsys, "monitor", "resume", "cabin", "--config", monitor.config_path)
    assert (code, out) == (0, "alerts for cabin were not paused\n")
    code, out, err = run(capsys, "monitor", "pause", "garden", "--for", "30m", "--config", monitor.config_path)
    assert code == 1 and "refused: there is no device named 'garden' on this monitor" in err


def test_the_command_says_when_the_monitor_does_not_answer(monitor, capsys):
    code, out, err = run(capsys, "monitor", "pause", "home", "--for", "1d", "--config", monitor.config_path)
    assert code == 1
    assert f"the monitor does not answer at http://{monitor.listen}: is 'phonehome monitor'" in err


def test_the_command_needs_the_api_token(make_monitor, capsys):
    monitor = make_monitor(api_token="")
    monitor.serve()
    code, out, err = run(capsys, "monitor", "pause", "home", "--for", "1d", "--config", monitor.config_path)
    assert code == 2 and "[web] api_token is not set in" in err and "openssl rand -hex 16" in err
    assert monitor.service.pauses() == []


@pytest.mark.parametrize("argv, words", [
    (["pause", "home"], "say how long with --for"),
    (["pause", "--for", "1h"], "name a device or a site"),
    (["pause", "home", "--site", "home", "--for", "1h"], "not both"),
    (["pause", "home", "--for", "2 hours"], "--for must be a duration like 30m, 2h, 1d or 1h30m"),
    (["pause", "home", "--for", "0m"], "--for must be longer than 0 s"),
    (["pause", "home", "--for", "32d"], "at most 31 days"),
    (["resume", "home", "--for", "1h"], "--for goes with pause"),
    (["run", "--for", "1h"], "go with 'phonehome monitor pause' or 'resume'"),
])
def test_bad_command_lines_are_usage_errors(monitor, capsys, argv, words):
    code, out, err = run(capsys, "monitor", *argv, "--config", monitor.config_path)
    assert code == 2 and words in err
    assert monitor.service.pauses() == []


@pytest.mark.parametrize("text_, seconds", [("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400),
                                            ("90s", 90), ("1.5h", 5400), ("until-resumed", None)])
def test_durations_on_the_command_line(text_, seconds):
    from appliance.pausecli import parse_duration

    assert parse_duration(text_) == seconds


@pytest.mark.parametrize("listen, url", [("0.0.0.0:8081", "http://127.0.0.1:8081"),
                                         ("[::]:8081", "http://[::1]:8081"),
                                         ("192.0.2.7:80", "http://192.0.2.7:80"),
                                         ("[fd00::1]:8081", "http://[fd00::1]:8081")])
def test_the_command_reaches_a_monitor_listening_on_any_address_through_loopback(listen, url):
    from appliance.pausecli import base_url

    assert base_url(listen) == url

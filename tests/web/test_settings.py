"""The Settings pages: every part of the config has a form that validates through the schema, a rejected form
changes nothing and says what to fix next to the field, a saved one is in effect at once, and no secret is ever
sent back to the browser. Forms are sent as a browser sends them: every field of the page, with its CSRF token."""

import html
import os
import re
import socket
import stat
from html.parser import HTMLParser

import pytest

from appliance.config import load_config
from tests.web.conftest import PASSWORD

HC_URL = "http://127.0.0.1:9/ping/5b3c9e1e-hidden-check-uuid"
PH_URL = "http://127.0.0.1:9/api/v1/heartbeat"
PH_TOKEN = "phonehome-token-0f3c9a77"
PEER_TOKEN = "peer-token-9d8e7f6a5b"
API_TOKEN = "api-token-0123456789abcdef"
APPRISE_URL = "json://127.0.0.1:9/hook-secret-path"
SMTP_PASSWORD = "smtp-password-correct-horse"
SECRETS = (HC_URL, "5b3c9e1e-hidden-check-uuid", PH_TOKEN, PEER_TOKEN, API_TOKEN, APPRISE_URL, "hook-secret-path")

FULL = f"""
[device]
name = "home"
[heartbeat]
interval_s = 60
timeout_s = 5
[[heartbeat.targets]]
kind = "healthchecks"
url = "{HC_URL}"
[[heartbeat.targets]]
url = "{PH_URL}"
token = "{PH_TOKEN}"
[monitor]
listen = "127.0.0.1:{{port}}"
[[monitor.devices]]
name = "cabin"
token = "{PEER_TOKEN}"
[alerts]
urls = ["{APPRISE_URL}"]
[alerts.email]
smtp_host = "127.0.0.1"
smtp_port = 2525
sender = "phonehome@example.com"
to = ["me@example.com"]
"""
# The base config ends in its [web] table: text added right after it is in that table.
WEB_TOKEN = f'api_token = "{API_TOKEN}"\n'


class Forms(HTMLParser):
    """A page's forms as a browser sends them: {action: {name: value}}, "" for the forms posting to the page itself."""

    def __init__(self, page):
        super().__init__()
        self.forms, self._form, self._select, self._textarea = {}, None, None, None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._form = self.forms.setdefault(a.get("action") or "", {})
        elif self._form is None or not a.get("name") and tag != "option":
            return
        elif tag == "input" and (a.get("type") not in ("checkbox", "radio") or "checked" in a):
            self._form[a["name"]] = a.get("value") or ""
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select and ("selected" in a or self._select not in self._form):
            self._form[self._select] = a.get("value", "")
        elif tag == "textarea":
            self._textarea = a["name"]
            self._form[self._textarea] = ""

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._form[self._textarea] = self._form[self._textarea].removeprefix("\n")
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self._form[self._textarea] += data


def submit(browser, url, changes=None):
    """Load ``url``, change some fields (None: leave the field out, as an unticked box) and send its form."""
    fields = Forms(browser.get(url).get_data(as_text=True)).forms[""]
    for name, value in (changes or {}).items():
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    return browser.client.post(url, data=fields)


def field_error(page, name):
    """The error shown under field ``name`` (None when there is none)."""
    found = re.search(rf'<p class="field-error" id="e-{re.escape(name)}">([^<]*)</p>', page)
    return html.unescape(found.group(1)) if found else None


def text(response):
    return response.get_data(as_text=True)


def file_bytes(appliance):
    with open(appliance.config_path, "rb") as f:
        return f.read()


def assert_no_secret(page):
    for secret in SECRETS + (SMTP_PASSWORD,):
        assert secret not in page, f"{secret!r} was sent to the browser"


@pytest.fixture
def full(appliance_factory, free_port):
    """An appliance with a value in every part of the config, secrets included, claimed and logged in."""
    appliance = appliance_factory(FULL.format(port=free_port()))
    return appliance, appliance.claimed_browser()


# --- a rejected form changes nothing and says what to do next to the field ---------------------------------

BAD = [
    ("/settings/heartbeat", {"interval_s": "abc"}, "interval_s", "must be a number of seconds"),
    ("/settings/heartbeat", {"interval_s": ""}, "interval_s", "is empty; enter a number of seconds"),
    ("/settings/heartbeat", {"interval_s": "0"}, "interval_s", "must be at least 0.05 s, got 0"),
    ("/settings/heartbeat", {"interval_s": "60", "timeout_s": "90"}, "timeout_s",
     "must not be longer than heartbeat.interval_s (60 s)"),
    ("/settings/device", {"name": "my home"}, "name", "must be 1-63 letters, digits"),
    ("/settings/device", {"name": ""}, "name", "required when heartbeat.targets are set"),
    ("/settings/targets/new", {"kind": "url", "url": "ftp://example.com/x"}, "url",
     "must start with http:// or https://"),
    ("/settings/targets/new", {"kind": "url", "url": ""}, "url", "required, where to send the heartbeat"),
    ("/settings/targets/new", {"kind": "healthchecks", "url": HC_URL}, "url", "is listed twice with kind"),
    ("/settings/targets/new", {"kind": "phonehome", "url": "http://127.0.0.1:9/other", "token": ""}, "token",
     "required for kind 'phonehome'"),
    ("/settings/targets/new", {"kind": "ping", "url": "http://127.0.0.1:9/other"}, "kind",
     "must be one of 'phonehome', 'healthchecks'"),
    ("/settings/targets/0", {"kind": "phonehome", "url": PH_URL, "token": PH_TOKEN}, "url", "is listed twice"),
    ("/settings/time", {"timezone": "Mars/Olympus"}, "timezone", "is not a time zone in the IANA database"),
    ("/settings/time", {"servers": "127.0.0.1\na b"}, "servers", "entry 2: must be a host name or address"),
    ("/settings/time", {"servers": "127.0.0.1\n127.0.0.1"}, "servers", "lists a server twice"),
    ("/settings/time", {"check_every_s": "60", "until_synced_every_s": "120"}, "until_synced_every_s",
     "must not be longer than check_every_s"),
    ("/settings/time", {"max_offset_ms": "lots"}, "max_offset_ms", "must be a number of milliseconds"),
    ("/settings/display", {"i2c_address": "0x99"}, "i2c_address", "must be an I2C address from 0x08 to 0x77"),
    ("/settings/display", {"i2c_address": "3C"}, "i2c_address", "must be an address in hex with its 0x"),
    ("/settings/display", {"i2c_port": "one"}, "i2c_port", "must be a bus number (digits only)"),
    ("/settings/pins", {"button": "40"}, "button", "must be a BCM GPIO number from 2 to 27"),
    ("/settings/pins", {"green": "seventeen"}, "green", "must be a BCM GPIO number (digits only)"),
    ("/settings/pins", {"green": "17", "red": "27", "button": "17"}, "button", "GPIO 17 is used twice"),
    ("/settings/pins", {"green": "17", "red": "27", "button": "17"}, "green", "GPIO 17 is used twice"),
    ("/settings/pins", {"green": "17"}, "red", "set both green and red"),
    ("/settings/pins", {"rgb": "17, 27"}, "rgb", "must list three pins"),
    ("/settings/peers", {"listen": "everywhere"}, "listen", "must be HOST:PORT"),
    ("/settings/peers/devices/new", {"name": "cabin2", "token": "short"}, "token", "at least 8 characters"),
    ("/settings/peers/devices/new", {"name": "cabin", "token": "another-token-1234"}, "name", "is listed twice"),
    ("/settings/peers/devices/new", {"name": "barn", "token": PEER_TOKEN}, "token",
     "is the same as another device's token"),
    ("/settings/peers/devices/0", {"max_silence_s": "300", "reminder_every_s": "60"}, "reminder_every_s",
     "must be 0 (never) or at least max_silence_s"),
    ("/settings/peers/devices/0", {"magic": "cabin-magic"}, "magic", "has no effect without monitor.access_log"),
    ("/settings/peers", {"relay_pin": "24"}, "relay_device", "required when relay_pin is set"),
    ("/settings/peers", {"relay_device": "barn", "relay_pin": "24"}, "relay_device",
     "'barn' is not in [[monitor.devices]] (watched: 'cabin')"),
    ("/settings/peers", {"relay_device": "cabin", "relay_pin": "41"}, "relay_pin", "must be a BCM GPIO number"),
    ("/settings/peers", {"relay_device": "cabin", "relay_pin": "pin 24"}, "relay_pin",
     "must be a BCM GPIO number (digits only)"),
    ("/settings/peers", {"relay_device": "cabin", "relay_pin": "24", "power_cycle_off_s": "0"}, "power_cycle_off_s",
     "must be at least 0.05 s"),
    ("/settings/peers", {"relay_device": "cabin", "relay_pin": "24", "power_cycle_min_gap_s": "5"},
     "power_cycle_min_gap_s", "must be longer than power_cycle_off_s"),
    ("/settings/alerts", {"sender": "not-an-address"}, "sender", "must be an e-mail address like"),
    ("/settings/alerts", {"to": "me@example.com, nope"}, "to", "entry 2: must be an e-mail address"),
    ("/settings/alerts", {"to": ""}, "to", "must list at least one recipient"),
    ("/settings/alerts", {"smtp_host": ""}, "smtp_host", "required, the SMTP server's host name"),
    ("/settings/alerts", {"smtp_port": "70000"}, "smtp_port", "must be a port from 1 to 65535"),
    ("/settings/alerts", {"username": "me"}, "password", "required when username is set"),
    ("/settings/alerts", {"urls": "nonsense://x"}, "urls", "entry 1: is not an Apprise URL"),
    ("/settings/alerts", {"urls": "tgram://****"}, "urls", "stands for a hidden URL that is no longer"),
    ("/settings/web", {"api_token": "short"}, "api_token", "must be at least 16 characters"),
    ("/settings/web", {"listen": "nowhere"}, "listen", "must be HOST:PORT"),
    ("/settings/web", {"hostnames": "http://x.example"}, "hostnames", "entry 1: must be a host name"),
]


@pytest.mark.parametrize("url, changes, name, message", BAD, ids=[f"{u} {n} {m[:20]}" for u, _, n, m in BAD])
def test_a_bad_value_is_refused_next_to_its_field_and_nothing_is_written(full, url, changes, name, message):
    appliance, browser = full
    before = file_bytes(appliance)
    running = appliance.role.config
    response = submit(browser, url, changes)
    page = text(response)
    assert response.status_code == 400
    assert message in (field_error(page, name) or ""), page
    assert "Nothing was changed" in page
    assert file_bytes(appliance) == before
    assert appliance.role.config is running
    assert_no_secret(page)


def test_a_rejected_form_keeps_what_was_typed_except_secrets(full):
    _, browser = full
    response = submit(browser, "/settings/targets/new", {"kind": "url", "name": "my label", "url": "ftp://x/secret"})
    page = text(response)
    assert response.status_code == 400
    assert 'value="my label"' in page and '<option value="url" selected>' in page
    assert "ftp://x/secret" not in page


def test_a_rejected_form_shows_new_apprise_urls_hidden(full):
    _, browser = full
    response = submit(browser, "/settings/alerts", {"urls": "json://127.0.0.1:9/****\nntfy://brand-new-topic-5",
                                                    "sender": "nope"})
    page = text(response)
    assert response.status_code == 400 and field_error(page, "sender")
    assert "brand-new-topic-5" not in page
    assert "json://127.0.0.1:9/****\nntfy://****</textarea>" in page


def test_a_problem_of_another_page_says_where_to_fix_it(appliance_factory):
    appliance = appliance_factory()
    browser = appliance.claimed_browser()
    response = submit(browser, "/settings/targets/new", {"kind": "url", "url": "http://127.0.0.1:9/x"})
    page = html.unescape(text(response))
    assert response.status_code == 400
    assert "device.name: required when heartbeat.targets are set" in page
    assert "change it on the settings page 'Device'" in page
    assert not appliance.role.config.heartbeat.targets


# --- a saved change is in effect at once ---------------------------------------------------------------------

def test_a_new_interval_is_saved_and_the_running_agent_beats_at_it(appliance_factory, ping):
    appliance = appliance_factory(f"""
[device]
name = "home"
[heartbeat]
interval_s = 3600
timeout_s = 2
[[heartbeat.targets]]
kind = "url"
url = "{ping.url}"
""")
    browser = appliance.claimed_browser()
    assert ping.wait_for(1)  # the first beat goes out at start; the next would be an hour later
    response = submit(browser, "/settings/heartbeat", {"interval_s": "0.2", "timeout_s": "0.2"})
    assert response.status_code == 302 and response.headers["Location"] == "/settings/heartbeat"
    assert re.search(r"Saved\. In effect since \d\d:\d\d:\d\d\.", text(browser.get(response.headers["Location"])))
    saved = load_config(appliance.config_path)
    assert saved.heartbeat.interval_s == 0.2 and saved.heartbeat.timeout_s == 0.2
    assert appliance.role.config.heartbeat.interval_s == 0.2
    assert ping.wait_for(ping.beats + 3), "the running agent did not take up the new interval"
    assert stat.S_IMODE(os.stat(appliance.config_path).st_mode) == 0o600


@pytest.mark.parametrize("applied, message", [
    (None, "Saved; the agent has not applied it yet, it will within a few seconds."),
    ("failed", "Saved, but the agent could not apply all of it: the display is on fire"),
])
def test_the_page_says_when_the_agent_did_not_apply_the_change(appliance, monkeypatch, applied, message):
    from appliance.runtime import Applied

    browser = appliance.claimed_browser()
    outcome = None if applied is None else Applied(False, 0.0, "the display is on fire")
    monkeypatch.setattr(appliance.role, "reload_now", lambda **kwargs: outcome)
    response = submit(browser, "/settings/device", {"name": "home"})
    assert message in html.unescape(text(browser.get(response.headers["Location"])))
    assert load_config(appliance.config_path).device.name == "home"


def test_a_new_web_address_says_where_the_pages_went(appliance, free_port):
    browser = appliance.claimed_browser()
    port = free_port()
    response = submit(browser, "/settings/web", {"listen": f"127.0.0.1:{port}"})
    page = text(response)
    assert response.status_code == 200 and "In effect since" in page
    assert f'href="http://localhost:{port}/settings/web"' in page
    assert appliance.role.web is not None and appliance.role.config.web.listen == f"127.0.0.1:{port}"


def test_fields_a_page_does_not_have_are_ignored(full):
    appliance, browser = full
    data_dir = appliance.role.config.data_dir
    response = submit(browser, "/settings/device", {"name": "house", "data_dir": "/tmp/elsewhere",
                                                    "interval_s": "1"})
    assert response.status_code == 302
    config = load_config(appliance.config_path)
    assert (config.device.name, config.data_dir, config.heartbeat.interval_s) == ("house", data_dir, 60)


def test_every_page_needs_a_login(full):
    appliance, _ = full
    for url in ("/settings", "/settings/web", "/settings/targets/0"):
        assert appliance.browser().get(url).headers["Location"].startswith("/login")


# --- targets: add, edit, remove ------------------------------------------------------------------------------

def test_add_edit_and_remove_a_target(appliance_factory):
    appliance = appliance_factory('[device]\nname = "home"\n')
    browser = appliance.claimed_browser()
    added = submit(browser, "/settings/targets/new", {"kind": "phonehome", "url": PH_URL, "token": PH_TOKEN,
                                                      "name": "our monitor"})
    assert added.status_code == 302 and added.headers["Location"] == "/settings/targets"
    (target,) = load_config(appliance.config_path).heartbeat.targets
    assert (target.kind, target.url, target.token, target.name) == ("phonehome", PH_URL, PH_TOKEN, "our monitor")
    listing = text(browser.get("/settings/targets"))
    assert "our monitor" in listing and "In effect since" in listing
    assert PH_TOKEN not in listing

    renamed = submit(browser, "/settings/targets/0", {"name": "renamed"})  # URL and token left empty: kept
    assert renamed.status_code == 302
    (target,) = appliance.role.config.heartbeat.targets
    assert (target.url, target.token, target.name) == (PH_URL, PH_TOKEN, "renamed")

    switched = submit(browser, "/settings/targets/0", {"kind": "healthchecks", "url": HC_URL})
    assert switched.status_code == 302, text(switched)
    (target,) = appliance.role.config.heartbeat.targets
    assert (target.kind, target.url, target.token) == ("healthchecks", HC_URL, "")  # that kind has no token

    edit = text(browser.get("/settings/targets/0"))
    assert 'placeholder="http://127.0.0.1:9/****"' in edit and "leave empty to keep the current one" in edit
    assert_no_secret(edit)

    removed = browser.post("/settings/targets/0/remove", page="/settings/targets")
    assert removed.status_code == 302
    assert load_config(appliance.config_path).heartbeat.targets == ()
    assert appliance.role.sender is None


@pytest.mark.parametrize("method, url", [("get", "/settings/targets/99"), ("post", "/settings/targets/99"),
                                         ("post", "/settings/targets/2/remove"),
                                         ("get", "/settings/peers/devices/5")])
def test_an_entry_that_does_not_exist_is_a_404_that_says_so(full, method, url):
    appliance, browser = full
    before = file_bytes(appliance)
    response = browser.get(url) if method == "get" else browser.post(url, {}, page="/settings")
    assert response.status_code == 404
    assert re.search(r"There is no (heartbeat target|watched device) number \d+", text(response))
    assert file_bytes(appliance) == before


# --- secrets never go back to the browser ---------------------------------------------------------------------

PAGES = ("/settings", "/settings/device", "/settings/heartbeat", "/settings/targets", "/settings/targets/0",
         "/settings/targets/1", "/settings/targets/new", "/settings/time", "/settings/display", "/settings/pins",
         "/settings/peers", "/settings/peers/devices/0", "/settings/peers/devices/new", "/settings/alerts",
         "/settings/web")


def test_no_page_shows_a_secret_and_each_shows_its_mask(appliance_factory, free_port):
    appliance = appliance_factory(WEB_TOKEN + FULL.format(port=free_port()))
    browser = appliance.claimed_browser()
    pages = {}
    for url in PAGES:
        response = browser.get(url)
        assert response.status_code == 200, url
        pages[url] = text(response)
        assert_no_secret(pages[url])
    assert 'placeholder="****cdef"' in pages["/settings/web"]
    assert 'placeholder="****6a5b"' in pages["/settings/peers/devices/0"]
    assert 'placeholder="****9a77"' in pages["/settings/targets/1"]
    assert "json://127.0.0.1:9/****" in pages["/settings/alerts"]


def test_an_empty_secret_keeps_the_current_one_and_the_box_removes_it(appliance_factory):
    appliance = appliance_factory(WEB_TOKEN)
    browser = appliance.claimed_browser()
    kept = submit(browser, "/settings/web", {"hostnames": "phonehome.example.com", "api_token": ""})
    assert kept.status_code == 302
    assert appliance.role.config.web == load_config(appliance.config_path).web
    assert appliance.role.config.web.api_token == API_TOKEN
    assert appliance.role.config.web.hostnames == ("phonehome.example.com",)
    submit(browser, "/settings/web", {"api_token_clear": "1"})
    assert appliance.role.config.web.api_token == ""
    replaced = submit(browser, "/settings/web", {"api_token": "a-brand-new-token-0123"})
    assert replaced.status_code == 302 and appliance.role.config.web.api_token == "a-brand-new-token-0123"


def test_hidden_apprise_lines_keep_their_urls(full):
    appliance, browser = full
    page = text(browser.get("/settings/alerts"))
    assert "json://127.0.0.1:9/****" in page
    added = submit(browser, "/settings/alerts", {"urls": "json://127.0.0.1:9/****\nntfy://kitchen-topic-77"})
    assert added.status_code == 302, text(added)
    assert appliance.role.config.alerts.urls == (APPRISE_URL, "ntfy://kitchen-topic-77")
    assert "ntfy://kitchen-topic-77" not in text(browser.get("/settings/alerts"))  # a topic is its secret
    submit(browser, "/settings/alerts", {"urls": "ntfy://****"})
    assert appliance.role.config.alerts.urls == ("ntfy://kitchen-topic-77",)


def test_the_smtp_password_goes_to_its_own_file_and_never_back(full):
    appliance, browser = full
    response = submit(browser, "/settings/alerts", {"username": "alerts@example.com", "password": SMTP_PASSWORD})
    assert response.status_code == 302, text(response)
    email = load_config(appliance.config_path).alerts.email
    assert email.password_file == os.path.join(appliance.data_dir, "smtp-password")
    with open(email.password_file) as f:
        assert f.read() == SMTP_PASSWORD + "\n"
    assert stat.S_IMODE(os.stat(email.password_file).st_mode) == 0o600
    with open(appliance.config_path) as f:
        assert SMTP_PASSWORD not in f.read()
    page = text(browser.get("/settings/alerts"))
    assert_no_secret(page)
    assert "(a password is set)" in page
    kept = submit(browser, "/settings/alerts", {"smtp_port": "465", "security": "ssl"})
    assert kept.status_code == 302
    assert appliance.role.config.alerts.email.password_file == email.password_file


def test_clearing_every_e_mail_field_turns_e_mail_off(full):
    appliance, browser = full
    response = submit(browser, "/settings/alerts", {"smtp_host": "", "sender": "", "to": "", "username": ""})
    assert response.status_code == 302
    assert appliance.role.config.alerts.email is None
    assert 'value="587"' in text(browser.get("/settings/alerts"))  # the schema's defaults, ready to fill in


# --- the other sections ---------------------------------------------------------------------------------------

def test_the_time_zone_is_picked_from_a_list_that_works_without_javascript(full):
    appliance, browser = full
    page = text(browser.get("/settings/time"))
    assert 'list="zones"' in page and '<datalist id="zones">' in page
    assert '<option value="Europe/Berlin">' in page
    response = submit(browser, "/settings/time", {"timezone": "Europe/Berlin", "servers": "127.0.0.1:11123\n",
                                                  "max_offset_ms": "250"})
    assert response.status_code == 302
    time = appliance.role.config.time
    assert (time.timezone, time.servers, time.max_offset_ms) == ("Europe/Berlin", ("127.0.0.1:11123",), 250)


def test_display_addresses_are_written_and_shown_in_hex(full):
    appliance, browser = full
    response = submit(browser, "/settings/display", {"driver": "emulator", "i2c_address": "0x3D", "rotate": "180",
                                                     "emulator_file": "display.png"})
    assert response.status_code == 302
    display = load_config(appliance.config_path).display
    assert (display.driver, display.i2c_address, display.rotate) == ("emulator", 0x3D, 180)
    assert display.emulator_file == os.path.join(os.path.dirname(appliance.config_path), "display.png")
    page = text(browser.get("/settings/display"))
    assert 'value="0x3D"' in page and '<option value="180" selected>' in page


def test_pins_left_empty_are_not_used(full):
    appliance, browser = full
    submit(browser, "/settings/pins", {"green": "17", "red": "27", "button": "26", "active_high": None})
    leds, button = appliance.role.config.leds, appliance.role.config.button
    assert (leds.green, leds.red, leds.amber, leds.active_high, button.pin) == (17, 27, None, False, 26)
    submit(browser, "/settings/pins", {"green": "", "red": "", "rgb": "5, 6, 13", "button": ""})
    leds, button = appliance.role.config.leds, appliance.role.config.button
    assert (leds.green, leds.red, leds.rgb, button.pin) == (None, None, (5, 6, 13), None)


def test_the_peer_watchdog_on_off_and_its_devices(appliance_factory, free_port):
    appliance = appliance_factory()
    browser = appliance.claimed_browser()
    assert browser.get("/settings/peers/devices/new").status_code == 404  # off: nothing to add to
    listen = f"127.0.0.1:{free_port()}"
    assert submit(browser, "/settings/peers", {"enabled": "1", "listen": listen}).status_code == 302
    assert appliance.role.config.monitor.listen == listen and appliance.role.monitor is not None
    added = submit(browser, "/settings/peers/devices/new", {"name": "cabin", "token": PEER_TOKEN,
                                                            "max_silence_s": "600", "reminder_every_s": "0"})
    assert added.status_code == 302 and added.headers["Location"] == "/settings/peers"
    edited = submit(browser, "/settings/peers/devices/0", {"max_silence_s": "900"})
    assert edited.status_code == 302
    (device,) = appliance.role.config.monitor.devices
    assert (device.name, device.token, device.max_silence_s, device.reminder_every_s) == ("cabin", PEER_TOKEN,
                                                                                          900, 0)
    page = text(browser.get("/settings/peers"))
    assert "cabin" in page and PEER_TOKEN not in page
    assert browser.post("/settings/peers/devices/0/remove", page="/settings/peers").status_code == 302
    assert appliance.role.config.monitor.devices == ()
    assert submit(browser, "/settings/peers", {"enabled": None}).status_code == 302
    assert appliance.role.config.monitor is None and load_config(appliance.config_path).monitor is None


def test_the_peer_watchdogs_relay_is_set_on_its_page(full):
    appliance, browser = full
    response = submit(browser, "/settings/peers", {"relay_device": "cabin", "relay_pin": "24",
                                                   "relay_active_high": None, "power_cycle_after_s": "900"})
    assert response.status_code == 302, text(response)
    peer = load_config(appliance.config_path).peer
    assert (peer.device, peer.relay_pin, peer.relay_active_high, peer.power_cycle_after_s) == ("cabin", 24, False,
                                                                                               900)
    assert appliance.role.config.peer == peer
    page = text(browser.get("/settings/peers"))
    assert 'name="relay_pin" type="text" value="24"' in page
    assert "power-cycles cabin through GPIO 24" in html.unescape(text(browser.get("/settings")))
    submit(browser, "/settings/peers", {"relay_device": "", "relay_pin": ""})
    assert appliance.role.config.peer.relay_pin is None
    submit(browser, "/settings/peers", {"relay_device": "cabin", "relay_pin": "24"})
    submit(browser, "/settings/peers", {"enabled": None})  # no watchdog: no relay either
    assert load_config(appliance.config_path).peer.relay_pin is None


def test_a_relay_pin_the_leds_use_is_refused_on_both_pages(full):
    appliance, browser = full
    assert submit(browser, "/settings/peers", {"relay_device": "cabin", "relay_pin": "24"}).status_code == 302
    response = submit(browser, "/settings/pins", {"green": "24", "red": "27"})
    page = html.unescape(text(response))
    assert response.status_code == 400
    assert "peer.relay_pin: GPIO 24 is also used by the LEDs" in page
    assert "change it on the settings page 'Peer watchdog'" in page


def test_a_watchdog_that_cannot_listen_says_so(appliance):
    browser = appliance.claimed_browser()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = "127.0.0.1:%d" % taken.getsockname()[1]
        response = submit(browser, "/settings/peers", {"enabled": "1", "listen": listen})
        page = html.unescape(text(browser.get(response.headers["Location"])))
    assert f"The peer watchdog is not running: it could not start on {listen}" in page
    assert appliance.role.config.monitor.listen == listen


def test_the_overview_sums_up_every_section_and_shows_data_dir_read_only(full):
    appliance, browser = full
    page = html.unescape(text(browser.get("/settings")))
    for summary in ("named 'home'", "every 60 s", "2 target(s): 127.0.0.1 (healthchecks), 127.0.0.1 (phonehome)",
                    "no NTP servers", "no display", "none used", "watching cabin", "e-mail to me@example.com",
                    "API token not set", appliance.data_dir):
        assert summary in page
    assert 'name="data_dir"' not in page


def test_an_entry_changed_in_another_window_is_not_edited_or_removed_by_its_old_number(appliance_factory):
    appliance = appliance_factory('[device]\nname = "home"\n' + "".join(
        f'[[heartbeat.targets]]\nkind = "url"\nurl = "http://127.0.0.1:9/{name}"\nname = "{name}"\n'
        for name in ("a", "b", "c")))
    first, second = appliance.claimed_browser(), appliance.browser()
    second.post("/login", {"password": PASSWORD})
    old_page = first.get("/settings/targets").get_data(as_text=True)
    old_fields = dict(first._hidden_fields(old_page, "/settings/targets/1/remove", own_page=False))
    assert second.post("/settings/targets/0/remove", page="/settings/targets").status_code == 302  # 'a' goes
    before = open(appliance.config_path, "rb").read()
    stale = first.client.post("/settings/targets/1/remove", data=old_fields)   # meant 'b'; number 1 is now 'c'
    assert stale.status_code == 302 and open(appliance.config_path, "rb").read() == before
    assert "Nothing was removed: this list changed in another window" in text(first.get("/settings/targets"))
    edit = first.client.post("/settings/targets/1", data=dict(old_fields, name="renamed", kind="url"))
    assert edit.status_code == 409
    assert [t.name for t in load_config(appliance.config_path).heartbeat.targets] == ["b", "c"]

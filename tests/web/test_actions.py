"""The Actions page against a real appliance: heartbeats to a real HTTP server on 127.0.0.1, test alerts to a real
SMTP sink and an outbox, the config file downloaded, restored and reset on disk."""

import io
import os
import stat

import pytest
from markupsafe import escape

from appliance.auth import Passwords
from appliance.runtime import Control
from web import actions

TOKEN = "tok-0123456789-secret"
API_TOKEN = "api-0123456789abcdef-secret"


@pytest.fixture
def secret_appliance(appliance_factory, free_port):
    """A configured appliance whose config holds secrets: a target token and the API token."""
    # The text goes on right after the base config's [web] table: the first line is web.api_token.
    return appliance_factory(f"""api_token = "{API_TOKEN}"
[device]
name = "home"
[[heartbeat.targets]]
url = "http://127.0.0.1:{free_port()}/api/v1/heartbeat"
token = "{TOKEN}"
""")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def text(response):
    return response.get_data(as_text=True)


def test_the_page_offers_every_action_without_inline_script_or_style(appliance):
    assert appliance.browser().get("/actions").headers["Location"].endswith("/setup")
    page = text(appliance.claimed_browser().get("/actions"))
    for action in ("/actions/heartbeat", "/actions/time", "/actions/alert", "/actions/config.toml",
                   "/actions/restore", "/actions/restart", "/actions/reboot", "/actions/factory-reset"):
        assert f'action="{action}"' in page
    assert "<script" not in page and 'style="' not in page
    assert 'enctype="multipart/form-data"' in page


# --- heartbeat ---

def test_a_test_heartbeat_shows_each_targets_answer_without_its_secret(appliance_factory, ping):
    appliance = appliance_factory(f"""
[device]
name = "home"
[heartbeat]
timeout_s = 2
[[heartbeat.targets]]
kind = "healthchecks"
name = "pinger"
url = "{ping.base}/ok/uuid-secret-1"
[[heartbeat.targets]]
kind = "healthchecks"
name = "broken"
url = "{ping.base}/fail/uuid-secret-2"
""")
    response = appliance.claimed_browser().post("/actions/heartbeat", page="/actions")
    page = text(response)
    assert response.status_code == 200
    assert "not every target answered" in page
    pinger, broken = page.split("pinger", 1)[1].split("broken", 1)
    assert ">ok<" in pinger and "HTTP 200 in " in pinger
    assert ">failed<" in broken and "HTTP 500 from 127.0.0.1: database on fire" in broken
    assert f"{ping.base}/****" in page and "uuid-secret" not in page


def test_a_test_heartbeat_without_targets_says_where_to_set_them(appliance):
    page = text(appliance.claimed_browser().post("/actions/heartbeat", page="/actions"))
    assert "Settings → Targets" in page and "No heartbeat is sent yet" in page


# --- clock ---

def test_check_the_time_now_shows_the_verdict_and_its_reason(appliance):
    response = appliance.claimed_browser().post("/actions/time", page="/actions")
    status = appliance.role.time.status
    page = text(response)
    assert response.status_code == 200 and status.checked_at is not None
    assert f'class="state {status.verdict}">{status.verdict}<' in page
    assert str(escape(status.reason)) in page
    assert "No time servers are set" in page


def test_without_a_clock_check_the_page_says_so(appliance):
    browser = appliance.claimed_browser()
    appliance.role.time.stop()
    appliance.role.time = None  # as when the checker could not start
    page = text(browser.post("/actions/time", page="/actions"))
    assert "clock check is not running" in page


# --- alerts ---

ALERTS = """
[device]
name = "home"
[alerts]
outbox_dir = "{outbox}"
[alerts.email]
smtp_host = "127.0.0.1"
smtp_port = {port}
security = "none"
sender = "phonehome@example.com"
to = ["me@example.com"]
timeout_s = 5
"""


def test_a_test_alert_goes_through_every_channel(appliance_factory, smtp_sink, tmp_path):
    outbox = tmp_path / "outbox"
    appliance = appliance_factory(ALERTS.format(outbox=outbox, port=smtp_sink.port))
    response = appliance.claimed_browser().post("/actions/alert", page="/actions")
    page = text(response)
    assert response.status_code == 200 and "every channel took it" in page
    assert page.count(">delivered<") == 2
    [mail] = smtp_sink.messages
    assert mail["Subject"] == "phonehome test alert from home" and mail["To"] == "me@example.com"
    assert "Nothing is wrong" in mail.get_body().get_content()
    [eml] = os.listdir(outbox)
    assert eml.endswith("-home-test.eml")
    assert "watches no other device" in page


def test_a_refused_test_alert_says_why_per_channel(appliance_factory, smtp_server, tmp_path):
    _, port = smtp_server(refuse={"me@example.com": "550 5.1.1 no such mailbox"})
    appliance = appliance_factory(ALERTS.format(outbox=tmp_path / "outbox", port=port))
    page = text(appliance.claimed_browser().post("/actions/alert", page="/actions"))
    assert "not every channel took it" in page
    assert page.count(">delivered<") == 1 and page.count(">failed<") == 1
    assert "no such mailbox" in page and "will retry" not in page


def test_a_test_alert_without_channels_points_to_the_settings(appliance):
    page = text(appliance.claimed_browser().post("/actions/alert", page="/actions"))
    assert "No alert channel is configured" in page and "Settings → Alerts" in page


# --- restart and reboot ---

def test_restart_asks_the_daemon_to_stop_and_start_again(appliance, monkeypatch):
    monkeypatch.setattr(actions, "RESTART_DELAY_S", 0.0)
    browser = appliance.claimed_browser()
    appliance.role.control = control = Control()  # as runtime.serve sets it
    response = browser.post("/actions/restart", page="/actions")
    assert response.status_code == 200
    assert '<meta http-equiv="refresh" content="5;url=/">' in text(response)
    assert control.stopping.wait(5) and control.restart_requested


def test_restart_without_the_daemon_says_so(appliance):
    page = text(appliance.claimed_browser().post("/actions/restart", page="/actions"))
    assert "cannot restart itself" in page


def test_reboot_needs_the_box_ticked(appliance):
    response = appliance.claimed_browser().post("/actions/reboot", page="/actions")
    assert response.status_code == 400 and "tick the box" in text(response)
    assert "tick this box to confirm" in text(response)
    assert appliance.reboots == []


def test_reboot_reboots(appliance):
    response = appliance.claimed_browser().post("/actions/reboot", {"confirm_reboot": "1"}, page="/actions")
    assert response.status_code == 200 and "rebooting" in text(response)
    assert appliance.reboots == [True]


def test_a_failed_reboot_says_why(appliance):
    appliance.app.extensions["phonehome.reboot"] = lambda: "systemctl reboot failed: Access denied"
    page = text(appliance.claimed_browser().post("/actions/reboot", {"confirm_reboot": "1"}, page="/actions"))
    assert "The reboot failed: systemctl reboot failed: Access denied" in page


# --- download and restore ---

def test_the_download_hides_the_secrets_unless_asked(secret_appliance):
    browser = secret_appliance.claimed_browser()
    response = browser.get("/actions/config.toml")
    body = response.get_data()
    assert response.headers["Content-Disposition"] == "attachment; filename=phonehome-home.toml"
    assert response.headers["Cache-Control"] == "no-store"
    assert TOKEN.encode() not in body and API_TOKEN.encode() not in body and b"****" in body
    full = browser.get("/actions/config.toml?secrets=1")
    assert full.get_data() == read(secret_appliance.config_path)
    for value in ("0", "no", ""):
        assert TOKEN.encode() not in browser.get(f"/actions/config.toml?secrets={value}").get_data()


def upload(browser, data, name="phonehome.toml"):
    return browser.post("/actions/restore", {"config_file": (io.BytesIO(data), name)}, page="/actions")


def test_a_masked_download_is_refused_naming_the_hidden_keys_and_the_full_one_restores(secret_appliance):
    browser = secret_appliance.claimed_browser()
    before = read(secret_appliance.config_path)
    refused = upload(browser, browser.get("/actions/config.toml").get_data())
    page = text(refused)
    assert refused.status_code == 400 and actions.MASKED_HINT in page
    assert "heartbeat.targets[0].url" in page and "heartbeat.targets[0].token" in page and "web.api_token" in page
    assert read(secret_appliance.config_path) == before
    accepted = upload(browser, browser.get("/actions/config.toml?secrets=1").get_data())
    assert accepted.status_code == 200 and "in effect since" in text(accepted)


@pytest.mark.parametrize("data, message", [
    (b"\xff\xfe[device]", "not UTF-8 text"),
    (b"[device\nname = 'x'", "not valid TOML"),
    (b"[heartbeat]\nintervl_s = 5\n", "heartbeat.intervl_s: unknown key (did you mean &#39;interval_s&#39;?)"),
    (b"[[heartbeat.targets]]\nurl = 'http://127.0.0.1:9/x'\nkind = 'url'\n",
     "device.name: required when heartbeat.targets are set"),
])
def test_a_bad_config_file_is_refused_and_nothing_is_written(secret_appliance, data, message):
    browser = secret_appliance.claimed_browser()
    before = read(secret_appliance.config_path)
    response = upload(browser, data)
    assert response.status_code == 400
    assert message in text(response) and "Nothing was written" in text(response)
    assert read(secret_appliance.config_path) == before
    assert secret_appliance.role.config.device.name == "home"


def test_a_restore_may_not_move_data_dir_where_the_password_lives(appliance, tmp_path):
    browser = appliance.claimed_browser()
    before = read(appliance.config_path)
    response = upload(browser, f'data_dir = "{tmp_path / "elsewhere"}"\n[web]\nlisten = ""\n'.encode())
    assert response.status_code == 400 and "a restore cannot move it" in text(response)
    assert read(appliance.config_path) == before and appliance.role.config.data_dir == appliance.data_dir
    assert browser.get("/actions").status_code == 200                    # still claimed, still logged in


def test_restore_without_a_file_says_to_choose_one(appliance):
    browser = appliance.claimed_browser()
    response = browser.post("/actions/restore", {}, page="/actions")
    assert response.status_code == 400 and "choose a config file" in text(response)


def test_a_good_config_file_is_written_as_is_and_takes_effect(appliance, free_port):
    browser = appliance.claimed_browser()
    new = (f'# my settings\ndata_dir = "{appliance.data_dir}"\n[device]\nname = "garden"\n[time]\nservers = []\n'
           f'[web]\nlisten = ""\n[[heartbeat.targets]]\nkind = "url"\nurl = "http://127.0.0.1:{free_port()}/x?"\n')
    response = upload(browser, new.encode())
    assert response.status_code == 200 and "in effect since" in text(response)
    assert read(appliance.config_path) == new.encode()
    assert stat.S_IMODE(os.stat(appliance.config_path).st_mode) == 0o600
    assert appliance.role.config.device.name == "garden" and appliance.role.sender is not None


def test_a_restore_without_the_csrf_token_is_refused(appliance):
    browser = appliance.claimed_browser()
    before = read(appliance.config_path)
    response = browser.client.post("/actions/restore", data={"config_file": (io.BytesIO(b"[device]\n"), "x.toml")})
    assert response.status_code == 400 and "CSRF" in text(response)
    assert read(appliance.config_path) == before


# --- factory reset ---

@pytest.mark.parametrize("typed", ["", "reset please", "garden"])
def test_factory_reset_needs_reset_typed(secret_appliance, typed):
    browser = secret_appliance.claimed_browser()
    before = read(secret_appliance.config_path)
    response = browser.post("/actions/factory-reset", {"confirm": typed}, page="/actions")
    assert response.status_code == 400 and "type RESET" in text(response)
    assert read(secret_appliance.config_path) == before and Passwords(secret_appliance.data_dir).is_set


@pytest.mark.parametrize("typed", ["RESET", "reset", "home"])
def test_factory_reset_keeps_a_backup_logs_out_and_leads_to_setup(secret_appliance, typed):
    browser = secret_appliance.claimed_browser()
    before = read(secret_appliance.config_path)
    response = browser.post("/actions/factory-reset", {"confirm": typed}, page="/actions")
    assert response.status_code == 302 and response.headers["Location"].endswith("/setup")
    [backup] = [n for n in os.listdir(secret_appliance.dir) if n.startswith("phonehome.toml.bak-")]
    assert read(secret_appliance.dir / backup) == before
    assert TOKEN.encode() not in read(secret_appliance.config_path)
    assert not Passwords(secret_appliance.data_dir).is_set
    setup = text(browser.get("/setup"))
    assert "Factory reset done" in setup and backup in setup
    assert browser.get("/actions").headers["Location"].endswith("/setup")

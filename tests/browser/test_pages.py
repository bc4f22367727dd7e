"""The appliance's web page in a real browser: claim, log in, a CSRF-less POST refused."""

import time

import pytest

from .conftest import PASSWORD, claim, screenshot

pytestmark = pytest.mark.browser


def test_claim_with_the_setup_code_then_log_out_and_in(page, appliance):
    page.goto(appliance.url + "/")
    screenshot(page, "setup")
    claim(page, appliance)
    assert "/setup" not in page.url
    page.click("text=Log out")
    page.wait_for_load_state()
    assert "/login" in page.url
    screenshot(page, "login")
    page.fill("#f-password", "not the password")
    page.click("main button[type=submit]")
    assert page.locator("#e-password").inner_text().startswith("wrong password")
    page.fill("#f-password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    assert "/login" not in page.url


def test_a_post_without_the_csrf_token_is_refused_even_with_a_session(page, appliance):
    claim(page, appliance)
    before = open(appliance.config_path, "rb").read()
    response = page.request.post(appliance.url + "/password",
                                 form={"current": PASSWORD, "password": "hijacked pass", "password_again":
                                       "hijacked pass"})
    assert response.status == 400 and "CSRF" in response.text()
    assert open(appliance.config_path, "rb").read() == before
    page.goto(appliance.url + "/password")
    assert "/login" not in page.url                    # the password did not change: the session still holds


def test_a_new_heartbeat_interval_saved_on_the_page_is_used_by_the_running_agent(page, appliance, ping):
    claim(page, appliance)
    page.goto(appliance.url + "/settings/heartbeat")
    screenshot(page, "settings-heartbeat")
    page.fill("#f-interval_s", "abc")
    page.click("main button[type=submit]")
    assert "must be a number" in page.locator("#e-interval_s").inner_text()   # the error sits by the field
    page.fill("#f-interval_s", "0.2")
    page.fill("#f-timeout_s", "0.2")
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    assert "In effect since" in page.content()
    deadline = time.monotonic() + 10
    while ping.beats_within(1.0) < 3 and time.monotonic() < deadline:       # 30 s apart before the change
        time.sleep(0.1)
    assert ping.beats_within(1.0) >= 3
    assert "interval_s = 0.2" in open(appliance.config_path).read()


def test_the_dashboard_shows_the_oled_mirror_and_draws_the_charts(page, appliance):
    claim(page, appliance)
    page.goto(appliance.url + "/")
    page.wait_for_function("document.getElementById('oled').complete && "
                           "document.getElementById('oled').naturalWidth > 0")
    assert page.evaluate("document.getElementById('oled').naturalWidth") == 128
    page.wait_for_selector("#rtt-chart canvas")
    page.wait_for_selector("#offset-chart canvas")
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.reload()
    page.wait_for_selector("#rtt-chart canvas")
    assert errors == []                                 # nothing refused by the Content-Security-Policy
    screenshot(page, "dashboard")
    for path, name in (("/settings", "settings"), ("/settings/targets", "settings-targets"),
                       ("/settings/time", "settings-time"), ("/settings/system", "settings-system"),
                       ("/wifi", "wifi"), ("/actions", "actions"), ("/password", "password")):
        page.goto(appliance.url + path)
        screenshot(page, name)

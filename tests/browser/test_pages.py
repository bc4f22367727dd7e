"""The appliance's web page in a real browser: claim, log in, a CSRF-less POST refused."""

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
    page.click("button[type=submit]")
    assert page.locator("#e-password").inner_text().startswith("wrong password")
    page.fill("#f-password", PASSWORD)
    page.click("button[type=submit]")
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

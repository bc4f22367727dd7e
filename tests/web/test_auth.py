"""Claiming, logging in and out, changing and recovering the password; the rate limit; the Host check; headers."""

import pytest

from appliance.auth import Passwords
from appliance.setup import load_setup, reopen
from web.ratelimit import FailureLimiter
from web.security import host_allowed

from .conftest import PASSWORD


def test_until_claimed_every_page_leads_to_setup(appliance):
    browser = appliance.browser()
    for url in ("/password", "/login"):
        response = browser.get(url)
        assert response.status_code == 302 and response.headers["Location"].endswith("/setup")
    assert b"setup code" in browser.get("/setup").data


@pytest.mark.parametrize("form, field, message", [
    ({"code": "", "password": PASSWORD, "password_again": PASSWORD}, "code", "enter the setup code"),
    ({"code": "WRONG-CODE", "password": PASSWORD, "password_again": PASSWORD}, "code", "not the setup code"),
    ({"code": None, "password": "short", "password_again": "short"}, "password", "at least 8 characters"),
    ({"code": None, "password": PASSWORD, "password_again": PASSWORD + "x"}, "password_again", "differ"),
])
def test_a_bad_claim_says_what_to_fix_next_to_the_field_and_changes_nothing(appliance, form, field, message):
    browser = appliance.browser()
    code = appliance.setup_code
    form = {k: (code if v is None else v) for k, v in form.items()}
    response = browser.post("/setup", form)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f'id="e-{field}"' in page and message in page
    assert not Passwords(appliance.data_dir).is_set and not load_setup(appliance.data_dir).claimed
    assert load_setup(appliance.data_dir).code == code


def test_the_setup_code_claims_once_and_is_forgiving_about_case_and_dashes(appliance):
    browser = appliance.browser()
    typed = appliance.setup_code.replace("-", " ").lower()
    response = browser.post("/setup", {"code": typed, "password": PASSWORD, "password_again": PASSWORD})
    assert response.status_code == 302
    assert load_setup(appliance.data_dir).claimed
    assert browser.get("/password").status_code == 200          # logged in by the claim
    assert appliance.browser().get("/setup").headers["Location"].endswith("/login")  # used up


def test_login_logout_and_the_next_page(appliance):
    appliance.claimed_browser()
    browser = appliance.browser()
    response = browser.get("/password")
    assert response.headers["Location"].endswith("/login?next=/password")
    wrong = browser.post("/login", {"password": "not it", "next": "/password"})
    assert wrong.status_code == 401 and "wrong password" in wrong.get_data(as_text=True)
    right = browser.post("/login", {"password": PASSWORD, "next": "/password"})
    assert right.headers["Location"] == "/password"
    assert browser.get("/password").status_code == 200
    browser.post("/logout", page="/password")
    assert browser.get("/password").status_code == 302


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"])
def test_login_never_sends_the_browser_elsewhere(appliance, target):
    appliance.claimed_browser()
    browser = appliance.browser()
    response = browser.post("/login", {"password": PASSWORD, "next": target})
    assert response.headers["Location"] == "/"


def test_changing_the_password_logs_other_browsers_out(appliance):
    first = appliance.claimed_browser()
    second = appliance.browser()
    second.post("/login", {"password": PASSWORD})
    bad = first.post("/password", {"current": "nope", "password": "a new password", "password_again": "a new password"})
    assert bad.status_code == 400 and "not the current password" in bad.get_data(as_text=True)
    assert Passwords(appliance.data_dir).check(PASSWORD)
    good = first.post("/password", {"current": PASSWORD, "password": "a new password",
                                    "password_again": "a new password"})
    assert good.status_code == 302
    assert first.get("/password").status_code == 200
    assert second.get("/password").status_code == 302
    assert Passwords(appliance.data_dir).check("a new password")


def test_a_lost_password_is_recovered_by_claiming_again(appliance):
    browser = appliance.claimed_browser()
    setup = reopen(appliance.data_dir)                 # `phonehome reset-password` or the button hold
    assert browser.get("/password").headers["Location"].endswith("/setup")
    again = appliance.browser().post("/setup", {"code": setup.code, "password": "brand new pass",
                                                "password_again": "brand new pass"})
    assert again.status_code == 302 and Passwords(appliance.data_dir).check("brand new pass")


def test_a_post_without_the_csrf_token_is_refused(appliance):
    browser = appliance.browser()
    response = browser.client.post("/setup", data={"code": appliance.setup_code, "password": PASSWORD,
                                                   "password_again": PASSWORD})
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    assert not load_setup(appliance.data_dir).claimed


def test_wrong_passwords_are_rate_limited_per_client(appliance):
    appliance.claimed_browser()
    browser = appliance.browser()
    for _ in range(5):
        assert browser.post("/login", {"password": "guess"}).status_code == 401
    blocked = browser.post("/login", {"password": PASSWORD})
    assert blocked.status_code == 429 and "too many wrong tries" in blocked.get_data(as_text=True)
    other = appliance.app.test_client()
    other_browser = type(browser)(other)
    response = other_browser.post("/login", {"password": PASSWORD},
                                  environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert response.status_code == 302


def test_the_limiter_forgets_old_failures_and_stays_small():
    now = [0.0]
    limiter = FailureLimiter(max_failures=3, window_s=60, max_clients=10, now=lambda: now[0])
    assert limiter.begin("a") == 0
    limiter.refund("a")                                  # a form mistake: that attempt does not count
    assert [limiter.begin("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.begin("a") == 60
    now[0] = 61
    assert limiter.begin("a") == 0
    limiter.succeeded("a")
    for i in range(100):
        limiter.begin(f"client {i}")
    assert len(limiter._failures) == 10


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1:8080", True), ("192.168.1.50", True), ("[fe80::1]:80", True), ("localhost:8080", True),
    ("phonehome.lan", True), ("evil.example", False), ("evil.example:8080", False), ("", False),
    ("phonehome.lan.evil.example", False),
])
def test_the_host_check_refuses_foreign_names(host, ok):
    from appliance.config import Web

    assert host_allowed(host, Web(hostnames=("phonehome.lan",))) is ok


def test_a_foreign_host_name_is_refused_before_anything_else(appliance):
    response = appliance.browser().client.get("/setup", headers={"Host": "attacker.example"})
    assert response.status_code == 421 and "web.hostnames" in response.get_data(as_text=True)


def test_security_headers_and_session_cookie_flags(appliance):
    browser = appliance.browser()
    response = browser.post("/setup", {"code": appliance.setup_code, "password": PASSWORD,
                                       "password_again": PASSWORD})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = browser.get("/password")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in page.get_data(as_text=True)


@pytest.mark.parametrize("host", ["a..b", "localhost..", "x" * 64 + ".example", "phonehome.lan.."])
def test_an_unparsable_host_gets_a_clear_refusal_not_a_crash(appliance, host):
    response = appliance.browser().client.get("/setup", headers={"Host": host})
    assert response.status_code in (400, 421)
    assert "name or IP address" in response.get_data(as_text=True)


def test_guesses_sent_in_parallel_cannot_pass_the_limit(appliance):
    from concurrent.futures import ThreadPoolExecutor

    appliance.claimed_browser()
    browsers = [appliance.browser() for _ in range(4)]
    for b in browsers:
        b.get("/login")

    def guess(b):
        return b.client.post("/login", data={"password": "guess", "csrf_token": b.token}).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(guess, browsers * 5))
    assert codes.count(401) == 5 and codes.count(429) == 15


def test_a_form_mistake_does_not_use_up_a_guess(appliance):
    browser = appliance.browser()
    for _ in range(8):
        response = browser.post("/setup", {"code": appliance.setup_code, "password": "short",
                                           "password_again": "short"})
        assert response.status_code == 400
    good = browser.post("/setup", {"code": appliance.setup_code, "password": PASSWORD, "password_again": PASSWORD})
    assert good.status_code == 302

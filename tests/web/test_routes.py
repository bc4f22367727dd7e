"""Every route of the appliance's page needs a session, except login, the claim page and static files: proved by
walking the app's URL map with a browser that has none (claimed and unclaimed). The one exception, the Wi-Fi page
for the setup hotspot's clients while nobody has claimed the appliance, is walked the same way."""

import pytest

from appliance.clock import SystemClock
from tests.fake_nmcli import FakeNmcli
from web.security import HOTSPOT_OPEN, PUBLIC, TOKEN_ONLY

SAMPLE_ARGS = {"integer": 0, "int": 0, "float": 1.0, "unicode": "x", "string": "x", "path": "x/y"}


def urls(app):
    """(endpoint, method, url) for every rule, with sample values for its arguments (every value of an any())."""
    out = []
    for rule in app.url_map.iter_rules():
        choices = [{}]
        for name, conv in rule._converters.items():
            options = sorted(conv.items) if hasattr(conv, "items") else \
                [SAMPLE_ARGS.get(type(conv).__name__.replace("Converter", "").lower(), "x")]
            choices = [dict(c, **{name: option}) for c in choices for option in options]
        if rule.endpoint == "static":
            choices = [{"filename": "style.css"}]
        for values in choices:
            url = rule.build(values)[1]
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                out.append((rule.endpoint, method, url))
    return out


def refused(response, url, *, to=("/setup",)):
    if url.startswith("/api/") or url == "/metrics":
        return response.status_code == 401
    location = response.headers.get("Location", "")
    return response.status_code == 302 and (location.endswith(to) or "/login" in location)


@pytest.mark.parametrize("claimed", [False, True])
def test_every_route_but_the_public_ones_needs_a_session(appliance, claimed):
    if claimed:
        appliance.claimed_browser()
    client = appliance.app.test_client()
    checked = 0
    for endpoint, method, url in urls(appliance.app):
        if endpoint in PUBLIC or endpoint in TOKEN_ONLY:
            continue
        response = client.open(url, method=method)
        assert refused(response, url), f"{method} {url} ({endpoint}) answered {response.status_code} without a session"
        checked += 1
    assert checked >= 3


def test_the_public_routes_are_only_login_claim_and_static(appliance):
    endpoints = {endpoint for endpoint, _, _ in urls(appliance.app)}
    assert endpoints & PUBLIC == {"static", "auth.login", "auth.setup"}
    assert not endpoints & TOKEN_ONLY                  # the appliance takes no heartbeats on its page
    assert endpoints & HOTSPOT_OPEN == HOTSPOT_OPEN == {"wifi.page", "wifi.join"}


@pytest.mark.parametrize("claimed", [False, True])
def test_through_the_setup_hotspot_only_the_wifi_page_opens_and_only_until_claimed(appliance_factory, tmp_path,
                                                                                   monkeypatch, claimed):
    nm = FakeNmcli(tmp_path, monkeypatch)
    appliance = appliance_factory()
    nm.set_device("wlan0", "connected", "phonehome-hotspot")
    appliance.role.wifi.tick(SystemClock().now())
    assert appliance.role.wifi.hotspot_up
    if claimed:
        appliance.claimed_browser()
    client = appliance.app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.42.0.23"   # a phone the hotspot gave an address
    opened = set()
    for endpoint, method, url in urls(appliance.app):
        if endpoint in PUBLIC or endpoint in TOKEN_ONLY:
            continue
        response = client.open(url, method=method)
        if endpoint in HOTSPOT_OPEN and not claimed:
            # Reached: a POST without the page's CSRF token is refused by that check, not sent to log in.
            assert response.status_code in (200, 400) and "Location" not in response.headers, (method, url)
            opened.add(endpoint)
        else:
            assert refused(response, url, to=("/setup", "/wifi")), f"{method} {url} ({endpoint}) answered " \
                                                                  f"{response.status_code} through the hotspot"
    assert opened == (set() if claimed else HOTSPOT_OPEN)
    assert not [c for c in nm.calls() if {"add", "up", "down"} & set(c)]  # nothing joined, nothing changed

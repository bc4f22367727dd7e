"""Every route of the appliance's page needs a session, except login, the claim page and static files: proved by
walking the app's URL map with a browser that has none (claimed and unclaimed)."""

import pytest

from web.security import PUBLIC, TOKEN_ONLY

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


def refused(response, url):
    if url.startswith("/api/") or url == "/metrics":
        return response.status_code == 401
    location = response.headers.get("Location", "")
    return response.status_code == 302 and (location.endswith("/setup") or "/login" in location)


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

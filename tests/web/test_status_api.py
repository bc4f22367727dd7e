"""GET /api/v1/status: a session or the API token reads it; nothing else does; it never holds a secret."""

import json

import pytest

from appliance import __version__

TOKEN = "tok-0123456789-secret"
API_TOKEN = "api-0123456789abcdef-secret"
PATH_SECRET = "uuid-path-secret"


@pytest.fixture
def appliance(appliance_factory, free_port):
    # The text goes on right after the base config's [web] table: the first line is web.api_token.
    port = free_port()
    made = appliance_factory(f"""api_token = "{API_TOKEN}"
[device]
name = "home"
[[heartbeat.targets]]
name = "monitor"
url = "http://127.0.0.1:{port}/api/v1/heartbeat"
token = "{TOKEN}"
[[heartbeat.targets]]
kind = "healthchecks"
url = "http://127.0.0.1:{port}/ping/{PATH_SECRET}"
""")
    made.role.sender.beat_now()  # both fail (nothing listens): their state is known, not "unknown"
    return made


def test_a_logged_in_session_reads_the_status(appliance):
    response = appliance.claimed_browser().get("/api/v1/status")
    status = response.get_json()
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert status["version"] == __version__ and status["device"] == "home" and status["configured"] is True
    assert status["headline"] in ("DOWN", "NO NET") and status["heartbeat"]["state"] == "failing"
    assert [t["label"] for t in status["targets"]] == ["monitor", "127.0.0.1"]
    first = status["targets"][0]
    assert set(first) == {"label", "kind", "state", "last_ok_at", "last_rtt_ms", "last_error", "consecutive_failures"}
    assert first["state"] == "failing" and first["consecutive_failures"] >= 1 and "refused" in first["last_error"]
    assert set(status["time"]) == {"verdict", "reason", "offset_ms", "zone"}
    assert {"interface", "ip", "online"} <= set(status["network"])
    assert status["setup"] == {"claimed": True} and status["peers"] == []


def test_the_api_token_reads_the_status_without_a_session(appliance):
    client = appliance.app.test_client()
    response = client.get("/api/v1/status", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert response.status_code == 200 and response.get_json()["device"] == "home"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-0123456789"},
                                     {"Authorization": API_TOKEN}])
def test_without_the_token_or_a_session_the_answer_is_401_json(appliance, headers):
    response = appliance.app.test_client().get("/api/v1/status", headers=headers)
    assert response.status_code == 401 and response.get_json()["ok"] is False
    assert "api_token" in response.get_json()["error"]


def test_the_status_holds_no_secret(appliance):
    setup_code = appliance.setup_code
    response = appliance.app.test_client().get("/api/v1/status", headers={"Authorization": f"Bearer {API_TOKEN}"})
    dumped = json.dumps(response.get_json())
    for secret in (TOKEN, API_TOKEN, PATH_SECRET, "/api/v1/heartbeat", setup_code):
        assert secret not in dumped
    assert "url" not in json.dumps(list(response.get_json()["targets"][0]))

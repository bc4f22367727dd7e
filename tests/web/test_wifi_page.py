"""The Wi-Fi page: joining a network, the open page while the hotspot is up, and the captive-portal redirect."""

import pytest

from tests.fake_nmcli import FakeNmcli
from tests.processes import wait_until
from tests.test_wifi import DEVICES, NETWORKS


@pytest.fixture
def nm(tmp_path, monkeypatch):
    return FakeNmcli(tmp_path, monkeypatch, devices=DEVICES, networks=NETWORKS,
                     passwords={"Home": "correct horse"})


def open_hotspot(appliance):
    manager = appliance.role.wifi
    manager.step(0.0)
    manager.step(1000.0)  # long past hotspot_after_s without a network
    assert manager.hotspot_up
    return manager


def test_unclaimed_with_the_hotspot_up_the_wifi_page_needs_no_login_and_joins(appliance, nm):
    manager = open_hotspot(appliance)
    browser = appliance.browser()
    page = browser.get("/wifi")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert manager.ssid in text and "Home" in text and "Cafe" in text
    answer = browser.post("/wifi", {"ssid": "Home", "password": "correct horse"})
    assert answer.status_code == 200 and "Joining “Home”" in answer.get_data(as_text=True)
    wait_until(lambda: manager.last_join, 5, "the join to finish")
    assert manager.last_join == ("Home", None)
    assert any(c[:3] == ["--wait", "45", "device"] and "Home" in c for c in nm.calls())
    # Other pages still need the claim.
    assert browser.get("/settings").status_code == 302


@pytest.mark.parametrize("form, field, message", [
    ({"ssid": ""}, "ssid", "choose a network"),
    ({"ssid_typed": "x" * 33}, "ssid", "at most 32 bytes"),
    ({"ssid": "Home", "password": "short"}, "password", "8 to 63 characters"),
])
def test_bad_join_forms_name_the_field_and_join_nothing(appliance, nm, form, field, message):
    open_hotspot(appliance)
    browser = appliance.browser()
    answer = browser.post("/wifi", form)
    text = answer.get_data(as_text=True)
    assert answer.status_code == 400 and message in text and f'id="e-{field}"' in text
    assert not any("connect" in c for c in nm.calls())


def test_without_the_hotspot_or_once_claimed_the_wifi_page_needs_a_login(appliance, nm):
    assert appliance.browser().get("/wifi").status_code == 302  # no hotspot
    open_hotspot(appliance)
    browser = appliance.claimed_browser()
    assert browser.get("/wifi").status_code == 200
    assert appliance.browser().get("/wifi").status_code == 302  # claimed: a stranger in range must log in


def test_captive_portal_checks_are_sent_to_the_wifi_page_only_while_the_hotspot_is_up(appliance, nm):
    client = appliance.app.test_client()
    probe = client.get("/generate_204", headers={"Host": "connectivitycheck.gstatic.com"})
    assert probe.status_code == 421  # DNS-rebinding refusal as ever
    open_hotspot(appliance)
    for host, path in (("connectivitycheck.gstatic.com", "/generate_204"),
                       ("captive.apple.com", "/hotspot-detect.html")):
        probe = client.get(path, headers={"Host": host})
        assert probe.status_code == 302 and probe.headers["Location"] == "http://10.42.0.1/wifi"
        assert b"phonehome" not in probe.get_data()

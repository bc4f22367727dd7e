"""The Wi-Fi page on a real appliance whose NetworkManager is the stand-in nmcli: a phone on the setup hotspot of an
unclaimed appliance joins a network without a login, bad forms are refused field by field, a claimed appliance
still needs its password, and captive-portal checks are redirected only for the hotspot's own clients."""

import html
import re

import pytest

from appliance.clock import SystemClock
from tests.fake_nmcli import FakeNmcli
from web import wifi

PHONE = "10.42.0.23"   # an address the hotspot's DHCP hands out
LAN = "192.168.1.50"


@pytest.fixture
def nm(tmp_path, monkeypatch):
    monkeypatch.setattr(wifi, "JOIN_DELAY_S", 0.0)
    return FakeNmcli(tmp_path, monkeypatch)


def look(appliance):
    manager = appliance.role.wifi
    manager.tick(SystemClock().now())
    return manager


def open_hotspot(appliance, nm):
    """The hotspot is up, with the networks seen before it opened (as after 2 minutes without a network)."""
    manager = appliance.role.wifi
    manager.networks_in_range()
    nm.set_device("wlan0", "connected", "phonehome-hotspot")
    look(appliance)
    assert manager.hotspot_up
    return manager


def browser_at(appliance, address):
    browser = appliance.browser()
    browser.client.environ_base["REMOTE_ADDR"] = address
    return browser


def text(response):
    """The page as a person reads it: tags dropped, entities decoded, white space folded."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))).split())


def test_a_phone_on_the_hotspot_of_an_unclaimed_appliance_joins_a_network_without_logging_in(appliance_factory, nm):
    appliance = appliance_factory()
    manager = open_hotspot(appliance, nm)
    phone = browser_at(appliance, PHONE)
    assert phone.get("/").headers["Location"].endswith("/wifi")      # http://10.42.0.1/ leads here
    page = phone.get("/wifi")
    assert page.status_code == 200
    words = text(page)
    assert "phonehome-ABCD is open (address 10.42.0.1)" in words
    assert "Café: guest \\ 5G ▂▄▆█ 90 % · open" in words and "Home ▂▄▆_ 72 % · WPA2" in words
    assert "New house ▂___ 20 % · WPA3" in words and "before the hotspot opened" in words
    assert "Nobody has claimed this appliance yet" in words and 'name="passphrase" type="password"' in \
        page.get_data(as_text=True)
    assert phone.get("/settings").headers["Location"].endswith("/wifi")  # every other page stays closed

    answer = phone.post("/wifi", {"ssid": "Home", "passphrase": "correct horse"})
    assert answer.status_code == 200
    assert "Joining “Home”. The appliance leaves its hotspot for that" in text(answer)
    assert '<meta http-equiv="refresh" content="5">' in answer.get_data(as_text=True)
    assert manager.wait_join(10).ok
    assert nm.device("wlan0")["connection"] == "Home" and not manager.hotspot_up
    assert phone.get("/wifi").headers["Location"].endswith("/setup")  # the hotspot is gone: so is the exception
    done = appliance.claimed_browser().get("/wifi")
    assert "Joined “Home” — the hotspot closes; find the appliance at http://phonehome.local/ on that network" in \
        text(done)
    assert "“Home” on wlan0" in text(done)


def test_a_wrong_passphrase_brings_the_hotspot_back_with_the_reason(appliance_factory, nm):
    appliance = appliance_factory()
    manager = open_hotspot(appliance, nm)
    phone = browser_at(appliance, PHONE)
    assert phone.post("/wifi", {"ssid": "Home", "passphrase": "wrong horse"}).status_code == 200
    assert not manager.wait_join(10).ok
    assert nm.device("wlan0")["connection"] == "phonehome-hotspot"    # back at once for the person waiting
    assert "'Home' did not accept the passphrase; check it (capital letters count) and try again." in \
        text(phone.get("/wifi"))
    assert "Home" not in nm.profile_names()


@pytest.mark.parametrize("form, field, message", [
    ({}, "ssid", "choose a network from the list, or type its name under 'Another network'"),
    ({"other_ssid": "x" * 33}, "other_ssid", "a Wi-Fi network's name is 1 to 32 bytes, this one is 33"),
    ({"other_ssid": "é" * 17}, "other_ssid", "this one is 34 (letters beyond A-Z take 2 to 4 bytes each)"),
    ({"other_ssid": "two\nlines"}, "other_ssid", "must not contain control characters (line breaks, tabs)"),
    ({"ssid": "Home", "other_ssid": "Office"}, "other_ssid",
     "you chose 'Home' in the list and typed 'Office' here; clear this field, or choose 'Another network'"),
    ({"ssid": "Home", "passphrase": "short"}, "passphrase",
     "a WPA passphrase is 8 to 63 characters, got 5; leave it empty for an open network"),
    ({"ssid": "Home", "passphrase": "x" * 64}, "passphrase", "a WPA passphrase is 8 to 63 characters, got 64"),
    ({"ssid": "Home"}, "passphrase", "'Home' is protected (WPA2): enter its passphrase"),
    ({"ssid": "Café: guest \\ 5G", "passphrase": "long enough"}, "passphrase",
     "'Café: guest \\ 5G' is an open network: leave the passphrase empty"),
])
def test_a_bad_join_form_names_the_field_and_changes_nothing(appliance_factory, nm, form, field, message):
    appliance = appliance_factory()
    open_hotspot(appliance, nm)
    answer = browser_at(appliance, PHONE).post("/wifi", form)
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400
    error = re.search(rf'<p class="field-error" id="e-{field}">([^<]*)</p>', page)
    assert error and message in html.unescape(error.group(1))
    assert "Nothing was changed" in page and 'type="password" value=""' in page  # the passphrase is not echoed
    assert not [c for c in nm.calls() if {"add", "up", "down"} & set(c)]
    assert nm.device("wlan0")["connection"] == "phonehome-hotspot"


def test_one_join_at_a_time(appliance_factory, nm):
    appliance = appliance_factory()
    manager = open_hotspot(appliance, nm)
    with nm.change() as state:
        state["slow_s"] = 0.3
    phone = browser_at(appliance, PHONE)
    assert phone.post("/wifi", {"ssid": "Home", "passphrase": "correct horse"}).status_code == 200
    again = phone.post("/wifi", {"ssid": "New house", "passphrase": "battery staple"})
    assert again.status_code == 400
    assert "the appliance is joining 'Home' now; wait for the result and try again" in text(again)
    assert manager.wait_join(10).ok


def test_the_exception_is_only_for_the_hotspots_clients_of_an_unclaimed_appliance(appliance_factory, nm):
    appliance = appliance_factory()
    look(appliance)
    assert browser_at(appliance, PHONE).get("/wifi").headers["Location"].endswith("/setup")  # no hotspot
    open_hotspot(appliance, nm)
    assert browser_at(appliance, LAN).get("/wifi").headers["Location"].endswith("/setup")    # not through it
    assert browser_at(appliance, PHONE).get("/wifi").status_code == 200
    owner = appliance.claimed_browser()
    assert "/login" in browser_at(appliance, PHONE).get("/wifi").headers["Location"]         # claimed: log in
    assert "/login" in browser_at(appliance, PHONE).post("/wifi", {"ssid": "Home"}).headers["Location"]
    assert owner.get("/wifi").status_code == 200


def test_captive_portal_checks_are_redirected_only_through_the_hotspot(appliance_factory, nm):
    appliance = appliance_factory()
    look(appliance)
    probes = (("connectivitycheck.gstatic.com", "/generate_204"), ("captive.apple.com", "/hotspot-detect.html"))
    for host, path in probes:
        assert browser_at(appliance, PHONE).client.get(path, headers={"Host": host}).status_code == 421
    open_hotspot(appliance, nm)
    for host, path in probes:
        probe = browser_at(appliance, PHONE).client.get(path, headers={"Host": host})
        assert probe.status_code == 302 and probe.headers["Location"] == "http://10.42.0.1/wifi"
        assert b"phonehome" not in probe.get_data()                   # a redirect serves none of the page
        assert browser_at(appliance, LAN).client.get(path, headers={"Host": host}).status_code == 421
    on_8080 = browser_at(appliance, PHONE).client.get("/generate_204", headers={"Host": "example.com"},
                                                      environ_overrides={"SERVER_PORT": "8080"})
    assert on_8080.headers["Location"] == "http://10.42.0.1:8080/wifi"


def test_the_owner_sees_the_connection_and_the_networks_in_range(appliance_factory, nm):
    appliance = appliance_factory()
    nm.set_device("eth0", "connected", "Wired connection 1")
    look(appliance)
    words = text(appliance.claimed_browser().get("/wifi"))
    assert "Ethernet “Wired connection 1” on eth0" in words
    assert "phonehome-ABCD opens after 120 s without a network" in words
    assert "Home ▂▄▆_ 72 % · WPA2" in words and "seen at" in words
    assert "Nobody has claimed" not in words


def test_without_networkmanager_the_page_says_why(appliance_factory, tmp_path, monkeypatch):
    (tmp_path / "no-nmcli").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "no-nmcli"))  # never the NetworkManager of the machine running this
    appliance = appliance_factory()
    look(appliance)
    owner = appliance.claimed_browser()
    page = owner.get("/wifi")
    assert page.status_code == 200
    assert "not available: nmcli is not installed: Wi-Fi is managed with NetworkManager" in text(page)
    refused = owner.post("/wifi", {"other_ssid": "Home", "passphrase": "correct horse"})
    assert refused.status_code == 400 and "cannot join now: nmcli is not installed" in text(refused)


def test_the_menu_has_the_page(appliance_factory, nm):
    page = appliance_factory().claimed_browser().get("/wifi").get_data(as_text=True)
    assert '<a href="/wifi" aria-current="page">Wi-Fi</a>' in page
    assert "<script" not in page and 'style="' not in page

"""The setup hotspot: the pure policy with explicit times, and WifiManager driving a fake nmcli."""

import pytest

from appliance.config.schema import Wifi
from appliance.wifi import WifiManager
from appliance.wifi.hotspot import HotspotPolicy, Seen
from appliance.wifi.nmcli import HOTSPOT, WifiError, hotspot_name, scan, split_terse
from tests.fake_nmcli import FakeNmcli

OFF = Seen(has_wifi=True, online=False, hotspot_up=False)
ON = Seen(has_wifi=True, online=True, hotspot_up=False)
SPOT = Seen(has_wifi=True, online=False, hotspot_up=True)


def run(policy, steps):
    return [policy.decide(t, seen) for t, seen in steps]


def test_opens_only_after_after_s_without_network_and_closes_when_a_network_is_up():
    policy = HotspotPolicy(120)
    assert run(policy, [(0, OFF), (60, OFF), (119, OFF), (120, OFF)]) == [None, None, None, "open"]
    assert run(policy, [(125, SPOT), (130, Seen(True, True, True)), (135, ON)]) == [None, "close", None]


def test_a_short_drop_never_opens_it():
    policy = HotspotPolicy(120)
    assert run(policy, [(0, OFF), (100, ON), (150, OFF), (260, OFF), (271, OFF)]) == [None] * 4 + ["open"]


def test_an_open_hotspot_steps_aside_to_retry_saved_networks_unless_the_page_is_in_use():
    policy = HotspotPolicy(10, retry_every_s=300, retry_for_s=60)
    assert policy.decide(10, OFF) is None and policy.decide(20, OFF) == "open"
    assert policy.decide(25, SPOT) is None
    assert policy.decide(324, SPOT) is None
    assert policy.decide(325, SPOT) == "close"  # 300 s open, nobody on the page: try the router
    assert policy.decide(330, OFF) is None and policy.decide(384, OFF) is None
    assert policy.decide(385, OFF) == "open"  # the saved networks did not come back
    used = Seen(True, False, True, page_used_at=600)
    assert policy.decide(390, used) is None and policy.decide(700, used) is None  # someone is setting it up
    assert policy.decide(901, used) == "close"


def test_without_wifi_nothing_happens():
    policy = HotspotPolicy(10)
    assert run(policy, [(0, Seen(False, False, False)), (1000, Seen(False, False, False))]) == [None, None]


def test_terse_fields_with_escaped_colons():
    assert split_terse(r"*:My\:Net\\work:80:WPA2") == ["*", "My:Net\\work", "80", "WPA2"]


def test_hotspot_name_from_the_mac(tmp_path):
    (tmp_path / "wlan0").mkdir()
    (tmp_path / "wlan0" / "address").write_text("b8:27:eb:12:ab:cd\n")
    assert hotspot_name("wlan0", sys_class_net=str(tmp_path)) == "phonehome-ABCD"


DEVICES = [("eth0", "ethernet", "unavailable", ""), ("wlan0", "wifi", "disconnected", ""),
           ("lo", "loopback", "connected (externally)", "lo")]
NETWORKS = [{"ssid": "Home:Net", "signal": 70, "security": "WPA2"}, {"ssid": "Home:Net", "signal": 40,
            "security": "WPA2"}, {"ssid": "Cafe", "signal": 90, "security": ""}, {"ssid": "", "signal": 50,
                                                                                   "security": "WPA2"}]


@pytest.fixture
def nm(tmp_path, monkeypatch):
    return FakeNmcli(tmp_path, monkeypatch, devices=DEVICES, networks=NETWORKS,
                     passwords={"Home:Net": "correct horse"})


def test_scan_keeps_the_strongest_of_each_name(nm):
    found = scan("wlan0")
    assert [(n["ssid"], n["signal"], n["security"]) for n in found] == [("Cafe", 90, "open"),
                                                                       ("Home:Net", 70, "WPA2")]


def test_manager_opens_the_hotspot_then_a_join_closes_it(nm, caplog):
    manager = WifiManager(Wifi(hotspot_after_s=30))
    manager.step(0.0)
    manager.step(10.0)
    assert not any("connection" in c for c in nm.calls())
    manager.step(31.0)
    assert manager.hotspot_up and HOTSPOT in nm.read()["connections"]
    assert [n["ssid"] for n in manager.networks] == ["Cafe", "Home:Net"]  # scanned before the radio went AP
    manager.step(36.0)
    assert sum("open" in r.getMessage() for r in caplog.records) == 1  # one line per change
    manager._join("Home:Net", "wrong password")
    assert manager.last_join[1] and "Secrets were required" in manager.last_join[1]
    assert "Home:Net" not in nm.read()["connections"]  # the failed attempt left no profile behind
    manager._join("Home:Net", "correct horse")
    assert manager.last_join == ("Home:Net", None)
    manager.step(40.0)
    assert not manager.hotspot_up


def test_manager_without_networkmanager_says_so_once(nm, caplog):
    nm.write(broken=True)
    manager = WifiManager(Wifi())
    manager.step(0.0)
    manager.step(5.0)
    lines = [r.getMessage() for r in caplog.records if "hotspot idle" in r.getMessage()]
    assert lines == ["setup hotspot idle: NetworkManager is not running."]
    with pytest.raises(WifiError, match="not running"):
        scan("wlan0")

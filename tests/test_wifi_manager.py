"""The agent's Wi-Fi part against the stand-in nmcli: ``tick`` at explicit times opens, closes and steps the hotspot
aside; joins run on their own thread; one log line per change; idle without Wi-Fi; started and stopped by the agent.
"""

import logging
import threading

import pytest

from appliance.agent.role import AgentRole
from appliance.clock import Now
from appliance.config import parse_config
from appliance.config.schema import Wifi
from appliance.wifi import WifiManager
from appliance.wifi.hotspot import HOTSPOT, JOINING, OFF, ONLINE, RETRYING, WAITING
from appliance.wifi.manager import IDLE_POLL_S, POLL_S
from appliance.wifi.nmcli import Nmcli
from tests.fake_nmcli import ETH, LO, FakeNmcli, saved

WALL = 1_780_000_000.0


class Clock:
    """Both clocks, moved by the test."""

    def __init__(self):
        self.mono = 1000.0

    def now(self):
        return Now(self.mono, WALL + self.mono)


@pytest.fixture
def nm(tmp_path, monkeypatch):
    return FakeNmcli(tmp_path, monkeypatch)


@pytest.fixture
def clock():
    return Clock()


def manager_at(clock, config=None):
    return WifiManager(config or Wifi(), clock=clock)


def tick(manager, clock, at):
    """One look at ``at`` seconds after the start."""
    clock.mono = 1000.0 + at
    return manager.tick(clock.now())


def lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "phonehome.wifi"]


def test_no_network_for_after_s_opens_the_hotspot_named_after_the_mac_once(nm, clock, caplog):
    caplog.set_level(logging.INFO, "phonehome.wifi")
    manager = manager_at(clock)
    assert tick(manager, clock, 0) == POLL_S and manager.view.state == WAITING
    tick(manager, clock, 115)
    assert not [c for c in nm.calls() if "connection" in c]       # nothing done before 120 s
    tick(manager, clock, 120)
    assert nm.device("wlan0")["connection"] == "phonehome-hotspot" and manager.hotspot_up
    assert manager.ssid == "phonehome-ABCD"
    assert nm.state()["profiles"][0]["ssid"] == "phonehome-ABCD"
    # The networks were listed before the radio became the hotspot, and are kept for the page.
    assert [n.ssid for n in manager.networks] == ["Café: guest \\ 5G", "Home", "New house"]
    assert manager.networks_in_range() == (manager.networks, WALL + 1120, "")
    for at in (125, 130, 500):
        tick(manager, clock, at)
    assert lines(caplog) == [
        "wifi: starting -> waiting: no network; the hotspot opens after 2 min without one",
        "wifi: waiting -> hotspot: no network for 2 min; opening the hotspot (Wi-Fi phonehome-ABCD: join it and "
        "open http://10.42.0.1/wifi)"]
    assert manager.view.since_wall == WALL + 1120 and manager.view.state == HOTSPOT


def test_a_wrong_passphrase_reopens_the_hotspot_at_once_and_the_right_one_closes_it(nm, clock, caplog):
    caplog.set_level(logging.INFO, "phonehome.wifi")
    manager = manager_at(clock)
    tick(manager, clock, 0)
    tick(manager, clock, 120)
    manager.join("Home", "wrong passphrase")
    result = manager.wait_join(10)
    assert (result.ssid, result.ok, result.at_wall) == ("Home", False, WALL + 1120)
    assert result.message == "'Home' did not accept the passphrase; check it (capital letters count) and try again"
    assert nm.device("wlan0")["connection"] == "phonehome-hotspot"  # back for the person who is waiting
    assert nm.profile_names() == ["phonehome-hotspot"]                # no broken profile left behind
    manager.join("Home", "correct horse")
    assert manager.wait_join(10).ok and manager.last_join.message == "joined 'Home'"
    assert manager.view.state == ONLINE and not manager.hotspot_up and manager.joining == ""
    tick(manager, clock, 200)
    assert [u.connection for u in manager.view.uplinks] == ["Home"]
    assert lines(caplog)[2:] == [
        "wifi: hotspot -> joining: joining 'Home' as asked on the Wi-Fi page",
        "wifi: could not join 'Home': Connection activation failed: Secrets were required, but not provided",
        "wifi: joining -> hotspot: the join brought no network; opening the hotspot again (Wi-Fi phonehome-ABCD: "
        "join it and open http://10.42.0.1/wifi)",
        "wifi: hotspot -> joining: joining 'Home' as asked on the Wi-Fi page",
        "wifi: joined 'Home', as asked on the Wi-Fi page",
        "wifi: joining -> online: 'Home' is up"]


def test_one_join_at_a_time(nm, clock):
    manager = manager_at(clock)
    manager.join("Home", "correct horse", delay_s=0.5)
    with pytest.raises(Exception, match="^the appliance is joining 'Home' now; wait for the result and try again$"):
        manager.join("New house", "battery staple")
    assert manager.wait_join(10).ok


def test_the_hotspot_steps_aside_for_a_saved_network_and_the_router_coming_back_ends_it(tmp_path, monkeypatch, clock):
    nm = FakeNmcli(tmp_path, monkeypatch, profiles=[saved("Home", "correct horse")],
                   networks=[])                                   # the router is off after the power cut
    manager = manager_at(clock)
    tick(manager, clock, 0)
    tick(manager, clock, 120)
    tick(manager, clock, 125)
    tick(manager, clock, 419)
    assert manager.view.state == HOTSPOT
    tick(manager, clock, 420)
    assert manager.view.state == RETRYING and nm.device("wlan0")["connection"] == ""
    tick(manager, clock, 480)                                      # nothing came back within a minute
    assert nm.device("wlan0")["connection"] == "phonehome-hotspot"
    tick(manager, clock, 485)
    tick(manager, clock, 780)
    assert manager.view.state == RETRYING
    nm.set_device("wlan0", "connected", "Home")                    # NetworkManager reconnected by itself
    tick(manager, clock, 790)
    assert manager.view.state == ONLINE and manager.view.reason == "'Home' is up"


def test_someone_on_the_page_keeps_the_hotspot_open(tmp_path, monkeypatch, clock):
    FakeNmcli(tmp_path, monkeypatch, profiles=[saved("Home", "correct horse")], networks=[])
    manager = manager_at(clock)
    tick(manager, clock, 0)
    tick(manager, clock, 120)
    tick(manager, clock, 400)
    manager.page_used()                                             # at 400 s
    tick(manager, clock, 600)
    assert manager.view.state == HOTSPOT
    tick(manager, clock, 700)
    assert manager.view.state == RETRYING


def test_a_cable_plugged_in_closes_the_hotspot(nm, clock, caplog):
    caplog.set_level(logging.INFO, "phonehome.wifi")
    manager = manager_at(clock)
    tick(manager, clock, 0)
    tick(manager, clock, 120)
    nm.set_device("eth0", "connected", "Wired connection 1")
    tick(manager, clock, 130)
    assert nm.device("wlan0")["connection"] == "" and not manager.hotspot_up
    assert lines(caplog)[-1] == "wifi: hotspot -> online: 'Wired connection 1' is up; closing the hotspot"


def test_a_hotspot_that_cannot_open_is_logged_once_and_tried_again_after_after_s(nm, clock, caplog):
    caplog.set_level(logging.INFO, "phonehome.wifi")
    with nm.change() as state:
        state["ap_fails"] = True
    manager = manager_at(clock)

    def attempts():
        return sum(c[:2] == ["--wait", "45"] for c in nm.calls())

    assert [(tick(manager, clock, at), attempts())[1] for at in (0, 120, 125, 244, 245, 250)] == [
        0, 2, 2, 2, 3, 3]                                           # made and tried at 120 s, tried at 245 s
    failures = [line for line in lines(caplog) if line.startswith("the setup hotspot could not open")]
    assert failures == ["the setup hotspot could not open: Connection activation failed: (5) IP configuration could "
                        "not be reserved (no available address, timeout, etc.)"]
    with nm.change() as state:
        state["ap_fails"] = False
    tick(manager, clock, 370)
    assert manager.hotspot_up and "the setup hotspot could open again" in lines(caplog)


def test_a_hotspot_already_up_is_taken_over(nm, clock):
    nm.set_device("wlan0", "connected", "phonehome-hotspot")
    manager = manager_at(clock)
    tick(manager, clock, 0)
    assert manager.view.state == HOTSPOT and manager.hotspot_up
    assert not [c for c in nm.calls() if {"up", "add", "down"} & set(c)]   # looked at, not touched


@pytest.mark.parametrize("devices, program, idle", [
    ((ETH, LO), "nmcli", "setup hotspot idle: NetworkManager has no Wi-Fi device 'wlan0'; set wifi.interface to the "
                         "Wi-Fi device 'nmcli device status' lists"),
    ((dict(ETH, device="wlan0", type="wifi", state="unavailable"),), "nmcli",
     "setup hotspot idle: the Wi-Fi device wlan0 is unavailable in NetworkManager (switched off? 'nmcli radio wifi "
     "on' switches it on)"),
    ((ETH, LO), "/nonexistent/nmcli", "setup hotspot idle: /nonexistent/nmcli is not installed: Wi-Fi is managed "
                                      "with NetworkManager (apt-get install network-manager)"),
])
def test_without_usable_wifi_it_is_idle_and_says_so_once(tmp_path, monkeypatch, clock, caplog, devices, program,
                                                         idle):
    caplog.set_level(logging.INFO, "phonehome.wifi")
    nm = FakeNmcli(tmp_path, monkeypatch, devices=devices)
    manager = WifiManager(Wifi(), clock=clock, nmcli=Nmcli(program=program))
    assert [tick(manager, clock, at) for at in (0, 200, 400)] == [IDLE_POLL_S] * 3
    assert lines(caplog) == [idle]
    assert manager.view.state == OFF and manager.view.problem in idle
    assert not [c for c in nm.calls() if "connection" in c]


def test_turned_off_it_never_opens(nm, clock):
    manager = manager_at(clock, Wifi(hotspot=False))
    for at in (0, 120, 10_000):
        tick(manager, clock, at)
    assert nm.device("wlan0")["connection"] == "" and manager.view.reason == "no network, and wifi.hotspot is off"


def test_a_join_started_while_the_thread_looks_is_seen_as_joining(nm, clock):
    manager = manager_at(clock)
    tick(manager, clock, 0)
    with nm.change() as state:
        state["slow_s"] = 0.3                                       # each nmcli call takes a moment
    manager.join("Home", "correct horse")
    tick(manager, clock, 5)
    assert manager.view.state == JOINING
    assert manager.wait_join(10).ok and manager.view.state == ONLINE


def test_the_agent_starts_it_replaces_it_on_a_changed_table_and_stops_it(nm, tmp_path):
    def config(hotspot):
        return parse_config(f'data_dir = "{tmp_path / "data"}"\n[time]\nservers = []\n[web]\nlisten = ""\n'
                            f'[wifi]\nhotspot = {"true" if hotspot else "false"}\nhotspot_after_s = 600\n')

    def looking():
        return [t for t in threading.enumerate() if t.name == "wifi"]

    before = looking()
    role = AgentRole(config(True)).start()
    try:
        first = role.wifi
        assert isinstance(first, WifiManager) and first.config.hotspot_after_s == 600
        nm.wait_for(lambda s: any(c[-2:] == ["device", "status"] for c in s["calls"]))  # its thread looks
        [thread] = [t for t in looking() if t not in before]
        role.apply(config(True))
        assert role.wifi is first                                   # an unchanged table keeps it
        role.apply(config(False))
        assert role.wifi is not first and not role.wifi.config.hotspot
        assert not thread.is_alive() and len([t for t in looking() if t not in before]) == 1
    finally:
        role.stop()
    assert [t for t in looking() if t not in before] == []

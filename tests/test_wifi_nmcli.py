"""The nmcli edge against the stand-in nmcli (tests/fake_nmcli.py): the exact commands sent, terse output with
escapes read back, a failed join leaving no profile, and every failure as one WifiError saying what to do."""

import pytest

from appliance.wifi.nmcli import HOTSPOT, Network, Nmcli, WifiError, join_problem, split_terse
from tests.fake_nmcli import FakeNmcli, saved

HOTSPOT_ADD = ["connection", "add", "save", "no", "type", "wifi", "ifname", "wlan0", "con-name", "phonehome-hotspot",
               "autoconnect", "no", "ssid", "phonehome-ABCD", "802-11-wireless.mode", "ap", "802-11-wireless.band",
               "bg", "ipv4.method", "shared", "ipv4.addresses", "10.42.0.1/24"]
HOTSPOT_UP = ["--wait", "45", "connection", "up", "id", "phonehome-hotspot"]


@pytest.fixture
def nm(tmp_path, monkeypatch):
    return FakeNmcli(tmp_path, monkeypatch, profiles=[saved("Home", "old passphrase")])


@pytest.mark.parametrize("line, fields", [
    ("wlan0:wifi:connected:Home", ["wlan0", "wifi", "connected", "Home"]),
    (r"*:Caf\:e\\bar:72:WPA1 WPA2", ["*", "Caf:e\\bar", "72", "WPA1 WPA2"]),
    ("eth0:ethernet:unavailable:", ["eth0", "ethernet", "unavailable", ""]),
    (r"B8\:27\:EB\:12\:AB\:CD", ["B8:27:EB:12:AB:CD"]),
    ("", [""]),
])
def test_terse_lines_split_on_unescaped_colons_only(line, fields):
    assert split_terse(line) == fields


@pytest.mark.parametrize("signal, bars", [(0, 0), (5, 0), (6, 1), (31, 2), (56, 3), (80, 3), (81, 4), (100, 4)])
def test_signal_bars_as_nmcli_draws_them(signal, bars):
    assert Network("x", signal, "").bars == bars


def test_devices_networks_and_the_mac_are_read_from_terse_output(nm):
    nmcli = Nmcli()
    assert [(d.name, d.type, d.state, d.connected) for d in nmcli.devices()][:3] == [
        ("wlan0", "wifi", "disconnected", False), ("eth0", "ethernet", "unavailable", False),
        ("lo", "loopback", "connected (externally)", True)]
    # One entry per name (its strongest access point), strongest first; the hidden one is left out.
    assert nmcli.networks("wlan0") == [Network("Café: guest \\ 5G", 90, ""), Network("Home", 72, "WPA2"),
                                       Network("New house", 20, "WPA3")]
    assert nmcli.hardware_address("wlan0") == "B8:27:EB:12:AB:CD"
    assert nm.state()["locale"] == "C.UTF-8"  # English states, UTF-8 names, whatever the system's language
    assert nm.state()["unknown"] == []


def test_the_hotspot_is_made_once_in_memory_then_only_brought_up_and_down(nm):
    nmcli = Nmcli()
    nmcli.hotspot_up("wlan0", "phonehome-ABCD")
    assert nm.calls() == [HOTSPOT_UP, HOTSPOT_ADD, HOTSPOT_UP]   # unknown the first time: made, then brought up
    assert nm.device("wlan0")["connection"] == HOTSPOT
    assert nmcli.networks("wlan0") == []                          # the radio is the hotspot now
    nmcli.hotspot_down()
    nmcli.hotspot_down()                                          # not up: nothing to do, no error
    nmcli.hotspot_up("wlan0", "phonehome-ABCD")
    down = ["connection", "down", "id", HOTSPOT]
    assert nm.calls()[-3:] == [down, down, HOTSPOT_UP]            # known now: only brought up
    assert nm.calls().count(HOTSPOT_ADD) == 1 and nm.profile_names().count(HOTSPOT) == 1
    assert nm.device("wlan0")["state"] == "connected"


def test_a_wrong_passphrase_leaves_no_profile_and_the_saved_one_untouched(nm):
    nmcli = Nmcli()
    with pytest.raises(WifiError) as caught:
        nmcli.join("wlan0", "Home", "wrong passphrase")
    assert caught.value.code == 4 and str(caught.value) == "Connection activation failed: Secrets were required, " \
                                                           "but not provided"
    assert nm.state()["profiles"] == [saved("Home", "old passphrase")]
    added = [c for c in nm.calls() if c[:2] == ["connection", "add"]]
    assert added == [["connection", "add", "type", "wifi", "ifname", "wlan0", "con-name", "Home", "autoconnect", "yes",
                      "ssid", "Home", "connection.autoconnect-retries", "0", "802-11-wireless-security.key-mgmt",
                      "wpa-psk", "802-11-wireless-security.psk", "wrong passphrase"]]


def test_a_join_that_works_replaces_the_older_profile_of_that_name(nm):
    uuid = Nmcli().join("wlan0", "Home", "correct horse")
    profiles = nm.state()["profiles"]
    assert [(p["name"], p["uuid"], p["psk"]) for p in profiles] == [("Home", uuid, "correct horse")]
    assert profiles[0]["settings"] == {"connection.autoconnect-retries": "0", "802-11-wireless-security.key-mgmt":
                                       "wpa-psk"}
    assert (nm.device("wlan0")["state"], nm.device("wlan0")["connection"]) == ("connected", "Home")


def test_open_hidden_and_wpa3_networks(nm):
    nmcli = Nmcli()
    nmcli.join("wlan0", "Café: guest \\ 5G", "")
    assert "802-11-wireless-security.psk" not in nm.calls()[-3]   # an open network has no security settings
    with nm.change() as state:
        state["passphrases"]["Attic"] = "hidden treasure"
    nmcli.join("wlan0", "Attic", "hidden treasure", hidden=True)
    assert nm.device("wlan0")["connection"] == "Attic"
    assert nm.state()["profiles"][-1]["settings"]["802-11-wireless.hidden"] == "yes"
    nmcli.join("wlan0", "New house", "battery staple", key_mgmt=Network("New house", 20, "WPA3").key_mgmt)
    assert nm.state()["profiles"][-1]["settings"]["802-11-wireless-security.key-mgmt"] == "sae"


def test_a_network_out_of_range_fails_in_plain_words(nm):
    with pytest.raises(WifiError) as caught:
        Nmcli().join("wlan0", "Nowhere", "some passphrase")
    assert join_problem("Nowhere", caught.value) == ("'Nowhere' is not in range; check the name (capital letters "
                                                     "count), that the router is on, and that the appliance is "
                                                     "near enough")
    assert "Hint" not in str(caught.value) and nm.profile_names() == ["Home"]


def test_nmcli_missing_networkmanager_stopped_and_a_hang_each_say_what_to_do(nm, tmp_path):
    with pytest.raises(WifiError, match=r"^/nonexistent/nmcli is not installed: Wi-Fi is managed with "
                                        r"NetworkManager \(apt-get install network-manager\)$") as caught:
        Nmcli(program="/nonexistent/nmcli").devices()
    assert caught.value.code is None
    with nm.change() as state:
        state["stopped"] = True
    with pytest.raises(WifiError, match="^NetworkManager is not running; start it with 'sudo systemctl start "
                                        "NetworkManager'$") as caught:
        Nmcli().devices()
    assert caught.value.code == 8
    with nm.change() as state:
        state["stopped"], state["slow_s"] = False, 30
    with pytest.raises(WifiError, match=r"^NetworkManager did not answer 'nmcli device status' within 0.5 s; try "
                                        r"again in a minute, or restart it with 'sudo systemctl restart "
                                        r"NetworkManager'$") as caught:
        Nmcli(timeout_s=0.5).devices()
    assert caught.value.code is None


@pytest.mark.parametrize("said, code, problem", [
    ("Connection activation failed: Secrets were required, but not provided", 4,
     "'Home' did not accept the passphrase; check it (capital letters count) and try again"),
    ("Connection activation failed: (5) IP configuration could not be reserved (no available address, timeout, "
     "etc.)", 4, "the appliance reached 'Home' but got no address from its router (DHCP); restart the router, or "
                 "check that it hands out addresses"),
    ("NetworkManager did not answer 'nmcli connection up' within 50 s", None,
     "no answer from 'Home' in time (NetworkManager did not answer 'nmcli connection up' within 50 s); move the "
     "appliance nearer the router and try again"),
    ("Connection activation failed: No suitable device found for this connection", 4,
     "could not join 'Home': Connection activation failed: No suitable device found for this connection"),
])
def test_join_failures_in_plain_words(said, code, problem):
    assert join_problem("Home", WifiError(said, code=code)) == problem

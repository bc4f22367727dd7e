"""Reading the network from the kernel's own files (real files in tmp_path) and the real loopback interface."""

from appliance.network import default_interface, ipv4_address, read_network, wifi_signal_dbm, wifi_ssid

ROUTE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
wlan0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
"""
WIRELESS = """Inter-| sta-|   Quality        |   Discarded packets               | Missed | WE
 face | tus | link level noise |  nwid  crypt   frag  retry   misc | beacon | 22
 wlan0: 0000   54.  -56.  -256        0      0      0      0     12        0
"""


def test_default_interface_and_wifi_signal(tmp_path):
    route, wireless = tmp_path / "route", tmp_path / "wireless"
    route.write_text(ROUTE)
    wireless.write_text(WIRELESS)
    assert default_interface(str(route)) == "wlan0"
    assert wifi_signal_dbm("wlan0", str(wireless)) == -56
    assert wifi_signal_dbm("eth0", str(wireless)) is None
    net = read_network(route_path=str(route), wireless_path=str(wireless), address_of=lambda i: "192.168.1.23",
                       ssid_of=lambda i: "Home Wi-Fi")
    assert (net.interface, net.ip, net.wifi_ssid, net.wifi_signal_dbm, net.online) == \
        ("wlan0", "192.168.1.23", "Home Wi-Fi", -56, True)


def test_no_default_route_means_offline(tmp_path):
    route = tmp_path / "route"
    route.write_text(ROUTE.splitlines()[0] + "\n")
    assert not read_network(route_path=str(route)).online
    assert not read_network(route_path=str(tmp_path / "missing")).online


def test_the_real_loopback_address_is_read_by_ioctl():
    assert ipv4_address("lo") == "127.0.0.1"
    assert ipv4_address("no-such-if0") is None


def test_ssid_from_iw_output_and_a_missing_iw():
    class Done:
        stdout = "Connected to 11:22:33:44:55:66 (on wlan0)\n\tSSID: Home Wi-Fi\n\tfreq: 2437\n"

    assert wifi_ssid("wlan0", run=lambda *a, **k: Done()) == "Home Wi-Fi"

    def missing(*a, **k):
        raise FileNotFoundError("iw")

    assert wifi_ssid("wlan0", run=missing) is None

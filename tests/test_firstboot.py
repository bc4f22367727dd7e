"""Pre-configuration from the boot partition: real files in a boot directory and a root tree."""

import os
import stat
import subprocess

import pytest

from appliance.config import load_config
from appliance.firstboot import nm_keyfile, run, with_country
from appliance.firstboot.parse import (FileProblem, Network, parse_authorized_keys, parse_simple_wifi,
                                       parse_wpa_supplicant)
from tests.processes import PHONEHOME

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPWysw6vb4Lur92qFcWYM6fjmsXjPzIg80Tk6aFYTudV me@pc"
WPA = """ctrl_interface=DIR=/var/run/wpa_supplicant GROUP=netdev
update_config=1
country=gb

network={
    ssid="Home Wi-Fi"
    psk="correct horse"
    priority=2
}
network={
    ssid="Cafe"
    key_mgmt=NONE
}
"""
CONFIG = """[device]
name = "home"
[[heartbeat.targets]]
url = "https://monitor.example/api/v1/heartbeat"
token = "s3cret-token-value"
"""


@pytest.fixture
def card(tmp_path):
    boot, root = tmp_path / "boot", tmp_path / "root"
    boot.mkdir()
    (boot / "cmdline.txt").write_text("console=tty0 root=LABEL=phonehome-root rw rootwait\n")
    (root / "etc/phonehome").mkdir(parents=True)
    config = root / "etc/phonehome/phonehome.toml"
    config.write_text('[web]\nlisten = "0.0.0.0:80"\n')
    # Debian's ssh unit, as openssh-server ships it, for systemctl --root to enable.
    (root / "lib/systemd/system").mkdir(parents=True)
    (root / "lib/systemd/system/ssh.service").write_text(
        "[Unit]\nDescription=ssh\n[Service]\nExecStart=/usr/sbin/sshd -D\n"
        "[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n")
    (root / "etc/systemd/system").mkdir(parents=True)
    return boot, root, config


def test_wpa_supplicant_conf_gives_networks_and_country():
    wifi = parse_wpa_supplicant(WPA)
    assert wifi.country == "GB"
    assert wifi.networks == (Network("Home Wi-Fi", "correct horse", 2), Network("Cafe", "", 0))


@pytest.mark.parametrize("text, message", [
    ('network={\n ssid="x"\n psk="short"\n}\n', "8 to 63 characters"),
    ('network={\n ssid="x"\n}\n', "no psk"),
    ('network={\n ssid=""\n psk="longenough"\n}\n', "ssid must be 1 to 32 bytes"),
    ('country=GBR\nnetwork={\n ssid="x"\n psk="longenough"\n}\n', "two-letter country code"),
    ('network={\n ssid="x"\n psk="longenough"\n', "no closing }"),
    ('ctrl_interface=x\n', "no network="),
    ('network={\n ssid="x"\n psk=longenough\n}\n', "double quotes"),
    ('network={\n ssid="x"\n psk="longenough"\n priority=high\n}\n', "whole number"),
])
def test_bad_wpa_supplicant_files_say_what_is_wrong(text, message):
    with pytest.raises(FileProblem, match=message):
        parse_wpa_supplicant(text)


def test_simple_wifi_file():
    wifi = parse_simple_wifi("ssid=Home\npassword=correct horse\ncountry=de\n")
    assert wifi.country == "DE" and wifi.networks == (Network("Home", "correct horse"),)
    with pytest.raises(FileProblem, match="expected ssid="):
        parse_simple_wifi("name=Home\n")


@pytest.mark.parametrize("text, message", [
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n", "PRIVATE key"),
    ("hello world\n", "not an SSH public key"),
    ("ssh-ed25519 AAAA!!!! me\n", "damaged"),
    ("ssh-rsa " + KEY.split()[1] + " me\n", "does not match its type"),
    ("# only a comment\n", "no key"),
])
def test_bad_authorized_keys(text, message):
    with pytest.raises(FileProblem, match=message):
        parse_authorized_keys(text)


def test_authorized_keys_with_options_are_kept_whole():
    line = 'from="192.168.1.0/24" ' + KEY
    assert parse_authorized_keys(f"{line}\n\n") == [line]


def test_keyfile_and_cmdline_text():
    text = nm_keyfile(Network("Home", "correct horse", 2))
    assert "ssid=Home" in text and "psk=correct horse" in text and "autoconnect-priority=2" in text
    assert "[wifi-security]" not in nm_keyfile(Network("Cafe", ""))
    line = with_country("console=tty0 cfg80211.ieee80211_regdom=US rootwait\n", "GB")
    assert line == "console=tty0 rootwait cfg80211.ieee80211_regdom=GB\n"


def test_everything_is_imported_then_removed_from_the_card(card):
    boot, root, config = card
    (boot / "phonehome.toml").write_text(CONFIG)
    (boot / "wpa_supplicant.conf").write_text(WPA)
    (boot / "authorized_keys").write_text(KEY + "\n")
    assert run(str(boot), str(root), str(config)) == []
    assert sorted(os.listdir(boot)) == ["cmdline.txt", "phonehome-imported.txt"]
    loaded = load_config(str(config))
    assert loaded.device.name == "home"
    assert loaded.web.listen == "0.0.0.0:80"  # the page stays on the network though the file did not say
    assert (root / "etc/phonehome/phonehome.toml.bak").read_text() == '[web]\nlisten = "0.0.0.0:80"\n'
    home = root / "etc/NetworkManager/system-connections/wifi-Home_Wi-Fi.nmconnection"
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o600 and "psk=correct horse" in home.read_text()
    assert (root / "etc/NetworkManager/system-connections/wifi-Cafe.nmconnection").exists()
    assert (boot / "cmdline.txt").read_text().endswith("rootwait cfg80211.ieee80211_regdom=GB\n")
    assert "ieee80211_regdom=GB" in (root / "etc/modprobe.d/phonehome-wifi-country.conf").read_text()
    keys = root / "root/.ssh/authorized_keys"
    assert keys.read_text() == KEY + "\n" and stat.S_IMODE(os.stat(keys).st_mode) == 0o600
    assert os.path.islink(root / "etc/systemd/system/multi-user.target.wants/ssh.service")
    record = (boot / "phonehome-imported.txt").read_text()
    assert "device home" in record and "'Home Wi-Fi'" in record and "SSH switched on" in record
    assert "s3cret" not in record and "correct horse" not in record


def test_a_bad_file_stays_with_an_error_beside_it_and_nothing_changes(card):
    boot, root, config = card
    before = config.read_bytes()
    (boot / "phonehome.toml").write_text('[device]\nname = "home"\n[heartbeat]\ninterval_s = -1\n')
    (boot / "phonehome-wifi.txt").write_text("ssid=Home\npassword=short\n")
    problems = run(str(boot), str(root), str(config))
    assert len(problems) == 2
    assert config.read_bytes() == before
    assert not (root / "etc/NetworkManager").exists()
    error = (boot / "phonehome-error.txt").read_text()
    assert "heartbeat.interval_s" in error and "8 to 63 characters" in error and "Fix them" in error
    assert (boot / "phonehome.toml").exists() and (boot / "phonehome-wifi.txt").exists()
    # Fixed on a PC, the next boot imports them and the error file goes.
    (boot / "phonehome.toml").write_text(CONFIG)
    (boot / "phonehome-wifi.txt").write_text("ssid=Home\npassword=long enough\n")
    assert run(str(boot), str(root), str(config)) == []
    assert sorted(os.listdir(boot)) == ["cmdline.txt", "phonehome-imported.txt"]


def test_a_second_boot_with_nothing_new_changes_nothing(card):
    boot, root, config = card
    (boot / "authorized_keys").write_text(KEY + "\n")
    run(str(boot), str(root), str(config))
    (boot / "authorized_keys").write_text(KEY + "\n")  # the same key again: not duplicated
    run(str(boot), str(root), str(config))
    assert (root / "root/.ssh/authorized_keys").read_text() == KEY + "\n"
    listing = sorted(os.listdir(boot))
    assert run(str(boot), str(root), str(config)) == [] and sorted(os.listdir(boot)) == listing


@pytest.mark.e2e
def test_the_command_imports_and_exits_1_on_a_bad_file(card):
    boot, root, config = card
    (boot / "phonehome.toml").write_text(CONFIG)
    command = [PHONEHOME, "firstboot", "--boot", str(boot), "--root", str(root), "--config", str(config)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "imported phonehome.toml" in done.stderr and "s3cret" not in done.stderr
    (boot / "authorized_keys").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 1 and "PRIVATE key" in done.stderr

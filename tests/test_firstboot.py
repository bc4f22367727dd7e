"""Pre-configuration from the boot partition: the parsers on tables of files, then real boot and root trees."""

import ctypes
import ctypes.util
import os
import shutil
import stat
import subprocess

import pytest

from appliance.config import load_config
from appliance.firstboot import Card, run
from appliance.firstboot.parse import (FileProblem, Network, parse_authorized_keys, parse_simple_wifi,
                                       parse_wpa_supplicant, text_of)
from appliance.firstboot.render import connection_file, keyfile_ssid, nm_keyfile, with_country, with_keys
from tests.processes import PHONEHOME

NOW = 1_795_600_000.0  # 2026-11-25 08:26 UTC
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
OLD_CONFIG = '[web]\nlisten = "0.0.0.0:80"\n'
SSH_UNIT = ("[Unit]\nDescription=OpenBSD Secure Shell server\n[Service]\nExecStart=/usr/sbin/sshd -D\n"
            "[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n")
CMDLINE = "console=serial0,115200 console=tty1 root=LABEL=phonehome-root rootwait quiet\n"


# --- the parsers: text in, data or a message out ---

def test_wpa_supplicant_conf_gives_networks_and_country():
    wifi = parse_wpa_supplicant(WPA)
    assert wifi.country == "GB"
    assert wifi.networks == (Network("Home Wi-Fi", "correct horse", 2), Network("Cafe", "", 0))


def test_wpa_supplicant_hex_forms_hidden_and_wpa3():
    psk = "ab" * 32
    wifi = parse_wpa_supplicant(f'network={{\n ssid=486f6d65\n psk={psk}\n scan_ssid=1\n}}\n'
                                'network={\n ssid="New"\n psk="longenough"\n key_mgmt=SAE\n}\n')
    assert wifi.networks == (Network("Home", psk, hidden=True), Network("New", "longenough", sae=True))


@pytest.mark.parametrize("text, message", [
    ('network={\n ssid="x"\n psk="short"\n}\n', "password must be 8 to 63 characters"),
    ('network={\n ssid="x"\n psk="' + "x" * 64 + '"\n}\n', "password must be 8 to 63 characters"),
    ('network={\n ssid="x"\n}\n', 'no psk="…" (for an open network write key_mgmt=NONE)'),
    ('network={\n psk="longenough"\n}\n', 'line 1: no ssid="…" line'),
    ('network={\n ssid=""\n psk="longenough"\n}\n', "ssid) must be 1 to 32 bytes, got 0"),
    ('network={\n ssid="' + "x" * 33 + '"\n psk="longenough"\n}\n', "1 to 32 bytes, got 33"),
    ('country=GBR\nnetwork={\n ssid="x"\n psk="longenough"\n}\n',
     "line 1: country must be a two-letter country code such as GB, US or DE, got 'GBR'"),
    ('country=G1\nnetwork={\n ssid="x"\n psk="longenough"\n}\n', "got 'G1'"),
    ('network={\n ssid="x"\n psk="longenough"\n', "starts at wpa_supplicant.conf line 1 has no closing }"),
    ('ctrl_interface=x\n', 'no network={ ssid="…" psk="…" } block'),
    ('network={\n ssid="x"\n psk=longenough\n}\n', "psk must be in double quotes, or 64 hex digits"),
    ('network={\n ssid="x"\n psk="longenough"\n priority=high\n}\n', "priority must be a whole number"),
    ('network={\n ssid="x"\n psk="longenough"\n priority=5000\n}\n', "from -999 to 999, got 5000"),
    ('network={\n ssid="x"\n key_mgmt=WPA-EAP\n}\n', "key_mgmt=WPA-EAP is not supported; use WPA-PSK"),
    ('network={\n ssid="x"\n key_mgmt=NONE\n wep_key0="abcde"\n}\n', "WEP is not supported"),
    ('}\n', "line 1: '}' without a network={ block"),
    ('network={\nnetwork={\n', "line 2: a network={ block starts before the previous one ends"),
    ('network={\n ssid="x"\n hunter2secret\n}\n', "line 3: expected key=value, network={ or }"),
])
def test_bad_wpa_supplicant_files_say_what_is_wrong(text, message):
    with pytest.raises(FileProblem) as caught:
        parse_wpa_supplicant(text)
    assert message in str(caught.value)
    assert "hunter2" not in str(caught.value) and "longenough" not in str(caught.value)


def test_simple_wifi_file():
    wifi = parse_simple_wifi('ssid=Home\npassword=" correct horse "\ncountry=de\n')
    assert wifi.country == "DE" and wifi.networks == (Network("Home", " correct horse "),)
    assert parse_simple_wifi("ssid=Cafe\n").networks == (Network("Cafe", ""),)


@pytest.mark.parametrize("text, message", [
    ("pasword=hunter2secret\n", "line 1: expected ssid=, password= or country=, got 'pasword='"),
    ("hunter2secret\n", "got a line without '='"),
    ("password=hunter2secret\n", "no ssid= line"),
    ("ssid=a\nssid=b\npassword=hunter2secret\n", "line 2: ssid= appears twice"),
    ("ssid=Home\npassword=hunter2\n", "8 to 63 characters (or 64 hex digits), got 7 characters"),
    ("ssid=Home\npassword=hunter2secret\ncountry=UK1\n", "two-letter country code such as GB, US or DE"),
])
def test_bad_simple_wifi_files_never_repeat_the_password(text, message):
    with pytest.raises(FileProblem) as caught:
        parse_simple_wifi(text)
    assert message in str(caught.value) and "hunter2" not in str(caught.value)


@pytest.mark.parametrize("text, message", [
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n", "line 1: this is a PRIVATE key, never put it on"),
    ("-----BEGIN RSA PRIVATE KEY-----\n", "PRIVATE key"),
    ("PuTTY-User-Key-File-3: ssh-ed25519\n", "PRIVATE key"),
    ("---- BEGIN SSH2 PUBLIC KEY ----\n", "PuTTY's format"),
    ("ssh-dss AAAAB3NzaC1kc3M= me\n", "a DSA key, which OpenSSH refuses"),
    ("hello world\n", "not an SSH public key; expected a line like 'ssh-ed25519 AAAA… you@pc'"),
    ("ssh-ed25519\n", "not an SSH public key"),
    ("ssh-ed25519 AAAA!!!! me\n", "the key's base64 part is damaged"),
    ("ssh-rsa " + KEY.split()[1] + " me\n", "does not match its type 'ssh-rsa'"),
    ("# only a comment\n\n", "no key in the file"),
    (KEY + "\nnot a key\n", "authorized_keys line 2:"),
])
def test_bad_authorized_keys(text, message):
    with pytest.raises(FileProblem, match=None) as caught:
        parse_authorized_keys(text)
    assert message in str(caught.value)


def test_authorized_keys_lines_are_kept_whole_with_the_fingerprint_ssh_keygen_shows(tmp_path):
    line = 'from="192.168.1.0/24",no-agent-forwarding ' + KEY
    keys = parse_authorized_keys(f"# mine\n{line}\r\n\n")
    assert [k.line for k in keys] == [line] and keys[0].kind == "ssh-ed25519"
    if not shutil.which("ssh-keygen"):
        pytest.skip("ssh-keygen is not installed")
    (tmp_path / "k.pub").write_text(KEY + "\n")
    shown = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "k.pub")], capture_output=True, text=True,
                           check=True).stdout
    assert shown.split()[1] == keys[0].fingerprint


def test_text_of_drops_a_byte_order_mark_and_refuses_other_encodings():
    assert text_of(b"\xef\xbb\xbfssid=Home\n", "phonehome-wifi.txt") == "ssid=Home\n"
    with pytest.raises(FileProblem, match="phonehome-wifi.txt: not UTF-8 text; save it as UTF-8"):
        text_of(b"ssid=Caf\xe9\n", "phonehome-wifi.txt")


# --- what is written, as text ---

KEYFILE = """[connection]
id=Home Wi-Fi
uuid=0b8e7c44-5d4e-4b8a-9f0e-0c7d2f7a1b2c
type=wifi
autoconnect-priority=2

[wifi]
mode=infrastructure
ssid=Home Wi-Fi

[wifi-security]
key-mgmt=wpa-psk
psk=correct horse

[ipv4]
method=auto

[ipv6]
method=auto
"""
UUID = "0b8e7c44-5d4e-4b8a-9f0e-0c7d2f7a1b2c"


def test_keyfile_text():
    assert nm_keyfile(Network("Home Wi-Fi", "correct horse", 2), UUID) == KEYFILE
    open_one = nm_keyfile(Network("Cafe", "", hidden=True), UUID)
    assert "[wifi-security]" not in open_one and "ssid=Cafe\nhidden=true\n" in open_one
    assert "key-mgmt=sae\n" in nm_keyfile(Network("New", "longenough", sae=True), UUID)


def _glib():
    name = ctypes.util.find_library("glib-2.0")
    if not name:
        pytest.skip("GLib is not installed")
    glib = ctypes.CDLL(name)
    glib.g_key_file_new.restype = ctypes.c_void_p
    glib.g_key_file_load_from_data.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ssize_t, ctypes.c_int,
                                               ctypes.c_void_p]
    glib.g_key_file_get_string.restype = ctypes.c_void_p
    glib.g_key_file_get_string.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
    return glib


def test_keyfiles_read_back_through_glib_as_networkmanager_reads_them():
    glib = _glib()
    ssid, psk = " lead\\back;semi", "  tab\there\\ end "
    data = nm_keyfile(Network(ssid, psk), UUID).encode()
    keyfile = glib.g_key_file_new()
    assert glib.g_key_file_load_from_data(keyfile, data, len(data), 0, None)

    def get(group, key):
        return ctypes.string_at(glib.g_key_file_get_string(keyfile, group, key, None)).decode()

    assert get(b"wifi-security", b"psk") == psk and get(b"connection", b"id") == ssid
    # NetworkManager then turns its own "\;" back into ";" (a bare list of numbers would be bytes).
    assert get(b"wifi", b"ssid").replace("\\;", ";") == ssid


def test_an_ssid_that_is_not_printable_ascii_is_written_as_bytes():
    assert keyfile_ssid("Café") == "67;97;102;195;169;"
    assert keyfile_ssid("12;34;") == "12\\\\;34\\\\;"


def test_connection_file_names_are_safe_and_distinct():
    assert connection_file("Home") == "Home.nmconnection"
    assert connection_file("a b") != connection_file("a_b") and "/" not in connection_file("../x/y")
    assert connection_file("a b").startswith("a_b-") and connection_file(".hidden").startswith("_hidden-")


def test_the_country_goes_on_the_one_line_of_cmdline_txt():
    assert with_country("console=tty1 cfg80211.ieee80211_regdom=US rootwait\n", "GB") == \
        "console=tty1 rootwait cfg80211.ieee80211_regdom=GB\n"
    assert with_country("console=tty1 rootwait", "DE") == "console=tty1 rootwait cfg80211.ieee80211_regdom=DE\n"
    assert with_country("a b\n# a note\n", "GB") == "a b cfg80211.ieee80211_regdom=GB\n# a note\n"


def test_keys_already_there_are_not_added_again_even_with_another_comment():
    existing = "ssh-rsa AAAAB3Nza other@pc"
    text, new = with_keys(existing, parse_authorized_keys(KEY.replace("me@pc", "laptop")))
    assert text == f"{existing}\n{KEY.replace('me@pc', 'laptop')}\n" and len(new) == 1
    assert with_keys(text, parse_authorized_keys(KEY)) == (text, [])


# --- on real trees ---

@pytest.fixture
def card(tmp_path):
    boot, root = tmp_path / "boot", tmp_path / "root"
    boot.mkdir()
    (boot / "cmdline.txt").write_text(CMDLINE)
    (root / "etc/phonehome").mkdir(parents=True)
    (root / "etc/phonehome/phonehome.toml").write_text(OLD_CONFIG)
    (root / "lib/systemd/system").mkdir(parents=True)
    (root / "lib/systemd/system/ssh.service").write_text(SSH_UNIT)
    (root / "etc/systemd/system").mkdir(parents=True)
    return Card(boot=str(boot), root=str(root), config_path=str(root / "etc/phonehome/phonehome.toml"))


def _tree(top):
    """Every file, link and directory under ``top``: mode, content or target, time stamp."""
    found = {}
    for where, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(where, name)
            st = os.lstat(path)
            body = os.readlink(path) if os.path.islink(path) else \
                open(path, "rb").read() if stat.S_ISREG(st.st_mode) else None
            found[os.path.relpath(path, top)] = (st.st_mode, body, st.st_mtime_ns)
    return found


def _connection(card, ssid):
    return os.path.join(card.root, "etc/NetworkManager/system-connections", connection_file(ssid))


def test_everything_is_imported_then_removed_from_the_card(card, caplog):
    boot = card.boot
    for name, text in (("phonehome.toml", CONFIG), ("wpa_supplicant.conf", WPA), ("authorized_keys", KEY + "\n")):
        with open(os.path.join(boot, name), "w") as f:
            f.write(text)
    caplog.set_level("INFO", logger="phonehome.firstboot")
    assert run(card, now_wall=NOW) == []
    assert sorted(os.listdir(boot)) == ["cmdline.txt", "phonehome-imported.txt"]

    loaded = load_config(card.config_path)
    assert loaded.device.name == "home" and loaded.heartbeat.targets[0].token == "s3cret-token-value"
    assert loaded.web.listen == "0.0.0.0:80"  # the page stays on the network though the file did not say
    assert open(card.config_path + ".bak").read() == OLD_CONFIG
    assert stat.S_IMODE(os.stat(card.config_path).st_mode) == stat.S_IMODE(os.stat(card.config_path + ".bak").st_mode) \
        == 0o600

    home = _connection(card, "Home Wi-Fi")
    text = open(home).read()
    uuid = text.split("uuid=")[1].split("\n")[0]
    assert text == KEYFILE.replace(UUID, uuid) and len(uuid) == 36
    assert stat.S_IMODE(os.stat(home).st_mode) == 0o600
    assert "[wifi-security]" not in open(_connection(card, "Cafe")).read()
    assert open(os.path.join(boot, "cmdline.txt")).read() == CMDLINE.rstrip("\n") + " cfg80211.ieee80211_regdom=GB\n"
    assert open(os.path.join(card.root, "etc/modprobe.d/phonehome-wifi-country.conf")).read().endswith(
        "\noptions cfg80211 ieee80211_regdom=GB\n")

    keys = os.path.join(card.root, "root/.ssh/authorized_keys")
    assert open(keys).read() == KEY + "\n" and stat.S_IMODE(os.stat(keys).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(keys)).st_mode) == 0o700
    assert open(os.path.join(card.root, "etc/ssh/sshd_config.d/phonehome.conf")).read().endswith(
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n")
    assert os.readlink(os.path.join(card.root, "etc/systemd/system/multi-user.target.wants/ssh.service")) == \
        "/lib/systemd/system/ssh.service"

    record = open(os.path.join(boot, "phonehome-imported.txt")).read()
    assert "2026-11-25 " in record and "phonehome.toml: the config (device 'home', 1 heartbeat target(s))" in record
    assert "wpa_supplicant.conf: Wi-Fi 'Home Wi-Fi', 'Cafe' (open); country GB" in record
    assert "authorized_keys: 1 new SSH key(s) for root (SHA256:" in record
    said = record + caplog.text
    assert "s3cret" not in said and "correct horse" not in said and len(caplog.records) == 3


def test_ssh_is_switched_on_with_the_links_systemctl_makes(card, tmp_path):
    """Without systemctl (a bare tree), the same links as ``systemctl --root enable``."""
    if not shutil.which("systemctl"):
        pytest.skip("systemctl is not installed")
    other = Card(boot=card.boot, root=str(tmp_path / "other"), config_path=card.config_path,
                 systemctl=shutil.which("systemctl"))
    shutil.copytree(card.root, other.root, symlinks=True)
    for each in (card, other):
        with open(os.path.join(each.boot, "authorized_keys"), "w") as f:
            f.write(KEY + "\n")
        assert run(each, now_wall=NOW) == []

    def links(root):
        return {k: v[1] for k, v in _tree(os.path.join(root, "etc/systemd")).items() if stat.S_ISLNK(v[0])}

    assert links(card.root) == links(other.root) == {
        "system/multi-user.target.wants/ssh.service": "/lib/systemd/system/ssh.service",
        "system/sshd.service": "/lib/systemd/system/ssh.service"}


BAD_FILES = [
    ("phonehome.toml", '[device]\nname = "home"\n[heartbeat]\ninterval_s = -1\n',
     "invalid configuration in phonehome.toml (1 problem(s)):\n  heartbeat.interval_s: must be at least"),
    ("phonehome.toml", "[device\nname = 'home'\n", "phonehome.toml (1 problem(s)):\n  not valid TOML"),
    ("phonehome.toml", '[devise]\nname = "home"\n', "devise: unknown key (did you mean 'device'?)"),
    ("phonehome.toml", '[[heartbeat.targets]]\nurl = "ftp://s3cret-token-value@x"\n',
     "heartbeat.targets[0].url: must start with http:// or https://, got ftp://…"),
    ("phonehome.toml", '[web]\napi_token = 12345678901234567\n', "web.api_token: must be a string, got a number"),
    ("phonehome.toml", b"name = 'caf\xe9'\n", "phonehome.toml: not UTF-8 text"),
    ("wpa_supplicant.conf", 'country=GB\nnetwork={\n ssid="x"\n psk="s3cret"\n}\n',
     "wpa_supplicant.conf line 2: the Wi-Fi password must be 8 to 63 characters"),
    ("phonehome-wifi.txt", "ssid=Home\npassword=s3cret-token-value\ncountry=XYZ\n",
     "phonehome-wifi.txt: country must be a two-letter country code such as GB, US or DE, got 'XYZ'"),
    ("authorized_keys", KEY + "\n-----BEGIN OPENSSH PRIVATE KEY-----\n",
     "authorized_keys line 2: this is a PRIVATE key, never put it on the card"),
]


@pytest.mark.parametrize("name, content, message", BAD_FILES)
def test_a_bad_file_stays_with_an_error_beside_it_and_nothing_changes(card, name, content, message):
    path = os.path.join(card.boot, name)
    with open(path, "wb") as f:
        f.write(content if isinstance(content, bytes) else content.encode())
    root_before, boot_before = _tree(card.root), _tree(card.boot)
    problems = run(card, now_wall=NOW)
    assert len(problems) == 1 and message in problems[0]
    assert _tree(card.root) == root_before
    noted = _tree(card.boot)
    boot_after = dict(noted)
    assert boot_after.pop("phonehome-error.txt") and boot_after == boot_before
    error = open(os.path.join(card.boot, "phonehome-error.txt")).read()
    assert message.replace("\n", "\n  ") in error and "Fix them on a PC" in error and "s3cret" not in error
    # The next boot finds the same file: the same note, not written again (the card is spared a write).
    assert run(card, now_wall=NOW + 60) == problems and _tree(card.boot) == noted


def test_a_fixed_file_is_imported_at_the_next_boot_and_the_error_note_goes(card):
    bad, good = os.path.join(card.boot, "phonehome.toml"), os.path.join(card.boot, "phonehome-wifi.txt")
    with open(bad, "w") as f:
        f.write('[heartbeat]\ninterval_s = -1\n')
    with open(good, "w") as f:
        f.write("ssid=Home\npassword=long enough\n")
    assert len(run(card, now_wall=NOW)) == 1
    assert not os.path.exists(good) and os.path.exists(_connection(card, "Home"))  # one bad file holds up no other
    with open(bad, "w") as f:
        f.write(CONFIG)
    assert run(card, now_wall=NOW + 60) == []
    assert sorted(os.listdir(card.boot)) == ["cmdline.txt", "phonehome-imported.txt"]
    assert load_config(card.config_path).device.name == "home"


def test_a_second_boot_with_nothing_new_changes_nothing(card):
    for name, text in (("authorized_keys", KEY + "\n"), ("phonehome-wifi.txt", "ssid=Home\npassword=long enough\n"
                                                                                 "country=DE\n")):
        with open(os.path.join(card.boot, name), "w") as f:
            f.write(text)
    run(card, now_wall=NOW)
    first = open(_connection(card, "Home")).read()
    # The same files again: the same connection (its UUID kept), no key twice, cmdline.txt as it was.
    for name, text in (("authorized_keys", KEY + "\n"), ("phonehome-wifi.txt", "ssid=Home\npassword=long enough\n"
                                                                                 "country=DE\n")):
        with open(os.path.join(card.boot, name), "w") as f:
            f.write(text)
    assert run(card, now_wall=NOW) == []
    assert open(_connection(card, "Home")).read() == first
    assert open(os.path.join(card.root, "root/.ssh/authorized_keys")).read() == KEY + "\n"
    assert open(os.path.join(card.boot, "cmdline.txt")).read().count("regdom") == 1
    before = _tree(card.root), _tree(card.boot)
    assert run(card, now_wall=NOW + 60) == [] and (_tree(card.root), _tree(card.boot)) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another user needs root")
def test_the_config_belongs_to_its_directory_s_owner(card):
    os.chown(os.path.dirname(card.config_path), 4321, 4322)
    with open(os.path.join(card.boot, "phonehome.toml"), "w") as f:
        f.write(CONFIG)
    assert run(card, now_wall=NOW) == []
    for path in (card.config_path, card.config_path + ".bak"):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4321, 4322, 0o600)


def test_keys_are_refused_on_a_read_only_root(card):
    card = Card(boot=card.boot, root=card.root, config_path=card.config_path, read_only_root=True)
    with open(os.path.join(card.boot, "authorized_keys"), "w") as f:
        f.write(KEY + "\n")
    before = _tree(card.root)
    assert "read-only ([system] read_only_root)" in run(card, now_wall=NOW)[0]
    assert _tree(card.root) == before and os.path.exists(os.path.join(card.boot, "authorized_keys"))


def test_a_file_windows_named_with_txt_is_pointed_out(card):
    with open(os.path.join(card.boot, "authorized_keys.txt"), "w") as f:
        f.write(KEY + "\n")
    assert run(card, now_wall=NOW) == ["authorized_keys.txt: rename it to authorized_keys (Windows adds .txt and "
                                       "hides it); it was not imported"]


def test_a_config_that_cannot_be_written_stays_on_the_card_and_others_go_on(card):
    card = Card(boot=card.boot, root=card.root, config_path=os.path.join(card.root, "missing/phonehome.toml"))
    for name, text in (("phonehome.toml", CONFIG), ("authorized_keys", KEY + "\n")):
        with open(os.path.join(card.boot, name), "w") as f:
            f.write(text)
    problems = run(card, now_wall=NOW)
    assert problems == [f"phonehome.toml: could not be imported: No such file or directory "
                        f"({os.path.join(card.root, 'missing')}); it is tried again at the next boot"]
    assert sorted(os.listdir(card.boot)) == ["cmdline.txt", "phonehome-error.txt", "phonehome-imported.txt",
                                             "phonehome.toml"]


def test_ssh_that_is_not_installed_is_said_and_nothing_is_written(card):
    os.unlink(os.path.join(card.root, "lib/systemd/system/ssh.service"))
    with open(os.path.join(card.boot, "authorized_keys"), "w") as f:
        f.write(KEY + "\n")
    before = _tree(card.root)
    assert run(card, now_wall=NOW) == ["authorized_keys: SSH is not installed on this system (no ssh.service); "
                                       "install openssh-server, then start again with the file on the card"]
    assert _tree(card.root) == before


@pytest.mark.e2e
def test_the_command_imports_into_the_root_and_exits_1_on_a_bad_file(card):
    with open(os.path.join(card.boot, "phonehome.toml"), "w") as f:
        f.write(CONFIG)
    # No --config: the config goes where it lives under --root.
    command = [PHONEHOME, "firstboot", "--boot", card.boot, "--root", card.root]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "imported phonehome.toml from the boot partition" in done.stderr and "s3cret" not in done.stderr
    assert load_config(card.config_path).device.name == "home"
    with open(os.path.join(card.boot, "authorized_keys"), "w") as f:
        f.write("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    done = subprocess.run(command + ["--config", card.config_path], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "PRIVATE key" in done.stderr
    assert "PRIVATE key" in open(os.path.join(card.boot, "phonehome-error.txt")).read()
    done = subprocess.run([PHONEHOME, "firstboot", "--boot", os.path.join(card.boot, "nope")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and "is not a directory; is the boot partition mounted?" in done.stderr

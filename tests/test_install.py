"""``phonehome install`` into a real root tree with the real useradd, groupadd and systemctl --root."""

import os
import shutil
import stat

import pytest

from appliance.config import load_config
from appliance.install import Plan, check_can_install, install, new_config_text
from appliance.errors import ConfigError

needs_root_tools = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("useradd", "groupadd", "usermod", "systemctl")),
    reason="needs root, useradd/groupadd/usermod (passwd) and systemctl (systemd), as on CI")


def make_root(path):
    etc = path / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\nnetdev:x:108:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\nnetdev:!::\n")
    for name in ("shadow", "gshadow"):
        os.chmod(etc / name, 0o640)
    (etc / "NetworkManager").mkdir()
    return path


def owner_name(path, root):
    uid = os.stat(path).st_uid
    for line in (root / "etc" / "passwd").read_text().splitlines():
        name, _, number = line.split(":")[:3]
        if int(number) == uid:
            return name
    return uid


@needs_root_tools
def test_install_into_a_root_tree_makes_user_files_and_enables_the_agent(tmp_path):
    root = make_root(tmp_path / "root")
    lines = []
    install(Plan(root=str(root), prefix="/opt/phonehome/venv", listen="0.0.0.0:80"), say=lines.append)
    passwd = (root / "etc" / "passwd").read_text()
    assert "phonehome:" in passwd and "/usr/sbin/nologin" in passwd
    group = (root / "etc" / "group").read_text()
    for name in ("gpio", "i2c", "spi", "netdev"):
        assert any(g.startswith(f"{name}:") and "phonehome" in g.split(":")[3] for g in group.splitlines()), name
    unit = (root / "etc/systemd/system/phonehome-agent.service").read_text()
    assert "ExecStart=/opt/phonehome/venv/bin/phonehome agent" in unit and "WatchdogSec=" in unit
    assert "Type=notify" in unit
    wants = root / "etc/systemd/system/multi-user.target.wants/phonehome-agent.service"
    assert os.path.islink(wants)
    assert not (root / "etc/systemd/system/multi-user.target.wants/phonehome-monitor.service").exists()
    config = root / "etc/phonehome/phonehome.toml"
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600 and owner_name(config, root) == "phonehome"
    assert stat.S_IMODE(os.stat(root / "etc/phonehome").st_mode) == 0o750
    assert owner_name(root / "var/lib/phonehome", root) == "phonehome"
    assert load_config(str(config)).web.listen == "0.0.0.0:80"
    assert 'GROUP="gpio"' in (root / "etc/udev/rules.d/60-phonehome-gpio.rules").read_text()
    assert '"phonehome"' in (root / "etc/polkit-1/rules.d/50-phonehome.rules").read_text()
    assert "address=/#/10.42.0.1" in (root / "etc/NetworkManager/dnsmasq-shared.d/phonehome.conf").read_text()
    assert any("user phonehome: created" in line for line in lines)

    # Again, after the appliance was set up: nothing is duplicated and the config is left alone.
    config.write_text('[device]\nname = "home"\n')
    again = []
    install(Plan(root=str(root), prefix="/opt/phonehome/venv", monitor=True), say=again.append)
    assert config.read_text() == '[device]\nname = "home"\n'
    assert [line.split(":")[0] for line in (root / "etc" / "passwd").read_text().splitlines()] == ["root", "phonehome"]
    assert any("user phonehome: already there" in line for line in again)
    assert any("phonehome-agent.service: already up to date" in line for line in again)
    assert os.path.islink(root / "etc/systemd/system/multi-user.target.wants/phonehome-monitor.service")


def test_a_bad_listen_address_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="web.listen"):
        new_config_text("not-an-address")
    with pytest.raises(ConfigError):
        install(Plan(root=str(tmp_path), listen="0.0.0.0:99999"), say=lambda line: None)
    assert os.listdir(tmp_path) == []


def test_install_refuses_outside_a_venv_and_without_root():
    assert "virtual environment" in check_can_install(prefix="/usr", base_prefix="/usr", euid=0)
    assert "sudo /opt/v/bin/phonehome install" in check_can_install(prefix="/opt/v", base_prefix="/usr", euid=1000)
    assert check_can_install(prefix="/opt/v", base_prefix="/usr", euid=0) is None

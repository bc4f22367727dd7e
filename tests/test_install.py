"""``phonehome install`` into a real root tree with the real useradd, groupadd, usermod and systemctl --root."""

import os
import shutil
import stat
import subprocess
import sys
import sysconfig

import pytest

from appliance.config import load_config
from appliance.install import InstallError, Plan, check_can_install, install, new_config_text

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHONEHOME = os.path.join(sys.prefix, "bin", "phonehome")  # this venv's, as a user runs it
PREFIX = "/opt/phonehome/venv"

needs_root_tools = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("useradd", "groupadd", "usermod", "systemctl")),
    reason="installing creates users and chowns files: needs root and useradd/groupadd/usermod (passwd) and "
           "systemctl (systemd), as on CI")


def make_root(path, *, prefix=PREFIX):
    """A root tree as useradd --root needs it (the four account files), with phonehome in a venv at ``prefix``."""
    etc = path / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\nnetdev:x:108:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\nnetdev:!::\n")
    for name in ("shadow", "gshadow"):
        os.chmod(etc / name, 0o640)
    (etc / "NetworkManager").mkdir()
    executable = path / prefix.lstrip("/") / "bin" / "phonehome"
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    return path


def accounts(root, name):
    """{name: fields} from the tree's /etc/passwd or /etc/group."""
    lines = (root / "etc" / name).read_text().splitlines()
    return {line.split(":")[0]: line.split(":") for line in lines}


def owned(path, root):
    """(user, group, mode) of ``path``, names looked up in the tree's own account files."""
    st = os.stat(path)
    users = {int(f[2]): n for n, f in accounts(root, "passwd").items()}
    groups = {int(f[2]): n for n, f in accounts(root, "group").items()}
    return users.get(st.st_uid, st.st_uid), groups.get(st.st_gid, st.st_gid), oct(stat.S_IMODE(st.st_mode))


def tree(root):
    """Every path in the tree with its owner, mode and content: equal before and after means nothing changed."""
    found = {}
    for directory, _, files in os.walk(root):
        for name in [None, *files]:
            path = os.path.join(directory, name) if name else directory
            st = os.lstat(path)
            content = open(path, "rb").read() if name and stat.S_ISREG(st.st_mode) else os.path.islink(path)
            found[path] = (st.st_uid, st.st_gid, st.st_mode, content)
    return found


@needs_root_tools
def test_install_into_a_root_tree_makes_the_user_the_files_and_enables_the_agent(tmp_path):
    root = make_root(tmp_path / "root")
    lines = []
    install(Plan(root=str(root), prefix=PREFIX, listen="0.0.0.0:80"), say=lines.append)

    user = accounts(root, "passwd")["phonehome"]
    assert user[5:] == ["/var/lib/phonehome", "/usr/sbin/nologin"]
    assert int(user[2]) < 1000  # a system user
    groups = accounts(root, "group")
    assert int(user[3]) == int(groups["phonehome"][2])  # its own group
    for name in ("gpio", "i2c", "spi", "netdev"):
        assert "phonehome" in groups[name][3].split(","), name
    assert not os.path.exists(root / "var/lib/phonehome/.bashrc")  # --no-create-home: nothing copied from skel

    unit = root / "etc/systemd/system/phonehome-agent.service"
    text = unit.read_text()
    assert f"ExecStart={PREFIX}/bin/phonehome agent --config /etc/phonehome/phonehome.toml" in text
    for line in ("Type=notify", "WatchdogSec=30", "SupplementaryGroups=gpio i2c spi", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ConfigurationDirectory=phonehome", "StateDirectory=phonehome"):
        assert line in text.splitlines(), line
    assert owned(unit, root) == ("root", "root", "0o644")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert os.readlink(wants / "phonehome-agent.service") == "/etc/systemd/system/phonehome-agent.service"
    assert not (root / "etc/systemd/system/phonehome-monitor.service").exists()  # only with --monitor
    assert not os.path.lexists(wants / "phonehome-monitor.service")

    config = root / "etc/phonehome/phonehome.toml"
    assert owned(root / "etc/phonehome", root) == ("phonehome", "phonehome", "0o750")
    assert owned(config, root) == ("phonehome", "phonehome", "0o600")
    assert owned(root / "var/lib/phonehome", root) == ("phonehome", "phonehome", "0o750")
    loaded = load_config(str(config), missing_ok=False)
    assert loaded.web.listen == "0.0.0.0:80"
    assert [line for line in config.read_text().splitlines() if line and not line.startswith("#")] == [
        "[web]", 'listen = "0.0.0.0:80"']  # nothing else: the agent starts "not configured"

    udev = root / "etc/udev/rules.d/60-phonehome-gpio.rules"
    assert 'KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"' in udev.read_text()
    assert 'GROUP="i2c"' in udev.read_text() and 'GROUP="spi"' in udev.read_text()
    polkit = root / "etc/polkit-1/rules.d/50-phonehome.rules"
    for needed in ('"phonehome"', "org.freedesktop.login1.reboot", "org.freedesktop.NetworkManager.",
                   "org.freedesktop.timedate1.set-timezone"):
        assert needed in polkit.read_text(), needed
    assert "power-off" not in polkit.read_text()
    for path in (udev, polkit):
        assert owned(path, root) == ("root", "root", "0o644")
    assert "address=/#/10.42.0.1" in (root / "etc/NetworkManager/dnsmasq-shared.d/phonehome.conf").read_text()
    for said in ("group gpio: created", "user phonehome: created", "user phonehome: added to gpio, i2c, spi, netdev",
                 "/etc/phonehome/phonehome.toml: written", "phonehome-agent.service: enabled"):
        assert any(line.startswith(said) for line in lines), (said, lines)
    assert lines[-1].startswith("done: the web page is at http://<this device's address>/ once phonehome-agent runs")


@needs_root_tools
def test_installing_again_changes_nothing_and_never_touches_the_config(tmp_path):
    root = make_root(tmp_path / "root")
    install(Plan(root=str(root), prefix=PREFIX), say=lambda line: None)
    config = root / "etc/phonehome/phonehome.toml"
    config.write_text('[device]\nname = "home"\n[web]\nlisten = "0.0.0.0:8080"\n')  # as the page saves it
    before = tree(root)

    again = []
    install(Plan(root=str(root), prefix=PREFIX, listen="127.0.0.1:9999"), say=again.append)
    assert tree(root) == before
    for said in ("group gpio: already there", "user phonehome: already there",
                 "user phonehome: already in gpio, i2c, spi, netdev",
                 "/etc/phonehome/phonehome.toml: already there, left as it is",
                 "/etc/systemd/system/phonehome-agent.service: already up to date",
                 "phonehome-agent.service: already enabled"):
        assert said in again, (said, again)
    assert again[-1].startswith("done: the web page is at http://<this device's address>:8080/")  # the file's


@needs_root_tools
def test_monitor_installs_the_monitor_instead_and_no_enable_writes_without_enabling(tmp_path):
    root = make_root(tmp_path / "root")
    install(Plan(root=str(root), prefix=PREFIX, monitor=True, enable=False), say=lambda line: None)
    system = root / "etc/systemd/system"
    assert f"ExecStart={PREFIX}/bin/phonehome monitor" in (system / "phonehome-monitor.service").read_text()
    assert not (system / "multi-user.target.wants").exists()

    install(Plan(root=str(root), prefix=PREFIX, monitor=True), say=lambda line: None)
    unit = "phonehome-monitor.service"
    assert os.readlink(system / "multi-user.target.wants" / unit) == f"/etc/systemd/system/{unit}"
    # Not both: an agent with a [monitor] table would run a second monitor on the same port and data_dir.
    assert not (system / "multi-user.target.wants" / "phonehome-agent.service").exists()


@needs_root_tools
def test_the_command_installs_units_for_the_venv_it_runs_from(tmp_path):
    root = make_root(tmp_path / "root", prefix=sys.prefix)
    done = subprocess.run([PHONEHOME, "install", "--root", str(root), "--listen", "127.0.0.1:8080", "--no-enable"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"ExecStart={PHONEHOME} agent" in (root / "etc/systemd/system/phonehome-agent.service").read_text()
    assert load_config(str(root / "etc/phonehome/phonehome.toml")).web.listen == "127.0.0.1:8080"
    assert "written, not enabled (--no-enable)" in done.stdout
    assert "done: the web page is at http://127.0.0.1:8080/" in done.stdout


@needs_root_tools
@pytest.mark.parametrize("options, says", [
    (["--listen", "0.0.0.0:99999"], "--listen: must be HOST:PORT with a port from 1 to 65535"),
    (["--listen", "nowhere"], "--listen: must be HOST:PORT"),
])
def test_a_bad_listen_address_is_refused_by_name_before_anything_is_written(tmp_path, options, says):
    root = make_root(tmp_path / "root", prefix=sys.prefix)
    before = tree(root)
    done = subprocess.run([PHONEHOME, "install", "--root", str(root), *options],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert says in done.stderr and "nothing was changed" in done.stderr
    assert tree(root) == before


def test_a_root_that_is_not_a_directory_or_a_venv_without_phonehome_is_refused(tmp_path):
    with pytest.raises(InstallError, match="--root: .* is not a directory"):
        install(Plan(root=str(tmp_path / "missing")), say=lambda line: None)
    with pytest.raises(InstallError, match="/opt/v/bin/phonehome is missing inside"):
        install(Plan(root=str(tmp_path), prefix="/opt/v"), say=lambda line: None)
    with pytest.raises(InstallError, match="blank"):
        install(Plan(root=str(tmp_path), prefix="/opt/my venv"), say=lambda line: None)
    assert os.listdir(tmp_path) == []


def test_the_first_config_is_only_the_listen_address_and_validates():
    text = new_config_text("[::]:8080")
    assert [line for line in text.splitlines() if not line.startswith("#")] == ["[web]", 'listen = "[::]:8080"']
    with pytest.raises(InstallError, match='--listen: .*got \'0.0.0.0:80" \\[x\\]'):
        new_config_text('0.0.0.0:80" [x]')  # quoted by the TOML writer, so refused as an address


def test_refusals_say_what_to_run_instead():
    assert "sudo /opt/phonehome/venv/bin/phonehome install" in check_can_install(prefix="/usr", base_prefix="/usr",
                                                                                 euid=0)
    assert "sudo /opt/v/bin/phonehome install" in check_can_install(prefix="/opt/v", base_prefix="/usr", euid=1000)
    assert check_can_install(prefix="/opt/v", base_prefix="/usr", euid=0) is None


def test_the_command_refuses_to_run_outside_a_virtual_environment(tmp_path):
    # The interpreter this venv was made from, with the venv's libraries on its path: phonehome runs, no venv.
    python = os.path.join(sys.base_prefix, "bin", "python3")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, sysconfig.get_path("purelib")]))
    done = subprocess.run([python, "-m", "appliance", "install", "--root", str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "not running from a virtual environment" in done.stderr
    assert "sudo python3 -m venv /opt/phonehome/venv" in done.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to become another user")
def test_the_command_refuses_to_run_without_root(tmp_path):
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PHONEHOME, "install",
                           "--root", str(tmp_path)], capture_output=True, text=True, timeout=60)
    if done.returncode in (126, 127) or "Permission denied" in done.stderr:
        pytest.skip(f"user nobody cannot run this venv's phonehome here: {done.stderr.strip()}")
    assert done.returncode == 2, done.stderr
    assert f"needs root; run: sudo {sys.prefix}/bin/phonehome install" in done.stderr
    assert os.listdir(tmp_path) == []

"""The read-only root: the flag the agent keeps, what /proc/mounts says, and the initramfs script for real."""

import os
import shutil
import subprocess

import pytest

from appliance import rootfs

SCRIPT = os.path.join(os.path.dirname(rootfs.__file__), "system", "initramfs", "phonehome-overlay")
MOUNTS_OVERLAY = """/dev/mmcblk0p2 /run/phonehome-root/base ext4 ro,noatime 0 0
phonehome-ram /run/phonehome-root/ram tmpfs rw 0 0
phonehome-root / overlay rw,lowerdir=/run/phonehome-root/base 0 0
/dev/mmcblk0p2 /etc/phonehome ext4 rw,noatime 0 0
"""
MOUNTS_PLAIN = "/dev/mmcblk0p2 / ext4 rw,noatime 0 0\nproc /proc proc rw 0 0\n"


def test_flag_follows_the_setting(tmp_path):
    config = tmp_path / "phonehome.toml"
    assert rootfs.set_flag(str(config), True) is True
    assert (tmp_path / "read-only-root").exists()
    assert rootfs.set_flag(str(config), True) is False
    assert rootfs.set_flag(str(config), False) is True
    assert not (tmp_path / "read-only-root").exists()


@pytest.mark.parametrize("mounts, flag, text", [
    (MOUNTS_PLAIN, False, "writable"),
    (MOUNTS_PLAIN, True, "writable; read-only after the next reboot"),
    (MOUNTS_OVERLAY, True, "read-only (RAM overlay)"),
    (MOUNTS_OVERLAY, False, "read-only (RAM overlay); writable after the next reboot"),
])
def test_state_says_what_is_mounted_and_what_comes(tmp_path, mounts, flag, text):
    (tmp_path / "mounts").write_text(mounts)
    config = tmp_path / "phonehome.toml"
    rootfs.set_flag(str(config), flag)
    assert rootfs.state(str(config), mounts=str(tmp_path / "mounts")).text == text


STUBS = """log_warning_msg() { echo "warning: $*"; }
log_success_msg() { echo "success: $*"; }
"""

SCENARIO = r"""
set -e
R=$1 T=$2
mount -t tmpfs root-under-test "$R"
mkdir -p "$R/etc/phonehome" "$R/var/lib/phonehome" "$R/etc/NetworkManager/system-connections" "$R/run"
echo base > "$R/etc/hostname"
printf 'LABEL=phonehome-root  /  ext4  defaults,noatime  0  1\nLABEL=PHONEHOME  /boot/firmware  vfat  defaults  0  2\n' \
    > "$R/etc/fstab"
[ "$FLAG" = yes ] && touch "$R/etc/phonehome/read-only-root"
rootmnt=$R PHONEHOME_FUNCTIONS=$T/stubs PHONEHOME_CMDLINE=$T/cmdline PHONEHOME_RUN=$T/run sh "$SCRIPT"
echo changed > "$R/etc/hostname"
echo saved > "$R/etc/phonehome/phonehome.toml"
echo state > "$R/var/lib/phonehome/state.json"
B=$T/run/phonehome-root/base
if [ -d "$B/etc" ]; then
    echo "base hostname: $(cat "$B/etc/hostname")"
    echo "base config: $(cat "$B/etc/phonehome/phonehome.toml")"
    echo "base state: $(cat "$B/var/lib/phonehome/state.json")"
    touch "$B/etc/new-file" 2>/dev/null && echo "base writable" || echo "base read-only"
    grep -c ' / ' "$R/etc/fstab" || true
    grep -c 'boot/firmware' "$R/etc/fstab"
else
    echo "no overlay; hostname now $(cat "$R/etc/hostname")"
fi
"""


def overlay_boot(tmp_path, *, flag, cmdline="root=LABEL=phonehome-root rw rootwait"):
    (tmp_path / "stubs").write_text(STUBS)
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    (tmp_path / "root").mkdir()
    env = dict(os.environ, SCRIPT=SCRIPT, FLAG="yes" if flag else "no")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", SCENARIO, "scenario",
                           str(tmp_path / "root"), str(tmp_path)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


needs_mounts = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare")
                                  or "overlay" not in open("/proc/filesystems").read(),
                                  reason="needs root, unshare and the overlay file system (as on CI)")


@needs_mounts
def test_with_the_flag_the_root_is_an_overlay_and_the_state_stays_writable(tmp_path):
    out = overlay_boot(tmp_path, flag=True)
    assert "success: phonehome: root file system read-only" in out
    assert "base hostname: base" in out  # the change went to RAM
    assert "base config: saved" in out and "base state: state" in out  # these reach the card
    assert "base read-only" in out
    assert out.strip().splitlines()[-2:] == ["0", "1"]  # the overlay's fstab has no root line, keeps the rest


@needs_mounts
def test_without_the_flag_or_with_the_rescue_switch_nothing_changes(tmp_path):
    assert "no overlay; hostname now changed" in overlay_boot(tmp_path, flag=False)
    other = tmp_path / "second"
    other.mkdir()
    out = overlay_boot(other, flag=True, cmdline="root=LABEL=phonehome-root rw phonehome.overlay=off")
    assert "off for this boot" in out and "no overlay; hostname now changed" in out


def test_the_script_is_valid_posix_sh():
    for name in ("phonehome-overlay", "phonehome-overlay-hook"):
        path = os.path.join(os.path.dirname(SCRIPT), name)
        assert subprocess.run(["sh", "-n", path]).returncode == 0
        assert os.access(path, os.X_OK)
        assert subprocess.run(["sh", path, "prereqs"], capture_output=True, text=True).stdout.strip() == ""

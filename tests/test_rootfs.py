"""The read-only root's flag beside the config, and what rootfs.state makes of /proc/mounts and the boot report.
The initramfs script itself runs for real in test_rootfs_overlay.py."""

import os

import pytest

from appliance import rootfs

OVERLAY_OPTIONS = "rw,relatime,lowerdir=/run/rootfs-base,upperdir=/run/rootfs-rw/upper,workdir=/run/rootfs-rw/work"
# As on an appliance booted with the overlay: the card under /run, the binds back from it, the rootfs first.
MOUNTS_OVERLAY = """\
rootfs / rootfs rw 0 0
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
/dev/mmcblk0p2 /run/rootfs-base ext4 ro,noatime,commit=30 0 0
rootfs-rw /run/rootfs-rw tmpfs rw,relatime,mode=755 0 0
rootfs-overlay / overlay {overlay_options} 0 0
/dev/mmcblk0p2 /etc/phonehome ext4 rw,noatime,commit=30 0 0
/dev/mmcblk0p2 /var/lib/phonehome ext4 rw,noatime,commit=30 0 0
""".format(overlay_options=OVERLAY_OPTIONS)
MOUNTS_WRITABLE = "/dev/mmcblk0p2 / ext4 rw,noatime,commit=30 0 0\nproc /proc proc rw,relatime 0 0\n"
MOUNTS_READ_ONLY = "/dev/mmcblk0p2 / ext4 ro,relatime 0 0\n"
# An overlay somewhere else (a container's) is not the root.
MOUNTS_OTHER_OVERLAY = MOUNTS_WRITABLE + "overlay /var/lib/docker/x overlay rw,lowerdir=/a 0 0\n"


def test_the_flag_sits_beside_the_config_file(tmp_path):
    assert rootfs.flag_path(str(tmp_path / "phonehome.toml")) == str(tmp_path / "read-only-root")
    assert rootfs.flag_path("/etc/phonehome/phonehome.toml") == "/etc/phonehome/read-only-root"


def test_the_flag_follows_the_setting_and_an_existing_one_is_left_alone(tmp_path):
    config = str(tmp_path / "phonehome.toml")
    flag = tmp_path / "read-only-root"
    assert rootfs.set_flag(config, True) is True
    assert "read_only_root" in flag.read_text()
    os.utime(flag, (1000, 1000))
    assert rootfs.set_flag(config, True) is False
    assert flag.stat().st_mtime == 1000  # not rewritten: its age says since when it is set
    assert rootfs.set_flag(config, False) is True
    assert not flag.exists()
    assert rootfs.set_flag(config, False) is False


def test_a_flag_that_cannot_be_written_raises(tmp_path):
    with pytest.raises(OSError):
        rootfs.set_flag(str(tmp_path / "missing-dir" / "phonehome.toml"), True)


@pytest.mark.parametrize("text, found", [
    (MOUNTS_OVERLAY, ("overlay", OVERLAY_OPTIONS)),
    (MOUNTS_WRITABLE, ("ext4", "rw,noatime,commit=30")),
    (MOUNTS_OTHER_OVERLAY, ("ext4", "rw,noatime,commit=30")),
    ("", ("", "")),
    ("garbage\n\n/ /\n", ("", "")),
])
def test_the_mount_of_root_in_effect_is_the_last_one_listed(text, found):
    assert rootfs.root_mount(text) == found


STATES = [
    # mounts, flag, boot report, mounted, reboot pending, text
    (MOUNTS_WRITABLE, False, "", "writable", False, "writable"),
    (MOUNTS_WRITABLE, True, "", "writable", True, "writable; read-only (overlay) after the next reboot"),
    (MOUNTS_OVERLAY, True, "on\n", "read-only (overlay)", False, "read-only (overlay)"),
    (MOUNTS_OVERLAY, False, "on\n", "read-only (overlay)", True, "read-only (overlay); writable after the next reboot"),
    (MOUNTS_OTHER_OVERLAY, False, "", "writable", False, "writable"),
    (MOUNTS_READ_ONLY, False, "", "read-only", False, "read-only"),
    (MOUNTS_READ_ONLY, True, "", "read-only", True, "read-only; read-only (overlay) after the next reboot"),
    (MOUNTS_WRITABLE, True, "failed: cannot mount the overlay\n", "writable", True,
     "writable: the read-only root was not set up at this boot (cannot mount the overlay)"),
    (MOUNTS_WRITABLE, True, "off: phonehome.overlay=off is on the kernel command line\n", "writable", True,
     ("writable: the read-only root was not set up at this boot (phonehome.overlay=off is on the kernel command "
      "line)")),
    # The flag was removed after a boot whose overlay failed: nothing is asked for, nothing to explain.
    (MOUNTS_WRITABLE, False, "failed: cannot mount the overlay\n", "writable", False, "writable"),
    ("", False, "", "writable", False, "writable"),
]


@pytest.mark.parametrize("mounts, flag, report, mounted, pending, text", STATES)
def test_describe_says_what_is_mounted_and_what_a_reboot_changes(mounts, flag, report, mounted, pending, text):
    state = rootfs.describe(mounts, wanted=flag, report=report)
    assert (state.mounted, state.reboot_pending, state.text) == (mounted, pending, text)


@pytest.mark.parametrize("mounts, flag, report, mounted, pending, text", STATES)
def test_state_reads_the_files(tmp_path, mounts, flag, report, mounted, pending, text):
    (tmp_path / "mounts").write_text(mounts)
    (tmp_path / "report").write_text(report)
    config = str(tmp_path / "phonehome.toml")
    rootfs.set_flag(config, flag)
    state = rootfs.state(config, mounts=str(tmp_path / "mounts"), boot_report=str(tmp_path / "report"))
    assert (state.mounted, state.wanted, state.reboot_pending, state.text) == (mounted, flag, pending, text)


def test_state_without_its_files_or_a_config_file_says_writable(tmp_path):
    state = rootfs.state("", mounts=str(tmp_path / "none"), boot_report=str(tmp_path / "none"))
    assert (state.mounted, state.wanted, state.reboot_pending) == ("writable", False, False)


def test_state_reads_this_machines_proc_mounts(tmp_path):
    with open("/proc/mounts") as f:
        expected = rootfs.describe(f.read(), wanted=False).mounted
    assert rootfs.state(str(tmp_path / "phonehome.toml"), boot_report=str(tmp_path / "none")).mounted == expected

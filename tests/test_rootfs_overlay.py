"""The initramfs script phonehome-overlay, run for real.

Each test boots a stand-in card: an ext4 image mounted where the initramfs mounts the root (``rootmnt``),
inside a private mount namespace (``unshare --mount``, as root) with a tmpfs on /run as in an initramfs. The
script runs under dash and under klibc's sh (the image's initramfs has no busybox) with a PATH that holds only
the tools an initramfs has, and the initramfs's log function stubbed. Then init's last step is played (/run
moves into the new root), the booted system writes, and everything is unmounted: what reached the card is read
from the image with debugfs, as after a power cut.
"""

import os
import shutil
import subprocess

import pytest

from appliance import rootfs

HERE = os.path.dirname(rootfs.__file__)
SCRIPT = os.path.join(HERE, "system", "initramfs", "phonehome-overlay")
HOOK = os.path.join(HERE, "system", "initramfs", "phonehome-overlay-hook")
KLIBC = "/usr/lib/klibc/bin"

# /scripts/functions in the initramfs; the script uses only this of it.
STUBS = 'log_warning_msg() { echo "Warning: $*"; }\n'

FSTAB = """\
# The SD card.
LABEL=phonehome-root  /              ext4  defaults,noatime,commit=30  0  1
LABEL=PHONEHOME       /boot/firmware vfat  defaults,noatime,umask=0077,flush  0  2
"""

# Fails the mount whose arguments contain $FAIL_ON, to show that a failure at any step leaves the normal root.
FAILING_MOUNT = """#!/bin/sh
case " $* " in
*"$FAIL_ON"*) echo "mount: refused by the test" >&2; exit 32 ;;
esac
exec {mount} "$@"
"""

BOOT = r"""
set -eu
T=$1 R=$1/root
mount -t tmpfs initramfs-run /run
mount -o loop "$T/card.img" "$R"
mkdir -p "$R/etc/phonehome" "$R/var/lib/phonehome" "$R/etc/NetworkManager" "$R/run"
echo card > "$R/etc/hostname"
cp "$T/fstab" "$R/etc/fstab"
if [ "$FLAG" = yes ]; then echo set > "$R/etc/phonehome/read-only-root"; fi
if [ "$ROOT_RO" = yes ]; then mount -o remount,ro "$R"; fi
: > "$T/kmsg"
mount -o bind "$T/kmsg" /dev/kmsg

env -i PATH="$T/tools" FAIL_ON="$FAIL_ON" rootmnt="$R" PHONEHOME_OVERLAY_CMDLINE="$T/cmdline" \
    STUBS="$T/stubs" SCRIPT="$SCRIPT" "$SHELL_UNDER_TEST" -c '. "$STUBS"; . "$SCRIPT"' > "$T/console" 2>&1

# init: /run goes into the new root, with the script's mounts under it.
mount -o move /run "$R/run"
cat /proc/self/mountinfo > "$T/mountinfo"
cp "$R/etc/fstab" "$T/fstab-seen"
cat "$R/run/phonehome-overlay" > "$T/report" 2>/dev/null || true
if touch "$R/run/rootfs-base/etc/written" 2>/dev/null; then echo yes > "$T/base-writable"; fi

# The booted system writes.
echo changed > "$R/etc/hostname"
mkdir -p "$R/var/lib/systemd/timesync" "$R/etc/NetworkManager/system-connections"
for f in etc/phonehome/phonehome.toml var/lib/phonehome/state.json var/lib/systemd/timesync/clock \
         etc/NetworkManager/system-connections/Home.nmconnection; do
    echo written > "$R/$f"
done
umount -R "$R"
"""


def card_file(image, path):
    """The text of ``path`` on the ext4 image (None when it is not there), read without mounting it."""
    done = subprocess.run(["debugfs", "-R", f"cat {path}", image], capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 and "not found" not in done.stderr else None


def mounts_under(mountinfo, root):
    """{mount point relative to ``root``: (type, per-mount options, superblock options)} from mountinfo text."""
    found = {}
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, kind = left.split(), right.split()
        point = fields[4]
        if point == root or point.startswith(root + "/"):
            found[point[len(root):] or "/"] = (kind[0], fields[5], kind[2])
    return found


class Boot:
    """What one boot of the stand-in card showed."""

    def __init__(self, tmp_path, shell, *, flag=True, cmdline="root=LABEL=phonehome-root rw rootwait",
                 root_ro=False, fail_on=""):
        self.dir = tmp_path
        self.image = str(tmp_path / "card.img")
        (tmp_path / "root").mkdir()
        (tmp_path / "stubs").write_text(STUBS)
        (tmp_path / "cmdline").write_text(cmdline + "\n")
        (tmp_path / "fstab").write_text(FSTAB)
        _tools(tmp_path / "tools", failing=bool(fail_on))
        subprocess.run(["truncate", "-s", "16M", self.image], check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", self.image], check=True)
        env = dict(os.environ, SCRIPT=SCRIPT, SHELL_UNDER_TEST=shell, FLAG="yes" if flag else "no",
                   ROOT_RO="yes" if root_ro else "no", FAIL_ON=fail_on)
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", BOOT, "boot",
                               str(tmp_path)], capture_output=True, text=True, env=env, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        self.console = self._text("console")
        self.kernel_log = self._text("kmsg")
        self.report = self._text("report").strip()
        self.fstab = self._text("fstab-seen")
        self.base_writable = (tmp_path / "base-writable").exists()
        self.mounts = mounts_under(self._text("mountinfo"), str(tmp_path / "root"))

    def _text(self, name):
        path = self.dir / name
        return path.read_text() if path.exists() else ""

    def on_card(self, path):
        return card_file(self.image, path)


def _tools(directory, *, failing):
    """The commands an initramfs has besides the shell's builtins: klibc's mkdir (the host's when klibc is not
    installed), modprobe, and util-linux's mount and umount (the hook adds that mount)."""
    directory.mkdir()
    klibc_mkdir = os.path.join(KLIBC, "mkdir")
    links = {"mkdir": klibc_mkdir if os.path.exists(klibc_mkdir) else shutil.which("mkdir"),
             "umount": shutil.which("umount"), "modprobe": shutil.which("modprobe") or "/sbin/modprobe"}
    for name, target in links.items():
        if target and os.path.exists(target):
            os.symlink(target, directory / name)
    if failing:
        (directory / "mount").write_text(FAILING_MOUNT.format(mount=shutil.which("mount")))
        (directory / "mount").chmod(0o755)
    else:
        os.symlink(shutil.which("mount"), directory / "mount")


def _can_boot():
    if os.geteuid() != 0:
        return "needs root (mount namespaces, loop devices)"
    for tool in ("unshare", "mkfs.ext4", "debugfs", "mount", "umount"):
        if not shutil.which(tool):
            return f"needs {tool}"
    with open("/proc/filesystems") as f:
        if "overlay" not in f.read():
            return "needs the overlay file system in the kernel"
    return None


@pytest.fixture(params=["dash", "klibc"])
def shell(request):
    """The shells the script must work in: dash, and klibc's sh, which is the image's initramfs's."""
    missing = _can_boot()
    if missing:
        pytest.skip(missing)
    path = shutil.which("dash") if request.param == "dash" else os.path.join(KLIBC, "sh")
    if not path or not os.path.exists(path):
        pytest.skip(f"{request.param} is not installed (apt-get install {request.param}"
                    f"{'-utils' if request.param == 'klibc' else ''})")
    return path


def test_with_the_flag_root_is_an_overlay_and_only_the_kept_paths_reach_the_card(tmp_path, shell):
    boot = Boot(tmp_path, shell)
    assert boot.report == "on", boot.console
    assert boot.console == ""  # nothing to warn about
    assert "phonehome-overlay: the root file system is a RAM overlay" in boot.kernel_log
    assert boot.mounts["/"][0] == "overlay"
    # The card's own mount is read-only, its superblock writable for the binds, which stay writable.
    assert boot.mounts["/run/rootfs-base"] == ("ext4", boot.mounts["/run/rootfs-base"][1], "rw")
    assert boot.mounts["/run/rootfs-base"][1].split(",")[0] == "ro"
    assert not boot.base_writable
    assert boot.mounts["/run/rootfs-rw"][0] == "tmpfs"
    for kept in ("/etc/phonehome", "/var/lib/phonehome", "/var/lib/systemd/timesync",
                 "/etc/NetworkManager/system-connections"):
        kind, options, _ = boot.mounts[kept]
        assert kind == "ext4" and options.split(",")[0] == "rw", kept
    # After the power is gone: the change to / was in RAM, the kept paths are on the card.
    assert boot.on_card("/etc/hostname") == "card\n"
    for kept in ("/etc/phonehome/phonehome.toml", "/var/lib/phonehome/state.json", "/var/lib/systemd/timesync/clock",
                 "/etc/NetworkManager/system-connections/Home.nmconnection"):
        assert boot.on_card(kept) == "written\n", kept
    assert boot.on_card("/etc/written") is None


def test_the_overlays_fstab_has_no_line_for_root_and_the_cards_is_unchanged(tmp_path, shell):
    boot = Boot(tmp_path, shell)
    lines = boot.fstab.splitlines()
    assert "#LABEL=phonehome-root  /              ext4  defaults,noatime,commit=30  0  1" in lines
    assert any(line.startswith("# phonehome-overlay: / is a RAM overlay") for line in lines)
    assert [line for line in lines if not line.startswith("#")] == [FSTAB.splitlines()[2]]
    # systemd-remount-fs remounts only what fstab lists for /, /usr or an API file system: nothing here.
    assert not [line for line in lines if not line.startswith("#") and line.split()[1] in ("/", "/usr")]
    assert boot.on_card("/etc/fstab") == FSTAB


def test_a_root_mounted_read_only_by_the_initramfs_still_keeps_the_paths_writable(tmp_path, shell):
    boot = Boot(tmp_path, shell, root_ro=True, cmdline="root=LABEL=phonehome-root ro rootwait")
    assert boot.report == "on", boot.console
    assert boot.mounts["/run/rootfs-base"][2] == "rw"
    assert boot.on_card("/etc/phonehome/phonehome.toml") == "written\n"
    assert boot.on_card("/etc/hostname") == "card\n"


def test_without_the_flag_nothing_changes(tmp_path, shell):
    boot = Boot(tmp_path, shell, flag=False)
    assert (boot.report, boot.console, boot.kernel_log) == ("", "", "")
    assert boot.mounts["/"][0] == "ext4" and "/run/rootfs-base" not in boot.mounts
    assert boot.on_card("/etc/hostname") == "changed\n"


@pytest.mark.parametrize("cmdline, says", [
    ("root=LABEL=phonehome-root rw phonehome.overlay=off rootwait", "phonehome.overlay=off on the kernel command line"),
    ("root=LABEL=phonehome-root rw phonehome.overlay=of", "phonehome.overlay=of is not understood"),
])
def test_the_rescue_switch_on_the_kernel_command_line_keeps_the_normal_root(tmp_path, shell, cmdline, says):
    boot = Boot(tmp_path, shell, cmdline=cmdline)
    assert boot.console.startswith(f"Warning: phonehome-overlay: {says}")
    assert says in boot.kernel_log
    assert boot.report.startswith("off: ")
    assert boot.mounts["/"][0] == "ext4" and "/run/rootfs-base" not in boot.mounts
    assert boot.on_card("/etc/hostname") == "changed\n"
    assert rootfs.describe("x / ext4 rw 0 0", wanted=True, report=boot.report).problem.startswith("phonehome.overlay")


@pytest.mark.parametrize("fail_on, why", [
    ("-t tmpfs", "cannot mount a tmpfs on /run/rootfs-rw"),
    ("-t overlay", "cannot mount the overlay (is the overlay module in the initramfs?)"),
    ("system-connections ", "cannot bind /etc/NetworkManager/system-connections from the card"),
])
def test_a_step_that_fails_is_undone_and_the_normal_root_boots(tmp_path, shell, fail_on, why):
    boot = Boot(tmp_path, shell, fail_on=fail_on)
    assert boot.report == f"failed: {why}"
    assert f"Warning: phonehome-overlay: {why}; the root file system stays writable this boot" in boot.console
    assert why in boot.kernel_log
    # Only the card, as if the script had not run: no overlay, no tmpfs, no binds left behind.
    assert set(boot.mounts) == {"/", "/run"} and boot.mounts["/"][0] == "ext4", boot.mounts
    assert boot.fstab == FSTAB
    assert boot.on_card("/etc/hostname") == "changed\n"


def test_the_scripts_are_posix_sh_and_answer_prereqs():
    for path in (SCRIPT, HOOK):
        assert os.access(path, os.X_OK), path
        assert subprocess.run(["sh", "-n", path], check=False).returncode == 0, path
        done = subprocess.run(["sh", path, "prereqs"], capture_output=True, text=True, check=False)
        assert (done.returncode, done.stdout) == (0, "\n"), path


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="needs shellcheck (apt-get install shellcheck)")
def test_shellcheck_finds_nothing():
    done = subprocess.run(["shellcheck", "-s", "sh", SCRIPT, HOOK], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout

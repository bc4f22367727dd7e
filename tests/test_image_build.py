"""The SD image's own logic: partition layout, the assembled card (real mtools, mke2fs, sfdisk), tree digests."""

import json
import os
import shutil
import subprocess

import pytest

from image import disk, tree, wheels

TOOLS = ("mkfs.vfat", "mcopy", "mke2fs", "e2fsck", "sfdisk")


def test_layout_leaves_room_and_rounds_to_64_mib():
    boot_start, boot, root_start, root = disk.layout(700 * disk.MIB)
    assert (boot_start, boot, root_start) == (8, 256, 264)
    assert root % 64 == 0 and root * disk.MIB >= 700 * disk.MIB * 1.25 + 256 * disk.MIB
    assert disk.layout(0)[3] == 256


def test_sfdisk_script_is_mbr_fat32_then_linux():
    script = disk.sfdisk_script(8, 256, 264, 1024)
    assert "label: dos" in script
    assert "start=16384, size=524288, type=c, bootable" in script
    assert "start=540672, size=2097152, type=83" in script


def make_tree(path, epoch_now):
    (path / "boot" / "firmware").mkdir(parents=True)
    (path / "boot" / "firmware" / "config.txt").write_text("arm_64bit=1\n")
    (path / "boot" / "firmware" / "cmdline.txt").write_text("root=LABEL=phonehome-root rw\n")
    (path / "etc").mkdir()
    (path / "etc" / "hostname").write_text("phonehome\n")
    os.symlink("/etc/hostname", path / "etc" / "name-link")
    for p in path.rglob("*"):
        os.utime(p, (epoch_now, epoch_now), follow_symlinks=False)


def test_clamped_trees_built_at_different_times_have_one_digest(tmp_path):
    epoch = 1_700_000_000
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    make_tree(a, epoch + 100)
    make_tree(b, epoch + 5000)
    assert tree.digest(a) != tree.digest(b)
    tree.clamp_times(a, epoch)
    tree.clamp_times(b, epoch)
    assert tree.digest(a) == tree.digest(b)
    (b / "etc" / "hostname").write_text("other\n")
    tree.clamp_times(b, epoch)
    assert tree.digest(a) != tree.digest(b)


@pytest.mark.skipif(not all(shutil.which(t) for t in TOOLS) or os.geteuid() != 0,
                    reason="needs root and mtools, dosfstools, e2fsprogs, fdisk (.ci/run installs them)")
def test_assembled_card_has_both_partitions_with_their_files(tmp_path):
    root = tmp_path / "root"
    make_tree(root, 1_700_000_000)
    build = tmp_path / "build"
    build.mkdir()
    raw = disk.assemble(str(root), str(build), 1_700_000_000, lambda line: None)
    table = json.loads(subprocess.run(["sfdisk", "--json", raw], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    boot, rootpart = table["partitions"]
    assert table["label"] == "dos" and boot["type"] == "c" and rootpart["type"] == "83"
    assert boot["start"] == 8 * 2048 and rootpart["start"] == boot["start"] + boot["size"]
    listing = subprocess.run(["mdir", "-b", "-i", f"{raw}@@{8 * disk.MIB}", "::/"], capture_output=True,
                             text=True, check=True).stdout
    assert "config.txt" in listing and "cmdline.txt" in listing
    root_img = tmp_path / "root.img"
    subprocess.run(["dd", f"if={raw}", f"of={root_img}", "bs=1M", f"skip={rootpart['start'] // 2048}",
                    "status=none"], check=True)
    subprocess.run(["e2fsck", "-fn", str(root_img)], check=True, capture_output=True)
    label = subprocess.run(["e2label", str(root_img)], capture_output=True, text=True, check=True).stdout
    assert label.strip() == disk.ROOT_LABEL
    # The boot files live on the FAT partition only; the root keeps an empty mount point for it, and moving them
    # out left no build-time stamp on the tree.
    assert os.listdir(root / "boot" / "firmware") == []
    assert os.stat(root / "boot").st_mtime == os.stat(root / "boot" / "firmware").st_mtime == 1_700_000_000


def test_requirements_are_all_pinned(tmp_path):
    pinned = wheels.pins(os.path.join(os.path.dirname(wheels.__file__), "requirements.txt"))
    assert ("lgpio", "0.2.2.0") in pinned and len(pinned) > 10
    loose = tmp_path / "r.txt"
    loose.write_text("flask\n")
    with pytest.raises(SystemExit, match="not pinned"):
        wheels.pins(str(loose))

"""The SD card's layout, assembled from files without loop mounts, and the files handed to users.

MBR (the Pi 3's firmware reads nothing else): a FAT32 boot partition at 8 MiB with the firmware, kernel,
initramfs and the user's pre-configuration files, then the ext4 root, which grows to fill the card at first boot.
"""

import hashlib
import json
import os
import shutil
import subprocess
import uuid

MIB = 1024 * 1024
SECTOR = 512
BOOT_START_MIB = 8
BOOT_MIB = 256
BOOT_LABEL = "PHONEHOME"
ROOT_LABEL = "phonehome-root"
DISK_ID = 0x50484F4E  # "PHON": a fixed id, so two builds give the same partition table


def layout(root_bytes):
    """Partition starts and sizes in MiB for a root tree of ``root_bytes``: (boot_start, boot, root_start, root).

    The root gets a quarter more than its files plus 256 MiB (ext4's own metadata, the first boot's logs and
    state), rounded up to 64 MiB; the first boot grows it to the card anyway.
    """
    root_mib = -(-(int(root_bytes * 1.25) + 256 * MIB) // (64 * MIB)) * 64
    return BOOT_START_MIB, BOOT_MIB, BOOT_START_MIB + BOOT_MIB, root_mib


def sfdisk_script(boot_start, boot, root_start, root):
    s = MIB // SECTOR
    return (f"label: dos\nlabel-id: {DISK_ID:#x}\nunit: sectors\n\n"
            f"start={boot_start * s}, size={boot * s}, type=c, bootable\n"
            f"start={root_start * s}, size={root * s}, type=83\n")


def tree_bytes(path):
    total = 0
    for top, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(top, name))
            total += max(st.st_size, 4096)  # ext4 allocates whole blocks
    return total


def assemble(root, build, epoch, say):
    """Write build/phonehome.img from the root tree; the boot files move out of it onto the FAT partition."""
    firmware = os.path.join(root, "boot", "firmware")
    boot_files = os.path.join(build, "boot-files")
    shutil.rmtree(boot_files, ignore_errors=True)
    os.rename(firmware, boot_files)
    os.mkdir(firmware, 0o755)
    # The move touched /boot and the new mount point: back to the clamped time, or the ext4 tree differs per build.
    for path in (firmware, os.path.dirname(firmware)):
        os.utime(path, (epoch, epoch))
    boot_start, boot, root_start, root_mib = layout(tree_bytes(root))
    say(f"boot partition {boot} MiB (FAT32 '{BOOT_LABEL}'), root {root_mib} MiB (ext4 '{ROOT_LABEL}')")
    boot_img = os.path.join(build, "boot.img")
    root_img = os.path.join(build, "root.img")
    for path in (boot_img, root_img):
        if os.path.exists(path):
            os.unlink(path)
    subprocess.run(["mkfs.vfat", "-C", "-F", "32", "-n", BOOT_LABEL, "-i", f"{DISK_ID:08x}", boot_img,
                    str(boot * 1024)], check=True, capture_output=True)
    names = sorted(os.listdir(boot_files))
    subprocess.run(["mcopy", "-s", "-p", "-m", "-i", boot_img, *[os.path.join(boot_files, n) for n in names], "::/"],
                   check=True)
    fixed = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"phonehome-root-{epoch}"))
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(epoch))
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-L", ROOT_LABEL, "-U", fixed, "-E", f"hash_seed={fixed}",
                    "-d", root, root_img, f"{root_mib}M"], check=True, env=env)
    subprocess.run(["e2fsck", "-fn", root_img], check=True, capture_output=True)
    raw = os.path.join(build, "phonehome.img")
    if os.path.exists(raw):
        os.unlink(raw)
    with open(raw, "wb") as f:
        f.truncate((root_start + root_mib) * MIB)
    subprocess.run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", raw],
                   input=sfdisk_script(boot_start, boot, root_start, root_mib), text=True, check=True)
    for image, start in ((boot_img, boot_start), (root_img, root_start)):
        subprocess.run(["dd", f"if={image}", f"of={raw}", "bs=1M", f"seek={start}", "conv=notrunc,sparse",
                        "status=none"], check=True)
        os.unlink(image)
    return raw


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def pack(raw, dist, stem, manifest, say):
    """dist/STEM.img.xz with its .sha256, .bmap and .manifest.json; return their paths."""
    xz = os.path.join(dist, f"{stem}.img.xz")
    bmap = os.path.join(dist, f"{stem}.bmap")
    say(f"compressing {os.path.getsize(raw) // MIB} MiB with xz")
    with open(xz, "wb") as out:
        subprocess.run(["xz", "--threads=0", "-6", "--stdout", raw], stdout=out, check=True)
    with open(f"{xz}.sha256", "w") as f:
        f.write(f"{sha256_of(xz)}  {os.path.basename(xz)}\n")
    subprocess.run(["bmaptool", "-q", "create", "-o", bmap, raw], check=True)
    listing = os.path.join(dist, f"{stem}.manifest.json")
    with open(listing, "w") as f:
        json.dump(dict(manifest, image=os.path.basename(xz), image_bytes=os.path.getsize(raw)), f, indent=1)
        f.write("\n")
    return [xz, f"{xz}.sha256", bmap, listing]

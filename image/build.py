"""``make image``: build the phonehome SD card image for the Raspberry Pi 3, 4 and Zero 2 W.

Stages, each printed with what it does and the time so far:

1. tools    check the build tools, make sure binfmt_misc runs arm64 programs (qemu-user)
2. wheels   the phonehome wheel from this checkout and the pinned arm64 wheels (image/requirements.txt)
3. rootfs   mmdebstrap: Debian bookworm arm64 with image/packages.txt, then image/customize.sh
4. tree     clamp every time stamp to SOURCE_DATE_EPOCH, write the manifest and the tree's digest
5. disk     FAT boot partition (mtools) + ext4 root (mke2fs -d) + MBR (sfdisk): no loop mounts
6. pack     xz, sha256 and bmap into dist/

Everything comes from Debian's archive and PyPI. Packages and wheels are kept in build/cache, so a second
build downloads nothing it already has. Needs root (mmdebstrap --mode=root, chroot).
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from image import disk, tree, wheels  # noqa: E402

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
TOOLS = {
    "mmdebstrap": "mmdebstrap", "arch-test": "arch-test", "qemu-aarch64-static": "qemu-user-static",
    "update-binfmts": "binfmt-support", "mcopy": "mtools", "mkfs.vfat": "dosfstools", "mke2fs": "e2fsprogs",
    "sfdisk": "fdisk", "xz": "xz-utils", "bmaptool": "bmap-tools",
}
BINFMT = "/proc/sys/fs/binfmt_misc"


class Progress:
    """One line per step: the stage, what it does, and the time since the build started."""

    def __init__(self, total):
        self.total, self.number, self.started = total, 0, time.monotonic()

    def stage(self, name, what):
        self.number += 1
        self.say(f"[{self.number}/{self.total} {name}] {what}")

    def say(self, line):
        elapsed = int(time.monotonic() - self.started)
        print(f"{elapsed // 60:3d}m{elapsed % 60:02d}s {line}", flush=True)


def run(*command, **kwargs):
    return subprocess.run(command, check=True, **kwargs)


def check_tools():
    missing = sorted({package for tool, package in TOOLS.items() if not shutil.which(tool)})
    if missing:
        sys.exit(f"image: missing build tools; install them with: apt-get install {' '.join(missing)}")
    if os.geteuid() != 0:
        sys.exit("image: building the image needs root (mmdebstrap --mode=root, chroot); run 'sudo make image'")


class Binfmt:
    """Run arm64 programs through qemu-user; leave binfmt_misc as it was found."""

    def __enter__(self):
        self.mounted = False
        if not os.path.exists(os.path.join(BINFMT, "register")):
            run("mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT)
            self.mounted = True
        run("update-binfmts", "--enable", "qemu-aarch64")
        done = subprocess.run(["arch-test", "arm64"], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"image: this machine cannot run arm64 programs through qemu-user ({done.stdout.strip()}); "
                     f"check that qemu-user-static and binfmt-support are installed")
        return self

    def __exit__(self, *exc):
        if self.mounted:
            subprocess.run(["umount", BINFMT], check=False)


def build_root(build, cache, wheel_dir, version, progress):
    root = os.path.join(build, "root")
    if os.path.exists(root):
        shutil.rmtree(root)
    debs = os.path.join(cache, "debs")
    os.makedirs(debs, exist_ok=True)
    packages = tree.read_list(os.path.join(HERE, "packages.txt"))
    progress.say(f"mmdebstrap {SUITE} arm64 with {len(packages)} packages ({len(os.listdir(debs))} in the cache)")
    run("mmdebstrap", "--mode=root", "--arch=arm64", "--variant=minbase", "--components=main,non-free-firmware",
        "--include=" + ",".join(packages), "--skip=download/empty", "--aptopt=Acquire::Retries 3",
        # Our /etc/default/raspi-firmware is in place before the package: keep it, do not ask.
        "--dpkgopt=force-confdef", "--dpkgopt=force-confold",
        # No manuals, translations or docs on an appliance (the licences stay): about 75 MB less to write.
        *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("man", "locale", "doc", "info")),
        "--dpkgopt=path-include=/usr/share/doc/*/copyright", "--dpkgopt=path-include=/usr/share/locale/locale.alias",
        "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives",
        f"--setup-hook=sync-in {debs} /var/cache/apt/archives/",
        # Our files (the initramfs hook and raspi-firmware's settings among them) are in place before the
        # kernel's packages run their hooks, so the initramfs and cmdline.txt are made once, and right.
        f"--essential-hook={os.path.join(HERE, 'essential.sh')} \"$1\"",
        f"--customize-hook={os.path.join(HERE, 'customize.sh')} \"$1\" {wheel_dir} {version}",
        f"--customize-hook=sync-out /var/cache/apt/archives {debs}",
        "--customize-hook=rm -f \"$1\"/var/cache/apt/archives/*.deb",
        SUITE, root, f"deb {MIRROR} {SUITE} main non-free-firmware",
        f"deb {MIRROR} {SUITE}-updates main non-free-firmware")
    return root


def main(argv=None):
    parser = argparse.ArgumentParser(prog="image/build.py", description=__doc__.splitlines()[0])
    parser.add_argument("--build", default="build/image", help="work directory (default build/image)")
    parser.add_argument("--cache", default="build/cache", help="package and wheel cache (default build/cache)")
    parser.add_argument("--dist", default="dist", help="where the image goes (default dist)")
    args = parser.parse_args(argv)
    from appliance import __version__ as version

    os.environ.setdefault("SOURCE_DATE_EPOCH", tree.source_date_epoch(os.path.dirname(HERE)))
    progress = Progress(6)
    progress.stage("tools", "checking the build tools and arm64 emulation")
    check_tools()
    os.makedirs(args.build, exist_ok=True)
    os.makedirs(args.dist, exist_ok=True)
    build, cache = os.path.abspath(args.build), os.path.abspath(args.cache)
    with Binfmt():
        progress.stage("wheels", "phonehome's wheel and the pinned arm64 wheels")
        wheel_dir = wheels.collect(os.path.dirname(HERE), build, cache, progress.say)
        progress.stage("rootfs", "Debian root file system with phonehome installed (the longest stage)")
        root = build_root(build, cache, wheel_dir, version, progress)
    progress.stage("tree", "time stamps clamped to SOURCE_DATE_EPOCH; manifest")
    epoch = int(os.environ["SOURCE_DATE_EPOCH"])
    manifest = tree.finish(root, epoch)
    progress.say(f"root tree digest {manifest['tree_sha256']}")
    progress.stage("disk", "boot and root partitions, partition table")
    raw = disk.assemble(root, build, epoch, progress.say)
    progress.stage("pack", "xz, sha256, bmap")
    outputs = disk.pack(raw, args.dist, f"phonehome-{version}-arm64", manifest, progress.say)
    for path in outputs:
        progress.say(f"wrote {path} ({os.path.getsize(path):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/bin/sh
# Runs on the build host after mmdebstrap installed the packages: $1 is the new root, $2 the wheel directory,
# $3 the phonehome version. Commands for the image run inside it with chroot (through qemu-user).
set -eu
root=$1 wheels=$2 version=$3

step() { echo "I: phonehome: $*"; }
# Commands in the image see none of the build machine's environment (its pip settings above all).
in_image() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-0}" "$@"; }

step "phonehome $version and its pinned Python distributions into /opt/phonehome/venv"
mkdir -p "$root/tmp/wheels"
cp "$wheels"/*.whl "$root/tmp/wheels/"
cp "$(dirname "$0")/requirements.txt" "$root/tmp/wheels/requirements.txt"
in_image python3 -m venv /opt/phonehome/venv
in_image /opt/phonehome/venv/bin/pip install --quiet --no-index --find-links /tmp/wheels \
    --disable-pip-version-check --no-cache-dir -r /tmp/wheels/requirements.txt "phonehome==$version"
rm -rf "$root/tmp/wheels"

step "phonehome install: user, units, /etc/phonehome, /var/lib/phonehome"
in_image /opt/phonehome/venv/bin/phonehome install
ln -sf /opt/phonehome/venv/bin/phonehome "$root/usr/local/bin/phonehome"

step "first-boot units"
install -m 644 "$(dirname "$0")/../appliance/system/phonehome-firstboot.service" "$root/etc/systemd/system/"
in_image systemctl enable phonehome-growroot.service phonehome-sshkeys.service phonehome-firstboot.service
# SSH stays off until authorized_keys is put on the boot partition.
in_image systemctl disable ssh.service
rm -f "$root"/etc/ssh/ssh_host_*

step "the initramfs, once; raspi-firmware copies it with the kernel, DTBs, config.txt and cmdline.txt"
rm "$root/usr/sbin/update-initramfs"
in_image dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
in_image update-initramfs -c -k all

step "a unique identity at first boot; no build leftovers"
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root/var/lib/systemd/random-seed" "$root/var/cache/ldconfig/aux-cache"
ln -s /etc/machine-id "$root/var/lib/dbus/machine-id"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/*
# apt's binary caches differ from build to build and are made again when apt needs them.
rm -f "$root"/var/cache/apt/pkgcache.bin "$root"/var/cache/apt/srcpkgcache.bin
rm -f "$root"/etc/passwd- "$root"/etc/group- "$root"/etc/shadow- "$root"/etc/gshadow- "$root"/etc/subuid- "$root"/etc/subgid-
find "$root/opt/phonehome/venv" -name '__pycache__' -path '*pip*' -prune -exec rm -rf {} +

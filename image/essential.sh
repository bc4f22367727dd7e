#!/bin/sh
# Runs on the build host after Debian's essential packages, before the rest ($1: the new root). The files put
# here are read by the packages' own install scripts: raspi-firmware's cmdline.txt and config.txt settings,
# the initramfs hook for the read-only root, NetworkManager's hotspot DNS.
set -eu
root=$1 here=$(dirname "$0")
system="$here/../appliance/system"
echo "I: phonehome: files from image/overlay"
cp -a "$here/overlay/." "$root/"
install -D -m 755 "$system/initramfs/phonehome-overlay" "$root/etc/initramfs-tools/scripts/local-bottom/phonehome-overlay"
install -D -m 755 "$system/initramfs/phonehome-overlay-hook" "$root/etc/initramfs-tools/hooks/phonehome-overlay"
install -D -m 644 "$system/dnsmasq-shared-phonehome.conf" "$root/etc/NetworkManager/dnsmasq-shared.d/phonehome.conf"
# The kernel, firmware and initramfs-tools packages each ask for a new initramfs, and under qemu-user each
# takes minutes: a stand-in answers them, and customize.sh makes the one initramfs once everything is in.
echo "I: phonehome: update-initramfs deferred to the end of the install"
chroot "$root" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs
printf '#!/bin/sh\n# phonehome image build: the initramfs is made once, at the end\nexit 0\n' \
    > "$root/usr/sbin/update-initramfs"
chmod 755 "$root/usr/sbin/update-initramfs"

"""``make image-test``: boot the built SD image in qemu-system-aarch64 and check it from the host.

The image's own kernel, initramfs, cmdline.txt and root file system boot on ``-M virt`` under software
emulation. Before the first boot the test does what a user does on a PC: it puts ``phonehome.toml`` and
``authorized_keys`` on the card's FAT partition. QEMU's user network is restricted: the VM reaches only a
``phonehome monitor`` on the host's 127.0.0.1 (through a guest forward to 10.0.2.100:80), and the host
reaches the VM's web page and SSH through forwarded loopback ports. Nothing else leaves the VM.

Checks, each printed with its time: multi-user.target reached with no failed units, the first boot's work
(grown root, machine id, SSH host keys, the FAT files imported and removed), phonehome-agent active after
READY, the claim page through the forwarded port, a heartbeat at the host's monitor, the agent's memory.
Then the VM's power is cut (QEMU killed) while config saves are running; after a second boot the config
must be the old one or the new one, byte for byte, and the agent must run with it.
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import requests  # noqa: E402

from image import disk  # noqa: E402

TOKEN = "image-test-token-0123456789"
API_TOKEN = "image-test-api-token-0123456789"
DEVICE = "vm-home"
BOOT_TIMEOUT_S = 900
# The guest address that QEMU forwards to the host's monitor.
MONITOR_IN_GUEST = "10.0.2.100"


class Clock:
    def __init__(self):
        self.started = time.monotonic()
        self.timings = {}

    def say(self, line):
        elapsed = time.monotonic() - self.started
        print(f"{int(elapsed) // 60:3d}m{int(elapsed) % 60:02d}s {line}", flush=True)

    def mark(self, name):
        self.timings[name] = round(time.monotonic() - self.started, 1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fat_offset(raw):
    return disk.BOOT_START_MIB * disk.MIB


def mtools(raw, *args, check=True):
    return subprocess.run([args[0], "-i", f"{raw}@@{fat_offset(raw)}", *args[1:]], check=check,
                          capture_output=True, text=True)


def agent_toml():
    return f"""# Put on the boot partition by the image test, as a user would.
[device]
name = "{DEVICE}"
[heartbeat]
interval_s = 10
timeout_s = 5
[[heartbeat.targets]]
url = "http://{MONITOR_IN_GUEST}/api/v1/heartbeat"
token = "{TOKEN}"
[time]
servers = []   # the VM reaches nothing but the host's monitor
[web]
listen = "0.0.0.0:80"
"""


def monitor_toml(data_dir, port):
    return f"""data_dir = "{data_dir}"
[web]
api_token = "{API_TOKEN}"
[monitor]
listen = "127.0.0.1:{port}"
[[monitor.devices]]
name = "{DEVICE}"
token = "{TOKEN}"
max_silence_s = 600
[time]
servers = []
"""


class VM:
    """One boot of the image under qemu-system-aarch64; ``power_cut()`` kills it like a pulled plug."""

    def __init__(self, work, raw, kernel, initrd, cmdline, ports, monitor_port, log_name):
        self.console = os.path.join(work, log_name)
        self.ssh_port, self.web_port = ports
        relay = f"cmd:socat - TCP:127.0.0.1:{monitor_port}"
        net = (f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22,"
               f"hostfwd=tcp:127.0.0.1:{self.web_port}-:80,guestfwd=tcp:{MONITOR_IN_GUEST}:80-{relay}")
        command = ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57", "-smp", "2", "-m", "1024",
                   "-nographic", "-no-reboot", "-kernel", kernel, "-initrd", initrd, "-append", cmdline,
                   "-drive", f"file={raw},format=raw,if=virtio,cache=unsafe",
                   "-netdev", net, "-device", "virtio-net-pci,netdev=net0",
                   "-device", "virtio-rng-pci", "-serial", f"file:{self.console}", "-monitor", "none"]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)

    def power_cut(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def alive(self):
        return self.process.poll() is None


class Guest:
    """Commands in the VM over SSH with the test's key (the image has no password anywhere)."""

    def __init__(self, key, port):
        self.options = ["-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                        "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "-o", "BatchMode=yes"]
        self.port = str(port)
        self.base = ["ssh", *self.options, "-p", self.port, "root@127.0.0.1"]

    def run(self, command, *, timeout=120, check=True):
        done = subprocess.run([*self.base, command], capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"in the VM, {command!r} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def copy(self, source, target):
        subprocess.run(["scp", *self.options, "-P", self.port, source, f"root@127.0.0.1:{target}"], check=True,
                       capture_output=True, timeout=120)

    def wait(self, vm, timeout_s):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not vm.alive():
                raise AssertionError(f"QEMU stopped before SSH answered; see {vm.console}")
            try:
                if subprocess.run([*self.base, "true"], capture_output=True, timeout=30).returncode == 0:
                    return
            except subprocess.TimeoutExpired:
                pass
            time.sleep(3)
        raise AssertionError(f"SSH did not answer within {timeout_s} s; see {vm.console}")


# Units that fail on -M virt only because it is not a Raspberry Pi; everything else must be running.
HARDWARE_ONLY = {
}

SAVER = r"""
import os, sys
from appliance.atomic import write_atomic
path, texts = sys.argv[1], [open(sys.argv[2]).read(), open(sys.argv[3]).read()]
n = 0
while True:  # the same atomic write the web page's settings use, as fast as it goes, until the power is cut
    write_atomic(path, texts[n % 2], mode=0o600)
    n += 1
    with open("/run/phonehome-saver/count.new", "w") as f:  # renamed, so the host never reads it half-written
        f.write(str(n))
    os.replace("/run/phonehome-saver/count.new", "/run/phonehome-saver/count")
"""


def boot_files(raw, work):
    """The kernel, initramfs and command line the Pi firmware would use, read from the FAT partition."""
    listing = mtools(raw, "mdir", "-b", "::/").stdout.split()
    names = [os.path.basename(p.rstrip("/")) for p in listing]
    kernel = sorted(n for n in names if n.startswith("vmlinuz"))
    initrd = sorted(n for n in names if n.startswith("initrd.img"))
    if not kernel or not initrd:
        raise AssertionError(f"no kernel or initramfs on the boot partition: {sorted(names)}")
    for name in (kernel[-1], initrd[-1], "cmdline.txt", "config.txt"):
        mtools(raw, "mcopy", "-o", f"::/{name}", os.path.join(work, name))
    with open(os.path.join(work, "cmdline.txt")) as f:
        args = [a for a in f.read().split() if not a.startswith("console=")]
    # The Pi's serial console is ttyS1; QEMU's virt board has a PL011 at ttyAMA0. The journal goes to the
    # console too, so a failed boot can be read from the console log (the journal itself is in RAM).
    cmdline = " ".join(args + ["console=ttyAMA0", "systemd.journald.forward_to_console=1"])
    return os.path.join(work, kernel[-1]), os.path.join(work, initrd[-1]), cmdline, names


def check_layout(names, say):
    """What the real Pi boot path needs, checked by file layout (QEMU never runs the GPU firmware)."""
    needed = ["bootcode.bin", "start.elf", "fixup.dat", "start4.elf", "fixup4.dat", "config.txt", "cmdline.txt",
              "bcm2837-rpi-3-b.dtb", "bcm2837-rpi-3-b-plus.dtb", "bcm2711-rpi-4-b.dtb", "bcm2837-rpi-zero-2-w.dtb"]
    missing = [n for n in needed if n not in names]
    if missing:
        raise AssertionError(f"the boot partition lacks {missing}")
    say(f"boot partition has the Pi 3/3B+/4B/Zero 2 W firmware and device trees ({len(names)} files)")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="image/boottest.py", description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="build/image/phonehome.img", help="the raw image make image left")
    parser.add_argument("--work", default="build/image-test", help="work directory")
    parser.add_argument("--phonehome", default=os.path.join(os.path.dirname(sys.executable), "phonehome"))
    args = parser.parse_args(argv)
    clock = Clock()
    say = clock.say
    for tool in ("qemu-system-aarch64", "socat", "ssh", "ssh-keygen", "mcopy"):
        if not shutil.which(tool):
            sys.exit(f"image-test: {tool} is missing; install qemu-system-arm, socat, openssh-client and mtools")
    if not os.path.exists(args.image):
        sys.exit(f"image-test: {args.image} does not exist; run 'make image' first")
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    work = os.path.abspath(args.work)
    raw = os.path.join(work, "sd.img")
    say(f"copying {args.image} and making the card 1 GiB larger than the image (the first boot grows into it)")
    subprocess.run(["cp", "--sparse=always", args.image, raw], check=True)
    image_bytes = os.path.getsize(raw)
    with open(raw, "r+b") as f:
        f.truncate(image_bytes + 1024 * disk.MIB)
    kernel, initrd, cmdline, names = boot_files(raw, work)
    check_layout(names, say)
    key = os.path.join(work, "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    wifi = 'country=GB\nnetwork={\n    ssid="Test Home"\n    psk="correct horse battery"\n}\n'
    for name, text in (("phonehome.toml", agent_toml()), ("authorized_keys", open(key + ".pub").read()),
                       ("wpa_supplicant.conf", wifi)):
        path = os.path.join(work, name)
        with open(path, "w") as f:
            f.write(text)
        mtools(raw, "mcopy", "-o", path, f"::/{name}")
    say("put phonehome.toml, authorized_keys and wpa_supplicant.conf on the FAT partition")

    monitor_port = free_port()
    monitor_config = os.path.join(work, "monitor.toml")
    with open(monitor_config, "w") as f:
        f.write(monitor_toml(os.path.join(work, "monitor-data"), monitor_port))
    monitor_log = open(os.path.join(work, "monitor.log"), "wb")
    monitor = subprocess.Popen([args.phonehome, "monitor", "--config", monitor_config], stdout=monitor_log,
                               stderr=subprocess.STDOUT)
    vm = None
    try:
        ports = (free_port(), free_port())
        guest = Guest(key, ports[0])
        say(f"first boot: qemu-system-aarch64 -M virt, console in {work}/console-1.log")
        boot_started = time.monotonic()
        vm = VM(work, raw, kernel, initrd, cmdline, ports, monitor_port, "console-1.log")
        first_beat = wait_for_heartbeat(monitor_port, vm, boot_started, since=None)
        clock.timings["boot_to_first_heartbeat_s"] = round(first_beat, 1)
        say(f"heartbeat from the VM reached the host's monitor {first_beat:.0f} s after power-on")
        guest.wait(vm, BOOT_TIMEOUT_S)
        say("SSH answers with the key from the boot partition")
        check_system(guest, say)
        check_first_boot(guest, image_bytes, say)
        check_agent(guest, say, clock)
        check_claim_page(ports[1], say)
        clock.mark("first_boot_checked")
        power_cut_during_saves(guest, vm, work, say)
        say("second boot after the power cut")
        boot_started = time.monotonic()
        vm = VM(work, raw, kernel, initrd, cmdline, ports, monitor_port, "console-2.log")
        guest.wait(vm, BOOT_TIMEOUT_S)
        check_system(guest, say)
        check_config_survived(guest, work, say)
        check_agent(guest, say, clock)
        wait_for_heartbeat(monitor_port, vm, boot_started, since=time.time() - 1)
        say("heartbeats arrive again after the power cut")
        turn_on_read_only_root(guest, vm, say)
        say("third boot, with the read-only root")
        boot_started = time.monotonic()
        vm = VM(work, raw, kernel, initrd, cmdline, ports, monitor_port, "console-3.log")
        guest.wait(vm, BOOT_TIMEOUT_S)
        check_system(guest, say)
        check_read_only_root(guest, say)
        wait_for_heartbeat(monitor_port, vm, boot_started, since=time.time() - 1)
        say("heartbeats arrive with the read-only root")
        clock.mark("total")
    except (AssertionError, subprocess.TimeoutExpired) as exc:
        say(f"FAILED: {exc}")
        for log in ("console-1.log", "console-2.log", "console-3.log"):
            path = os.path.join(work, log)
            if os.path.exists(path):
                print(f"--- last lines of {path}", flush=True)
                with open(path, errors="replace") as f:
                    print("".join(f.readlines()[-40:]), flush=True)
        return 1
    finally:
        if vm is not None:
            vm.power_cut()
        monitor.terminate()
        monitor.wait(timeout=30)
        monitor_log.close()
    print(json.dumps(clock.timings, indent=1))
    with open(os.path.join(work, "timings.json"), "w") as f:
        json.dump(clock.timings, f, indent=1)
    say("image test passed")
    return 0


def wait_for_heartbeat(port, vm, started, *, since):
    """Seconds from ``started`` until the monitor has heard the VM (after wall time ``since``, if given)."""
    url = f"http://127.0.0.1:{port}/api/v1/devices"
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while time.monotonic() < deadline:
        if not vm.alive():
            raise AssertionError(f"QEMU stopped before a heartbeat arrived; see {vm.console}")
        try:
            devices = requests.get(url, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=5).json()
            heard = [d for d in devices["devices"] if d["name"] == DEVICE and d["last_heard_at"]]
            if heard and (since is None or heard[0]["last_heard_at"] > since):
                return time.monotonic() - started
        except (requests.RequestException, ValueError, KeyError):
            pass
        time.sleep(1)
    raise AssertionError(f"no heartbeat from the VM within {BOOT_TIMEOUT_S} s")


def check_system(guest, say):
    state = guest.run("systemctl is-system-running --wait", check=False, timeout=600).strip()
    failed = guest.run("systemctl --failed --plain --no-legend --no-pager").split()
    failed = [u for u in failed if u.endswith((".service", ".mount", ".socket", ".target", ".timer", ".device"))]
    unexpected = [u for u in failed if u not in HARDWARE_ONLY]
    if unexpected or state not in ("running", "degraded"):
        journal = guest.run("journalctl -b --no-pager -p warning | tail -60", check=False)
        raise AssertionError(f"system state {state!r}, failed units {unexpected}\n{journal}")
    target = guest.run("systemctl is-active multi-user.target").strip()
    say(f"multi-user.target {target}; system {state}; failed units needing Pi hardware: {failed or 'none'}")


def check_first_boot(guest, image_bytes, say):
    size = int(guest.run("lsblk -bno SIZE /dev/vda2").strip())
    fs = int(guest.run("df -B1 --output=size / | tail -1").strip())
    root_before = image_bytes - (disk.BOOT_START_MIB + disk.BOOT_MIB) * disk.MIB
    if size < root_before + 1000 * disk.MIB or fs < size * 0.9:
        raise AssertionError(f"the root partition did not grow: partition {size} B, file system {fs} B")
    machine_id = guest.run("cat /etc/machine-id").strip()
    keys = guest.run("ls /etc/ssh/").split()
    fat = guest.run("ls /boot/firmware").split()
    if len(machine_id) != 32 or "ssh_host_ed25519_key" not in keys:
        raise AssertionError(f"no machine id ({machine_id!r}) or no SSH host keys ({keys})")
    if {"phonehome.toml", "authorized_keys", "wpa_supplicant.conf"} & set(fat):
        raise AssertionError(f"the pre-configuration files are still on the FAT partition: {fat}")
    profiles = guest.run("nmcli -t -f NAME connection show")
    if "Test Home" not in profiles:
        raise AssertionError(f"the Wi-Fi network from wpa_supplicant.conf is not in NetworkManager: {profiles!r}")
    regdom = guest.run("cat /boot/firmware/cmdline.txt")
    if "cfg80211.ieee80211_regdom=GB" not in regdom:
        raise AssertionError(f"the Wi-Fi country is not on the kernel command line: {regdom!r}")
    hostname = guest.run("hostname").strip()
    say(f"first boot: root grown to {size // disk.MIB} MiB, machine id {machine_id[:8]}…, host keys made, "
        f"FAT files imported and removed (Wi-Fi 'Test Home' in NetworkManager, country GB), hostname {hostname}")
    services = guest.run("systemctl is-active avahi-daemon NetworkManager systemd-timesyncd", check=False).split()
    watchdog = guest.run("systemctl show -p RuntimeWatchdogUSec --value").strip()
    persistent_journal = guest.run("test -d /var/log/journal && echo yes || echo no").strip()
    if services != ["active"] * 3 or watchdog != "14s" or persistent_journal != "no":
        raise AssertionError(f"avahi/NetworkManager/timesyncd {services}, hardware watchdog {watchdog!r}, "
                             f"journal on the card: {persistent_journal}")
    say("avahi (phonehome.local), NetworkManager and timesyncd active; hardware watchdog 14s; journal in RAM")


def check_agent(guest, say, clock):
    show = dict(line.split("=", 1) for line in guest.run(
        "systemctl show phonehome-agent -p ActiveState -p SubState -p Type -p MainPID -p WatchdogUSec "
        "-p NRestarts").splitlines() if "=" in line)
    if show.get("ActiveState") != "active" or show.get("Type") != "notify":
        raise AssertionError(f"phonehome-agent is not active after READY: {show}")
    rss_kb = int(guest.run(f"ps -o rss= -p {show['MainPID']}").strip())
    clock.timings.setdefault("agent_rss_mib", []).append(round(rss_kb / 1024, 1))
    say(f"phonehome-agent active (Type=notify, READY received), watchdog {show.get('WatchdogUSec')}, "
        f"restarts {show.get('NRestarts')}, resident memory {rss_kb / 1024:.1f} MiB")


def check_claim_page(port, say):
    answer = requests.get(f"http://127.0.0.1:{port}/", timeout=30)
    if answer.status_code != 200 or "setup code" not in answer.text.lower():
        raise AssertionError(f"the web page did not lead to the claim page: {answer.status_code} {answer.url}")
    say(f"the web page answers through the forwarded port with the claim page ({answer.url})")


def power_cut_during_saves(guest, vm, work, say):
    """Save the config over and over in the VM, then kill QEMU at a random moment of it."""
    config = "/etc/phonehome/phonehome.toml"
    old = guest.run(f"cat {config}")
    new = old.replace("interval_s = 10", "interval_s = 12")
    if new == old:
        raise AssertionError(f"the imported config does not say 'interval_s = 10':\n{old}")
    for name, text in (("old.toml", old), ("new.toml", new), ("saver.py", SAVER)):
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
        guest.copy(os.path.join(work, name), f"/run/{name}")
    guest.run(f"mkdir -p /run/phonehome-saver; chown phonehome: /run/phonehome-saver; cd /run && "
              f"setsid -f runuser -u phonehome -- "
              f"/opt/phonehome/venv/bin/python /run/saver.py {config} /run/old.toml /run/new.toml "
              f">/dev/null 2>&1")
    deadline = time.monotonic() + 120
    while not guest.run("cat /run/phonehome-saver/count", check=False).strip():  # the saver runs, at emulated speed
        if time.monotonic() > deadline:
            raise AssertionError("the config saver in the VM did not start")
        time.sleep(1)
    time.sleep(random.uniform(1.0, 5.0))
    saves = guest.run("cat /run/phonehome-saver/count", check=False).strip()
    vm.power_cut()
    say(f"power cut (QEMU killed) while the VM saves its config over and over (more than {saves} saves done)")


def turn_on_read_only_root(guest, vm, say):
    """Set [system] read_only_root as the settings page does (the agent mirrors it as the initramfs flag), reboot."""
    config = "/etc/phonehome/phonehome.toml"
    guest.run(f"printf '\\n[system]\\nread_only_root = true\\n' >> {config}")
    deadline = time.monotonic() + 120
    while guest.run("test -e /etc/phonehome/read-only-root && echo yes", check=False).strip() != "yes":
        if time.monotonic() > deadline:
            raise AssertionError("the agent did not set the read-only root flag after the config changed")
        time.sleep(2)
    say("read_only_root set in the config; the agent set the initramfs flag; rebooting")
    guest.run("systemctl reboot", check=False)
    vm.process.wait(timeout=300)  # -no-reboot: QEMU exits when the VM reboots


def check_read_only_root(guest, say):
    """/ is the RAM overlay, the card is read-only under it, and the kept paths still reach the card."""
    root = guest.run("findmnt -no FSTYPE /").strip()
    report = guest.run("cat /run/phonehome-overlay", check=False).strip()
    if root != "overlay":
        raise AssertionError(f"the root is {root!r}, not the overlay; boot report: {report!r}")
    guest.run("echo ram > /etc/phonehome-test-ram && echo kept > /var/lib/phonehome/test-kept")
    on_card = guest.run("ls /run/rootfs-base/etc/phonehome-test-ram /run/rootfs-base/var/lib/phonehome/test-kept",
                        check=False)
    if "test-ram" in on_card or "test-kept" not in on_card:
        raise AssertionError(f"writes went to the wrong place: on the card {on_card!r}")
    if guest.run("touch /run/rootfs-base/etc/x 2>&1", check=False).find("Read-only") < 0:
        raise AssertionError("the card under the overlay is writable")
    say(f"read-only root in effect ({report}): system writes go to RAM, the config and state reach the card")


def check_config_survived(guest, work, say):
    now = guest.run("cat /etc/phonehome/phonehome.toml")
    texts = {}
    for name in ("old.toml", "new.toml"):
        with open(os.path.join(work, name)) as f:
            texts[name] = f.read()
    if now not in texts.values():
        raise AssertionError(f"after the power cut the config is neither the old nor the new one:\n{now!r}")
    guest.run("/opt/phonehome/venv/bin/phonehome check-config --config /etc/phonehome/phonehome.toml")
    which = [k for k, v in texts.items() if v == now][0]
    say(f"after the power cut the config is the {which[:3]} one, byte for byte, and validates")


if __name__ == "__main__":
    sys.exit(main())

"""A full disk and a read-only disk under the monitor's data_dir, on a real file system.

`phonehome monitor` runs in its own mount namespace (``unshare --mount``)
with a small tmpfs over its data_dir. The test fills that tmpfs through
/proc/<pid>/root and frees it again, or remounts it read-only and then
read-write with ``nsenter``. While the disk is bad a device goes DOWN and
comes back UP: both e-mails must reach the SMTP sink (sent from memory), the
monitor says what is wrong once in its log and on its device page, the
database stays sound, and once the disk is good again the events kept in
memory are written, with their alerts marked sent, never sent again.

Needs root (mount namespaces, tmpfs), as the suite has on this machine and
in CI; skipped with the reason otherwise.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest
import requests

from appliance.atomic import write_atomic
from tests.processes import PHONEHOME, monitor_answers, monitor_toml, wait_until

pytestmark = [
    pytest.mark.fault,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"),
                       reason="needs root, unshare and nsenter (util-linux) to mount a small tmpfs in a private "
                              "mount namespace; run the suite as root"),
]

TOKEN = "disk-token-0123456789"
API_TOKEN = "disk-api-token-0123456789"
PASSWORD = "correct horse battery"
SILENCE_S = 0.5


class Monitor:
    """`phonehome monitor` with a tmpfs of ``size`` over its data_dir, in its own mount namespace."""

    def __init__(self, tmp_path, smtp_port, port, *, size="2m", image=None):
        self.data_dir = str(tmp_path / "data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.port = port
        config = str(tmp_path / "monitor.toml")
        write_atomic(config, monitor_toml(data_dir=self.data_dir, port=port, api_token=API_TOKEN,
                                          smtp_port=smtp_port, devices=[("home", TOKEN, SILENCE_S)]))
        self.config = config
        self.log_path = tmp_path / f"monitor-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        # An ext4 image goes read-only on its first error, as a failing SD card does (errors=remount-ro).
        mount = f'mount -o loop,errors=remount-ro "{image}"' if image else f"mount -t tmpfs -o size={size} phonehome-test"
        script = f'{mount} "$1" && exec "$2" monitor --config "$3"'
        self.p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                                   self.data_dir, PHONEHOME, config], stdout=self._log, stderr=subprocess.STDOUT)
        # The data_dir as the monitor sees it: the tmpfs, not the directory under it.
        self.root = f"/proc/{self.p.pid}/root{self.data_dir}"
        wait_until(lambda: monitor_answers(self.port, API_TOKEN), 15, f"the monitor to answer; its log: {self.output}")
        self.boot_id = str(uuid.uuid4())
        self.seq = 0

    @property
    def output(self):
        return self.log_path.read_text(errors="replace")

    def state(self):
        r = requests.get(f"http://127.0.0.1:{self.port}/api/v1/devices", timeout=2,
                         headers={"Authorization": f"Bearer {API_TOKEN}"})
        return r.json()["devices"][0]["state"]

    def beat(self):
        self.seq += 1
        body = {"device": "home", "sent_at": time.time(), "seq": self.seq, "boot_id": self.boot_id, "uptime_s": 100}
        r = requests.post(f"http://127.0.0.1:{self.port}/api/v1/heartbeat", data=json.dumps(body), timeout=2,
                          headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        assert r.ok, r.text

    def nsenter(self, *args, **kwargs):
        return subprocess.run(["nsenter", "-t", str(self.p.pid), "-m", *args], check=True, capture_output=True,
                              text=True, **kwargs)

    def fill(self):
        """Fill the tmpfs to the last byte; return the filler's path (delete it to free the space)."""
        path = os.path.join(self.root, "filler")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for block in (65536, 4096, 1):  # down to the last byte
                try:
                    while True:
                        os.write(fd, b"\0" * block)
                except OSError:
                    pass
        finally:
            os.close(fd)
        return path

    def page(self):
        """The device list page as a logged-in person sees it (its line about the monitor itself)."""
        session = requests.Session()
        login = session.get(f"http://127.0.0.1:{self.port}/login", timeout=2).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
        r = session.post(f"http://127.0.0.1:{self.port}/login", data={"csrf_token": token, "password": PASSWORD},
                         timeout=5)
        assert r.ok, r.text
        return session.get(f"http://127.0.0.1:{self.port}/", timeout=2).text

    def set_password(self):
        """`phonehome monitor set-password`, run inside the monitor's namespace so it lands on the tmpfs."""
        self.nsenter(PHONEHOME, "monitor", "set-password", "--password-stdin", "--config", self.config,
                     input=PASSWORD + "\n")

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._log.close()


@pytest.fixture
def monitor(tmp_path, smtp_sink, free_port):
    started = []

    def start(**kwargs):
        m = Monitor(tmp_path, smtp_sink.port, free_port(), **kwargs)
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()


def subjects(sink):
    return [m["Subject"].split(":")[0] for m in sink.messages]


_READ_DB = """
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(json.dumps({
    "integrity": db.execute("PRAGMA integrity_check").fetchone()[0],
    "kinds": [k for (k,) in db.execute("SELECT kind FROM events WHERE device='home' ORDER BY id")],
    "statuses": [s for (s,) in db.execute("SELECT status FROM deliveries ORDER BY id")],
    "ended": [e for (e,) in db.execute("SELECT ended_at FROM outages WHERE device='home' ORDER BY id")],
}))
"""


def check_database(monitor, *, downs, ups):
    """The database as the monitor sees it: sound, holding the first ``downs`` DOWN and ``ups`` UP events, each
    outage among them ended and their alerts marked sent (a later outage may have begun since: the device is silent).

    Read inside the monitor's mount namespace: SQLite resolves /proc/<pid>/root to the directory under the tmpfs.
    """
    found = json.loads(monitor.nsenter(sys.executable, "-c", _READ_DB,
                                       os.path.join(monitor.data_dir, "monitor.sqlite3")).stdout)
    assert found["integrity"] == "ok", found
    alerted = [k for k in found["kinds"] if k in ("down", "up")]
    assert alerted[:downs + ups] == ["down", "up"] * downs, found
    assert found["statuses"][:downs + ups] == ["sent"] * (downs + ups), found
    assert None not in found["ended"][:downs], found


def outage_while(monitor, sink, *, sent_before):
    """Beats stop until the DOWN e-mail arrives, then one beat: the UP e-mail. Both while the disk is bad."""
    wait_until(lambda: len(sink.messages) > sent_before, 10, f"the DOWN e-mail; log: {monitor.output}")
    monitor.beat()
    wait_until(lambda: len(sink.messages) > sent_before + 1, 10, f"the UP e-mail; log: {monitor.output}")
    assert subjects(sink)[sent_before:] == ["DOWN", "UP"], subjects(sink)


def test_a_full_disk_keeps_alerts_going_says_so_and_recovers(monitor, smtp_sink):
    m = monitor(size="2m")
    m.set_password()
    m.beat()
    wait_until(lambda: m.state() == "up", 5, "the first heartbeat")
    filler = m.fill()
    outage_while(m, smtp_sink, sent_before=0)
    assert "Cannot write to its database" in m.page()  # where the monitor speaks of itself
    log = m.output
    assert log.count("cannot write events to") == 1, log  # said once, not once a second
    os.unlink(filler)  # space returns
    wait_until(lambda: "wrote 2 held-back event(s)" in m.output, 10, f"the held events written; {m.output}")
    # The next outage, with the disk good again, is alerted the usual way: through the store.
    wait_until(lambda: len(smtp_sink.messages) >= 3, 10, f"the second DOWN; {m.output}")
    m.beat()
    wait_until(lambda: len(smtp_sink.messages) >= 4, 10, f"the second UP; {m.output}")
    time.sleep(0.3)  # a tick of each alert worker: a resent alert would arrive by now
    # The alerts sent from memory are not sent again once their events are written.
    assert subjects(smtp_sink) == ["DOWN", "UP", "DOWN", "UP"], m.output
    assert "Cannot write to its database" not in m.page()
    check_database(m, downs=2, ups=2)


@pytest.mark.skipif(not (shutil.which("mkfs.ext4") and shutil.which("e2fsck") and os.path.exists("/dev/loop-control")),
                    reason="needs mkfs.ext4, e2fsck and loop devices for an ext4 image that goes read-only")
def test_a_disk_gone_read_only_keeps_alerts_going_and_the_database_sound(monitor, smtp_sink, tmp_path):
    """ext4 remounts itself read-only on an error; the kernel refuses a plain ``remount,ro`` while the database
    is open for writing, so the test makes the error happen (sysfs trigger_fs_error), as a failing card would.
    Such a file system takes writes again only after fsck: the monitor is restarted on the checked image."""
    image = str(tmp_path / "card.img")
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", image], check=True)
    m = monitor(image=image)
    m.set_password()
    m.beat()
    wait_until(lambda: m.state() == "up", 5, "the first heartbeat")
    device = os.path.basename(m.nsenter("findmnt", "-no", "SOURCE", m.data_dir).stdout.strip())
    with open(f"/sys/fs/ext4/{device}/trigger_fs_error", "w") as f:
        f.write("phonehome fault test")
    with pytest.raises(OSError, match="Read-only file system"):
        open(os.path.join(m.root, "probe"), "w").close()
    outage_while(m, smtp_sink, sent_before=0)
    assert m.output.count("cannot write events to") == 1, m.output
    assert "Cannot write to its database" in m.page()
    m.stop()  # the image is free again: fsck it, as the boot would
    fsck = subprocess.run(["e2fsck", "-fy", image], capture_output=True, text=True)
    assert fsck.returncode in (0, 1), fsck.stdout + fsck.stderr  # 1: errors corrected (the injected one)
    m = monitor(image=image)
    check_database(m, downs=0, ups=0)  # sound; the outage lived in memory (its alerts went out)
    m.beat()
    wait_until(lambda: len(smtp_sink.messages) >= 3, 10, f"a DOWN through the store again; {m.output}")
    m.beat()
    wait_until(lambda: len(smtp_sink.messages) >= 4, 10, f"its UP; {m.output}")
    time.sleep(0.3)
    assert subjects(smtp_sink) == ["DOWN", "UP", "DOWN", "UP"], m.output
    check_database(m, downs=1, ups=1)

"""What happened, told right: two agents watching each other on the LAN and a cloud monitor, as real processes on
127.0.0.1, with each agent's Internet path through a proxy the test can cut. Each scenario asserts the alert and
its cause, and notes the time from the event to the e-mail in test-output/outage-scenarios.json."""

import json
import os
import signal
import time
import uuid

import pytest

from appliance.atomic import write_atomic
from tests.loopback_proxy import SwitchableProxy
from tests.processes import Proc, wait_until

pytestmark = pytest.mark.e2e

API_TOKEN = "scenario-api-token-0123456789"
SILENCE_S = 1.5
FIGURES = os.path.join(os.path.dirname(__file__), "..", "test-output", "outage-scenarios.json")
PEERS = {"home": "garage", "garage": "home"}


def token(name, where):
    return f"{name}-{where}-token-0123456789"


class Scenario:
    """The cloud monitor, two agents (home and garage, site "house", each watching the other) and their proxies."""

    def __init__(self, tmp_path, smtp_sink, free_port):
        self.dir, self.sink = tmp_path, smtp_sink
        self.cloud_port = free_port()
        self.lan_port = {name: free_port() for name in PEERS}
        self.procs = {}
        devices = "".join(f"""
[[monitor.devices]]
name = "{name}"
token = "{token(name, 'cloud')}"
site = "house"
max_silence_s = {SILENCE_S}
reminder_every_s = 0
""" for name in PEERS)
        self.cloud_config = self._write("cloud.toml", f"""
data_dir = "{tmp_path / 'cloud-data'}"
[monitor]
listen = "127.0.0.1:{self.cloud_port}"
site_window_s = 1.0
{devices}
[alerts.email]
smtp_host = "127.0.0.1"
smtp_port = {smtp_sink.port}
security = "none"
sender = "phonehome@example.com"
to = ["me@example.com"]
[web]
api_token = "{API_TOKEN}"
[time]
servers = []
""")
        self.cloud = self._start("monitor", self.cloud_config)
        wait_until(lambda: self.cloud_devices(), 10, "the cloud monitor to answer")
        self.proxy = {name: SwitchableProxy(self.cloud_port) for name in PEERS}
        self.agent_config = {name: self._agent_config(name) for name in PEERS}
        for name in PEERS:
            self.start_agent(name)
        # A few beats each: the monitor learns each device's interval from consecutive ones.
        wait_until(lambda: all((d["last_heartbeat"] or {}).get("seq", 0) >= 3
                               for d in (self.cloud_devices() or {"-": {"last_heartbeat": None}}).values()),
                   15, "both agents beating")

    def _write(self, name, text):
        path = str(self.dir / name)
        write_atomic(path, text)
        return path

    def _agent_config(self, name):
        peer = PEERS[name]
        return self._write(f"{name}.toml", f"""
data_dir = "{self.dir / (name + '-data')}"
[device]
name = "{name}"
[heartbeat]
interval_s = 0.2
timeout_s = 0.2
[[heartbeat.targets]]
name = "cloud"
url = "http://127.0.0.1:{self.proxy[name].port}/api/v1/heartbeat"
token = "{token(name, 'cloud')}"
[[heartbeat.targets]]
name = "{peer} on the LAN"
url = "http://127.0.0.1:{self.lan_port[peer]}/api/v1/heartbeat"
token = "{token(name, 'lan')}"
[monitor]
listen = "127.0.0.1:{self.lan_port[name]}"
[[monitor.devices]]
name = "{peer}"
token = "{token(peer, 'lan')}"
max_silence_s = 1.0
reminder_every_s = 0
[alerts]
outbox_dir = "{self.dir / (name + '-outbox')}"
[web]
listen = ""
[time]
servers = []
""")

    def _start(self, role, config, env=None):
        proc = Proc(role, config, self.dir, env=env)
        self.procs.setdefault(role + config, []).append(proc)
        return proc

    def start_agent(self, name, *, new_boot=False):
        env = None
        if new_boot:  # a power cut: the machine comes back with a new boot id and a short uptime
            proc_dir = self.dir / f"{name}-proc-{uuid.uuid4().hex[:6]}"
            (proc_dir / "sys/kernel/random").mkdir(parents=True)
            (proc_dir / "sys/kernel/random/boot_id").write_text(str(uuid.uuid4()) + "\n")
            (proc_dir / "uptime").write_text("0.50 0.20\n")
            env = dict(os.environ, PHONEHOME_PROC_DIR=str(proc_dir))
        self.procs[name] = self._start("agent", self.agent_config[name], env=env)

    def kill(self, name):
        self.procs[name].kill(signal.SIGKILL)

    def cloud_devices(self):
        import requests

        try:
            answer = requests.get(f"http://127.0.0.1:{self.cloud_port}/api/v1/devices", timeout=1,
                                  headers={"Authorization": f"Bearer {API_TOKEN}"})
        except requests.ConnectionError:
            return None
        return {d["name"]: d for d in answer.json()["devices"]}

    def cloud_states(self):
        return {name: d["state"] for name, d in (self.cloud_devices() or {}).items()}

    def mails(self):
        return [(m["Subject"], m.get_content()) for m in self.sink.messages]

    def wait_for_mail(self, count, what, timeout_s=15):
        wait_until(lambda: len(self.sink.messages) >= count, timeout_s, what)
        return self.mails()[count - 1]

    def outbox(self, name):
        folder = self.dir / (name + "-outbox")
        return sorted(p.read_text() for p in folder.glob("*.eml")) if folder.exists() else []

    def stop(self):
        for procs in self.procs.values():
            for proc in procs if isinstance(procs, list) else [procs]:
                if proc.p.poll() is None:
                    proc.kill(signal.SIGTERM)
        for proxy in self.proxy.values():
            proxy.close()


@pytest.fixture
def scenario(tmp_path, smtp_sink, free_port):
    s = Scenario(tmp_path, smtp_sink, free_port)
    yield s
    s.stop()


def note(scenario_name, subject, event_at):
    """Keep the figure: which message, and seconds from the event to the e-mail."""
    figures = []
    if os.path.exists(FIGURES):
        with open(FIGURES) as f:
            figures = [x for x in json.load(f)
                       if (x["scenario"], x["subject"].split(" \u2014")[0]) != (scenario_name, subject.split(" \u2014")[0])]
    figures.append({"scenario": scenario_name, "subject": subject, "seconds": round(time.time() - event_at, 2)})
    os.makedirs(os.path.dirname(FIGURES), exist_ok=True)
    with open(FIGURES, "w") as f:
        json.dump(figures, f, indent=1)


def test_a_whole_site_silent_gives_one_site_alert(scenario):
    scenario.kill("home")
    scenario.kill("garage")
    killed = time.time()
    subject, body = scenario.wait_for_mail(1, "the site alert")
    note("whole site silent", subject, killed)
    assert subject.startswith("DOWN: site house"), scenario.mails()
    assert "all 2 devices silent" in body
    time.sleep(2)                                       # no per-device DOWN follows
    assert [s for s, _ in scenario.mails()] == [subject]


def test_one_device_dead_is_a_device_failure_and_its_watcher_says_so_too(scenario):
    scenario.kill("garage")
    killed = time.time()
    subject, body = scenario.wait_for_mail(1, "the DOWN of garage")
    note("one device dead", subject, killed)
    assert subject.startswith("DOWN: garage") and "device failure" in subject + body, scenario.mails()
    wait_until(lambda: any("DOWN: garage" in m for m in scenario.outbox("home")), 10, "home's own alert")


def test_one_devices_internet_path_cut_while_the_lan_is_fine(scenario):
    scenario.proxy["garage"].set_cut(True)
    cut = time.time()
    subject, body = scenario.wait_for_mail(1, "the DOWN of garage")
    note("one device's Internet path cut", subject, cut)
    assert subject.startswith("DOWN: garage") and "Internet path" in body.split("\n")[0], scenario.mails()
    time.sleep(1.0)
    scenario.proxy["garage"].set_cut(False)
    restored = time.time()
    subject, body = scenario.wait_for_mail(2, "the UP of garage")
    note("one device's Internet path cut", subject, restored)
    assert subject.startswith("UP: garage") and "own Internet path down" in subject, scenario.mails()
    assert scenario.outbox("home") == []                # home heard garage on the LAN all along


def test_a_power_cut_is_told_by_the_new_boot(scenario):
    scenario.kill("home")                               # the power goes at the site: both Pis go dark
    scenario.kill("garage")
    killed = time.time()
    scenario.wait_for_mail(1, "the site alert")
    time.sleep(1.0)
    for name in PEERS:                                  # the power is back: both boot again
        scenario.start_agent(name, new_boot=True)
    back = time.time()
    scenario.wait_for_mail(3, "both UPs")
    ups = [s for s, _ in scenario.mails() if s.startswith("UP:")]
    for subject in ups:
        note("power cut", subject, back)
    assert sorted(s.split(" ")[1] for s in ups) == ["garage", "home"]
    assert all("power cut" in s and "rebooted" in s for s in ups), scenario.mails()
    assert time.time() - killed < 30


def test_an_internet_outage_at_the_site_then_its_end(scenario):
    for name in PEERS:
        scenario.proxy[name].set_cut(True)
    cut = time.time()
    subject, body = scenario.wait_for_mail(1, "the site alert")
    note("Internet outage", subject, cut)
    assert subject.startswith("DOWN: site house"), scenario.mails()
    time.sleep(1.0)
    for name in PEERS:
        scenario.proxy[name].set_cut(False)
    restored = time.time()
    scenario.wait_for_mail(3, "both UPs")
    ups = [(s, b) for s, b in scenario.mails() if s.startswith("UP:")]
    for s, _ in ups:
        note("Internet outage", s, restored)
    assert sorted(s.split(" ")[1] for s, _ in ups) == ["garage", "home"]
    assert all("Internet down" in s for s, _ in ups), ups

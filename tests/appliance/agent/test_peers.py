"""The peer watchdog inside the agent: the heartbeat's ``peers`` list, a beat to the cloud the moment a peer
changes, the watcher's own alerts while its cloud is out of reach, and the relay end to end.

The end-to-end tests run a real watcher (AgentRole, with its monitor inside listening on 127.0.0.1), a real
peer (a HeartbeatSender beating to the watcher), a recording HTTP server as the cloud monitor, a real SMTP
sink or outbox, and gpiozero's MockFactory under the relay. The watcher's own interval is an hour, so a beat
that reaches the cloud within seconds of a peer's change can only be the immediate one."""

import email
import email.policy
import json
import os
import re
import threading
import time
from types import SimpleNamespace

import pytest
from gpiozero.pins.mock import MockFactory

from appliance.agent.heartbeats import HeartbeatSender
from appliance.agent.peers import MAX_CYCLES, MAX_PEERS, PeerWatch, peers_payload
from appliance.agent.role import AgentRole
from appliance.agent.watchdog import STATE_FILE
from appliance.clock import SystemClock
from appliance.config import parse_config
from appliance.config.schema import Config, Device, Heartbeat, Target
from hardware.relay import PowerCycle

PEER, PEER_TOKEN, CLOUD_TOKEN, PIN = "garage-pi", "garage-token-1234", "house-token-1234", 24
KEYS = {"name", "state", "last_heard_at", "down_since", "power_cycles"}


# --- the list, pure --------------------------------------------------------------------------------------

def device(name, state="up", heard=1000.0, outage=None):
    return {"name": name, "state": state, "last_heard_at": heard, "outage_started_at": outage,
            "max_silence_s": 300.0, "alerts_paused": False}


def test_each_peer_says_its_state_times_and_power_cycles():
    cycles = {PEER: [PowerCycle(at=2000.0, came_back_at=2100.0), PowerCycle(at=9000.0)]}
    assert peers_payload([device(PEER, "down", 1000.0, 1300.0), device("barn-pi", "new", None)], cycles) == [
        {"name": PEER, "state": "down", "last_heard_at": 1000.0, "down_since": 1300.0,
         "power_cycles": [{"at": 2000.0, "came_back_at": 2100.0}, {"at": 9000.0, "came_back_at": None}]},
        {"name": "barn-pi", "state": "new", "last_heard_at": None, "down_since": None, "power_cycles": []},
    ]


def test_down_since_is_only_said_while_down():
    (entry,) = peers_payload([device(PEER, "up", 5000.0, outage=1300.0)])  # the last outage, over now
    assert entry["down_since"] is None


def test_the_list_is_bounded_down_ones_first():
    devices = [device(f"pi-{i:03}") for i in range(MAX_PEERS + 10)] + [device("zz-down", "down", outage=1.0)]
    cycles = {"zz-down": [PowerCycle(at=float(i)) for i in range(MAX_CYCLES + 3)]}
    listed = peers_payload(devices, cycles)
    assert len(listed) == MAX_PEERS
    assert listed[0]["name"] == "zz-down" and listed[1]["name"] == "pi-000"
    assert [c["at"] for c in listed[0]["power_cycles"]] == [3.0, 4.0, 5.0, 6.0, 7.0]  # the newest, oldest first


def test_no_monitor_or_no_devices_means_no_list():
    watch = PeerWatch(service=lambda: None, beat=lambda: None, clock=SystemClock())
    assert watch.payload() is None
    watch = PeerWatch(service=lambda: SimpleNamespace(devices=lambda: []), beat=lambda: None, clock=SystemClock())
    assert watch.payload() is None


def test_a_broken_monitor_costs_the_list_not_the_heartbeat():
    def broken():
        raise RuntimeError("a bug")

    watch = PeerWatch(service=lambda: SimpleNamespace(devices=broken), beat=lambda: None, clock=SystemClock())
    assert watch.payload() is None


@pytest.mark.parametrize("kind, beats", [("down", True), ("up", True), ("first-seen", True), ("reminder", False),
                                         ("clock", False)])
def test_a_peer_changing_state_asks_for_a_beat_and_nothing_else_does(kind, beats):
    beaten = threading.Event()
    watch = PeerWatch(service=lambda: None, beat=beaten.set, clock=SystemClock())
    watch.apply(Config(monitor=parse_config("[monitor]").monitor))
    try:
        watch.on_events([SimpleNamespace(kind=SimpleNamespace(value=kind))])
        assert beaten.wait(1.0 if beats else 0.2) is beats
    finally:
        watch.stop()


# --- end to end: a watcher, its peer, its cloud ---------------------------------------------------------------

def watcher_toml(tmp_path, *, cloud_url, port, extra=""):
    return f"""
data_dir = "{tmp_path / 'watcher'}"
[device]
name = "house-pi"
[heartbeat]
interval_s = 3600
timeout_s = 1
[[heartbeat.targets]]
url = "{cloud_url}"
token = "{CLOUD_TOKEN}"
[monitor]
listen = "127.0.0.1:{port}"
[[monitor.devices]]
name = "{PEER}"
token = "{PEER_TOKEN}"
max_silence_s = 0.5
reminder_every_s = 0
[time]
servers = []
[web]
listen = ""
{extra}"""


@pytest.fixture
def running():
    """Everything a test starts, stopped at the end in reverse order."""
    parts = []
    yield parts
    for part in reversed(parts):
        part.stop()


@pytest.fixture
def peer(tmp_path, free_port, running):
    """Factory: ``peer(port)`` -> a started HeartbeatSender beating as garage-pi to the watcher's monitor every
    0.1 s; ``stop()`` it for an outage, call again for a new one."""

    def start(port):
        config = Config(device=Device(name=PEER), heartbeat=Heartbeat(interval_s=0.1, timeout_s=0.1, targets=(
            Target(url=f"http://127.0.0.1:{port}/api/v1/heartbeat", token=PEER_TOKEN),)))
        sender = HeartbeatSender(config, clock=SystemClock(), data_dir=str(tmp_path / "peer"), boot_id="peer-boot",
                                 uptime=lambda: 60.0)
        sender.start()
        running.append(sender)
        return sender

    return start


def reports(server):
    """The ``peers`` entry for garage-pi of every beat the cloud received, in order."""
    return [r.json()["peers"][0] for r in list(server.requests) if r.path == "/api/v1/heartbeat"]


def test_the_cloud_hears_of_a_peer_going_up_and_down_at_once(tmp_path, free_port, server, peer, running,
                                                              wait_for):
    port = free_port()
    watcher = AgentRole(parse_config(watcher_toml(tmp_path, cloud_url=f"{server.url}/api/v1/heartbeat",
                                                  port=port))).start()
    running.append(watcher)
    wait_for(lambda: reports(server), what="the watcher's first beat")
    assert reports(server)[0] == {"name": PEER, "state": "new", "last_heard_at": None, "down_since": None,
                                  "power_cycles": []}
    sender = peer(port)
    wait_for(lambda: reports(server)[-1]["state"] == "up", what="a beat saying the peer is up")
    sender.stop()
    wait_for(lambda: reports(server)[-1]["state"] == "down", what="a beat saying the peer is down")
    down = reports(server)[-1]
    assert set(down) == KEYS and down["down_since"] >= down["last_heard_at"] > 0
    peer(port)
    wait_for(lambda: reports(server)[-1]["state"] == "up", what="a beat saying the peer is back")
    assert reports(server)[-1]["down_since"] is None
    assert len(reports(server)) <= 6  # one beat per change (and the first), not a stream


def test_the_watcher_alerts_on_its_own_while_its_cloud_is_out_of_reach(tmp_path, free_port, closed_port,
                                                                        smtp_sink, peer, running, wait_for):
    port = free_port()
    extra = f"""
[alerts.email]
smtp_host = "127.0.0.1"
smtp_port = {smtp_sink.port}
security = "none"
sender = "house-pi@example.com"
to = ["me@example.com"]
"""
    watcher = AgentRole(parse_config(watcher_toml(
        tmp_path, cloud_url=f"http://127.0.0.1:{closed_port}/api/v1/heartbeat", port=port, extra=extra))).start()
    running.append(watcher)
    sender = peer(port)
    wait_for(lambda: watcher.monitor.service.device(PEER)["state"] == "up", what="the peer's first beat")
    sender.stop()
    wait_for(lambda: smtp_sink.messages, timeout_s=10, what="the watcher's DOWN e-mail")
    assert smtp_sink.messages[0]["Subject"].startswith(f"DOWN: {PEER}")
    assert [t.state for t in watcher.sender.status()] == ["failing"]  # the cloud was never reached


def power_alerts(tmp_path):
    """(subject, first line) of the relay's alerts in the outbox, oldest first (the monitor's own are there too)."""
    directory, out = tmp_path / "outbox", []
    for name in sorted(os.listdir(directory), key=lambda n: os.stat(directory / n).st_mtime_ns) \
            if directory.is_dir() else ():
        if "-power-cycle" not in name:
            continue
        with open(directory / name, "rb") as f:
            mail = email.message_from_binary_file(f, policy=email.policy.default)
        out.append((mail["Subject"], mail.get_content().splitlines()[0]))
    return out


@pytest.fixture
def factory():
    factory = MockFactory()
    yield factory
    factory.close()


def relay_toml(tmp_path, *, off_s):
    return f"""
[peer]
device = "{PEER}"
relay_pin = {PIN}
power_cycle_after_s = 0.3
power_cycle_off_s = {off_s}
power_cycle_min_gap_s = 60
[alerts]
outbox_dir = "{tmp_path / 'outbox'}"
"""


def test_the_relay_power_cycles_a_silent_peer_and_everyone_hears_of_it(tmp_path, free_port, server, peer,
                                                                       running, factory, wait_for):
    port = free_port()
    config = parse_config(watcher_toml(tmp_path, cloud_url=f"{server.url}/api/v1/heartbeat", port=port,
                                       extra=relay_toml(tmp_path, off_s=0.2)))
    watcher = AgentRole(config, pin_factory=factory).start()
    running.append(watcher)
    pin = factory.pin(PIN)
    sender = peer(port)
    wait_for(lambda: reports(server) and reports(server)[-1]["state"] == "up", what="the peer up")
    sender.stop()
    wait_for(lambda: reports(server)[-1]["power_cycles"], timeout_s=5, what="a beat telling of the power cycle")
    (cycle,) = reports(server)[-1]["power_cycles"]
    assert cycle["came_back_at"] is None and reports(server)[-1]["state"] == "down"
    wait_for(lambda: [s.state for s in pin.states][-2:] == [False, True], what="the power off, then on")
    wait_for(lambda: power_alerts(tmp_path), what="the power cycle's alert")
    ((subject, line),) = power_alerts(tmp_path)
    assert subject == f"POWER CYCLE: {PEER}"
    assert re.fullmatch(rf"{PEER} silent for \d+ s: power-cycled it \(off 0 s\)\.", line), line

    peer(port)
    wait_for(lambda: reports(server)[-1]["power_cycles"][0]["came_back_at"], what="a beat telling of the comeback")
    wait_for(lambda: len(power_alerts(tmp_path)) == 2, what="the comeback's alert")
    assert power_alerts(tmp_path)[1][0] == f"BACK AFTER POWER CYCLE: {PEER}"
    assert re.fullmatch(rf"{PEER} came back \d+ s after the power cycle\.", power_alerts(tmp_path)[1][1])
    with open(tmp_path / "watcher" / STATE_FILE) as f:
        saved = json.load(f)
    assert saved["device"] == PEER and saved["cycles"][0]["came_back_at"] is not None
    watcher.stop()
    assert [s.state for s in pin.states][-1] is True  # released with the power on


def test_stopping_the_agent_in_the_middle_of_a_power_cycle_gives_the_power_back(tmp_path, free_port, server, peer,
                                                                               running, factory, wait_for):
    port = free_port()
    config = parse_config(watcher_toml(tmp_path, cloud_url=f"{server.url}/api/v1/heartbeat", port=port,
                                       extra=relay_toml(tmp_path, off_s=30)))
    watcher = AgentRole(config, pin_factory=factory).start()
    running.append(watcher)
    pin = factory.pin(PIN)
    sender = peer(port)
    wait_for(lambda: watcher.monitor.service.device(PEER)["state"] == "up", what="the peer up")
    sender.stop()
    wait_for(lambda: pin.state is False, timeout_s=5, what="the power off")
    started = time.monotonic()
    watcher.stop()
    assert time.monotonic() - started < 5
    assert [s.state for s in pin.states][-2:] == [False, True]


def test_a_real_cloud_monitor_accepts_the_beats_that_carry_peers(tmp_path, free_port, peer, running, wait_for):
    from appliance.roles import MonitorRole

    cloud_port, port = free_port(), free_port()
    cloud = MonitorRole(parse_config(f"""
data_dir = "{tmp_path / 'cloud'}"
[monitor]
listen = "127.0.0.1:{cloud_port}"
[[monitor.devices]]
name = "house-pi"
token = "{CLOUD_TOKEN}"
""")).start()
    running.append(cloud)
    watcher = AgentRole(parse_config(watcher_toml(
        tmp_path, cloud_url=f"http://127.0.0.1:{cloud_port}/api/v1/heartbeat", port=port))).start()
    running.append(watcher)
    sender = peer(port)
    wait_for(lambda: watcher.monitor.service.device(PEER)["state"] == "up", what="the peer up")
    sender.stop()
    wait_for(lambda: watcher.monitor.service.device(PEER)["state"] == "down", what="the peer down")
    wait_for(lambda: watcher.sender.status()[0].beats_ok >= 3, what="the beats about the peer delivered")
    assert [t.state for t in watcher.sender.status()] == ["ok"]  # none was refused (a 400 would say failing)
    assert cloud.service.device("house-pi")["state"] == "up"

"""systemd's watchdog: the agent pings it from its main loop only while its heartbeat loops come round."""

import os
import socket
import time

import pytest

from appliance import systemd
from appliance.agent.heartbeats import STUCK_SLACK_S, HeartbeatSender
from appliance.agent.role import AgentRole
from appliance.clock import Now
from appliance.config import parse_config
from appliance.runtime import Watchdog
from tests.processes import Proc


@pytest.mark.parametrize("env, pid, expected", [
    ({}, 10, None),
    ({"WATCHDOG_USEC": "30000000"}, 10, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "10"}, 10, 15.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "11"}, 10, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, 10, None),
    ({"WATCHDOG_USEC": "soon"}, 10, None),
])
def test_watchdog_interval_follows_sd_watchdog_enabled(env, pid, expected):
    assert systemd.watchdog_interval_s(env, pid) == expected


class Notified:
    """A real NOTIFY_SOCKET: what a process sends to systemd arrives here."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)

    def messages(self, wait_s):
        got, deadline = [], time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                got.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass
        return got


class Role:
    def __init__(self):
        self.ok = True

    def healthy(self, now_mono):
        return self.ok


def test_pings_stop_while_the_role_is_stuck_and_resume_after(tmp_path, monkeypatch, caplog):
    notified = Notified(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", notified.path)
    role = Role()
    dog = Watchdog(role, every_s=1.0)
    assert dog.wait_s(2.0) == 1.0
    dog.feed(0.0)
    role.ok = False
    dog.feed(1.0)
    dog.feed(2.0)
    role.ok = True
    dog.feed(3.0)
    assert notified.messages(0.3) == ["WATCHDOG=1", "WATCHDOG=1"]
    stuck_lines = [r for r in caplog.records if "stuck" in r.getMessage()]
    assert len(stuck_lines) == 1  # one line per change, not one per ping missed


def test_a_role_without_a_health_check_is_always_fed(tmp_path, monkeypatch):
    notified = Notified(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", notified.path)
    dog = Watchdog(object(), every_s=1.0)  # the monitor role has no healthy()
    dog.feed(0.0)
    dog.feed(1.0)
    assert notified.messages(0.3) == ["WATCHDOG=1", "WATCHDOG=1"]


def test_without_systemd_watchdog_nothing_is_sent(tmp_path, monkeypatch):
    notified = Notified(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", notified.path)
    dog = Watchdog(Role(), every_s=None)
    dog.feed(0.0)
    assert dog.wait_s(2.0) == 2.0
    assert notified.messages(0.2) == []


class FakeClock:
    """Stands still unless the test moves it: the health decision is asked about explicit times."""

    def __init__(self):
        self.reading = Now(1000.0, 1_750_000_000.0)

    def now(self):
        return self.reading


def test_a_heartbeat_send_that_hangs_makes_the_agent_unhealthy_after_its_deadline(tmp_path):
    timeout_s = 10.0
    with socket.socket() as listener:  # a monitor that takes the connection and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(10)
        config = parse_config(f"""
[device]
name = "home"
[heartbeat]
interval_s = 60
timeout_s = {timeout_s}
[[heartbeat.targets]]
url = "http://127.0.0.1:{listener.getsockname()[1]}/api/v1/heartbeat"
token = "t0123456789"
""")
        clock = FakeClock()
        role = AgentRole(config, clock=clock)
        start = clock.now().mono
        assert role.healthy(start + 1e6)  # no sender yet: nothing can be stuck
        role.sender = HeartbeatSender(config, clock=clock, data_dir=str(tmp_path), boot_id="boot-1")
        assert role.healthy(start + 1e6)  # not started: nothing can be stuck either
        role.sender.start()
        conn, _ = listener.accept()  # the first beat is in flight, and stays there
        try:
            # It may take its own timeout after waiting out one beat_now() send, plus the slack; not a moment more.
            deadline = start + 2 * timeout_s + STUCK_SLACK_S
            assert role.healthy(deadline)
            assert not role.healthy(deadline + 0.1)
            assert role.sender.stuck(deadline + 0.1) == [config.heartbeat.targets[0].label]
        finally:
            conn.close()  # the send fails at once, so the sender stops quickly
            role.sender.stop()


def agent_config(tmp_path, port):
    path = tmp_path / "agent.toml"
    path.write_text(f"""
data_dir = "{tmp_path / 'data'}"
[device]
name = "home"
[heartbeat]
interval_s = 0.2
timeout_s = 0.2
[[heartbeat.targets]]
url = "http://127.0.0.1:{port}/api/v1/heartbeat"
token = "t0123456789"
[time]
servers = []
[web]
listen = ""
""")
    return str(path)


@pytest.mark.e2e
def test_a_running_agent_says_ready_then_feeds_the_watchdog(tmp_path, free_port):
    notified = Notified(tmp_path / "notify")
    env = dict(os.environ, NOTIFY_SOCKET=notified.path, WATCHDOG_USEC="400000")  # a ping every 0.2 s
    env.pop("WATCHDOG_PID", None)
    agent = Proc("agent", agent_config(tmp_path, free_port()), tmp_path, env=env)
    try:
        got = notified.messages(4.0)
    finally:
        agent.kill()
    # Tools the agent runs (timedatectl) inherit NOTIFY_SOCKET and report their exit as ERRNO=…; the unit's
    # NotifyAccess=main makes systemd ignore them.
    got = [m for m in got if not m.startswith("ERRNO=")]
    assert got and got[0] == "READY=1", agent.output
    assert got.count("WATCHDOG=1") >= 5, (got, agent.output)
    assert "WATCHDOG" not in agent.output  # pings are not logged


@pytest.mark.e2e
def test_an_agent_told_the_watchdog_is_for_another_process_does_not_ping(tmp_path, free_port):
    notified = Notified(tmp_path / "notify")
    env = dict(os.environ, NOTIFY_SOCKET=notified.path, WATCHDOG_USEC="400000", WATCHDOG_PID="1")
    agent = Proc("agent", agent_config(tmp_path, free_port()), tmp_path, env=env)
    try:
        got = notified.messages(1.5)
    finally:
        agent.kill()
    assert "READY=1" in got, agent.output
    assert "WATCHDOG=1" not in got

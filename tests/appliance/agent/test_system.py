import pytest

from appliance.agent.system import PROC_DIR_ENV, proc_path, read_boot_id, read_uptime_s


def test_boot_id_is_read_and_stripped(tmp_path):
    path = tmp_path / "boot_id"
    path.write_text("3f2b6c1e-8d4a-4e55-9a0b-0c1d2e3f4a5b\n")
    assert read_boot_id(str(path)) == "3f2b6c1e-8d4a-4e55-9a0b-0c1d2e3f4a5b"


def test_missing_boot_id_is_empty(tmp_path):
    assert read_boot_id(str(tmp_path / "absent")) == ""


def test_uptime_is_the_first_number(tmp_path):
    path = tmp_path / "uptime"
    path.write_text("350735.47 234388.90\n")
    assert read_uptime_s(str(path)) == 350735.47


@pytest.mark.parametrize("content", ["", "garbage 1.0\n"])
def test_unparsable_uptime_is_none(tmp_path, content):
    path = tmp_path / "uptime"
    path.write_text(content)
    assert read_uptime_s(str(path)) is None


def test_missing_uptime_is_none(tmp_path):
    assert read_uptime_s(str(tmp_path / "absent")) is None


# --- the test hook: PHONEHOME_PROC_DIR stands in for /proc ------------------------------------------------

def fake_proc(root, boot_id, uptime_s):
    (root / "sys/kernel/random").mkdir(parents=True, exist_ok=True)
    (root / "sys/kernel/random/boot_id").write_text(boot_id + "\n")
    (root / "uptime").write_text(f"{uptime_s} 1.00\n")
    return root


def test_without_the_variable_the_files_are_procs(monkeypatch):
    monkeypatch.delenv(PROC_DIR_ENV, raising=False)
    assert proc_path("uptime") == "/proc/uptime"
    assert proc_path("sys/kernel/random/boot_id", environ={}) == "/proc/sys/kernel/random/boot_id"


def test_the_variable_is_read_at_each_call(tmp_path, monkeypatch):
    first = fake_proc(tmp_path / "one", "boot-one", 12.5)
    second = fake_proc(tmp_path / "two", "boot-two", 3.0)
    monkeypatch.setenv(PROC_DIR_ENV, str(first))
    assert (read_boot_id(), read_uptime_s()) == ("boot-one", 12.5)
    monkeypatch.setenv(PROC_DIR_ENV, str(second))  # "a power cut": the next agent finds a new boot
    assert (read_boot_id(), read_uptime_s()) == ("boot-two", 3.0)


def test_an_agent_reports_the_boot_the_variable_names(tmp_path, monkeypatch, server):
    """The heartbeat of a sender built with no boot id or uptime of its own carries the stand-in's."""
    from appliance.agent.heartbeats import HeartbeatSender
    from appliance.clock import SystemClock
    from appliance.config.schema import Config, Device, Heartbeat, Target

    monkeypatch.setenv(PROC_DIR_ENV, str(fake_proc(tmp_path / "proc", "after-the-power-cut", 41.0)))
    config = Config(device=Device(name="home"), heartbeat=Heartbeat(targets=(
        Target(url=f"{server.url}/api/heartbeat", kind="phonehome", token="s3cret-token-123"),)))
    sender = HeartbeatSender(config, clock=SystemClock(), data_dir=str(tmp_path / "data"))
    try:
        (attempt,) = sender.beat_now()
    finally:
        sender.stop()
    assert attempt.ok
    beat = server.requests[0].json()
    assert (beat["boot_id"], beat["uptime_s"]) == ("after-the-power-cut", 41.0)


def test_a_power_cut_played_with_a_real_agent_process(tmp_path, free_port):
    """A `phonehome agent` killed and started again with a new boot id in PHONEHOME_PROC_DIR: the monitor
    sees a new boot, as after a power cut; no code is changed for it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from appliance.config import parse_config
    from appliance.roles import MonitorRole

    port = free_port()
    monitor = MonitorRole(parse_config(f"""
data_dir = "{tmp_path / 'monitor'}"
[monitor]
listen = "127.0.0.1:{port}"
[[monitor.devices]]
name = "home"
token = "power-cut-token-1234"
""")).start()
    config = tmp_path / "agent.toml"
    config.write_text(f"""
data_dir = "{tmp_path / 'agent'}"
[device]
name = "home"
[heartbeat]
interval_s = 0.2
timeout_s = 0.2
[[heartbeat.targets]]
url = "http://127.0.0.1:{port}/api/v1/heartbeat"
token = "power-cut-token-1234"
[time]
servers = []
[web]
listen = ""
""")
    proc_dir = tmp_path / "proc"
    phonehome = os.path.join(os.path.dirname(sys.executable), "phonehome")

    def boot(boot_id):
        fake_proc(proc_dir, boot_id, 5.0)
        env = dict(os.environ, **{PROC_DIR_ENV: str(proc_dir)})
        return subprocess.Popen([phonehome, "agent", "--config", str(config)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def seen_boot():
        beat = monitor.service.devices()[0]["last_heartbeat"]
        return beat and beat["boot_id"]

    def wait_for_boot(boot_id):
        deadline = time.monotonic() + 15
        while seen_boot() != boot_id:
            assert time.monotonic() < deadline, f"the monitor never saw boot {boot_id} (saw {seen_boot()})"
            time.sleep(0.05)

    agent = boot("boot-before")
    try:
        wait_for_boot("boot-before")
        agent.send_signal(signal.SIGKILL)  # the power goes
        agent.wait(10)
        agent = boot("boot-after")         # and comes back: a new boot
        wait_for_boot("boot-after")
    finally:
        agent.kill()
        agent.wait(10)
        monitor.stop()

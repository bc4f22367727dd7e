"""The roles as the runtime drives them: start, apply a changed config, stop; with real servers on loopback."""

import dataclasses
import logging
import socket
import time

import pytest
import requests

from appliance.agent.role import AgentRole
from appliance.config import parse_config, save_config
from appliance.roles import MonitorRole
from appliance.runtime import reload_config

TOKEN = "role-token-123456"
API_TOKEN = "role-api-token-0123456"


def monitor_config(tmp_path, port, *, data="data", host="127.0.0.1"):
    return parse_config(f"""
data_dir = "{tmp_path / data}"
[web]
api_token = "{API_TOKEN}"
[monitor]
listen = "{host}:{port}"
[[monitor.devices]]
name = "home"
token = "{TOKEN}"
""")


def answers(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/api/v1/devices", timeout=2,
                            headers={"Authorization": f"Bearer {API_TOKEN}"}).status_code == 200
    except requests.ConnectionError:
        return False


@pytest.fixture
def roles():
    made = []
    yield made
    for role in made:
        role.stop()


def test_listen_moves_to_another_host_on_the_same_port(tmp_path, free_port, roles):
    port = free_port()
    role = MonitorRole(monitor_config(tmp_path, port)).start()
    roles.append(role)
    role.apply(monitor_config(tmp_path, port, host="0.0.0.0"))  # the old socket holds the port
    assert role.server.listen == f"0.0.0.0:{port}"
    assert answers(port)


def test_listen_on_a_busy_port_keeps_the_old_address_and_says_why(tmp_path, free_port, roles, caplog):
    port, busy = free_port(), socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        role = MonitorRole(monitor_config(tmp_path, port)).start()
        roles.append(role)
        with caplog.at_level(logging.ERROR):
            role.apply(monitor_config(tmp_path, busy.getsockname()[1]))
        assert answers(port)
        assert any("monitor cannot listen on" in r.getMessage() and f"still listening on 127.0.0.1:{port}"
                   in r.getMessage() for r in caplog.records)
    finally:
        busy.close()


def test_a_new_data_dir_restarts_the_monitor_on_a_new_database(tmp_path, free_port, roles):
    port = free_port()
    role = MonitorRole(monitor_config(tmp_path, port)).start()
    roles.append(role)
    role.apply(monitor_config(tmp_path, port, data="elsewhere"))
    assert role.service.store.path == str(tmp_path / "elsewhere" / "monitor.sqlite3")
    assert answers(port)


def test_agent_keeps_phoning_home_when_its_monitor_cannot_listen(tmp_path, free_port, roles, caplog):
    remote_port = free_port()
    remote = MonitorRole(monitor_config(tmp_path, remote_port, data="remote")).start()
    roles.append(remote)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        config = parse_config(f"""
data_dir = "{tmp_path / 'agent'}"
[device]
name = "home"
[heartbeat]
interval_s = 0.2
timeout_s = 0.2
[[heartbeat.targets]]
url = "http://127.0.0.1:{remote_port}/api/v1/heartbeat"
token = "{TOKEN}"
[monitor]
listen = "127.0.0.1:{busy.getsockname()[1]}"
[time]
servers = []
""")
        with caplog.at_level(logging.ERROR):
            agent = AgentRole(config).start()
        roles.append(agent)
        assert agent.monitor is None
        assert any("heartbeats go on" in r.getMessage() for r in caplog.records)
        deadline = time.monotonic() + 5
        while remote.service.devices()[0]["state"] != "up" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert remote.service.devices()[0]["state"] == "up"
    finally:
        busy.close()


class Recorder:
    def __init__(self):
        self.applied = []

    def apply(self, config):
        self.applied.append(config)


def test_reload_keeps_the_running_config_when_the_file_vanished_or_is_bad(tmp_path, caplog):
    path = tmp_path / "phonehome.toml"
    role = Recorder()
    with caplog.at_level(logging.ERROR):
        assert not reload_config(role, str(path))[0]                   # vanished for a moment
        path.write_text("[heartbeat]\ninterval_s = 'often'\n")
        assert not reload_config(role, str(path))[0]                   # does not validate
    assert role.applied == []
    assert any("file not found" in r.getMessage() for r in caplog.records)
    assert any("heartbeat.interval_s" in r.getMessage() for r in caplog.records)
    good = parse_config('[device]\nname = "home"\n')
    save_config(str(path), dataclasses.replace(good, data_dir=str(tmp_path)))
    assert reload_config(role, str(path)) == (True, "")
    assert role.applied[0].device.name == "home"


def test_an_agent_with_an_emulated_display_draws_its_status(tmp_path, roles):
    from PIL import Image

    png = tmp_path / "display.png"
    config = parse_config(f"""
data_dir = "{tmp_path / 'agent'}"
[display]
driver = "emulator"
emulator_file = "{png}"
[time]
servers = []
""")
    agent = AgentRole(config, config_path=str(tmp_path / "phonehome.toml")).start()
    roles.append(agent)
    assert agent.snapshot().headline in ("SETUP", "NO NET")  # not configured (or no network here)
    deadline = time.monotonic() + 5
    while not png.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with Image.open(png) as image:
        assert image.size == (128, 64)
    assert agent.panel.display.frame is not None


def test_a_new_setup_code_on_disk_is_shown_without_a_restart(tmp_path, roles):
    from appliance.setup import reset_setup

    config = parse_config(f'data_dir = "{tmp_path / "agent"}"\n[time]\nservers = []\n')
    agent = AgentRole(config, config_path=str(tmp_path / "phonehome.toml")).start()
    roles.append(agent)
    before = agent.snapshot().setup.code
    after = reset_setup(str(tmp_path / "agent")).code   # what a factory reset does
    assert before != after and agent.snapshot().setup.code == after

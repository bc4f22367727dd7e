"""Power cuts of whole processes: SIGKILL a real `phonehome monitor` while it alerts and a real `phonehome
agent` while it starts and saves its state, at random moments; the next start must carry on.

The forked-child cuts of test_power_cuts.py do the numbers (1,000); these show the whole process path:
MONITOR_KILLS monitors killed around a DOWN (being detected, stored, sent), AGENT_KILLS agents killed
during their first writes. Each DOWN arrives once, or twice when the kill fell between the SMTP server's
"accepted" and the row marked sent (the dispatcher's documented at-most-twice window). Set
PHONEHOME_FAULT_SEED to replay.
"""

import json
import os
import random
import sqlite3
import time

import pytest
import requests

from appliance.agent.failures import FailureLog
from appliance.atomic import write_atomic
from appliance.config import load_config
from appliance.setup import FILE_NAME as SETUP_FILE, load_setup
from tests.processes import Proc, monitor_answers, monitor_toml, wait_until

pytestmark = pytest.mark.fault

MONITOR_KILLS, AGENT_KILLS = 10, 10
SILENCE_S = 0.3
API_TOKEN = "cut-api-token-0123456789"


@pytest.fixture
def rng():
    seed = int(os.environ.get("PHONEHOME_FAULT_SEED", "0")) or random.randrange(1, 2**31)
    print(f"power-cut seed: PHONEHOME_FAULT_SEED={seed}")
    return random.Random(seed)


def _monitor_config(tmp_path, smtp_port, port):
    # Mass silence off: kills before a DOWN was stored leave several devices up at the last start, and
    # their silences within a minute are rightly held as a mass silence (one summary now, the DOWNs once
    # the monitor's own connection is confirmed). That rule has its own tests; these count DOWNs.
    path = str(tmp_path / "monitor.toml")
    write_atomic(path, monitor_toml(data_dir=tmp_path / "monitor-data", port=port, api_token=API_TOKEN,
                                    smtp_port=smtp_port,
                                    devices=[(f"dev-{i}", f"token-{i}-0123456789", SILENCE_S)
                                             for i in range(MONITOR_KILLS)],
                                    monitor_lines=[f"mass_silence_min_devices = {MONITOR_KILLS + 1}"]))
    return path


def _beat(port, i, seq):
    body = {"device": f"dev-{i}", "sent_at": time.time(), "seq": seq, "boot_id": "boot-1", "uptime_s": 100}
    requests.post(f"http://127.0.0.1:{port}/api/v1/heartbeat", data=json.dumps(body), timeout=2,
                  headers={"Authorization": f"Bearer token-{i}-0123456789", "Content-Type": "application/json"})


def _query(db_path, sql):
    db = sqlite3.connect(db_path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_monitors_killed_around_a_down_alert_it_once_after_restart(tmp_path, smtp_sink, free_port, rng):
    port = free_port()
    config = _monitor_config(tmp_path, smtp_sink.port, port)
    db_path = str(tmp_path / "monitor-data" / "monitor.sqlite3")
    in_doubt, stored_first = set(), 0
    for i in range(MONITOR_KILLS):
        monitor = Proc("monitor", config, tmp_path)
        wait_until(lambda: monitor_answers(port, API_TOKEN), 15, "the monitor to answer")
        seq = 0
        # Beats until the device's row is written (heartbeat times are written behind, once a second).
        while not _query(db_path, f"SELECT 1 FROM devices WHERE name='dev-{i}' AND last_heard_at IS NOT NULL"):
            seq += 1
            _beat(port, i, seq)
            time.sleep(0.1)
        time.sleep(rng.uniform(0.0, SILENCE_S + 0.15))  # before the DOWN, or while it is stored or sent
        monitor.kill()
        assert _query(db_path, "PRAGMA integrity_check") == [("ok",)], monitor.output
        stored_first += bool(_query(db_path, f"SELECT 1 FROM events WHERE device='dev-{i}' AND kind='down'"))
        in_doubt |= {d for (d,) in _query(db_path, "SELECT e.device FROM deliveries d JOIN events e "
                                                    "ON e.id = d.event_id WHERE d.status='pending'")}
    monitor = Proc("monitor", config, tmp_path)
    try:
        wanted = MONITOR_KILLS
        try:
            wait_until(lambda: len(smtp_sink.messages) >= wanted, 15, "a DOWN for each device")
        except AssertionError as exc:  # the log as it is by now, not as it was when the wait began
            subjects = [m["Subject"] for m in smtp_sink.messages]
            raise AssertionError(f"{exc}; sent: {subjects}; the monitor's log:\n{monitor.output}") from None
        wait_until(lambda: not _query(db_path, "SELECT 1 FROM deliveries WHERE status != 'sent'"), 5,
                   "every delivery marked sent")
        time.sleep(0.3)
        counts = {}
        for message in smtp_sink.messages:
            kind, device = message["Subject"].split(":")[0], message["Subject"].split(":")[1].split()[0]
            assert kind == "DOWN", message["Subject"]
            counts[device] = counts.get(device, 0) + 1
        for i in range(MONITOR_KILLS):
            device = f"dev-{i}"
            assert counts.get(device, 0) >= 1, f"{device}'s DOWN was lost; {monitor.output}"
            assert counts[device] == 1 or (counts[device] == 2 and device in in_doubt), (device, counts)
        print(f"monitor kills: {MONITOR_KILLS}, {stored_first} after the DOWN was stored; DOWNs sent twice (in flight at a kill): "
              f"{sum(1 for c in counts.values() if c == 2)}")
    finally:
        monitor.kill()


def test_agents_killed_while_starting_and_saving_leave_files_that_load(tmp_path, free_port, rng):
    data_dir = tmp_path / "agent-data"
    config = str(tmp_path / "agent.toml")
    write_atomic(config, f"""data_dir = "{data_dir}"
[device]
name = "home"
[heartbeat]
interval_s = 0.05
timeout_s = 0.05
[[heartbeat.targets]]
url = "http://127.0.0.1:{free_port()}/api/v1/heartbeat"
token = "nobody-listens-0123456789"
[time]
servers = []
[web]
listen = ""
[wifi]
hotspot = false
""")
    codes, states = set(), 0
    for _ in range(AGENT_KILLS):
        agent = Proc("agent", config, tmp_path)
        time.sleep(rng.uniform(0.2, 1.0))  # starting: the setup code, the first failed sends and their window
        agent.kill()
        load_config(config, missing_ok=False)
        setup = data_dir / SETUP_FILE
        if setup.exists():
            with open(setup, encoding="utf-8") as f:
                code = json.load(f)["code"]
            assert load_setup(str(data_dir)).code == code  # read, not replaced by a new one
            codes.add(code)
        state = data_dir / "agent-state.json"
        if state.exists():
            with open(state, encoding="utf-8") as f:
                saved = json.load(f)
            assert isinstance(saved["targets"], dict), saved
            log = FailureLog(str(state), boot_id=saved["boot_id"])  # the agent's own loader, same boot
            assert len(log._windows) == len(saved["targets"]), saved
            states += 1
    assert len(codes) == 1, codes  # the setup code made at the first start survives every later kill
    assert states > 0  # the kills came after the failure windows were first saved

"""``phonehome demo``: a monitor and an agent on 127.0.0.1, an outage and its alerts, in a minute.

Everything is real: the agent posts heartbeats over HTTP to a monitor that
runs inside it (as on a Pi that watches another), the monitor stores events in
SQLite and delivers alerts to an outbox directory of .eml files, printed as
they arrive, so no SMTP server is needed. Only the intervals are short.
"""

import os
import secrets
import signal
import socket
import sys
import threading
import time

from appliance.agent.role import AgentRole
from appliance.atomic import write_atomic
from appliance.config import load_config
from appliance.runtime import Control, serve
from appliance.setup import load_setup

INTERVAL_S = 1.0
MAX_SILENCE_S = 5.0
REMINDER_EVERY_S = 15.0

CONFIG = """\
# Written by 'phonehome demo': short intervals so an outage shows within seconds.
data_dir = "data"

[device]
name = "demo-pi"

[heartbeat]
interval_s = {interval}
timeout_s = {interval}

[[heartbeat.targets]]
name = "demo monitor"
url = "http://127.0.0.1:{port}/api/v1/heartbeat"
token = "{token}"

[monitor]
listen = "127.0.0.1:{port}"

[[monitor.devices]]
name = "demo-pi"
token = "{token}"
max_silence_s = {silence}
reminder_every_s = {reminder}

[alerts]
outbox_dir = "outbox"

[web]
# The appliance's own page (claim it with the setup code), on 127.0.0.1 only.
listen = "127.0.0.1:{web_port}"
# Lets scripts (and the curl line the demo prints) read the monitor's device list and metrics.
api_token = "{api_token}"

[time]
# The demo talks only to 127.0.0.1: the clock is checked against the system's time service alone.
servers = []

[wifi]
# A demo on a laptop must never turn its Wi-Fi into a hotspot.
hotspot = false

[display]
# No OLED needed: the display's pages are drawn into this PNG file.
driver = "emulator"
emulator_file = "display.png"
"""


def run_demo(directory, *, scripted, out=sys.stdout):
    """Run the demo in ``directory``; interactive on a terminal, scripted otherwise. Returns an exit code."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "phonehome.toml")
    port, web_port = _free_port(), _free_port()
    api_token = secrets.token_hex(16)
    write_atomic(path, CONFIG.format(port=port, web_port=web_port, token=secrets.token_hex(16), api_token=api_token,
                                     interval=INTERVAL_S, silence=MAX_SILENCE_S, reminder=REMINDER_EVERY_S),
                 mode=0o600)
    config = load_config(path)
    role = AgentRole(config, config_path=path)
    control = Control()
    stopping = control.stopping
    say = _printer(out)
    setup = load_setup(config.data_dir)
    say(f"phonehome demo: agent 'demo-pi' beats every {INTERVAL_S:g} s to a monitor on http://127.0.0.1:{port}/.")
    claim = (f"claim it with the setup code {setup.code} and choose a password" if not setup.claimed
             else "log in with the password chosen before")
    say(f"The appliance's page: http://127.0.0.1:{web_port}/ ({claim}; the monitor's pages take the same "
        f"password).")
    say(f"Device list and metrics for scripts: curl -H 'Authorization: Bearer {api_token}' "
        f"http://127.0.0.1:{port}/api/v1/devices (or /metrics).")
    say(f"The monitor declares it DOWN after {MAX_SILENCE_S:g} s of silence. Alerts are printed here and saved "
        f"as .eml files in {os.path.join(directory, 'outbox')}; the OLED's pages are drawn into "
        f"{os.path.join(directory, 'display.png')}.")
    if scripted:
        driver = threading.Thread(target=_scripted, args=(role, stopping, say), daemon=True)
    else:
        say("Press Enter to stop the heartbeats (a simulated outage), Enter again to resume, q then Enter to quit. "
            f"From another terminal: kill -USR1 {os.getpid()} toggles the heartbeats too.")
        driver = threading.Thread(target=_keyboard, args=(role, stopping, say), daemon=True)
    signal.signal(signal.SIGUSR1, lambda *_: _toggle(role, say))
    driver.start()
    serve(role, path, control=control)
    say(f"demo over; config, database and outbox are in {directory}/")
    return 0


def _toggle(role, say):
    if role.paused:
        role.resume()
        say(">>> heartbeats resumed: watch for the UP message")
    else:
        role.pause()
        say(f">>> heartbeats stopped: the DOWN message comes {MAX_SILENCE_S:g} s after the last one")


def _keyboard(role, stopping, say):
    for line in sys.stdin:
        if line.strip().lower() in ("q", "quit", "exit"):
            break
        _toggle(role, say)
    stopping.set()


def _scripted(role, stopping, say):
    """The whole story without a keyboard: beat, stop, DOWN, resume, UP, quit."""
    try:
        _wait_for(role, "up", 15, stopping)
        time.sleep(2 * INTERVAL_S)
        _toggle(role, say)
        _wait_for(role, "down", MAX_SILENCE_S + 10, stopping)
        time.sleep(3 * INTERVAL_S)
        _toggle(role, say)
        _wait_for(role, "up", 15, stopping)
        time.sleep(1.5)  # let the UP alert reach the outbox
    finally:
        stopping.set()


def _wait_for(role, state, timeout_s, stopping):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stopping.is_set():
        service = role.monitor.service if role.monitor else None
        if service and any(d["state"] == state for d in service.devices()):
            return True
        time.sleep(0.1)
    return False


def _printer(out):
    lock = threading.Lock()

    def say(text):
        with lock:
            print(text, file=out, flush=True)
    return say


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

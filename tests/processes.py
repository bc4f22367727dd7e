"""Real `phonehome` processes for end-to-end tests, and waiting for what they do."""

import os
import signal
import subprocess
import sys
import time

import requests

# The console script the package installs, as a user runs it.
PHONEHOME = os.path.join(os.path.dirname(sys.executable), "phonehome")


class Proc:
    """A phonehome process whose output goes to a file the test can show when it fails."""

    def __init__(self, role, config, tmp_path, *, env=None):
        self.log_path = tmp_path / f"{role}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.p = subprocess.Popen([PHONEHOME, role, "--config", config],
                                  stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def kill(self, sig=signal.SIGKILL):
        self.p.send_signal(sig)
        self.p.wait(timeout=10)
        self._log.close()

    @property
    def output(self):
        return self.log_path.read_text(errors="replace")


def wait_until(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def monitor_answers(port, api_token):
    """True once a monitor on 127.0.0.1:``port`` serves its device list (it is up and has read its store)."""
    try:
        return requests.get(f"http://127.0.0.1:{port}/api/v1/devices", timeout=1,
                            headers={"Authorization": f"Bearer {api_token}"}).ok
    except requests.ConnectionError:
        return False


def monitor_toml(*, data_dir, port, api_token, smtp_port, devices, monitor_lines=()):
    """TOML for a `phonehome monitor` on 127.0.0.1:``port`` that e-mails a sink on ``smtp_port`` (no TLS).

    ``devices`` is a list of (name, token, max_silence_s); their reminders are off. ``monitor_lines`` are
    more "key = value" lines for the [monitor] table.
    """
    text = f"""data_dir = "{data_dir}"
[web]
api_token = "{api_token}"
[monitor]
listen = "127.0.0.1:{port}"
"""
    text += "".join(f"{line}\n" for line in monitor_lines)
    text += f"""[alerts.email]
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
security = "none"
sender = "phonehome@example.com"
to = ["me@example.com"]
"""
    for name, token, silence_s in devices:
        text += (f'[[monitor.devices]]\nname = "{name}"\ntoken = "{token}"\nmax_silence_s = {silence_s}\n'
                 "reminder_every_s = 0\n")
    return text

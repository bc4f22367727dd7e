"""A real appliance (`phonehome agent` as a process, its web page on 127.0.0.1) and Debian's chromium driven by
Playwright. Screenshots of the main pages go to test-output/screenshots/ to be looked at."""

import os
import socket
import subprocess
import sys
import time

import pytest

from appliance.atomic import write_atomic

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
# Without the networking flags chromium reaches out to the Internet at every start.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
PHONEHOME = os.path.join(os.path.dirname(sys.executable), "phonehome")
SCREENSHOTS = os.path.join(os.path.dirname(__file__), "..", "..", "test-output", "screenshots")
PASSWORD = "correct horse battery"
PHONE, DESKTOP = {"width": 360, "height": 740}, {"width": 1280, "height": 900}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningAppliance:
    """`phonehome agent` on a config in ``directory``: one target (the PingServer), a monitor inside watching a
    peer, an emulated display, and its web page on a free loopback port."""

    def __init__(self, directory, ping):
        self.dir = directory
        self.port, self.monitor_port = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.monitor_url = f"http://127.0.0.1:{self.monitor_port}"
        self.config_path = str(directory / "phonehome.toml")
        write_atomic(self.config_path, f"""
data_dir = "{directory / 'data'}"
[device]
name = "home"
[heartbeat]
interval_s = 30
timeout_s = 2
[[heartbeat.targets]]
url = "{ping.url}"
kind = "url"
name = "counter"
[monitor]
listen = "127.0.0.1:{self.monitor_port}"
[[monitor.devices]]
name = "garage-pi"
token = "garage-token-0123456789"
max_silence_s = 120
[time]
servers = []
[display]
driver = "emulator"
emulator_file = "{directory / 'display.png'}"
[web]
listen = "127.0.0.1:{self.port}"
""", mode=0o600)
        self.log = open(directory / "agent.log", "w")
        self.process = subprocess.Popen([PHONEHOME, "agent", "--config", self.config_path], stdout=self.log,
                                        stderr=subprocess.STDOUT)
        self._wait_for_port(self.port)

    def _wait_for_port(self, port, timeout_s=20):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"phonehome agent exited: {(self.dir / 'agent.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"the web page never listened on port {port}")

    def setup_code(self):
        done = subprocess.run([PHONEHOME, "setup-code", "--config", self.config_path], capture_output=True,
                              text=True, check=True)
        return done.stdout.split("setup code: ")[1].split()[0]

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs the Debian package 'chromium'")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def appliance(tmp_path, ping):
    running = RunningAppliance(tmp_path, ping)
    yield running
    running.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    yield page
    context.close()


def claim(page, appliance):
    """Claim the appliance through its page as a person does; ends logged in."""
    page.goto(appliance.url + "/")
    assert page.url.endswith("/setup")
    page.fill("#f-code", appliance.setup_code())
    page.fill("#f-password", PASSWORD)
    page.fill("#f-password_again", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_load_state()


def screenshot(page, name):
    """Save the page at phone and desktop width as NAME-phone.png and NAME-desktop.png."""
    os.makedirs(SCREENSHOTS, exist_ok=True)
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        page.wait_for_timeout(400)  # the charts follow a resize after a short debounce
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)

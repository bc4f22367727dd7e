"""The monitor's pages in a real browser at 360 px with JavaScript off: `phonehome monitor` as a process, its
password set with `phonehome monitor set-password`, the device list, a device's page and its pause button."""

import subprocess
import time

import pytest
import requests

from appliance.atomic import write_atomic

from .conftest import PASSWORD, PHONE, PHONEHOME, _free_port, screenshot

pytestmark = pytest.mark.browser


class RunningMonitor:
    """`phonehome monitor` on a config in ``directory`` with a few devices, two of them heard."""

    def __init__(self, directory):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = str(directory / "monitor.toml")
        names = ["home", "cabin", "garage-pi-with-a-rather-long-name-for-a-phone", "lake-house"]
        devices = "".join(f'[[monitor.devices]]\nname = "{n}"\ntoken = "{n[:8]}-token-0123"\nmax_silence_s = 600\n'
                          for n in names)
        write_atomic(self.config_path, f'data_dir = "{directory / "data"}"\n[monitor]\n'
                                       f'listen = "127.0.0.1:{self.port}"\n{devices}', mode=0o600)
        subprocess.run([PHONEHOME, "monitor", "set-password", "--config", self.config_path, "--password-stdin"],
                       input=PASSWORD + "\n", text=True, check=True, capture_output=True)
        self.log = open(directory / "monitor.log", "w")
        self.process = subprocess.Popen([PHONEHOME, "monitor", "--config", self.config_path], stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(self.url + "/login", timeout=1)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise AssertionError((directory / "monitor.log").read_text()) from None
                time.sleep(0.05)
        for name in names[:2]:
            beat = {"device": name, "sent_at": time.time() + 1.5, "seq": 7, "boot_id": "3f1c-44aa", "uptime_s": 90061,
                    "time": {"verdict": "ok", "offset_ms": 12.0}}
            r = requests.post(self.url + "/api/v1/heartbeat", json=beat, timeout=5,
                              headers={"Authorization": f"Bearer {name[:8]}-token-0123"})
            assert r.status_code == 200, r.text

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def monitor(tmp_path):
    running = RunningMonitor(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def phone(browser):
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    page = context.new_page()
    yield page
    context.close()


def page_width(page):
    return page.evaluate("document.documentElement.scrollWidth")


def test_on_a_phone_without_javascript_log_in_see_the_devices_and_pause_one(phone, monitor):
    phone.goto(monitor.url + "/devices/home")
    assert "/login" in phone.url
    phone.fill("#f-password", PASSWORD)
    phone.click("button[type=submit]")
    phone.wait_for_load_state()
    assert phone.url.endswith("/devices/home")                 # back where the login started
    phone.goto(monitor.url + "/")
    assert phone.locator("table.devices tbody tr").count() == 4
    assert page_width(phone) <= PHONE["width"]                 # no sideways scrolling of the page itself
    screenshot(phone, "monitor-devices")
    phone.set_viewport_size(PHONE)
    phone.click("a[href='/devices/home']")
    phone.wait_for_load_state()
    assert page_width(phone) <= PHONE["width"]
    phone.click("button[value='1h']")
    phone.wait_for_load_state()
    assert "Alerts for home paused for 1 hour" in phone.inner_text("main")
    assert "Alerts paused until" in phone.inner_text("#alerts")
    screenshot(phone, "monitor-device")
    phone.set_viewport_size(PHONE)
    phone.click("text=Resume alerts")
    phone.wait_for_load_state()
    assert "Alerts are on" in phone.inner_text("#alerts")

"""The device list says what the monitor knows of itself: the gap before this run and its connectivity.

A MonitorService on a real SQLite file that ran before, stopped, and runs
again; Flask's test client logs in as a person does."""

import re

from appliance.clock import Now
from appliance.monitor.canaries import Probe
from appliance.monitor.service import MonitorService

from .test_monitor_pages import T0, RunningMonitor, set_password


class EarlierClock:
    def now(self):
        return Now(50.0, T0.wall - 3600)


def line(response):
    found = re.search(r'<p class="muted" id="monitor-self">([^<]*)</p>', response.get_data(as_text=True))
    return found.group(1) if found else None


def test_the_device_list_says_when_the_monitor_was_not_running(tmp_path):
    config = RunningMonitor(tmp_path, ("home",))          # (for its config; its service is stopped at once)
    config.service.stop()
    earlier = MonitorService(config.config, clock=EarlierClock())
    earlier.stop()                                        # the last run: stopped cleanly an hour before T0
    monitor = RunningMonitor(tmp_path, ("home",))
    try:
        assert set_password(monitor) == 0
        browser = monitor.logged_in()
        shown = line(browser.get("/"))
        assert shown.startswith("Running since ")
        assert "before that the monitor was not running from " in shown and "(1 h 0 min)" in shown
        assert shown.endswith(" (1 h 0 min); startup grace until " + shown[-6:-1] + ".")
        monitor.service.selfwatch.canary_result(Probe(False, problems=("127.0.0.1:9: connection refused",)),
                                                monitor.clock.now())
        shown = line(browser.get("/"))
        assert "Connectivity lost since " in shown
        assert shown.endswith("(no canary answered: 127.0.0.1:9: connection refused).")
    finally:
        monitor.service.stop()


def test_a_first_start_says_nothing(tmp_path):
    monitor = RunningMonitor(tmp_path, ("home",))
    try:
        assert set_password(monitor) == 0
        assert line(monitor.logged_in().get("/")) is None
    finally:
        monitor.service.stop()

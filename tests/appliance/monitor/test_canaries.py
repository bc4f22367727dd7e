"""The canary prober against real HTTP servers on 127.0.0.1, a port nothing listens on and one that never
answers; and the monitor's prober thread."""

import threading
import time

from appliance.config.schema import Alerts, Config, Monitor, MonitoredDevice
from appliance.monitor.canaries import CanaryProber
from appliance.monitor.service import MonitorService


def test_a_canary_that_answers_with_an_error_status_still_proves_the_way_out(ping):
    probe = CanaryProber([ping.base + "/fail"], timeout_s=2).probe()
    assert probe.ok and probe.status == 500
    assert probe.describe() == f"canary {ping.base.split('//')[1]} answered (HTTP 500)"


def test_the_first_canary_that_answers_ends_the_probe(ping, free_port):
    closed = f"http://127.0.0.1:{free_port()}/"
    probe = CanaryProber([closed, ping.url, ping.url], timeout_s=2).probe()
    assert probe.ok and probe.url == ping.url and len(probe.problems) == 1
    assert ping.beats == 1


def test_none_answering_is_lost_and_says_why_for_each(free_port):
    port = free_port()
    probe = CanaryProber([f"http://127.0.0.1:{port}/a", f"http://127.0.0.1:{port}/b"], timeout_s=2).probe()
    assert not probe.ok
    assert probe.describe() == (f"no canary answered: 127.0.0.1:{port}: connection refused by 127.0.0.1:{port}; "
                                f"127.0.0.1:{port}: connection refused by 127.0.0.1:{port}")


def test_a_canary_that_never_answers_costs_its_timeout_and_no_more(silent_port):
    started = time.monotonic()
    probe = CanaryProber([f"http://127.0.0.1:{silent_port}/"], timeout_s=0.3).probe()
    assert not probe.ok and probe.elapsed_s < 2.0
    assert time.monotonic() - started < 2.0


def test_the_monitor_probes_its_canaries_in_a_thread_and_forgets_them_when_they_are_removed(tmp_path, ping):
    device = MonitoredDevice(name="home", token="home-token-123", max_silence_s=300)
    config = Config(data_dir=str(tmp_path / "data"), alerts=Alerts(),
                    monitor=Monitor(devices=(device,), canary_urls=(ping.url,), canary_every_s=3600))
    service = MonitorService(config, channels=[])
    before = set(threading.enumerate())
    service.start()
    try:
        assert {t.name for t in set(threading.enumerate()) - before} >= {"monitor-canaries"}
        assert ping.wait_for(1)
        deadline = time.monotonic() + 5
        while service.selfwatch.check.connectivity.state != "ok" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert service.selfwatch.check.connectivity.state == "ok"
        service.reload(Config(data_dir=config.data_dir, alerts=Alerts(), monitor=Monitor(devices=(device,))))
        assert service.selfwatch.check.connectivity.state == "unknown"   # no canaries: nothing to go by
    finally:
        service.stop()
    assert not [t for t in threading.enumerate() if t.name == "monitor-canaries" and t.is_alive()]

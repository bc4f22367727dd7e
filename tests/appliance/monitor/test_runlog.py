"""The monitor's run log: the gap before a start, said once, on a real SQLite file; and a stalled scheduler."""

import threading

import pytest

from appliance.clock import Now
from appliance.config.schema import Alerts, Config, Monitor, MonitoredDevice
from appliance.monitor.runlog import ALIVE_EVERY_S, Run, describe_gap, describe_stall, grace_text
from appliance.monitor.service import MonitorService

from .conftest import ManualClock
from .conftest import ny as at




pytestmark = pytest.mark.usefixtures("new_york")


# -- the sentences -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("previous, started, grace, text", [
    (None, at("10:47:00"), "300 s", None),
    (Run(1, at("09:00:00"), at("10:01:00"), at("10:01:00")), at("10:47:00"), "300 s",
     "monitor was not running from 10:01 to 10:47 EST (46 min); startup grace of 300 s applies"),
    (Run(1, at("09:00:00"), at("10:01:00"), None), at("10:47:00"), "300 s",
     "monitor was not running from 10:01 to 10:47 EST (46 min); it did not stop cleanly (a crash, a kill or a "
     "power cut), last known alive at the start of the gap; startup grace of 300 s applies"),
    (Run(1, at("09:00:00"), at("23:50:00", 13), at("23:50:00", 13)), at("00:20:00"), None,
     "monitor was not running from Jan 13 23:50 to 00:20 EST (30 min)"),
    (Run(1, at("09:00:00"), at("10:01:00"), at("10:01:00")), at("10:01:05"),
     "60\u2013600 s (each device's max_silence_s)",
     "monitor was not running from 10:01 to 10:01 EST (5 s); startup grace of 60\u2013600 s (each device's "
     "max_silence_s) applies"),
])
def test_the_gap_before_a_start(previous, started, grace, text):
    assert describe_gap(previous, started, grace=grace) == text


@pytest.mark.parametrize("max_silences, text", [
    ((), None), ((300.0,), "300 s"), ((300.0, 300.0), "300 s"),
    ((600.0, 60.0, 300.0), "60\u2013600 s (each device's max_silence_s)"),
])
def test_the_grace_as_text(max_silences, text):
    assert grace_text(max_silences) == text


def test_a_stall_is_a_gap_too():
    assert describe_stall(400, at("10:06:40"), grace="300 s") == (
        "monitor was not running from 10:00 to 10:06 EST (6 min): its scheduler woke that late (the process was "
        "stopped, suspended or starved); startup grace of 300 s applies again")


# -- with a service on a real SQLite file ----------------------------------------------------------------------


def config(tmp_path, *names):
    devices = tuple(MonitoredDevice(name=n, token=f"{n}-token-123", max_silence_s=300) for n in names)
    return Config(data_dir=str(tmp_path / "data"), monitor=Monitor(devices=devices),
                  alerts=Alerts(outbox_dir=str(tmp_path / "outbox")))


def beat(service, name):
    body = f'{{"device": "{name}", "sent_at": 0, "seq": 1, "boot_id": "b00t-1", "uptime_s": 600}}'.encode()
    answer = service.receive(body, "application/json", f"Bearer {name}-token-123")
    assert answer.status == 200, answer.body


def gap_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("monitor was not running")]


def test_a_restart_after_a_clean_stop_says_the_gap_once(tmp_path, caplog):
    clock = ManualClock(Now(1000.0, at("09:00:00")))
    with caplog.at_level("INFO", logger="phonehome.monitor"):
        first = MonitorService(config(tmp_path, "home"), clock=clock, channels=[])
        assert gap_lines(caplog) == [] and first.selfwatch.gap is None   # a first start has no gap
        clock.advance(3660)
        first.stop()
        later = ManualClock(Now(5.0, at("10:47:00")))
        second = MonitorService(config(tmp_path, "home"), clock=later, channels=[])
        second.tick(later.advance(ALIVE_EVERY_S))
    expected = "monitor was not running from 10:01 to 10:47 EST (46 min); startup grace of 300 s applies"
    assert gap_lines(caplog) == [expected]
    assert second.selfwatch.summary() == ("Running since 10:47 EST; before that the monitor was not running from "
                                          "10:01 to 10:47 EST (46 min); startup grace until 10:52.")
    runs = second.store.runs()
    assert [(r.started_at, r.stopped_at) for r in runs] == [(at("10:47:00"), None), (at("09:00:00"), at("10:01:00"))]
    assert runs[0].alive_at == at("10:48:00")       # written by the tick, at most once a minute
    second.tick(later.advance(300))
    assert second.selfwatch.summary().endswith("(46 min).")  # the grace is over
    second.stop()


def test_alive_is_written_at_most_once_a_minute_not_per_heartbeat(tmp_path):
    clock = ManualClock(Now(1000.0, at("09:00:00")))
    service = MonitorService(config(tmp_path, "home"), clock=clock, channels=[])
    for _ in range(30):
        service.tick(clock.advance(1))
    assert service.store.runs()[0].alive_at == at("09:00:00")
    service.tick(clock.advance(30))
    assert service.store.runs()[0].alive_at == at("09:01:00")
    service.stop()


def test_the_startup_grace_applies_after_a_crash(tmp_path, caplog):
    clock = ManualClock(Now(1000.0, at("09:00:00")))
    first = MonitorService(config(tmp_path, "home"), clock=clock, channels=[])
    beat(first, "home")
    first.tick(clock.advance(61))
    first.flush()
    first.store.close()                              # killed at 09:01:01; last known alive 09:01:01
    later = ManualClock(Now(5.0, at("09:30:00")))
    with caplog.at_level("INFO", logger="phonehome.monitor"):
        second = MonitorService(config(tmp_path, "home"), clock=later, channels=[])
    assert gap_lines(caplog) == [
        "monitor was not running from 09:01 to 09:30 EST (28 min); it did not stop cleanly (a crash, a kill or a "
        "power cut), last known alive at the start of the gap; startup grace of 300 s applies"]
    second.tick(later.advance(299))
    assert second.device("home")["state"] == "up"    # silent for half an hour, but the monitor was not watching
    second.tick(later.advance(1))
    assert second.device("home")["state"] == "down"
    second.stop()


class SchedulerClock(ManualClock):
    """A ManualClock that says when the scheduler's thread has read it ``reads`` times."""

    def __init__(self, start, reads):
        super().__init__(start)
        self.count, self.reads, self.read = 0, reads, threading.Event()

    def now(self):
        if threading.current_thread().name == "monitor-deadlines":
            self.count += 1
            if self.count >= self.reads:
                self.read.set()
        return super().now()


def test_a_scheduler_that_wakes_far_too_late_starts_the_grace_again(tmp_path, caplog):
    clock = SchedulerClock(Now(1000.0, at("09:00:00")), reads=2)  # its first step, then when it plans the next
    service = MonitorService(config(tmp_path, "home", "cabin"), clock=clock, channels=[])
    beat(service, "home")
    beat(service, "cabin")
    noticed = threading.Event()

    class Notice:
        level = 0

        def handle(self, record):
            if "its scheduler woke that late" in record.getMessage():
                noticed.set()

    import logging
    logger = logging.getLogger("phonehome.monitor")
    logger.addHandler(Notice())
    try:
        service.start()
        assert clock.read.wait(5)                    # the scheduler took its first step and planned the next
        clock.advance(400)                           # the process was stopped for 400 s: home's deadline passed
        beat(service, "cabin")                       # wakes it
        assert noticed.wait(5)
        assert service.device("home")["state"] == "up"
    finally:
        logger.handlers = [h for h in logger.handlers if not isinstance(h, Notice)]
        service.stop()

"""What the monitor shows of its devices: the list's order and filters (pure), then a MonitorService's page of
250 devices on a real SQLite file."""

import json

import pytest

from appliance.config.schema import Config, Monitor, MonitoredDevice
from appliance.monitor.events import State
from appliance.monitor.machine import DeviceView
from appliance.monitor.pauses import Pause
from appliance.monitor.service import MonitorService
from appliance.monitor.views import device_dict, select

from .conftest import T0

STATES = {"b-down": State.DOWN, "a-up": State.UP, "c-new": State.NEW, "a-down": State.DOWN, "B-Up": State.UP}


@pytest.mark.parametrize("state, query, names", [
    (None, "", ["a-down", "b-down", "B-Up", "a-up", "c-new"]),     # down first, then by name
    ("down", "", ["a-down", "b-down"]),
    ("up", "b-", ["B-Up"]),                                        # the search ignores case
    ("new", "", ["c-new"]),
    ("paused", "", ["a-up", "c-new"]),
    (None, "UP", ["B-Up", "a-up"]),
    (None, "nothing", []),
])
def test_select_orders_filters_and_counts(state, query, names):
    found, counts = select(STATES, ["c-new", "a-up", "removed-meanwhile"], state=state, query=query)
    assert found == names
    assert counts == {"down": 2, "up": 2, "new": 1, "paused": 2}


def test_select_refuses_an_unknown_state():
    with pytest.raises(ValueError, match="state must be one of down, up, new, paused, got 'sideways'"):
        select(STATES, [], state="sideways")


def test_device_dict_of_a_down_device_with_paused_alerts():
    view = DeviceView("home", State.DOWN, T0.wall - 600, T0.wall - 600, 300.0, 3600.0)
    beat = {"seq": 4, "uptime_s": 60.0, "time": {"verdict": "ok"}, "clock_offset_ms": 12.0, "extra": "not shown"}
    d = device_dict(view, beat, outages_total=3, pause=Pause(T0.wall - 60, T0.wall + 3540), now=T0)
    assert d["seconds_since_heartbeat"] == 600 and d["outage_s"] == 600
    assert d["alerts_paused"] is True and d["alerts_paused_until"] == T0.wall + 3540
    assert d["last_heartbeat"]["seq"] == 4 and "extra" not in d["last_heartbeat"]
    assert d["time"] == {"verdict": "ok"} and d["clock_offset_ms"] == 12.0 and d["reminder_every_s"] == 3600.0


def test_device_dict_of_a_device_never_heard():
    view = DeviceView("cabin", State.NEW, None, None, 300.0, 0.0)
    d = device_dict(view, None, outages_total=0, pause=None, now=T0)
    assert d["seconds_since_heartbeat"] is None and d["outage_s"] is None and d["last_heartbeat"] is None
    assert d["alerts_paused"] is False and d["alerts_paused_until"] is None


def monitored(name):
    return MonitoredDevice(name=name, token=f"{name}-token-123", max_silence_s=300, reminder_every_s=3600)


def beat(service, name):
    body = json.dumps({"device": name, "sent_at": 1_600_000_000.0, "seq": 1, "boot_id": "b00t-1",
                       "uptime_s": 60.0}).encode()
    assert service.receive(body, "application/json", f"Bearer {name}-token-123").status == 200


@pytest.fixture
def service(tmp_path, clock):
    names = [f"dev-{i:03d}" for i in range(250)]
    config = Config(data_dir=str(tmp_path / "data"), monitor=Monitor(devices=tuple(monitored(n) for n in names)))
    service = MonitorService(config, clock=clock, channels=[])
    yield service
    service.stop()


def test_the_device_list_pages_filters_and_puts_down_first(service, clock):
    names = [f"dev-{i:03d}" for i in range(250)]
    for name in names[:200]:
        beat(service, name)
    clock.advance(200)
    for name in names[:150]:                                  # 150..199 stay silent
        beat(service, name)
    service.tick(clock.advance(100))
    service.pause("dev-007")
    listed = service.device_list(limit=100)
    assert listed.total == 250 and listed.counts == {"down": 50, "up": 150, "new": 50, "paused": 1}
    assert [d["name"] for d in listed.devices[:50]] == names[150:200]  # down first, then by name
    assert [d["name"] for d in listed.devices[50:]] == names[:50]
    assert [d["name"] for d in service.device_list(offset=100, limit=100).devices] == names[50:150]
    assert [d["name"] for d in service.device_list(offset=200, limit=100).devices] == names[200:]
    assert service.device_list(state="paused").devices[0]["name"] == "dev-007"
    assert [d["name"] for d in service.device_list(state="new", query="DEV-21").devices] == names[210:220]
    assert service.device_list(query="nothing-like-it").total == 0
    with pytest.raises(ValueError, match="state must be one of"):
        service.device_list(state="sideways")

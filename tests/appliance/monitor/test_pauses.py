"""Paused alerts: the pure bookkeeping with explicit times, then a MonitorService on a real SQLite file whose
e-mail goes to a real SMTP sink, driven by tick(now) and dispatcher.tick(channel, now) without sleeping."""

import json

import pytest

from appliance.clock import Now
from appliance.config.schema import Alerts, Config, Email, Monitor, MonitoredDevice
from appliance.errors import StoreError
from appliance.monitor.events import Kind
from appliance.monitor.pauses import Pause, Pauses
from appliance.monitor.service import MonitorService

from .conftest import T0, ManualClock

HOUR_S = 3600.0


# -- Pauses, pure ------------------------------------------------------------


def test_a_timed_pause_ends_on_the_monotonic_clock_not_the_wall_clock():
    pauses = Pauses(now=T0)
    assert pauses.pause("home", T0, for_s=HOUR_S) == Pause(T0.wall, T0.wall + HOUR_S)
    stepped = Now(T0.mono + 60, T0.wall + 5 * HOUR_S)     # NTP steps the wall clock five hours on
    assert pauses.get("home", stepped) == Pause(T0.wall, T0.wall + HOUR_S)
    assert pauses.get("home", T0.later(HOUR_S - 0.1)) is not None
    assert pauses.get("home", T0.later(HOUR_S)) is None
    assert pauses.active(T0.later(HOUR_S)) == {}


def test_until_resumed_lasts_until_resume():
    pauses = Pauses(now=T0)
    pauses.pause("home", T0)
    assert pauses.get("home", T0.later(365 * 86400)) == Pause(T0.wall, None)
    assert pauses.muted({"home", "cabin"}, T0) == {"home"}
    assert pauses.resume("home") is True
    assert pauses.resume("home") is False
    assert pauses.get("home", T0) is None


def test_a_new_pause_replaces_the_old_one():
    pauses = Pauses(now=T0)
    pauses.pause("home", T0, for_s=86400)
    pauses.pause("home", T0.later(10), for_s=HOUR_S)
    assert pauses.get("home", T0.later(HOUR_S + 10)) is None


def test_stored_pauses_are_restored_against_the_wall_clock_of_the_new_process():
    stored = {"home": (T0.wall, T0.wall + HOUR_S), "cabin": (T0.wall, None), "old": (T0.wall, T0.wall + 60)}
    restarted = Now(mono=5.0, wall=T0.wall + 1800)          # a new process: its monotonic clock starts anew
    pauses = Pauses(stored, now=restarted)
    assert set(pauses.active(restarted)) == {"home", "cabin"}  # "old" ended while the monitor was stopped
    assert pauses.get("home", Now(5.0 + 1799.9, 0)) is not None
    assert pauses.get("home", Now(5.0 + 1800, 0)) is None


@pytest.mark.parametrize("for_s", [0, -1, float("nan"), float("inf"), "3600"])
def test_a_pause_must_last_a_positive_time(for_s):
    with pytest.raises(ValueError, match="positive number of seconds or until resumed"):
        Pauses(now=T0).pause("home", T0, for_s=for_s)


# -- the service, with a real SMTP sink ---------------------------------------


def monitored(name):
    return MonitoredDevice(name=name, token=f"{name}-token-123", max_silence_s=300, reminder_every_s=3600)


@pytest.fixture
def config(tmp_path, smtp_sink):
    email = Email(smtp_host="127.0.0.1", smtp_port=smtp_sink.port, sender="phonehome@example.com",
                  to=("me@example.com",), security="none")
    return Config(data_dir=str(tmp_path / "data"), monitor=Monitor(devices=(monitored("home"), monitored("cabin"))),
                  alerts=Alerts(email=email))


@pytest.fixture
def services():
    made = []

    def make(config, clock):
        service = MonitorService(config, clock=clock)
        made.append(service)
        return service

    yield make
    for service in made:
        service.stop()


def beat(service, name="home"):
    body = json.dumps({"device": name, "sent_at": 1_600_000_000.0, "seq": 1, "boot_id": "b00t-1", "uptime_s": 60.0}).encode()
    assert service.receive(body, "application/json", f"Bearer {name}-token-123").status == 200


def send_alerts(service, clock):
    """Let the e-mail worker send everything due, as its thread would."""
    while service.dispatcher.tick("email", clock.now()) is not None:
        clock.advance(1)


def subjects(sink):
    return [m["Subject"].split(":")[0] for m in sink.messages]


def test_a_paused_device_is_still_judged_and_recorded_but_nobody_is_told(config, services, clock, smtp_sink):
    service = services(config, clock)
    beat(service, "home")
    beat(service, "cabin")
    service.pause("home")
    service.tick(clock.advance(300))                         # both go silent: both DOWN
    send_alerts(service, clock)
    down = {e.device: e for e in service.store.events() if e.kind is Kind.DOWN}
    assert set(down) == {"home", "cabin"}                     # home's transition is stored
    assert service.store.deliveries(event_id=down["home"].id) == []
    assert len(service.store.deliveries(event_id=down["cabin"].id)) == 1
    assert service.store.outages(device="home")[0]["ended_at"] is None
    assert len(smtp_sink.messages) == 1 and "cabin" in smtp_sink.messages[0]["Subject"]
    service.tick(clock.advance(3600))                         # reminders: cabin's only
    send_alerts(service, clock)
    assert [e.kind for e in service.store.events(device="home")] == [Kind.REMINDER, Kind.DOWN, Kind.FIRST_SEEN]
    assert len(smtp_sink.messages) == 2 and all("cabin" in m["Subject"] for m in smtp_sink.messages)
    home = service.device("home")
    assert home["state"] == "down" and home["alerts_paused"] and home["alerts_paused_until"] is None


def test_resume_brings_the_alerts_back(config, services, clock, smtp_sink):
    service = services(config, clock)
    beat(service)
    service.pause("home")
    service.tick(clock.advance(300))                          # DOWN, silenced
    assert service.resume("home") is True
    assert service.device("home")["alerts_paused"] is False
    clock.advance(60)
    beat(service)                                             # UP: told
    send_alerts(service, clock)
    assert len(smtp_sink.messages) == 1
    assert "home" in smtp_sink.messages[0]["Subject"] and "UP" in smtp_sink.messages[0]["Subject"]
    assert service.resume("home") is False                    # not paused any more


def test_a_pause_for_an_hour_ends_by_itself(config, services, clock, smtp_sink):
    service = services(config, clock)
    beat(service)
    pause = service.pause("home", for_s=HOUR_S)
    assert pause.until == T0.wall + HOUR_S
    assert service.device("home")["alerts_paused_until"] == T0.wall + HOUR_S
    service.tick(clock.advance(300))                          # DOWN during the pause: silenced
    service.tick(clock.advance(HOUR_S))                       # the pause is over: the reminder is sent
    send_alerts(service, clock)
    assert service.device("home")["alerts_paused"] is False
    assert len(smtp_sink.messages) == 1 and "REMINDER" in smtp_sink.messages[0]["Subject"]


def test_a_pause_survives_a_restart(config, services, clock, smtp_sink):
    first = services(config, clock)
    beat(first)
    first.pause("home")
    first.pause("cabin", for_s=HOUR_S)
    first.stop()
    again = ManualClock(Now(mono=5.0, wall=T0.wall + 1800))  # a new process, half an hour later
    second = services(config, again)
    assert second.device("home")["alerts_paused"] and second.device("home")["alerts_paused_until"] is None
    assert second.device("cabin")["alerts_paused_until"] == T0.wall + HOUR_S
    beat(second)
    second.tick(again.advance(300))                           # silent after the restart's grace: DOWN
    assert second.device("home")["state"] == "down"
    assert second.store.deliveries() == []
    second.tick(again.advance(1800))                          # cabin's hour is over
    assert second.device("cabin")["alerts_paused"] is False
    assert second.device("home")["alerts_paused"] is True


def test_pause_and_resume_refuse_an_unknown_device_and_a_bad_duration(config, services, clock):
    service = services(config, clock)
    with pytest.raises(KeyError):
        service.pause("garage")
    with pytest.raises(KeyError):
        service.resume("garage")
    with pytest.raises(ValueError):
        service.pause("home", for_s=0)
    assert service.store.pauses() == {}


def test_a_pause_that_cannot_be_saved_changes_nothing(config, services, clock):
    service = services(config, clock)
    service.store.close()                                     # a broken database
    with pytest.raises(StoreError, match="data_dir"):
        service.pause("home")
    assert service.device("home")["alerts_paused"] is False

"""Quieted alerts through a MonitorService: a paused site mutes its devices and its own alert; the log says why an
event was recorded but not sent. A real SQLite file and a real outbox channel, on a hand-moved clock."""

import logging

import pytest

from appliance.clock import Now
from appliance.errors import StoreError
from appliance.monitor.events import Kind

from .conftest import T0, ManualClock
from .outbox_monitor import Monitored, device

HOUR_S = 3600.0


@pytest.fixture
def monitored(tmp_path, clock):
    made = []

    def make(devices=None, **monitor):
        devices = devices or [device("garage-pi", site="home"), device("home", site="home"), device("cabin"),
                              device("lake", site="lake")]
        # Two of four silent at once would be a mass silence (the monitor's own check): not what these tests are about.
        m = Monitored(tmp_path, clock, devices, **{"mass_silence_min_devices": 10, **monitor})
        made.append(m)
        return m

    yield make
    for m in made:
        m.service.stop()


ALL = ("cabin", "garage-pi", "home", "lake")


def test_a_paused_site_mutes_both_its_devices_and_the_site_alert_but_records_everything(monitored):
    m = monitored()
    m.up_for(30, ALL)
    pause = m.service.pause_site("home")
    assert pause.until is None
    m.up_for(60, ("cabin", "lake"))
    m.up_for(90, ("cabin", "lake"))                            # garage-pi and home silent: both DOWN, the site too
    assert m.sent() == []
    kinds = {(e.device, e.kind) for e in m.service.store.events()}
    assert {("garage-pi", Kind.DOWN), ("home", Kind.DOWN), ("site:home", Kind.SITE_DOWN)} <= kinds
    site_down = next(e for e in m.service.store.events() if e.kind is Kind.SITE_DOWN)
    assert m.service.store.deliveries(event_id=site_down.id) == []
    assert m.service.store.deliveries() == []
    for name in ("garage-pi", "home"):
        info = m.service.device(name)
        assert info["alerts_paused"] and info["site_paused"] and not info["device_paused"]
        assert info["site"] == "home" and info["alerts_paused_until"] is None
    assert m.service.device("cabin")["site_paused"] is False
    listed = m.service.device_list(state="paused")
    assert [d["name"] for d in listed.devices] == ["garage-pi", "home"] and listed.counts["paused"] == 2
    m.up_for(1800, ("cabin", "lake"))                          # reminders: recorded, not sent
    assert m.sent() == []
    assert m.service.store.events(device="home")[0].kind is Kind.REMINDER
    assert m.service.resume_site("home") is True
    m.up_for(30, ALL)                                          # back: the UPs are told
    assert sorted(s.split(" after")[0].split(" \u2014")[0] for s in m.sent()) == ["UP: garage-pi", "UP: home"]
    assert m.service.resume_site("home") is False


def test_a_device_of_a_paused_site_is_muted_and_others_are_not(monitored):
    m = monitored()
    m.up_for(30, ALL)
    m.service.pause_site("lake", for_s=HOUR_S)                 # a site of one device is a site too
    m.up_for(60, ("garage-pi", "home"))
    m.tick(31)
    m.tick(0)
    assert sorted(m.sent()) == ["DOWN: cabin"]
    m.tick(HOUR_S)                                             # the hour is over: lake's reminder is told
    assert sorted(s.split(" (")[0] for s in m.sent()) == ["DOWN: site home", "REMINDER: cabin still down",
                                                           "REMINDER: lake still down"]


def test_resuming_the_site_keeps_a_devices_own_pause(monitored):
    m = monitored()
    m.service.pause("home", for_s=2 * HOUR_S)
    m.service.pause_site("home", for_s=HOUR_S)
    assert m.service.device("home")["alerts_paused_until"] == T0.wall + 2 * HOUR_S   # the longer of the two
    m.service.pause_site("home")
    assert m.service.device("home")["alerts_paused_until"] is None
    m.service.resume_site("home")
    info = m.service.device("home")
    assert info["alerts_paused"] and info["device_paused"] and info["alerts_paused_until"] == T0.wall + 2 * HOUR_S
    assert m.service.device("garage-pi")["alerts_paused"] is False


def test_site_pauses_survive_a_restart_and_are_listed(monitored, clock):
    m = monitored()
    m.service.pause_site("home")
    m.service.pause("cabin", for_s=HOUR_S)
    assert m.service.pauses() == [{"device": "cabin", "paused_at": T0.wall, "until": T0.wall + HOUR_S},
                                  {"site": "home", "paused_at": T0.wall, "until": None}]
    m.service.stop()
    m.start(ManualClock(Now(mono=5.0, wall=T0.wall + 600)))
    assert m.service.device("home")["site_paused"] is True
    assert [p.get("site") or p.get("device") for p in m.service.pauses()] == ["cabin", "home"]
    assert m.service.site("home") == {"name": "home", "devices": [{"name": "garage-pi", "state": "new"},
                                                                   {"name": "home", "state": "new"}],
                                      "down": 0, "paused": True, "paused_at": T0.wall, "paused_until": None}
    assert [s["name"] for s in m.service.sites()] == ["home", "lake"]


def test_pausing_an_unknown_site_or_for_a_bad_time_is_refused_and_changes_nothing(monitored):
    m = monitored()
    with pytest.raises(KeyError):
        m.service.pause_site("cabin")                          # a device, not a site
    with pytest.raises(KeyError):
        m.service.resume_site("nowhere")
    with pytest.raises(ValueError):
        m.service.pause_site("home", for_s=-5)
    m.service.store.close()
    with pytest.raises(StoreError):
        m.service.pause_site("home")
    assert m.service.pauses() == []


def test_the_log_says_why_an_event_was_recorded_but_not_sent(monitored, caplog):
    m = monitored([device("home", reminder_every_s=1800)], flap_threshold=1)
    m.beat()
    m.tick(0)
    with caplog.at_level(logging.INFO, logger="phonehome.monitor"):
        m.tick(61)                                             # a change
        m.clock.advance(10)
        m.beat()                                               # the second: flapping
        m.tick(0)
        m.tick(61)                                             # the third
        m.service.acknowledge("home")
        m.tick(1800)                                           # a reminder of a flapping, acknowledged device
    lines = [r.getMessage() for r in caplog.records]
    assert "home: down -> up (heartbeat received again after 1 min of silence) (not alerted: flapping: " \
           "summarised)" in lines
    assert "home: flapping: 2 state changes in the last hour" in lines
    assert "home: still down (still no heartbeat after 31 min); not reminding: flapping: summarised" in lines
    assert any(line.startswith("home: outage acknowledged (dashboard) until ") for line in lines)

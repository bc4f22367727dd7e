"""MonitorService wired to a real SQLite file, driven by a hand-moved clock and by calling tick() directly.

Only the access-log tests start the service's threads (the follower is a file
edge with no public step); everything else runs on explicit times.
"""

import json
import threading
import time

import pytest

from appliance.clock import Now
from appliance.config.schema import Alerts, Config, Email, Monitor, MonitoredDevice
from appliance.monitor.events import Kind
from appliance.monitor.service import FLUSH_EVERY_S, MonitorService
from appliance.monitor.store import Store

from .conftest import T0, ManualClock

CHANNELS = ["email", "outbox"]


def monitored(name="home", *, max_silence_s=300.0, reminder_every_s=3600.0, **options):
    return MonitoredDevice(name=name, token=f"{name}-token-123", max_silence_s=max_silence_s,
                           reminder_every_s=reminder_every_s, **options)


@pytest.fixture
def make_config(tmp_path, free_port):
    """Factory: ``make_config(*devices, access_log="")`` -> a Config with e-mail and outbox alerts in tmp_path."""
    smtp_port = free_port()  # nothing listens: these tests look at what is queued, not what is sent

    def make(*devices, access_log=""):
        email = Email(smtp_host="127.0.0.1", smtp_port=smtp_port, sender="phonehome@example.com",
                      to=("me@example.com",), security="none")
        return Config(data_dir=str(tmp_path / "data"),
                      monitor=Monitor(devices=devices, access_log=access_log),
                      alerts=Alerts(email=email, outbox_dir=str(tmp_path / "outbox")))

    return make


@pytest.fixture
def services():
    """Factory: ``services(config, clock)`` -> a MonitorService, stopped after the test."""
    made = []

    def make(config, clock=None):
        service = MonitorService(config, clock=clock)
        made.append(service)
        return service

    yield make
    for service in made:
        service.stop()


def beat(service, name="home", seq=1):
    """Send one good JSON heartbeat of ``name`` through receive(); return the Answer."""
    body = {"device": name, "sent_at": 1_600_000_000.0, "seq": seq, "boot_id": "b00t-1", "uptime_s": 60.0}
    answer = service.receive(json.dumps(body).encode(), "application/json", f"Bearer {name}-token-123")
    assert answer.status == 200, answer.body
    return answer


def kinds(service):
    """Stored events, oldest first, as (device, kind)."""
    return [(e.device, e.kind) for e in reversed(service.store.events())]


def queued(service):
    """{(event kind, channel)} of every delivery row."""
    kind_of = {e.id: e.kind for e in service.store.events()}
    return sorted((kind_of[d["event_id"]].value, d["channel"]) for d in service.store.deliveries())


def state(service, name="home"):
    return {d["name"]: d for d in service.devices()}[name]["state"]


# -- heartbeats, deadlines, alerts ---------------------------------------


def test_a_heartbeat_brings_a_new_device_up_and_alerts_nobody(make_config, services, clock):
    service = services(make_config(monitored()), clock)
    assert state(service) == "new"
    answer = beat(service)
    assert answer.body == {"ok": True, "received_at": T0.wall, "state": "up"}
    assert state(service) == "up"
    assert kinds(service) == [("home", Kind.FIRST_SEEN)]
    assert service.store.deliveries() == []
    assert service.received_total == 1


def test_silence_past_max_silence_stores_down_and_queues_it_on_every_channel(make_config, services, clock):
    service = services(make_config(monitored(max_silence_s=300)), clock)
    beat(service)
    service.tick(clock.advance(299.9))
    assert state(service) == "up" and service.store.deliveries() == []
    service.tick(clock.advance(0.1))
    assert state(service) == "down"
    assert kinds(service) == [("home", Kind.FIRST_SEEN), ("home", Kind.DOWN)]
    down = service.store.events()[0]
    assert down.at == T0.wall + 300 and down.outage_started_at == T0.wall
    assert service.dispatcher.channel_names == CHANNELS
    assert queued(service) == [("down", "email"), ("down", "outbox")]
    assert {d["status"] for d in service.store.deliveries()} == {"pending"}
    assert {d["name"]: d for d in service.devices()}["home"]["outages_total"] == 1
    service.tick(clock.advance(60))
    assert len(service.store.events()) == 2  # a DOWN is stored once, not at every tick


def test_reminders_come_every_reminder_every_s_and_up_carries_the_outage_length(make_config, services, clock):
    service = services(make_config(monitored(max_silence_s=300, reminder_every_s=3600)), clock)
    beat(service)
    service.tick(clock.advance(300))                      # DOWN at T0 + 300
    service.tick(clock.advance(3599))
    assert [k for _, k in kinds(service)] == [Kind.FIRST_SEEN, Kind.DOWN]
    service.tick(clock.advance(1))                        # T0 + 3900
    service.tick(clock.advance(3600))                     # T0 + 7500
    assert [k for _, k in kinds(service)] == [Kind.FIRST_SEEN, Kind.DOWN, Kind.REMINDER, Kind.REMINDER]
    clock.advance(100)
    assert beat(service).body["state"] == "up"            # T0 + 7600
    up = service.store.events()[0]
    assert up.kind is Kind.UP and up.outage_s == 7600 and up.outage_started_at == T0.wall
    assert service.store.outages()[0]["duration_s"] == 7600
    assert queued(service) == sorted([(k, c) for k in ("down", "reminder", "reminder", "up") for c in CHANNELS])
    service.tick(clock.advance(299.9))
    assert [k for _, k in kinds(service)][-1] is Kind.UP  # no reminder once it is up
    service.tick(clock.advance(0.1))                      # silent again: a new outage, not a reminder
    assert [k for _, k in kinds(service)][-1] is Kind.DOWN
    assert {d["name"]: d for d in service.devices()}["home"]["outages_total"] == 2


def test_a_wall_clock_step_back_does_not_make_new_heartbeats_look_old(make_config, services, clock):
    service = services(make_config(monitored(max_silence_s=300)), clock)
    beat(service)
    clock.step_wall(-3600)  # NTP corrects a clock that ran an hour ahead
    for _ in range(20):     # the device keeps phoning every minute for 20 minutes
        beat(service)
        service.tick(clock.advance(60))
    assert state(service) == "up"
    assert kinds(service) == [("home", Kind.FIRST_SEEN)]


# -- tick() and the write-behind -------------------------------------------


def test_tick_returns_the_time_until_the_next_deadline_or_the_pending_write(make_config, services, clock):
    service = services(make_config(monitored(max_silence_s=30)), clock)
    assert service.tick(clock.now()) == 60.0              # nothing scheduled: look again in a minute
    beat(service, seq=1)                                   # deadline T0 + 30
    assert service.tick(clock.now()) == FLUSH_EVERY_S     # the heartbeat is written a second behind
    assert "home" not in service.store.last_beats()
    assert service.tick(clock.advance(0.4)) == pytest.approx(0.6)
    assert "home" not in service.store.last_beats()
    assert service.tick(clock.advance(0.6)) == pytest.approx(29)  # written; now the deadline is next
    assert service.store.last_beats()["home"]["seq"] == 1
    clock.advance(9)
    for seq in (2, 3, 4):                                  # a burst: written together, once
        beat(service, seq=seq)
        assert service.tick(clock.now()) == FLUSH_EVERY_S
        assert service.store.last_beats()["home"]["seq"] == 1
    # Heartbeats move a deadline without touching the heap, so the scheduler wakes once at
    # the old deadline (T0 + 30), finds it moved, and then sleeps until the new one (T0 + 40).
    assert service.tick(clock.advance(1)) == pytest.approx(19)
    assert service.store.last_beats()["home"]["seq"] == 4
    assert service.store.restored()["home"].last_heard_at == T0.wall + 10
    assert service.tick(clock.advance(19)) == pytest.approx(10)
    assert state(service) == "up"


def test_tick_never_sleeps_longer_than_a_minute(make_config, services, clock):
    service = services(make_config(monitored(max_silence_s=300)), clock)
    beat(service)
    service.tick(clock.now())
    assert service.tick(clock.advance(1)) == 60.0
    assert service.tick(clock.advance(250)) == pytest.approx(49)
    assert service.tick(clock.advance(49)) == 60.0        # DOWN fired; the reminder is an hour away
    assert state(service) == "down"


# -- reload ----------------------------------------------------------------


def test_reload_adds_and_removes_devices_and_keeps_the_others_state(make_config, services, clock):
    service = services(make_config(monitored("home"), monitored("cabin")), clock)
    beat(service, "cabin")
    clock.advance(200)
    beat(service, "home")                                  # home's deadline: T0 + 500
    service.tick(clock.advance(100))                       # T0 + 300: cabin DOWN
    assert state(service, "cabin") == "down"

    service.reload(make_config(monitored("home"), monitored("garage")))
    views = {d["name"]: d for d in service.devices()}
    assert sorted(views) == ["garage", "home"]
    assert views["home"]["state"] == "up" and views["home"]["last_heard_at"] == T0.wall + 200
    assert views["garage"]["state"] == "new"
    service.tick(clock.advance(199.9))
    assert state(service) == "up"
    service.tick(clock.advance(0.1))                       # home's deadline did not move
    assert state(service) == "down"

    events = len(service.store.events())
    service.reload(make_config(monitored("home"), monitored("cabin")))
    assert state(service, "cabin") == "down"               # back from the store, no second DOWN
    service.tick(clock.now())
    assert len(service.store.events()) == events


def test_a_device_removed_and_added_back_is_not_declared_down_at_once(make_config, services, clock):
    service = services(make_config(monitored("home", max_silence_s=300)), clock)
    clock.advance(3600)                                    # long past the startup grace
    beat(service)
    service.tick(clock.now())
    service.tick(clock.advance(FLUSH_EVERY_S))             # the heartbeat is on disk
    service.reload(make_config())
    clock.advance(10)
    service.reload(make_config(monitored("home", max_silence_s=300)))
    service.tick(clock.now())
    assert state(service) == "up"
    service.tick(clock.advance(300 - 10 - FLUSH_EVERY_S - 0.1))
    assert state(service) == "up"
    service.tick(clock.advance(0.1))                       # silent for max_silence_s since it was heard
    assert state(service) == "down"


# -- restart -----------------------------------------------------------------


def test_a_restart_keeps_down_sends_no_second_down_and_sends_up_when_the_device_returns(
        make_config, services, clock):
    config = make_config(monitored(max_silence_s=300, reminder_every_s=3600))
    first = MonitorService(config, clock=clock)  # never stopped: it dies
    beat(first)
    first.tick(clock.advance(300))
    assert state(first) == "down"
    first.store.close()  # a power cut: nothing more is written

    # The new process's monotonic clock starts again near zero; the wall clock goes on.
    again = ManualClock(Now(mono=5.0, wall=T0.wall + 400))
    second = services(config, again)
    assert state(second) == "down"
    assert {d["name"]: d for d in second.devices()}["home"]["outage_started_at"] == T0.wall
    for step in (0, 299.9, 0.1, 1000):                     # during and after the startup grace
        second.tick(again.advance(step))
    assert [k for _, k in kinds(second)] == [Kind.FIRST_SEEN, Kind.DOWN]
    assert queued(second) == [("down", "email"), ("down", "outbox")]
    # The reminder keeps its schedule from the DOWN sent before the restart (wall T0 + 3900).
    second.tick(Now(mono=5.0 + 3499.9, wall=T0.wall + 3899.9))
    assert len(second.store.events()) == 2
    again.current = Now(mono=5.0 + 3500, wall=T0.wall + 3900)
    second.tick(again.now())
    assert [k for _, k in kinds(second)][-1] is Kind.REMINDER

    again.advance(100)
    assert beat(second).body["state"] == "up"
    up = second.store.events()[0]
    assert up.kind is Kind.UP and up.outage_s == 4000 and up.outage_started_at == T0.wall
    assert queued(second).count(("up", "email")) == 1 and queued(second).count(("up", "outbox")) == 1
    assert {d["name"]: d for d in second.devices()}["home"]["outages_total"] == 1


# -- the access log ----------------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def log_line(path, epoch, *, request="/raspberrypiPhoneHome?1359860402"):
    """Append a combined-format line written at ``epoch`` (UTC) to the access log."""
    t = time.gmtime(epoch)
    stamp = f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    with open(path, "a", encoding="utf-8") as f:
        f.write(f'192.0.2.7 - - [{stamp}] "GET {request} HTTP/1.1" 404 196 "-" "curl/7.88.1"\n')


def wait_until(predicate, what, timeout_s=3.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def test_a_magic_line_in_the_access_log_is_a_heartbeat_and_its_time_survives_a_restart(
        tmp_path, make_config, services):
    access_log = tmp_path / "access.log"
    log_line(access_log, time.time() - 3600, request="/index.html")
    config = make_config(MonitoredDevice(name="home", magic="raspberrypiPhoneHome", max_silence_s=300),
                         access_log=str(access_log))
    service = services(config)  # the real clock: log lines carry real times
    service.start()
    assert state(service) == "new"

    first = int(time.time()) - 10
    log_line(access_log, first)
    wait_until(lambda: state(service) == "up", "the first log heartbeat")
    assert kinds(service) == [("home", Kind.FIRST_SEEN)]
    later = first + 5
    log_line(access_log, later)
    wait_until(lambda: service.devices()[0]["last_heard_at"] == later, "the second log heartbeat")
    assert service.received_total == 2
    service.stop()

    # Only the first line made an event; the second one's time is written behind like an HTTP heartbeat's.
    assert Store(config.data_dir + "/monitor.sqlite3").restored()["home"].last_heard_at == later
    assert services(config).devices()[0]["last_heard_at"] == later


def test_stop_ends_every_thread_it_started(tmp_path, make_config, services):
    access_log = tmp_path / "access.log"
    access_log.write_text("")
    service = services(make_config(MonitoredDevice(name="home", magic="phonehome-home"), access_log=str(access_log)))
    before = set(threading.enumerate())
    service.start()
    started = set(threading.enumerate()) - before
    assert {t.name for t in started} == {"monitor-deadlines", "monitor-accesslog", "alerts-email", "alerts-outbox"}
    t = time.monotonic()
    service.stop()
    assert time.monotonic() - t < 1.0
    assert not [t.name for t in started if t.is_alive()]


def test_a_transition_survives_a_database_that_refuses_writes_for_a_while(make_config, services, caplog):
    clock = ManualClock()
    service = services(make_config(monitored(max_silence_s=300)), clock)
    beat(service)
    service.tick(clock.now())
    service.store._db.execute("PRAGMA query_only=ON")  # SQLite itself now refuses every write
    with caplog.at_level("INFO", logger="phonehome.monitor"):
        for _ in range(5):
            service.tick(clock.advance(100))  # the DOWN fires at 300 s, while writes fail
        assert state(service) == "down"
        assert kinds(service) == [("home", Kind.FIRST_SEEN)]
        service.store._db.execute("PRAGMA query_only=OFF")
        service.tick(clock.advance(1))
    assert kinds(service) == [("home", Kind.FIRST_SEEN), ("home", Kind.DOWN)]
    assert queued(service) == [("down", "email"), ("down", "outbox")]
    errors = sorted(r.getMessage().split(" to ")[0] for r in caplog.records if r.levelname == "ERROR")
    assert errors == ["cannot write events", "cannot write heartbeat times"]  # once each, not once a tick


def test_a_change_of_the_devices_clock_verdict_is_recorded_not_alerted(make_config, services):
    clock = ManualClock()
    service = services(make_config(monitored()), clock)

    def beat_with(verdict, seq):
        body = {"device": "home", "sent_at": clock.now().wall, "seq": seq, "boot_id": "b00t-1", "uptime_s": 60.0,
                "time": {"verdict": verdict, "reason": f"reason for {verdict}", "offset_ms": 1.0}}
        answer = service.receive(json.dumps(body).encode(), "application/json", "Bearer home-token-123")
        assert answer.status == 200, answer.body

    beat_with("ok", 1)
    beat_with("ok", 2)
    beat_with("unknown", 3)  # the agent restarted: says nothing about the clock
    beat_with("drifting", 4)
    assert kinds(service) == [("home", Kind.FIRST_SEEN), ("home", Kind.CLOCK)]
    assert service.store.events()[0].reason == "clock check ok -> drifting: reason for drifting"
    assert queued(service) == []
    device = {d["name"]: d for d in service.devices()}["home"]
    assert device["time"]["verdict"] == "drifting" and abs(device["clock_offset_ms"]) < 1


def test_device_pages_are_the_device_list_in_pieces(make_config, services, clock):
    service = services(make_config(*(monitored(f"dev-{i:02d}") for i in range(7))), clock)
    beat(service, "dev-03")
    pages = list(service.device_pages(clock.now(), size=3))
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [d for p in pages for d in p] == service.devices(clock.now())

"""The monitor's state machine, driven with explicit times: no sleeping, no patched clocks."""

import pytest

from appliance.clock import Now
from appliance.config.schema import MonitoredDevice
from appliance.monitor.events import Kind, State
from appliance.monitor.machine import Machine, Restored

T0 = Now(mono=1000.0, wall=1_700_000_000.0)


def device(name="home", max_silence_s=300.0, reminder_every_s=14400.0):
    return MonitoredDevice(name=name, token="secret-token-" + name, max_silence_s=max_silence_s,
                           reminder_every_s=reminder_every_s)


def kinds(events):
    return [(e.device, e.kind) for e in events]


def test_new_device_is_never_alerted_however_long_it_is_silent():
    m = Machine([device()], started=T0)
    assert m.due(T0.later(10 * 86400)) == []
    assert m.view("home").state is State.NEW
    assert m.next_due() is None


def test_first_heartbeat_is_recorded_but_not_alerted():
    m = Machine([device()], started=T0)
    events = m.heartbeat("home", T0.later(1))
    assert kinds(events) == [("home", Kind.FIRST_SEEN)]
    assert not events[0].alerts
    assert m.view("home").state is State.UP


def test_down_fires_exactly_at_the_deadline_and_not_before():
    m = Machine([device(max_silence_s=300)], started=T0)
    m.heartbeat("home", T0.later(10))
    assert m.due(T0.later(309.999)) == []
    events = m.due(T0.later(310))
    assert kinds(events) == [("home", Kind.DOWN)]
    e = events[0]
    assert (e.old, e.new) == (State.UP, State.DOWN)
    assert e.last_heard_at == T0.wall + 10
    assert e.outage_started_at == T0.wall + 10
    assert "no heartbeat for 5 min" in e.reason
    assert m.view("home").state is State.DOWN


def test_each_heartbeat_pushes_the_deadline_on():
    m = Machine([device(max_silence_s=60)], started=T0)
    for t in range(0, 600, 30):
        m.heartbeat("home", T0.later(t))
        assert m.due(T0.later(t + 29)) == []
    assert m.view("home").state is State.UP
    assert kinds(m.due(T0.later(570 + 60))) == [("home", Kind.DOWN)]


def test_up_after_down_carries_the_outage_duration_from_last_heard():
    m = Machine([device(max_silence_s=300)], started=T0)
    m.heartbeat("home", T0.later(0))
    m.due(T0.later(300))
    events = m.heartbeat("home", T0.later(47 * 60))
    assert kinds(events) == [("home", Kind.UP)]
    assert events[0].outage_s == pytest.approx(47 * 60)
    assert events[0].outage_started_at == T0.wall
    assert m.view("home").state is State.UP
    assert m.view("home").outage_started_at is None


def test_reminders_repeat_while_down_and_stop_when_up():
    m = Machine([device(max_silence_s=300, reminder_every_s=3600)], started=T0)
    m.heartbeat("home", T0)
    assert kinds(m.due(T0.later(300))) == [("home", Kind.DOWN)]
    assert m.due(T0.later(300 + 3599)) == []
    reminder = m.due(T0.later(300 + 3600))
    assert kinds(reminder) == [("home", Kind.REMINDER)]
    assert reminder[0].outage_s == pytest.approx(3900)
    assert kinds(m.due(T0.later(300 + 7200))) == [("home", Kind.REMINDER)]
    m.heartbeat("home", T0.later(8000))
    assert [e.kind for e in m.due(T0.later(8000 + 299))] == []


def test_reminder_every_zero_means_never():
    m = Machine([device(max_silence_s=300, reminder_every_s=0)], started=T0)
    m.heartbeat("home", T0)
    m.due(T0.later(300))
    assert m.due(T0.later(10 * 86400)) == []


def test_a_wall_clock_step_neither_fires_nor_delays_a_deadline():
    m = Machine([device(max_silence_s=300)], started=T0)
    m.heartbeat("home", T0)
    # The wall clock jumps a day ahead, the monotonic clock only 100 s.
    assert m.due(Now(T0.mono + 100, T0.wall + 86400)) == []
    # And back a day: the deadline still fires on the monotonic clock.
    assert kinds(m.due(Now(T0.mono + 300, T0.wall - 86400))) == [("home", Kind.DOWN)]


def test_startup_grace_keeps_a_restored_up_device_up_for_max_silence():
    restored = {"home": Restored(State.UP, last_heard_at=T0.wall - 3600)}
    m = Machine([device(max_silence_s=300)], started=T0, restored=restored)
    assert m.due(T0.later(299)) == []
    assert kinds(m.due(T0.later(300))) == [("home", Kind.DOWN)]


def test_restored_down_device_sends_up_not_another_down():
    restored = {"home": Restored(State.DOWN, last_heard_at=T0.wall - 600, outage_started_at=T0.wall - 600,
                                 last_alert_at=T0.wall - 300)}
    m = Machine([device(max_silence_s=300, reminder_every_s=3600)], started=T0, restored=restored)
    assert m.due(T0.later(299)) == []
    events = m.heartbeat("home", T0.later(60))
    assert kinds(events) == [("home", Kind.UP)]
    assert events[0].outage_s == pytest.approx(660)


def test_restored_down_device_reminds_on_schedule_from_the_last_alert():
    restored = {"home": Restored(State.DOWN, last_heard_at=T0.wall - 4000, outage_started_at=T0.wall - 4000,
                                 last_alert_at=T0.wall - 3000)}
    m = Machine([device(max_silence_s=300, reminder_every_s=3600)], started=T0, restored=restored)
    assert m.due(T0.later(599)) == []
    assert kinds(m.due(T0.later(600))) == [("home", Kind.REMINDER)]


def test_log_heartbeat_older_than_max_silence_does_not_bring_a_device_up():
    m = Machine([device(max_silence_s=300)], started=T0.later(-1000))  # long past the startup grace
    assert m.heartbeat("home", T0, heard_at=T0.wall - 301) == []
    assert m.view("home").state is State.NEW
    assert m.view("home").last_heard_at == T0.wall - 301
    events = m.heartbeat("home", T0, heard_at=T0.wall - 100)
    assert kinds(events) == [("home", Kind.FIRST_SEEN)]
    # Deadline counts from when the line was written, not when it was read.
    assert kinds(m.due(T0.later(200))) == [("home", Kind.DOWN)]


def test_out_of_order_log_heartbeat_is_ignored():
    m = Machine([device(max_silence_s=300)], started=T0)
    m.heartbeat("home", T0)
    assert m.heartbeat("home", T0.later(10), heard_at=T0.wall - 5) == []
    assert m.view("home").last_heard_at == T0.wall


def test_reconfigure_keeps_state_adds_and_removes_devices():
    m = Machine([device("a"), device("b")], started=T0)
    m.heartbeat("a", T0)
    m.reconfigure([device("a", max_silence_s=600), device("c")], T0.later(1))
    assert "b" not in m and "c" in m
    assert m.view("a").state is State.UP
    assert m.due(T0.later(599)) == []
    assert kinds(m.due(T0.later(600))) == [("a", Kind.DOWN)]


def test_shorter_max_silence_on_reload_takes_effect():
    m = Machine([device("a", max_silence_s=600)], started=T0)
    m.heartbeat("a", T0)
    m.reconfigure([device("a", max_silence_s=60)], T0.later(1))
    assert kinds(m.due(T0.later(60))) == [("a", Kind.DOWN)]


def test_unknown_device_raises_key_error():
    m = Machine([device("a")], started=T0)
    with pytest.raises(KeyError):
        m.heartbeat("nope", T0)


def test_many_devices_fire_in_deadline_order_and_heap_stays_small():
    devices = [device(f"d{i}", max_silence_s=100 + i) for i in range(1000)]
    m = Machine(devices, started=T0)
    for d in devices:
        m.heartbeat(d.name, T0)
    for t in range(1, 50):  # heartbeats move deadlines without growing the heap
        for d in devices:
            m.heartbeat(d.name, T0.later(t))
    assert len(m._heap) <= 1000
    events = m.due(T0.later(49 + 100 + 999))
    assert [e.device for e in events] == [d.name for d in devices]


def test_startup_grace_also_holds_for_old_log_lines_replayed_at_start():
    m = Machine([device(max_silence_s=300)], started=T0)
    assert kinds(m.heartbeat("home", T0.later(1), heard_at=T0.wall - 200)) == [("home", Kind.FIRST_SEEN)]
    assert m.due(T0.later(299)) == []  # the line's own deadline (T0 + 100) lies inside the grace
    assert kinds(m.due(T0.later(300))) == [("home", Kind.DOWN)]


# -- for the self-check (selfcheck, runlog) ---------------------------------------------------------------


def test_the_census_counts_up_devices_and_those_quiet_for_half_their_max_silence():
    m = Machine([device("a"), device("b"), device("c"), device("new")], started=T0)
    m.heartbeat("a", T0)
    m.heartbeat("b", T0.later(100))
    m.heartbeat("c", T0.later(140))
    assert m.census(T0.later(150), quiet_fraction=0.5) == (3, 1)   # a: silent 150 s of 300
    assert m.census(T0.later(290), quiet_fraction=0.5) == (3, 3)
    m.due(T0.later(300))                                           # a is down: no longer counted
    assert m.census(T0.later(300), quiet_fraction=0.5) == (2, 2)


def test_a_restored_device_is_judged_by_its_wall_clock_last_heartbeat():
    m = Machine([device("a")], started=T0, restored={"a": Restored(State.UP, last_heard_at=T0.wall - 200)})
    assert m.census(T0, quiet_fraction=0.5) == (1, 1)


def test_regrace_gives_every_device_its_max_silence_again_after_a_stall():
    m = Machine([device("a", max_silence_s=300), device("b", max_silence_s=600)], started=T0)
    m.heartbeat("a", T0.later(400))
    m.heartbeat("b", T0.later(400))
    stalled = T0.later(1100)                       # nothing ran from 410 to 1100: a's deadline (700) has passed
    m.regrace(stalled)
    assert m.due(stalled) == []
    assert m.due(stalled.later(299)) == []
    assert kinds(m.due(stalled.later(300))) == [("a", Kind.DOWN)]
    assert kinds(m.due(stalled.later(600))) == [("b", Kind.DOWN)]

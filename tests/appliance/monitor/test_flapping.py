"""Flapping: the pure bookkeeping in tables with explicit times, then a MonitorService on a real SQLite file whose
alerts go to a real outbox channel, driven by receive() and tick(now) on a hand-moved clock without sleeping."""

import email
import email.policy

import pytest

from appliance.clock import Now
from appliance.config.schema import Config, Monitor
from appliance.monitor.events import Kind
from appliance.monitor.flapping import Episode, Flapping

from .conftest import T0, ManualClock
from .outbox_monitor import Monitored, device

HOUR_S = 3600.0

# -- Flapping, pure ------------------------------------------------------------------


def changes(flapping, device, offsets):
    """Feed changes at T0 + each offset (s); return [(began, changes or None)] per change."""
    out = []
    for offset in offsets:
        began, episode = flapping.change(device, T0.later(offset))
        out.append((began, None if episode is None else episode.changes))
    return out


@pytest.mark.parametrize("threshold, offsets, expected", [
    # more than 4 changes within an hour: the 5th makes it flapping, later ones count on
    (4, [0, 600, 1200, 1800, 2400, 3000],
     [(False, None)] * 4 + [(True, 5), (False, 6)]),
    # 5 changes, but spread over more than an hour: never flapping
    (4, [0, 900, 1800, 2700, 3600, 4500],
     [(False, None)] * 6),
    # the window slides: changes 1-5 span a full hour, changes 2-6 fall within one
    (4, [0, 3000, 3200, 3400, 3600, 3800],
     [(False, None)] * 5 + [(True, 5)]),
    # a threshold of 1: the second change within an hour
    (1, [0, 10], [(False, None), (True, 2)]),
    # 0 turns it off
    (0, [0, 1, 2, 3, 4, 5, 6], [(False, None)] * 7),
])
def test_a_device_is_flapping_after_more_than_threshold_changes_within_an_hour(threshold, offsets, expected):
    assert changes(Flapping(threshold=threshold, quiet_s=HOUR_S), "home", offsets) == expected


def test_devices_are_counted_apart():
    flapping = Flapping(threshold=2, quiet_s=HOUR_S)
    assert changes(flapping, "home", [0, 1]) == [(False, None)] * 2
    assert changes(flapping, "cabin", [2, 3]) == [(False, None)] * 2
    assert changes(flapping, "home", [4]) == [(True, 3)]
    assert flapping.episode("cabin") is None


def test_an_episode_ends_after_quiet_s_without_a_change_and_each_change_moves_the_end():
    flapping = Flapping(threshold=2, quiet_s=HOUR_S)
    changes(flapping, "home", [0, 60, 120])                   # flapping from the 3rd change
    assert flapping.next_due() == T0.mono + 120 + HOUR_S
    changes(flapping, "home", [1000])                         # a 4th: the quiet hour starts again
    assert flapping.due(T0.later(120 + HOUR_S)) == []         # the old deadline: moved on, not ended
    assert flapping.episode("home") is not None
    ended = flapping.due(T0.later(1000 + HOUR_S))
    assert ended == [Episode("home", first_at=T0.wall, changes=4, last_at=T0.wall + 1000)]
    assert flapping.episode("home") is None and flapping.due(T0.later(10 * HOUR_S)) == []
    # afterwards it starts afresh: two more changes are not enough
    assert changes(flapping, "home", [1000 + HOUR_S + 1, 1000 + HOUR_S + 2]) == [(False, None)] * 2


def test_the_quiet_period_runs_on_the_monotonic_clock():
    flapping = Flapping(threshold=1, quiet_s=HOUR_S)
    changes(flapping, "home", [0, 10])
    stepped = Now(T0.mono + 20, T0.wall + 5 * HOUR_S)         # NTP steps the wall clock five hours on
    assert flapping.due(stepped) == []


def test_memory_stays_bounded_per_device():
    flapping = Flapping(threshold=4, quiet_s=HOUR_S)
    changes(flapping, "home", [i * 3600.0 for i in range(1000)])  # one change an hour for 1000 hours
    assert len(flapping._recent["home"]) == 5


def test_a_restored_episode_ends_quiet_s_after_its_last_change_by_the_wall_clock():
    flapping = Flapping(threshold=4, quiet_s=HOUR_S)
    restarted = Now(mono=5.0, wall=T0.wall + 1800)            # a new process, 30 min after the last change
    flapping.restore([Episode("home", T0.wall - 600, 7, T0.wall)], restarted)
    assert flapping.episode("home").changes == 7
    assert flapping.due(Now(5.0 + 1799, 0)) == []
    assert [e.device for e in flapping.due(Now(5.0 + 1800, 0))] == ["home"]


def test_configure_forgets_removed_devices_and_moves_deadlines():
    flapping = Flapping(threshold=1, quiet_s=HOUR_S)
    changes(flapping, "home", [0, 10])
    changes(flapping, "cabin", [0, 10])
    flapping.configure(threshold=1, quiet_s=600.0, devices=["home"])
    assert flapping.episode("cabin") is None
    assert [e.device for e in flapping.due(T0.later(10 + 600))] == ["home"]


# -- through the service ------------------------------------------------------------------


def flap(m, times):
    """``times`` outages of 2 min each (DOWN after 60 s of silence, UP at the next beat), 5 min apart; return the
    subjects of the alerts sent meanwhile."""
    subjects = []
    for _ in range(times):
        m.tick(61)                                             # DOWN
        subjects += m.sent()
        m.clock.advance(59)
        m.beat()                                               # UP
        m.tick(0)
        subjects += m.sent()
        m.up_for(180)
        subjects += m.sent()
    return subjects


@pytest.fixture
def monitored(tmp_path, clock):
    made = []

    def make(**monitor):
        m = Monitored(tmp_path, clock, [device()], flap_threshold=4, flap_quiet_s=HOUR_S, **monitor)
        made.append(m)
        return m

    yield make
    for m in made:
        m.service.stop()


def test_a_flapping_device_gets_one_notice_then_one_summary_and_every_change_is_recorded(monitored):
    m = monitored()
    m.beat()
    m.tick(0)
    subjects = flap(m, 5)                                       # 10 changes in 25 min
    assert [s.split(":")[0] for s in subjects] == ["DOWN", "UP", "DOWN", "UP", "FLAPPING"]
    assert subjects[-1] == "FLAPPING: home (5 state changes in the last hour, now DOWN)"
    kinds = [e.kind for e in reversed(m.service.store.events(device="home"))]
    assert kinds.count(Kind.DOWN) == 5 and kinds.count(Kind.UP) == 5 and kinds.count(Kind.FLAPPING) == 1
    assert m.service.device("home")["flapping"] and m.service.device("home")["flapping_changes"] == 10
    m.up_for(HOUR_S - 180 - 30)                                # up since its last change: not yet an hour
    assert m.sent() == []
    m.up_for(30)
    assert m.sent() == ["STEADY: home, now UP"]
    assert m.service.device("home")["flapping"] is False
    subjects = flap(m, 1)                                       # steady again: alerts one by one
    assert [s.split(":")[0] for s in subjects] == ["DOWN", "UP"]


def test_the_summary_says_since_when_how_many_changes_and_the_state_now(monitored):
    m = monitored()
    m.beat()
    m.tick(0)
    flap(m, 5)
    m.tick(61)                                                 # it goes down and stays down
    m.tick(HOUR_S)
    m.sent()
    steady = m.service.store.events(device="home")[0]
    assert steady.kind is Kind.STEADY and steady.new.value == "down"
    assert steady.reason.startswith("steady again since ") and "11 changes during " in steady.reason
    path = sorted(m.outbox.glob("*.eml"))[-1]
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    first = message.get_content().splitlines()[0]
    assert first.startswith("home steady again since ") and first.endswith(", now DOWN.")
    # its reminders were summarised while it flapped; now they come again
    m.tick(1800)
    assert [s.split(":")[0] for s in m.sent()] == ["REMINDER"]


def test_reminders_of_a_flapping_device_are_recorded_not_sent(monitored):
    m = monitored()
    m.beat()
    m.tick(0)
    assert len(flap(m, 2)) == 4                                 # 4 changes, each alerted
    m.tick(61)                                                 # the 5th: DOWN, and now flapping
    assert m.sent() == ["FLAPPING: home (5 state changes in the last hour, now DOWN)"]
    m.tick(1800)                                               # a reminder while flapping
    assert m.sent() == []
    assert m.service.store.events(device="home")[0].kind is Kind.REMINDER


def test_an_episode_survives_a_restart_without_a_second_notice(monitored, clock):
    m = monitored()
    m.beat()
    m.tick(0)
    assert flap(m, 5)[-1].startswith("FLAPPING")
    m.service.stop()
    again = ManualClock(Now(mono=5.0, wall=clock.now().wall + 600))   # a new process, 10 min later
    m.start(again)
    assert m.service.device("home")["flapping"] is True
    m.tick(61)                                                 # silent since before the restart: DOWN
    m.clock.advance(30)
    m.beat()                                                   # and UP: both still summarised, no second notice
    m.tick(0)
    assert [e.kind for e in m.service.store.events(device="home", limit=2)] == [Kind.UP, Kind.DOWN]
    m.up_for(HOUR_S - 30)
    assert m.sent() == []
    m.up_for(30)
    assert m.sent() == ["STEADY: home, now UP"]
    assert m.service.store.flap_episodes() == []


def test_threshold_zero_never_summarises(monitored):
    m = monitored()
    m.service.reload(Config(data_dir=m.config.data_dir, alerts=m.config.alerts,
                            monitor=Monitor(devices=m.config.monitor.devices, flap_threshold=0)))
    m.beat()
    m.tick(0)
    assert [s.split(":")[0] for s in flap(m, 6)] == ["DOWN", "UP"] * 6

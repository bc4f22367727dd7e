"""The in-memory day of round trips and failure windows: times are handed in, nothing sleeps."""

from appliance.agent.beathistory import KEEP_S, BeatHistory, RttPoint
from appliance.agent.failures import Window
from appliance.config.schema import Target

WALL0 = 1_750_000_020.0  # 20 s into a minute


def test_a_slot_a_minute_keeps_the_largest_round_trip_and_counts_failures():
    history = BeatHistory()
    minute = WALL0 - WALL0 % 60
    history.succeeded(WALL0, 40.0)
    history.succeeded(WALL0 + 10, 95.5)   # the same minute: the spike stays
    history.succeeded(WALL0 + 20, 30.0)
    history.failed(WALL0 + 60)            # the next minute: failures only, a gap on the chart
    history.failed(WALL0 + 70)
    history.failed(WALL0 + 120)           # one failure and one beat: the beat's round trip, one failure
    history.succeeded(WALL0 + 130, 50.0)
    assert history.points() == (RttPoint(minute, 95.5, 0), RttPoint(minute + 60, None, 2),
                                RttPoint(minute + 120, 50.0, 1))


def test_failure_windows_stay_after_the_beats_get_through_again():
    history = BeatHistory()
    history.succeeded(WALL0, 40.0)
    history.failed(WALL0 + 60)
    history.failed(WALL0 + 120)
    assert history.windows() == (Window(WALL0 + 60, None, 2),)
    history.succeeded(WALL0 + 180, 41.0)
    history.failed(WALL0 + 240)
    assert history.windows() == (Window(WALL0 + 60, WALL0 + 180, 2), Window(WALL0 + 240, None, 1))


def test_memory_is_bounded_whatever_the_interval_and_a_day_is_kept():
    history = BeatHistory()
    ring = len(history._slots)
    assert ring == KEEP_S // 60
    for i in range(3 * 24 * 3600 // 10):  # three days of a beat every 10 s
        history.succeeded(WALL0 + 10 * i, float(i % 6))
    assert len(history._slots) == ring
    points = history.points()
    assert len(points) == ring
    assert points[-1].at - points[0].at == KEEP_S - 60
    assert all(p.rtt_ms == 5.0 for p in points[:-1])  # six beats a minute, 0 to 5 ms: the largest stays


def test_a_wall_clock_step_back_never_hides_the_beats_after_it():
    history = BeatHistory()
    history.succeeded(WALL0, 10.0)
    history.succeeded(WALL0 - 3 * 86400, 20.0)  # NTP put the clock three days back
    history.succeeded(WALL0 - 3 * 86400 + 60, 30.0)
    assert [p.rtt_ms for p in history.points()] == [20.0, 30.0]  # the "future" slot is beyond a day: dropped
    history.succeeded(WALL0 - 3 * 86400 + 7200, 40.0)
    assert len(history.points()) == 3


def test_a_step_back_within_the_day_keeps_both_sides_in_order():
    history = BeatHistory()
    history.succeeded(WALL0, 10.0)
    history.succeeded(WALL0 - 3600, 20.0)
    assert [p.rtt_ms for p in history.points()] == [20.0, 10.0]


def test_the_sender_reports_each_targets_history_from_its_sends(make_config, make_sender, server, closed_port,
                                                                  clock):
    up = Target(url=f"{server.url}/ping", kind="url", name="up")
    down = Target(url=f"http://127.0.0.1:{closed_port}/ping", kind="url", name="down")
    sender = make_sender(make_config(up, down))
    for worker in sender.workers:
        worker.tick(clock.now())
    ok, failing = sender.history()
    assert (ok.label, ok.kind, failing.label) == ("up", "url", "down")
    [point] = ok.points
    assert point.at == clock.now().wall - clock.now().wall % 60 and point.rtt_ms > 0 and point.failures == 0
    assert ok.windows == ()
    assert [(p.rtt_ms, p.failures) for p in failing.points] == [(None, 1)]
    assert failing.windows == (Window(clock.now().wall, None, 1),)

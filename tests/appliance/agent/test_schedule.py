import pytest

from appliance.agent.schedule import Schedule, retry_delay_s

TOP = 0.999999  # the largest kind of value random.random() returns


@pytest.mark.parametrize("failures, interval_s, rand, expected", [
    (1, 60.0, TOP, 2.0),
    (2, 60.0, TOP, 4.0),
    (5, 60.0, TOP, 32.0),
    (6, 60.0, TOP, 60.0),       # 64 s would pass the interval
    (10_000, 60.0, TOP, 60.0),  # no overflow after days of failures
    (1, 60.0, 0.0, 1.0),        # the jitter halves at most
    (3, 60.0, 0.5, 6.0),
    (1, 0.5, TOP, 0.5),         # base is min(2 s, interval)
    (3, 0.5, TOP, 0.5),
])
def test_retry_delay(failures, interval_s, rand, expected):
    assert retry_delay_s(failures, interval_s, lambda: rand) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("failures", range(1, 12))
@pytest.mark.parametrize("rand", [0.0, 0.3, TOP])
def test_retry_delay_stays_within_half_and_all_of_the_interval_capped_backoff(failures, rand):
    undithered = min(60.0, 2.0 * 2 ** (failures - 1))
    assert 0.5 * undithered <= retry_delay_s(failures, 60.0, lambda: rand) <= undithered


def test_first_beat_is_due_at_once():
    s = Schedule.starting_at(100.0, 60.0)
    assert s.due(100.0)
    assert s.delay_s(100.0) == 0.0


def test_steady_cadence_does_not_drift_with_slow_or_late_sends():
    s = Schedule.starting_at(100.0, 60.0)
    s = s.after_attempt(100.0, 109.5, consecutive_failures=0, rand=lambda: 0.0)  # a 9.5 s send
    assert s.next_mono == 160.0
    assert not s.due(159.9)
    assert s.delay_s(130.0) == 30.0
    s = s.after_attempt(160.7, 160.9, consecutive_failures=0, rand=lambda: 0.0)  # woke 0.7 s late
    assert s.next_mono == 220.0


def test_falling_behind_skips_ahead_instead_of_bursting():
    s = Schedule(60.0, slot_mono=160.0, next_mono=160.0)
    s = s.after_attempt(400.0, 400.1, consecutive_failures=0, rand=lambda: 0.0)  # suspended for 4 minutes
    assert s.next_mono == 460.0
    assert not s.due(400.2)


def test_retry_comes_before_the_next_beat_but_never_after_it():
    s = Schedule.starting_at(100.0, 60.0)
    s = s.after_attempt(100.0, 102.0, consecutive_failures=1, rand=lambda: TOP)
    assert s.next_mono == pytest.approx(104.0)  # 2 s after the failed send finished
    assert s.slot_mono == 160.0
    s = s.after_attempt(104.0, 104.5, consecutive_failures=2, rand=lambda: TOP)
    assert s.next_mono == pytest.approx(108.5)
    assert s.slot_mono == 160.0  # retries leave the cadence alone
    s = s.after_attempt(150.0, 151.0, consecutive_failures=6, rand=lambda: TOP)
    assert s.next_mono == 160.0  # 60 s from now would pass the slot


def test_success_after_retries_returns_to_the_cadence():
    s = Schedule(60.0, slot_mono=160.0, next_mono=131.0)
    s = s.after_attempt(131.0, 131.2, consecutive_failures=0, rand=lambda: 0.0)
    assert (s.slot_mono, s.next_mono) == (160.0, 160.0)


def test_skipped_beats_are_not_made_up():
    s = Schedule(60.0, slot_mono=160.0, next_mono=160.0)
    assert s.skipped(150.0) == s
    s = s.skipped(160.0)
    assert s.next_mono == 220.0
    s = s.skipped(1000.0)
    assert s.next_mono == 1060.0


def test_due_at_brings_the_next_attempt_forward_only():
    s = Schedule(60.0, slot_mono=160.0, next_mono=160.0)
    assert s.due_at(130.0).next_mono == 130.0
    assert s.due_at(130.0).slot_mono == 160.0
    assert s.due_at(170.0).next_mono == 160.0

"""Reach and jitter across checks, like ntpq's: pure, on tables of answers."""

import math

import pytest

from appliance.timecheck.ntp import ServerAnswer
from appliance.timecheck.tracking import ServerStatus, track


def ok(offset_ms, address="192.0.2.1"):
    return ServerAnswer("ntp.lan", "ok", "ok", address=address, offset_ms=offset_ms, delay_ms=1.0, stratum=2)


def failed(code, status):
    return ServerAnswer("ntp.lan", code, status)


def run(answers):
    status = None
    for answer in answers:
        status = track(status, answer)
    return status


@pytest.mark.parametrize("answers, reach", [
    ([ok(0)], 0o1),
    ([ok(0)] * 8, 0o377),
    ([ok(0)] * 12, 0o377),  # 8 bits: older attempts fall off
    ([ok(0), failed("timeout", "no answer within 5 s")], 0o2),
    ([failed("timeout", "…"), ok(0), ok(0)], 0o3),
    ([ok(0)] * 8 + [failed("refused", "…")] * 8, 0),
    ([failed("kiss", "kiss-of-death RATE")], 0o1),  # a packet came back: reachable, if unusable
    ([failed("unresolvable", "unresolvable host")], 0),
])
def test_reach_is_an_8_bit_register_of_the_last_attempts(answers, reach):
    assert run(answers).reach == reach


def test_jitter_is_the_rms_of_the_differences_from_the_newest_offset():
    status = run([ok(1.0), ok(3.0), ok(2.0)])
    assert status.offsets_ms == (1.0, 3.0, 2.0)
    assert status.jitter_ms == pytest.approx(math.sqrt(((1 - 2) ** 2 + (3 - 2) ** 2) / 2))


def test_jitter_needs_two_answers_and_keeps_the_last_eight():
    assert run([ok(5.0)]).jitter_ms is None
    status = run([ok(float(i)) for i in range(12)])
    assert status.offsets_ms == tuple(float(i) for i in range(4, 12))


def test_failed_answers_keep_the_jitter_series():
    status = run([ok(1.0), failed("timeout", "…"), ok(3.0)])
    assert status.offsets_ms == (1.0, 3.0)
    assert status.answer.ok


def test_a_new_address_starts_a_new_jitter_series():
    status = run([ok(1.0, "192.0.2.1"), ok(9.0, "192.0.2.1"), ok(50.0, "198.51.100.7")])
    assert status.offsets_ms == (50.0,)
    assert status.jitter_ms is None
    assert status.reach == 0o7  # reach is the configured name's


def test_a_clock_step_starts_a_new_jitter_series():
    # More than 128 ms (ntpd's step threshold) between two answers: the clock was stepped, not jittery.
    stepped = run([ok(1.0), ok(2.0), ok(1.5), ok(2300.0)])
    assert stepped.offsets_ms == (2300.0,)
    assert stepped.jitter_ms is None
    assert run([ok(1.0), ok(2300.0), ok(2301.0)]).jitter_ms == pytest.approx(1.0)
    assert run([ok(0.0), ok(128.0)]).offsets_ms == (0.0, 128.0)  # up to 128 ms is jitter
    assert run([ok(0.0), ok(-128.5)]).offsets_ms == (-128.5,)
    assert run([ok(0.0), failed("timeout", "…"), ok(500.0)]).offsets_ms == (500.0,)  # across a failed check too


def test_the_first_status_has_no_history():
    assert track(None, ok(2.0)) == ServerStatus(answer=ok(2.0), reach=1, offsets_ms=(2.0,), address="192.0.2.1")

"""The checker: its schedule, events, log lines and history, driven with explicit Now values; then real servers."""

import functools
import json
import logging
import re
import threading
import time

import pytest

from appliance.clock import Now, SystemClock
from appliance.config.schema import Time
from appliance.timecheck.checker import TimeChecker, TimeStatus
from appliance.timecheck.history import FILE_NAME, OffsetHistory
from appliance.timecheck.ntp import ServerAnswer, query_servers
from appliance.timecheck.system import SyncState, SystemReading

from .conftest import ANSWER_TIMEOUT_S

T0 = Now(mono=1000.0, wall=1_795_000_000.0)
SERVERS = ("a.lan", "b.lan", "c.lan")
CHRONY_SYNCED = SystemReading(SyncState("chrony", True, "chrony: synchronised to 192.0.2.1, stratum 2"), "Etc/UTC")


def ok(spec, offset_ms):
    return ServerAnswer(spec, "ok", "ok", address="192.0.2.1", offset_ms=offset_ms, delay_ms=1.0, stratum=2,
                        leap=0, refid="192.0.2.9")


def silent(spec):
    return ServerAnswer(spec, "timeout", "no answer within 5 s", address="192.0.2.1")


def rate_kiss(spec):
    return ServerAnswer(spec, "kiss", "kiss-of-death RATE (the server asks us to ask less often)",
                        address="192.0.2.1", stratum=0, refid="RATE")


class FakeQuery:
    """Answers every server with ``answer(spec)``; counts the calls and records the servers each asked;
    ``error`` makes the next calls raise."""

    def __init__(self, answer=lambda spec: ok(spec, 0.2)):
        self.answer = answer
        self.error = None
        self.calls = 0
        self.asked = []

    def __call__(self, specs, *, timeout_s):
        self.calls += 1
        self.asked.append(tuple(specs))
        if self.error:
            raise self.error
        return tuple(self.answer(spec) for spec in specs)


def offsets(offset_ms):
    return lambda spec: ok(spec, offset_ms)


def make(query=None, *, servers=SERVERS, data_dir=None, system=CHRONY_SYNCED, on_change=None, clock=None,
         rand=lambda: 0.0, slack_s=1.0, **config):
    """A checker with fakes. ``rand`` 0 makes the back-off's jitter factor 0.5: back-offs are half of 30, 60, …"""
    settings = dict(servers=servers, check_every_s=900.0, until_synced_every_s=30.0, timeout_s=0.3)
    settings.update(config)
    return TimeChecker(Time(**settings), clock=clock or SystemClock(), data_dir=data_dir,
                       query=query or FakeQuery(), system=system if callable(system) else (lambda: system),
                       on_change=on_change, rand=rand, slack_s=slack_s)


def ticks(checker, times):
    """tick() at T0 + each of ``times``; the delays it returned."""
    return [checker.tick(T0.later(t)) for t in times]


def test_until_the_first_good_answer_checks_back_off_from_30_s_to_900_s_then_every_900_s():
    query = FakeQuery(silent)  # UDP 123 blocked: no server ever answers
    checker = make(query)
    assert checker.status.verdict == "unknown"
    assert checker.tick(T0) == 15  # 30 s, times the jitter factor 0.5
    assert (query.calls, checker.status.verdict) == (1, "unreachable")
    assert checker.tick(T0.later(10)) == 5  # not due: nothing asked
    assert query.calls == 1
    assert ticks(checker, [15, 45, 105, 225, 465, 915]) == [30, 60, 120, 240, 450, 450]  # doubling up to 900
    assert query.calls == 7
    query.answer = offsets(0.2)
    assert checker.tick(T0.later(1365)) == 900
    assert (query.calls, checker.status.verdict) == (8, "ok")
    query.answer = silent
    assert checker.tick(T0.later(2265)) == 900  # synced once: no going back to fast checks after boot
    assert checker.tick(T0.later(2305)) == 860
    assert query.calls == 9


def test_the_back_off_before_the_first_good_answer_has_jitter_up_to_the_full_delay():
    checker = make(FakeQuery(silent), rand=lambda: 0.999)
    assert checker.tick(T0) == pytest.approx(30, abs=0.1)
    assert checker.tick(T0.later(30)) == pytest.approx(60, abs=0.1)


def test_kisses_and_unsynchronised_servers_back_off_too():
    query = FakeQuery(lambda spec: rate_kiss(spec) if spec == "a.lan" else
                      ServerAnswer(spec, "unsynchronised", "unsynchronised (stratum 16)", stratum=16))
    checker = make(query)
    assert ticks(checker, [0, 15, 45]) == [15, 30, 60]


def test_a_rate_kiss_skips_that_server_until_the_next_regular_check():
    query = FakeQuery(lambda spec: rate_kiss(spec) if spec == "b.lan" else silent(spec))
    checker = make(query)
    checker.tick(T0)
    assert query.asked == [SERVERS]
    assert ticks(checker, [15, 45, 105, 225, 465]) == [30, 60, 120, 240, 450]
    assert query.asked[1:] == [("a.lan", "c.lan")] * 5  # b.lan asked us to ask less often
    b = {s.server: s for s in checker.status.servers}["b.lan"]
    assert (b.answer.code, b.reach) == ("kiss", 0o1)  # its last answer stands; skipping is not an attempt
    checker.tick(T0.later(915))  # check_every_s after the kiss: asked again
    assert query.asked[-1] == SERVERS
    query.answer = offsets(0.2)
    checker.tick(T0.later(1365))
    assert query.asked[-1] == ("a.lan", "c.lan")  # kissed again at 915
    checker.tick(T0.later(2265))
    assert query.asked[-1] == SERVERS
    checker.tick(T0.later(3165))
    assert query.asked[-1] == SERVERS  # it answered: no longer skipped


def test_with_no_servers_the_first_check_counts_as_good():
    query = FakeQuery()
    checker = make(query, servers=())
    assert checker.tick(T0) == 900
    assert query.calls == 0
    assert (checker.status.verdict, checker.status.offset_ms) == ("ok", None)


def test_a_wall_clock_step_neither_fires_nor_delays_a_check():
    query = FakeQuery()
    checker = make(query)
    checker.tick(T0)
    stepped = Now(T0.mono + 100, T0.wall + 86400 * 3)  # NTP moved the wall clock three days
    assert checker.tick(stepped) == 800
    assert query.calls == 1


def test_one_event_and_one_log_line_per_change_of_verdict(caplog):
    query = FakeQuery()
    changes = []
    checker = make(query, on_change=lambda old, new: changes.append((old.verdict, new.verdict, new.reason)))
    with caplog.at_level(logging.INFO, logger="phonehome.timecheck"):
        for i, offset in enumerate([0.2, 0.3, -2300, -2310, 0.1]):
            query.answer = offsets(offset)
            checker.tick(T0.later(900 * i))
    assert [(old, new) for old, new, _ in changes] == [("unknown", "ok"), ("ok", "drifting"), ("drifting", "ok")]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("clock check:")]
    assert lines == [
        "clock check: unknown -> ok: clock 0.2 ms ahead of 3 servers",
        "clock check: ok -> drifting: clock 2.3 s behind 3 servers",
        "clock check: drifting -> ok: clock 0.1 ms ahead of 3 servers",
    ]
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING", "INFO"]


def test_on_change_gets_the_old_and_new_status():
    seen = []
    checker = make(on_change=lambda old, new: seen.append((old, new)))
    new = checker.check_now()
    ((old, passed),) = seen
    assert isinstance(old, TimeStatus) and old.verdict == "unknown" and old.checked_at is None
    assert passed is new is checker.status


def test_the_payload(tmp_path):
    checker = make(FakeQuery(offsets(-12.345)), timezone="Etc/UTC")
    checker.tick(T0)
    payload = checker.status.as_payload()
    assert payload == {"verdict": "ok", "reason": "clock 12 ms behind 3 servers", "offset_ms": -12.3,
                       "jitter_ms": 0.0, "service": "chrony", "synchronized": True, "zone": "Etc/UTC",
                       "checked_at": 1_795_000_000}
    assert json.loads(json.dumps(payload)) == payload
    assert TimeStatus().as_payload() == {"verdict": "unknown", "reason": "not checked yet", "offset_ms": None,
                                         "jitter_ms": None, "service": None, "synchronized": None, "zone": None,
                                         "checked_at": None}


def test_the_status_keeps_every_server_with_its_reach():
    query = FakeQuery()
    checker = make(query)
    checker.tick(T0)
    query.answer = lambda spec: silent(spec) if spec == "b.lan" else ok(spec, 0.4)
    checker.tick(T0.later(900))
    servers = {s.server: s for s in checker.status.servers}
    assert list(servers) == list(SERVERS)
    assert (servers["a.lan"].reach, servers["b.lan"].reach) == (0o3, 0o2)
    assert servers["a.lan"].jitter_ms == pytest.approx(0.2)


def test_the_zone_is_checked_against_the_config():
    checker = make(system=SystemReading(CHRONY_SYNCED.sync, "Etc/UTC"), timezone="America/New_York")
    status = checker.check_now()
    assert (status.verdict, status.system_zone, status.wanted_zone, status.zone_matches) == \
        ("wrong-zone", "Etc/UTC", "America/New_York", False)
    assert status.reason.endswith("clock in Etc/UTC, expected America/New_York")


def test_the_history_file_is_written_every_6_hours_and_at_stop_not_every_check(tmp_path):
    checker = make(data_dir=str(tmp_path))
    path = tmp_path / FILE_NAME
    for i in range(24):  # 6 h minus one check at 900 s
        checker.tick(T0.later(900 * i))
        assert not path.exists()
    checker.tick(T0.later(900 * 24))
    assert path.exists() and checker.history.writes == 1
    written = path.stat().st_mtime_ns
    checker.tick(T0.later(900 * 25))
    assert path.stat().st_mtime_ns == written
    checker.stop()
    checker.stop()  # idempotent: nothing new, nothing written
    assert checker.history.writes == 2
    saved = OffsetHistory(str(path))
    saved.load()
    assert len(saved.points()) == 26


def test_the_history_is_loaded_at_start(tmp_path):
    first = make(data_dir=str(tmp_path))
    first.tick(T0)
    first.stop()
    second = make(data_dir=str(tmp_path))
    assert len(second.history.points()) == 1


def test_a_failing_check_is_logged_once_retried_with_back_off_and_never_raises(caplog):
    query = FakeQuery()
    query.error = RuntimeError("resolver exploded")
    checker = make(query)
    with caplog.at_level(logging.INFO, logger="phonehome.timecheck"):
        delays = ticks(checker, [0, 15, 45, 105, 225, 465, 915, 1365])
        assert delays == [15, 30, 60, 120, 240, 450, 450, 450]  # appliance.backoff.backoff_s, jitter factor 0.5
        assert query.calls == 8 and checker.status.verdict == "unknown"
        query.error = None
        checker.tick(T0.later(1815))
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "clock check failed (RuntimeError: resolver exploded); retrying, first in 15 s"
    assert messages[1] == "clock check works again after 8 failed attempt(s)"
    assert messages[2].startswith("clock check: unknown -> ok")
    assert len(messages) == 3


def test_a_check_that_raises_once_then_works(caplog):
    query = FakeQuery()
    query.error = RuntimeError("resolver exploded")
    checker = make(query)
    with caplog.at_level(logging.INFO, logger="phonehome.timecheck"):
        assert checker.tick(T0) == 15
        query.error = None
        assert checker.tick(T0.later(15)) == 900
    assert checker.status.verdict == "ok"
    assert [r.getMessage() for r in caplog.records] == [
        "clock check failed (RuntimeError: resolver exploded); retrying, first in 15 s",
        "clock check works again after 1 failed attempt(s)",
        "clock check: unknown -> ok: clock 0.2 ms ahead of 3 servers"]


def test_a_failing_system_reader_is_a_failed_check_too(caplog):
    checker = make(servers=(), system=lambda: 1 / 0)
    assert checker.tick(T0) == 15
    assert "ZeroDivisionError" in caplog.text


class ExplodingOnce:
    """A clock whose first reading raises: an error outside the check itself, which only the loop can catch."""

    def __init__(self):
        self.readings = 0

    def now(self):
        self.readings += 1
        if self.readings == 1:
            raise RuntimeError("clock exploded")
        return SystemClock().now()


def test_the_thread_survives_an_error_outside_the_check_logs_it_once_and_goes_on(caplog):
    checked = threading.Event()
    checker = make(clock=ExplodingOnce(), on_change=lambda old, new: checked.set(), check_every_s=0.05,
                   until_synced_every_s=0.05)
    with caplog.at_level(logging.INFO, logger="phonehome.timecheck"):
        checker.start()
        try:
            assert checked.wait(5), "the thread died: no check after the clock raised once"
        finally:
            checker.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("clock check failed (RuntimeError: clock exploded); retrying, first in ")
    assert messages[1] == "clock check works again after 1 failed attempt(s)"
    assert sum("failed (" in m for m in messages) == 1


class Gate:
    """A call that blocks until ``release()`` (at most 5 s, so a broken test fails instead of hanging)."""

    def __init__(self, result=None):
        self.result = result
        self.entered = threading.Event()
        self._open = threading.Event()
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        self.entered.set()
        self._open.wait(5)
        return self.result(*args, **kwargs) if callable(self.result) else self.result

    def release(self):
        self._open.set()


def test_a_hanging_time_service_reading_fails_the_check_in_time_and_is_not_stacked(caplog):
    gate = Gate(CHRONY_SYNCED)
    checker = make(system=gate, timeout_s=0.05, slack_s=0.05)
    try:
        with caplog.at_level(logging.INFO, logger="phonehome.timecheck"):
            started = time.monotonic()
            assert checker.tick(T0) == 15
            assert time.monotonic() - started < 3.0  # timeout_s + slack_s (0.1 s), not the 5 s the reading hangs
            assert checker.tick(T0.later(15)) == 30  # still hanging: no second reader
            assert gate.calls == 1
    finally:
        gate.release()
    assert checker.status.verdict == "unknown"
    assert [r.getMessage() for r in caplog.records] == [
        ("clock check failed (TimeoutError: reading the time service took longer than 0.05 s); retrying, "
         "first in 15 s")]
    for thread in [t for t in threading.enumerate() if t.name == "clock check: system"]:
        thread.join(5)
    checker.tick(T0.later(45))
    assert checker.status.verdict == "ok"


def test_stop_returns_in_time_even_when_a_check_hangs():
    gate = Gate(lambda specs, *, timeout_s: tuple(ok(s, 0.2) for s in specs))
    checker = make(gate, timeout_s=0.05, slack_s=0.1)
    checker.start()
    try:
        assert gate.entered.wait(5)
        started = time.monotonic()
        checker.stop()
        assert time.monotonic() - started < 3.0  # timeout_s + slack_s (0.15 s), not the 5 s the check hangs
    finally:
        gate.release()


def _loops():
    return {t for t in threading.enumerate() if t.name == "clock check"}


def test_start_after_a_stop_that_could_not_wait_runs_one_loop():
    gate = Gate(lambda specs, *, timeout_s: tuple(ok(s, 0.2) for s in specs))
    checker = make(gate, timeout_s=0.05, slack_s=0.1)
    before = _loops()
    checker.start()
    try:
        assert gate.entered.wait(5)
        (old,) = _loops() - before
        checker.stop()  # the check hangs: stop gives up waiting for it
        checker.start()
        (new,) = _loops() - before - {old}
        gate.release()  # the old check ends; its loop must end too, not carry on beside the new one
        old.join(2)
        assert not old.is_alive(), "two loops: the old one was revived by start()"
        assert new.is_alive()
    finally:
        gate.release()
        checker.stop()


def test_a_broken_consumer_does_not_stop_the_checks(caplog):
    def explode(old, new):
        raise ValueError("LED on fire")

    checker = make(FakeQuery(), on_change=explode)
    assert checker.tick(T0) == 900
    assert checker.status.verdict == "ok"
    assert "a consumer of the clock verdict failed on unknown -> ok" in caplog.text


def test_start_checks_on_a_thread_and_stop_ends_it_and_saves(tmp_path):
    checked = threading.Event()
    checker = make(data_dir=str(tmp_path), on_change=lambda old, new: checked.set(),
                   check_every_s=0.05, until_synced_every_s=0.05)
    checker.start()
    checker.start()  # a second start does nothing
    assert checked.wait(5), "no check within 5 s"
    checker.stop()
    assert not any(t.name == "clock check" for t in threading.enumerate())
    assert (tmp_path / FILE_NAME).exists()
    checker.stop()


# -- the history file and the payload --------------------------------------


@pytest.mark.parametrize("data", [
    b'{"version":1,"verdicts":["ok"],"points":[[Infinity,1.0,0]]}',
    b'{"version":1,"verdicts":["ok"],"points":[[1795000000,NaN,0]]}',
    b'{"version":1,"verdicts":["ok"],"points":[[1e400,1.0,0]]}',
    b'{"version":1,"verdicts":["ok"],"points":[[1' + b"0" * 400 + b',1.0,0]]}',
    b'{"version":1,"verdicts":["ok","exploded"],"points":[[1795000000,1.0,1]]}',
    b'{"version":1,"verdicts":["ok"],"points":' + b"[" * 100_000,
    b'{"version":1,"verdicts":{"0":"ok"},"points":[[1795000000,1.0,0]]}',
    b"\xff\xfe not even text",
])
def test_a_bad_history_file_never_stops_the_checker(tmp_path, data):
    (tmp_path / FILE_NAME).write_bytes(data)
    checker = make(data_dir=str(tmp_path))  # must not raise
    checker.tick(T0)
    checker.stop()  # writes a good file over the bad one; must not raise
    saved = OffsetHistory(str(tmp_path / FILE_NAME))
    saved.load()
    assert [p.verdict for p in saved.points()] == ["ok"]


def test_the_payload_reason_is_at_most_200_characters():
    status = TimeStatus(verdict="unreachable", reason="none of 9 servers answered usefully (" + "x" * 300 + ")")
    reason = status.as_payload()["reason"]
    assert len(reason) == 200 and reason.endswith("…")
    assert TimeStatus(reason="y" * 200).as_payload()["reason"] == "y" * 200


def test_many_unusable_servers_still_make_a_reason_the_monitor_keeps_whole():
    specs = tuple(f"ntp-server-number-{i}.example.lan" for i in range(12))
    checker = make(FakeQuery(lambda spec: ServerAnswer(spec, "refused", f"port closed {spec}")), servers=specs)
    status = checker.check_now()
    assert len(status.reason) <= 200 and status.reason.endswith("…")
    assert status.as_payload()["reason"] == status.reason


# -- with real servers on 127.0.0.1 ------------------------------------------


def real(specs, resolver, *, timeout_s=ANSWER_TIMEOUT_S):
    """A checker asking real servers with the real ntp.query_servers, through a resolver that must not ask DNS."""
    return TimeChecker(Time(servers=tuple(specs), timeout_s=timeout_s), clock=SystemClock(), data_dir=None,
                       query=functools.partial(query_servers, resolve=resolver.resolve),
                       system=lambda: CHRONY_SYNCED)


def test_one_falseticker_among_real_servers_does_not_flip_ok(chrony, ntp_server, no_dns):
    good = [chrony.spec, ntp_server().spec, ntp_server(skew_s=0.001).spec]
    liar = ntp_server(skew_s=2.3).spec
    status = real(good + [liar], no_dns).check_now()
    assert status.verdict == "ok", status.reason
    assert abs(status.offset_ms) < 50
    assert re.match(r"clock [\d.]+ ms (ahead of|behind) 3 servers; 1 other disagrees \(", status.reason), status.reason
    assert f"{liar}: clock 2.3 s behind it" in status.reason


def test_three_skewed_real_servers_outvote_one_good_one(chrony, ntp_server, no_dns):
    skewed = [ntp_server(skew_s=2.3).spec for _ in range(3)]
    status = real(skewed + [chrony.spec], no_dns).check_now()
    assert status.verdict == "drifting", status.reason
    assert status.offset_ms == pytest.approx(-2300, abs=50)
    assert status.reason.startswith("clock 2.3 s behind 3 servers; 1 other disagrees")


def test_real_unusable_servers_make_unreachable(ntp_server, no_dns):
    specs = [ntp_server(silent=True).spec, ntp_server(stratum=0, refid=b"RATE").spec, "unresolvable.invalid"]
    status = real(specs, no_dns).check_now()  # the kiss must come back: the answer timeout, not the silence one
    assert status.verdict == "unreachable"
    assert [s.answer.code for s in status.servers] == ["timeout", "kiss", "unresolvable"]
    assert [s.reach for s in status.servers] == [0, 1, 0]

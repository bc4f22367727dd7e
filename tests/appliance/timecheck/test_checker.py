"""The checker: its schedule, events, log lines and history, driven with explicit Now values; then real servers."""

import json
import logging
import re
import threading

import pytest

from appliance.clock import Now, SystemClock
from appliance.config.schema import Time
from appliance.timecheck.checker import TimeChecker, TimeStatus
from appliance.timecheck.history import FILE_NAME, OffsetHistory
from appliance.timecheck.ntp import ServerAnswer
from appliance.timecheck.system import SyncState, SystemReading

T0 = Now(mono=1000.0, wall=1_795_000_000.0)
SERVERS = ("a.lan", "b.lan", "c.lan")
CHRONY_SYNCED = SystemReading(SyncState("chrony", True, "chrony: synchronised to 192.0.2.1, stratum 2"), "Etc/UTC")


def ok(spec, offset_ms):
    return ServerAnswer(spec, "ok", "ok", address="192.0.2.1", offset_ms=offset_ms, delay_ms=1.0, stratum=2,
                        leap=0, refid="192.0.2.9")


def silent(spec):
    return ServerAnswer(spec, "timeout", "no answer within 5 s", address="192.0.2.1")


class FakeQuery:
    """Answers every server with ``answer(spec)``; counts the calls; ``error`` makes the next calls raise."""

    def __init__(self, answer=lambda spec: ok(spec, 0.2)):
        self.answer = answer
        self.error = None
        self.calls = 0

    def __call__(self, specs, *, timeout_s):
        self.calls += 1
        if self.error:
            raise self.error
        return tuple(self.answer(spec) for spec in specs)


def offsets(offset_ms):
    return lambda spec: ok(spec, offset_ms)


def make(query=None, *, servers=SERVERS, data_dir=None, system=CHRONY_SYNCED, on_change=None, clock=None,
         **config):
    settings = dict(servers=servers, check_every_s=900.0, until_synced_every_s=30.0, timeout_s=0.3)
    settings.update(config)
    return TimeChecker(Time(**settings), clock=clock or SystemClock(), data_dir=data_dir,
                       query=query or FakeQuery(), system=lambda: system, on_change=on_change)


def test_every_30_s_until_the_first_good_answer_then_every_900_s():
    query = FakeQuery(silent)
    checker = make(query)
    assert checker.status.verdict == "unknown"
    assert checker.tick(T0) == 30
    assert (query.calls, checker.status.verdict) == (1, "unreachable")
    assert checker.tick(T0.later(10)) == 20  # not due: nothing asked
    assert query.calls == 1
    assert checker.tick(T0.later(30)) == 30
    query.answer = offsets(0.2)
    assert checker.tick(T0.later(60)) == 900
    assert (query.calls, checker.status.verdict) == (3, "ok")
    query.answer = silent
    assert checker.tick(T0.later(960)) == 900  # synced once: no going back to 30 s after boot
    assert checker.tick(T0.later(1000)) == 860
    assert query.calls == 4


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
        delays = [checker.tick(T0.later(t)) for t in (0, 30, 90, 210, 450, 930, 1830, 2730)]
        assert delays == [30, 60, 120, 240, 480, 900, 900, 900]
        assert query.calls == 8 and checker.status.verdict == "unknown"
        query.error = None
        checker.tick(T0.later(3630))
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "clock check failed (RuntimeError: resolver exploded); retrying, first in 30 s"
    assert messages[1] == "clock check works again after 8 failed attempt(s)"
    assert messages[2].startswith("clock check: unknown -> ok")
    assert len(messages) == 3


def test_a_failing_system_reader_is_a_failed_check_too(caplog):
    checker = TimeChecker(Time(servers=(), timeout_s=0.3), clock=SystemClock(), data_dir=None,
                          query=FakeQuery(), system=lambda: 1 / 0)
    assert checker.tick(T0) == 30
    assert "ZeroDivisionError" in caplog.text


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


# -- with real servers on 127.0.0.1 ------------------------------------------


def real(specs):
    """A checker asking real servers with the default query (the agent's resolver, ntp.query_servers)."""
    return TimeChecker(Time(servers=tuple(specs), timeout_s=0.3), clock=SystemClock(), data_dir=None,
                       system=lambda: CHRONY_SYNCED)


def test_one_falseticker_among_real_servers_does_not_flip_ok(chrony, ntp_server):
    good = [chrony.spec, ntp_server().spec, ntp_server(skew_s=0.001).spec]
    liar = ntp_server(skew_s=2.3).spec
    status = real(good + [liar]).check_now()
    assert status.verdict == "ok", status.reason
    assert abs(status.offset_ms) < 50
    assert re.match(r"clock [\d.]+ ms (ahead of|behind) 3 servers; 1 other disagrees \(", status.reason), status.reason
    assert f"{liar}: clock 2.3 s behind it" in status.reason


def test_three_skewed_real_servers_outvote_one_good_one(chrony, ntp_server):
    skewed = [ntp_server(skew_s=2.3).spec for _ in range(3)]
    status = real(skewed + [chrony.spec]).check_now()
    assert status.verdict == "drifting", status.reason
    assert status.offset_ms == pytest.approx(-2300, abs=50)
    assert status.reason.startswith("clock 2.3 s behind 3 servers; 1 other disagrees")


def test_real_unusable_servers_make_unreachable(ntp_server):
    specs = [ntp_server(silent=True).spec, ntp_server(stratum=0, refid=b"RATE").spec, "unresolvable.invalid"]
    status = real(specs).check_now()
    assert status.verdict == "unreachable"
    assert [s.answer.code for s in status.servers] == ["timeout", "kiss", "unresolvable"]
    assert [s.reach for s in status.servers] == [0, 1, 0]

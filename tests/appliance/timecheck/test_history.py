"""Seven days of offsets: bounded, compact, written rarely and atomically; times are passed in, nothing sleeps."""

import json
import logging

import pytest

from appliance.clock import Now
from appliance.timecheck.history import FLUSH_EVERY_S, OffsetHistory, Point, decode, encode, merge

START = Now(mono=500.0, wall=1_795_000_000.0)


def test_one_point_per_check_at_the_default_cadence():
    history = OffsetHistory()
    for i in range(4):
        history.add(START.later(900 * i), 0.5 * i, "ok")
    assert [p.at for p in history.points()] == [START.wall + 900 * i - 0.0005 * i for i in range(4)]
    assert [p.offset_ms for p in history.points()] == [0.0, 0.5, 1.0, 1.5]


def test_faster_checks_keep_one_point_per_5_minutes_the_largest_and_worst():
    history = OffsetHistory()
    base = START.later(300 - START.wall % 300)  # the start of a slot
    for seconds, offset, verdict in [(10, 0.2, "ok"), (60, -700.0, "drifting"), (120, 3.0, "ok"), (240, 1.0, "ok")]:
        history.add(base.later(seconds), offset, verdict)
    (point,) = history.points()
    assert (point.offset_ms, point.verdict) == (-700.0, "drifting")
    history.add(base.later(310), 0.1, "ok")
    assert len(history.points()) == 2


@pytest.mark.parametrize("older, newer, kept", [
    (Point(1, 2.0, "ok"), Point(2, 1.0, "ok"), Point(1, 2.0, "ok")),
    (Point(1, 2.0, "ok"), Point(2, -3.0, "ok"), Point(2, -3.0, "ok")),
    (Point(1, None, "unreachable"), Point(2, 0.1, "ok"), Point(2, 0.1, "unreachable")),
    (Point(1, 0.1, "ok"), Point(2, None, "unreachable"), Point(1, 0.1, "unreachable")),
    (Point(1, 900.0, "drifting"), Point(2, 1.0, "unsynced"), Point(1, 900.0, "drifting")),
])
def test_merge_keeps_the_larger_offset_and_the_worse_verdict(older, newer, kept):
    assert merge(older, newer) == kept


def test_memory_is_bounded_to_seven_days_of_slots():
    history = OffsetHistory()
    checks = 9 * 24 * 24  # nine days, a check every 150 s
    for i in range(checks):
        history.add(START.later(150 * i), 1.0, "ok")
    points = history.points()
    assert len(points) <= 7 * 288 + 1
    newest = START.wall + 150 * (checks - 1)
    assert points[-1].at - points[0].at <= 7 * 86400
    assert points[-1].at == pytest.approx(newest - 0.001)


def test_a_point_is_filed_at_the_servers_time():
    # After a power cut the Pi boots an hour behind: its first point goes where the servers say it belongs.
    history = OffsetHistory()
    history.add(START, -3_600_000.0, "drifting")
    assert [p.at for p in history.points()] == [START.wall + 3600]
    # No offset: the wall clock is all there is, and it is an hour behind the newest point: not filed.
    assert not history.add(START.later(900), None, "unreachable")
    assert [p.at for p in history.points()] == [START.wall + 3600]
    assert history.add(START.later(4500), None, "unreachable")  # past the newest point: filed as it is
    assert [p.at for p in history.points()] == [START.wall + 3600, START.wall + 4500]


def test_a_stale_uncorrected_wall_clock_neither_records_nor_prunes():
    # A Pi boots three days behind and no server answers yet: its wall clock must not prune the week.
    history = OffsetHistory()
    for i in range(10):
        history.add(START.later(900 * i), 0.2, "ok")
    stale = Now(mono=START.mono + 20_000, wall=START.wall - 3 * 86400)
    assert not history.add(stale, None, "unreachable")
    assert len(history.points()) == 10
    assert all(p.verdict == "ok" for p in history.points())
    # Once a server answers, the corrected time is trusted again, even from the same stale wall clock.
    history.add(Now(stale.mono + 30, stale.wall + 30), -(3 * 86400 + 20_000) * 1000.0, "drifting")
    assert len(history.points()) == 11


def test_encode_is_compact_and_decodes_back():
    points = [Point(1_795_000_000.0, 0.44, "ok"), Point(1_795_000_900.0, None, "unreachable"),
              Point(1_795_001_800.0, -2300.06, "drifting")]
    data = encode(points)
    assert data == (b'{"version":1,"verdicts":["ok","drifting","unsynced","unreachable","wrong-zone"],'
                    b'"points":[[1795000000,0.4,0],[1795000900,null,3],[1795001800,-2300.1,1]]}')
    assert decode(data) == [Point(1_795_000_000.0, 0.4, "ok"), Point(1_795_000_900.0, None, "unreachable"),
                            Point(1_795_001_800.0, -2300.1, "drifting")]


@pytest.mark.parametrize("data", [
    b"", b"not json", b"[]", b'{"version":2}', b'{"version":1,"verdicts":["ok"]}',
    b"\xff\xfe\x00 not text", b'{"version":1,"verdicts":["ok"],"points":' + b"[" * 100_000,
    b'{"version":1,"verdicts":"ok","points":[]}', b'{"version":1,"verdicts":["ok"],"points":7}',
])
def test_a_corrupt_file_starts_a_new_history_with_one_log_line(tmp_path, caplog, data):
    path = tmp_path / "time-history.json"
    path.write_bytes(data)
    history = OffsetHistory(str(path))
    with caplog.at_level(logging.INFO, logger="phonehome.timecheck"):
        history.load()
    assert history.points() == ()
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "is unreadable" in caplog.records[0].getMessage() and "starting a new one" in caplog.records[0].getMessage()
    history.add(START, 1.0, "ok")
    assert history.flush()
    assert decode(path.read_bytes()) == [Point(float(int(p.at)), p.offset_ms, p.verdict) for p in history.points()]


BAD_POINTS = [
    b'["x",1,0]', b'[Infinity,1,0]', b'[-Infinity,1,0]', b'[NaN,1,0]', b'[1795000000,Infinity,0]',
    b'[1795000000,NaN,0]', b'[1e400,1,0]', b'[1' + b"0" * 400 + b',1,0]', b'[1795000000,1,5]',
    b'[1795000000,1,1]', b'[1795000000,1,-1]', b'[1795000000,1,true]', b'[true,1,0]', b'[1795000000,"1",0]',
    b'[1795000000,1]', b'[1795000000,1,0,0]', b'"abc"', b'7', b'null',
]


@pytest.mark.parametrize("bad", BAD_POINTS)
def test_a_bad_point_is_skipped_with_one_log_line_and_the_rest_kept(tmp_path, caplog, bad):
    path = tmp_path / "time-history.json"
    # Verdict 1 is a name this version does not know.
    path.write_bytes(b'{"version":1,"verdicts":["ok","melted"],"points":[[1795000000,0.4,0],' + bad + b","
                     + bad + b',[1795000900,null,0]]}')
    history = OffsetHistory(str(path))
    with caplog.at_level(logging.INFO, logger="phonehome.timecheck"):
        history.load()
    assert history.points() == (Point(1_795_000_000.0, 0.4, "ok"), Point(1_795_000_900.0, None, "ok"))
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert caplog.records[0].getMessage().startswith("clock history: skipped 2 bad point(s) (the first: ")


def test_every_point_of_a_good_file_is_read_without_a_log_line(tmp_path, caplog):
    path = tmp_path / "time-history.json"
    path.write_bytes(encode([Point(1_795_000_000.0, 0.4, "ok"), Point(1_795_000_900.0, None, "unreachable")]))
    history = OffsetHistory(str(path))
    with caplog.at_level(logging.INFO, logger="phonehome.timecheck"):
        history.load()
    assert len(history.points()) == 2 and caplog.records == []


def test_a_point_that_cannot_be_stored_is_logged_once_never_raised(tmp_path, caplog):
    history = OffsetHistory(str(tmp_path / "time-history.json"))
    history.add(START, 0.1, "melted")  # no code for it in the file: a bug somewhere, not a reason to crash
    with caplog.at_level(logging.INFO, logger="phonehome.timecheck"):
        assert not history.flush()
        assert not history.flush()
    assert len(caplog.records) == 1 and "cannot write the clock history" in caplog.records[0].getMessage()
    assert "a point cannot be stored" in caplog.records[0].getMessage()


def test_a_missing_file_is_one_info_line(tmp_path, caplog):
    history = OffsetHistory(str(tmp_path / "time-history.json"))
    with caplog.at_level(logging.INFO, logger="phonehome.timecheck"):
        history.load()
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", f"no clock history at {tmp_path / 'time-history.json'} yet; starting one")]


def test_the_file_is_written_every_6_hours_not_every_check(tmp_path):
    path = tmp_path / "time-history.json"
    history = OffsetHistory(str(path))
    writes_at = []
    for i in range(4 * 24 + 1):  # one day and one check at 900 s
        now = START.later(900 * i)
        history.add(now, 0.1, "ok")
        if history.maybe_flush(now.mono):
            writes_at.append(900 * i)
    assert writes_at == [FLUSH_EVERY_S * k for k in (1, 2, 3, 4)]  # 6 h after the first unsaved point, etc.
    assert history.writes == 4
    saved = OffsetHistory(str(path))
    saved.load()
    assert len(saved.points()) == 4 * 24 + 1


def test_flush_writes_only_when_something_changed(tmp_path):
    history = OffsetHistory(str(tmp_path / "time-history.json"))
    assert not history.flush()
    history.add(START, 0.1, "ok")
    assert history.flush()
    assert not history.flush()
    assert history.writes == 1 and history.bytes_written == len((tmp_path / "time-history.json").read_bytes())


def test_a_history_in_memory_only_never_writes(tmp_path):
    history = OffsetHistory(None)
    history.load()
    history.add(START, 0.1, "ok")
    assert not history.flush() and not history.maybe_flush(START.mono + 10 * FLUSH_EVERY_S)


def test_a_write_that_fails_is_logged_once_and_retried_later(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where data_dir should be")
    history = OffsetHistory(str(blocker / "time-history.json"))
    history.add(START, 0.1, "ok")
    with caplog.at_level(logging.INFO, logger="phonehome.timecheck"):
        assert not history.maybe_flush(START.mono + FLUSH_EVERY_S)
        assert not history.maybe_flush(START.mono + FLUSH_EVERY_S + 1)  # not due again yet
        assert not history.maybe_flush(START.mono + 2 * FLUSH_EVERY_S)
    assert len(caplog.records) == 1 and "cannot write the clock history" in caplog.records[0].getMessage()
    assert "check that data_dir exists" in caplog.records[0].getMessage()
    json.dumps([p.at for p in history.points()])  # still in memory
    assert len(history.points()) == 1

"""The access-log follower, on real files in tmp_path; tests drive poll() and never sleep."""

import logging
import os
import shutil

import pytest

from appliance.monitor import accesslog
from appliance.monitor.accesslog import AccessLogFollower, device_for, magic_table, parse_line

MAGIC = "raspberrypiPhoneHome"
# 02/Feb/2013:22:00:02 -0500 is 2013-02-03 03:00:02 UTC.
T0 = 1359860402.0
APACHE = ('203.0.113.7 - - [02/Feb/2013:22:00:02 -0500] "GET /raspberrypiPhoneHome?1359860402 HTTP/1.1" '
          '200 455 "-" "curl/7.26.0"')


def entry(seconds=2, path=f"/{MAGIC}?1", *, referer="-", agent="curl/7.26.0", client="203.0.113.7"):
    """One combined-format line at 02/Feb/2013:22:00:<seconds> -0500, i.e. T0 - 2 + seconds."""
    return (f'{client} - - [02/Feb/2013:22:00:{seconds:02d} -0500] "GET {path} HTTP/1.1" 200 455 '
            f'"{referer}" "{agent}"\n')


def append(path, text):
    with open(path, "ab") as f:
        f.write(text.encode() if isinstance(text, str) else text)


class Recorder:
    def __init__(self):
        self.beats = []

    def __call__(self, device, epoch_s):
        self.beats.append((device, epoch_s))


@pytest.fixture
def log_path(tmp_path):
    return tmp_path / "access.log"


@pytest.fixture
def beats():
    return Recorder()


@pytest.fixture
def follow(log_path, beats):
    """Build a follower of log_path reporting to ``beats``; closed at the end."""
    made = []

    def make(magics=None, **options):
        f = AccessLogFollower(log_path, {MAGIC: "pi"} if magics is None else magics, beats, **options)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


# parse_line ---------------------------------------------------------------

@pytest.mark.parametrize("line, expected", [
    (APACHE, (T0, "/raspberrypiPhoneHome?1359860402")),
    # common log format: no referer or user agent
    ('203.0.113.7 - - [02/Feb/2013:22:00:02 -0500] "GET /x?1 HTTP/1.0" 200 -', (T0, "/x?1")),
    # nginx's default "combined", IPv6 client and a remote user
    ('2001:db8::7 - alice [02/Feb/2013:22:00:02 -0500] "HEAD /x HTTP/2.0" 404 0 "-" "Wget/1.21"', (T0, "/x")),
    # Apache vhost_combined: "%v:%p" first
    ('example.org:443 203.0.113.7 - - [02/Feb/2013:22:00:02 -0500] "GET /x HTTP/1.1" 200 455 "-" "curl/8"',
     (T0, "/x")),
    # extra trailing fields (X-Forwarded-For, request time)
    ('203.0.113.7 - - [02/Feb/2013:22:00:02 -0500] "GET /x HTTP/1.1" 200 455 "-" "curl/8" "198.51.100.1" 0.004',
     (T0, "/x")),
    # HTTP/0.9-style request line without a protocol
    ('203.0.113.7 - - [02/Feb/2013:22:00:02 -0500] "GET /x" 200 455', (T0, "/x")),
    # an escaped quote inside the request line
    ('203.0.113.7 - - [02/Feb/2013:22:00:02 -0500] "GET /x\\"y HTTP/1.1" 400 0 "-" "-"', (T0, '/x\\"y')),
    # fractional seconds (Apache 2.4 %{usec_frac}t)
    ('203.0.113.7 - - [02/Feb/2013:22:00:02.250 -0500] "GET /x HTTP/1.1" 200 1', (T0 + 0.25, "/x")),
    # bytes, as read from a file opened in binary
    (APACHE.encode(), (T0, "/raspberrypiPhoneHome?1359860402")),
])
def test_parse_line_formats(line, expected):
    assert parse_line(line) == expected


@pytest.mark.parametrize("stamp, epoch_s", [
    ("02/Feb/2013:22:00:02 -0500", T0),
    ("03/Feb/2013:04:00:02 +0100", T0),
    ("03/Feb/2013:03:00:02 +0000", T0),
    ("03/Feb/2013:08:30:02 +0530", T0),
    ("31/Dec/2012:23:59:59 -1000", 1357034399.0),   # the zone carries it into 2013 UTC
])
def test_parse_line_converts_the_zone_to_utc(stamp, epoch_s):
    assert parse_line(f'203.0.113.7 - - [{stamp}] "GET /x HTTP/1.1" 200 1 "-" "-"') == (epoch_s, "/x")


@pytest.mark.parametrize("line", [
    "",
    "\n",
    "garbage",
    APACHE[:40],                                         # cut inside the timestamp
    APACHE[:70],                                         # cut inside the request line
    APACHE.replace("Feb", "Fev"),                        # not a month
    APACHE.replace("Feb", "feb"),
    APACHE.replace("02/Feb", "31/Feb"),                  # no such day
    APACHE.replace("22:00:02", "25:00:02"),
    APACHE.replace("-0500", "-0560"),                    # no such zone
    APACHE.replace("-0500", "+2400"),
    APACHE.replace("-0500", "EST"),
    APACHE.replace("[", "").replace("]", ""),
    APACHE.replace('" 200 455', '" OK 455'),             # status is not a number
    '203.0.113.7 - - [02/Feb/2013:22:00:02 -0500] "-" 408 0 "-" "-"',
    '203.0.113.7 - - [02/Feb/2013:22:00:02 -0500] "\\x16\\x03\\x01\\x00\\xa5\\x01" 400 0 "-" "-"',
    '203.0.113.7 - - [02/Feb/2013:22:00:02 -0500] "GET /a b HTTP/1.1" 400 0 "-" "-"',
    '203.0.113.7 - - [02/Feb/2013:22:00:02 -0500] "GET /x SPDY/3" 400 0 "-" "-"',
    b"\xff\xfe\x00 [\x80/Feb/2013] \xc3\x28",             # not UTF-8
])
def test_parse_line_returns_none_for_malformed_lines(line):
    assert parse_line(line) is None


@pytest.mark.parametrize("fake", [
    # Apache escapes the quotes of a user agent imitating a timestamp and request ...
    '[02/Feb/2013:23:59:59 -0500] \\"GET /raspberrypiPhoneHome HTTP/1.1\\" 200 1',
    # ... and a writer that does not is still beaten by the real request coming first.
    '[02/Feb/2013:23:59:59 -0500] "GET /raspberrypiPhoneHome HTTP/1.1" 200 1',
])
def test_parse_line_takes_the_request_line_not_a_fake_in_the_user_agent(fake):
    line = f'203.0.113.7 - - [02/Feb/2013:22:00:02 -0500] "GET / HTTP/1.1" 200 455 "-" "{fake}"'
    assert parse_line(line) == (T0, "/")


def test_magic_table_drops_empty_magics_and_prefers_the_longest():
    table = magic_table({"": "nobody", "pi": "kitchen", "pi-garage": "garage"})
    assert device_for("/pi-garage?1", table) == "garage"
    assert device_for("/pi?1", table) == "kitchen"
    assert device_for("/other", table) is None
    assert device_for("/PI?1", table) is None   # case-sensitive, like grep


# following ----------------------------------------------------------------

def test_lines_appended_across_polls_are_reported_in_order(log_path, beats, follow):
    append(log_path, entry(2) + entry(3, "/index.html"))
    f = follow()
    assert f.poll() == 2
    assert beats.beats == [("pi", T0)]
    assert f.poll() == 0
    append(log_path, entry(4) + entry(5))
    assert f.poll() == 2
    assert beats.beats == [("pi", T0), ("pi", T0 + 2), ("pi", T0 + 3)]


def test_a_partial_line_waits_for_its_newline(log_path, beats, follow):
    log_path.touch()
    f = follow()
    f.poll()
    whole = entry(7)
    append(log_path, whole[:50])
    assert f.poll() == 0
    append(log_path, whole[50:-1])
    assert f.poll() == 0
    assert beats.beats == []
    append(log_path, "\n")
    assert f.poll() == 1
    assert beats.beats == [("pi", T0 + 5)]


def test_crlf_and_undecodable_lines_do_not_break_following(log_path, beats, follow):
    append(log_path, b"\xff\xfe garbage \x80\n" + entry(2).replace("\n", "\r\n").encode() + b"\n")
    assert follow().poll() == 3
    assert beats.beats == [("pi", T0)]


def test_magic_in_referer_or_user_agent_is_ignored(log_path, beats, follow):
    append(log_path,
           entry(2, "/blog", referer=f"http://example.com/{MAGIC}?1") +
           entry(3, "/", agent=f"Mozilla/5.0 {MAGIC}") +
           entry(4))
    follow().poll()
    assert beats.beats == [("pi", T0 + 2)]


def test_malformed_lines_are_skipped(log_path, beats, follow):
    append(log_path, f"{MAGIC}\n" + entry(2)[:60] + "\n" + "\n" + f"[x] \"GET /{MAGIC} HTTP/1.1\" 200 1\n" +
           entry(9))
    assert follow().poll() == 5
    assert beats.beats == [("pi", T0 + 7)]


def test_rename_rotation_reads_the_old_file_to_its_end_then_the_new(log_path, beats, follow, caplog):
    append(log_path, entry(2))
    f = follow(scan_bytes=len(entry(2)))   # so a tail scan of the new file would miss its first line
    f.poll()
    os.rename(log_path, log_path.with_suffix(".log.1"))
    log_path.touch()                                    # logrotate's "create"
    append(log_path.with_suffix(".log.1"), entry(3))    # the server has not reopened its log yet
    assert f.poll() == 1
    append(log_path.with_suffix(".log.1"), entry(4) + entry(5)[:30])   # last words, cut off mid-line
    append(log_path, entry(6) + entry(7))               # reopened: the new file gets lines
    with caplog.at_level(logging.INFO, logger=accesslog.__name__):
        assert f.poll() == 4
        assert f.poll() == 0
    assert beats.beats == [("pi", T0), ("pi", T0 + 1), ("pi", T0 + 2), ("pi", T0 + 4), ("pi", T0 + 5)]
    assert [r.getMessage() for r in caplog.records] == [
        f"access log {log_path} was rotated; following the new file"]
    append(log_path, entry(8))
    assert f.poll() == 1
    assert beats.beats[-1] == ("pi", T0 + 6)


def test_a_line_written_to_the_old_file_while_switching_is_not_lost(log_path, beats, follow, monkeypatch):
    append(log_path, entry(2))
    f = follow()
    f.poll()
    old = log_path.with_suffix(".log.1")
    os.rename(log_path, old)
    append(log_path, entry(5))
    real_stat = os.stat

    def stat_then_write(path, *args, **kwargs):
        # The server writes its last line to the old file just after we looked.
        result = real_stat(path, *args, **kwargs)
        if os.fspath(path) == str(log_path):
            append(old, entry(4))
        return result

    with monkeypatch.context() as m:
        m.setattr(accesslog.os, "stat", stat_then_write)
        assert f.poll() == 2
    assert beats.beats == [("pi", T0), ("pi", T0 + 2), ("pi", T0 + 3)]


def test_copytruncate_reads_the_file_from_the_start(log_path, beats, follow, caplog):
    append(log_path, entry(2) + entry(3) + entry(4))
    f = follow()
    f.poll()
    shutil.copy(log_path, log_path.with_suffix(".log.1"))
    with open(log_path, "r+b") as truncating:
        truncating.truncate(0)
    append(log_path, entry(10))
    with caplog.at_level(logging.INFO, logger=accesslog.__name__):
        assert f.poll() == 1
    assert beats.beats[-1] == ("pi", T0 + 8)
    assert len(beats.beats) == 4
    assert "was truncated" in caplog.text


def test_missing_log_is_reported_once_and_its_return_once(log_path, beats, follow, caplog):
    f = follow()
    with caplog.at_level(logging.INFO, logger=accesslog.__name__):
        for _ in range(5):
            assert f.poll() == 0
        assert [r.getMessage() for r in caplog.records] == [
            f"access log {log_path} does not exist; waiting for it to appear"]
        caplog.clear()

        append(log_path, entry(2))
        assert f.poll() == 1
        f.poll()
        assert [r.getMessage() for r in caplog.records] == [f"access log {log_path} is back; following it"]
        assert beats.beats == [("pi", T0)]
        caplog.clear()

        os.unlink(log_path)                          # gone while we follow it
        for _ in range(5):
            f.poll()
        assert len(caplog.records) == 1
        assert caplog.records[0].levelno == logging.WARNING
        assert "has disappeared" in caplog.records[0].getMessage()
        caplog.clear()

        append(log_path, entry(3))
        assert f.poll() == 1
        f.poll()
        assert [r.getMessage() for r in caplog.records] == [f"access log {log_path} is back; following it"]
    assert beats.beats == [("pi", T0), ("pi", T0 + 1)]


def test_an_unreadable_log_gets_one_clear_message(log_path, beats, follow, caplog, monkeypatch):
    append(log_path, entry(2))
    log_path.chmod(0)
    if os.access(log_path, os.R_OK):   # root reads anything: make open() refuse instead
        def refuse(path, *args, **kwargs):
            raise PermissionError(13, "Permission denied", path)
        monkeypatch.setattr(accesslog, "open", refuse, raising=False)
    f = follow()
    with caplog.at_level(logging.INFO, logger=accesslog.__name__):
        for _ in range(3):
            assert f.poll() == 0
        assert len(caplog.records) == 1
        message = caplog.records[0].getMessage()
        assert caplog.records[0].levelno == logging.ERROR
        assert str(log_path) in message and "permission denied" in message and "usermod -aG" in message
        caplog.clear()
        log_path.chmod(0o644)
        monkeypatch.undo()
        assert f.poll() == 1
        assert [r.getMessage() for r in caplog.records] == [f"access log {log_path} is readable now; following it"]
    assert beats.beats == [("pi", T0)]


def test_first_poll_scans_only_the_last_mebibyte(log_path, beats, follow):
    filler = entry(1, "/index.html?" + "x" * 300)
    old = entry(0, f"/{MAGIC}?old")
    newest = entry(59)
    lines = [old] + [filler] * (2 * 1024 * 1024 // len(filler)) + [entry(30), newest] + [filler] * 10
    data = "".join(lines).encode()
    log_path.write_bytes(data)
    assert len(data) > 2 * 1024 * 1024
    start = len(data) - accesslog.SCAN_BYTES
    starts, offset = [], 0
    for line in lines:
        starts.append(offset)
        offset += len(line)
    expected_lines = sum(1 for s in starts if s >= start)

    assert follow(magics={MAGIC: "pi"}).poll() == expected_lines
    assert beats.beats == [("pi", T0 + 28), ("pi", T0 + 57)]


def test_scan_starting_exactly_on_a_line_start_keeps_that_line(log_path, beats, follow):
    first, second = entry(2, "/a"), entry(3)
    log_path.write_text(first + second)
    assert follow(scan_bytes=len(second)).poll() == 1
    assert beats.beats == [("pi", T0 + 1)]


def test_an_overlong_line_is_dropped_with_bounded_memory(log_path, beats, follow, caplog):
    log_path.touch()
    f = follow()
    f.poll()
    # This line would be a heartbeat if kept whole.
    huge = entry(2, referer="x" * (200 * 1024)).encode()
    with caplog.at_level(logging.WARNING, logger=accesslog.__name__):
        for i in range(0, len(huge) - 1, 16 * 1024):
            append(log_path, huge[i:min(i + 16 * 1024, len(huge) - 1)])
            f.poll()
            assert len(f._pending) <= accesslog.MAX_LINE_BYTES   # memory stays bounded
        append(log_path, b"\n" + entry(3).encode())
        assert f.poll() == 1
    assert beats.beats == [("pi", T0 + 1)]
    assert len(caplog.records) == 1 and "longer than 65536 bytes" in caplog.text


def test_update_magics_keeps_the_position(log_path, beats, follow):
    append(log_path, entry(2) + entry(3, "/garage-beat?1"))
    f = follow()
    f.poll()
    assert beats.beats == [("pi", T0)]
    f.update_magics({"garage-beat": "garage", "": "ignored"})
    append(log_path, entry(4) + entry(5, "/garage-beat?2"))
    assert f.poll() == 2
    assert beats.beats == [("pi", T0), ("garage", T0 + 3)]


def test_a_failing_callback_does_not_stop_the_following_lines(log_path, follow, caplog):
    seen = []

    def flaky(device, epoch_s):
        seen.append(epoch_s)
        if len(seen) == 1:
            raise RuntimeError("store is full")

    append(log_path, entry(2) + entry(3))
    f = AccessLogFollower(log_path, {MAGIC: "pi"}, flaky)
    with caplog.at_level(logging.ERROR, logger=accesslog.__name__):
        assert f.poll() == 2
    f.close()
    assert seen == [T0, T0 + 1]
    assert "store is full" in caplog.text


def test_close_is_idempotent_and_stops_polling(log_path, beats):
    append(log_path, entry(2))
    with AccessLogFollower(log_path, {MAGIC: "pi"}, beats) as f:
        pass
    f.close()
    assert f.poll() == 0
    assert beats.beats == []

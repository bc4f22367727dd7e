"""Bad input, generated: the access-log parser and its follower attacked by hypothesis.

Near-valid combined-format lines (each part right or a little wrong, the expected result worked out apart from the
parser), random text and bytes. The properties: a line is read exactly when it is valid, nothing ever raises, and
the follower reports a heartbeat for valid lines with a device's magic only, so a refused line changes no state.

The examples are derandomized and no example database is kept, so every run (and CI) tries the same inputs.
"""

import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.monitor.accesslog import AccessLogFollower, parse_line
from tests.faults.strategies import examples

pytestmark = pytest.mark.fault


MAGIC = "raspberrypiPhoneHome"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@st.composite
def near_valid_lines(draw):
    """A combined-format line whose parts are each right or a little wrong; returns (line, expected epoch or None).

    The expected value is computed here from the parts, independently of the parser: a real date and zone, a
    request line of METHOD TARGET [HTTP/x], a closing quote, then a status and a size.
    """
    day, hour, minute, second = (draw(st.integers(0, 99)) for _ in range(4))
    month = draw(st.sampled_from(MONTHS) | st.sampled_from(["jan", "JAN", "Foo", "Ja", "Janu"]))
    year = draw(st.integers(0, 9999))
    fraction = draw(st.sampled_from(["", ".5", ".123456789", ".", ".1234567890"]))
    sign = draw(st.sampled_from("+-"))
    zone_h, zone_m = draw(st.integers(0, 99)), draw(st.integers(0, 99))
    method = draw(st.sampled_from(["GET", "POST", "-", ""]))
    target = draw(st.sampled_from([f"/{MAGIC}?1359860402", "/", f"/x?{MAGIC}", "/a b", '/q\\"uote']))
    protocol = draw(st.sampled_from([" HTTP/1.1", "", " FTP/1", " HTTP/1.0 extra"]))
    status = draw(st.sampled_from(["200", "-", "20", "2000", "abc"]))
    size = draw(st.sampled_from(["512", "-", "", "x"]))
    tail = draw(st.sampled_from(["", ' "-" "curl/7.88"', f' "http://evil/{MAGIC}" "[01/Jan/2020:00:00:00 +0000] \\"'
                                                         f'GET /{MAGIC} HTTP/1.1\\" 200 1"']))
    head = f"{day:02d}/{month}/{year:04d}:{hour:02d}:{minute:02d}:{second:02d}{fraction} {sign}{zone_h:02d}{zone_m:02d}"
    request = f"{method} {target}{protocol}" if method else target
    line = f'192.0.2.7 - - [{head}] "{request}" {status} {size}{tail}'
    expected = None
    try:
        zone = timezone((-1 if sign == "-" else 1) * timedelta(hours=zone_h, minutes=zone_m))
        stamp = datetime(year, MONTHS.index(month) + 1, day, hour, minute, second, tzinfo=zone).timestamp()
    except ValueError:  # a day, hour or zone out of range, an unknown month, the year 0
        stamp = None
    parts = request.split()
    request_ok = len(parts) in (2, 3) and (len(parts) == 2 or parts[2].startswith("HTTP/"))
    fraction_ok = fraction in ("", ".5", ".123456789")
    size_ok = size in ("512", "-")
    if stamp is not None and zone_m < 60 and request_ok and fraction_ok and status in ("200", "-") and size_ok:
        expected = (stamp + float(fraction or 0), parts[1])
    return line, expected


@examples(3000)
@given(case=near_valid_lines())
def test_a_near_valid_log_line_is_read_exactly_when_it_is_valid(case):
    line, expected = case
    got = parse_line(line)
    if expected is None:
        assert got is None, line
    else:
        assert got is not None, line
        assert got[1] == expected[1] and math.isclose(got[0], expected[0], abs_tol=1e-6), (line, got, expected)
    assert parse_line(line.encode()) == got


@examples(3000)
@given(line=st.one_of(st.text(max_size=300), st.binary(max_size=300),
                      st.text(max_size=80).map(lambda s: f'[01/Feb/2013:22:00:02 -0500] "{s}'),
                      st.text(max_size=80).map(lambda s: f'[{s}] "GET /{MAGIC} HTTP/1.1" 200 1')))
def test_any_line_is_parsed_or_refused_never_raises(line):
    got = parse_line(line)
    assert got is None or (isinstance(got[0], float) and math.isfinite(got[0]) and isinstance(got[1], str))


@pytest.fixture(scope="module")
def follower(tmp_path_factory):
    """An AccessLogFollower on a real file; every heartbeat it reports is kept in ``heard``."""
    path = tmp_path_factory.mktemp("accesslog") / "access.log"
    path.write_bytes(b"")
    heard = []
    with AccessLogFollower(path, {MAGIC: "logpi"}, lambda name, epoch: heard.append((name, epoch))) as f:
        f.poll()
        yield f, path, heard


@examples(600)
@given(lines=st.lists(st.one_of(near_valid_lines().map(lambda case: case[0].encode()),
                                st.binary(max_size=200).map(lambda b: b.replace(b"\n", b""))), min_size=1, max_size=8))
def test_the_follower_reports_a_heartbeat_for_valid_magic_lines_only(follower, lines):
    f, path, heard = follower
    before = len(heard)
    with open(path, "ab") as log:
        log.write(b"".join(line + b"\n" for line in lines))
    assert f.poll() == len(lines)
    wanted = []
    for line in lines:
        parsed = parse_line(line)
        if parsed is not None and MAGIC in parsed[1]:
            wanted.append(("logpi", parsed[0]))
    assert heard[before:] == wanted  # a refused line reports nothing, so no device state can change


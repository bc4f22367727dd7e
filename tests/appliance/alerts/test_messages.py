import time
from zoneinfo import ZoneInfo

import pytest

from appliance.alerts.messages import FOOTER, SMS_CHARS, Message, compose, format_duration

NY = ZoneInfo("America/New_York")
LONG_NAME = "a" * 51 + "-basement-pi"  # 63 characters, the longest name the config accepts


@pytest.mark.parametrize("seconds, text", [
    (0, "0 s"),
    (45, "45 s"),
    (59.9, "59 s"),
    (60, "1 min"),
    (12 * 60 + 59, "12 min"),
    (3600, "1 h 0 min"),
    (3600 + 5 * 60 + 30, "1 h 5 min"),
    (4 * 3600, "4 h 0 min"),
    (86399, "23 h 59 min"),
    (86400, "1 d 0 h"),
    (2 * 86400 + 3 * 3600 + 59 * 60, "2 d 3 h"),
    (400 * 86400, "400 d 0 h"),
    (-5, "0 s"),
    (float("nan"), "0 s"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("kind, options, subject, first_line", [
    ("down", {}, "DOWN: home",
     "home is DOWN since 10:55 EST: no heartbeat for 5 min (last heard 10:50)."),
    ("down", {"when": "2025-01-15 00:03", "last": "2025-01-14 23:58"}, "DOWN: home",
     "home is DOWN since 00:03 EST: no heartbeat for 5 min (last heard Jan 14 23:58)."),
    ("down", {"when": "2025-07-04 09:30", "last": "2025-07-04 09:25"}, "DOWN: home",
     "home is DOWN since 09:30 EDT: no heartbeat for 5 min (last heard 09:25)."),
    ("reminder", {}, "REMINDER: home still down (4 h 0 min)",
     "home is still DOWN at 14:55 EST: down 4 h 0 min, since 10:55."),
    ("reminder", {"when": "2025-01-16 14:55"}, "REMINDER: home still down (2 d 4 h)",
     "home is still DOWN at 14:55 EST: down 2 d 4 h, since Jan 14 10:55."),
    ("up", {}, "UP: home after 47 min",
     "home is UP at 11:42 EST after 47 min down (10:55-11:42)."),
    # Across the spring DST change: the start keeps its own zone, the outage is real elapsed time.
    ("up", {"when": "2025-03-10 11:42", "start": "2025-03-08 10:55"}, "UP: home after 1 d 23 h",
     "home is UP at 11:42 EDT after 1 d 23 h down (Mar 8 10:55 EST-11:42)."),
])
def test_subject_and_first_line(make_event, kind, options, subject, first_line):
    message = compose(make_event(kind, **options), tz=NY)
    assert message.subject == subject
    assert message.body.split("\n", 1)[0] == first_line


def test_message_carries_device_kind_and_time_for_channels(make_event):
    event = make_event("up")
    message = compose(event, tz=NY)
    assert (message.device, message.kind, message.at) == ("home", "up", event.at)


def test_down_body_has_reason_full_times_and_footer(make_event):
    body = compose(make_event("down", reason="no heartbeat for 300 s (max_silence_s 300)"), tz=NY).body
    lines = body.splitlines()
    assert "Reason: no heartbeat for 300 s (max_silence_s 300)" in lines
    assert "Down since: Tue 2025-01-14 10:55:00 EST (2025-01-14 15:55:00 UTC)" in lines
    assert "Last heard: Tue 2025-01-14 10:50:00 EST (2025-01-14 15:50:00 UTC)" in lines
    assert lines[-1] == FOOTER == "\u2014 phonehome monitor"
    assert lines[1] == ""  # the summary stands alone


def test_reminder_and_up_bodies_list_their_times(make_event):
    reminder = compose(make_event("reminder"), tz=NY).body.splitlines()
    assert "Reminder at: Tue 2025-01-14 14:55:00 EST (2025-01-14 19:55:00 UTC)" in reminder
    assert "Down for: 4 h 0 min" in reminder
    up = compose(make_event("up"), tz=NY).body.splitlines()
    assert "Up again: Tue 2025-01-14 11:42:00 EST (2025-01-14 16:42:00 UTC)" in up
    assert "Down since: Tue 2025-01-14 10:55:00 EST (2025-01-14 15:55:00 UTC)" in up
    assert "Outage: 47 min" in up


@pytest.mark.parametrize("kind, options, must_say", [
    ("down", {}, ["is DOWN", "10:55 EST"]),
    ("down", {"when": "2025-03-09 03:01", "last": "2025-03-08 19:00"}, ["is DOWN", "03:01 EDT", "7 h 1 min"]),
    ("reminder", {}, ["still DOWN", "14:55 EST", "4 h 0 min"]),
    ("reminder", {"when": "2025-03-20 14:55", "start": "2025-03-01 10:55"}, ["still DOWN", "14:55 EDT", "19 d 3 h"]),
    ("up", {}, ["is UP", "11:42 EST", "47 min"]),
    ("up", {"when": "2025-03-20 14:55", "start": "2025-03-01 10:55"}, ["is UP", "14:55 EDT", "19 d 3 h"]),
])
def test_first_160_characters_say_what_and_when_even_for_a_63_character_name(make_event, kind, options, must_say):
    assert len(LONG_NAME) == 63
    body = compose(make_event(kind, LONG_NAME, **options), tz=NY).body
    sms = body[:SMS_CHARS]
    first_line = body.split("\n", 1)[0]
    assert len(first_line) <= SMS_CHARS, first_line
    assert sms.startswith(LONG_NAME)
    for words in must_say:
        assert words in sms


def test_times_default_to_the_hosts_local_zone(make_event, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        message = compose(make_event("down"))  # 10:55 New York = 00:55 next day in Tokyo
    finally:
        monkeypatch.undo()
        time.tzset()
    assert message.body.startswith("home is DOWN since 00:55 JST: no heartbeat for 5 min (last heard 00:50).")
    assert "Wed 2025-01-15 00:55:00 JST (2025-01-14 15:55:00 UTC)" in message.body


def test_first_seen_is_not_alerted(make_event):
    with pytest.raises(ValueError, match="not alerted"):
        compose(make_event("first-seen"), tz=NY)


def test_up_without_outage_data_still_says_up_and_when(make_event):
    from dataclasses import replace

    event = replace(make_event("up"), outage_started_at=None, outage_s=None)
    message = compose(event, tz=NY)
    assert message.subject == "UP: home"
    assert message.body.startswith("home is UP at 11:42 EST.")


def test_message_is_frozen():
    message = Message("s", "b")
    with pytest.raises(AttributeError):
        message.subject = "x"

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


# -- causes, sites and reboots -----------------------------------------------------------

def _with(event, **fields):
    from dataclasses import replace

    return replace(event, **fields)


POWER_CUT = "power cut, 47 min (rebooted 10:48, last heard 10:01)"
INTERNET = "Internet down, 45 min (10:01\u201310:47 by its own failed sends; no reboot)"


def test_up_with_a_cause_says_it_and_its_evidence_in_the_subject_and_first_line(make_event):
    event = _with(make_event("up", when="2025-01-14 10:50", start="2025-01-14 10:01"), cause="power-cut",
                  reason=POWER_CUT, detail="new boot id: the device booted at 10:48:00 (received 10:50:00 …)")
    message = compose(event, tz=NY)
    assert message.subject == "UP: home \u2014 power cut, 47 min (rebooted 10:48, last heard 10:01)"
    lines = message.body.splitlines()
    assert lines[0] == "home is UP at 10:50 EST \u2014 power cut, 47 min (rebooted 10:48, last heard 10:01)."
    assert "Cause: power cut" in lines
    assert "Evidence: new boot id: the device booted at 10:48:00 (received 10:50:00 …)" in lines
    assert "Silent for: 49 min" in lines


def test_down_with_a_cause_says_it_instead_of_the_silence(make_event):
    event = _with(make_event("down", "garage-pi", when="2025-01-14 10:01"), cause="device-failure",
                  reason="device failure \u2014 home (same site) is up and reports it silent on the LAN too")
    message = compose(event, tz=NY)
    assert message.subject == "DOWN: garage-pi \u2014 device failure"
    assert message.body.split("\n", 1)[0] == ("garage-pi is DOWN since 10:01 EST: device failure \u2014 home (same "
                                              "site) is up and reports it silent on the LAN too.")


def test_a_site_alert(make_event, at_ny):
    from appliance.monitor.events import Event, Kind, State

    event = Event("site:home", Kind.SITE_DOWN, State.UP, State.DOWN, at_ny("2025-01-14 10:07"),
                  "all 2 devices silent since 10:01 EST \u2014 power cut or Internet outage at the site; the first "
                  "heartbeat back will tell", outage_started_at=at_ny("2025-01-14 10:01"), cause="site-outage",
                  detail="every device of site home went silent: garage-pi last heard 10:01:30, home last heard "
                         "10:01:00", site="home")
    message = compose(event, tz=NY)
    assert message.subject == "DOWN: site home"
    assert message.body.split("\n", 1)[0] == ("site home: all 2 devices silent since 10:01 EST \u2014 power cut or "
                                              "Internet outage at the site; the first heartbeat back will tell.")
    assert (message.device, message.kind) == ("site:home", "site-down")
    assert "Evidence: every device of site home went silent: garage-pi last heard 10:01:30, home last heard " \
           "10:01:00" in message.body


def test_a_sites_reminder(make_event):
    event = _with(make_event("reminder"), cause="site-outage", site="lake", reason="all 2 devices silent")
    message = compose(event, tz=NY)
    assert message.subject == "REMINDER: site lake still down (4 h 0 min)"
    assert message.body.split("\n", 1)[0] == ("site lake is still DOWN at 14:55 EST: all 2 devices silent, down "
                                              "4 h 0 min, since 10:55.")


def test_a_reboot_alert(make_event, at_ny):
    from appliance.monitor.events import Event, Kind, State

    event = Event("home", Kind.REBOOT, State.UP, State.UP, at_ny("2025-01-14 03:12"),
                  "rebooted at 03:12 EST (up 40 s), power blip?", last_heard_at=at_ny("2025-01-14 03:11"),
                  cause="reboot", alert=True)
    message = compose(event, tz=NY)
    assert message.subject == "REBOOT: home"
    assert message.body.split("\n", 1)[0] == "home rebooted at 03:12 EST (up 40 s), power blip?"


@pytest.mark.parametrize("kind, fields, must_say", [
    ("up", {"cause": "power-cut", "reason": POWER_CUT}, ["is UP", "11:42 EST", "power cut"]),
    ("up", {"cause": "internet", "reason": INTERNET}, ["is UP", "11:42 EST", "Internet down"]),
    ("down", {"cause": "device-internet", "reason": "its own Internet path failed \u2014 " + "b" * 63
              + " (same site) is up and still hears it on the LAN (last 10:05)"}, ["is DOWN", "10:55 EST", "its own"]),
    ("reminder", {"cause": "site-outage", "site": "s" * 63, "reason": "all 50 devices silent"},
     ["still DOWN", "14:55 EST"]),
])
def test_first_line_with_a_cause_fits_an_sms_even_for_a_63_character_name(make_event, kind, fields, must_say):
    body = compose(_with(make_event(kind, LONG_NAME), **fields), tz=NY).body
    first_line = body.split("\n", 1)[0]
    assert len(first_line) <= SMS_CHARS, first_line
    for words in must_say:
        assert words in first_line


# -- flapping and acknowledgement links -------------------------------------------------------


def test_a_flapping_notice_says_how_often_and_the_state_now(at_ny):
    from appliance.monitor.events import Event, Kind, State

    event = Event("home", Kind.FLAPPING, State.DOWN, State.DOWN, at_ny("2025-01-14 10:40"),
                  "5 state changes in the last hour", detail="first change 10:02; its alerts are summarised until it "
                  "keeps one state for 1 h 0 min", alert=True)
    message = compose(event, tz=NY)
    assert message.subject == "FLAPPING: home (5 state changes in the last hour, now DOWN)"
    assert message.body.split("\n", 1)[0] == ("home is flapping: 5 state changes in the last hour, now DOWN; alerts "
                                              "for it are summarised until it is steady.")
    assert "Evidence: first change 10:02" in message.body and message.kind == "flapping"


def test_a_steady_summary_says_since_when_how_many_changes_and_the_state_now(at_ny):
    from appliance.monitor.events import Event, Kind, State

    event = Event("home", Kind.STEADY, State.UP, State.UP, at_ny("2025-01-14 11:40"),
                  "steady again since 10:40: 9 changes during 09:02\u201310:40", alert=True)
    message = compose(event, tz=NY)
    assert message.subject == "STEADY: home, now UP"
    assert message.body.split("\n", 1)[0] == "home steady again since 10:40: 9 changes during 09:02\u201310:40, now UP."


def test_an_acknowledgement_link_comes_last_and_never_in_the_first_line(make_event):
    url = "https://monitor.example.com/ack/aG9tZS8xLzE3MDA2MDQ4NjE.hll7KBnIRmi9OaGx64jF7Q"
    body = compose(make_event("reminder", LONG_NAME), tz=NY, ack_url=url).body
    lines = body.rstrip("\n").split("\n")
    assert url not in lines[0] and len(lines[0]) <= SMS_CHARS
    assert lines[-3:] == [f"Acknowledge (no more reminders about this outage for a while): {url}", "", FOOTER]
    assert "/ack/" not in compose(make_event("reminder"), tz=NY).body

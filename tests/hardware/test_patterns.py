"""The LED patterns: a table of snapshots and button modes against what the LEDs show, precedence, RGB mixing,
and the LED table the README prints."""

import dataclasses
from pathlib import Path

import pytest

from appliance.status import Network, Setup, Snapshot
from hardware.patterns import (
    BEAT, DARK, FAST, LED_TABLE, OFF, ON, RULES, SLOW, WHITE, Light, Pattern, led_table_markdown, pattern_for,
    rule_for,
)

ONLINE = Network(interface="eth0", ip="192.0.2.10")
OFFLINE = Network()


def snap(**changes):
    """A configured, online appliance whose heartbeats and clock are fine, with ``changes``."""
    base = Snapshot(at=1000.0, device_name="home", configured=True, heartbeat="ok", last_ok_at=990.0, beats_sent=3,
                    last_error=None, network=ONLINE, time_verdict="ok", time_reason="", time_offset_ms=1.0,
                    time_zone="UTC", uptime_s=60.0,
                    setup=Setup(code="ABCD-EFGH", url="http://phonehome.local/setup", claimed=True))
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize("changes, button_mode, rule, pattern", [
    ({}, None, "ok", Pattern(green=BEAT)),
    ({"heartbeat": "unknown"}, None, "waiting", Pattern(green=SLOW)),
    ({"heartbeat": "failing", "last_error": "HTTP 500"}, None, "heartbeat-failing", Pattern(red=SLOW)),
    ({"network": OFFLINE}, None, "no-network", Pattern(red=FAST)),
    ({"configured": False, "heartbeat": "off"}, None, "not-configured", Pattern(amber=ON)),
    ({"time_verdict": "drifting"}, None, "clock", Pattern(amber=ON)),
    ({"time_verdict": "unsynced"}, None, "clock", Pattern(amber=ON)),
    ({"time_verdict": "unreachable"}, None, "clock", Pattern(amber=ON)),
    # A wrong zone changes only the local times people read; heartbeats carry UTC.
    ({"time_verdict": "wrong-zone"}, None, "ok", Pattern(green=BEAT)),
    # Not checked yet (just booted) is not a problem to show.
    ({"time_verdict": "unknown"}, None, "ok", Pattern(green=BEAT)),
    ({}, "setup", "setup", Pattern(amber=FAST)),
    ({}, "reset-armed", "reset-armed", Pattern(green=FAST, red=FAST, amber=FAST)),
])
def test_each_status_has_its_pattern(changes, button_mode, rule, pattern):
    assert rule_for(snap(**changes), button_mode=button_mode).name == rule
    assert pattern_for(snap(**changes), button_mode=button_mode) == pattern


@pytest.mark.parametrize("changes, rule", [
    # Red before amber before green, the button's feedback before everything.
    ({"network": OFFLINE, "heartbeat": "failing", "time_verdict": "drifting"}, "no-network"),
    ({"network": OFFLINE, "configured": False, "heartbeat": "off"}, "no-network"),
    ({"heartbeat": "failing", "time_verdict": "unsynced"}, "heartbeat-failing"),
    ({"configured": False, "heartbeat": "off", "time_verdict": "drifting"}, "not-configured"),
    ({"heartbeat": "unknown", "time_verdict": "unreachable"}, "clock"),
    ({"heartbeat": "off"}, "not-configured"),  # configured but no targets cannot send anything
])
def test_precedence(changes, rule):
    assert rule_for(snap(**changes)).name == rule


def test_the_button_wins_over_any_status():
    worst = snap(network=OFFLINE, heartbeat="failing", time_verdict="drifting")
    assert rule_for(worst, button_mode="setup").name == "setup"
    assert rule_for(worst, button_mode="reset-armed").name == "reset-armed"


def test_an_unknown_button_mode_is_refused():
    with pytest.raises(ValueError, match="button_mode must be None or one of"):
        pattern_for(snap(), button_mode="held")


@pytest.mark.parametrize("pattern, expected", [
    (Pattern(green=BEAT), ((0, 1, 0), BEAT)),
    (Pattern(red=SLOW), ((1, 0, 0), SLOW)),
    (Pattern(amber=ON), ((1, 1, 0), ON)),
    (Pattern(green=FAST, red=FAST, amber=FAST), (WHITE, FAST)),
    (Pattern(), ((0, 0, 0), OFF)),
])
def test_rgb_mixes_the_colours_on_one_led(pattern, expected):
    assert pattern.rgb() == expected


def test_every_rule_can_be_shown_on_one_rgb_led():
    for rule in RULES:
        rule.pattern.rgb()
    with pytest.raises(ValueError, match="cannot show"):
        Pattern(green=ON, red=SLOW).rgb()


def test_the_table_has_a_row_per_rule_and_one_for_a_dark_box():
    assert len(LED_TABLE) == len(RULES) + 1
    for row, rule in zip(LED_TABLE, (*RULES, DARK)):
        assert row.seen == rule.pattern.describe() and row.means == rule.means and row.todo == rule.todo
    assert LED_TABLE[0].seen == "All LEDs (RGB: white), blinking fast (0.2 s on, 0.2 s off)"
    assert LED_TABLE[3].seen == "Red, blinking slowly (1 s on, 1 s off)"
    assert LED_TABLE[-1].seen == "All off"
    assert Light("blink", 0.5, 0.25).describe() == "blinking fast (0.5 s on, 0.25 s off)"


def test_the_markdown_table_has_a_line_per_row():
    text = led_table_markdown()
    lines = text.splitlines()
    assert lines[:2] == ["| you see | it means | what to do |", "|---|---|---|"]
    for row in LED_TABLE:
        assert f"| {row.seen} | {row.means} | {row.todo} |" in lines
    assert "|" not in "".join(r.seen + r.means + r.todo for r in LED_TABLE)  # nothing breaks a cell


# The README's LED table is led_table_markdown()'s output; paste it again when the patterns change.
def test_the_readme_shows_the_led_table():
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert led_table_markdown() in readme

"""The [peer] table of the config schema: the relay that power-cycles a watched device, its defaults and every
cross-check with its key path."""

import pytest

from appliance.config import dump_config, parse_config
from appliance.errors import ConfigError

WATCHING = """
[monitor]
[[monitor.devices]]
name = "garage-pi"
token = "garage-token-1234"
"""


def problems(text):
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


def test_no_relay_by_default():
    peer = parse_config("").peer
    assert (peer.device, peer.relay_pin, peer.relay_active_high) == ("", None, True)
    assert (peer.power_cycle_after_s, peer.power_cycle_off_s, peer.power_cycle_min_gap_s) == (600, 10, 3600)


def test_a_relay_for_a_watched_device_is_valid_and_survives_a_round_trip():
    config = parse_config(WATCHING + '[peer]\ndevice = "garage-pi"\nrelay_pin = 24\nrelay_active_high = false\n'
                                     "power_cycle_after_s = 900\n")
    assert (config.peer.device, config.peer.relay_pin, config.peer.relay_active_high) == ("garage-pi", 24, False)
    assert parse_config(dump_config(config)) == config


BAD = [
    ("[peer]\nrelay_pin = 24\n", "peer.device: required when relay_pin is set"),
    ('[peer]\ndevice = "garage-pi"\n' + WATCHING, "peer.relay_pin: required when device is set"),
    ('[peer]\ndevice = "garage-pi"\nrelay_pin = 24\n',
     "peer.device: needs a [monitor] table with 'garage-pi' in [[monitor.devices]]"),
    (WATCHING + '[peer]\ndevice = "barn-pi"\nrelay_pin = 24\n',
     "peer.device: 'barn-pi' is not in [[monitor.devices]] (watched: 'garage-pi')"),
    (WATCHING + '[peer]\ndevice = "garage-pi"\nrelay_pin = 40\n', "peer.relay_pin: must be a BCM GPIO number"),
    (WATCHING + '[leds]\ngreen = 24\nred = 27\n[peer]\ndevice = "garage-pi"\nrelay_pin = 24\n',
     "peer.relay_pin: GPIO 24 is also used by the LEDs"),
    (WATCHING + '[button]\npin = 24\n[peer]\ndevice = "garage-pi"\nrelay_pin = 24\n',
     "peer.relay_pin: GPIO 24 is also used by the button"),
    (WATCHING + '[display]\ndriver = "ssd1306"\n[peer]\ndevice = "garage-pi"\nrelay_pin = 3\n',
     "peer.relay_pin: GPIO 3 is the I2C bus the display uses"),
    (WATCHING + '[peer]\ndevice = "garage-pi"\nrelay_pin = 24\npower_cycle_off_s = 0\n',
     "peer.power_cycle_off_s: must be at least 0.05 s"),
    (WATCHING + '[peer]\ndevice = "garage-pi"\nrelay_pin = 24\npower_cycle_off_s = 60\npower_cycle_min_gap_s = 30\n',
     "peer.power_cycle_min_gap_s: must be longer than power_cycle_off_s (60 s)"),
    ("[peer]\nrelay = 24\n", "peer.relay: unknown key (did you mean 'relay_pin'?)"),
]


@pytest.mark.parametrize("text, expected", BAD, ids=[e[:40] for _, e in BAD])
def test_a_bad_relay_setting_is_named_with_what_to_do(text, expected):
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found

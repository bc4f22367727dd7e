"""The status panel as the agent runs it: real gpiozero LEDs and button on a MockFactory, luma's dummy display,
a snapshot the test sets, and a factory reset on real files. Times are set by hand: nothing sleeps."""

import logging
import os

import pytest
from gpiozero import LED
from gpiozero.pins.mock import MockFactory

from appliance.clock import Now
from appliance.config import load_config, parse_config, save_config
from appliance.status import Network, Setup, Snapshot
from hardware.panel import RETRY_GPIO_S, StatusPanel

from .conftest import RecordingDevice

GREEN, RED, BUTTON = 17, 27, 23


class Clock:
    def __init__(self):
        self.mono = 100.0

    def now(self):
        return Now(self.mono, 1_790_000_000.0 + self.mono)


def snapshot(headline_ok=True):
    return Snapshot(at=1_790_000_100.0, device_name="home", configured=True,
                    heartbeat="ok" if headline_ok else "failing", last_ok_at=1_790_000_090.0, beats_sent=3,
                    last_error=None, network=Network(interface="eth0", ip="192.0.2.7"), time_verdict="ok",
                    time_reason="clock within 2 ms of 4 servers", time_offset_ms=1.5, time_zone="UTC",
                    uptime_s=3600.0, setup=Setup(code="ABCD-EFGH", url="http://phonehome.local/setup", claimed=True))


def short_press(factory, clock):
    """Press the button for 0.3 s, then let 0.1 s pass."""
    pin = factory.pin(BUTTON)
    pin.drive_low()
    clock.mono += 0.3
    pin.drive_high()
    clock.mono += 0.1


@pytest.fixture
def rig(tmp_path):
    config_path = tmp_path / "phonehome.toml"
    text = f"""
data_dir = "{tmp_path / 'data'}"
[device]
name = "home"
[display]
driver = "emulator"
[leds]
green = {GREEN}
red = {RED}
[button]
pin = {BUTTON}
[time]
servers = []
"""
    config_path.write_text(text)
    config = load_config(str(config_path))
    factory, clock, state = MockFactory(), Clock(), {"snapshot": snapshot()}
    panel = StatusPanel(config, snapshot=lambda: state["snapshot"], clock=clock, config_path=str(config_path),
                        pin_factory=factory, open_device=lambda cfg, data_dir: RecordingDevice())
    yield panel, factory, clock, state, config_path
    panel.stop()
    factory.close()


def test_leds_follow_the_status(rig):
    panel, factory, clock, state, _ = rig
    panel.tick(clock.now())
    assert factory.pin(GREEN).state and not factory.pin(RED).state
    state["snapshot"] = snapshot(headline_ok=False)
    panel.tick(clock.now())
    assert panel.leds.pattern.red.kind == "blink" and not panel.leds.pattern.green.lit


def test_a_short_press_turns_the_page(rig):
    panel, factory, clock, _, _ = rig
    panel.tick(clock.now())
    panel.display.tick(clock.now())
    first = panel.display.page
    short_press(factory, clock)
    panel.display.tick(clock.now())
    assert panel.display.page != first


def test_the_button_resets_to_factory_settings_with_a_backup(rig):
    panel, factory, clock, _, config_path = rig
    before = config_path.read_bytes()
    panel.tick(clock.now())
    pin, button = factory.pin(BUTTON), panel.button
    pin.drive_low()
    clock.mono += 15
    button.tick()                      # held 15 s: armed
    pin.drive_high()
    clock.mono += 2
    pin.drive_low()
    clock.mono += 5
    button.tick()                      # held again 5 s within 10 s: confirmed
    pin.drive_high()
    backups = [n for n in os.listdir(config_path.parent) if n.startswith("phonehome.toml.bak-")]
    assert len(backups) == 1 and (config_path.parent / backups[0]).read_bytes() == before
    after = load_config(str(config_path))
    assert not after.agent_configured and after.leds.green == GREEN  # hardware settings kept to read the code


def test_holding_the_button_5_s_recovers_a_lost_password(rig, tmp_path):
    from appliance.auth import Passwords
    from appliance.setup import claim, load_setup

    panel, factory, clock, _, _ = rig
    data_dir = str(tmp_path / "data")
    claim(data_dir, load_setup(data_dir).code, "old password")
    panel.tick(clock.now())
    pin = factory.pin(BUTTON)
    pin.drive_low()
    clock.mono += 5
    panel.button.tick()                # held 5 s: the setup page, with a new code
    pin.drive_high()
    setup = load_setup(data_dir)
    assert not setup.claimed and not Passwords(data_dir).is_set
    claim(data_dir, setup.code, "new password")
    assert Passwords(data_dir).check("new password") and not Passwords(data_dir).check("old password")


def test_gpio_that_cannot_be_used_is_said_once_and_tried_again_later(tmp_path, caplog):
    config = parse_config(f'data_dir = "{tmp_path}"\n[leds]\ngreen = {GREEN}\nred = {RED}\n')
    save_config(str(tmp_path / "c.toml"), config)
    taken = MockFactory()
    holder = LED(GREEN, pin_factory=taken)  # the pin is in use by another "program"
    clock = Clock()
    panel = StatusPanel(config, snapshot=snapshot, clock=clock, config_path=str(tmp_path / "c.toml"),
                        pin_factory=taken, open_device=lambda cfg, data_dir: RecordingDevice())
    try:
        with caplog.at_level(logging.WARNING, logger="phonehome.hardware"):
            panel.tick(clock.now())
            clock.mono += RETRY_GPIO_S / 2
            panel.tick(clock.now())
            assert panel.leds is None
            holder.close()
            clock.mono += RETRY_GPIO_S / 2
            panel.tick(clock.now())
        assert panel.leds is not None
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "heartbeats go on" in warnings[0].getMessage()
    finally:
        panel.stop()
        taken.close()


def test_a_bad_led_pin_does_not_take_the_button_away(rig, caplog):
    panel, factory, clock, _, _ = rig
    holder = LED(GREEN, pin_factory=factory)  # the green LED's pin is in use by another "program"
    try:
        with caplog.at_level(logging.WARNING, logger="phonehome.hardware"):
            panel.tick(clock.now())
        assert panel.leds is None and panel.button is not None
        panel.display.tick(clock.now())
        first = panel.display.page
        short_press(factory, clock)
        panel.display.tick(clock.now())
        assert panel.display.page != first
        assert sum("heartbeats go on" in r.getMessage() for r in caplog.records) == 1
    finally:
        holder.close()

"""The button: the press/hold state machine at explicit times, and a real gpiozero Button over a MockFactory
driven with drive_low/drive_high while an injected clock says what time it is."""

import os
import threading

import pytest
from gpiozero import LED

from appliance.clock import Now, SystemClock
from appliance.config import Button
from hardware.button import ButtonInput, ButtonMachine
from hardware.errors import HardwareUnavailable

PIN = 4


# The machine, pure: every time is an argument.

def test_a_short_press_is_next_page():
    m = ButtonMachine()
    assert m.pressed(100.0) is None and m.is_pressed
    assert m.tick(100.5) == ([], 4.5)
    assert m.released(104.999) == "next-page"
    assert m.state == "idle" and m.mode is None and m.tick(105.0) == ([], None)


def test_holding_5_s_is_setup_exactly_at_5_s_while_still_held():
    m = ButtonMachine()
    m.pressed(100.0)
    actions, delay = m.tick(104.75)
    assert actions == [] and delay == pytest.approx(0.25)
    assert m.tick(105.0) == (["setup"], 10.0)
    assert m.mode == "setup"
    assert m.tick(106.0) == ([], 9.0)  # fired once
    assert m.released(107.0) is None  # the hold already did its work
    assert m.mode is None and m.state == "idle"


def test_holding_15_s_arms_the_reset_and_a_second_long_press_confirms_it():
    m = ButtonMachine()
    m.pressed(0.0)
    assert m.tick(5.0)[0] == ["setup"]
    assert m.tick(15.0) == (["reset-armed"], None)
    assert m.mode == "reset-armed"
    assert m.released(16.0) is None
    assert m.state == "armed" and m.mode == "reset-armed"
    assert m.tick(20.0) == ([], 6.0)  # 10 s from letting go
    assert m.pressed(25.9) is None and m.state == "confirming"
    assert m.tick(30.0)[0] == []
    assert m.tick(30.9) == (["factory-reset"], None)
    assert m.mode is None
    assert m.tick(45.0) == ([], None)  # holding on does not arm again
    assert m.released(50.0) is None and m.state == "idle"


def test_a_confirming_press_let_go_after_5_s_without_a_tick_still_confirms():
    m = ButtonMachine()
    m.pressed(0.0)
    assert m.released(15.0) == "reset-armed"  # the furthest threshold, not "setup" first
    m.pressed(20.0)
    assert m.released(25.0) == "factory-reset"


def test_no_second_press_within_10_s_cancels_the_reset():
    m = ButtonMachine()
    m.pressed(0.0)
    m.tick(15.0)
    m.released(15.5)
    assert m.tick(25.4999)[0] == []
    assert m.tick(25.5) == (["reset-cancelled"], None)
    assert m.mode is None and m.state == "idle"


def test_a_short_second_press_cancels_the_reset():
    m = ButtonMachine()
    m.pressed(0.0)
    m.tick(15.0)
    m.released(16.0)
    m.pressed(18.0)
    assert m.released(22.9) == "reset-cancelled"
    assert m.state == "idle"


def test_a_press_after_the_window_when_no_tick_came_cancels_and_counts_as_a_new_press():
    m = ButtonMachine()
    m.pressed(0.0)
    m.released(15.0)
    assert m.pressed(25.0) == "reset-cancelled"  # exactly 10 s after letting go is too late
    assert m.state == "held"
    assert m.released(25.5) == "next-page"


def test_a_late_tick_fires_only_the_furthest_threshold():
    m = ButtonMachine()
    m.pressed(0.0)
    assert m.tick(16.0) == (["reset-armed"], None)
    m = ButtonMachine()
    m.pressed(0.0)
    assert m.released(7.0) == "setup"


def test_contact_bounce_is_one_press():
    m = ButtonMachine()
    assert m.pressed(0.0) is None
    assert m.released(0.01) is None  # bounce
    assert m.pressed(0.02) is None
    assert m.released(0.3) == "next-page"
    assert m.pressed(0.32) is None and not m.is_pressed  # bounce after the release
    assert m.pressed(0.4) is None and m.is_pressed


def test_thresholds_must_make_sense():
    with pytest.raises(ValueError, match="setup_hold_s < reset_hold_s"):
        ButtonMachine(setup_hold_s=15.0, reset_hold_s=5.0)


# The gpiozero Button on a MockFactory, with a clock the test sets.

class FakeClock:
    def __init__(self):
        self.mono = 0.0

    def now(self):
        return Now(self.mono, 1_700_000_000.0 + self.mono)


@pytest.fixture
def rig(factory):
    """(button input, its pin, the clock, the actions it reported)."""
    clock, actions = FakeClock(), []
    with ButtonInput(Button(pin=PIN), clock=clock, on_action=actions.append, pin_factory=factory) as button:
        yield button, factory.pin(PIN), clock, actions


def at(clock, mono, step):
    clock.mono = mono
    return step()


def test_the_pin_is_pulled_up_and_a_press_pulls_it_low(rig):
    _, pin, clock, actions = rig
    assert pin.state and pin.pull == "up"
    at(clock, 1.0, pin.drive_low)
    at(clock, 1.4, pin.drive_high)
    assert actions == ["next-page"]


def test_holds_fire_on_tick_at_the_clocks_time(rig):
    button, pin, clock, actions = rig
    at(clock, 0.0, pin.drive_low)
    assert at(clock, 4.9, button.tick) == pytest.approx(0.1)
    assert actions == []
    assert at(clock, 5.0, button.tick) == 10.0
    assert actions == ["setup"] and button.mode == "setup"
    assert at(clock, 15.0, button.tick) is None
    assert actions == ["setup", "reset-armed"] and button.mode == "reset-armed"
    at(clock, 16.0, pin.drive_high)
    assert at(clock, 17.0, button.tick) == 9.0
    at(clock, 20.0, pin.drive_low)
    at(clock, 25.0, button.tick)
    assert actions == ["setup", "reset-armed", "factory-reset"]
    at(clock, 26.0, pin.drive_high)
    assert actions == ["setup", "reset-armed", "factory-reset"] and button.mode is None


def test_the_reset_is_cancelled_when_no_second_press_comes(rig):
    button, pin, clock, actions = rig
    at(clock, 0.0, pin.drive_low)
    at(clock, 15.0, button.tick)
    at(clock, 15.2, pin.drive_high)
    at(clock, 25.2, button.tick)
    assert actions == ["reset-armed", "reset-cancelled"]


def test_bouncing_contacts_make_one_press(rig):
    button, pin, clock, actions = rig
    for mono, edge in [(0.0, pin.drive_low), (0.01, pin.drive_high), (0.02, pin.drive_low), (0.3, pin.drive_high),
                       (0.31, pin.drive_low), (0.32, pin.drive_high)]:
        at(clock, mono, edge)
    at(clock, 1.0, button.tick)
    assert actions == ["next-page"]


def test_a_release_taken_for_bounce_is_found_by_the_next_tick(rig):
    button, pin, clock, actions = rig
    at(clock, 0.0, pin.drive_low)
    at(clock, 0.03, pin.drive_high)  # a real (very short) press: its release came within the bounce time
    assert actions == [] and button.mode is None
    assert at(clock, 0.04, button.tick) == pytest.approx(0.04)  # look again when the bounce time is over
    at(clock, 0.08, button.tick)
    assert actions == ["next-page"]
    assert at(clock, 0.2, button.tick) is None


def test_a_failing_action_is_logged_and_the_button_goes_on(factory, caplog):
    clock, seen = FakeClock(), []

    def on_action(action):
        seen.append(action)
        raise OSError("disk full")
    with ButtonInput(Button(pin=PIN), clock=clock, on_action=on_action, pin_factory=factory):
        pin = factory.pin(PIN)
        for mono, edge in [(0.0, pin.drive_low), (1.0, pin.drive_high), (2.0, pin.drive_low), (3.0, pin.drive_high)]:
            at(clock, mono, edge)
    assert seen == ["next-page", "next-page"]
    assert "the button's 'next-page' action failed" in caplog.text and "disk full" in caplog.text


def test_the_thread_wakes_for_a_press_and_fires_holds(factory):
    actions = []
    done = threading.Event()

    def on_action(action):
        actions.append(action)
        if action == "reset-armed":
            done.set()
    # Thresholds of milliseconds on the real clock: the thread's timing is exercised, not measured.
    machine = ButtonMachine(setup_hold_s=0.02, reset_hold_s=0.04, bounce_s=0.0)
    button = ButtonInput(Button(pin=PIN), clock=SystemClock(), on_action=on_action, pin_factory=factory,
                         machine=machine).start()
    try:
        factory.pin(PIN).drive_low()
        assert done.wait(5.0), f"the button thread fired only {actions}"
        assert actions == ["setup", "reset-armed"]
        factory.pin(PIN).drive_high()
    finally:
        thread = button._thread
        button.close()
        button.close()
    assert not thread.is_alive()


def test_close_releases_the_pin(factory):
    button = ButtonInput(Button(pin=PIN), clock=FakeClock(), on_action=print, pin_factory=factory)
    button.close()
    button.close()
    LED(PIN, pin_factory=factory).close()


def test_no_pin_configured_means_no_button_and_no_gpio_needed():
    with ButtonInput(Button(), clock=FakeClock(), on_action=print) as button:
        assert button.start() is button and button.tick() is None and button.mode is None


def test_a_pin_in_use_is_named(factory):
    taken = LED(PIN, pin_factory=factory)
    with pytest.raises(HardwareUnavailable, match=r"^GPIO 4 is in use by another program or device, so the "
                                                  r"button cannot use it; .* in \[button\] pin$"):
        ButtonInput(Button(pin=PIN), clock=FakeClock(), on_action=print, pin_factory=factory)
    taken.close()


@pytest.mark.skipif(os.path.exists("/proc/device-tree/model"), reason="this machine may well have GPIO")
def test_no_gpio_here_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    with pytest.raises(HardwareUnavailable, match=r"GPIO is not available here .* the button on GPIO 4"):
        ButtonInput(Button(pin=PIN), clock=FakeClock(), on_action=print)


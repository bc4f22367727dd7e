"""The status LEDs on real gpiozero LED and RGBLED objects over a MockFactory: pin states, blinks started by
gpiozero with the pattern's times, the per-beat flash, and GPIO that cannot be used."""

import dataclasses
import itertools
import os
import threading
import time

import gpiozero
import pytest
from gpiozero import LED, Device

from appliance.config import Leds
from appliance.status import Network, Snapshot
from hardware.errors import HardwareUnavailable, gpio_errors
from hardware.leds import StatusLeds
from hardware.patterns import BEAT, FAST, ON, WHITE, Light, Pattern

GREEN, RED, AMBER = 17, 27, 22
THREE = Leds(green=GREEN, red=RED, amber=AMBER)
# Short enough that a test sees a few real blinks; nothing here measures them.
QUICK = Light("blink", 0.01, 0.01)


@pytest.fixture
def blinks(monkeypatch):
    """Every gpiozero LED/RGBLED blink() call as (pin numbers, keyword arguments); the real blink still runs."""
    calls = []

    def spy(cls):
        real = cls.blink

        def blink(self, *args, **kwargs):
            assert not args, "StatusLeds passes blink times by name"
            pins = tuple(led.pin.info.name for led in getattr(self, "_leds", ())) or (self.pin.info.name,)
            calls.append((pins, kwargs))
            return real(self, **kwargs)
        monkeypatch.setattr(cls, "blink", blink)

    spy(gpiozero.LED)
    spy(gpiozero.RGBLED)
    return calls


def states(factory, pin):
    return [s.state for s in factory.pin(pin).states]


def lit(factory, *pins):
    return tuple(factory.pin(p).state for p in pins)


def wait_for(condition, timeout_s=5.0):
    """Wait until gpiozero's own threads have done something (no timing is asserted)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "gpiozero's thread did not get there"
        time.sleep(0.005)


def test_each_colour_lights_its_own_pin(factory):
    with StatusLeds(THREE, pin_factory=factory) as leds:
        assert lit(factory, GREEN, RED, AMBER) == (False, False, False)
        leds.show(Pattern(green=ON))
        assert lit(factory, GREEN, RED, AMBER) == (True, False, False)
        leds.show(Pattern(amber=ON))
        assert lit(factory, GREEN, RED, AMBER) == (False, False, True)
        leds.show(Pattern(green=BEAT))  # a beat is steady between beats
        assert lit(factory, GREEN, RED, AMBER) == (True, False, False)
        leds.show(Pattern())
        assert lit(factory, GREEN, RED, AMBER) == (False, False, False)
        assert leds.pattern == Pattern()


def test_active_low_leds_are_lit_by_a_low_pin(factory):
    with StatusLeds(dataclasses.replace(THREE, active_high=False), pin_factory=factory) as leds:
        assert lit(factory, GREEN, RED, AMBER) == (True, True, True)  # all dark
        leds.show(Pattern(red=ON))
        assert lit(factory, GREEN, RED, AMBER) == (True, False, True)


def test_without_an_amber_led_red_and_green_stand_in(factory):
    with StatusLeds(Leds(green=GREEN, red=RED), pin_factory=factory) as leds:
        leds.show(Pattern(amber=ON))
        assert lit(factory, GREEN, RED) == (True, True)
        leds.show(Pattern(red=ON))
        assert lit(factory, GREEN, RED) == (False, True)


def test_a_blink_is_gpiozeros_with_the_patterns_times(factory, blinks):
    with StatusLeds(THREE, pin_factory=factory) as leds:
        leds.show(Pattern(red=QUICK))
        assert blinks == [(("GPIO27",), {"on_time": 0.01, "off_time": 0.01, "background": True})]
        wait_for(lambda: len(states(factory, RED)) >= 5)  # really blinking: off, on, off, on, …
        seen = states(factory, RED)
        assert all(a != b for a, b in itertools.pairwise(seen))
        assert lit(factory, GREEN, AMBER) == (False, False)


def test_the_same_pattern_again_keeps_the_blinks_rhythm(factory, blinks):
    with StatusLeds(THREE, pin_factory=factory) as leds:
        leds.show(Pattern(red=QUICK))
        thread = leds.devices["red"]._blink_thread
        leds.show(Pattern(red=QUICK))
        leds.show(Pattern(red=QUICK, amber=ON))  # another colour changes; red's blink goes on
        assert len(blinks) == 1 and leds.devices["red"]._blink_thread is thread and thread.is_alive()
        assert factory.pin(AMBER).state
        leds.show(Pattern(red=FAST))
        assert len(blinks) == 2 and blinks[1][1]["on_time"] == 0.2


def test_an_rgb_led_mixes_the_colours(factory, blinks):
    with StatusLeds(Leds(rgb=(RED, GREEN, AMBER)), pin_factory=factory) as leds:  # [red, green, blue] pins
        leds.show(Pattern(amber=ON))
        assert lit(factory, RED, GREEN, AMBER) == (True, True, False)
        leds.show(Pattern(green=BEAT))
        assert lit(factory, RED, GREEN, AMBER) == (False, True, False)
        leds.show(Pattern(green=FAST, red=FAST, amber=FAST))
        assert blinks == [(("GPIO27", "GPIO17", "GPIO22"),
                           {"on_time": 0.2, "off_time": 0.2, "on_color": WHITE, "off_color": (0, 0, 0),
                            "background": True})]
        leds.show(Pattern())
        assert lit(factory, RED, GREEN, AMBER) == (False, False, False)


def test_an_active_low_rgb_led(factory):
    with StatusLeds(Leds(rgb=(RED, GREEN, AMBER), active_high=False), pin_factory=factory) as leds:
        leds.show(Pattern(red=ON))
        assert lit(factory, RED, GREEN, AMBER) == (False, True, True)


@pytest.mark.parametrize("config", [THREE, Leds(rgb=(RED, GREEN, AMBER))], ids=["leds", "rgb"])
def test_a_beat_goes_dark_for_a_moment_and_lights_again(factory, config):
    with StatusLeds(config, pin_factory=factory, flash_s=0.01) as leds:
        leds.show(Pattern(green=BEAT))
        factory.pin(GREEN).clear_states()
        assert leds.flash()
        wait_for(lambda: states(factory, GREEN) == [True, False, True])
        assert lit(factory, RED) == (False,)


def test_only_a_beat_flashes(factory):
    with StatusLeds(THREE, pin_factory=factory, flash_s=0.01) as leds:
        leds.show(Pattern(amber=ON))
        assert not leds.flash()
        assert lit(factory, GREEN, RED, AMBER) == (False, False, True)


def test_a_new_pattern_during_a_flash_is_not_overwritten_by_it(factory):
    with StatusLeds(THREE, pin_factory=factory, flash_s=30.0) as leds:
        leds.show(Pattern(green=BEAT))
        leds.flash()
        wait_for(lambda: not factory.pin(GREEN).state)  # dark, for 30 s
        leds.show(Pattern(red=ON))  # stops the flash at once: it never relights green
        assert lit(factory, GREEN, RED) == (False, True)
        assert leds.devices["green"].source is None


def snapshot(beats_sent, *, heartbeat="ok"):
    return Snapshot(at=1000.0, device_name="home", configured=True, heartbeat=heartbeat, last_ok_at=990.0,
                    beats_sent=beats_sent, last_error=None, network=Network(interface="eth0", ip="192.0.2.10"),
                    time_verdict="ok", time_reason="", time_offset_ms=None, time_zone=None, uptime_s=1.0,
                    setup=None)


def test_update_shows_the_status_and_flashes_when_a_beat_was_delivered(factory):
    with StatusLeds(THREE, pin_factory=factory, flash_s=0.01) as leds:
        assert leds.update(snapshot(3)) == Pattern(green=BEAT)
        assert states(factory, GREEN) == [False, True]  # beats from before are not flashed
        leds.update(snapshot(3))
        assert states(factory, GREEN) == [False, True]
        leds.update(snapshot(4))
        wait_for(lambda: states(factory, GREEN) == [False, True, False, True])
        leds.update(snapshot(1))  # counting again from a config reload: not a beat
        assert leds.update(snapshot(2), button_mode="setup") == Pattern(amber=FAST)  # nothing beats: no flash
        assert states(factory, GREEN) == [False, True, False, True, False]


def test_close_releases_the_pins_and_is_idempotent(factory):
    leds = StatusLeds(THREE, pin_factory=factory)
    leds.show(Pattern(red=QUICK))
    leds.close()
    leds.close()
    assert leds.closed and leds.devices == {}
    leds.show(Pattern(green=ON))  # a status loop racing shutdown: nothing happens
    assert not leds.flash()
    LED(RED, pin_factory=factory).close()  # the pin is free again


def test_no_pins_configured_means_no_leds_and_no_gpio_needed():
    with StatusLeds(Leds()) as leds:  # no pin factory either: nothing is opened
        leds.show(Pattern(red=FAST))
        assert leds.devices == {} and not leds.flash()


@pytest.mark.skipif(os.path.exists("/proc/device-tree/model"), reason="this machine may well have GPIO")
def test_no_gpio_on_this_machine_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    before = Device.pin_factory
    with pytest.raises(HardwareUnavailable, match=r"GPIO is not available here \(not a Raspberry Pi, or lgpio "
                                                  r"missing.*status LEDs on GPIO 17, 27 and 22") as caught:
        StatusLeds(THREE)
    assert caught.value.pins == (GREEN, RED, AMBER)
    assert Device.pin_factory is before  # gpiozero's process-wide factory was not set as a side effect


def test_a_pin_in_use_is_named_and_the_others_are_released(factory):
    taken = LED(RED, pin_factory=factory)
    with pytest.raises(HardwareUnavailable) as caught:
        StatusLeds(THREE, pin_factory=factory)
    assert str(caught.value) == ("GPIO 27 is in use by another program or device, so the red status LED cannot use "
                                 "it; stop the other user of the pin, or choose another pin in [leds] red")
    assert caught.value.pins == (RED,)
    LED(GREEN, pin_factory=factory).close()  # green, made before red failed, was closed again
    taken.close()


def test_a_pin_in_use_under_an_rgb_led_is_named(factory):
    taken = LED(AMBER, pin_factory=factory)
    with pytest.raises(HardwareUnavailable, match=r"^GPIO 22 is in use .* in \[leds\] rgb$"):
        StatusLeds(Leds(rgb=(RED, GREEN, AMBER)), pin_factory=factory)
    taken.close()


def test_an_invalid_pin_is_named(factory):
    with pytest.raises(HardwareUnavailable, match=r"^GPIO 28 is not a GPIO pin on this board, so the green status "
                                                  r"LED cannot use it; check \[leds\] green \(BCM numbers from 2 "
                                                  r"to 27\)$"):
        StatusLeds(Leds(green=28, red=RED), pin_factory=factory)


class LgpioError(Exception):
    """Stands in for lgpio.error, which is what lgpio raises for a pin another program holds."""


LgpioError.__module__ = "lgpio"


@pytest.mark.parametrize("exc, expected", [
    (LgpioError("GPIO busy"), ("GPIO 5 is in use by another program or device, so the button cannot use it; "
                               "stop the other user of the pin, or choose another pin in [button] pin")),
    (PermissionError(13, "Permission denied"), ("no permission to use GPIO 5 for the button; add the user running "
                                                "phonehome to the 'gpio' group (or check the rights on "
                                                "/dev/gpiochip*)")),
    (OSError(5, "Input/output error"), ("cannot use GPIO 5 for the button (Input/output error); check the wiring "
                                        "and [button] pin")),
])
def test_what_the_gpio_libraries_raise_becomes_one_error(exc, expected):
    with pytest.raises(HardwareUnavailable) as caught, gpio_errors(what="button", pins=[5], setting="[button] pin"):
        raise exc
    assert str(caught.value) == expected and caught.value.__cause__ is exc


def test_programming_errors_are_not_taken_for_missing_hardware():
    with pytest.raises(TypeError), gpio_errors(what="button", pins=[5], setting="[button] pin"):
        raise TypeError("a bug")


def test_leds_can_be_shown_from_two_threads(factory):
    with StatusLeds(THREE, pin_factory=factory) as leds:
        workers = [threading.Thread(target=lambda p=p: [leds.show(p) for _ in range(50)])
                   for p in (Pattern(green=ON), Pattern(red=ON))]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert lit(factory, GREEN, RED).count(True) == 1

"""Errors of the appliance's own hardware, and the one place GPIO failures become them.

gpiozero and the GPIO libraries under it (lgpio, RPi.GPIO, pigpio) raise
their own exception types; callers here see only ``HardwareUnavailable``,
whose message names the pins and what to check. The agent logs it once and
goes on phoning home without the part.
"""

import contextlib
import logging
import re
import warnings

from appliance.errors import PhonehomeError

log = logging.getLogger("phonehome.hardware")

# The C libraries under gpiozero raise their own types (lgpio.error for "GPIO busy").
_GPIO_LIBRARIES = ("lgpio", "RPi", "pigpio")


class HardwareUnavailable(PhonehomeError):
    """A part of the appliance's hardware cannot be used; ``pins`` are the BCM numbers concerned."""

    def __init__(self, message, *, pins=()):
        super().__init__(message)
        self.pins = tuple(pins)


def default_pin_factory(*, what="GPIO", pins=()):
    """gpiozero's default pin factory, made for the caller; the caller owns it and closes it.

    The same choice gpiozero makes (GPIOZERO_PIN_FACTORY, else lgpio,
    RPi.GPIO, pigpio, native), but it does not become the process-wide
    ``Device.pin_factory`` as it would when a device is given none. ``what``
    and ``pins`` only word the error. Raises HardwareUnavailable when no
    factory loads (not a Raspberry Pi, or lgpio missing).
    """
    # gpiozero is imported where it is used: it costs about 3 MiB of memory, which only configs with GPIO parts
    # need, while HardwareUnavailable is imported by every agent.
    from gpiozero import Device

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            factory = Device._default_pin_factory()
        except Exception as exc:  # a named factory raises whatever its library raises
            tried = "; ".join(str(w.message) for w in caught)
            raise HardwareUnavailable(
                f"GPIO is not available here (not a Raspberry Pi, or lgpio missing: "
                f"'apt install python3-lgpio'), so the {what} on {pin_list(pins)} cannot be used "
                f"({tried or exc})", pins=pins) from exc
    for w in caught:
        log.debug("GPIO pin factory: %s", w.message)
    return factory


def is_gpio_error(exc):
    """True for what gpiozero or a GPIO library raises when a pin cannot be used."""
    from gpiozero.exc import GPIOZeroError

    return (isinstance(exc, (GPIOZeroError, OSError, RuntimeError))
            or type(exc).__module__.partition(".")[0] in _GPIO_LIBRARIES)


@contextlib.contextmanager
def gpio_errors(*, what, pins, setting):
    """Turn GPIO failures inside the block into HardwareUnavailable naming ``pins``.

    ``what`` is the part ("status LED"), ``setting`` the config key that
    chose the pins ("[leds] green"). Other exceptions pass unchanged.
    """
    try:
        yield
    except HardwareUnavailable:
        raise
    except Exception as exc:
        if not is_gpio_error(exc):
            raise
        raise HardwareUnavailable(_message(exc, what, tuple(pins), setting), pins=pins) from exc


def pin_list(pins):
    """'GPIO 17', 'GPIO 17 and 27', 'GPIO 17, 27 and 22'."""
    numbers = [str(p) for p in pins]
    if not numbers:
        return "GPIO"
    if len(numbers) == 1:
        return f"GPIO {numbers[0]}"
    return f"GPIO {', '.join(numbers[:-1])} and {numbers[-1]}"


def _message(exc, what, pins, setting):
    from gpiozero.exc import BadPinFactory, GPIOPinInUse, PinInvalidPin

    where = pin_list(pins)
    if isinstance(exc, BadPinFactory):
        return (f"GPIO is not available here (not a Raspberry Pi, or lgpio missing: 'apt install python3-lgpio'), "
                f"so the {what} on {where} cannot be used")
    if isinstance(exc, GPIOPinInUse) or "busy" in str(exc).lower():
        return (f"{pin_list(_named_pin(exc, pins))} is in use by another program or device, so the {what} "
                f"cannot use it; stop the other user of the pin, or choose another pin in {setting}")
    if isinstance(exc, PinInvalidPin):
        return (f"{where} is not a GPIO pin on this board, so the {what} cannot use it; "
                f"check {setting} (BCM numbers from 2 to 27)")
    if isinstance(exc, PermissionError):
        return (f"no permission to use {where} for the {what}; add the user running phonehome "
                f"to the 'gpio' group (or check the rights on /dev/gpiochip*)")
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    return f"cannot use {where} for the {what} ({reason}); check the wiring and {setting}"


def _named_pin(exc, pins):
    """The one pin of ``pins`` the error names (gpiozero says 'pin GPIO17 …'), else all of them."""
    if len(pins) == 1:
        return pins
    named = {int(n) for n in re.findall(r"GPIO(\d+)", str(exc))}
    return [p for p in pins if p in named] or pins

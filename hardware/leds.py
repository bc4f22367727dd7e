"""The status LEDs through gpiozero: separate green/red (and optional amber) LEDs, or one RGB LED.

What to show is decided in ``patterns``; this module only applies a Pattern.
Blinking is gpiozero's own (``blink(on_time, off_time, background=True)``),
and a pattern is re-applied only to an LED whose part of it changed, so a
blink keeps its rhythm when the same status comes round again. The per-beat
flash uses gpiozero's ``source``: dark, then lit again after ``flash_s``.
"""

import threading

from gpiozero import LED, RGBLED

from hardware.errors import default_pin_factory, gpio_errors
from hardware.patterns import COLOURS, pattern_for

FLASH_S = 0.15
_DARK = (0, 0, 0)


class StatusLeds:
    """The LEDs of ``leds_config`` (config.Leds), built on ``pin_factory``.

    With no factory, gpiozero's default one is made and owned (closed with
    these LEDs) without becoming gpiozero's process-wide factory. With no
    pins configured there are no LEDs and every method does nothing, so the
    agent can build this unconditionally. ``flash_s`` is how long the LED
    goes dark per heartbeat delivered, in seconds.

    Raises HardwareUnavailable (naming the pins and what to check) when GPIO
    cannot be used: not a Raspberry Pi, a pin in use, an invalid pin.
    A context manager; ``close()`` is idempotent.
    """

    def __init__(self, leds_config, *, pin_factory=None, flash_s=FLASH_S):
        self._lock = threading.Lock()
        self._flash_s = flash_s
        self._devices = {}  # "green"/"red"/"amber", or "rgb": a gpiozero LED / RGBLED
        self._where = {}  # the same names: (what, pins, setting) for error messages
        self._shown = {}  # the same names: a Light (LED) or ((r, g, b), Light) (RGB LED)
        self._pattern = None
        self._beats_sent = None
        self._owned_factory = None
        self._closed = False
        pins = leds_config.pins
        if not pins:
            return
        try:
            if pin_factory is None:
                pin_factory = self._owned_factory = default_pin_factory(what="status LEDs", pins=pins)
            if leds_config.rgb:
                self._where["rgb"] = ("RGB status LED", tuple(leds_config.rgb), "[leds] rgb")
                with gpio_errors(what="RGB status LED", pins=leds_config.rgb, setting="[leds] rgb"):
                    # pwm=False: colours are on/off mixes, and software PWM would cost CPU all the time.
                    self._devices["rgb"] = RGBLED(*leds_config.rgb, active_high=leds_config.active_high, pwm=False,
                                                  pin_factory=pin_factory)
            else:
                for colour in COLOURS:
                    pin = getattr(leds_config, colour)
                    if pin is None:
                        continue
                    where = (f"{colour} status LED", (pin,), f"[leds] {colour}")
                    self._where[colour] = where
                    with gpio_errors(what=where[0], pins=where[1], setting=where[2]):
                        self._devices[colour] = LED(pin, active_high=leds_config.active_high,
                                                    pin_factory=pin_factory)
        except BaseException:
            self.close()
            raise

    @property
    def devices(self):
        """The gpiozero devices by name ("green", "red", "amber" or "rgb"); empty when closed."""
        return dict(self._devices)

    @property
    def pattern(self):
        """The Pattern shown last, None before the first."""
        return self._pattern

    @property
    def closed(self):
        return self._closed

    def show(self, pattern):
        """Show ``pattern`` (a patterns.Pattern); an LED whose part is unchanged is left alone.

        Does nothing once closed. Raises HardwareUnavailable when a pin fails.
        """
        with self._lock:
            self._show(pattern)

    def flash(self):
        """Make every LED showing a "beat" go dark for ``flash_s`` seconds; True if one did.

        Returns at once (gpiozero times the flash in its own thread).
        Raises HardwareUnavailable when a pin fails.
        """
        with self._lock:
            return self._flash()

    def update(self, snapshot, *, button_mode=None):
        """Show what ``snapshot`` (a status.Snapshot) calls for, and flash if a heartbeat was delivered since.

        ``button_mode`` is ButtonMachine.mode. Meant to be called on every
        status change (or once a second): it costs a few comparisons when
        nothing changed. Returns the Pattern. Raises HardwareUnavailable.
        """
        pattern = pattern_for(snapshot, button_mode=button_mode)
        with self._lock:
            self._show(pattern)
            delivered = self._beats_sent is not None and snapshot.beats_sent > self._beats_sent
            # A lower count (the targets were rebuilt after a config change) is a new start, not a beat.
            self._beats_sent = snapshot.beats_sent
            if delivered:
                self._flash()
        return pattern

    def close(self):
        """Stop blinking and release the pins (and the pin factory this object made). Idempotent."""
        with self._lock:
            self._closed = True
            devices, self._devices = self._devices, {}
            for device in devices.values():
                device.close()
            if self._owned_factory is not None:
                self._owned_factory.close()
                self._owned_factory = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _targets(self, pattern):
        """What each device should show for ``pattern``."""
        if "rgb" in self._devices:
            return {"rgb": pattern.rgb()}
        lights = {c: getattr(pattern, c) for c in COLOURS}
        if "amber" not in self._devices and pattern.amber.lit:
            # No amber LED: red and green together stand in for it, as they do on an RGB LED.
            for colour in ("green", "red"):
                if not lights[colour].lit:
                    lights[colour] = pattern.amber
        return {name: lights[name] for name in self._devices}

    def _show(self, pattern):
        if self._closed:
            return
        self._pattern = pattern
        for name, target in self._targets(pattern).items():
            if self._shown.get(name) == target:
                continue
            what, pins, setting = self._where[name]
            with gpio_errors(what=what, pins=pins, setting=setting):
                self._apply(self._devices[name], target)
            self._shown[name] = target

    def _apply(self, device, target):
        device.source = None  # ends a flash in progress, which would otherwise relight the LED
        if isinstance(device, RGBLED):
            colour, light = target
        else:
            colour, light = True, target
        if light.kind == "blink":
            if isinstance(device, RGBLED):
                device.blink(on_time=light.on_s, off_time=light.off_s, on_color=colour, off_color=_DARK,
                             background=True)
            else:
                device.blink(on_time=light.on_s, off_time=light.off_s, background=True)
        elif light.lit:
            device.value = colour
        else:
            device.off()

    def _flash(self):
        if self._closed:
            return False
        flashed = False
        for name, target in self._shown.items():
            device = self._devices[name]
            colour, light = target if isinstance(device, RGBLED) else (True, target)
            if light.kind != "beat":
                continue
            what, pins, setting = self._where[name]
            with gpio_errors(what=what, pins=pins, setting=setting):
                # gpiozero's source thread writes each value, waiting source_delay after each: dark, then lit.
                device.source_delay = self._flash_s
                device.source = iter((_DARK if isinstance(device, RGBLED) else False, colour))
            flashed = True
        return flashed


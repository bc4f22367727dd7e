"""The box's own status panel: the OLED, the LEDs and the button, fed from the agent's status snapshot.

Hardware that is absent or fails is said once in the log and tried again now
and then; nothing here ever stops the agent or its heartbeats.
"""

import logging
import threading

from appliance.reset import factory_reset
from hardware.display import DisplayService
from hardware.oled import open_device
from hardware.errors import HardwareUnavailable

log = logging.getLogger("phonehome.hardware")

TICK_S = 0.5          # how often the LEDs follow the status: well under a heartbeat, cheap when nothing changed
RETRY_GPIO_S = 60.0   # how often absent GPIO is tried again


class StatusPanel:
    """Display, LEDs and button of ``config``; ``snapshot()`` returns the current status.Snapshot.

    ``config_path`` is the file a factory reset backs up and replaces.
    ``pin_factory`` and ``open_device`` are handed in by tests (gpiozero's
    MockFactory, luma's dummy device).
    """

    def __init__(self, config, *, snapshot, clock, config_path, pin_factory=None, open_device=open_device):
        self._config = config
        self._snapshot = snapshot
        self._clock = clock
        self._config_path = config_path
        self._pin_factory = pin_factory
        self.display = DisplayService(config.display, snapshot=snapshot, clock=clock, data_dir=config.data_dir,
                                      open_device=open_device)
        self.leds = None
        self.button = None
        self._gpio = _Retries()
        self._stopping = threading.Event()
        self._thread = None

    @property
    def wants_gpio(self):
        return bool(self._config.leds.pins or self._config.button.pin is not None)

    def start(self):
        self.display.start()
        if self.wants_gpio:
            self._thread = threading.Thread(target=self._run, name="phonehome-panel", daemon=True)
            self._thread.start()
        return self

    def tick(self, now):
        """Open what GPIO is due, show the status on the LEDs; return seconds until the next tick.

        The LEDs and the button are opened and retried each on its own: a bad
        LED pin must not take away the button, the box's only way to the setup
        code and the factory reset.
        """
        if self.leds is None and self._gpio.due("leds", now):
            # Imported here: gpiozero costs about 3 MiB of memory, which only configs with LEDs or a button need.
            from hardware.leds import StatusLeds

            self.leds = self._gpio.open("leds", now, lambda: StatusLeds(self._config.leds,
                                                                        pin_factory=self._pin_factory))
        if self.button is None and self._gpio.due("button", now):
            from hardware.button import ButtonInput

            self.button = self._gpio.open("button", now, lambda: ButtonInput(
                self._config.button, clock=self._clock, on_action=self._on_button,
                pin_factory=self._pin_factory).start())
        if self.leds is not None:
            try:
                self.leds.update(self._snapshot(), button_mode=self.button.mode if self.button else None)
            except HardwareUnavailable as exc:
                _close(self.leds)
                self.leds = None
                self._gpio.lost("leds", now, exc)
        return TICK_S

    def _on_button(self, action):
        if action == "next-page":
            self.display.next_page()
        elif action == "setup":
            self._reopen_claim()
            self.display.show_setup()
            log.info("button held: showing the setup page")
        elif action == "reset-armed":
            self.display.show_setup()
            log.warning("button held 15 s: hold it again for 5 s within 10 s to reset to factory settings")
        elif action == "reset-cancelled":
            log.info("factory reset not confirmed; nothing changed")
        elif action == "factory-reset":
            try:
                factory_reset(self._config_path, self._config.data_dir, now_wall=self._clock.now().wall)
            except OSError as exc:
                where = exc.filename or self._config_path
                log.error("factory reset not done, nothing changed: cannot write %s (%s); make its directory "
                          "writable by the agent's user", where, exc.strerror or exc)

    def _reopen_claim(self):
        """A lost password is recovered with the box in hand: the hold makes a new setup code to claim it again."""
        from appliance.setup import load_setup, reopen

        data_dir = self._config.data_dir
        if not load_setup(data_dir).claimed:
            return
        try:
            reopen(data_dir)
        except OSError as exc:
            log.error("admin password not reset: cannot write in %s (%s); make data_dir writable by the "
                      "agent's user", data_dir, exc.strerror)

    def _run(self):
        failing = False
        while not self._stopping.is_set():
            try:
                delay = self.tick(self._clock.now())
                failing = False
            except Exception:  # the panel is a report: never let a bug in it take anything else down
                if not failing:
                    log.exception("status panel step failed (a bug: please report it); the LEDs may show an "
                                  "old state until it works again")
                failing, delay = True, TICK_S * 10
            self._stopping.wait(delay)

    def _close_gpio(self):
        _close(self.button)
        _close(self.leds)
        self.leds = self.button = None

    def stop(self):
        """Stop the threads, clear the display, switch the LEDs off. Idempotent."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._close_gpio()
        self.display.stop()


class _Retries:
    """When each GPIO part may be tried again, and whether its failure was already said (once per streak)."""

    def __init__(self):
        self._retry_at = {}
        self._failing = set()

    def due(self, part, now):
        return now.mono >= self._retry_at.get(part, now.mono)

    def open(self, part, now, make):
        """``make()``, or None after logging (once) that GPIO is not available for ``part``."""
        try:
            made = make()
        except HardwareUnavailable as exc:
            self.lost(part, now, exc)
            return None
        if part in self._failing:
            log.info("GPIO works again: the %s is back", "button" if part == "button" else "LEDs")
        self._failing.discard(part)
        return made

    def lost(self, part, now, exc):
        self._retry_at[part] = now.mono + RETRY_GPIO_S
        if part not in self._failing:
            log.warning("%s; heartbeats go on; trying again every %.0f s", exc, RETRY_GPIO_S)
        self._failing.add(part)


def _close(part):
    if part is not None:
        try:
            part.close()
        except Exception:
            log.debug("closing a GPIO part failed", exc_info=True)

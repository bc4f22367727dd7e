"""The box's own status panel: the OLED, the LEDs and the button, fed from the agent's status snapshot.

Hardware that is absent or fails is said once in the log and tried again now
and then; nothing here ever stops the agent or its heartbeats.
"""

import logging
import threading

from appliance.reset import factory_reset
from hardware.button import ButtonInput
from hardware.display import DisplayService
from hardware.oled import open_device
from hardware.errors import HardwareUnavailable
from hardware.leds import StatusLeds

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
        self._gpio_retry_mono = None
        self._gpio_failing = False
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
        """Open GPIO if due, show the status on the LEDs; return seconds until the next tick."""
        if self.leds is None and (self._gpio_retry_mono is None or now.mono >= self._gpio_retry_mono):
            self._open_gpio(now)
        if self.leds is not None:
            try:
                self.leds.update(self._snapshot(), button_mode=self.button.mode if self.button else None)
            except HardwareUnavailable as exc:
                self._gpio_lost(now, exc)
        return TICK_S

    def _open_gpio(self, now):
        try:
            self.leds = StatusLeds(self._config.leds, pin_factory=self._pin_factory)
            self.button = ButtonInput(self._config.button, clock=self._clock, on_action=self._on_button,
                                      pin_factory=self._pin_factory).start()
        except HardwareUnavailable as exc:
            self._gpio_lost(now, exc)
            return
        if self._gpio_failing:
            log.info("GPIO works again: LEDs and button are back")
        self._gpio_failing = False

    def _gpio_lost(self, now, exc):
        self._close_gpio()
        self._gpio_retry_mono = now.mono + RETRY_GPIO_S
        if not self._gpio_failing:
            log.warning("%s; the LEDs and button are off, heartbeats go on; trying again every %.0f s",
                        exc, RETRY_GPIO_S)
        self._gpio_failing = True

    def _on_button(self, action):
        if action == "next-page":
            self.display.next_page()
        elif action == "setup":
            self.display.show_setup()
            log.info("button held: showing the setup page")
        elif action == "reset-armed":
            self.display.show_setup()
            log.warning("button held 15 s: hold it again within 10 s to reset to factory settings")
        elif action == "reset-cancelled":
            log.info("factory reset not confirmed; nothing changed")
        elif action == "factory-reset":
            backup = factory_reset(self._config_path, self._config.data_dir, now_wall=self._clock.now().wall)
            log.warning("factory reset by the button: settings backed up to %s", backup)

    def _run(self):
        while not self._stopping.is_set():
            try:
                delay = self.tick(self._clock.now())
            except Exception:  # the panel is a report: never let a bug in it take anything else down
                log.exception("status panel step failed; trying again in %.0f s", RETRY_GPIO_S)
                delay = RETRY_GPIO_S
            self._stopping.wait(delay)

    def _close_gpio(self):
        for part in (self.button, self.leds):
            if part is not None:
                try:
                    part.close()
                except Exception:
                    log.debug("closing GPIO part failed", exc_info=True)
        self.leds = self.button = None

    def stop(self):
        """Stop the threads, clear the display, switch the LEDs off. Idempotent."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._close_gpio()
        self.display.stop()

"""The push button: a pure press/hold state machine, and its gpiozero wiring.

What a person does, and what it does (the actions ``on_action`` receives):

* a short press (let go before 5 s): "next-page" (which also wakes the display);
* hold 5 s: "setup", at 5 s while still held (the display shows the setup code);
* hold 15 s: "reset-armed", at 15 s while still held. The reset then waits
  for confirmation: a second long press (held 5 s) that starts within 10 s
  of letting go gives "factory-reset", at 5 s while still held. A short
  press instead, or no press within the 10 s, gives "reset-cancelled".

When several thresholds pass at once (a late tick), only the furthest
fires: "reset-armed" without "setup" first. Edges closer than ``bounce_s``
to the last accepted edge are contact bounce and ignored; ButtonInput reads
the pin again once the bounce time is over, so a real edge lost that way is
still seen.
"""

import logging
import threading

from gpiozero import Button

from hardware.errors import default_pin_factory, gpio_errors

log = logging.getLogger("phonehome.button")

SETUP_HOLD_S = 5.0
RESET_HOLD_S = 15.0
CONFIRM_WINDOW_S = 10.0
LONG_PRESS_S = 5.0
BOUNCE_S = 0.05

NEXT_PAGE, SETUP, RESET_ARMED, FACTORY_RESET, RESET_CANCELLED = (
    "next-page", "setup", "reset-armed", "factory-reset", "reset-cancelled")
ACTIONS = (NEXT_PAGE, SETUP, RESET_ARMED, FACTORY_RESET, RESET_CANCELLED)


class ButtonMachine:
    """Turns presses and releases, with their monotonic times in seconds, into actions. Pure: no clock inside.

    States: "idle"; "held" (a press, with the furthest hold threshold fired
    so far); "armed" (let go after "reset-armed", waiting for the
    confirming press until a deadline); "confirming" (that press, held);
    "done" (the reset confirmed, waiting for the button to be let go).
    """

    def __init__(self, *, setup_hold_s=SETUP_HOLD_S, reset_hold_s=RESET_HOLD_S, confirm_window_s=CONFIRM_WINDOW_S,
                 long_press_s=LONG_PRESS_S, bounce_s=BOUNCE_S):
        if not 0 < setup_hold_s < reset_hold_s:
            raise ValueError(f"need 0 < setup_hold_s < reset_hold_s, got {setup_hold_s:g} and {reset_hold_s:g}")
        self.setup_hold_s = setup_hold_s
        self.reset_hold_s = reset_hold_s
        self.confirm_window_s = confirm_window_s
        self.long_press_s = long_press_s
        self.bounce_s = bounce_s
        self.state = "idle"
        self._pressed_at = None
        self._fired = None  # while "held": SETUP or RESET_ARMED once fired
        self._armed_until = None
        self._last_edge = None

    @property
    def is_pressed(self):
        """True between an accepted press and its release."""
        return self._pressed_at is not None

    @property
    def mode(self):
        """The feedback the LEDs and display give: None, "setup" (held past 5 s) or "reset-armed"."""
        if self.state == "held":
            return self._fired
        if self.state in ("armed", "confirming"):
            return RESET_ARMED
        return None

    def pressed(self, now_mono):
        """The button went down. Returns "reset-cancelled" when an armed reset had run out before, else None."""
        if self.is_pressed or self._bouncing(now_mono):
            return None
        self._last_edge = now_mono
        expired = self._expire(now_mono)
        self.state = "confirming" if self.state == "armed" else "held"
        self._pressed_at, self._fired = now_mono, None
        return expired

    def released(self, now_mono):
        """The button came up. Returns the action this ends with, or None (a hold already fired its action)."""
        if not self.is_pressed or self._bouncing(now_mono):
            return None
        self._last_edge = now_mono
        held_s = now_mono - self._pressed_at
        state, fired = self.state, self._fired
        self._pressed_at, self._fired, self.state = None, None, "idle"
        if state == "confirming":
            return FACTORY_RESET if held_s >= self.long_press_s else RESET_CANCELLED
        if state != "held":
            return None
        reached = self._reached(held_s)
        if reached is None:
            return NEXT_PAGE
        if reached == RESET_ARMED:
            self.state, self._armed_until = "armed", now_mono + self.confirm_window_s
        return reached if reached != fired else None

    def tick(self, now_mono):
        """Fire what is due at ``now_mono``: ``(actions, seconds until the next decision or None)``.

        None means nothing happens until the button moves.
        """
        if self.state == "armed":
            expired = self._expire(now_mono)
            if expired:
                return [expired], None
            return [], self._armed_until - now_mono
        if self.state == "confirming":
            if now_mono - self._pressed_at >= self.long_press_s:
                self.state = "done"
                return [FACTORY_RESET], None
            return [], self._pressed_at + self.long_press_s - now_mono
        if self.state != "held":
            return [], None
        actions = []
        reached = self._reached(now_mono - self._pressed_at)
        if reached is not None and reached != self._fired:
            self._fired = reached
            actions.append(reached)
        if self._fired is None:
            return actions, self._pressed_at + self.setup_hold_s - now_mono
        if self._fired == SETUP:
            return actions, self._pressed_at + self.reset_hold_s - now_mono
        return actions, None

    def _reached(self, held_s):
        if held_s >= self.reset_hold_s:
            return RESET_ARMED
        if held_s >= self.setup_hold_s:
            return SETUP
        return None

    def _expire(self, now_mono):
        if self.state == "armed" and now_mono >= self._armed_until:
            self.state, self._armed_until = "idle", None
            return RESET_CANCELLED
        return None

    def _bouncing(self, now_mono):
        return self._last_edge is not None and now_mono - self._last_edge < self.bounce_s


class ButtonInput:
    """The button of ``button_config`` (config.Button) as a gpiozero Button, feeding a ButtonMachine.

    The pin is pulled up and the button connects it to ground. Each action
    goes to ``on_action(action)``, called from gpiozero's callback thread or
    from tick(); an exception there is logged and does not stop the button.
    ``clock.now().mono`` times the edges. Call ``start()`` for the thread
    that runs tick() at the hold thresholds, or call tick() yourself (tests).
    With no pin configured there is no button and every method does
    nothing. With no pin factory, gpiozero's default one is made and owned.

    Raises HardwareUnavailable (naming the pin and what to check) when GPIO
    cannot be used. A context manager; ``close()`` is idempotent.
    """

    def __init__(self, button_config, *, clock, on_action, pin_factory=None, machine=None):
        self._clock = clock
        self._on_action = on_action
        self._machine = machine or ButtonMachine()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = None
        self._recheck_at = None
        self._button = None
        self._owned_factory = None
        pin = button_config.pin
        if pin is None:
            return
        try:
            if pin_factory is None:
                pin_factory = self._owned_factory = default_pin_factory(what="button", pins=[pin])
            with gpio_errors(what="button", pins=[pin], setting="[button] pin"):
                self._button = Button(pin, pull_up=True, bounce_time=self._machine.bounce_s, pin_factory=pin_factory)
            self._button.when_pressed = self._pressed
            self._button.when_released = self._released
        except BaseException:
            self.close()
            raise

    @property
    def mode(self):
        """ButtonMachine.mode: None, "setup" or "reset-armed" (for patterns.pattern_for)."""
        with self._lock:
            return self._machine.mode

    def tick(self):
        """Fire the hold actions due now; return the seconds until the next decision (None: none pending)."""
        now = self._clock.now().mono
        actions = []
        with self._lock:
            if self._recheck_at is not None and now >= self._recheck_at:
                self._recheck_at = None
                if self._button is not None and self._button.is_pressed != self._machine.is_pressed:
                    action = (self._machine.pressed if self._button.is_pressed else self._machine.released)(now)
                    actions += [action] if action else []
            due, delay = self._machine.tick(now)
            actions += due
            if self._recheck_at is not None:
                wait = max(0.0, self._recheck_at - now)
                delay = wait if delay is None else min(delay, wait)
        self._dispatch(actions)
        return delay

    def start(self):
        """Run tick() in a daemon thread, waking at each threshold and at each edge; returns self."""
        if self._button is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="phonehome-button", daemon=True)
            self._thread.start()
        return self

    def close(self):
        """Stop the thread and release the pin (and the pin factory this object made). Idempotent."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None
        if self._button is not None:
            self._button.close()
            self._button = None
        if self._owned_factory is not None:
            self._owned_factory.close()
            self._owned_factory = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _run(self):
        while not self._stopping.is_set():
            self._wake.clear()  # before tick(): an edge during tick() still wakes the wait below
            try:
                delay = self.tick()
            except Exception:
                log.exception("the button thread failed; trying again in 5 s")
                delay = 5.0
            self._wake.wait(delay)

    def _pressed(self):
        self._edge(down=True)

    def _released(self):
        self._edge(down=False)

    def _edge(self, *, down):
        now = self._clock.now().mono
        with self._lock:
            action = self._machine.pressed(now) if down else self._machine.released(now)
            if self._machine.is_pressed != down:
                # Taken for bounce: if it was the last edge, the pin's level after the bounce time says so.
                self._recheck_at = now + self._machine.bounce_s
        self._dispatch([action] if action else [])
        self._wake.set()

    def _dispatch(self, actions):
        for action in actions:
            try:
                self._on_action(action)
            except Exception:
                log.exception("the button's %r action failed", action)

"""The peer watchdog's relay: when to power-cycle a silent peer (``PowerCycler``, pure) and the pin that does it
(``PeerRelay``, a gpiozero OutputDevice).

The peer's power is the default: the relay is switched on when it is opened
and again when it is closed, so a watchdog stopped in the middle of a power
cycle gives the peer its power back. Wire the relay so that the peer also has
power while the pin is not driven (a relay board's normally-closed contact),
and a watcher that is off never keeps its peer off.

``PowerCycler`` takes the time as an argument and never touches a pin: its
``tick`` proposes "off" or "on", and the caller confirms with ``done`` once
the relay did it, so an action the GPIO could not carry out is proposed again
on the next tick. Silence is measured on the monotonic clock, and only the
silence this process witnessed counts: a watcher that boots after a power cut
that took its peer down too gives the peer ``after_s`` to boot before it
touches its power.
"""

import math
import threading
from dataclasses import dataclass

from gpiozero import OutputDevice

from hardware.errors import HardwareUnavailable, default_pin_factory, gpio_errors

OFF, ON = "off", "on"
CAME_BACK, NOT_BACK, CAME_BACK_LATE = "came-back", "no-comeback", "came-back-late"
KEEP_CYCLES = 20   # power cycles remembered (memory and the state file); the heartbeat carries fewer
MAX_WAIT_S = 60.0  # the longest a tick says to wait: a peer that changes wakes the caller sooner anyway
_UNKNOWN = object()


@dataclass(frozen=True)
class PowerCycle:
    """One power cycle of the peer: ``at`` when its power went off, ``came_back_at`` when a heartbeat of it
    was next heard (None: not yet). Wall-clock epoch seconds (UTC), for people and the wire."""

    at: float
    came_back_at: float | None = None

    def as_json(self):
        return {"at": self.at, "came_back_at": self.came_back_at}


@dataclass(frozen=True)
class Step:
    """What one ``PowerCycler.tick`` found.

    ``action`` is "off", "on" or None: what the relay should do now (confirm
    with ``done``). ``news`` is "came-back", "no-comeback", "came-back-late"
    (after a "no-comeback") or None: what became of the last power cycle,
    decided in this tick, with ``cycle`` that power cycle and ``after_s`` the
    seconds from its power-off to the comeback (for "no-comeback": how long
    it was waited for). ``wait_s`` is when to tick again if the peer does not
    change meanwhile, in seconds.
    """

    action: str | None = None
    news: str | None = None
    cycle: PowerCycle | None = None
    after_s: float | None = None
    wait_s: float = MAX_WAIT_S


class PowerCycler:
    """Decides when to power-cycle one peer.

    The peer is power-cycled when the monitor says it is "down" and nothing
    was heard from it for ``after_s`` seconds (counted from this object's
    ``started`` at the earliest), at most once per ``min_gap_s``. The power
    stays off ``off_s`` seconds. After power-on the peer has ``after_s``
    seconds to be heard again ("came-back") before it is given up on
    ("no-comeback"). ``history`` holds earlier PowerCycles, oldest first (from
    the state file): the newest keeps ``min_gap_s`` across a restart.
    """

    def __init__(self, *, after_s, off_s, min_gap_s, started, history=()):
        self.after_s, self.off_s, self.min_gap_s = after_s, off_s, min_gap_s
        self._started_mono = started.mono
        self._cycles = list(history)[-KEEP_CYCLES:]
        self.phase = "idle"          # "idle", "off" (power off since _off_mono), "watching" (on since _on_mono)
        self._off_mono = self._on_mono = None
        self._last_mono = None       # monotonic time of the newest power cycle
        self._heard_wall = self._heard_mono = None
        self._heard_before = None    # the peer's last heartbeat time when the newest cycle began
        self._awaiting = False       # the newest cycle has no came_back_at yet and may still get one
        if self._cycles:
            newest = self._cycles[-1]
            # Converted once, at start; a clock that is behind at boot (no RTC) only makes the gap longer.
            self._last_mono = started.mono - max(0.0, started.wall - newest.at)
            self._awaiting = newest.came_back_at is None
            self._heard_before = _UNKNOWN

    @property
    def cycles(self):
        """The remembered PowerCycles, oldest first."""
        return tuple(self._cycles)

    def silent_s(self, now):
        """Seconds of the peer's silence this cycler has witnessed at ``now``."""
        return max(0.0, now.mono - self._silent_since())

    def tick(self, now, peer_state, last_heard_at):
        """What to do at ``now`` about a peer in ``peer_state`` ("up", "down" or "new") last heard at
        ``last_heard_at`` (the monitor's wall-clock epoch seconds, None if never); returns a Step."""
        self._observe(now, last_heard_at)
        if self.phase == "off":
            due = self._off_mono + self.off_s
            return Step(ON, wait_s=0.0) if now.mono >= due else Step(wait_s=_clamp(due - now.mono))
        news = self._news(now, last_heard_at)
        if news is not None or self.phase == "watching":
            return news or Step(wait_s=_clamp(self._on_mono + self.after_s - now.mono))
        if peer_state != "down":
            return Step()
        due = self._silent_since() + self.after_s
        if self._last_mono is not None:
            due = max(due, self._last_mono + self.min_gap_s)
        return Step(OFF, wait_s=0.0) if now.mono >= due else Step(wait_s=_clamp(due - now.mono))

    def done(self, action, now):
        """The relay did ``action`` at ``now``; returns the PowerCycle begun by an "off", else None.

        An "on" outside a power cycle (a stop with the power already on) changes nothing.
        """
        if action == OFF and self.phase == "idle":
            cycle = PowerCycle(at=now.wall)
            self._cycles = (self._cycles + [cycle])[-KEEP_CYCLES:]
            self.phase, self._off_mono, self._last_mono = "off", now.mono, now.mono
            self._heard_before, self._awaiting = self._heard_wall, True
            return cycle
        if action == ON and self.phase == "off":
            self.phase, self._on_mono = "watching", now.mono
        return None

    def _observe(self, now, last_heard_at):
        # A heartbeat time seen for the first time is tied to the monotonic clock once; a later step of
        # the wall clock then changes no silence.
        if last_heard_at is not None and last_heard_at != self._heard_wall:
            self._heard_wall = last_heard_at
            self._heard_mono = now.mono - max(0.0, now.wall - last_heard_at)

    def _silent_since(self):
        return self._started_mono if self._heard_mono is None else max(self._heard_mono, self._started_mono)

    def _news(self, now, last_heard_at):
        """The Step that settles the newest cycle now, or None."""
        if not self._awaiting:
            return None
        if self._came_back(last_heard_at):
            # Never before the power-off, even after the wall clock stepped back: a reader may rely on it.
            came_back = PowerCycle(at=self._cycles[-1].at, came_back_at=max(last_heard_at, self._cycles[-1].at))
            self._cycles[-1] = came_back
            self._awaiting = False
            late = self.phase != "watching"
            self.phase = "idle"
            if self._heard_before is _UNKNOWN:  # begun before a restart: only wall times are known
                after_s = max(0.0, last_heard_at - came_back.at)
            else:
                after_s = max(0.0, self._heard_mono - self._off_mono)
            return Step(news=CAME_BACK_LATE if late else CAME_BACK, cycle=came_back, after_s=after_s)
        if self.phase == "watching" and now.mono >= self._on_mono + self.after_s:
            self.phase = "idle"  # still awaiting: a later comeback is recorded, as "came-back-late"
            return Step(news=NOT_BACK, cycle=self._cycles[-1], after_s=now.mono - self._off_mono)
        return None

    def _came_back(self, last_heard_at):
        if last_heard_at is None:
            return False
        if self._heard_before is _UNKNOWN:  # a cycle from before a restart: only wall times are known
            return last_heard_at > self._cycles[-1].at
        return last_heard_at != self._heard_before


def _clamp(seconds):
    return min(MAX_WAIT_S, max(0.0, seconds)) if math.isfinite(seconds) else MAX_WAIT_S


class PeerRelay:
    """The relay on BCM ``pin`` that switches the peer's power, through gpiozero on ``pin_factory``.

    ``active_high`` is True when the peer has power with the pin high. The
    peer is powered from the moment this is made. With no factory, gpiozero's
    default one is made and owned (closed with the relay) without becoming
    gpiozero's process-wide factory. Raises HardwareUnavailable (naming the
    pin and what to check) when GPIO cannot be used. A context manager;
    ``close()`` switches the power on first and is idempotent.
    """

    WHAT, SETTING = "peer's power relay", "[peer] relay_pin"

    def __init__(self, pin, *, active_high=True, pin_factory=None):
        self.pin = pin
        self._lock = threading.Lock()
        self._owned_factory = None
        self._device = None
        try:
            if pin_factory is None:
                pin_factory = self._owned_factory = default_pin_factory(what=self.WHAT, pins=(pin,))
            with gpio_errors(what=self.WHAT, pins=(pin,), setting=self.SETTING):
                self._device = OutputDevice(pin, active_high=active_high, initial_value=True,
                                            pin_factory=pin_factory)
        except BaseException:
            self.close()
            raise

    @property
    def powered(self):
        """True while the peer has power (also once closed: the power is then left on)."""
        with self._lock:
            return self._device is None or bool(self._device.value)

    def power_off(self):
        """Cut the peer's power. Raises HardwareUnavailable when the pin fails or the relay is closed."""
        self._set(False)

    def power_on(self):
        """Give the peer its power back. Raises HardwareUnavailable when the pin fails."""
        self._set(True)

    def _set(self, value):
        with self._lock:
            if self._device is None:
                if value:
                    return
                raise HardwareUnavailable(f"the {self.WHAT} on GPIO {self.pin} is closed", pins=(self.pin,))
            with gpio_errors(what=self.WHAT, pins=(self.pin,), setting=self.SETTING):
                self._device.value = value

    def close(self):
        """Switch the peer's power on (best effort) and release the pin and any factory this made. Idempotent."""
        with self._lock:
            device, self._device = self._device, None
            if device is not None:
                try:
                    device.on()
                finally:
                    device.close()
            if self._owned_factory is not None:
                self._owned_factory.close()
                self._owned_factory = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

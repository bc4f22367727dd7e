"""Device states and the events that record every change of them.

Transitions are data: the state machine emits an ``Event`` once per change
(and once per reminder while a device stays down); the store, the alerts, the
logs and the history page consume events and never re-derive state.
"""

import enum
from dataclasses import dataclass


class State(str, enum.Enum):
    NEW = "new"    # never seen since it was added; never alerted
    UP = "up"
    DOWN = "down"


class Kind(str, enum.Enum):
    FIRST_SEEN = "first-seen"   # new -> up: no alert
    DOWN = "down"               # up -> down: alert
    REMINDER = "reminder"       # down -> down, every reminder_every_s: alert
    UP = "up"                   # down -> up: alert with the outage's duration
    CLOCK = "clock"             # the device's own clock check changed its verdict: recorded, not alerted
    REBOOT = "reboot"           # up -> up with a new boot: a power blip shorter than max_silence_s
    SITE_DOWN = "site-down"     # every device of a site went silent: one alert instead of one per device
    MASS_SILENCE = "mass-silence"          # many devices silent at once: one alert, their DOWNs held (selfcheck)
    MASS_SILENCE_END = "mass-silence-end"  # the mass silence's held DOWNs are all settled: one alert
    FLAPPING = "flapping"       # too many changes within an hour: one alert, then its changes are summarised
    STEADY = "steady"           # a flapping device kept its state long enough: one summary alert


ALERTING = frozenset({Kind.DOWN, Kind.REMINDER, Kind.UP, Kind.SITE_DOWN, Kind.MASS_SILENCE,
                       Kind.MASS_SILENCE_END})


@dataclass(frozen=True)
class Event:
    """One change of a device's state (or one reminder), as stored and alerted.

    Times are wall-clock epoch seconds (UTC) as the monitor saw them.
    ``outage_s`` is the outage's length so far (REMINDER) or in all (UP).
    ``cause`` is a ``causes.Cause`` kind ("power-cut", "internet", ...) when
    the evidence told one; ``reason`` then says it as a sentence and
    ``detail`` gives the evidence. ``site`` is the device's site (for a
    SITE_DOWN event ``device`` is "site:" and the site's name).

    ``alert`` overrides whether the event is alerted (None: by its kind): a
    DOWN merged into a site's alert is not, a REBOOT is when
    ``monitor.notify_reboots`` says so. ``held`` queues its alert held back
    until the site window decides (see ``sites``); ``self_held`` queues it
    held back until the monitor's own connectivity is confirmed (see
    ``selfcheck``). None is stored: the delivery rows (and ``self_holds``)
    are what a restart reads.
    """

    device: str
    kind: Kind
    old: State
    new: State
    at: float
    reason: str
    last_heard_at: float | None = None
    outage_started_at: float | None = None
    outage_s: float | None = None
    id: int | None = None
    cause: str | None = None
    detail: str | None = None
    site: str | None = None
    alert: bool | None = None
    held: bool = False
    self_held: bool = False

    @property
    def alerts(self):
        """True when a person should be told about this event."""
        return self.kind in ALERTING if self.alert is None else self.alert

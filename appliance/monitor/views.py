"""What the monitor shows of its devices: the dicts the API and the pages read, and the device list's order.

Pure: the service hands in what it holds under its lock.
"""

from dataclasses import dataclass

from appliance.monitor.events import State

FILTERS = ("down", "up", "new", "paused")
_BEAT_KEYS = ("seq", "sent_at", "received_at", "boot_id", "uptime_s", "version", "agent_started_at")


@dataclass(frozen=True)
class DeviceList:
    """A page of devices: ``total`` devices match the filter; ``counts`` is {state or "paused": n} of all devices."""

    total: int
    counts: dict
    devices: list


def device_dict(view, beat, *, outages_total, pause, now):
    """One device as the JSON API shows it (no secrets): its DeviceView, last heartbeat dict and Pause (or None)."""
    beat = beat or {}
    return {
        "name": view.name,
        "state": view.state.value,
        "last_heard_at": view.last_heard_at,
        "seconds_since_heartbeat": None if view.last_heard_at is None else max(0.0, now.wall - view.last_heard_at),
        "max_silence_s": view.max_silence_s,
        "reminder_every_s": view.reminder_every_s,
        "outage_started_at": view.outage_started_at,
        # The current outage's length so far; None while the device is not down.
        "outage_s": max(0.0, now.wall - view.outage_started_at)
        if view.state is State.DOWN and view.outage_started_at is not None else None,
        "outages_total": outages_total,
        "last_heartbeat": {k: beat.get(k) for k in _BEAT_KEYS} if beat else None,
        # The device's own clock check, and the monitor's estimate from send vs receive time.
        "time": beat.get("time"),
        "clock_offset_ms": beat.get("clock_offset_ms"),
        "alerts_paused": pause is not None,
        "alerts_paused_until": None if pause is None else pause.until,  # None while paused: until resumed
    }


def select(states, paused, *, state=None, query=""):
    """(names, counts): the devices to list, down first, then by name, and how many there are of each kind.

    ``states`` is {name: State}; ``paused`` the names whose alerts are paused.
    ``state`` (one of FILTERS, or None for all) and ``query`` (part of the
    name, any case) narrow the names; ``counts`` counts all devices.
    Raises ValueError for a ``state`` not in FILTERS.
    """
    if state is not None and state not in FILTERS:
        raise ValueError(f"state must be one of {', '.join(FILTERS)}, got {state!r}")
    values = list(states.values())
    counts = {s.value: values.count(s) for s in (State.DOWN, State.UP, State.NEW)}
    paused = [n for n in paused if n in states]
    counts["paused"] = len(paused)
    if state == "paused":
        names = paused
    elif state is not None:
        names = [n for n, s in states.items() if s.value == state]
    else:
        names = states
    needle = query.casefold()
    if needle:
        names = [n for n in names if needle in n.casefold()]
    # Two plain sorts beat one with a key function: this runs on every view of the list.
    down = sorted(n for n in names if states[n] is State.DOWN)
    others = sorted(n for n in names if states[n] is not State.DOWN)
    return down + others, counts

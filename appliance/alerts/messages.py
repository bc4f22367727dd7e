"""What an alert says: subject and body for an event, as a person reads them.

Pure: ``compose`` turns an ``Event`` into a ``Message`` without reading any
clock; the time zone is an argument. The body's first line alone says what
happened and when, in at most ``SMS_CHARS`` characters, because a carrier's
e-mail-to-SMS gateway may cut the rest.
"""

from dataclasses import dataclass
from datetime import datetime, timezone

from appliance.monitor.events import Kind
from appliance.timefmt import format_duration  # noqa: F401  (part of this module's API)

SMS_CHARS = 160
FOOTER = "\u2014 phonehome monitor"


@dataclass(frozen=True)
class Message:
    """One alert as text, ready for any channel.

    ``device``, ``kind`` (an ``events.Kind`` value, or e.g. "test") and ``at``
    (wall-clock epoch seconds, UTC) let channels name files and log lines;
    they default for messages that are not about an event, such as a test alert.
    """

    subject: str
    body: str
    device: str = ""
    kind: str = "message"
    at: float | None = None


def compose(event, *, tz=None):
    """The alert ``Message`` for ``event`` (kind DOWN, REMINDER or UP).

    ``tz`` is a ``zoneinfo.ZoneInfo`` for the times shown; None means the
    local time zone of the host running the monitor. Every time is shown with
    its zone abbreviation, and in UTC in the details.
    Raises ValueError for events that are not alerted (FIRST_SEEN).
    """
    kind = Kind(event.kind)
    if kind not in _COMPOSERS:
        raise ValueError(f"{kind.name} events are not alerted; check event.alerts before composing a message")
    subject, summary, details = _COMPOSERS[kind](event, _Times(event.at, tz))
    lines = [summary, ""]
    if event.reason:
        lines.append(f"Reason: {event.reason}")
    lines += [f"{label}: {value}" for label, value in details]
    lines += ["", FOOTER]
    return Message(subject=subject, body="\n".join(lines) + "\n", device=event.device, kind=kind.value, at=event.at)


class _Times:
    """Formats epoch seconds in one zone, briefly relative to a reference time or in full."""

    def __init__(self, ref, tz):
        self._tz = tz
        self._ref = self._local(ref)

    def _local(self, ts):
        if self._tz is None:
            return datetime.fromtimestamp(ts, timezone.utc).astimezone()
        return datetime.fromtimestamp(ts, self._tz)

    def zoned(self, ts):
        """ "10:55 EST", with the date when it is not the reference's day."""
        return f"{self.short(ts)} {self._local(ts).strftime('%Z')}"

    def short(self, ts):
        """ "10:55"; the date is added on another day, the zone when it differs from the reference's."""
        t = self._local(ts)
        text = f"{t:%H:%M}" if t.date() == self._ref.date() else f"{t:%b} {t.day} {t:%H:%M}"
        if t.tzname() != self._ref.tzname():
            text += f" {t.tzname()}"
        return text

    def full(self, ts):
        """ "Tue 2025-01-14 10:55:00 EST (2025-01-14 15:55:00 UTC)"."""
        utc = datetime.fromtimestamp(ts, timezone.utc)
        return f"{self._local(ts).strftime('%a %Y-%m-%d %H:%M:%S %Z')} ({utc.strftime('%Y-%m-%d %H:%M:%S')} UTC)"


def _outage(event):
    """(start, length in s) of the outage an event belongs to; either may be None."""
    start, length = event.outage_started_at, event.outage_s
    if start is None and length is not None:
        start = event.at - length
    if length is None and start is not None:
        length = event.at - start
    return start, length


def _down(event, times):
    since = event.outage_started_at if event.outage_started_at is not None else event.at
    summary = f"{event.device} is DOWN since {times.zoned(since)}"
    details = [("Down since", times.full(since))]
    if event.last_heard_at is not None:
        summary += (f": no heartbeat for {format_duration(event.at - event.last_heard_at)}"
                    f" (last heard {times.short(event.last_heard_at)})")
        details.append(("Last heard", times.full(event.last_heard_at)))
    return f"DOWN: {event.device}", summary + ".", details


def _reminder(event, times):
    start, length = _outage(event)
    subject = f"REMINDER: {event.device} still down"
    summary = f"{event.device} is still DOWN at {times.zoned(event.at)}"
    details = []
    if length is not None:
        subject += f" ({format_duration(length)})"
        summary += f": down {format_duration(length)}, since {times.short(start)}"
        details.append(("Down since", times.full(start)))
    if event.last_heard_at is not None:
        details.append(("Last heard", times.full(event.last_heard_at)))
    details.append(("Reminder at", times.full(event.at)))
    if length is not None:
        details.append(("Down for", format_duration(length)))
    return subject, summary + ".", details


def _up(event, times):
    start, length = _outage(event)
    subject = f"UP: {event.device}"
    summary = f"{event.device} is UP at {times.zoned(event.at)}"
    details = []
    if length is not None:
        subject += f" after {format_duration(length)}"
        summary += f" after {format_duration(length)} down ({times.short(start)}-{times.short(event.at)})"
        details.append(("Down since", times.full(start)))
    details.append(("Up again", times.full(event.at)))
    if length is not None:
        details.append(("Outage", format_duration(length)))
    return subject, summary + ".", details


_COMPOSERS = {Kind.DOWN: _down, Kind.REMINDER: _reminder, Kind.UP: _up}

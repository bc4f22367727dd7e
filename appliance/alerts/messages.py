"""What an alert says: subject and body for an event, as a person reads them.

Pure: ``compose`` turns an ``Event`` into a ``Message`` without reading any
clock; the time zone is an argument. The body's first line alone says what
happened and when, in at most ``SMS_CHARS`` characters, because a carrier's
e-mail-to-SMS gateway may cut the rest.
"""

from dataclasses import dataclass
from datetime import datetime, timezone

from appliance.monitor.causes import LABELS
from appliance.monitor.events import Kind
from appliance.text import shorten
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


def compose(event, *, tz=None, ack_url=None):
    """The alert ``Message`` for ``event`` (kind DOWN, REMINDER, UP, SITE_DOWN, REBOOT, FLAPPING or STEADY).

    ``tz`` is a ``zoneinfo.ZoneInfo`` for the times shown; None means the
    local time zone of the host running the monitor. Every time is shown with
    its zone abbreviation, and in UTC in the details. An event with a
    ``cause`` carries it as a sentence in its ``reason`` (its times written
    in the monitor's zone when it was recorded); the first line then says it.
    ``ack_url`` is a link that acknowledges the outage, put last (an SMS
    gateway may cut it; the first line never needs it).
    Raises ValueError for events that are not alerted (FIRST_SEEN).
    """
    kind = Kind(event.kind)
    if kind not in _COMPOSERS:
        raise ValueError(f"{kind.name} events are not alerted; check event.alerts before composing a message")
    subject, summary, details = _COMPOSERS[kind](event, Times(event.at, tz))
    # What and when come first, so cutting the end keeps them; the whole sentence is in the lines below.
    lines = [shorten(summary, SMS_CHARS), ""]
    if event.cause:
        lines.append(f"Cause: {LABELS.get(event.cause, event.cause)}")
    if event.reason:
        lines.append(f"Reason: {event.reason}")
    if event.detail:
        lines.append(f"Evidence: {event.detail}")
    lines += [f"{label}: {value}" for label, value in details]
    if ack_url:
        lines += ["", f"Acknowledge (no more reminders about this outage for a while): {ack_url}"]
    lines += ["", FOOTER]
    return Message(subject=subject, body="\n".join(lines) + "\n", device=event.device, kind=kind.value, at=event.at)


class Times:
    """Formats epoch seconds in one zone, briefly relative to a reference time or in full.

    ``tz`` is a ``zoneinfo.ZoneInfo``; None means the host's local zone.
    """

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

    def clock(self, ts):
        """ "10:55:07", with the date and zone added as in ``short``."""
        t = self._local(ts)
        text = f"{t:%H:%M:%S}" if t.date() == self._ref.date() else f"{t:%b} {t.day} {t:%H:%M:%S}"
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
    subject = f"DOWN: {event.device}"
    summary = f"{event.device} is DOWN since {times.zoned(since)}"
    details = [("Down since", times.full(since))]
    if event.cause:
        subject += f" \u2014 {LABELS.get(event.cause, event.cause)}"
        summary += f": {event.reason}"
    elif event.last_heard_at is not None:
        summary += (f": no heartbeat for {format_duration(event.at - event.last_heard_at)}"
                    f" (last heard {times.short(event.last_heard_at)})")
    if event.last_heard_at is not None:
        details.append(("Last heard", times.full(event.last_heard_at)))
    return subject, summary + ".", details


def _site_down(event, times):
    since = event.outage_started_at if event.outage_started_at is not None else event.at
    site = event.site or event.device
    return f"DOWN: site {site}", f"site {site}: {event.reason}.", [("Down since", times.full(since))]


def _reboot(event, times):
    details = [("Heartbeat at", times.full(event.at))]
    if event.last_heard_at is not None:
        details.append(("Heard before", times.full(event.last_heard_at)))
    return f"REBOOT: {event.device}", f"{event.device} {event.reason}", details


def _reminder(event, times):
    start, length = _outage(event)
    if event.cause == "site-outage" and event.site:
        # The site's reminder, sent for one of its devices while all of them are silent.
        subject = f"REMINDER: site {event.site} still down"
        summary = f"site {event.site} is still DOWN at {times.zoned(event.at)}"
        if length is not None:
            subject += f" ({format_duration(length)})"
            summary += f": {event.reason}, down {format_duration(length)}, since {times.short(start)}"
        return subject, summary + ".", _reminder_details(event, times, start, length)
    subject = f"REMINDER: {event.device} still down"
    summary = f"{event.device} is still DOWN at {times.zoned(event.at)}"
    if length is not None:
        subject += f" ({format_duration(length)})"
        summary += f": down {format_duration(length)}, since {times.short(start)}"
    return subject, summary + ".", _reminder_details(event, times, start, length)


def _reminder_details(event, times, start, length):
    details = []
    if length is not None:
        details.append(("Down since", times.full(start)))
    if event.last_heard_at is not None:
        details.append(("Last heard", times.full(event.last_heard_at)))
    details.append(("Reminder at", times.full(event.at)))
    if length is not None:
        details.append(("Down for", format_duration(length)))
    return details


def _up(event, times):
    start, length = _outage(event)
    subject = f"UP: {event.device}"
    summary = f"{event.device} is UP at {times.zoned(event.at)}"
    details = []
    if event.cause:
        # "UP: home \u2014 power cut, 47 min (rebooted 10:48, last heard 10:01)": the cause and its evidence.
        subject += f" \u2014 {event.reason}"
        summary += f" \u2014 {event.reason}"
        if start is not None:
            details.append(("Down since", times.full(start)))
        details.append(("Up again", times.full(event.at)))
        if length is not None:
            details.append(("Silent for", format_duration(length)))
        return subject, summary + ".", details
    if length is not None:
        subject += f" after {format_duration(length)}"
        summary += f" after {format_duration(length)} down ({times.short(start)}-{times.short(event.at)})"
        details.append(("Down since", times.full(start)))
    details.append(("Up again", times.full(event.at)))
    if length is not None:
        details.append(("Outage", format_duration(length)))
    return subject, summary + ".", details


def _flapping(event, times):
    # The reason ("5 state changes in the last hour") and the detail were written when it was recorded.
    state = event.new.value.upper()
    return (f"FLAPPING: {event.device} ({event.reason}, now {state})",
            f"{event.device} is flapping: {event.reason}, now {state}; alerts for it are summarised until it is "
            f"steady.", [("Noticed at", times.full(event.at))])


def _steady(event, times):
    # The reason says since when and how many changes: "steady again since 10:40: 9 changes during 09:02–10:40".
    state = event.new.value.upper()
    details = [("Summary at", times.full(event.at))]
    if event.new.value == "down" and event.outage_started_at is not None:
        details.append(("Down since", times.full(event.outage_started_at)))
    return f"STEADY: {event.device}, now {state}", f"{event.device} {event.reason}, now {state}.", details


def _mass_silence(event, times):
    # "7 of 10 devices silent within a minute — monitor-side or regional problem? monitor connectivity: lost"
    what = event.reason.split(" \u2014 ")[0]
    return f"MASS SILENCE: {what}", f"mass silence: {event.reason}", [("Noticed at", times.full(event.at))]


def _mass_silence_end(event, times):
    start, length = _outage(event)
    subject = "MASS SILENCE OVER" + (f" after {format_duration(length)}" if length is not None else "")
    details = [("Began", times.full(start))] if start is not None else []
    return subject, f"mass silence over: {event.reason}.", details + [("Over", times.full(event.at))]


_COMPOSERS = {Kind.DOWN: _down, Kind.REMINDER: _reminder, Kind.UP: _up, Kind.SITE_DOWN: _site_down,
              Kind.REBOOT: _reboot, Kind.FLAPPING: _flapping, Kind.STEADY: _steady,
              Kind.MASS_SILENCE: _mass_silence, Kind.MASS_SILENCE_END: _mass_silence_end}

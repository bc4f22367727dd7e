"""The dashboard: what the appliance knows of itself, on one page that works without JavaScript.

``index`` shows every fact as HTML (heartbeat targets, clock, network,
peers, setup, uptime, the OLED's picture and the history); ``dashboard.js``
only adds the two charts (from ``history``) and refreshes the picture and
the facts. ``display_png`` is the frame the display shows, or, with no
display, the Status page a display would show now.

The facts are gathered by plain functions of the parts' statuses and the
current time, so tests and the page read the same things.
"""

import datetime
import time
from dataclasses import dataclass

from flask import Blueprint, Response, current_app, jsonify, render_template

from appliance.rootfs import state as rootfs_state
from appliance.timefmt import format_duration

bp = Blueprint("dashboard", __name__)

HISTORY_LIMIT = 50  # rows in the history list
PEER_EVENTS = 50    # events read from the monitor's store for it


def _agent():
    return current_app.extensions["phonehome.agent"]


# -- the facts, as plain functions -----------------------------------------------------------------------

def ago(at, now_wall):
    """'2 min ago', 'just now', or 'never' for None (``at`` and ``now_wall`` in epoch seconds)."""
    if at is None:
        return "never"
    age_s = now_wall - at
    return "just now" if age_s < 1 else f"{format_duration(age_s)} ago"


def clock_text(at):
    """Epoch seconds as this appliance's local date and time, 'YYYY-MM-DD HH:MM'."""
    return datetime.datetime.fromtimestamp(at, datetime.UTC).astimezone().strftime("%Y-%m-%d %H:%M")


def iso(at):
    """Epoch seconds as ISO 8601 in UTC, for <time datetime=…>."""
    return datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat(timespec="seconds")


def ms_text(value_ms):
    """'42 ms', '1.2 s', or '–' for None."""
    if value_ms is None:
        return "–"
    return f"{value_ms:.0f} ms" if value_ms < 1000 else f"{value_ms / 1000:.1f} s"


def unique_labels(labels):
    """``labels`` with repeats numbered ('a', 'a (2)'): two targets on one host must not share a chart line."""
    seen, out = {}, []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


@dataclass(frozen=True)
class TargetCard:
    """One heartbeat target as the page shows it."""

    label: str
    kind: str
    state: str
    last_ok: str
    rtt: str
    last_error: str | None
    failures_in_a_row: int
    day: str  # the last 24 h in a line: beats, median and largest round trip, minutes with failures


def day_summary(points):
    """The 24 h of RttPoints in a line, for people without the chart."""
    rtts = sorted(p.rtt_ms for p in points if p.rtt_ms is not None)
    failed = sum(1 for p in points if p.failures)
    if not rtts and not failed:
        return "no beats in the last 24 h"
    parts = [f"{len(rtts)} minute{'s' if len(rtts) != 1 else ''} with beats"]
    if rtts:
        parts.append(f"median {ms_text(rtts[(len(rtts) - 1) // 2])}, largest {ms_text(rtts[-1])}")
    parts.append(f"{failed} minute{'s' if failed != 1 else ''} with failed sends" if failed else "no failed sends")
    return "; ".join(parts)


def rtt_summary(histories):
    """The chart's 24 h in a line per target, for people without the chart: median and largest round trip."""
    if not histories:
        return "no heartbeat targets"
    parts = []
    for label, h in zip(unique_labels([h.label for h in histories]), histories):
        rtts = sorted(p.rtt_ms for p in h.points if p.rtt_ms is not None)
        parts.append(f"{label}: median {ms_text(rtts[(len(rtts) - 1) // 2])}, largest {ms_text(rtts[-1])}"
                     if rtts else f"{label}: no round trips yet")
    return "; ".join(parts)


def target_cards(statuses, histories, now_wall):
    """A TargetCard per heartbeat target (``statuses``: TargetStatus; ``histories``: TargetHistory; same order)."""
    labels = unique_labels([s.label for s in statuses])
    return [TargetCard(label=label, kind=s.kind, state=s.state, last_ok=ago(s.last_ok_at, now_wall),
                       rtt=ms_text(s.last_rtt_ms), last_error=s.last_error if s.state == "failing" else None,
                       failures_in_a_row=s.consecutive_failures, day=day_summary(h.points if h else ()))
            for label, s, h in zip(labels, statuses, list(histories) + [None] * (len(statuses) - len(histories)))]


@dataclass(frozen=True)
class HistoryItem:
    """One row of the history list: ``at`` epoch seconds, ``state`` a badge class, ``what`` and ``detail`` text."""

    at: float
    kind: str
    state: str
    what: str
    detail: str


def failure_items(histories, now_wall):
    """A HistoryItem per failure window of each target (open ones say so)."""
    items = []
    for label, h in zip(unique_labels([h.label for h in histories]), histories):
        for w in h.windows:
            sends = f"{w.failures} failed send{'s' if w.failures != 1 else ''}"
            if w.to_at is None:
                items.append(HistoryItem(w.from_at, "heartbeat", "failing", f"{label}: heartbeats failing",
                                         f"since {ago(w.from_at, now_wall)}; {sends} so far"))
            else:
                items.append(HistoryItem(w.from_at, "heartbeat", "failing", f"{label}: heartbeats failed",
                                         f"for {format_duration(w.to_at - w.from_at)}, until "
                                         f"{clock_text(w.to_at)}; {sends}"))
    return items


def clock_items(points):
    """A HistoryItem per change of the clock verdict along the offset history (offset points, oldest first).

    The history keeps the worst verdict of each 5-minute slot, so a change
    is placed at the slot where it was first seen.
    """
    items, before = [], None
    for p in points:
        if before is not None and p.verdict != before:
            offset = "" if p.offset_ms is None else f"; offset {p.offset_ms:+.0f} ms"
            items.append(HistoryItem(p.at, "clock", p.verdict, f"clock check: {before} → {p.verdict}",
                                     f"seen at the check of {clock_text(p.at)}{offset}"))
        before = p.verdict
    return items


def peer_items(events):
    """A HistoryItem per event of the monitor inside (appliance.monitor.events.Event)."""
    return [HistoryItem(e.at, "peer", e.new.value, f"{e.device}: {e.kind.value}",
                        e.reason + (f" (outage {format_duration(e.outage_s)})" if e.outage_s else ""))
            for e in events]


def boot_item(snapshot):
    """This boot, as a HistoryItem (a power cut shows as a boot), or None when the uptime is unknown."""
    if snapshot.uptime_s is None:
        return None
    at = snapshot.at - snapshot.uptime_s
    return HistoryItem(at, "boot", "new", "this appliance started", f"booted {ago(at, snapshot.at)}")


def history_items(*groups, limit=HISTORY_LIMIT):
    """Every HistoryItem of ``groups`` (iterables; None entries skipped), newest first, at most ``limit``."""
    items = [item for group in groups for item in group if item is not None]
    return sorted(items, key=lambda i: i.at, reverse=True)[:limit]


def chart_data(histories, offset_points, now_wall, *, zone=None):
    """The charts' JSON: {"now", "zone", "rtt": {label: [[epoch, ms|None], …]},
    "offset": [[epoch, ms|None, verdict], …]}.

    A minute whose sends all failed is [epoch, None], a gap in the line.
    ``now`` is the appliance's wall clock (the charts end there) and ``zone``
    its time zone (None: unknown), so the charts read like the rest of the page.
    """
    labels = unique_labels([h.label for h in histories])
    return {
        "now": round(now_wall),
        "zone": zone,
        "rtt": {label: [[round(p.at), None if p.rtt_ms is None else round(p.rtt_ms, 1)] for p in h.points]
                for label, h in zip(labels, histories)},
        "offset": [[round(p.at), None if p.offset_ms is None else round(p.offset_ms, 1), p.verdict]
                   for p in offset_points],
    }


def display_size(display_config):
    """(width, height) of the picture the display shows, rotation included."""
    swap = display_config.rotate in (90, 270)
    return (display_config.height, display_config.width) if swap else (display_config.width, display_config.height)


# -- reading the parts -------------------------------------------------------------------------------------

def _parts(agent):
    # Each part read once: a reload may swap or stop it meanwhile.
    sender, checker, monitor = agent.sender, agent.time, agent.monitor
    service = getattr(monitor, "service", None)
    return sender, checker, service


def _offset_points(checker):
    return checker.history.points() if checker is not None else ()


def _peer_events(service):
    if service is None:
        return []
    try:
        return service.store.events(limit=PEER_EVENTS)
    except Exception:  # noqa: BLE001 - a closed or broken store must not take the page down
        current_app.logger.exception("could not read the monitor's events for the dashboard")
        return []


# -- the routes ----------------------------------------------------------------------------------------------

@bp.get("/")
def index():
    """The dashboard page: every fact in HTML; the charts and live refresh come from dashboard.js."""
    agent = _agent()
    snapshot = agent.snapshot()
    now_wall = snapshot.at
    sender, checker, service = _parts(agent)
    statuses = sender.status() if sender is not None else ()
    histories = sender.history() if sender is not None else ()
    offsets = _offset_points(checker)
    time_status = checker.status if checker is not None else None
    items = history_items(failure_items(histories, now_wall), clock_items(offsets), peer_items(_peer_events(service)),
                          [boot_item(snapshot)])
    width, height = display_size(agent.config.display)
    return render_template(
        "dashboard.html", title="Dashboard", snapshot=snapshot, now_wall=now_wall,
        targets=target_cards(statuses, histories, now_wall), paused=sender is not None and sender.paused,
        time_status=time_status, checked=ago(time_status.checked_at, now_wall) if time_status else "never",
        peers=[(p, ago(p.last_heard_at, now_wall)) for p in snapshot.peers], monitor_inside=service is not None,
        uptime=format_duration(snapshot.uptime_s) if snapshot.uptime_s is not None else "unknown",
        rtt_day=rtt_summary(histories), offset_week=offset_summary(offsets),
        display_width=width, display_height=height, display_alt=_display_alt(agent, snapshot), history=items,
        has_settings="settings.index" in current_app.view_functions, rootfs=rootfs_state(agent.config_path),
        clock_text=clock_text, iso=iso, ago=lambda at: ago(at, now_wall), offset_text=_offset_text)


def _offset_text(offset_ms):
    from hardware.pages import offset_text

    return offset_text(offset_ms)


def offset_summary(points):
    """The week of offset Points in a line, for people without the chart."""
    known = [abs(p.offset_ms) for p in points if p.offset_ms is not None]
    problems = sum(1 for p in points if p.verdict != "ok")
    if not points:
        return "no clock checks recorded yet"
    checks = f"checks in {len(points)} five-minute slot{'s' if len(points) != 1 else ''}"
    largest = f"largest offset {ms_text(max(known))}" if known else "no server answered"
    return f"{checks}; {largest}; {problems} with a clock problem" if problems else f"{checks}; {largest}; all ok"


def _display_alt(agent, snapshot):
    from hardware.pages import beat_text

    if _display_service(agent) is not None:
        return f"What the display shows now (it turns through its pages). Status: {snapshot.headline}, " \
               f"{beat_text(snapshot)}"
    return f"The Status page a display would show: {snapshot.headline}, {beat_text(snapshot)}"


def _display_service(agent):
    """The running DisplayService, or None (no display configured, or the panel is not running)."""
    display = getattr(agent.panel, "display", None)
    return display if display is not None and display.enabled else None


@bp.get("/display.png")
def display_png():
    """The frame the display shows, as PNG at the display's own size (the page scales it up, pixelated).

    With no display, or before its first frame, the Status page for the
    current snapshot, drawn as the display would draw it.
    """
    from hardware.oled import png_bytes
    from hardware.pages import STATUS, render

    agent = _agent()
    display = _display_service(agent)
    frame = display.frame if display is not None else None  # read once: the display thread replaces it
    if frame is None:
        snapshot = agent.snapshot()
        width, height = display_size(agent.config.display)
        frame = render(STATUS, snapshot, width=width, height=height, now_wall=snapshot.at)
    return Response(png_bytes(frame), mimetype="image/png")


@bp.get("/api/v1/history")
def history():
    """The charts' data as JSON (see ``chart_data``): 24 h of round trips per target, 7 days of clock offsets."""
    agent = _agent()
    sender, checker, _ = _parts(agent)
    histories = sender.history() if sender is not None else ()
    # The appliance's wall clock, not the browser's: the charts end where the appliance's data ends.
    zone = checker.status.system_zone if checker is not None else None
    return jsonify(chart_data(histories, _offset_points(checker), time.time(), zone=zone))

"""The monitor's pages: the device list, a device's page with its outage history, paused alerts.

The list is paginated (``PER_PAGE`` devices), so a page costs the same with
ten devices or ten thousand: the service sorts names, and only the page's
devices become rows. Every form works without JavaScript; bad input gets a
page that says what to fix.
"""

import math
from datetime import datetime, timezone

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from appliance.errors import StoreError
from appliance.monitor.pauses import DURATIONS
from appliance.monitor.views import FILTERS
from appliance.timefmt import format_duration

bp = Blueprint("monitor_pages", __name__)

PER_PAGE = 100
OUTAGES_PER_PAGE = 50
MAX_QUERY = 100
# How each filter reads on the page, in the order shown.
FILTER_LABELS = (("down", "Down"), ("up", "Up"), ("new", "Never seen"), ("paused", "Alerts paused"))


def _service():
    return current_app.extensions["phonehome.monitor"]


def _page_number(value):
    """The ``page`` query argument as a number from 1; aborts 400 saying what to send."""
    if value is None or value == "":
        return 1
    if not value.isascii() or not value.isdigit() or int(value) < 1 or len(value) > 9:
        abort(400, description=f"page must be a whole number from 1 up, got {value[:20]!r}; "
                               f"use the page links under the list")
    return int(value)


def _device_or_404(name):
    try:
        return _service().device(name)
    except KeyError:
        _not_found(name)


def _not_found(name):
    abort(404, description=f"there is no device named {name[:70]!r} on this monitor; it may have been "
                           f"removed from [[monitor.devices]]; pick one from the device list")


@bp.get("/")
def devices():
    """Every device, down first, then by name: PER_PAGE at a time, filtered by ?state= and ?q=."""
    state = request.args.get("state", "").strip().lower() or None
    if state == "all":
        state = None
    if state is not None and state not in FILTERS:
        abort(400, description=f"state must be one of {', '.join(FILTERS)} or empty for all devices, "
                               f"got {state[:20]!r}; use the links above the list")
    query = request.args.get("q", "").strip()
    if len(query) > MAX_QUERY:
        abort(400, description=f"q (the name to search for) must be at most {MAX_QUERY} characters; "
                               f"device names are at most 63")
    page = _page_number(request.args.get("page"))
    service = _service()
    listed = service.device_list(state=state, query=query, offset=(page - 1) * PER_PAGE, limit=PER_PAGE)
    pages = max(1, math.ceil(listed.total / PER_PAGE))
    if page > pages:  # e.g. a link from before devices were removed: the last page is what was meant
        page = pages
        listed = service.device_list(state=state, query=query, offset=(page - 1) * PER_PAGE, limit=PER_PAGE)
    return render_template("monitor/devices.html", listed=listed, state=state, query=query, page=page, pages=pages,
                           filters=FILTER_LABELS, all_count=sum(listed.counts[s] for s in ("up", "down", "new")),
                           first=(page - 1) * PER_PAGE + 1)


@bp.get("/devices/<name>")
def device(name):
    """One device: what the monitor knows of it, its alerts switch and its outages, newest first."""
    return _device_page(name, _device_or_404(name))


def _device_page(name, info, *, errors=None, status=200):
    page = _page_number(request.args.get("page"))
    store = _service().store
    outages = store.outages(device=name, limit=OUTAGES_PER_PAGE, offset=(page - 1) * OUTAGES_PER_PAGE)
    pages = max(1, math.ceil(info["outages_total"] / OUTAGES_PER_PAGE))
    return render_template("monitor/device.html", device=info, outages=outages, page=page, pages=pages,
                           durations=DURATIONS, errors=errors or {}), status


def chosen_duration(form):
    """(seconds or None for "until resumed", label, None) for the form's ``duration`` button, or
    (None, None, what is wrong)."""
    choice = form.get("duration", "")
    known = {value: (seconds, label) for value, seconds, label in DURATIONS}
    if choice not in known:
        problem = (f"must be one of {', '.join(known)}, got {choice[:20]!r}; use the buttons below"
                   if choice else "is missing: choose how long with one of the buttons below")
        return None, None, f"duration {problem}"
    return (*known[choice], None)


@bp.post("/devices/<name>/pause")
def pause(name):
    """Pause the device's alerts for the chosen ``duration`` (1h, 1d, until-resumed)."""
    info = _device_or_404(name)
    seconds, label, problem = chosen_duration(request.form)
    if problem:
        return _device_page(name, info, errors={"duration": problem}, status=400)
    try:
        paused = _service().pause(name, for_s=seconds)
    except KeyError:  # removed by a reload meanwhile
        _not_found(name)
    except StoreError as exc:
        return _device_page(name, info, errors={"form": f"nothing was paused: {exc}"}, status=503)
    until = "until you resume them" if paused.until is None else f"for {label}, until {when(paused.until)}"
    flash(f"Alerts for {name} paused {until}. Outages are still detected and recorded.")
    return redirect(url_for(".device", name=name))


@bp.post("/devices/<name>/resume")
def resume(name):
    """Alert about the device again."""
    info = _device_or_404(name)
    try:
        was_paused = _service().resume(name)
    except KeyError:
        _not_found(name)
    except StoreError as exc:
        return _device_page(name, info, errors={"form": f"the alerts are still paused: {exc}"}, status=503)
    flash(f"Alerts for {name} are on again." if was_paused else f"Alerts for {name} were not paused.")
    return redirect(url_for(".device", name=name))


# -- how values read -------------------------------------------------------

@bp.app_template_filter("when")
def when(epoch_s, *, seconds=False):
    """Epoch seconds as the monitor's local time with its zone: "2026-11-25 14:02 UTC"; "—" for None."""
    if epoch_s is None:
        return "—"
    local = datetime.fromtimestamp(epoch_s, timezone.utc).astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")


@bp.app_template_filter("when_full")
def when_full(epoch_s):
    return when(epoch_s, seconds=True)


@bp.app_template_filter("duration")
def duration(seconds):
    """ "1 h 5 min"; "—" for None."""
    return "—" if seconds is None else format_duration(seconds)


@bp.app_template_filter("offset")
def offset(offset_ms):
    """A clock offset as "+12 ms", "-2.3 s", "+1 h 5 min" (positive: the device's clock is ahead); "—" for None."""
    if offset_ms is None:
        return "—"
    sign = "-" if offset_ms < 0 else "+"
    size = abs(offset_ms)
    if size < 1000:
        return f"{sign}{size:.0f} ms"
    if size < 60_000:
        return f"{sign}{size / 1000:.1f} s"
    return sign + format_duration(size / 1000)


@bp.app_template_global("uptime_s")
def uptime_s(device):
    """The device's uptime now, from its last heartbeat, while it is up; None when it is not known."""
    beat = device.get("last_heartbeat") or {}
    if device["state"] != "up" or beat.get("uptime_s") is None:
        return None
    return beat["uptime_s"] + (device["seconds_since_heartbeat"] or 0.0)


@bp.app_template_global("clock_offset")
def clock_offset(device):
    """(offset in ms, where it comes from) of the device's clock: its own NTP check first, else the monitor's
    estimate from send vs receive time (includes the network delay); (None, "") when neither is known."""
    report = device.get("time") or {}
    if report.get("offset_ms") is not None:
        return report["offset_ms"], "the device's own clock check"
    if device.get("clock_offset_ms") is not None:
        return device["clock_offset_ms"], "the monitor's estimate from send and receive time"
    return None, ""

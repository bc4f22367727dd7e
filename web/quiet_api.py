"""The monitor's JSON API for paused alerts: list, pause and resume devices and sites.

For scripts (and ``phonehome monitor pause``) with ``Authorization: Bearer
<web.api_token>``, or a logged-in browser with its CSRF token (web.security
checks both). Every field is checked, and a bad one is named in the answer:
``{"ok": false, "error": "...", "field": "for_s"}``.
"""

import math

from flask import Blueprint, abort, current_app, jsonify, make_response, request

from appliance.config.validate import MAX_DURATION_S
from appliance.errors import StoreError

bp = Blueprint("quiet_api", __name__)

TARGETS = ("device", "site")
MAX_NAME = 100


def _service():
    return current_app.extensions["phonehome.monitor"]


def _refuse(status, field, message):
    body = {"ok": False, "error": message}
    if field:
        body["field"] = field
    abort(make_response(jsonify(body), status))


def _body(allowed):
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        _refuse(400, None, 'the body must be a JSON object, e.g. {"device": "home", "for_s": 3600} or '
                           '{"site": "home", "for_s": null}')
    for key in body:
        if key not in allowed:
            _refuse(400, str(key)[:40], f"unknown field {str(key)[:40]!r}; send {' or '.join(TARGETS)}"
                                        f"{' and for_s' if 'for_s' in allowed else ''}")
    return body


def _target(body):
    """("device" or "site", name) from the body; refuses a body with neither or both."""
    given = [t for t in TARGETS if t in body]
    if len(given) != 1:
        _refuse(400, "device" if not given else "site",
                "send exactly one of device (a device's name) or site (a site's name)" if not given else
                "send device or site, not both: a pause is of one device or of one site")
    kind = given[0]
    name = body[kind]
    if not isinstance(name, str) or not name.strip():
        _refuse(400, kind, f"{kind} must be a {kind}'s name as a string, got {_show(name)}")
    if len(name) > MAX_NAME:
        _refuse(400, kind, f"{kind} must be at most {MAX_NAME} characters; names are at most 63")
    return kind, name


def _for_s(body):
    if "for_s" not in body:
        _refuse(400, "for_s", "for_s is missing: send the pause's length in seconds, or null for until resumed")
    value = body["for_s"]
    if value is None:
        return None
    if isinstance(value, int) and abs(value) > 2**53:  # isfinite() and :g below raise for one too large for a float
        _refuse(400, "for_s", f"for_s must be a positive number of seconds, at most {MAX_DURATION_S} (31 days), "
                              f"or null for until resumed; got {_show(value)}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        _refuse(400, "for_s", f"for_s must be a positive number of seconds, or null for until resumed, "
                              f"got {_show(value)}")
    if value > MAX_DURATION_S:
        _refuse(400, "for_s", f"for_s must be at most {MAX_DURATION_S} s (31 days), got {value:g}; send null to "
                              f"pause until resumed")
    return float(value)


def _show(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _unknown(kind, name):
    _refuse(404, kind, f"there is no {kind} named {name[:70]!r} on this monitor"
                       + ("; a site is the 'site' of one or more [[monitor.devices]]" if kind == "site" else ""))


@bp.get("/api/v1/pauses")
def pauses():
    """Every pause that lasts now."""
    return jsonify(ok=True, pauses=_service().pauses())


@bp.post("/api/v1/pauses")
def pause():
    """Pause a device's or a site's alerts: {"device" or "site": name, "for_s": seconds or null}."""
    body = _body(TARGETS + ("for_s",))
    kind, name = _target(body)
    for_s = _for_s(body)
    service = _service()
    try:
        made = service.pause(name, for_s=for_s) if kind == "device" else service.pause_site(name, for_s=for_s)
    except KeyError:
        _unknown(kind, name)
    except StoreError as exc:
        _refuse(503, None, f"nothing was paused: {exc}")
    return jsonify(ok=True, pause={kind: name, "paused_at": made.paused_at, "until": made.until})


@bp.post("/api/v1/pauses/resume")
def resume():
    """Alert about a device or a site again: {"device" or "site": name}. ``resumed`` says whether it was paused."""
    kind, name = _target(_body(TARGETS))
    service = _service()
    try:
        was = service.resume(name) if kind == "device" else service.resume_site(name)
    except KeyError:
        _unknown(kind, name)
    except StoreError as exc:
        _refuse(503, None, f"the alerts are still paused: {exc}")
    return jsonify({"ok": True, kind: name, "resumed": was})

"""``GET /api/v1/status``: the appliance's status as JSON, for scripts.

A logged-in session or ``Authorization: Bearer <web.api_token>`` reads it
(see web.security). It holds no secret: targets are named by label and
kind, never by URL or token, and the setup state says only whether the
appliance is claimed, never its setup code.
"""

from flask import Blueprint, current_app, jsonify

from appliance import __version__

bp = Blueprint("status_api", __name__)


@bp.get("/api/v1/status")
def status():
    agent = current_app.extensions["phonehome.agent"]
    sender = agent.sender  # read once: a reload may swap it meanwhile
    targets = sender.status() if sender is not None else ()
    return jsonify(status_document(agent.snapshot(), targets, version=__version__))


def status_document(snapshot, targets, *, version):
    """The JSON-able dict for a status.Snapshot and its heartbeats.TargetStatus tuple. Pure.

    Times are epoch seconds (UTC); durations are seconds, round trips ms.
    """
    s = snapshot
    return {
        "version": version,
        "at": s.at,
        "device": s.device_name,
        "configured": s.configured,
        "headline": s.headline,
        "heartbeat": {"state": s.heartbeat, "last_ok_at": s.last_ok_at, "age_s": s.heartbeat_age_s,
                      "beats_sent": s.beats_sent, "last_error": s.last_error},
        "targets": [_target(t) for t in targets],
        "time": {"verdict": s.time_verdict, "reason": s.time_reason, "offset_ms": s.time_offset_ms,
                 "zone": s.time_zone},
        "network": {"online": s.network.online, "interface": s.network.interface, "ip": s.network.ip,
                    "wifi_ssid": s.network.wifi_ssid, "wifi_signal_dbm": s.network.wifi_signal_dbm},
        "uptime_s": s.uptime_s,
        "peers": [{"name": p.name, "state": p.state, "last_heard_at": p.last_heard_at} for p in s.peers],
        "setup": {"claimed": s.setup.claimed if s.setup is not None else None},
    }


def _target(t):
    # Named fields only: a TargetStatus also holds the URL, which may carry the target's secret.
    return {"label": t.label, "kind": t.kind, "state": t.state, "last_ok_at": t.last_ok_at,
            "last_rtt_ms": None if t.last_rtt_ms is None else round(t.last_rtt_ms, 1),
            "last_error": t.last_error, "consecutive_failures": t.consecutive_failures}

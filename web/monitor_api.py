"""The monitor's HTTP API: heartbeats in, device states and metrics out.

A heartbeat needs only its device's token; the device list and the metrics
need the [web] api_token or a logged-in session (web.security guards both).
"""

from flask import Blueprint, Response, current_app, jsonify, request

from appliance.monitor.metrics import iter_metrics

bp = Blueprint("monitor_api", __name__)


def _service():
    return current_app.extensions["phonehome.monitor"]


@bp.post("/api/v1/heartbeat")
def heartbeat():
    answer = _service().receive(request.get_data(cache=False), request.content_type,
                                request.headers.get("Authorization"))
    return jsonify(answer.body), answer.status


@bp.get("/api/v1/devices")
def devices():
    return jsonify(devices=_service().devices())


@bp.get("/metrics")
def metrics():
    service = _service()
    # Streamed in pieces: with 100,000 devices the text is megabytes (see iter_metrics).
    return Response(iter_metrics(service.metric_rows(), received_total=service.received_total),
                    mimetype="text/plain; version=0.0.4")

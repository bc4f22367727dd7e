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
    # Streamed a page of devices at a time, the same JSON as jsonify(devices=[...]) would make at once.
    return Response(_devices_json(_service().device_pages(), current_app.json), mimetype="application/json")


def _devices_json(pages, provider):
    yield '{"devices": ['
    first = True
    for page in pages:
        if page:
            yield ("" if first else ",") + ",".join(provider.dumps(d) for d in page)
            first = False
    yield "]}\n"


@bp.get("/metrics")
def metrics():
    service = _service()
    # Streamed in pieces: with 100,000 devices the text is megabytes (see iter_metrics).
    return Response(iter_metrics(service.metric_rows(), received_total=service.received_total),
                    mimetype="text/plain; version=0.0.4")

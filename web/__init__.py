"""The web side of phonehome: Flask apps served by waitress."""

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from appliance.monitor.intake import MAX_BODY


def create_monitor_app(service):
    """The monitor's Flask app: heartbeat intake, device list and metrics for ``service``."""
    from web.monitor_api import bp

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.extensions["phonehome.monitor"] = service
    app.register_blueprint(bp)
    _json_errors(app)
    return app


def _json_errors(app):
    """API callers get JSON errors that say what to do, never an HTML page."""

    @app.errorhandler(HTTPException)
    def http_error(exc):
        hints = {
            404: "no such endpoint; the API is under /api/v1/",
            405: f"method not allowed here; use {', '.join(sorted(exc.valid_methods or []))}"
            if getattr(exc, "valid_methods", None) else "method not allowed",
            413: f"body larger than {MAX_BODY // 1024} KiB; a heartbeat is a few hundred bytes",
        }
        return jsonify(ok=False, error=hints.get(exc.code, exc.description)), exc.code

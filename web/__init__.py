"""The web side of phonehome: Flask apps served by waitress.

``create_agent_app`` is the appliance's own page (setup, dashboard,
settings, actions); ``create_monitor_app`` the monitor's heartbeat API. One
blueprint per feature; ``web.security`` guards every route.
"""

from flask import Flask, Response, jsonify, render_template, url_for
from flask.globals import request_ctx
from werkzeug.exceptions import HTTPException

from appliance.monitor.intake import MAX_BODY

# The biggest thing a browser sends the appliance is a config file to restore.
MAX_UPLOAD = 256 * 1024


def create_agent_app(agent, *, reboot=None):
    """The appliance's web page for ``agent`` (an AgentRole). ``reboot()`` reboots the machine."""
    from web import actions, auth, dashboard, security, settings, status_api, wifi

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD
    app.extensions["phonehome.agent"] = agent
    app.extensions["phonehome.reboot"] = reboot
    app.extensions["phonehome.data_dir"] = lambda: agent.config.data_dir
    for blueprint in (auth.bp, actions.bp, status_api.bp, dashboard.bp, settings.bp, wifi.bp):
        app.register_blueprint(blueprint)
    security.install(app, data_dir=agent.config.data_dir, web_settings=lambda: agent.config.web, mode="appliance",
                     hotspot_up=lambda: bool(agent.wifi and agent.wifi.hotspot_up))
    _page_context(app, device_name=lambda: agent.config.device.name or "phonehome")
    _html_errors(app)
    return app


def create_monitor_app(service, *, mode="monitor"):
    """The monitor's Flask app for ``service`` (a MonitorService): heartbeat intake, the device pages, the
    JSON device list and metrics.

    data_dir (the admin password, the session key) and the [web] table (host
    names, api_token) come from ``service.config``, so a reloaded config
    applies at once. ``mode`` "monitor": the password is set with
    ``phonehome monitor set-password``.
    """
    from web import auth, monitor_api, monitor_pages, monitor_self, quiet_api, quiet_pages, security

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY  # a heartbeat or a form: both far smaller
    app.extensions["phonehome.monitor"] = service
    app.extensions["phonehome.data_dir"] = lambda: service.config.data_dir
    for blueprint in (auth.bp, monitor_api.bp, monitor_pages.bp, quiet_api.bp, quiet_pages.bp, monitor_self.bp):
        app.register_blueprint(blueprint)
    security.install(app, data_dir=service.config.data_dir, web_settings=lambda: _monitor_web(service.config),
                     mode=mode)
    _page_context(app, device_name=lambda: service.config.device.name or "monitor")
    _monitor_errors(app)
    return app


def _monitor_web(config):
    """The [web] table the monitor's pages go by: monitor.public_url's host name is one of its names, so the
    acknowledgement links in alerts open."""
    from dataclasses import replace
    from urllib.parse import urlsplit

    web, public_url = config.web, (config.monitor.public_url if config.monitor else "")
    host = urlsplit(public_url).hostname if public_url else None
    if not host or host in web.hostnames:
        return web
    return replace(web, hostnames=(*web.hostnames, host))


# The menu: (endpoint, label), shown when the app has that page.
NAV = (("dashboard.index", "Dashboard"), ("monitor_pages.devices", "Devices"), ("settings.index", "Settings"),
       ("wifi.page", "Wi-Fi"), ("actions.index", "Actions"), ("auth.change_password", "Password"))


def _page_context(app, *, device_name):
    from web.security import logged_in

    @app.context_processor
    def context():
        # No URL adapter when the request's Host could not be parsed: the error page is drawn without a menu.
        usable = request_ctx.url_adapter is not None
        nav = [(url_for(endpoint), label, endpoint) for endpoint, label in NAV
               if usable and endpoint in app.view_functions]
        return {"device_name": device_name(), "logged_in": logged_in(), "nav": nav,
                "mode": app.extensions["phonehome.mode"]}


def _html_errors(app):
    """People get a page that says what to do; scripts under /api/ get JSON."""
    from web.security import wants_json

    hints = {
        404: "there is no such page here; start again from the dashboard",
        405: "this page cannot be used that way; go back and use the page's own buttons",
        413: f"that upload is larger than {MAX_UPLOAD // 1024} KiB; a phonehome config file is a few KiB",
    }

    @app.errorhandler(HTTPException)
    def http_error(exc):
        if request_ctx.url_adapter is None:
            return _unroutable()
        message = hints.get(exc.code, exc.description)
        if wants_json():
            return jsonify(ok=False, error=message), exc.code
        return render_template("error.html", title=exc.name, message=message), exc.code


def _monitor_errors(app):
    """On the monitor, scripts under /api/ and /metrics get JSON errors, never an HTML page; people get a page.

    Both say what to do. A view's own message (``abort(404, description=...)``)
    is kept; werkzeug's generic ones are replaced by hints.
    """
    from web.security import wants_json

    @app.errorhandler(HTTPException)
    def http_error(exc):
        if request_ctx.url_adapter is None:
            return _unroutable()
        own = exc.description if exc.description != type(exc).description else None
        if wants_json():
            hints = {
                404: "no such endpoint; the API is under /api/v1/",
                405: f"method not allowed here; use {', '.join(sorted(exc.valid_methods or []))}"
                if getattr(exc, "valid_methods", None) else "method not allowed",
                413: f"body larger than {MAX_BODY // 1024} KiB; a heartbeat is a few hundred bytes",
            }
            return jsonify(ok=False, error=own or hints.get(exc.code, exc.description)), exc.code
        hints = {
            404: "there is no such page here; start again from the device list",
            405: "this page cannot be used that way; go back and use the page's own buttons",
            413: f"that form is larger than {MAX_BODY // 1024} KiB; go back and send a shorter one",
        }
        message = own or hints.get(exc.code, exc.description)
        return render_template("error.html", title=exc.name, message=message.rstrip(".")), exc.code


def _unroutable():
    """The answer to a request whose Host header cannot be parsed: no page can be drawn for it (nor a menu)."""
    return Response("Bad request: the Host header is not a valid host name; open the page by the appliance's "
                    "name or IP address.\n", status=400, mimetype="text/plain")

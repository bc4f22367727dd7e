"""What keeps a page on the LAN safe: sessions, CSRF, the Host check and the security headers.

Every request needs a logged-in session, except the endpoints in
``PUBLIC`` (login, the claim page, static files) and the token-only
machine endpoints in ``TOKEN_ONLY`` (heartbeat intake). Endpoints in
``TOKEN_OR_SESSION`` (JSON for scripts) also accept ``Authorization:
Bearer <web.api_token>``.

The Host check is the defence against DNS rebinding: a web page a LAN
device opens can make its own name resolve to this appliance's address,
but it cannot make the browser send this appliance's name or address as
the Host header. IP literals are always accepted (a browser that uses the
address is on the appliance's own origin); names must be this machine's
host name, ``localhost`` or one of ``web.hostnames``.

The setup hotspot (``appliance.wifi``) adds two rules, both only for its
own clients (addresses in 10.42.0.0/24) while it is up: a foreign Host
(a phone's captive-portal check; the hotspot's DNS answers every name
with the appliance) is redirected to the Wi-Fi page by address, and on an
appliance nobody has claimed yet the ``HOTSPOT_OPEN`` endpoints need no
session.
"""

import hmac
import ipaddress
import socket
from datetime import timedelta

from flask import current_app, jsonify, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect

from appliance.auth import Passwords, session_key
from appliance.wifi.nmcli import HOTSPOT_ADDRESS, HOTSPOT_NETWORK

# The acknowledgement link of an alert is public on purpose: its token is itself the permission (an HMAC over
# one device's one outage, with an expiry; see appliance.monitor.acks), so whoever got the alert can stop its
# reminders from a phone without logging in. Its GET changes nothing; its POST still needs the page's CSRF token.
PUBLIC = {"static", "auth.login", "auth.setup", "quiet_pages.ack_link", "quiet_pages.ack_link_confirm"}
# The Wi-Fi page of a new appliance that opened its setup hotspot: open while the hotspot is up and nobody has
# claimed it yet, because a person setting up an appliance without a display cannot read the setup code before it
# has a network (only someone within Wi-Fi range can reach it then). Claimed, it needs a login like every page.
HOTSPOT_OPEN = {"wifi.page", "wifi.join"}
TOKEN_ONLY = {"monitor_api.heartbeat"}
TOKEN_OR_SESSION = {"status_api.status", "dashboard.history", "monitor_api.devices", "monitor_api.metrics",
                    "quiet_api.pauses", "quiet_api.pause", "quiet_api.resume"}

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# What is not a page (JSON answers, pictures, scripts) runs nothing and is framed by nobody. The short form
# saves every heartbeat's answer about 230 bytes: a month of them on metered mobile data is about 10 MB.
CSP_NOT_A_PAGE = "default-src 'none'; frame-ancestors 'none'"
SESSION_DAYS = 30


def install(app, *, data_dir, web_settings, mode, hotspot_up=lambda: False):
    """Make ``app`` safe. ``web_settings()`` returns the current config's Web table; ``mode`` is
    "appliance" (claimed with the setup code) or "monitor" (password set from the command line);
    ``hotspot_up()`` says whether the appliance's setup hotspot is open."""
    app.config.update(
        SECRET_KEY=session_key(data_dir),
        SESSION_COOKIE_NAME="phonehome_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=timedelta(days=SESSION_DAYS),
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session: a form left open overnight still works
        WTF_CSRF_SSL_STRICT=False,  # plain http on the LAN: no Referer check (the token does the work)
    )
    app.extensions["phonehome.passwords"] = Passwords(data_dir)
    app.extensions["phonehome.web_settings"] = web_settings
    app.extensions["phonehome.mode"] = mode
    app.extensions["phonehome.hotspot_up"] = hotspot_up
    app.before_request(_guard)  # before the CSRF check: a stranger is sent to log in, not told about tokens
    csrf = CSRFProtect(app)
    # TOKEN_OR_SESSION views are checked by _guard instead: a script's POST with the API token has no CSRF token.
    for endpoint in TOKEN_ONLY | TOKEN_OR_SESSION:
        view = app.view_functions.get(endpoint)
        if view is not None:
            csrf.exempt(view)
    app.after_request(_headers)
    app.register_error_handler(CSRFError, _csrf_error)


def passwords():
    return current_app.extensions["phonehome.passwords"]


def logged_in():
    generation = passwords().generation
    return generation is not None and session.get("auth") == generation


def log_in():
    session.clear()
    session.permanent = True
    session["auth"] = passwords().generation


def log_out():
    session.clear()


def client_key():
    """Who is asking, for rate limits: the peer's address (waitress sets it; no proxy headers are trusted)."""
    return request.remote_addr or "?"


def wants_json():
    return request.path.startswith("/api/") or request.path == "/metrics"


def _guard():
    endpoint = request.endpoint
    if endpoint in TOKEN_ONLY:
        return None
    if endpoint in TOKEN_OR_SESSION and request.headers.get("Authorization"):
        # No CSRF check with the API token: a browser never adds a Bearer token to a request another site makes
        # it send (only remembered HTTP Basic logins, which _token_ok refuses), so this request is a script's own.
        return None if _token_ok() else _refuse(401, "wrong or missing API token: send 'Authorization: Bearer "
                                                     "<web.api_token>' from the config, or log in")
    hotspot = through_hotspot()
    if not host_allowed(request.host, current_app.extensions["phonehome.web_settings"]()):
        if hotspot:
            # A phone's captive-portal check (any name resolves here while the hotspot is up): send it to the
            # Wi-Fi page by address. A redirect serves none of this page's content to the foreign name.
            port = request.environ.get("SERVER_PORT", "80")
            return redirect(f"http://{HOTSPOT_ADDRESS}{'' if port == '80' else ':' + port}/wifi", 302)
        return _refuse(421, f"this page does not answer to the name {_host_name(request.host)!r}; open it by the "
                            f"appliance's own name or IP address, or add the name to web.hostnames")
    if endpoint in PUBLIC or endpoint is None:  # None: no such page, the 404 handler answers
        return None
    if endpoint in HOTSPOT_OPEN and hotspot and not passwords().is_set:
        return None
    if logged_in():
        if endpoint in TOKEN_OR_SESSION:  # exempted from the automatic check (see install): a browser's is checked
            current_app.extensions["csrf"].protect()
        return None
    if wants_json():
        return _refuse(401, "log in first, or send 'Authorization: Bearer <web.api_token>'")
    mode = current_app.extensions["phonehome.mode"]
    if mode == "appliance" and not passwords().is_set:
        # Through the hotspot, http://10.42.0.1/ leads to the Wi-Fi page: the appliance needs a network first.
        return redirect(url_for("wifi.page" if hotspot and "wifi.page" in current_app.view_functions
                                else "auth.setup"))
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def through_hotspot():
    """True when the setup hotspot is up and this request came from one of its clients."""
    if not current_app.extensions["phonehome.hotspot_up"]():
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "") in HOTSPOT_NETWORK
    except ValueError:
        return False


def _token_ok():
    token = current_app.extensions["phonehome.web_settings"]().api_token
    sent = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())


def _refuse(status, message):
    if wants_json():
        return jsonify(ok=False, error=message), status
    return render_template("error.html", title="Refused", message=message), status


def _csrf_error(exc):
    return _refuse(400, "this form expired or did not come from this appliance's own page "
                        "(CSRF check failed); reload the page and send it again")


def _host_name(host):
    host = host.strip()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def host_allowed(host, web):
    """True when ``host`` (a Host header, maybe with a port) names this machine. See the module's doc."""
    name = _host_name(host).lower()
    name = name[:-1] if name.endswith(".") else name  # one trailing dot is the fully qualified form
    if not name or any(not label for label in name.split(".")):
        return False
    try:
        ipaddress.ip_address(name.split("%")[0])
        return True
    except ValueError:
        pass
    own = socket.gethostname().lower()
    allowed = {"localhost", own, f"{own}.local", *(h.rstrip(".").lower() for h in web.hostnames)}
    return name in allowed


def _headers(response):
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
    else:
        response.headers.setdefault("Content-Security-Policy", CSP_NOT_A_PAGE)
    if request.endpoint != "static":
        # Pages show live state and secrets' masks: never from a cache.
        response.headers.setdefault("Cache-Control", "no-store")
    return response

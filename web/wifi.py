"""The Wi-Fi page: the networks in range, the current connection, and a form that joins a network.

It is how a new appliance without a network gets one: it opens the hotspot phonehome-XXXX, a phone joins it,
the phone's captive-portal check lands here (see web.security), and the person picks their network. While the
hotspot is up and the appliance is not yet claimed, this page needs no login (see web.security.HOTSPOT_OPEN):
someone setting up an appliance without a display cannot read the setup code yet.
"""

from flask import Blueprint, current_app, render_template, request

from appliance.wifi import HOTSPOT_ADDRESS, WifiError

bp = Blueprint("wifi", __name__)

PASSWORD_HELP = "8 to 63 characters; leave it empty for an open network"


def _manager():
    return current_app.extensions["phonehome.agent"].wifi


def check_join(form):
    """(ssid, password, errors by field): the join form validated."""
    ssid = (form.get("ssid_typed") or form.get("ssid") or "").strip()
    password = form.get("password", "")
    errors = {}
    if not ssid:
        errors["ssid"] = "choose a network from the list or type its name"
    elif len(ssid.encode()) > 32:
        errors["ssid"] = f"a Wi-Fi network name is at most 32 bytes, got {len(ssid.encode())}"
    if password and not 8 <= len(password) <= 63:
        errors["password"] = f"must be {PASSWORD_HELP}, got {len(password)} characters"
    return ssid, password, errors


def _page(*, errors=None, status=200, joining=None):
    manager = _manager()
    networks, scan_error = [], None
    if manager is not None:
        manager.page_used()
        try:
            networks = manager.scan()
        except WifiError as exc:
            scan_error = str(exc)
    return render_template("wifi.html", manager=manager, networks=networks, scan_error=scan_error,
                           errors=errors or {}, joining=joining, hotspot_address=HOTSPOT_ADDRESS,
                           password_help=PASSWORD_HELP), status


@bp.get("/wifi")
def page():
    return _page()


@bp.post("/wifi")
def join():
    manager = _manager()
    if manager is None:
        return _page(errors={"form": "Wi-Fi is not available on this appliance"}, status=400)
    ssid, password, errors = check_join(request.form)
    if errors:
        return _page(errors=errors, status=400)
    manager.join(ssid, password)
    return _page(joining=ssid)

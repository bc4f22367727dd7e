"""The Wi-Fi page: the networks in range, the current connection, and a form that joins a network.

It is how a new appliance without a network gets one: it opens the hotspot phonehome-XXXX, a phone joins
it, the phone's captive-portal check lands here (see web.security), and the person picks their network.
While the hotspot is up and nobody has claimed the appliance, this page needs no login (see
web.security.HOTSPOT_OPEN): someone setting up an appliance without a display cannot read the setup code.

The join runs in the background and a moment after the answer is sent: the radio leaves the hotspot to
join, so the phone that asked loses its connection. The page says so, and shows the outcome once it is
known (to whoever can still reach it: on the new network, by cable, or on the hotspot if it reopened).
"""

import time

from flask import Blueprint, current_app, render_template, request

from appliance.setup import SETUP_URL
from appliance.wifi import HOTSPOT_ADDRESS, WifiError
from web.security import passwords, through_hotspot

bp = Blueprint("wifi", __name__)

JOIN_DELAY_S = 1.0  # the answer leaves before the hotspot closes for the join
REFRESH_S = 5  # the page reloads itself this often while a join runs
HOME_URL = "http://phonehome.local/"


def _manager():
    return current_app.extensions["phonehome.agent"].wifi


def check_join(form, networks):
    """(ssid, passphrase, errors by form field) for the join form; ``networks`` are those in range.

    The network is chosen from the list (``ssid``) or typed (``other_ssid``, for a hidden one). A known
    network's security is checked against the passphrase given.
    """
    chosen, typed, passphrase = form.get("ssid", ""), form.get("other_ssid", ""), form.get("passphrase", "")
    errors = {}
    if chosen and typed and chosen != typed:
        errors["other_ssid"] = (f"you chose '{chosen}' in the list and typed '{typed}' here; clear this field, "
                                f"or choose 'Another network' in the list")
    ssid = typed or chosen
    size = len(ssid.encode("utf-8"))
    if not ssid:
        errors["ssid"] = "choose a network from the list, or type its name under 'Another network'"
    elif size > 32:
        errors["other_ssid" if typed else "ssid"] = (f"a Wi-Fi network's name is 1 to 32 bytes, this one is {size} "
                                                     f"(letters beyond A-Z take 2 to 4 bytes each); check it")
    elif any(ord(c) < 32 or ord(c) == 127 for c in ssid):
        errors["other_ssid" if typed else "ssid"] = "must not contain control characters (line breaks, tabs)"
    if passphrase and not (8 <= len(passphrase) and len(passphrase.encode("utf-8")) <= 63):
        errors["passphrase"] = (f"a WPA passphrase is 8 to 63 characters, got {len(passphrase)}; leave it empty "
                                f"for an open network")
    seen = next((n for n in networks if n.ssid == ssid), None)
    if seen is not None and "passphrase" not in errors:
        if seen.secured and not passphrase:
            errors["passphrase"] = f"'{ssid}' is protected ({seen.security}): enter its passphrase"
        elif not seen.secured and passphrase:
            errors["passphrase"] = f"'{ssid}' is an open network: leave the passphrase empty"
    return ssid, passphrase, errors


def _page(*, errors=None, status=200, form=None):
    manager = _manager()
    context = {"manager": manager, "errors": errors or {}, "form": form or {}, "home_url": HOME_URL,
               "setup_url": SETUP_URL, "hotspot_url": f"http://{HOTSPOT_ADDRESS}/wifi",
               "hotspot_address": HOTSPOT_ADDRESS, "refresh_s": None, "via_hotspot": through_hotspot(),
               "claimed": passwords().is_set, "networks": [], "networks_at": None, "scan_error": ""}
    if manager is not None:
        manager.page_used()
        networks, at, scan_error = manager.networks_in_range()
        context.update(networks=networks, scan_error=scan_error, view=manager.view, ssid=manager.ssid,
                       networks_at=time.strftime("%H:%M", time.localtime(at)) if at else None,
                       refresh_s=REFRESH_S if manager.joining else None)
    return render_template("wifi.html", title="Wi-Fi", **context), status


@bp.get("/wifi")
def page():
    """The networks in range, the connection now, the outcome of the last join, and the join form."""
    return _page()


@bp.post("/wifi")
def join():
    """Join the chosen network; 400 with the reason next to the field when the form is not right."""
    manager = _manager()
    form = {"ssid": request.form.get("ssid", ""), "other_ssid": request.form.get("other_ssid", "")}
    if manager is None:
        return _page(errors={"form": "Wi-Fi is not managed here (the agent's Wi-Fi part is not running)"},
                     status=400, form=form)
    ssid, passphrase, errors = check_join(request.form, manager.networks)
    if errors:
        return _page(errors=errors, status=400, form=form)
    if manager.view.problem:
        return _page(errors={"form": f"cannot join now: {manager.view.problem}"}, status=400, form=form)
    try:
        manager.join(ssid, passphrase, delay_s=JOIN_DELAY_S)
    except WifiError as exc:
        return _page(errors={"form": str(exc)}, status=400, form=form)
    return _page()

"""The monitor's pages for quieting alerts: a site's page with its pause switch, acknowledging an outage.

An outage is acknowledged from its device's page (logged in), or from the
link in a DOWN or REMINDER alert: ``/ack/<token>`` works without a login
because the token is itself the permission (see ``appliance.monitor.acks``).
Its GET only shows what the link would do, with a button; only the POST,
with the page's CSRF token, acknowledges, because mail scanners and link
previews fetch links in mail by themselves.
"""

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from appliance.config.schema import Monitor
from appliance.errors import AckError, StoreError
from appliance.monitor.pauses import DURATIONS
from web.monitor_pages import _device_or_404, _device_page, _not_found, chosen_duration, when

bp = Blueprint("quiet_pages", __name__)


def _service():
    return current_app.extensions["phonehome.monitor"]


@bp.app_context_processor
def _context():
    settings = _service().config.monitor or Monitor()
    return {"ack_duration_s": settings.ack_duration_s, "flap_quiet_s": settings.flap_quiet_s}


# More sites than this are not listed on the device list (each device's page links its own).
MAX_SITE_LINKS = 100


@bp.app_template_global("site_links")
def site_links():
    """([(site, paused)] of the first MAX_SITE_LINKS sites by name, how many more there are), for the device list."""
    sites = _service().site_names()
    return sites[:MAX_SITE_LINKS], max(0, len(sites) - MAX_SITE_LINKS)


# -- sites -------------------------------------------------------------------


def _site_or_404(name):
    try:
        return _service().site(name)
    except KeyError:
        abort(404, description=f"there is no site named {name[:70]!r} on this monitor; a site is the 'site' "
                               f"of one or more [[monitor.devices]]; pick one from the device list")


def _site_page(site, *, errors=None, status=200):
    return render_template("monitor/site.html", site=site, durations=DURATIONS, errors=errors or {}), status


@bp.get("/sites/<name>")
def site(name):
    """A site: its devices and its pause switch (for all of them and the site's own alert)."""
    return _site_page(_site_or_404(name))


@bp.post("/sites/<name>/pause")
def pause_site(name):
    """Pause the site's alerts for the chosen ``duration`` (1h, 1d, until-resumed)."""
    site = _site_or_404(name)
    seconds, label, problem = chosen_duration(request.form)
    if problem:
        return _site_page(site, errors={"duration": problem}, status=400)
    try:
        paused = _service().pause_site(name, for_s=seconds)
    except KeyError:
        _site_or_404(name)
    except StoreError as exc:
        return _site_page(site, errors={"form": f"nothing was paused: {exc}"}, status=503)
    until = "until you resume them" if paused.until is None else f"for {label}, until {when(paused.until)}"
    flash(f"Alerts for site {name} and its devices paused {until}. Outages are still detected and recorded.")
    return redirect(url_for(".site", name=name))


@bp.post("/sites/<name>/resume")
def resume_site(name):
    """Alert about the site and its devices again."""
    site = _site_or_404(name)
    try:
        was = _service().resume_site(name)
    except KeyError:
        _site_or_404(name)
    except StoreError as exc:
        return _site_page(site, errors={"form": f"the alerts are still paused: {exc}"}, status=503)
    flash(f"Alerts for site {name} are on again." if was else f"Alerts for site {name} were not paused.")
    return redirect(url_for(".site", name=name))


# -- acknowledging -------------------------------------------------------------


@bp.post("/devices/<name>/ack")
def acknowledge(name):
    """Acknowledge the device's outage for monitor.ack_duration_s: no reminders until then."""
    info = _device_or_404(name)
    try:
        ack = _service().acknowledge(name, by="dashboard")
    except KeyError:
        _not_found(name)
    except AckError as exc:
        return _device_page(name, info, errors={"ack": f"nothing was acknowledged: {exc}"}, status=409)
    except StoreError as exc:
        return _device_page(name, info, errors={"ack": f"nothing was acknowledged: {exc}"}, status=503)
    flash(f"Outage of {name} acknowledged: no reminders until {when(ack.until)}. You are still told when it is "
          f"back.")
    return redirect(url_for("monitor_pages.device", name=name))


def _link_or_refuse(token):
    """The AckLink of ``token``, or a page that says why the link does not work (400 forged, 410 expired)."""
    try:
        return _service().read_ack_link(token)
    except AckError as exc:
        status = 410 if exc.reason == "expired" else 400
        abort(_ack_page(None, None, None, None, problem=str(exc), status=status))


def _ack_page(link, device, outage, ack, *, problem=None, status=200):
    return current_app.make_response((render_template("monitor/ack.html", link=link, device=device, outage=outage,
                                                      ack=ack, problem=problem, token=request.view_args["token"]),
                                      status))


def _link_facts(link):
    service = _service()
    try:
        device = service.device(link.device)
    except KeyError:
        abort(_ack_page(link, None, None, None, status=404,
                        problem=f"there is no device named {link.device!r} on this monitor any more"))
    return device, service.store.outage(link.outage_id), service.store.ack_of_outage(link.outage_id)


@bp.get("/ack/<token>")
def ack_link(token):
    """What the link acknowledges, and a button that does it. Changes nothing."""
    link = _link_or_refuse(token)
    device, outage, ack = _link_facts(link)
    return _ack_page(link, device, outage, ack)


@bp.post("/ack/<token>")
def ack_link_confirm(token):
    """Acknowledge the link's outage (the page's button; the CSRF token is checked before this runs)."""
    link = _link_or_refuse(token)
    try:
        ack = _service().acknowledge(link.device, outage_id=link.outage_id, by="link")
    except KeyError:
        device = None
        abort(_ack_page(link, device, None, None, status=404,
                        problem=f"there is no device named {link.device!r} on this monitor any more"))
    except AckError as exc:
        device, outage, ack = _link_facts(link)
        return _ack_page(link, device, outage, ack, problem=f"nothing was acknowledged: {exc}", status=409)
    except StoreError as exc:
        device, outage, ack = _link_facts(link)
        return _ack_page(link, device, outage, ack, problem=f"nothing was acknowledged: {exc}", status=503)
    flash(f"Outage of {link.device} acknowledged: no reminders until {when(ack.until)}. You are still told when "
          f"it is back.")
    return redirect(url_for(".ack_link", token=token))

"""The Settings pages: a form for every part of the config, validated by the one schema.

Every POST starts from the running config's table, changes one part and
validates the whole through ``appliance.config``, so a form accepts exactly
what the config file does. A rejected form writes nothing and shows each
problem next to its field; an accepted one is saved atomically, the agent
applies it at once (no reboot) and the page says since when it is in effect.
``data_dir`` has no form: moved from a browser, it would leave the history
and state behind.
"""

import functools
import os
import threading
import time

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from appliance.config import config_from_table, save_config
from appliance.config.secrets import masked
from appliance.config.validate import to_table
from appliance.errors import ConfigError
from appliance.rootfs import state as rootfs_state
from web.settings_forms import place, scrub, secret_values, shown_number
from web.settings_items import PeerDeviceForm, RemoveItem, TargetForm, entry_key
from web.settings_sections import CHOICES, SECTIONS

bp = Blueprint("settings", __name__)
bp.add_app_template_filter(entry_key, "entry_key")

FORM_PAGES = "device, heartbeat, time, display, pins, peers, alerts, web, system"
_GONE = "that entry is no longer in the settings (changed in another window?); open the list again and pick it anew"


def _agent():
    return current_app.extensions["phonehome.agent"]


def _save_lock():
    # One save at a time: each starts from the running config, so two at once would undo each other.
    return current_app.extensions.setdefault("phonehome.settings_lock", threading.Lock())


@bp.context_processor
def _helpers():
    return {"num": shown_number}


@functools.lru_cache(maxsize=1)
def time_zones():
    """The IANA zone names this machine knows, sorted (for the time zone's list of suggestions)."""
    import zoneinfo  # here, not at the top: most of the agent's life passes without the settings page

    return sorted(zoneinfo.available_timezones())


@bp.get("/settings")
def index():
    """The overview: each part of the config with a line on its current values."""
    agent = _agent()
    config = agent.config
    sections = [(s, s.summary(config)) for s in SECTIONS.values()]
    return render_template("settings/index.html", title="Settings", sections=sections, config=config,
                           config_path=agent.config_path)


@bp.route(f"/settings/<any({FORM_PAGES}):name>", methods=["GET", "POST"])
def section(name):
    """The page of one part of the config (FORM_PAGES): its form, filled in; POST saves it."""
    config = _agent().config
    context = {"zones": time_zones()} if name == "time" else {}
    if name == "system":
        context["rootfs"] = rootfs_state(_agent().config_path)
    if name == "peers":
        context["devices"] = _listed(config.monitor.devices if config.monitor else ())
    response = current_app.make_response(
        _form_page(SECTIONS[name], f"settings/{name}.html", done=url_for("settings.section", name=name), **context))
    agent = _agent()
    if response.status_code == 302 and name == "peers" and agent.config.monitor is not None and agent.monitor is None:
        # The agent keeps phoning home when its monitor cannot start, and reports the reload as done.
        flash(f"The peer watchdog is not running: it could not start on {agent.config.monitor.listen} (is the port "
              f"in use?). Choose another address; the service log says more.")
    if response.status_code == 302 and name == "web" and agent.config.web.listen != config.web.listen:
        return _moved(agent.config.web.listen)
    return response


@bp.get("/settings/targets")
def targets():
    """The heartbeat targets, each with what may be shown of its URL, and links to edit or remove it."""
    config = _agent().config
    return render_template("settings/targets.html", title="Heartbeat targets",
                           targets=_listed(config.heartbeat.targets), config=config)


@bp.route("/settings/targets/new", methods=["GET", "POST"])
def target_new():
    """Add a heartbeat target."""
    return _form_page(TargetForm(), "settings/target.html", done=url_for("settings.targets"))


@bp.route("/settings/targets/<int:index>", methods=["GET", "POST"])
def target(index):
    """Edit heartbeat target ``index`` (as in heartbeat.targets[index])."""
    if index >= len(_agent().config.heartbeat.targets):
        return _missing(f"there is no heartbeat target number {index}; pick one from the list under Settings, "
                        f"Heartbeat targets")
    return _form_page(TargetForm(index), "settings/target.html", done=url_for("settings.targets"))


@bp.post("/settings/targets/<int:index>/remove")
def target_remove(index):
    """Remove heartbeat target ``index``."""
    if index >= len(_agent().config.heartbeat.targets):
        return _missing(f"there is no heartbeat target number {index} to remove; it may be gone already")
    return _remove(("heartbeat", "targets"), index, done=url_for("settings.targets"))


@bp.route("/settings/peers/devices/new", methods=["GET", "POST"])
def peer_new():
    """Add a device for the peer watchdog to watch."""
    if _agent().config.monitor is None:
        return _missing("the peer watchdog is off; turn it on under Settings, Peer watchdog, then add devices")
    return _form_page(PeerDeviceForm(), "settings/peer.html", done=url_for("settings.section", name="peers"))


@bp.route("/settings/peers/devices/<int:index>", methods=["GET", "POST"])
def peer(index):
    """Edit watched device ``index`` (as in monitor.devices[index])."""
    if index >= len(_peer_devices()):
        return _missing(f"there is no watched device number {index}; pick one from the list under Settings, "
                        f"Peer watchdog")
    return _form_page(PeerDeviceForm(index), "settings/peer.html", done=url_for("settings.section", name="peers"))


@bp.post("/settings/peers/devices/<int:index>/remove")
def peer_remove(index):
    """Stop watching device ``index``."""
    if index >= len(_peer_devices()):
        return _missing(f"there is no watched device number {index} to remove; it may be gone already")
    return _remove(("monitor", "devices"), index, done=url_for("settings.section", name="peers"))


def _remove(path, index, *, done):
    errors, _ = _save(RemoveItem(path, index), request.form)
    if errors:  # only when the list changed meanwhile: the list page shows it as it is now
        flash(f"Nothing was removed: {'; '.join(errors.values())}")
    return redirect(done)


def _peer_devices():
    monitor = _agent().config.monitor
    return monitor.devices if monitor is not None else ()


def _listed(items):
    """(index, item, masked URL or "") for a list page: what may be shown of each entry."""
    return [(i, item, masked(getattr(item, "url", ""))) for i, item in enumerate(items)]


def _form_page(form, template, *, done, **context):
    """GET shows ``form`` filled from the running config; POST saves it and goes to ``done``, or shows why not."""
    config = _agent().config
    errors, status = {}, 200
    values = form.values(config)
    if request.method == "POST":
        errors, status = _save(form, request.form)
        if not errors:
            return redirect(done)
        config = _agent().config
        values = form.typed(request.form, config)
    return render_template(template, title=form.title, form=form, values=values, errors=errors,
                           placeholders=form.placeholders(config), choices=CHOICES, config=config,
                           **context), status


def _save(form, sent):
    """Apply ``sent`` (the POSTed fields) through ``form`` and the schema, save and apply the result.

    Returns ({}, 200) when saved (a flashed message says when it took effect),
    else ({field: what to do}, HTTP status); nothing is written then.
    """
    agent = _agent()
    if not agent.config_path:
        return {"form": "this agent runs without a config file, so nothing can be saved; start it with "
                        "--config FILE"}, 409
    with _save_lock():
        config = agent.config
        stale = form.stale(config, sent)
        if stale:
            return {"form": stale}, 409
        secrets = secret_values(config) | {sent.get(name, "") for name in form.secret}
        errors, new = _validated(form, sent, config, secrets)
        if errors:
            return errors, 400
        try:
            form.before_save(sent, config)
            save_config(agent.config_path, new)
        except OSError as exc:
            return {"form": f"could not write {exc.filename or agent.config_path} ({exc.strerror}); check that "
                            f"phonehome may write there, then send the form again"}, 500
        applied = agent.reload_now()
    flash(_applied_message(applied, secrets))
    return {}, 200


def _validated(form, sent, config, secrets):
    """({field: message}, None) for a rejected form, ({}, the new Config) for an accepted one."""
    table = to_table(config)
    errors = {}
    try:
        form.apply(table, sent, config, errors)
    except (IndexError, KeyError):  # the list (or the [monitor] table) changed since the page was loaded
        return {"form": _GONE}, None
    base_dir = os.path.dirname(os.path.abspath(_agent().config_path))
    try:
        new = config_from_table(table, source="the form", base_dir=base_dir)
    except ConfigError as exc:
        placed = place(exc.problems, form.fields, hook=lambda path, message: form.hook(path, message, sent),
                       secrets=secrets)
        for name, message in placed.items():
            errors.setdefault(name, message)  # a field that could not be read keeps that reason
        return errors, None
    return errors, (None if errors else new)


def _applied_message(applied, secrets):
    if applied is None:
        return "Saved; the agent has not applied it yet, it will within a few seconds."
    if not applied.ok:
        return (f"Saved, but the agent could not apply all of it: {scrub(applied.error, secrets)} "
                f"(the service log says more)")
    return f"Saved. In effect since {time.strftime('%H:%M:%S', time.localtime(applied.at))}."


def _missing(message):
    return render_template("error.html", title="Not found", message=message), 404


def _moved(listen):
    """The page after web.listen changed: this address stops answering in a moment, so say where to go."""
    host = request.host
    host = host[:host.index("]") + 1] if host.startswith("[") else host.partition(":")[0]
    port = listen.rpartition(":")[2] if listen else ""
    return render_template("settings/moved.html", title="Web page moved", listen=listen,
                           url=f"http://{host}:{port}/settings/web" if port else ""), 200

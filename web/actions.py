"""The Actions page: things to do now, each answered on the page itself.

Test a heartbeat, check the clock, send a test alert, restart the agent,
reboot, download or restore the config file, factory reset. Every action is
a plain form (no JavaScript); its outcome is rendered straight into the
Actions page. An action answers 200 whatever its outcome (a failed
heartbeat is a result, and so is "nothing to test: set the targets first");
a form that was refused (no confirmation, a bad config file) answers 400
and nothing was done.
"""

import io
import logging
import os
import threading
import time
import tomllib

import tomli_w
from flask import Blueprint, current_app, flash, redirect, render_template, request, send_file, url_for

from appliance.atomic import write_atomic
from appliance.config import parse_config
from appliance.config.secrets import is_masked, masked, masked_paths, masked_table
from appliance.errors import ConfigError, DeliveryError
from appliance.reset import factory_reset as reset_to_first_boot
from appliance.timecheck.report import server_rows, zone_line
from web.security import client_key, log_out

log = logging.getLogger("phonehome.web")

bp = Blueprint("actions", __name__)

# The restart waits this long so the page saying "restarting" reaches the browser before the web server stops.
RESTART_DELAY_S = 1.0
RESTART_REFRESH_S = 5
REBOOT_REFRESH_S = 90
MASKED_HINT = "this file was downloaded with secrets hidden; download it with secrets or type them in"


def _agent():
    return current_app.extensions["phonehome.agent"]


def _settings(section):
    """Where to fix a setting, for messages: "Settings → Targets"."""
    return f"Settings → {section}"


def _clock_time(epoch_s):
    """Wall-clock epoch seconds as the appliance's local time, for people."""
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(epoch_s))


def _page(*, result=None, errors=None, status=200):
    """The Actions page, with ``result`` (a dict with a ``kind``) at the top and form ``errors`` by field."""
    agent = _agent()
    config = agent.config
    facts = {
        "targets": len(config.heartbeat.targets) if agent.sender is not None else 0,
        "channels": _channel_count(config),
        "can_restart": agent.control is not None,
        "can_reboot": current_app.extensions.get("phonehome.reboot") is not None,
        "settings_url": url_for("settings.index") if "settings.index" in current_app.view_functions else None,
    }
    return render_template("actions/index.html", title="Actions", result=result, errors=errors or {},
                           facts=facts), status


def _channel_count(config):
    alerts = config.alerts
    return (alerts.email is not None) + len(set(alerts.urls)) + bool(alerts.outbox_dir)


def _message(text, *, ok, status=200, errors=None):
    return _page(result={"kind": "message", "ok": ok, "text": text}, errors=errors, status=status)


@bp.get("/actions")
def index():
    return _page()


# --- heartbeat ---------------------------------------------------------------------------------------------------

@bp.post("/actions/heartbeat")
def heartbeat():
    """Send one heartbeat to every target now; show each target's answer."""
    sender = _agent().sender  # read once: a reload may swap it meanwhile
    if sender is None:
        return _message(f"No heartbeat is sent yet: set the device name and at least one target in "
                        f"{_settings('Targets')}, then try again.", ok=False)
    statuses, attempts = sender.status(), sender.beat_now()
    rows = [_heartbeat_row(status, attempt) for status, attempt in zip(statuses, attempts)]
    return _page(result={"kind": "heartbeat", "rows": rows, "ok": all(r["ok"] for r in rows)})


def _heartbeat_row(status, attempt):
    result = attempt.result
    return {
        "label": status.label, "kind": status.kind, "url": masked(status.url), "ok": attempt.ok,
        "http": result.status if result is not None else None,
        "rtt_ms": round(result.rtt_ms) if result is not None else None,
        "error": attempt.error or "",
    }


# --- clock -------------------------------------------------------------------------------------------------------

@bp.post("/actions/time")
def check_time():
    """Check the clock against the [time] servers and the time service now; show the verdict."""
    checker = _agent().time
    if checker is None:
        return _message("The clock check is not running (it could not start; the service log says why). "
                        "Restart the agent below to try again.", ok=False)
    status = checker.check_now()  # bounded by time.timeout_s
    return _page(result={
        "kind": "time", "verdict": status.verdict, "reason": status.reason,
        "offset": "unknown" if status.offset_ms is None else f"{status.offset_ms:+.1f} ms",
        "service": status.service or "unknown", "zone": zone_line(status),
        "checked_at": _clock_time(status.checked_at) if status.checked_at else "never",
        "servers": server_rows(status),
    })


# --- alerts ------------------------------------------------------------------------------------------------------

@bp.post("/actions/alert")
def test_alert():
    """Send a test alert through every configured channel at once; show each channel's outcome."""
    # Imported here: the alert channels (e-mail, Apprise) cost about 1.5 MiB of memory that an agent without a
    # monitor needs only for this button.
    from appliance.alerts.channels import build_channels

    agent = _agent()
    config = agent.config
    where = f"set e-mail, an Apprise URL or an outbox directory in {_settings('Alerts')}"
    try:
        channels = build_channels(config.alerts)
    except ValueError as exc:
        return _message(f"{exc}; fix it in {_settings('Alerts')}.", ok=False)
    if not channels:
        return _message(f"No alert channel is configured: {where}, then try again.", ok=False)
    rows = _deliver_all(channels, _test_message(config.device.name, time.time()))
    return _page(result={"kind": "alert", "rows": rows, "ok": all(r["ok"] for r in rows),
                         "watching": config.monitor is not None})


def _test_message(device, now_wall):
    from appliance.alerts.messages import FOOTER, Message

    name = device or "phonehome"
    summary = f"Test alert from {name} at {_clock_time(now_wall)}: alerts reach you this way."
    body = f"{summary}\n\nNothing is wrong; this was sent from the appliance's Actions page.\n\n{FOOTER}\n"
    return Message(subject=f"phonehome test alert from {name}", body=body, device=name, kind="test", at=now_wall)


def _deliver_all(channels, message):
    """One row per channel, in order. In parallel, so the wait is the slowest channel's own timeout, not the sum."""

    def deliver(channel):
        try:
            channel.send(message)
        except DeliveryError as exc:
            # Nothing retries a test alert: the channels' "will retry" would mislead here.
            return {"label": channel.label, "ok": False, "error": str(exc).replace("; will retry", "")}
        except Exception as exc:  # a channel's bug must become a row, not a 500 page
            log.exception("test alert through %s failed", channel.label)
            return {"label": channel.label, "ok": False,
                    "error": f"failed with {type(exc).__name__}; the service log says more"}
        return {"label": channel.label, "ok": True, "error": ""}

    from concurrent.futures import ThreadPoolExecutor  # here: only the test-alert button needs it

    with ThreadPoolExecutor(max_workers=len(channels), thread_name_prefix="test-alert") as pool:
        return list(pool.map(deliver, channels))


# --- restart and reboot ------------------------------------------------------------------------------------------

@bp.post("/actions/restart")
def restart():
    """Stop the agent in order and start it again; the page reloads itself a few seconds later."""
    control = _agent().control
    if control is None:
        return _message("This agent cannot restart itself: it was not started by 'phonehome agent' (for example, "
                        "it is the demo). Restart it where it was started.", ok=False)
    log.warning("restart asked from the web page by %s", client_key())
    timer = threading.Timer(RESTART_DELAY_S, control.restart)
    timer.daemon = True
    timer.start()
    return _away("Restarting", "The agent is restarting; this page reloads in a few seconds.", RESTART_REFRESH_S)


@bp.post("/actions/reboot")
def reboot():
    """Reboot the machine, once the box saying so is ticked."""
    if not request.form.get("confirm_reboot"):
        return _message("Nothing was done: tick the box to confirm the reboot, then press Reboot again.", ok=False,
                        status=400, errors={"confirm_reboot": "tick this box to confirm"})
    do_reboot = current_app.extensions.get("phonehome.reboot")
    if do_reboot is None:
        return _message("Rebooting is not available from this page here; run 'sudo systemctl reboot' on the "
                        "device.", ok=False)
    error = do_reboot()
    if error:
        return _message(f"The reboot failed: {error}. Try 'sudo systemctl reboot' on the device.", ok=False)
    return _away("Rebooting", "The appliance is rebooting. It takes a minute or two; this page reloads by itself.",
                 REBOOT_REFRESH_S)


def _away(title, text, refresh_s):
    back = url_for("dashboard.index") if "dashboard.index" in current_app.view_functions else "/"
    return render_template("actions/away.html", title=title, text=text, refresh_s=refresh_s, back=back)


# --- config download and restore ---------------------------------------------------------------------------------

@bp.get("/actions/config.toml")
def download_config():
    """The config as a file: secrets masked, or with ``?secrets=1`` the file itself, byte for byte."""
    agent = _agent()
    name = f"phonehome-{agent.config.device.name or 'unnamed'}.toml"
    if request.args.get("secrets") == "1":
        try:
            with open(agent.config_path, "rb") as f:
                data = f.read()
        except OSError as exc:
            return _message(f"Cannot read the config file {agent.config_path or '(none)'} "
                            f"({exc.strerror or exc}); save the settings once to create it.", ok=False, status=404)
        log.info("config downloaded with its secrets by %s", client_key())
    else:
        data = _masked_text(agent.config).encode("utf-8")
    response = send_file(io.BytesIO(data), mimetype="application/toml", as_attachment=True, download_name=name)
    response.headers["Cache-Control"] = "no-store"  # secrets, or their masks: never in a cache
    return response


def _masked_text(config):
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return (f"# phonehome config of '{config.device.name or 'unnamed'}', downloaded {stamp}.\n"
            f"# Secrets are hidden as ****: to restore this file, type each secret in where **** stands,\n"
            f"# or download the config with its secrets instead.\n" + tomli_w.dumps(masked_table(config)))


@bp.post("/actions/restore")
def restore():
    """Replace the config file with an uploaded one, only when it validates and holds no masked secret."""
    agent = _agent()
    upload = request.files.get("config_file")
    if upload is None or not upload.filename:
        return _message("Nothing was written: choose a config file (.toml) to restore, then press Restore.",
                        ok=False, status=400, errors={"config_file": "choose a file"})
    if not agent.config_path:
        return _message("This agent runs without a config file, so there is nothing to restore into.", ok=False)
    text, problems = _check_upload(upload.read(), upload.filename, os.path.dirname(
        os.path.abspath(agent.config_path)), data_dir=agent.config.data_dir)
    if problems:
        return _page(result={"kind": "restore", "ok": False, "filename": upload.filename, "problems": problems},
                     errors={"config_file": "not restored; see the problems above"}, status=400)
    try:
        write_atomic(agent.config_path, text, mode=0o600)
    except OSError as exc:
        return _message(f"Nothing was restored: cannot write {agent.config_path} ({exc.strerror or exc}); check "
                        f"that this user may write the config file's directory.", ok=False)
    log.warning("config restored from an upload (%s) by %s", upload.filename, client_key())
    return _message(_applied_text(upload.filename, agent.reload_now()), ok=True)


def _check_upload(raw, filename, base_dir, *, data_dir):
    """(text, problems): the file's text, and why it must not be written (empty when it may).

    A file must keep the running ``data_dir``: the admin password, the setup
    code and the history live there, and a page that moved it would un-claim
    the appliance for anyone on the LAN to claim.
    """
    try:
        # A byte-order mark is dropped: some editors add one, and TOML (and load_config) refuse it.
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return "", ["the file is not UTF-8 text: save it as UTF-8 (or download the config again) and upload it"]
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return text, [f"not valid TOML: {exc}; fix the line it names, or download the config again"]
    # Masks first: a masked value also fails validation (a short token, two URLs masked alike),
    # and those messages would hide the one thing to do.
    hidden = _masked_keys(table)
    if not hidden:
        try:
            config = parse_config(text, source=filename, base_dir=base_dir)
        except ConfigError as exc:
            return text, exc.problems
        if os.path.abspath(config.data_dir) != os.path.abspath(data_dir):
            return text, [f"data_dir: this file keeps the state in {config.data_dir}, this appliance in {data_dir}; "
                          f"a restore cannot move it (the password, setup code and history live there): set "
                          f"data_dir = \"{data_dir}\" in the file, or change it on the device itself"]
        hidden = masked_paths(config)
    if hidden:
        return text, [f"{MASKED_HINT} (still hidden: {', '.join(hidden)})"]
    return text, []


def _masked_keys(value, path=""):
    """Key paths of every string in a TOML table that holds a mask."""
    if isinstance(value, dict):
        return [k for key, item in value.items() for k in _masked_keys(item, f"{path}.{key}" if path else key)]
    if isinstance(value, list):
        return [k for i, item in enumerate(value) for k in _masked_keys(item, f"{path}[{i}]")]
    return [path] if is_masked(value) else []


def _applied_text(filename, applied):
    if applied is None:
        return (f"Restored {filename}, but the agent has not applied it yet; it does within seconds. "
                f"If the dashboard does not change, restart the agent below.")
    if not applied.ok:
        return (f"Restored {filename}, but the agent could not apply all of it ({applied.error}). "
                f"Check the dashboard; restart the agent below if a part did not start.")
    return f"Restored {filename}; in effect since {_clock_time(applied.at)}."


# --- factory reset -----------------------------------------------------------------------------------------------

@bp.post("/actions/factory-reset")
def factory_reset():
    """Back up the config, go back to a first-boot config and a new setup code, forget the password."""
    agent = _agent()
    config = agent.config
    typed = request.form.get("confirm", "").strip()
    if typed.upper() != "RESET" and not (config.device.name and typed == config.device.name):
        return _message("Nothing was reset: type RESET in the box to confirm, then press Factory reset.", ok=False,
                        status=400, errors={"confirm": "type RESET (or the device name) to confirm"})
    if not agent.config_path:
        return _message("This agent runs without a config file, so there is nothing to reset.", ok=False)
    try:
        backup = reset_to_first_boot(agent.config_path, config.data_dir, now_wall=time.time())
    except OSError as exc:
        return _message(f"The factory reset failed: cannot write {exc.filename or agent.config_path} "
                        f"({exc.strerror or exc}); check that this user may write there.", ok=False)
    log.warning("factory reset from the web page by %s", client_key())
    log_out()
    kept = f"The old settings are kept in {backup}." if backup else "There was no config file to keep."
    flash(f"Factory reset done. {kept} Claim the appliance again with its new setup code.")
    return redirect(url_for("auth.setup"))

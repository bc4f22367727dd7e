"""Claiming the appliance, logging in and out, changing the admin password."""

from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from appliance.auth import password_problem
from appliance.setup import claim
from web.ratelimit import FailureLimiter
from web.security import client_key, log_in, log_out, logged_in, passwords

bp = Blueprint("auth", __name__)


def _limiter():
    return current_app.extensions.setdefault("phonehome.login_limiter", FailureLimiter())


def _mode():
    return current_app.extensions["phonehome.mode"]


def _data_dir():
    return current_app.extensions["phonehome.data_dir"]()


def _too_many(template, **context):
    """None, with this attempt counted as failed until it succeeds; or the answer for a client that must wait."""
    wait_s = _limiter().begin(client_key())
    if not wait_s:
        return None
    message = (f"too many wrong tries from this address; wait {int(wait_s) + 1} s and try again "
               f"(if the password is lost, see 'Forgot the password?' below)")
    return render_template(template, refusal=message, **context), 429


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    """First visit: the one-time setup code and a new admin password claim the appliance."""
    if passwords().is_set:
        return redirect(url_for("auth.login"))
    if _mode() != "appliance":
        return render_template("auth/no_password.html")
    errors = {}
    if request.method == "POST":
        refused = _too_many("auth/setup.html", errors=errors)
        if refused:
            return refused
        code = request.form.get("code", "")
        password, again = request.form.get("password", ""), request.form.get("password_again", "")
        if not code.strip():
            errors["code"] = "enter the setup code shown on the display, in the service log, or by " \
                             "'phonehome setup-code' on the device"
        errors.update(_new_password_errors(password, again))
        if errors:
            _limiter().refund(client_key())  # the code was not tried
        else:
            try:
                claim(_data_dir(), code, password)
            except ValueError as exc:
                errors["code" if "code" in str(exc) else "password"] = str(exc)
            except OSError as exc:
                errors["form"] = f"could not save the password ({exc.strerror}); check that data_dir is writable"
        if not errors:
            _limiter().succeeded(client_key())
            log_in()
            flash("This appliance is yours now. Keep the password somewhere safe.")
            return redirect(url_for("settings.index") if "settings.index" in current_app.view_functions else "/")
    return render_template("auth/setup.html", errors=errors), (400 if errors else 200)


@bp.route("/login", methods=["GET", "POST"])
def login():
    if not passwords().is_set:
        return redirect(url_for("auth.setup"))
    target = _safe_next(request.values.get("next", ""))
    if request.method == "GET" and logged_in():
        return redirect(target)
    errors = {}
    if request.method == "POST":
        refused = _too_many("auth/login.html", errors=errors, next=target)
        if refused:
            return refused
        if passwords().check(request.form.get("password", "")):
            _limiter().succeeded(client_key())
            log_in()
            return redirect(target)
        errors["password"] = "wrong password; try again (letters are case-sensitive)"
    return render_template("auth/login.html", errors=errors, next=target), (401 if errors else 200)


@bp.post("/logout")
def logout():
    log_out()
    flash("Logged out.")
    return redirect(url_for("auth.login"))


@bp.route("/password", methods=["GET", "POST"])
def change_password():
    errors = {}
    if request.method == "POST":
        refused = _too_many("auth/password.html", errors=errors)
        if refused:
            return refused
        current = request.form.get("current", "")
        password, again = request.form.get("password", ""), request.form.get("password_again", "")
        if passwords().check(current):
            _limiter().refund(client_key())
        else:
            errors["current"] = "that is not the current password"
        errors.update(_new_password_errors(password, again))
        if not errors:
            try:
                passwords().set(password)
            except OSError as exc:
                errors["form"] = f"could not save the password ({exc.strerror}); check that data_dir is writable"
        if not errors:
            log_in()  # the new generation: this browser stays logged in, every other one is logged out
            flash("Password changed. Other browsers are logged out.")
            return redirect(url_for("auth.change_password"))
    return render_template("auth/password.html", errors=errors), (400 if errors else 200)


def _new_password_errors(password, again):
    problem = password_problem(password)
    if problem:
        return {"password": f"the password {problem}"}
    if password != again:
        return {"password_again": "the two passwords differ; type the same password twice"}
    return {}


def _safe_next(target):
    """Only a path on this site: a login link must not send the browser elsewhere."""
    parts = urlsplit(target)
    if not target.startswith("/") or target.startswith("//") or parts.scheme or parts.netloc or "\\" in target:
        return "/"
    return target


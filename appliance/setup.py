"""The one-time setup code: printed in the log and on the display until the appliance is claimed.

There is no default password. Whoever can read the code (on the box's
display, in its service log, or with ``phonehome setup-code`` on the device)
may claim the appliance on its web page and choose the admin password.
"""

import hmac
import json
import logging
import os
import secrets
import time

from appliance.atomic import write_atomic
from appliance.auth import Passwords
from appliance.status import Setup

log = logging.getLogger("phonehome.setup")

FILE_NAME = "setup.json"
SETUP_URL = "http://phonehome.local/setup"
# No 0/O, 1/I/L: the code is read off a tiny display and typed on a phone.
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def new_code():
    """A fresh code like 'K7QM-2XPW' (about 40 bits)."""
    chars = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"{chars[:4]}-{chars[4:]}"


def load_setup(data_dir, *, url=SETUP_URL):
    """The Setup stored in ``data_dir``, made (and written) on first use. Never raises for a bad file.

    A missing or unreadable file gives a new code; if it cannot be written the
    code still works until the agent restarts, and that is logged.
    """
    path = os.path.join(data_dir, FILE_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        code, claimed = data["code"], bool(data.get("claimed_at"))
        if not isinstance(code, str) or not code:
            raise ValueError("no code")
        return Setup(code=code, url=url, claimed=claimed)
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("setup state %s is unreadable (%s); making a new setup code", path, exc)
    setup = Setup(code=new_code(), url=url, claimed=False)
    _save(path, {"code": setup.code, "created_at": time.time(), "claimed_at": None})
    return setup


def reset_setup(data_dir, *, url=SETUP_URL):
    """Forget the claim and make a new code (a factory reset); return the new Setup."""
    setup = Setup(code=new_code(), url=url, claimed=False)
    _save(os.path.join(data_dir, FILE_NAME), {"code": setup.code, "created_at": time.time(), "claimed_at": None})
    return setup


def code_matches(entered, code):
    """True when ``entered`` is ``code``, ignoring case, spaces and dashes (typed on a phone)."""
    def norm(text):
        return "".join(c for c in text.upper() if c.isalnum())
    return hmac.compare_digest(norm(entered).encode(), norm(code).encode())


def claim(data_dir, code, password):
    """Claim the appliance: check the setup code, store the admin password, mark it claimed.

    Raises ValueError (the message says what to do) for a wrong code or an
    unusable password, changing nothing; OSError when data_dir cannot be
    written.
    """
    setup = load_setup(data_dir)
    if setup.claimed:
        raise ValueError("this appliance is already claimed; log in with its admin password")
    if not code_matches(code, setup.code):
        raise ValueError("that is not the setup code; read it again on the display, in the service log "
                         "or with 'phonehome setup-code' on the device")
    Passwords(data_dir).set(password)
    path = os.path.join(data_dir, FILE_NAME)
    write_atomic(path, json.dumps({"code": setup.code, "created_at": time.time(), "claimed_at": time.time()}),
                 mode=0o600)
    log.info("appliance claimed on its web page; the setup code is used up")


def reopen(data_dir, *, url=SETUP_URL):
    """Recover a lost password: forget it and make a new setup code, so the appliance can be claimed again.

    The config is kept. Returns the new Setup.
    """
    Passwords(data_dir).clear()
    setup = reset_setup(data_dir, url=url)
    log.warning("admin password reset: claim the appliance again at %s with the new setup code %s",
                url, setup.code)
    return setup


def _save(path, data):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, json.dumps(data), mode=0o600)
    except OSError as exc:
        log.error("cannot save the setup code to %s (%s): it changes at the next restart; "
                  "check that data_dir is writable", path, exc.strerror)

"""The admin password of the web pages, and the key that signs their sessions.

Both live in ``data_dir`` with mode 0600: ``auth.json`` holds the password's
hash (werkzeug's scrypt) and a generation number that changes with every
password change, so a changed or reset password logs every browser out.
``web-secret`` holds the random key Flask signs session cookies with; it is
made on first use and survives restarts, so a restart logs nobody out.
"""

import json
import logging
import os
import secrets
import time

from werkzeug.security import check_password_hash, generate_password_hash

from appliance.atomic import write_atomic

log = logging.getLogger("phonehome.auth")

AUTH_FILE = "auth.json"
SECRET_FILE = "web-secret"
MIN_PASSWORD = 8
MAX_PASSWORD = 256  # hashing a megabyte-long "password" would be a cheap way to keep the Pi busy


def password_problem(password):
    """Why ``password`` cannot be the admin password, or None."""
    if len(password) < MIN_PASSWORD:
        return f"must be at least {MIN_PASSWORD} characters; a few words you will remember make a good one"
    if len(password) > MAX_PASSWORD:
        return f"must be at most {MAX_PASSWORD} characters"
    return None


class Passwords:
    """The admin password stored in ``data_dir``. Reads the file on every call: the CLI may change it."""

    def __init__(self, data_dir):
        self.path = os.path.join(data_dir, AUTH_FILE)

    def _load(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
            if isinstance(data, dict) and isinstance(data.get("hash"), str):
                return data
            log.error("%s holds no password hash; set a new password", self.path)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.error("cannot read %s (%s); set a new password", self.path, exc)
        return None

    @property
    def is_set(self):
        return self._load() is not None

    @property
    def generation(self):
        """Changes with every password change; None when no password is set."""
        data = self._load()
        return None if data is None else data.get("generation")

    def check(self, password):
        """True when ``password`` is the admin password."""
        data = self._load()
        if data is None or len(password) > MAX_PASSWORD:
            return False
        return check_password_hash(data["hash"], password)

    def set(self, password):
        """Store a new password (logs every session out). Raises ValueError (the message says why) or OSError."""
        problem = password_problem(password)
        if problem:
            raise ValueError(f"the password {problem}")
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        data = {"hash": generate_password_hash(password, method="scrypt"), "generation": secrets.token_hex(8),
                "changed_at": time.time()}
        write_atomic(self.path, json.dumps(data), mode=0o600)

    def clear(self):
        """Forget the password (a password reset or a factory reset)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def session_key(data_dir):
    """The key that signs session cookies, made and saved on first use.

    When it cannot be saved (a read-only data_dir) a key for this run is
    used and that is logged: a restart then logs browsers out.
    """
    path = os.path.join(data_dir, SECRET_FILE)
    try:
        with open(path, "rb") as f:
            key = f.read()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.error("cannot read %s (%s); making a new session key", path, exc.strerror)
    key = secrets.token_bytes(32)
    try:
        os.makedirs(data_dir, exist_ok=True)
        write_atomic(path, key, mode=0o600)
    except OSError as exc:
        log.error("cannot save the session key to %s (%s): every restart will log browsers out; "
                  "check that data_dir is writable", path, exc.strerror)
    return key

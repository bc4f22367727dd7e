"""Factory reset: keep a backup of the config, start again from a first-boot config and a new setup code.

The first-boot config keeps only what describes the box itself and holds
no secret: ``data_dir`` and the [display], [leds] and [button] tables, so
the button and display still work afterwards to show the new setup code,
and [web] without its api_token, so the page stays where the browser is.
Everything else (device name, targets and their tokens, monitor, alerts,
clock settings) goes. The running agent picks the new file up itself: its
config watcher sees the file change.
"""

import logging
import os
import time

import tomli_w

from appliance.atomic import write_atomic
from appliance.config import Config, config_from_table, parse_config
from appliance.config.secrets import secret_fields
from appliance.config.validate import to_table
from appliance.errors import ConfigError
from appliance.auth import Passwords
from appliance.setup import reset_setup

log = logging.getLogger("phonehome.reset")

# Tables a factory reset keeps: they describe the hardware and how the box is reached, not its owner.
# Secrets in them (web.api_token) go.
KEPT_TABLES = ("display", "leds", "button", "web")


def backup_path_for(config_path, now_wall):
    """``<config_path>.bak-<UTC yyyymmddThhmmssZ>`` for epoch seconds ``now_wall``; '-2', '-3'… if taken."""
    base = f"{config_path}.bak-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now_wall))}"
    path, n = base, 1
    while os.path.lexists(path):
        n += 1
        path = f"{base}-{n}"
    return path


def first_boot_text(old_config, data_dir, *, now_wall, backup_path):
    """The TOML of a first-boot config keeping ``data_dir`` and old_config's hardware tables (None: none).

    Only settings that differ from the defaults are written, so later
    defaults still apply.
    """
    table = {}
    if data_dir != Config().data_dir:
        table["data_dir"] = os.path.abspath(data_dir)
    if old_config is not None:
        for name in KEPT_TABLES:
            kept = _changed(getattr(old_config, name))
            if kept:
                table[name] = kept
    config_from_table(table)  # what is written must load: raises ConfigError otherwise
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now_wall))
    was = f"the old one is {backup_path}" if backup_path else "there was no config before"
    return f"# phonehome: written by a factory reset on {stamp}; {was}\n" + tomli_w.dumps(table)


def factory_reset(config_path, data_dir, *, now_wall):
    """Back up ``config_path``, replace it with a first-boot config, make a new setup code, forget the password.

    The backup is an exact copy, written atomically with mode 0600 next to
    the config (earlier backups are kept). A missing config file still
    resets. ``now_wall`` is epoch seconds (UTC), for the backup's name.
    Returns the backup's path, or None when there was no config file.
    Raises OSError when the backup or the new config cannot be written; a
    failed backup leaves everything as it was.
    """
    try:
        with open(config_path, "rb") as f:
            old_bytes = f.read()
    except FileNotFoundError:
        old_bytes = None
    backup_path = None
    old_config = None
    if old_bytes is not None:
        backup_path = backup_path_for(config_path, now_wall)
        write_atomic(backup_path, old_bytes, mode=0o600)
        try:
            old_config = parse_config(old_bytes.decode("utf-8"), source=config_path,
                                      base_dir=os.path.dirname(os.path.abspath(config_path)))
        except (UnicodeDecodeError, ConfigError) as exc:
            log.warning("the old config %s is not valid (%s); the reset keeps none of its settings",
                        config_path, str(exc).splitlines()[0])
    text = first_boot_text(old_config, data_dir, now_wall=now_wall, backup_path=backup_path)
    # The new code first: the running agent reloads as soon as the config changes and must find it.
    reset_setup(data_dir)
    Passwords(data_dir).clear()
    write_atomic(config_path, text, mode=0o600)
    if backup_path:
        log.warning("factory reset: the old config is kept in %s; %s now holds a first-boot config and there is "
                    "a new setup code", backup_path, config_path)
    else:
        log.warning("factory reset: there was no config file at %s to back up; it now holds a first-boot config "
                    "and there is a new setup code", config_path)
    return backup_path


def _changed(section):
    """The fields of a config table that differ from their defaults and hold no secret, as a TOML table."""
    default = to_table(type(section)())
    secret = secret_fields(type(section))
    return {key: value for key, value in to_table(section).items() if default.get(key) != value and key not in secret}

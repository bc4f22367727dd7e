"""Reading, validating and writing the one configuration file (TOML)."""

import os
import tomllib

import tomli_w

from appliance.atomic import write_atomic
from appliance.config.schema import (  # noqa: F401  (re-exported)
    Alerts, Button, Config, Device, Display, Email, Heartbeat, Leds, Monitor, MonitoredDevice, Peer, Target, Time,
    Web,
)
from appliance.config.validate import build, resolve_paths, to_table
from appliance.errors import ConfigError

DEFAULT_PATH = "/etc/phonehome/phonehome.toml"


def parse_config(text, *, source="", base_dir=None):
    """Parse and validate TOML text; return a Config.

    Relative file and directory names are taken relative to ``base_dir``.
    Raises ConfigError listing every problem with its key path.
    """
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], source=source) from None
    return config_from_table(table, source=source, base_dir=base_dir)


def config_from_table(table, *, source="", base_dir=None):
    """Validate a TOML table (a dict); return a Config or raise ConfigError."""
    problems = []
    config = build(Config, table, "", problems)
    if problems:
        raise ConfigError(problems, source=source)
    return resolve_paths(config, base_dir) if base_dir else config


def load_config(path, *, missing_ok=True):
    """Load the config file at ``path``.

    A missing file gives the default (unconfigured) Config when ``missing_ok``,
    as on a new appliance's first boot. Raises ConfigError for a bad file.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        if missing_ok:
            return config_from_table({}, source=path, base_dir=os.path.dirname(os.path.abspath(path)))
        raise ConfigError(["file not found; create it or pass --config PATH"], source=path) from None
    except OSError as exc:
        raise ConfigError([f"cannot read the file: {exc.strerror}"], source=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(["not UTF-8 text; save the file as UTF-8"], source=path) from None
    return parse_config(text, source=path, base_dir=os.path.dirname(os.path.abspath(path)))


def dump_config(config):
    """The TOML text of ``config``."""
    return tomli_w.dumps(to_table(config))


def save_config(path, config):
    """Write ``config`` to ``path`` atomically, readable by its owner only (it holds tokens)."""
    write_atomic(path, dump_config(config), mode=0o600)

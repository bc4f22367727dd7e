"""Bad input, generated: the config loader and the settings forms (the web's way into it) attacked by hypothesis.

Config files with one value of the wrong kind, any value at any key, unknown keys and tables, and any bytes; settings
forms with bad values. The properties: no exception but ConfigError; each problem names its key path; loading never
writes; and a refused form writes nothing and leaves the running config as it was.

The examples are derandomized and no example database is kept, so every run (and CI) tries the same inputs.
"""

import pytest
import tomli_w
from hypothesis import assume, event, given
from hypothesis import strategies as st

from appliance.config import load_config
from appliance.errors import ConfigError
from tests.faults.strategies import PASSWORD, examples, path_steps

pytestmark = pytest.mark.fault


# -- the config loader ------------------------------------------------------------------------------------------

def good_config(data_dir):
    """A config table using most tables of the schema, valid as it is."""
    return {
        "data_dir": data_dir,
        "device": {"name": "home"},
        "heartbeat": {"interval_s": 60.0, "timeout_s": 10.0,
                      "targets": [{"url": "https://monitor.example.com/api/v1/heartbeat", "token": "t0k3n-0123"}]},
        "monitor": {"listen": "127.0.0.1:8081",
                    "devices": [{"name": "cabin", "token": "cabin-token-1", "site": "lake"}],
                    "canary_urls": ["https://example.com/"], "public_url": "https://monitor.example.com"},
        "alerts": {"email": {"smtp_host": "mail.example.com", "sender": "pi@example.com", "to": ["me@example.com"]},
                   "outbox_dir": "outbox", "urls": ["json://127.0.0.1:8080/hook"]},
        "time": {"servers": ["pool.ntp.org", "[2001:db8::1]:123"], "timezone": "Europe/Berlin"},
        "display": {"driver": "emulator", "i2c_address": 0x3C},
        "leds": {"green": 17, "red": 27},
        "button": {"pin": 22},
        "web": {"listen": "", "hostnames": ["phonehome.lan"], "api_token": "api-token-0123456789"},
        "wifi": {"hotspot": False, "interface": "wlan0"},
        "system": {"read_only_root": False},
    }


def _leaves(table, path=""):
    """(path, parent, key) of every key in ``table``, nested tables and lists of tables included."""
    for key, value in table.items():
        here = f"{path}.{key}" if path else key
        yield here, table, key
        if isinstance(value, dict):
            yield from _leaves(value, here)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    yield from _leaves(item, f"{here}[{i}]")


def _leaf_paths():
    return [path for path, parent, key in _leaves(good_config("/x"))]


def _set(table, path, value):
    for here, parent, key in _leaves(table):
        if here == path:
            parent[key] = value
            return table
    raise KeyError(path)


def _of_another_kind(value):
    """TOML values of a kind other than ``value``'s: the loader must refuse each (ints are numbers to a float)."""
    kinds = {bool: st.booleans(), int: st.integers(min_value=-2**63, max_value=2**63 - 1),
             float: st.floats(allow_nan=True), str: st.text(max_size=20),
             list: st.lists(st.integers(), max_size=3), dict: st.dictionaries(st.text(max_size=5), st.integers(),
                                                                             max_size=2)}
    wrong = [s for kind, s in kinds.items() if not isinstance(value, kind)
             and not (isinstance(value, float) and kind is int)]
    return st.one_of(wrong)


toml_scalars = st.one_of(st.booleans(), st.integers(min_value=-2**63, max_value=2**63 - 1),
                         # TOML's integers are 64-bit, but tomllib reads longer ones
                         st.integers(min_value=2**63, max_value=10**400),
                         st.integers(min_value=-10**400, max_value=-2**63 - 1),
                         st.floats(allow_nan=True), st.text(max_size=40),
                         st.sampled_from(["", "²", "a:²", "http://[abc", "http://[::1", "0.0.0.0:0", "x\n", "home\n",
                                          "http://", "ftp://x", "\u202e", "\x00", "a" * 300, "[v6]:99", "::1"]))


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    """A config file holding a valid config; tests write bad ones and load them, then check it is restored."""
    root = tmp_path_factory.mktemp("config")
    return root / "phonehome.toml", str(root / "data")


def _load(path, text):
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    before = path.read_bytes()
    try:
        return load_config(str(path)), None
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p.strip() for p in exc.problems)
        return None, exc
    finally:
        assert path.read_bytes() == before  # loading never writes


@examples(1500)
@given(data=st.data())
def test_a_config_with_one_value_of_the_wrong_kind_is_refused_naming_its_key_path(config_file, data):
    path, data_dir = config_file
    key = data.draw(st.sampled_from([k for k in _leaf_paths() if k != "data_dir"]), label="key")
    table = good_config(data_dir)
    old = next(parent[k] for here, parent, k in _leaves(table) if here == key)
    value = data.draw(_of_another_kind(old), label="value")
    # A list for a list: an empty one may be right, a list of numbers for strings is judged item by item.
    assume(not (isinstance(old, list) and isinstance(value, list)))
    config, error = _load(path, tomli_w.dumps(_set(table, key, value)))
    assert config is None, (key, value)
    assert len(error.problems) == 1 and error.problems[0].startswith(f"{key}: "), (key, value, error.problems)


@examples(1000)
@given(data=st.data())
def test_any_value_at_any_key_is_loaded_or_refused_naming_its_key_path(config_file, data):
    path, data_dir = config_file
    key = data.draw(st.sampled_from([k for k in _leaf_paths() if k != "data_dir"]), label="key")
    old = next(parent[k] for here, parent, k in _leaves(good_config(data_dir)) if here == key)
    value = data.draw(st.lists(toml_scalars.filter(lambda v: isinstance(v, str)), max_size=3)
                      if isinstance(old, list) and not isinstance(old[0], dict) else toml_scalars, label="value")
    config, error = _load(path, tomli_w.dumps(_set(good_config(data_dir), key, value)))
    if error is not None:
        # The key itself, or a field of the same table whose check compares with it (timeout_s vs interval_s).
        table = key.rsplit(".", 1)[0] if "." in key else ""
        for problem in error.problems:
            named = problem.split(": ", 1)[0]
            assert named.startswith(table) or named in ("leds", "button", "device.name", "peer.relay_pin"), \
                (key, value, error.problems)


@examples(500)
@given(data=st.data())
def test_unknown_keys_and_tables_are_refused_naming_where_they_are(config_file, data):
    path, data_dir = config_file
    tables = ["", "device", "heartbeat", "heartbeat.targets[0]", "monitor", "monitor.devices[0]", "alerts",
              "alerts.email", "time", "display", "leds", "web", "wifi", "system"]
    where = data.draw(st.sampled_from(tables), label="table")
    table = good_config(data_dir)
    here = table
    for step in path_steps(where):
        here = here[step]
    name = data.draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=20).filter(lambda k: k not in here),
                     label="key")
    here[name] = data.draw(toml_scalars | st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
    config, error = _load(path, tomli_w.dumps(table))
    assert config is None
    expected = f"{where}.{name}" if where else name
    assert len(error.problems) == 1 and error.problems[0].startswith(f"{expected}: unknown key"), error.problems


@examples(500)
@given(text=st.one_of(st.binary(max_size=200), st.text(max_size=200),
                      st.binary(min_size=1, max_size=40).map(lambda b: b"[device]\nname = \"" + b + b"\"\n")))
def test_any_bytes_as_a_config_file_are_loaded_or_a_config_error(config_file, text):
    path, _ = config_file
    _load(path, text)


# -- the settings forms (the web side of the config loader) -------------------------------------------------------

APPLIANCE_CONFIG = """\
data_dir = "{data_dir}"
[device]
name = "home"
[time]
servers = []
[web]
listen = ""
[wifi]
hotspot = false
"""


@pytest.fixture(scope="module")
def appliance(tmp_path_factory):
    """A running appliance (no targets, no display) on a config file, with a logged-in test client on its page.

    CSRF is off in this app: the forms' tokens are tested in tests/web; here the fields' values are the attack.
    """
    from appliance.agent.role import AgentRole
    from appliance.setup import load_setup
    from web import create_agent_app

    root = tmp_path_factory.mktemp("appliance")
    path = root / "phonehome.toml"
    path.write_text(APPLIANCE_CONFIG.format(data_dir=root / "data"))
    role = AgentRole(load_config(str(path)), config_path=str(path)).start()
    try:
        app = create_agent_app(role, reboot=lambda: None)
        app.config["WTF_CSRF_ENABLED"] = False
        client = app.test_client()
        r = client.post("/setup", data={"code": load_setup(str(root / "data")).code, "password": PASSWORD,
                                        "password_again": PASSWORD})
        assert r.status_code == 302, r.get_data(as_text=True)[:500]
        yield role, client, path
    finally:
        role.stop()


form_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["60", "0.05", "0", "-1", "1e308", "1e400", "nan", "inf", "-inf", "0x3C", "0x", "²", "1_0",
                     "\u0663", " 5 ", "9" * 30, "9" * 5000, "emulator", "none", "ssd1306", "128", "64", "180",
                     "Europe/Berlin", "../etc", "UTC\n", "home\n", "a" * 70, "\x00"]))
SETTINGS_FORMS = {
    "device": ("name",),
    "heartbeat": ("interval_s", "timeout_s"),
    # No NTP servers: a server that passed would be asked for the time, and tests talk to 127.0.0.1 only.
    "time": ("timezone", "check_every_s", "until_synced_every_s", "max_offset_ms", "timeout_s"),
    "display": ("driver", "i2c_port", "i2c_address", "width", "height", "rotate", "page_s", "dim_after_s"),
}


@examples(500)
@given(data=st.data())
def test_a_settings_form_with_bad_values_is_refused_and_writes_nothing(appliance, data):
    role, client, path = appliance
    page = data.draw(st.sampled_from(sorted(SETTINGS_FORMS)), label="page")
    sent = {name: data.draw(form_values, label=name) for name in SETTINGS_FORMS[page]}
    if page == "display" and sent["driver"] not in ("none", "emulator"):
        sent["driver"] = data.draw(st.sampled_from(["none", "emulator", "ssd1306x", "", "NONE"]), label="driver")
    before, config = path.read_bytes(), role.config
    r = client.post(f"/settings/{page}", data=sent)
    assert r.status_code in (302, 400), (page, sent, r.status_code, r.get_data(as_text=True)[:500])
    event(f"{page}: {'saved' if r.status_code == 302 else 'refused'}")
    if r.status_code == 400:
        assert path.read_bytes() == before and role.config is config
    else:  # saved (back to its own page, not to the login): the file holds what the agent now runs
        assert r.location == f"/settings/{page}"
        assert load_config(str(path)) == role.config

"""The config schema: defaults, every problem in one pass with its key path, atomic writes."""

import os

import pytest

from appliance.config import dump_config, load_config, parse_config, save_config
from appliance.config.reference import render_reference
from appliance.errors import ConfigError

MINIMAL_AGENT = """
[device]
name = "home"
[[heartbeat.targets]]
url = "https://monitor.example.com/api/v1/heartbeat"
token = "0123456789abcdef"
"""


def problems(text):
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


def test_empty_config_is_valid_and_unconfigured():
    c = parse_config("")
    assert not c.agent_configured
    assert c.heartbeat.interval_s == 60 and c.heartbeat.timeout_s == 10
    assert c.data_dir == "/var/lib/phonehome" and c.monitor is None


def test_missing_file_gives_the_first_boot_config(tmp_path):
    assert not load_config(str(tmp_path / "none.toml")).agent_configured


def test_missing_file_is_an_error_when_required(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(str(tmp_path / "none.toml"), missing_ok=False)


def test_minimal_agent_config():
    c = parse_config(MINIMAL_AGENT)
    assert c.agent_configured and c.heartbeat.targets[0].kind == "phonehome"
    assert c.heartbeat.targets[0].label == "monitor.example.com"


def test_durations_accept_fractions_down_to_the_documented_minimum():
    c = parse_config("[heartbeat]\ninterval_s = 0.05\ntimeout_s = 0.05\n")
    assert c.heartbeat.interval_s == 0.05
    assert problems("[heartbeat]\ninterval_s = 0.01\n") == [
        "heartbeat.interval_s: must be at least 0.05 s, got 0.01"]


def test_every_problem_reported_in_one_pass_with_key_paths():
    found = problems("""
data_dir = 3
[heartbeat]
intervl_s = 5
[[heartbeat.targets]]
url = "https://ok.example.com/"
kind = "healthchecks"
[[heartbeat.targets]]
url = "ftp://example.com/"
kind = "healthcheck"
[monitor]
listen = "8081"
[[monitor.devices]]
name = "home"
token = "short"
""")
    assert found == [
        "data_dir: must be a string, got 3",
        "heartbeat.intervl_s: unknown key (did you mean 'interval_s'?)",
        "heartbeat.targets[1].url: must start with http:// or https://, got ftp://…",
        "heartbeat.targets[1].kind: must be one of 'phonehome', 'healthchecks', 'uptime-kuma', 'url', "
        "got 'healthcheck' (did you mean 'healthchecks'?)",
        "monitor.listen: must be HOST:PORT with a port from 1 to 65535 (e.g. '127.0.0.1:8081'), got '8081'",
        "monitor.devices[0].token: must be at least 8 characters; use e.g. the output of 'openssl rand -hex 16'",
    ]


@pytest.mark.parametrize("text, expected", [
    ("[device]\nname = 'my home'", "device.name: must be 1-63 letters"),
    ("[[heartbeat.targets]]\nurl='http://x/'\n[device]\nname='a'", "heartbeat.targets[0].token: required for kind"),
    ("[[heartbeat.targets]]\nurl='http://x/'\nkind='url'\ntoken='abcdefgh'\n[device]\nname='a'",
     "heartbeat.targets[0].token: not used by kind 'url'"),
    ("[[heartbeat.targets]]\nurl='http://x/'\nkind='url'", "device.name: required when heartbeat.targets"),
    ("[[heartbeat.targets]]\nurl='https:///path'\nkind='url'", "heartbeat.targets[0].url: has no host name"),
    ("[heartbeat]\ninterval_s = 5\ntimeout_s = 10", "heartbeat.timeout_s: must not be longer than"),
    ("[heartbeat]\ninterval_s = '60'", "heartbeat.interval_s: must be a number of seconds, got '60'"),
    ("[heartbeat]\ninterval_s = true", "heartbeat.interval_s: must be a number of seconds, got True"),
    ("heartbeat = 5", "heartbeat: must be a table, got 5"),
    ("[[monitor.devices]]\nname='a'", "monitor.devices[0].token: required"),
    ("[[monitor.devices]]\nname='a'\ntoken='abcdefgh'\nmagic='x'", "monitor.devices[0].magic: has no effect"),
    ("[[monitor.devices]]\nname='a'\ntoken='abcdefgh'\n[[monitor.devices]]\nname='a'\ntoken='bcdefghi'",
     "monitor.devices[1].name: 'a' is listed twice"),
    ("[[monitor.devices]]\nname='a'\ntoken='abcdefgh'\n[[monitor.devices]]\nname='b'\ntoken='abcdefgh'",
     "monitor.devices[1].token: is the same as another device's token"),
    ("[[monitor.devices]]\nname='a'\ntoken='abcdefgh'\nmax_silence_s=300\nreminder_every_s=60",
     "monitor.devices[0].reminder_every_s: must be 0 (never) or at least max_silence_s"),
    ("[monitor]\ncanary_urls = ['ftp://example.com/']", "monitor.canary_urls[0]: must start with http:// or https://"),
    ("[monitor]\ncanary_urls = 'https://example.com/'", "monitor.canary_urls: must be a list, got 'https"),
    ("[monitor]\nmass_silence_share = 0", "monitor.mass_silence_share: must be more than 0 and at most 1"),
    ("[monitor]\nmass_silence_share = 1.5", "monitor.mass_silence_share: must be more than 0 and at most 1"),
    ("[monitor]\nmass_silence_share = 'half'", "monitor.mass_silence_share: must be a number, got 'half'"),
    ("[monitor]\nmass_silence_min_devices = 1", "monitor.mass_silence_min_devices: must be at least 2"),
    ("[alerts]\nurls = ['nonsense']", "alerts.urls[0]: is not an Apprise URL"),
    ("[alerts.email]\nsmtp_host='h'\nsender='me'\nto=['you@example.com']",
     "alerts.email.sender: must be an e-mail address"),
    ("[alerts.email]\nsmtp_host='h'\nsender='a@b.c'\nto=[]", "alerts.email.to: must list at least one"),
    ("[alerts.email]\nsmtp_host='h'\nsender='a@b.c'\nto=['x@y.z']\nsmtp_port=0", "alerts.email.smtp_port: must be a port"),
    ("[alerts.email]\nsmtp_host='h'\nsender='a@b.c'\nto=['x@y.z']\nsecurity='tls'", "alerts.email.security: must be one of"),
    ("[alerts.email]\nsmtp_host='h'\nsender='a@b.c'\nto=['x@y.z']\nusername='u'", "alerts.email.password_file: required"),
    ("[alerts.email]\nsender='a@b.c'\nto=['x@y.z']", "alerts.email.smtp_host: required"),
    ("[device\nname='x'", "not valid TOML"),
])
def test_bad_values_are_named_with_what_would_be_accepted(text, expected):
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_relative_data_dir_is_taken_relative_to_the_config_file(tmp_path):
    path = tmp_path / "phonehome.toml"
    path.write_text("data_dir = 'state'\n")
    assert load_config(str(path)).data_dir == str(tmp_path / "state")


def test_non_utf8_file_is_reported(tmp_path):
    path = tmp_path / "phonehome.toml"
    path.write_bytes(b"data_dir = '\xff'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(str(path))


def test_dump_and_load_round_trip(tmp_path):
    c = parse_config(MINIMAL_AGENT + "\n[monitor]\n[[monitor.devices]]\nname='home'\ntoken='0123456789abcdef'\n"
                     "[alerts.email]\nsmtp_host='h'\nsender='a@b.c'\nto=['x@y.z']\n")
    path = tmp_path / "out.toml"
    save_config(str(path), c)
    assert load_config(str(path)) == c
    assert os.stat(path).st_mode & 0o777 == 0o600  # it holds tokens
    assert parse_config(dump_config(c)) == c


def test_reference_lists_every_table_and_key():
    ref = render_reference()
    for needle in ("`[heartbeat]`", "`[[heartbeat.targets]]`", "`[[monitor.devices]]`", "`[alerts.email]`",
                   "`interval_s`", "`max_silence_s`", "`reminder_every_s`", "`give_up_after_s`", "`magic`"):
        assert needle in ref


def test_readme_carries_the_current_reference():
    readme = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
    with open(readme, encoding="utf-8") as f:
        assert render_reference() in f.read(), "README is out of date: paste 'phonehome config-reference' into it"


def test_errors_do_not_repeat_secrets_carried_in_urls():
    found = problems("[[heartbeat.targets]]\nkind='url'\nurl='ftp://host/ping/SECRET-KEY'\n"
                     "[alerts]\nurls=['tgram://SECRET-BOT-TOKEN/']\n[device]\nname='a'")
    assert found and all("SECRET" not in p for p in found), found


def test_an_unconfigured_config_survives_a_round_trip():
    c = parse_config("")
    assert parse_config(dump_config(c)) == c


@pytest.mark.parametrize("text, expected", [
    ("[display]\ni2c_address = 0x80", "display.i2c_address: must be an I2C address from 0x08 to 0x77"),
    ("[display]\nheight = 48", "display.height: must be one of 64, 32, got 48"),
    ("[display]\nrotate = 45", "display.rotate: must be one of 0, 90, 180, 270"),
    ("[display]\ndriver = 'ssd1305'", "display.driver: must be one of 'none', 'ssd1306', 'sh1106', 'emulator', "
                                      "got 'ssd1305' (did you mean 'ssd1306'?)"),
    ("[leds]\ngreen = 1\nred = 27", "leds.green: must be a BCM GPIO number from 2 to 27"),
    ("[leds]\ngreen = 17", "leds.red: set both green and red"),
    ("[leds]\nrgb = [5, 6]", "leds.rgb: must list three pins"),
    ("[leds]\nrgb = [5, 6, 13]\namber = 19", "leds.rgb: set either rgb or green/red/amber"),
    ("[leds]\ngreen = 17\nred = 27\n[button]\npin = 17", "leds: GPIO 17 is used twice"),
    ("[button]\npin = 40", "button.pin: must be a BCM GPIO number from 2 to 27"),
    ("[display]\ndriver = 'ssd1306'\n[button]\npin = 3", "button: GPIO 3 is the I2C bus the display uses"),
])
def test_bad_hardware_settings_are_named(text, expected):
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_durations_longer_than_31_days_are_refused_before_a_thread_waits_on_them():
    with pytest.raises(ConfigError) as exc:
        parse_config("[heartbeat]\ninterval_s = 1e10\n[time]\ncheck_every_s = 99999999999999999999999\n")
    assert exc.value.problems == [
        "heartbeat.interval_s: must be at most 2678400 s (31 days), got 1e+10",
        "time.check_every_s: must be at most 2678400 s (31 days), got 1e+23",
    ]


@pytest.mark.parametrize("text", [
    '[[heartbeat.targets]]\nurl = "pover://USERKEY123@APPTOKENXYZ987"\nkind = "url"\n',
    '[[heartbeat.targets]]\nurl = "https://hc-ping.com/APPTOKENXYZ987"\nkind = "url"\n'
    '[[heartbeat.targets]]\nurl = "https://hc-ping.com/APPTOKENXYZ987"\nkind = "url"\n',
    '[web]\napi_token = 12345678901234567890\n',
    '[monitor]\n[[monitor.devices]]\nname = "a"\ntoken = "x"\nmagic = "APPTOKENXYZ987 "\n',
])
def test_problems_never_repeat_a_secret(text):
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    message = str(exc.value)
    assert "APPTOKENXYZ987" not in message and "apptokenxyz987" not in message and "1234567890" not in message

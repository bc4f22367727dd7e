"""Factory reset on real files: an exact backup (mode 0600, earlier ones kept), a first-boot config that loads
unconfigured and keeps only the hardware, and a new setup code."""

import logging
import os
from pathlib import Path

import pytest

from appliance.config import load_config
from appliance.reset import factory_reset
from appliance.setup import load_setup

NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
OLD = """\
data_dir = "{data_dir}"

[device]
name = "home"

[heartbeat]
interval_s = 30

[[heartbeat.targets]]
url = "https://monitor.example.com/api/v1/heartbeat"
token = "s3cret-token-0f3c9a"

[time]
timezone = "Europe/Berlin"

[display]
driver = "ssd1306"
height = 32

[leds]
green = 17
red = 27
active_high = false

[button]
pin = 4

[web]
listen = "0.0.0.0:80"
api_token = "api-token-s3cret-0123456789"
"""


@pytest.fixture
def files(tmp_path):
    """(config path, data_dir) with a configured appliance that has been claimed."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config_path = tmp_path / "etc" / "phonehome.toml"
    config_path.parent.mkdir()
    config_path.write_text(OLD.format(data_dir=data_dir))
    return str(config_path), str(data_dir)


def test_the_backup_is_an_exact_private_copy(files):
    config_path, data_dir = files
    before = Path(config_path).read_bytes()
    backup = factory_reset(config_path, data_dir, now_wall=NOW)
    assert backup == config_path + ".bak-20231114T221320Z"
    assert Path(backup).read_bytes() == before
    assert os.stat(backup).st_mode & 0o777 == 0o600


def test_the_new_config_is_first_boot_with_the_hardware_kept(files):
    config_path, data_dir = files
    factory_reset(config_path, data_dir, now_wall=NOW)
    config = load_config(config_path, missing_ok=False)
    assert not config.agent_configured
    assert config.device.name == "" and config.heartbeat.targets == () and config.heartbeat.interval_s == 60.0
    assert config.time.timezone == ""
    # The box itself is unchanged, so its button and display can show the new setup code.
    assert (config.display.driver, config.display.height) == ("ssd1306", 32)
    assert (config.leds.green, config.leds.red, config.leds.active_high) == (17, 27, False)
    assert config.button.pin == 4 and config.data_dir == data_dir
    # The page stays where the browser is, without the API token.
    assert config.web.listen == "0.0.0.0:80" and config.web.api_token == ""
    text = Path(config_path).read_text()
    assert "s3cret" not in text and "[device]" not in text and "Berlin" not in text
    assert text.startswith("# phonehome: written by a factory reset on 2023-11-14 22:13:20 UTC; the old one is ")
    assert os.stat(config_path).st_mode & 0o777 == 0o600


def test_the_admin_password_is_forgotten(files):
    from appliance.auth import Passwords
    from appliance.setup import claim

    config_path, data_dir = files
    claim(data_dir, load_setup(data_dir).code, "a password to forget")
    factory_reset(config_path, data_dir, now_wall=NOW)
    assert not Passwords(data_dir).is_set and not load_setup(data_dir).claimed


def test_a_new_setup_code_is_made(files):
    config_path, data_dir = files
    old = load_setup(data_dir)
    factory_reset(config_path, data_dir, now_wall=NOW)
    new = load_setup(data_dir)
    assert new.code != old.code and not new.claimed


def test_two_resets_keep_two_backups(files):
    config_path, data_dir = files
    first = factory_reset(config_path, data_dir, now_wall=NOW)
    first_boot = Path(config_path).read_bytes()
    second = factory_reset(config_path, data_dir, now_wall=NOW + 60)
    assert second == config_path + ".bak-20231114T221420Z"
    assert "s3cret" in Path(first).read_text() and Path(second).read_bytes() == first_boot
    third = factory_reset(config_path, data_dir, now_wall=NOW + 60)  # the same second again
    assert third == second + "-2"
    backups = sorted(n for n in os.listdir(os.path.dirname(config_path)) if ".bak-" in n)
    assert backups == ["phonehome.toml.bak-20231114T221320Z", "phonehome.toml.bak-20231114T221420Z",
                       "phonehome.toml.bak-20231114T221420Z-2"]


def test_one_log_line_says_where_the_backup_is(files, caplog):
    config_path, data_dir = files
    with caplog.at_level(logging.INFO, logger="phonehome.reset"):
        backup = factory_reset(config_path, data_dir, now_wall=NOW)
    lines = [r.getMessage() for r in caplog.records if r.name == "phonehome.reset"]
    assert len(lines) == 1 and backup in lines[0] and "factory reset" in lines[0]


def test_a_missing_config_still_resets_and_says_so(tmp_path, caplog):
    config_path, data_dir = str(tmp_path / "phonehome.toml"), str(tmp_path / "data")
    old = load_setup(data_dir)
    assert factory_reset(config_path, data_dir, now_wall=NOW) is None
    assert "no config file at" in caplog.text and config_path in caplog.text
    config = load_config(config_path, missing_ok=False)
    assert not config.agent_configured and config.data_dir == data_dir
    assert load_setup(data_dir).code != old.code
    assert [n for n in os.listdir(tmp_path) if ".bak-" in n] == []


def test_an_invalid_config_is_backed_up_and_replaced(files, caplog):
    config_path, data_dir = files
    Path(config_path).write_bytes(b"[device]\nname = 'home'\nbogus = 1\n\xff")
    backup = factory_reset(config_path, data_dir, now_wall=NOW)
    assert Path(backup).read_bytes() == b"[device]\nname = 'home'\nbogus = 1\n\xff"
    assert "keeps none of its settings" in caplog.text
    config = load_config(config_path, missing_ok=False)
    assert config.button.pin is None and config.data_dir == data_dir

"""The System settings page and the dashboard's root file system line: the read-only root setting is saved
through the schema, the agent keeps the initramfs's flag file in step with the config, and both pages say what
is mounted now and what the next reboot changes."""

import html

import pytest

from appliance import rootfs
from appliance.config import load_config
from tests.test_rootfs import MOUNTS_OVERLAY, MOUNTS_WRITABLE
from tests.web.test_settings import submit, text


@pytest.fixture
def system(tmp_path, monkeypatch):
    """Where rootfs.state reads /proc/mounts and the boot report: files of the test's (writable root, no report)."""
    mounts, report = tmp_path / "mounts", tmp_path / "boot-report"
    mounts.write_text(MOUNTS_WRITABLE)
    monkeypatch.setattr(rootfs, "MOUNTS", str(mounts))
    monkeypatch.setattr(rootfs, "BOOT_REPORT", str(report))
    return mounts, report


def page(browser, url="/settings/system"):
    return html.unescape(text(browser.get(url)))


def flag(appliance):
    return appliance.dir / "read-only-root"


def test_the_page_shows_the_setting_the_root_now_and_how_to_reboot(appliance, system):
    browser = appliance.claimed_browser()
    shown = page(browser)
    assert 'name="read_only_root" type="checkbox" value="1">' in shown  # not ticked
    assert "Now: writable." in shown
    assert 'href="/actions#reboot"' in shown
    assert "phonehome.overlay=off" in shown


def test_ticking_the_box_saves_the_setting_sets_the_flag_and_says_a_reboot_is_due(appliance, system):
    browser = appliance.claimed_browser()
    response = submit(browser, "/settings/system", {"read_only_root": "1"})
    assert response.status_code == 302, text(response)
    assert load_config(appliance.config_path).system.read_only_root is True
    assert appliance.role.config.system.read_only_root is True
    assert flag(appliance).exists()
    shown = page(browser)
    assert 'name="read_only_root" type="checkbox" value="1" checked' in shown
    assert "Now: writable; read-only (overlay) after the next reboot." in shown
    assert "root file system read-only with a RAM overlay" in page(browser, "/settings")

    response = submit(browser, "/settings/system", {"read_only_root": None})
    assert response.status_code == 302, text(response)
    assert load_config(appliance.config_path).system.read_only_root is False
    assert not flag(appliance).exists()
    assert "Now: writable." in page(browser)
    assert "root file system writable" in page(browser, "/settings")


def test_the_flag_follows_the_config_file_when_the_agent_applies_it(appliance_factory):
    appliance = appliance_factory("[system]\nread_only_root = true\n")
    assert flag(appliance).exists()  # set when the agent starts
    with open(appliance.config_path) as f:
        before = f.read()
    with open(appliance.config_path, "w") as f:
        f.write(before.replace("read_only_root = true", "read_only_root = false"))
    assert appliance.role.reload_now().ok
    assert not flag(appliance).exists()
    with open(appliance.config_path, "w") as f:
        f.write(before)
    assert appliance.role.reload_now().ok
    assert flag(appliance).exists()


def test_a_config_file_with_a_bad_value_changes_nothing(appliance_factory):
    appliance = appliance_factory("[system]\nread_only_root = true\n")
    with open(appliance.config_path) as f:
        before = f.read()
    with open(appliance.config_path, "w") as f:
        f.write(before.replace("read_only_root = true", 'read_only_root = "no"'))
    applied = appliance.role.reload_now()
    assert not applied.ok
    assert "system.read_only_root: must be true or false, got 'no'" in applied.error
    assert flag(appliance).exists() and appliance.role.config.system.read_only_root is True


def test_the_pages_say_when_the_overlay_is_in_effect(appliance_factory, system):
    mounts, _ = system
    mounts.write_text(MOUNTS_OVERLAY)
    appliance = appliance_factory("[system]\nread_only_root = true\n")
    browser = appliance.claimed_browser()
    assert "Now: read-only (overlay)." in page(browser)
    dashboard = page(browser, "/")
    assert '<dd id="rootfs">read-only (overlay) (<a href="/settings/system">System settings</a>)</dd>' in dashboard
    submit(browser, "/settings/system", {"read_only_root": None})
    assert "read-only (overlay); writable after the next reboot" in page(browser, "/")


def test_the_pages_say_why_the_overlay_asked_for_is_not_there(appliance_factory, system):
    _, report = system
    report.write_text("failed: cannot mount the overlay (is the overlay module in the initramfs?)\n")
    appliance = appliance_factory("[system]\nread_only_root = true\n")
    browser = appliance.claimed_browser()
    why = "writable: the read-only root was not set up at this boot (cannot mount the overlay"
    assert why in page(browser)
    assert why in page(browser, "/")


def test_the_dashboard_reads_this_machines_mounts(appliance):
    browser = appliance.claimed_browser()
    expected = rootfs.state(appliance.config_path).text
    assert f'<dd id="rootfs">{html.escape(expected)}' in text(browser.get("/"))


def test_the_system_page_needs_a_login(appliance):
    appliance.claimed_browser()
    response = appliance.browser().get("/settings/system")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


@pytest.mark.parametrize("form, field, message", [
    ({"hotspot_after_s": "5"}, "hotspot_after_s", "at least 10"),
    ({"hotspot_after_s": "soon"}, "hotspot_after_s", "120"),
    ({"interface": "wl an"}, "interface", "network interface name"),
])
def test_bad_hotspot_settings_are_refused_next_to_their_field(appliance, form, field, message):
    browser = appliance.claimed_browser()
    before = open(appliance.config_path, "rb").read()
    sent = {"hotspot": "on", "hotspot_after_s": "120", "interface": "wlan0", **form}
    answer = browser.post("/settings/system", sent)
    text = answer.get_data(as_text=True)
    assert answer.status_code == 400 and message in text and f'id="e-{field}"' in text
    assert open(appliance.config_path, "rb").read() == before


def test_the_hotspot_settings_save(appliance):
    browser = appliance.claimed_browser()
    answer = browser.post("/settings/system", {"hotspot_after_s": "300", "interface": "wlan1"})
    assert answer.status_code in (200, 302), answer.get_data(as_text=True)
    wifi = load_config(appliance.config_path).wifi
    assert (wifi.hotspot, wifi.hotspot_after_s, wifi.interface) == (False, 300.0, "wlan1")

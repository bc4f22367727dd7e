"""``phonehome time check`` and ``phonehome time set-timezone``: the real installed command, as a subprocess,
against chrony and responders on 127.0.0.1; the printout itself, from a status."""

import os
import re
import subprocess
import sys

import pytest

from appliance.timecheck.checker import TimeStatus
from appliance.timecheck.ntp import ServerAnswer
from appliance.timecheck.report import render_check
from appliance.timecheck.tracking import ServerStatus

PHONEHOME = os.path.join(os.path.dirname(sys.executable), "phonehome")


@pytest.fixture
def tools(tmp_path):
    """A bin directory that is the command's whole PATH (with the venv's): no real timedatectl, chronyc or ntpq
    unless a test puts one there, so the result does not depend on what runs on this machine."""
    path = tmp_path / "bin"
    path.mkdir()

    def add(name, script):
        tool = path / name
        tool.write_text("#!/bin/sh\n" + script)
        tool.chmod(0o755)

    add.path = str(path)
    return add


def phonehome(tools, *args):
    env = {**os.environ, "PATH": f"{tools.path}:{os.path.dirname(sys.executable)}"}
    return subprocess.run([PHONEHOME, *args], capture_output=True, text=True, timeout=30, env=env)


def config(tmp_path, servers, *, timezone=""):
    path = tmp_path / "phonehome.toml"
    listed = ", ".join(f'"{s}"' for s in servers)
    # 2 s: the loopback servers must answer even on a busy machine (a silent one costs the test 2 s).
    path.write_text(f'data_dir = "{tmp_path}"\n[time]\nservers = [{listed}]\ntimeout_s = 2\n'
                    f'timezone = "{timezone}"\n')
    return str(path)


def test_check_prints_a_table_and_exits_0_when_ok(tmp_path, tools, chrony, chronyc, ntp_server):
    # chronyc on PATH is the real one, pointed at the loopback chronyd's command socket.
    tools("chronyc", f'exec {chronyc} -h {chrony.socket_path} "$@"\n')
    specs = [chrony.spec, ntp_server().spec, ntp_server(skew_s=0.0005).spec, ntp_server(skew_s=-0.0005).spec]
    done = phonehome(tools, "time", "check", "--config", config(tmp_path, specs))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert re.match(r"remote\s+refid\s+st\s+reach\s+delay\s+offset\s+jitter\s+status$", lines[0])
    assert set(lines[1]) == {"="}
    rows = lines[2:6]
    assert [r.split()[0] for r in rows] == specs
    assert re.match(rf"{re.escape(chrony.spec)}\s+127\.127\.1\.1\s+[89]\s+001\s+[\d.]+\s+[-+][\d.]+\s+-\s+ok$",
                    rows[0]), rows[0]
    assert all(r.endswith(" ok") for r in rows)
    assert "time service: chrony: synchronised to 7F7F0101, stratum 8" in done.stdout
    assert "time zone:    " in done.stdout and "(not checked: [time] timezone is empty)" in done.stdout
    assert re.search(r"^verdict:      ok: clock [\d.]+ ms (ahead of|behind) 4 servers$", done.stdout, re.M)
    assert done.stderr == ""


def test_check_exits_1_when_the_only_servers_are_skewed(tmp_path, tools, ntp_server):
    specs = [ntp_server(skew_s=2.3).spec, ntp_server(skew_s=2.3).spec]
    done = phonehome(tools, "time", "check", "--config", config(tmp_path, specs))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "verdict:      drifting: clock 2.3 s behind 2 servers" in done.stdout
    assert "time service: none found (chronyc: not installed; ntpq: not installed; timedatectl: not installed)" \
        in done.stdout


def test_check_shows_each_servers_problem(tmp_path, tools, ntp_server):
    specs = [ntp_server(stratum=0, refid=b"RATE").spec, ntp_server(silent=True).spec, "unresolvable.invalid"]
    done = phonehome(tools, "time", "check", "--config", config(tmp_path, specs))
    assert done.returncode == 1
    assert re.search(r"RATE\s+0\s+001\s+-\s+-\s+-\s+kiss-of-death RATE", done.stdout)
    assert re.search(r"unresolvable\.invalid\s+-\s+-\s+000\s+-\s+-\s+-\s+unresolvable host \(check the name\)$",
                     done.stdout, re.M)
    assert re.search(r"\s+000\s+-\s+-\s+-\s+no answer within 2 s \(is outbound UDP port \d+ allowed\?\)$",
                     done.stdout, re.M)
    assert "verdict:      unreachable: none of 3 servers answered usefully" in done.stdout


def test_check_exits_2_naming_the_bad_key(tmp_path, tools):
    done = phonehome(tools, "time", "check", "--config", config(tmp_path, ["127.0.0.1:9"], timezone="Mars/Olympus"))
    assert done.returncode == 2
    assert "time.timezone: is not a time zone in the IANA database, got 'Mars/Olympus'" in done.stderr
    assert done.stdout == ""


def test_time_without_an_action_is_bad_usage(tools):
    assert phonehome(tools, "time").returncode == 2


def test_set_timezone_not_permitted_exits_1_saying_what_to_do(tmp_path, tools):
    tools("timedatectl", 'if [ "$1" = set-timezone ]; then echo "Failed to set time zone: Access denied" >&2; '
                         'exit 1; fi\necho Etc/UTC\n')
    done = phonehome(tools, "time", "set-timezone", "Europe/Berlin", "--config", config(tmp_path, []))
    assert done.returncode == 1
    assert done.stderr.startswith("phonehome: not permitted to set the time zone (Failed to set time zone: "
                                  "Access denied): run as root (sudo phonehome time set-timezone Europe/Berlin) "
                                  "or give the phonehome user the right")


def test_set_timezone_runs_timedatectl_and_says_what_it_did(tmp_path, tools):
    calls = tmp_path / "calls"
    tools("timedatectl", f'echo "$@" >> {calls}\n[ "$1" = set-timezone ] && exit 0\necho Etc/UTC\n')
    done = phonehome(tools, "time", "set-timezone", "America/New_York", "--config",
                     config(tmp_path, [], timezone="Europe/Berlin"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "time zone set to America/New_York (was Etc/UTC)",
        f"note: [time] timezone in {tmp_path / 'phonehome.toml'} is 'Europe/Berlin'; the clock check will say "
        f"'wrong-zone' until the two match"]
    assert "set-timezone America/New_York" in calls.read_text().splitlines()


def test_set_timezone_with_an_unknown_zone_is_bad_usage_and_runs_nothing(tmp_path, tools):
    calls = tmp_path / "calls"
    tools("timedatectl", f'echo "$@" >> {calls}\n')
    done = phonehome(tools, "time", "set-timezone", "Mars/Olympus", "--config", config(tmp_path, []))
    assert done.returncode == 2
    assert "ZONE is not a time zone in the IANA database, got 'Mars/Olympus'" in done.stderr
    assert not calls.exists() or "set-timezone" not in calls.read_text()


def test_render_check_without_servers():
    status = TimeStatus(verdict="wrong-zone", reason="clock in Etc/UTC, expected Europe/Berlin", service="chrony",
                        synchronized=True, system_zone="Etc/UTC", wanted_zone="Europe/Berlin", checked_at=1.0,
                        service_detail="chrony: synchronised to 192.0.2.1, stratum 2", zone_matches=False)
    assert render_check(status) == (
        "no NTP servers configured ([time] servers is empty)\n"
        "\n"
        "time service: chrony: synchronised to 192.0.2.1, stratum 2\n"
        "time zone:    Etc/UTC, but [time] timezone is Europe/Berlin: run 'phonehome time set-timezone "
        "Europe/Berlin' as root\n"
        "verdict:      wrong-zone: clock in Etc/UTC, expected Europe/Berlin\n")


def test_render_check_table_columns():
    answer = ServerAnswer("ntp.lan", "ok", "ok", address="192.0.2.1", offset_ms=-2300.0571, delay_ms=0.3094,
                          stratum=2, leap=0, refid="192.0.2.9")
    status = TimeStatus(verdict="drifting", reason="…", servers=(ServerStatus(answer, reach=0o377,
                        offsets_ms=(-2300.0, -2301.0)),), system_zone="Europe/Berlin", wanted_zone="Europe/Berlin",
                        zone_matches=True, service_detail="none found (…)")
    text = render_check(status)
    assert "ntp.lan  192.0.2.9   2    377  0.309  -2300.057   1.000  ok" in text
    assert "time zone:    Europe/Berlin (as configured)" in text

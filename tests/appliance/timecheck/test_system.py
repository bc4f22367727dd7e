"""The time service and the time zone: recorded outputs of timedatectl, chronyc and ntpq, plus the real tools."""

import re

import pytest

from appliance.errors import TimezoneError
from appliance.timecheck.system import (
    Ran, check_zone, read_sync_state, read_system, read_system_zone, run_command, same_zone, set_timezone,
)

# -- recorded outputs (LC_ALL=C) ------------------------------------------------

CHRONY_SYNCED = """\
Reference ID    : C0A80101 (192.168.1.1)
Stratum         : 3
Ref time (UTC)  : Wed Nov 25 03:40:12 2026
System time     : 0.000012345 seconds slow of NTP time
Last offset     : -0.000023456 seconds
RMS offset      : 0.000034567 seconds
Frequency       : 12.345 ppm fast
Residual freq   : -0.001 ppm
Skew            : 0.045 ppm
Root delay      : 0.012345678 seconds
Root dispersion : 0.001234567 seconds
Update interval : 64.2 seconds
Leap status     : Normal
"""

CHRONY_UNSYNCED = """\
Reference ID    : 00000000 ()
Stratum         : 0
Ref time (UTC)  : Thu Jan 01 00:00:00 1970
System time     : 0.000000000 seconds fast of NTP time
Last offset     : +0.000000000 seconds
RMS offset      : 0.000000000 seconds
Frequency       : 0.000 ppm slow
Residual freq   : +0.000 ppm
Skew            : 0.000 ppm
Root delay      : 1.000000000 seconds
Root dispersion : 1.000000000 seconds
Update interval : 0.0 seconds
Leap status     : Not synchronised
"""

NTPD_SYNCED = """\
associd=0 status=0615 leap_none, sync_ntp, 1 event, clock_sync,
version="ntpd 4.2.8p15@1.3728-o Wed Sep 23 11:46:38 UTC 2020 (1)",
processor="aarch64", system="Linux/6.1.0-rpi7-rpi-v8", leap=00, stratum=3,
precision=-23, rootdelay=18.262, rootdisp=26.409, refid=192.168.1.1,
reftime=eb0e4f2c.3c8d7e4f  Wed, Nov 25 2026  3:40:12.236,
clock=eb0e4f4a.12345678  Wed, Nov 25 2026  3:40:42.071, peer=12345, tc=6,
mintc=3, offset=-0.345678, frequency=-12.345, sys_jitter=0.234567,
clk_jitter=0.123, clk_wander=0.012
"""

NTPD_UNSYNCED = """\
associd=0 status=c016 leap_alarm, sync_unspec, 1 event, restart,
version="ntpd 4.2.8p15@1.3728-o Wed Sep 23 11:46:38 UTC 2020 (1)",
processor="aarch64", system="Linux/6.1.0-rpi7-rpi-v8", leap=11, stratum=16,
precision=-23, rootdelay=0.000, rootdisp=2.025, refid=INIT,
reftime=00000000.00000000  Mon, Jan  1 1900  0:00:00.000,
clock=eb0e4f4a.12345678  Wed, Nov 25 2026  3:40:42.071, peer=0, tc=3,
mintc=3, offset=+0.000000, frequency=+0.000, sys_jitter=0.000000,
clk_jitter=0.000, clk_wander=0.000
"""

NTPSEC_SYNCED = """\
associd=0 status=0618 leap_none, sync_ntp, 1 event, no_sys_peer,
version="ntpd ntpsec-1.2.2 2023-02-15T12:34:56Z",
processor="aarch64", system="Linux/6.1.0-rpi7-rpi-v8", leap=00, stratum=2,
precision=-23, rootdelay=1.236, rootdisp=8.011, refid=162.159.200.1,
reftime=eb0e4f2c.3c8d7e4f 2026-11-25T03:40:12.236Z,
clock=eb0e4f4a.12345678 2026-11-25T03:40:42.071Z, peer=55851, tc=10,
mintc=0, offset=+0.104117, frequency=-7.349, sys_jitter=0.117624,
clk_jitter=0.086, clk_wander=0.005, tai=37, leapsec=201701010000,
expire=202612280000
"""

NTPQ_NO_DAEMON = "ntpq: read: Connection refused\n"

TIMEDATECTL_SYNCED = """\
Timezone=Europe/Berlin
LocalRTC=no
CanNTP=yes
NTP=yes
NTPSynchronized=yes
TimeUSec=Wed 2026-11-25 04:40:42 CET
RTCTimeUSec=n/a
"""

TIMEDATECTL_UNSYNCED = TIMEDATECTL_SYNCED.replace("NTPSynchronized=yes", "NTPSynchronized=no")
TIMEDATECTL_NTP_OFF = TIMEDATECTL_SYNCED.replace("NTP=yes", "NTP=no")

TIMESYNC = """\
LinkNTPServers=
SystemNTPServers=
FallbackNTPServers=0.debian.pool.ntp.org 1.debian.pool.ntp.org 2.debian.pool.ntp.org 3.debian.pool.ntp.org
ServerName=0.debian.pool.ntp.org
ServerAddress=162.159.200.123
RootDistanceMaxUSec=5s
PollIntervalMinUSec=32s
PollIntervalMaxUSec=34min 8s
PollIntervalUSec=34min 8s
NTPMessage={ Leap=0, Version=4, Mode=4, Stratum=3, Precision=-25, RootDelay=10.253ms, RootDispersion=518us, \
Reference=A29FC87B, OriginateTimestamp=Wed 2026-11-25 04:12:01 CET, ReceiveTimestamp=Wed 2026-11-25 04:12:01 CET, \
TransmitTimestamp=Wed 2026-11-25 04:12:01 CET, DestinationTimestamp=Wed 2026-11-25 04:12:01 CET, Ignored=no, \
PacketCount=12, Jitter=1.093ms }
Frequency=-1234567
"""

NO_SYSTEMD = ("System has not been booted with systemd as init system (PID 1). Can't operate.\n"
              "Failed to connect to bus: Host is down\n")
CHRONYC_NO_DAEMON = "506 Cannot talk to daemon\n"


class Runner:
    """Plays back recorded outputs by command; anything not recorded is "not installed". Records the calls."""

    def __init__(self, outputs=None):
        self.outputs = {tuple(k.split()): v for k, v in (outputs or {}).items()}
        self.calls = []

    def __call__(self, argv, **kwargs):
        argv = tuple(argv)
        self.calls.append(argv)
        out = self.outputs.get(argv)
        if out is None:
            return Ran(argv, None, problem="not installed")
        if isinstance(out, Ran):
            return out
        code, stdout, stderr = out
        return Ran(argv, code, stdout, stderr)


@pytest.mark.parametrize("outputs, service, synchronized, detail", [
    ({"chronyc -n tracking": (0, CHRONY_SYNCED, "")}, "chrony", True,
     "chrony: synchronised to 192.168.1.1, stratum 3, system time 0.012 ms slow"),
    ({"chronyc -n tracking": (0, CHRONY_UNSYNCED, "")}, "chrony", False,
     "chrony: not synchronised (leap status 'Not synchronised')"),
    ({"chronyc -n tracking": (1, "", CHRONYC_NO_DAEMON), "ntpq -c rv": (0, NTPD_SYNCED, "")}, "ntpd", True,
     "ntpd: synchronised to 192.168.1.1, stratum 3, offset -0.345678 ms"),
    ({"ntpq -c rv": (0, NTPD_UNSYNCED, "")}, "ntpd", False, "ntpd: not synchronised (leap_alarm, sync_unspec)"),
    ({"ntpq -c rv": (0, NTPSEC_SYNCED, "")}, "ntpsec", True,
     "ntpsec: synchronised to 162.159.200.1, stratum 2, offset +0.104117 ms"),
    ({"ntpq -c rv": (1, "", NTPQ_NO_DAEMON), "timedatectl show": (0, TIMEDATECTL_SYNCED, ""),
      "timedatectl show-timesync": (0, TIMESYNC, "")}, "timesyncd", True,
     "timesyncd: synchronised to 0.debian.pool.ntp.org (162.159.200.123)"),
    ({"timedatectl show": (0, TIMEDATECTL_SYNCED, "")}, "timesyncd", True, "timesyncd: synchronised"),
    ({"timedatectl show": (0, TIMEDATECTL_UNSYNCED, "")}, "timesyncd", False,
     "timesyncd: not synchronised (NTPSynchronized=no)"),
    # chrony runs and also owns timedatectl's NTP=yes: the first service that answers is the one reported
    ({"chronyc -n tracking": (0, CHRONY_SYNCED, ""), "timedatectl show": (0, TIMEDATECTL_UNSYNCED, "")}, "chrony",
     True, "chrony: synchronised to 192.168.1.1, stratum 3, system time 0.012 ms slow"),
])
def test_the_running_service_and_its_state(outputs, service, synchronized, detail):
    state = read_sync_state(run=Runner(outputs))
    assert (state.service, state.synchronized, state.detail) == (service, synchronized, detail)


def test_none_found_says_what_each_tool_said():
    runner = Runner({"chronyc -n tracking": (1, "", CHRONYC_NO_DAEMON), "ntpq -c rv": (1, "", NTPQ_NO_DAEMON),
                     "timedatectl show": (1, "", NO_SYSTEMD)})
    state = read_sync_state(run=runner)
    assert (state.service, state.synchronized) == ("none", None)
    assert state.detail == ("none found (chronyc: 506 Cannot talk to daemon; ntpq: read: Connection refused; "
                            "timedatectl: System has not been booted with systemd as init system (PID 1). "
                            "Can't operate.)")


def test_none_found_when_no_tool_is_installed_or_timesyncd_is_off():
    assert read_sync_state(run=Runner()).detail == \
        "none found (chronyc: not installed; ntpq: not installed; timedatectl: not installed)"
    off = read_sync_state(run=Runner({"timedatectl show": (0, TIMEDATECTL_NTP_OFF, "")}))
    assert off.service == "none" and "network time sync is off (NTP=no)" in off.detail


def test_a_tool_that_hangs_is_reported_not_waited_for():
    runner = Runner({"chronyc -n tracking": Ran(("chronyc",), None, problem="no answer within 5 s")})
    assert "chronyc: no answer within 5 s" in read_sync_state(run=runner).detail


# -- the real tools ----------------------------------------------------------


def test_the_real_tools_report_what_really_runs():
    # No fakes: the real chronyc, ntpq and timedatectl, whichever are installed, against whatever runs. What the
    # tools themselves answer decides what is expected, so a chronyd that another program started on this
    # machine (one this test cannot talk to) cannot make the test wrong.
    state = read_sync_state()
    if run_command(["chronyc", "-n", "tracking"]).returncode == 0:
        expected = {"chrony"}
    elif run_command(["ntpq", "-c", "rv"]).returncode == 0:
        expected = {"ntpd", "ntpsec"}
    elif "NTPSynchronized=" in (run_command(["timedatectl", "show"]).stdout or ""):
        expected = {"timesyncd"}
    else:
        expected = set()
    if expected:
        assert state.service in expected and state.synchronized in (True, False), state
    else:
        assert (state.service, state.synchronized) == ("none", None), state
        assert re.fullmatch(r"none found \(chronyc: .+; ntpq: .+; timedatectl: .+\)", state.detail), state.detail


def test_real_chronyc_against_the_loopback_chronyd(chrony, chronyc):
    state = read_sync_state(chronyc=(chronyc, "-h", chrony.socket_path))
    assert (state.service, state.synchronized) == ("chrony", True), state
    assert state.detail.startswith("chrony: synchronised to 7F7F0101, stratum 8"), state.detail


def test_run_command_never_raises():
    assert run_command(["phonehome-no-such-tool"]).problem == "not installed"
    slow = run_command(["sleep", "5"], timeout_s=0.2)
    assert (slow.returncode, slow.problem) == (None, "no answer within 0.2 s")
    said = run_command(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (said.returncode, said.stdout, said.stderr) == (3, "out\n", "err\n")
    assert said.why() == "sh: err"


# -- the time zone -----------------------------------------------------------


def test_the_zone_from_timedatectl():
    runner = Runner({"timedatectl show -p Timezone --value": (0, "America/New_York\n", "")})
    assert read_system_zone(run=runner, localtime="/nonexistent", timezone_file="/nonexistent") == "America/New_York"


@pytest.mark.parametrize("target, zone", [
    ("/usr/share/zoneinfo/Europe/Berlin", "Europe/Berlin"),
    ("../usr/share/zoneinfo/America/Argentina/Buenos_Aires", "America/Argentina/Buenos_Aires"),
    ("/usr/share/zoneinfo/posix/Asia/Tokyo", "Asia/Tokyo"),
    ("/usr/share/zoneinfo/Etc/UTC", "Etc/UTC"),
])
def test_the_zone_from_the_localtime_symlink(tmp_path, target, zone):
    localtime = tmp_path / "localtime"
    localtime.symlink_to(target)
    runner = Runner({"timedatectl show -p Timezone --value": (1, "", NO_SYSTEMD)})
    assert read_system_zone(run=runner, localtime=str(localtime), timezone_file=str(tmp_path / "none")) == zone


def test_the_zone_from_etc_timezone_when_localtime_is_a_copy(tmp_path):
    (tmp_path / "localtime").write_bytes(b"TZif2 copy")
    (tmp_path / "timezone").write_text("Australia/Perth\n")
    paths = dict(localtime=str(tmp_path / "localtime"), timezone_file=str(tmp_path / "timezone"))
    assert read_system_zone(run=Runner(), **paths) == "Australia/Perth"
    (tmp_path / "timezone").unlink()
    assert read_system_zone(run=Runner(), **paths) is None


def test_same_zone_follows_links_in_the_zone_database(tmp_path):
    for name, data in {"Etc/UTC": b"utc", "UTC": b"utc", "America/New_York": b"ny", "US/Eastern": b"ny"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    zi = dict(zoneinfo_dir=str(tmp_path))
    assert same_zone("Etc/UTC", "UTC", **zi) and same_zone("US/Eastern", "America/New_York", **zi)
    assert same_zone("posix/Etc/UTC", "Etc/UTC", **zi)
    assert not same_zone("Etc/UTC", "America/New_York", **zi)
    assert not same_zone(None, "Etc/UTC", **zi)
    assert not same_zone("Mars/Base", "Mars/Colony", **zi)  # not in the database: only equal names match
    assert check_zone("UTC", "Etc/UTC", **zi).matches is True
    assert check_zone("UTC", "America/New_York", **zi).matches is False
    assert check_zone("UTC", "", **zi).matches is None


def test_read_system_reads_both():
    runner = Runner({"chronyc -n tracking": (0, CHRONY_SYNCED, ""),
                     "timedatectl show -p Timezone --value": (0, "Europe/Berlin\n", "")})
    reading = read_system(run=runner)
    assert (reading.sync.service, reading.zone) == ("chrony", "Europe/Berlin")


class SlowTools(Runner):
    """A Runner on a fake monotonic clock: each command returns at once but "takes" ``each_s`` of it.

    Records the timeout every command was given."""

    def __init__(self, outputs=None, *, each_s):
        super().__init__(outputs)
        self.each_s = each_s
        self.mono = 100.0
        self.timeouts = []

    def monotonic(self):
        return self.mono

    def __call__(self, argv, *, timeout_s):
        self.timeouts.append(timeout_s)
        self.mono += self.each_s
        return super().__call__(argv)


def test_read_system_fits_every_command_into_one_budget():
    tools = SlowTools(each_s=2.0)
    reading = read_system(run=tools, timeout_s=5.0, monotonic=tools.monotonic)
    assert tools.timeouts == [5.0, 3.0, 1.0]  # each command gets what is left
    assert tools.calls == [("chronyc", "-n", "tracking"), ("ntpq", "-c", "rv"), ("timedatectl", "show")]
    assert reading.sync.detail == "none found (chronyc: not installed; ntpq: not installed; timedatectl: not installed)"
    # The zone's timedatectl was not run: out of time (the zone then comes from /etc/localtime or nowhere).


def test_commands_past_the_budget_are_not_asked_and_say_so():
    tools = SlowTools({"chronyc -n tracking": (1, "", CHRONYC_NO_DAEMON)}, each_s=2.5)
    reading = read_system(run=tools, timeout_s=5.0, monotonic=tools.monotonic)
    assert tools.timeouts == [5.0, 2.5]
    assert reading.sync.detail == ("none found (chronyc: 506 Cannot talk to daemon; ntpq: not installed; "
                                   "timedatectl: not asked: out of time)")


def test_a_synchronised_timesyncd_within_the_budget():
    tools = SlowTools({"timedatectl show": (0, TIMEDATECTL_SYNCED, ""), "timedatectl show-timesync": (0, TIMESYNC, ""),
                       "timedatectl show -p Timezone --value": (0, "Europe/Berlin\n", "")}, each_s=0.1)
    reading = read_system(run=tools, timeout_s=5.0, monotonic=tools.monotonic)
    assert tools.timeouts == pytest.approx([5.0, 4.9, 4.8, 4.7, 4.6])
    assert (reading.sync.service, reading.sync.synchronized, reading.zone) == ("timesyncd", True, "Europe/Berlin")


# -- setting the zone -------------------------------------------------------


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../../etc/passwd", "Europe/Berlin;reboot"])
def test_a_bad_zone_is_refused_before_anything_runs(zone):
    runner = Runner({"timedatectl set-timezone Europe/Berlin": (0, "", "")})
    with pytest.raises(TimezoneError) as caught:
        set_timezone(zone, run=runner)
    assert caught.value.usage
    assert str(caught.value).startswith("ZONE ")
    assert runner.calls == []


def test_setting_the_zone_runs_timedatectl():
    runner = Runner({"timedatectl set-timezone America/New_York": (0, "", "")})
    set_timezone("America/New_York", run=runner)
    assert runner.calls == [("timedatectl", "set-timezone", "America/New_York")]


@pytest.mark.parametrize("stderr", [
    "Failed to set time zone: Access denied\n",
    "Failed to set time zone: Interactive authentication required.\n",
])
def test_not_permitted_says_run_as_root_or_grant_the_right(stderr):
    runner = Runner({"timedatectl set-timezone Europe/Berlin": (1, "", stderr)})
    with pytest.raises(TimezoneError) as caught:
        set_timezone("Europe/Berlin", run=runner)
    message = str(caught.value)
    assert caught.value.permitted is False and not caught.value.usage
    assert message.startswith("not permitted to set the time zone (Failed to set time zone: ")
    assert "run as root (sudo phonehome time set-timezone Europe/Berlin)" in message
    assert "give the phonehome user the right" in message and "org.freedesktop.timedate1.set-timezone" in message


@pytest.mark.parametrize("outputs, expected", [
    ({}, "timedatectl is not installed (it comes with systemd)"),
    ({"timedatectl set-timezone Europe/Berlin": (1, "", "Failed to set time zone: Invalid or unavailable time "
                                                        "zone 'Europe/Berlin'\n")},
     "'Europe/Berlin' is not in this system's time-zone database"),
    ({"timedatectl set-timezone Europe/Berlin": (1, "", NO_SYSTEMD)}, "timedatectl cannot reach systemd"),
    ({"timedatectl set-timezone Europe/Berlin": Ran(("timedatectl",), None, problem="no answer within 5 s")},
     "timedatectl gave no answer (no answer within 5 s)"),
    ({"timedatectl set-timezone Europe/Berlin": (1, "", "Failed to set time zone: Something else\n")},
     "timedatectl could not set the time zone (Failed to set time zone: Something else)"),
])
def test_other_failures_say_what_to_do(outputs, expected):
    with pytest.raises(TimezoneError) as caught:
        set_timezone("Europe/Berlin", run=Runner(outputs))
    assert str(caught.value).startswith(expected), caught.value
    assert caught.value.permitted
    assert "tzdata" in str(caught.value) or "ln -sf /usr/share/zoneinfo/Europe/Berlin /etc/localtime" in \
        str(caught.value)

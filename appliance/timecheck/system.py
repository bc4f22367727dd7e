"""The system's side of the clock: which time service runs and whether it is synchronised, and the time zone.

Every reader runs the services' own tools through ``run`` (``run_command``
or a fake that plays back recorded output), with a timeout, and never
raises: a missing tool or a service that is not running is an answer too.
Services are asked in this order, and the first that answers is the one
reported: chrony (``chronyc -n tracking``), ntpd/ntpsec (``ntpq -c rv``),
systemd-timesyncd (``timedatectl show``, which also answers, with NTP=no,
when timesyncd is off; so it comes last).

``read_system`` runs these commands one after another within one budget:
each gets what is left of it, and once nothing is left the rest are not run
("not asked: out of time"), so a reading never outlasts ``timeout_s``.
"""

import os
import re
import subprocess
import time
from dataclasses import dataclass

from appliance.config.schema import check_timezone
from appliance.errors import TimezoneError
from appliance.timecheck.verdict import ZoneCheck

DEFAULT_TIMEOUT_S = 5.0
LOCALTIME_PATH = "/etc/localtime"
TIMEZONE_PATH = "/etc/timezone"
ZONEINFO_DIR = "/usr/share/zoneinfo"
NO_SERVICE = "none"
OUT_OF_TIME = "not asked: out of time"


@dataclass(frozen=True)
class Ran:
    """What one command did: ``returncode`` None when it could not run or did not finish (``problem`` says why)."""

    argv: tuple
    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    problem: str = ""

    def why(self):
        """One line saying how the command failed, e.g. "chronyc: 506 Cannot talk to daemon"."""
        text = self.problem or (self.stderr.strip() or self.stdout.strip() or f"exit status {self.returncode}")
        tool = os.path.basename(self.argv[0])
        return f"{tool}: {text.splitlines()[0].removeprefix(f'{tool}: ')}"


def run_command(argv, *, timeout_s=DEFAULT_TIMEOUT_S):
    """Run ``argv`` (no shell) in the C locale; return a Ran. Never raises."""
    argv = tuple(argv)
    env = {**os.environ, "LC_ALL": "C"}  # the tools' output in English, which the parsers expect
    try:
        done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout_s, env=env,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return Ran(argv, None, problem="not installed")
    except subprocess.TimeoutExpired:
        return Ran(argv, None, problem=f"no answer within {timeout_s:g} s")
    except OSError as exc:
        return Ran(argv, None, problem=f"cannot run it: {exc.strerror or exc}")
    return Ran(argv, done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class SyncState:
    """The time service's own view: ``service`` (timesyncd, chrony, ntpd, ntpsec or "none"), whether it
    says the clock is ``synchronized`` (None: no service found or it did not say), and one line of ``detail``."""

    service: str
    synchronized: bool | None
    detail: str


def _key_values(text, sep):
    pairs = (line.split(sep, 1) for line in text.splitlines() if sep in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _chrony(run, chronyc):
    ran = run([*chronyc, "-n", "tracking"])
    fields = _key_values(ran.stdout, ":") if ran.returncode == 0 else {}
    leap = fields.get("Leap status")
    if leap is None:
        return None, ran.why()
    synced = leap != "Not synchronised"
    if not synced:
        return SyncState("chrony", False, f"chrony: not synchronised (leap status {leap!r})"), ""
    ref = re.match(r"(\w+)\s*\((.*)\)", fields.get("Reference ID", ""))
    source = (ref.group(2) or ref.group(1)) if ref else "?"
    detail = f"chrony: synchronised to {source}, stratum {fields.get('Stratum', '?')}"
    system = re.match(r"([\d.]+) seconds (fast|slow)", fields.get("System time", ""))
    if system:
        detail += f", system time {float(system.group(1)) * 1000:.3f} ms {system.group(2)}"
    return SyncState("chrony", True, detail), ""


def _ntpd(run):
    ran = run(["ntpq", "-c", "rv"])
    status = re.search(r"status=\w+\s+(\w+),\s*(\w+)", ran.stdout) if ran.returncode == 0 else None
    if not status:
        return None, ran.why()
    name = "ntpsec" if "ntpsec" in ran.stdout else "ntpd"
    leap, sync = status.groups()
    values = dict(re.findall(r"(\w+)=(\"[^\"]*\"|[^,\s]+)", ran.stdout))
    if sync == "sync_unspec" or leap == "leap_alarm":
        return SyncState(name, False, f"{name}: not synchronised ({leap}, {sync})"), ""
    detail = f"{name}: synchronised to {values.get('refid', '?')}, stratum {values.get('stratum', '?')}"
    if "offset" in values:
        detail += f", offset {values['offset']} ms"
    return SyncState(name, True, detail), ""


def _timesyncd(run):
    ran = run(["timedatectl", "show"])
    fields = _key_values(ran.stdout, "=") if ran.returncode == 0 else {}
    if "NTP" not in fields:
        return None, ran.why()
    if fields["NTP"] != "yes":
        return None, "timedatectl: network time sync is off (NTP=no)"
    if fields.get("NTPSynchronized") != "yes":
        return SyncState("timesyncd", False, "timesyncd: not synchronised (NTPSynchronized=no)"), ""
    sync = _key_values(run(["timedatectl", "show-timesync"]).stdout, "=")
    name, address = sync.get("ServerName", ""), sync.get("ServerAddress", "")
    where = f" to {name or address}" if name or address else ""
    where += f" ({address})" if name and address and address != name else ""
    return SyncState("timesyncd", True, f"timesyncd: synchronised{where}"), ""


def read_sync_state(*, run=run_command, chronyc=("chronyc",)):
    """The running time service's SyncState, or service "none" with what each tool said. Never raises.

    ``run(argv)`` returns a Ran; ``chronyc`` is the chronyc command (tests
    add ``-h SOCKET`` to ask a chronyd of their own).
    """
    tried = []
    for probe in (lambda: _chrony(run, chronyc), lambda: _ntpd(run), lambda: _timesyncd(run)):
        state, why = probe()
        if state is not None:
            return state
        tried.append(why)
    return SyncState(NO_SERVICE, None, "none found (" + "; ".join(tried) + ")")


def read_system_zone(*, run=run_command, localtime=LOCALTIME_PATH, timezone_file=TIMEZONE_PATH):
    """The system's IANA time zone name (e.g. "Europe/Berlin"), or None when nothing says. Never raises.

    Asks ``timedatectl show -p Timezone --value``, then reads where the
    ``localtime`` symlink points (…/zoneinfo/Area/City), then the first line
    of ``timezone_file`` (Debian's /etc/timezone).
    """
    ran = run(["timedatectl", "show", "-p", "Timezone", "--value"])
    if ran.returncode == 0 and ran.stdout.strip():
        return ran.stdout.strip()
    try:
        target = os.readlink(localtime)
        if "zoneinfo/" in target:
            return _plain_zone(target.rsplit("zoneinfo/", 1)[1])
    except OSError:
        pass
    try:
        with open(timezone_file, encoding="utf-8", errors="replace") as f:
            return f.readline().strip() or None
    except OSError:
        return None


def _plain_zone(name):
    for prefix in ("posix/", "right/"):
        name = name.removeprefix(prefix)
    return name


def same_zone(a, b, *, zoneinfo_dir=ZONEINFO_DIR):
    """True when zone names ``a`` and ``b`` name the same zone: equal, or links to the same data
    ("Etc/UTC" and "UTC", "US/Eastern" and "America/New_York"). Never raises."""
    if not a or not b:
        return False
    a, b = _plain_zone(a), _plain_zone(b)
    if a == b:
        return True
    if ".." in a or ".." in b:
        return False
    try:
        with open(os.path.join(zoneinfo_dir, a), "rb") as fa, open(os.path.join(zoneinfo_dir, b), "rb") as fb:
            return fa.read() == fb.read()
    except OSError:
        return False


def check_zone(system_zone, wanted_zone, *, zoneinfo_dir=ZONEINFO_DIR):
    """The ZoneCheck of ``system_zone`` against ``wanted_zone`` ("" = not checked)."""
    if not wanted_zone:
        return ZoneCheck(system_zone, "", None)
    return ZoneCheck(system_zone, wanted_zone, same_zone(system_zone, wanted_zone, zoneinfo_dir=zoneinfo_dir))


def set_timezone(zone, *, run=run_command):
    """Set the system's time zone to ``zone`` with ``timedatectl set-timezone``.

    The name is checked against the zone database before anything runs.
    Raises TimezoneError saying what to do: ``usage`` True for a bad name,
    ``permitted`` False when the system refused for lack of rights.
    """
    problem = "must not be empty" if not zone else check_timezone(zone)
    if problem:
        raise TimezoneError(f"ZONE {problem}", usage=True)
    ran = run(["timedatectl", "set-timezone", zone])
    if ran.returncode == 0:
        return
    by_hand = (f"or set it by hand as root: ln -sf {ZONEINFO_DIR}/{zone} {LOCALTIME_PATH} && "
               f"echo {zone} > {TIMEZONE_PATH}")
    said = " ".join((ran.stderr or ran.stdout).split())
    if ran.problem == "not installed":
        raise TimezoneError(f"timedatectl is not installed (it comes with systemd); install systemd, {by_hand}")
    if ran.returncode is None:
        raise TimezoneError(f"timedatectl gave no answer ({ran.problem}); try again, {by_hand}")
    if re.search(r"access denied|interactive authentication required|permission denied|not authorized", said, re.I):
        raise TimezoneError(
            f"not permitted to set the time zone ({said}): run as root (sudo phonehome time set-timezone {zone}) "
            f"or give the phonehome user the right: a polkit rule that allows the action "
            f"'org.freedesktop.timedate1.set-timezone' for user 'phonehome' "
            f"(a file in /etc/polkit-1/rules.d/)", permitted=False)
    if re.search(r"invalid or unavailable time zone|invalid time zone", said, re.I):
        raise TimezoneError(f"{zone!r} is not in this system's time-zone database ({said}); "
                            f"install or update the tzdata package (apt-get install tzdata), "
                            f"'timedatectl list-timezones' lists the zones it knows")
    if re.search(r"not been booted with systemd|failed to connect to bus", said, re.I):
        raise TimezoneError(f"timedatectl cannot reach systemd ({said}); {by_hand.removeprefix('or ')}")
    raise TimezoneError(f"timedatectl could not set the time zone ({said or ran.why()}); {by_hand}")


@dataclass(frozen=True)
class SystemReading:
    """The system's side of one check: the time service's SyncState and the time zone name (None: unknown)."""

    sync: SyncState
    zone: str | None


class _Budget:
    """A ``run`` that gives each command what is left until ``deadline_mono`` and none once nothing is left."""

    def __init__(self, run, deadline_mono, monotonic):
        self._run = run
        self._deadline_mono = deadline_mono
        self._monotonic = monotonic

    def __call__(self, argv):
        left_s = self._deadline_mono - self._monotonic()
        if left_s <= 0:
            return Ran(tuple(argv), None, problem=OUT_OF_TIME)
        return self._run(argv, timeout_s=left_s)


def read_system(*, run=run_command, timeout_s=DEFAULT_TIMEOUT_S, monotonic=time.monotonic):
    """Read the time service and the time zone; a SystemReading, within about ``timeout_s`` seconds. Never raises.

    ``run(argv, *, timeout_s)`` returns a Ran; every command gets what is
    left of ``timeout_s`` (measured with ``monotonic``), and those that
    would start after it ran out report "not asked: out of time".
    """
    budget = _Budget(run, monotonic() + timeout_s, monotonic)
    return SystemReading(read_sync_state(run=budget), read_system_zone(run=budget))

"""The ``phonehome`` command: agent, monitor, demo and config tools."""

import argparse
import logging
import os
import sys

from appliance import __version__
from appliance.config import DEFAULT_PATH, load_config
from appliance.errors import ConfigError, PhonehomeError

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    _setup_logging(args.verbose)
    try:
        return args.run(args)
    except ConfigError as exc:
        print(f"phonehome: {exc}", file=sys.stderr)
        print("Fix the file and try again; nothing was changed.", file=sys.stderr)
        return EXIT_USAGE
    except PhonehomeError as exc:
        print(f"phonehome: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"phonehome: {exc.strerror or exc}{where}; check that data_dir and the config file's directory "
              f"exist and this user may write them", file=sys.stderr)
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        return EXIT_OK


def _parser():
    parser = argparse.ArgumentParser(prog="phonehome", description="Home power- and Internet-outage monitor.")
    parser.add_argument("--version", action="version", version=f"phonehome {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name, run, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(run=run)
        return p

    def with_config(p):
        p.add_argument("--config", default=DEFAULT_PATH, metavar="FILE",
                       help=f"the configuration file (default {DEFAULT_PATH})")
        return p

    with_config(command("agent", _agent, "Run on the Pi: send heartbeats (and run a monitor if [monitor] is set)."))
    monitor = with_config(command("monitor", _monitor, "Run the monitor: receive heartbeats, alert when they stop; "
                                                       "set the admin password of its web pages; or pause and "
                                                       "resume the alerts of a device or a site."))
    monitor.add_argument("action", nargs="?", choices=("run", "set-password", "pause", "resume"), default="run",
                         help="run (the default): run the monitor; set-password: choose the admin password of "
                              "the monitor's web pages (asked twice; browsers logged in are logged out); pause, "
                              "resume: a device's or a site's alerts, through the running monitor's API "
                              "(needs [web] api_token)")
    monitor.add_argument("device", nargs="?", metavar="DEVICE", help="with pause or resume: the device's name")
    monitor.add_argument("--site", metavar="SITE", help="with pause or resume: a site instead of a device")
    monitor.add_argument("--for", dest="for_", metavar="DURATION",
                         help="with pause: how long, e.g. 30m, 2h, 1d, 1h30m, or until-resumed")
    monitor.add_argument("--password-stdin", action="store_true",
                         help="with set-password: read the password from the first line of standard input "
                              "(for scripts) instead of asking")
    with_config(command("check-config", _check_config, "Validate the configuration file and report every problem."))
    with_config(command("setup-code", _setup_code, "Print the one-time setup code that claims this appliance on "
                                                   "its web page."))
    with_config(command("reset-password", _reset_password,
                        "Forget the web page's admin password and make a new setup code, so the appliance can "
                        "be claimed again (the settings are kept)."))
    install = command("install", _install, "Make this virtual environment's phonehome a system service: user, "
                                           "groups, udev and polkit rules, /etc/phonehome, systemd units.")
    install.add_argument("--root", default="/", metavar="DIR", help="install into this root tree instead of / "
                                                                    "(an image being built)")
    install.add_argument("--listen", default="0.0.0.0:80", metavar="HOST:PORT",
                         help="the web page's address in a new config (default 0.0.0.0:80; an existing config "
                              "is never changed)")
    install.add_argument("--monitor", action="store_true", help="install and enable phonehome-monitor instead of the agent (a monitor server; "
                              "an agent with a [monitor] table already runs one inside)")
    install.add_argument("--no-enable", action="store_true", help="write the units but do not enable them")
    firstboot = command("firstboot", _firstboot, "Import phonehome.toml, wpa_supplicant.conf or phonehome-wifi.txt, "
                                                 "and authorized_keys from the SD card's boot partition, then "
                                                 "remove them from it (run at boot by phonehome-firstboot.service; "
                                                 "exit 0 done or nothing there, 1 a file was not imported).")
    firstboot.add_argument("--boot", default="/boot/firmware", metavar="DIR",
                           help="the boot partition (default /boot/firmware)")
    firstboot.add_argument("--root", default="/", metavar="DIR", help="the system to import into (default /)")
    firstboot.add_argument("--config", metavar="FILE",
                           help=f"where the config goes (default {DEFAULT_PATH} under --root)")
    command("config-reference", _config_reference, "Print the configuration reference (Markdown).")
    clock = sub.add_parser("time", help="Check the clock against NTP servers; set the time zone.",
                           description="Check the clock against NTP servers; set the time zone.")
    actions = clock.add_subparsers(dest="time_command", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="ask the [time] servers and the time service; print the verdict "
                                             "(exit 0 ok, 1 a problem, 2 bad usage or config)")
    with_config(check).set_defaults(run=_time_check)
    set_zone = actions.add_parser("set-timezone", help="set the system's time zone (timedatectl set-timezone)")
    set_zone.add_argument("zone", metavar="ZONE", help="an IANA time zone, e.g. America/New_York")
    with_config(set_zone).set_defaults(run=_time_set_timezone)
    display = sub.add_parser("display", help="The appliance's OLED display.",
                             description="The appliance's OLED display.")
    display_actions = display.add_subparsers(dest="display_command", metavar="ACTION", required=True)
    snapshot = display_actions.add_parser(
        "snapshot", help="save the picture the display shows as a PNG (exit 0 ok, 1 a problem, 2 bad usage or "
                         "config); without a running agent, a fresh rendering of the Status page")
    snapshot.add_argument("file", metavar="FILE.png", help="where to write the PNG")
    with_config(snapshot).set_defaults(run=_display_snapshot)
    demo = command("demo", _demo, "Run a monitor and an agent on 127.0.0.1 and show an outage and its alerts.")
    demo.add_argument("--dir", default="demo-data", help="where the demo keeps its config, data and outbox")
    demo.add_argument("--scripted", action="store_true",
                      help="run the outage on its own (the default when not on a terminal)")
    return parser


def _setup_logging(verbose):
    # Under systemd the journal stamps each line itself.
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") else \
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=fmt, stream=sys.stderr)
    for noisy in ("waitress", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # waitress warns "Task queue depth is N" on nearly every request under load: thousands of lines a second.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    # Apprise logs its URLs, tokens included; the alert channels capture and redact what matters.
    logging.getLogger("apprise").propagate = False


def _agent(args):
    from appliance.agent.role import AgentRole
    from appliance.runtime import Control, restart_process, serve

    config = load_config(args.config)
    control = Control()
    code = serve(AgentRole(config, config_path=args.config), args.config, control=control)
    if control.restart_requested:  # the web page's "Restart": everything stopped in order, now start afresh
        restart_process()
    return code


def _monitor(args):
    from appliance.roles import MonitorRole
    from appliance.runtime import serve

    if args.action in ("pause", "resume"):
        from appliance.pausecli import pause_or_resume

        return pause_or_resume(args)
    if args.device or args.site or args.for_:
        print(f"phonehome: DEVICE, --site and --for go with 'phonehome monitor pause' or 'resume', not with "
              f"{args.action!r}", file=sys.stderr)
        return EXIT_USAGE
    if args.action == "set-password":
        return _set_monitor_password(args)
    if args.password_stdin:
        print("phonehome: --password-stdin goes with 'phonehome monitor set-password'", file=sys.stderr)
        return EXIT_USAGE
    from appliance.monitor.memory import one_malloc_arena

    one_malloc_arena()  # before any thread: see appliance.monitor.memory
    config = load_config(args.config)
    return serve(MonitorRole(config), args.config)


def _set_monitor_password(args):
    """Set the admin password of the monitor's pages in data_dir (a running monitor uses it at once)."""
    from appliance.auth import Passwords, password_problem
    from appliance.config.schema import Monitor

    config = load_config(args.config)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        print("phonehome: there is no terminal to ask for the password on; pipe it in with --password-stdin",
              file=sys.stderr)
        return EXIT_USAGE
    else:
        import getpass

        password = getpass.getpass("New admin password for the monitor's pages: ")
        problem = password_problem(password)
        if not problem and getpass.getpass("The same password again: ") != password:
            print("phonehome: the two passwords differ; nothing was changed, run the command again",
                  file=sys.stderr)
            return EXIT_USAGE
    problem = password_problem(password)
    if problem:
        print(f"phonehome: the password {problem}; nothing was changed", file=sys.stderr)
        return EXIT_USAGE
    passwords = Passwords(config.data_dir)
    passwords.set(password)
    _hand_to_data_dir_owner(config.data_dir, passwords.path)
    listen = (config.monitor or Monitor()).listen
    print(f"admin password set in {passwords.path}; log in at http://{listen}/ (browsers that were logged in "
          f"are logged out)")
    return EXIT_OK


def _hand_to_data_dir_owner(data_dir, path):
    """Run as root (sudo), give the file to data_dir's owner, so the monitor's own user can read it."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    owner = os.stat(data_dir)
    if (owner.st_uid, owner.st_gid) != (0, 0):
        os.chown(path, owner.st_uid, owner.st_gid)


def _check_config(args):
    config = load_config(args.config, missing_ok=False)
    parts = []
    if config.agent_configured:
        parts.append(f"agent '{config.device.name}' with {len(config.heartbeat.targets)} target(s)")
    else:
        parts.append("agent not configured (no device name or no heartbeat targets)")
    if config.monitor is not None:
        parts.append(f"monitor with {len(config.monitor.devices)} device(s)")
    print(f"{args.config}: ok: " + "; ".join(parts))
    return EXIT_OK


def _setup_code(args):
    from appliance.setup import load_setup

    config = load_config(args.config)
    setup = load_setup(config.data_dir)
    if setup.claimed:
        print("this appliance is already claimed; to set a new admin password run 'phonehome reset-password'")
        return EXIT_PROBLEM
    print(f"setup code: {setup.code}  (enter it at {setup.url} or http://<this device's address>/setup)")
    return EXIT_OK


def _reset_password(args):
    from appliance.setup import reopen

    config = load_config(args.config)
    setup = reopen(config.data_dir)
    print(f"admin password forgotten; claim the appliance again at {setup.url} with the setup code {setup.code}")
    return EXIT_OK


def _install(args):
    from appliance.install import Plan, check_can_install, install

    problem = check_can_install()
    if problem:
        print(f"phonehome: {problem}", file=sys.stderr)
        return EXIT_USAGE
    install(Plan(root=args.root, listen=args.listen, monitor=args.monitor, enable=not args.no_enable))
    return EXIT_OK


def _firstboot(args):
    import time

    from appliance.firstboot import card_for, run

    if not os.path.isdir(args.boot):
        print(f"phonehome: {args.boot} is not a directory; is the boot partition mounted?", file=sys.stderr)
        return EXIT_PROBLEM
    problems = run(card_for(args.boot, args.root, args.config), now_wall=time.time())
    return EXIT_PROBLEM if problems else EXIT_OK


def _config_reference(args):
    from appliance.config.reference import render_reference

    sys.stdout.write(render_reference())
    return EXIT_OK


def _demo(args):
    from appliance.demo import run_demo

    scripted = args.scripted or not sys.stdin.isatty()
    return run_demo(args.dir, scripted=scripted)


def _time_check(args):
    from appliance.clock import SystemClock
    from appliance.timecheck.checker import TimeChecker
    from appliance.timecheck.report import render_check

    config = load_config(args.config)
    if not args.verbose:
        # The printout says it all; the agent's one-line-per-change log would repeat the verdict.
        logging.getLogger("phonehome.timecheck").setLevel(logging.ERROR)
    status = TimeChecker(config.time, clock=SystemClock(), data_dir=None).check_now()
    if status.checked_at is None:
        print("phonehome: the clock check failed; run 'phonehome -v time check' to see why", file=sys.stderr)
        return EXIT_PROBLEM
    sys.stdout.write(render_check(status))
    return EXIT_OK if status.verdict == "ok" else EXIT_PROBLEM


def _time_set_timezone(args):
    from appliance.errors import TimezoneError
    from appliance.timecheck.system import read_system_zone, same_zone, set_timezone

    config = load_config(args.config)
    before = read_system_zone()
    try:
        set_timezone(args.zone)
    except TimezoneError as exc:
        print(f"phonehome: {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.usage else EXIT_PROBLEM
    print(f"time zone set to {args.zone} (was {before or 'unknown'})")
    wanted = config.time.timezone
    if wanted and not same_zone(wanted, args.zone):
        print(f"note: [time] timezone in {args.config} is {wanted!r}; the clock check will say 'wrong-zone' "
              f"until the two match")
    return EXIT_OK


def _display_snapshot(args):
    import time

    from hardware.oled import frame_path, png_bytes
    from hardware.pages import STATUS, render

    config = load_config(args.config)
    display = config.display
    mirror = frame_path(display, config.data_dir)
    fresh_s = 2 * display.page_s + 2
    data = None
    if display.driver != "none" and mirror:
        try:
            if time.time() - os.stat(mirror).st_mtime <= fresh_s:
                with open(mirror, "rb") as f:
                    data = f.read()
        except OSError:
            pass  # no file, or not ours to read: a fresh rendering says as much below
    if data is None:
        swap = display.rotate in (90, 270)
        width, height = (display.height, display.width) if swap else (display.width, display.height)
        data = png_bytes(render(STATUS, _snapshot_without_agent(config), width=width, height=height,
                                now_wall=time.time()))
        if display.driver == "none":
            why = "[display] driver is 'none', so no agent keeps a picture"
        else:
            why = f"the agent is not running (no picture newer than {fresh_s:g} s at {mirror or '/run/phonehome'})"
        print(f"phonehome: {why}; {args.file} is a fresh rendering of the Status page", file=sys.stderr)
    try:
        with open(args.file, "wb") as f:
            f.write(data)
    except OSError as exc:
        print(f"phonehome: cannot write {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_PROBLEM
    return EXIT_OK


def _snapshot_without_agent(config):
    """The Status page's facts as far as this process can tell without the agent: no heartbeat known."""
    import time

    from appliance.agent.system import read_uptime_s
    from appliance.network import read_network
    from appliance.setup import FILE_NAME, load_setup
    from appliance.status import Snapshot

    # Only an existing code is read: making one here would be a side effect of taking a picture.
    setup_file = os.path.join(config.data_dir, FILE_NAME)
    setup = load_setup(config.data_dir) if os.access(setup_file, os.R_OK) else None
    configured = config.agent_configured
    return Snapshot(at=time.time(), device_name=config.device.name, configured=configured,
                    heartbeat="unknown" if configured else "off", last_ok_at=None, beats_sent=0, last_error=None,
                    network=read_network(), time_verdict="unknown", time_reason="", time_offset_ms=None,
                    time_zone=None, uptime_s=read_uptime_s(), setup=setup)

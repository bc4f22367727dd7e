"""``phonehome monitor pause|resume``: pause a device's or a site's alerts through the running monitor.

The command asks the monitor's own JSON API (on ``monitor.listen``, with
``[web] api_token``) instead of writing its database: the running monitor
keeps its pauses in memory and applies a change at once, and a second writer
of the same SQLite file could only race it.
"""

import math
import re
import sys
from datetime import datetime, timezone

from appliance.config import load_config
from appliance.config.schema import Monitor
from appliance.config.validate import MAX_DURATION_S
from appliance.timefmt import format_duration

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2
UNTIL_RESUMED = "until-resumed"
TIMEOUT_S = 10.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text):
    """Seconds of "30m", "2h", "1d", "1h30m", "90s"; None for "until-resumed".

    Raises ValueError saying what to write instead.
    """
    text = text.strip().lower()
    if text == UNTIL_RESUMED:
        return None
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"--for must be a duration like 30m, 2h, 1d or 1h30m (s, m, h, d), or {UNTIL_RESUMED}; "
                         f"got {text[:30]!r}")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"--for must be longer than 0 s, got {text!r}")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"--for must be at most 31 days (31d), got {text!r}; use --for {UNTIL_RESUMED} for longer")
    return seconds


def base_url(listen):
    """The URL this machine reaches a server listening on ``listen`` (HOST:PORT) at: any-address means loopback."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def pause_or_resume(args):
    """Run ``phonehome monitor pause|resume``; return the exit code (0 done, 1 the monitor refused or is not
    there, 2 bad usage or config)."""
    problem = _usage_problem(args)
    if problem:
        print(f"phonehome: {problem}", file=sys.stderr)
        return EXIT_USAGE
    for_s = None
    if args.action == "pause":
        try:
            for_s = parse_duration(args.for_)
        except ValueError as exc:
            print(f"phonehome: {exc}", file=sys.stderr)
            return EXIT_USAGE
    config = load_config(args.config)
    token = config.web.api_token
    if not token:
        print(f"phonehome: [web] api_token is not set in {args.config}: this command asks the running monitor's "
              f"API and needs it. Set one (e.g. the output of 'openssl rand -hex 16'), let the monitor reload the "
              f"config, and try again; or use the monitor's pages", file=sys.stderr)
        return EXIT_USAGE
    kind, name = ("site", args.site) if args.site else ("device", args.device)
    url = base_url((config.monitor or Monitor()).listen)
    path = "/api/v1/pauses" if args.action == "pause" else "/api/v1/pauses/resume"
    body = {kind: name, "for_s": for_s} if args.action == "pause" else {kind: name}
    answer = _post(url + path, body, token)
    if isinstance(answer, str):
        print(f"phonehome: {answer}", file=sys.stderr)
        return EXIT_PROBLEM
    status, reply = answer
    if status == 401:
        print(f"phonehome: the monitor at {url} refused the API token: [web] api_token in {args.config} is not the "
              f"one the running monitor has; let it reload the config (or restart it) and try again",
              file=sys.stderr)
        return EXIT_PROBLEM
    if status != 200 or not reply.get("ok"):
        error = reply.get("error") or "no reason given"
        print(f"phonehome: the monitor at {url} refused: {error}", file=sys.stderr)
        return EXIT_PROBLEM
    what = f"site {name} and its devices" if kind == "site" else name
    if args.action == "resume":
        print(f"alerts for {what} resumed" if reply.get("resumed") else f"alerts for {what} were not paused")
    elif for_s is None:
        print(f"alerts for {what} paused until resumed; outages are still recorded")
    else:
        until = datetime.fromtimestamp(reply["pause"]["until"], timezone.utc).astimezone()
        print(f"alerts for {what} paused for {format_duration(for_s)}, until {until:%Y-%m-%d %H:%M %Z}; "
              f"outages are still recorded")
    return EXIT_OK


def _usage_problem(args):
    if bool(args.device) == bool(args.site):
        return (f"name a device or a site: 'phonehome monitor {args.action} DEVICE' or "
                f"'phonehome monitor {args.action} --site SITE'" if not args.device else
                "name a device or a site, not both")
    if args.action == "pause" and not args.for_:
        return f"say how long with --for, e.g. --for 2h, --for 1d or --for {UNTIL_RESUMED}"
    if args.action == "resume" and args.for_:
        return "--for goes with pause, not resume"
    if args.password_stdin:
        return "--password-stdin goes with 'phonehome monitor set-password'"
    return None


def _post(url, body, token):
    """(status, JSON dict) of a POST to the monitor, or a sentence saying why there is no answer."""
    import requests

    session = requests.Session()
    session.trust_env = False  # the monitor is on this machine: no proxy from the environment
    try:
        response = session.post(url, json=body, timeout=TIMEOUT_S, headers={"Authorization": f"Bearer {token}"})
    except requests.ConnectionError:
        return (f"the monitor does not answer at {url.rsplit('/api/', 1)[0]}: is 'phonehome monitor' (or the agent "
                f"that runs it) running with this config? monitor.listen says where it listens")
    except requests.RequestException as exc:
        return f"asking the monitor at {url} failed: {exc}"
    finally:
        session.close()
    try:
        reply = response.json()
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        return (f"{url} answered {response.status_code} without the monitor's JSON: is something else listening "
                f"on monitor.listen?")
    return response.status_code, reply

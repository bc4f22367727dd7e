"""Validation of heartbeats arriving from outside: every field checked, the bad one named.

Two forms are accepted at ``POST /api/v1/heartbeat``: the agent's JSON body,
and a form-encoded body so that one crontab line with curl can phone home
(``curl -d device=home -d sent_at=$(date +%s) …``). Fields beyond the known
ones are ignored, so newer agents can talk to older monitors.
"""

import json
import math
import re
from urllib.parse import parse_qsl

from appliance.text import shorten

MAX_BODY = 64 * 1024
# \Z, not $: "$" also matches before a trailing newline ("home\n" would pass).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
_BOOT_ID = re.compile(r"^[A-Za-z0-9-]{1,64}\Z")
MAX_FAILURE_WINDOWS = 100
MAX_PEERS = 50
MAX_POWER_CYCLES = 5
PEER_STATES = ("up", "down", "new")
_VERDICT = re.compile(r"^[a-z][a-z-]{0,19}\Z")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class BadHeartbeat(ValueError):
    """A heartbeat body is malformed; ``field`` names the bad field."""

    def __init__(self, field, message):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def parse_heartbeat(body, content_type, *, received_at):
    """Parse and validate a heartbeat body (bytes); return a plain dict.

    JSON needs ``device``, ``sent_at``, ``seq``, ``boot_id`` and ``uptime_s``;
    the curl form needs only ``device`` (``sent_at`` defaults to
    ``received_at``). Raises BadHeartbeat naming the first bad field.
    """
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime == "application/x-www-form-urlencoded":
        return _from_form(body, received_at)
    if mime not in ("application/json", ""):
        raise BadHeartbeat("", f"unsupported Content-Type {mime!r}; send application/json "
                               "or application/x-www-form-urlencoded")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise BadHeartbeat("", f"body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BadHeartbeat("", "body must be a JSON object")
    for field in ("device", "sent_at", "seq", "boot_id", "uptime_s"):
        if field not in data:
            raise BadHeartbeat(field, "required")
    return _validated(data)


def _from_form(body, received_at):
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise BadHeartbeat("", "form body is not UTF-8") from None
    data = dict(pairs)
    if "device" not in data:
        raise BadHeartbeat("device", "required")
    # Without sent_at the device's clock is unknown: no offset estimate can be made from this beat.
    out = {"device": data["device"], "sent_at": received_at, "seq": 0, "boot_id": None, "uptime_s": None}
    for field, convert in (("sent_at", float), ("seq", int), ("uptime_s", float)):
        if data.get(field, "") != "":
            try:
                out[field] = convert(data[field])
            except ValueError:
                raise BadHeartbeat(field, f"must be a number, got {data[field][:40]!r}") from None
    if data.get("boot_id"):
        out["boot_id"] = data["boot_id"].strip()
    return _validated(out, sent_at_known=bool(data.get("sent_at")))


def _validated(data, *, sent_at_known=True):
    device = data["device"]
    if not isinstance(device, str) or not _NAME.match(device):
        raise BadHeartbeat("device", "must be the device's name as configured on the monitor "
                                     "(letters, digits, '.', '_', '-')")
    out = {"device": device}
    out["sent_at"] = _number(data, "sent_at", low=0)
    out["sent_at_known"] = sent_at_known
    seq = data["seq"]
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise BadHeartbeat("seq", f"must be a whole number >= 0, got {seq!r}"[:120])
    out["seq"] = seq
    boot_id = data["boot_id"]
    if boot_id is not None and (not isinstance(boot_id, str) or not _BOOT_ID.match(boot_id)):
        raise BadHeartbeat("boot_id", "must be the contents of /proc/sys/kernel/random/boot_id")
    out["boot_id"] = boot_id
    out["uptime_s"] = None if data["uptime_s"] is None else _number(data, "uptime_s", low=0)
    if data.get("agent_started_at") is not None:
        out["agent_started_at"] = _number(data, "agent_started_at", low=0)
    if data.get("version") is not None:
        version = data["version"]
        if not isinstance(version, str) or len(version) > 32:
            raise BadHeartbeat("version", "must be a string of at most 32 characters")
        out["version"] = _clean(version)
    out["send_failures"] = _windows(data.get("send_failures", []))
    if data.get("time") is not None:
        out["time"] = _time(data["time"])
    if data.get("peers") is not None:
        out["peers"] = _peers(data["peers"])
    return out


def _peers(peers):
    """What a watching Pi reports of the devices it watches on its LAN (see appliance.agent.peers)."""
    if not isinstance(peers, list) or len(peers) > MAX_PEERS:
        raise BadHeartbeat("peers", f"must be a list of at most {MAX_PEERS} peers")
    out, seen = [], set()
    for i, p in enumerate(peers):
        field = f"peers[{i}]"
        if not isinstance(p, dict):
            raise BadHeartbeat(field, 'must be an object {"name": "garage-pi", "state": "up", ...}')
        name = p.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise BadHeartbeat(f"{field}.name", "must be a device name (letters, digits, '.', '_', '-')")
        state = p.get("state")
        if state not in PEER_STATES:
            raise BadHeartbeat(f"{field}.state", f"must be one of {', '.join(PEER_STATES)}, got {state!r}"[:120])
        entry = {"name": name, "state": state}
        for key in ("last_heard_at", "down_since"):
            entry[key] = None if p.get(key) is None else _number(p, key, low=0, field=f"{field}.{key}")
        cycles = p.get("power_cycles", [])
        if not isinstance(cycles, list) or len(cycles) > MAX_POWER_CYCLES:
            raise BadHeartbeat(f"{field}.power_cycles", f"must be a list of at most {MAX_POWER_CYCLES} power cycles")
        entry["power_cycles"] = [_power_cycle(c, f"{field}.power_cycles[{j}]") for j, c in enumerate(cycles)]
        if name not in seen:  # a name listed twice: the first entry counts
            seen.add(name)
            out.append(entry)
    return out


def _power_cycle(cycle, field):
    if not isinstance(cycle, dict):
        raise BadHeartbeat(field, 'must be an object {"at": epoch, "came_back_at": epoch or null}')
    at = _number(cycle, "at", low=0, field=f"{field}.at")
    back = cycle.get("came_back_at")
    return {"at": at, "came_back_at": None if back is None else _number(cycle, "came_back_at", low=at,
                                                                         field=f"{field}.came_back_at")}


def _time(report):
    """The agent's clock check: its verdict, reason and offset (see appliance.timecheck)."""
    if not isinstance(report, dict):
        raise BadHeartbeat("time", 'must be an object {"verdict": "ok", "offset_ms": 1.5, ...}')
    verdict = report.get("verdict")
    if not isinstance(verdict, str) or not _VERDICT.match(verdict):
        raise BadHeartbeat("time.verdict", "must be a verdict such as 'ok', 'drifting' or 'unsynced'")
    out = {"verdict": verdict}
    for key, limit in (("reason", 200), ("service", 32), ("zone", 64)):
        value = report.get(key)
        if value is not None and not isinstance(value, str):
            raise BadHeartbeat(f"time.{key}", "must be a string")
        # Cut, not refused: a heartbeat is never lost over the length of an optional text.
        out[key] = None if value is None else shorten(_clean(value), limit)
    for key in ("offset_ms", "jitter_ms", "checked_at"):
        value = report.get(key)
        if value is not None:
            value = _number(report, key, low=-math.inf, field=f"time.{key}")
        out[key] = value
    synced = report.get("synchronized")
    if synced is not None and not isinstance(synced, bool):
        raise BadHeartbeat("time.synchronized", "must be true, false or null")
    out["synchronized"] = synced
    return out


def _clean(text):
    """``text`` with each lone UTF-16 surrogate (JSON may carry "\\udc80") made U+FFFD: such a string cannot be
    encoded as UTF-8, so every page that showed it would fail for as long as the beat is the device's last."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def _windows(windows):
    if not isinstance(windows, list) or len(windows) > MAX_FAILURE_WINDOWS:
        raise BadHeartbeat("send_failures", f"must be a list of at most {MAX_FAILURE_WINDOWS} windows")
    out = []
    for i, w in enumerate(windows):
        field = f"send_failures[{i}]"
        if not isinstance(w, dict):
            raise BadHeartbeat(field, 'must be an object {"from": epoch, "to": epoch, "failures": n}')
        start = _number(w, "from", low=0, field=f"{field}.from")
        end = _number(w, "to", low=start, field=f"{field}.to")
        failures = w.get("failures", 0)
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
            raise BadHeartbeat(f"{field}.failures", "must be a whole number >= 0")
        out.append({"from": start, "to": end, "failures": failures})
    return out


def _number(data, key, *, low, field=None):
    value = data.get(key)
    field = field or key
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadHeartbeat(field, f"must be a number, got {value!r}"[:120])
    try:
        value = float(value)
    except OverflowError:  # a JSON integer of hundreds of digits: no float holds it
        raise BadHeartbeat(field, "must be a number, got one too large for a float") from None
    if not math.isfinite(value):
        raise BadHeartbeat(field, f"must be a number, got {value!r}")
    if value < low:
        raise BadHeartbeat(field, f"must be at least {low:g}, got {value:g}")
    return float(value)

"""The clock verdict: a pure function of the servers' answers, the time service's state and the zone.

Verdicts, most serious first (the verdict is the first that applies; the
one-line reason names every problem):

* ``drifting``: the servers' consensus puts our clock more than
  ``max_offset_ms`` from theirs;
* ``unsynced``: the system's time service says it is not synchronised (or,
  with no servers configured, no time service runs at all);
* ``unreachable``: servers are configured and none gave a usable answer;
* ``wrong-zone``: the system's time zone is not the configured one;
* ``ok``: none of these.

``unknown`` is not a verdict this module gives: it is the checker's value
before its first check has finished, and means only "not checked yet".

The consensus is Marzullo's: each usable answer says the true offset lies
within [offset - delay/2 - margin, offset + delay/2 + margin], margin being
half of ``max_offset_ms`` (at least 1 ms), i.e. servers within
``max_offset_ms`` of each other agree. The largest set of servers whose
intervals overlap are the truechimers; the consensus offset is the median of
their offsets. How far one wrong server (a falseticker) can move the
verdict depends on how many servers gave a usable answer:

* 3 or more: the largest agreeing set decides. When it is a strict majority
  of the usable answers, the others are falsetickers and cannot flip the
  verdict either way: with 3 or more answers, the servers that agree still
  outnumber one wrong server.
* no strict majority (2 that disagree, 2 against 2, a chain where A agrees
  with B and B with C but A not with C): no set can be trusted over another
  of its size, so among the largest sets the one nearest zero is reported,
  and the verdict is ``drifting`` only when even that one puts the clock
  beyond ``max_offset_ms``. So with exactly 2 servers that disagree, one
  wrong server cannot raise ``drifting`` (it still can hide a real drift,
  which nothing can tell from a false alarm); the reason says "no majority"
  and to add servers.
* exactly 1: its answer is all there is; its offset decides, and the reason
  says "only 1 server answered".

The reason is one line of at most ``REASON_MAX_CHARS`` characters (what the
monitor keeps); ``short_reason`` cuts it, and is the only place that does.
"""

import math
from dataclasses import dataclass

from appliance.text import shorten
from appliance.timefmt import format_duration

OK, DRIFTING, UNSYNCED, UNREACHABLE, WRONG_ZONE, UNKNOWN = (
    "ok", "drifting", "unsynced", "unreachable", "wrong-zone", "unknown")
PRECEDENCE = (DRIFTING, UNSYNCED, UNREACHABLE, WRONG_ZONE, OK)
MIN_MARGIN_MS = 1.0
REASON_MAX_CHARS = 200  # the monitor keeps at most this much of a reason
_LISTED = 3  # servers (or groups of them) named in one reason before "and N more"
# Where to look when the time service says it is not synchronised.
_SYNC_HELP = {"timesyncd": "timedatectl timesync-status", "chrony": "chronyc tracking", "ntpd": "ntpq -p",
              "ntpsec": "ntpq -p"}


@dataclass(frozen=True)
class ZoneCheck:
    """The system's time zone against the configured one.

    ``wanted_zone`` "" means not checked; ``system_zone`` None means it could
    not be read; ``matches`` is None when not checked.
    """

    system_zone: str | None
    wanted_zone: str = ""
    matches: bool | None = None


@dataclass(frozen=True)
class Consensus:
    """What the usable answers agree on: offset and jitter in ms, and who agrees."""

    offset_ms: float
    jitter_ms: float | None
    truechimers: tuple
    falsetickers: tuple
    majority: bool


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check.

    ``name`` is ok, drifting, unsynced, unreachable or wrong-zone;
    ``reason`` one line for people; ``offset_ms`` the consensus offset
    (positive: our clock is ahead) and ``jitter_ms`` its jitter, None without
    usable answers; ``agree`` how many servers make up the consensus and
    ``usable`` how many answered usefully; ``problems`` every verdict that
    applies, most serious first (empty when ok).
    """

    name: str
    reason: str
    offset_ms: float | None = None
    jitter_ms: float | None = None
    agree: int = 0
    usable: int = 0
    problems: tuple[str, ...] = ()


def format_offset(ms):
    """An offset's size for people: "0.4 ms", "12 ms", "2.3 s", "5 min", "3 d 2 h" (no sign)."""
    ms = abs(ms)
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 999.5:
        return f"{ms:.0f} ms"
    if ms < 59_950:
        return f"{ms / 1000:.1f} s"
    return format_duration(ms / 1000)


def short_reason(text):
    """``text`` cut to at most REASON_MAX_CHARS characters, ending in "…" when it was cut."""
    return shorten(text, REASON_MAX_CHARS)


def _side(offset_ms):
    return "ahead of" if offset_ms >= 0 else "behind"


def consensus(servers, *, max_offset_ms):
    """The Consensus of the usable answers among ``servers`` (ServerStatus), or None when none is usable.

    Without a strict majority, the largest agreeing set nearest zero (see the module's docstring).
    """
    good = [s for s in servers if s.answer.ok]
    if not good:
        return None
    margin = max(max_offset_ms / 2, MIN_MARGIN_MS)
    edges = []
    for i, s in enumerate(good):
        half = max(s.answer.delay_ms, 0.0) / 2 + margin  # a negative delay would turn the interval inside out
        edges += [(s.answer.offset_ms - half, 0, i), (s.answer.offset_ms + half, 1, i)]
    edges.sort()  # at equal values starts (0) come before ends (1): touching intervals overlap
    active, best, groups = set(), 0, []
    for _, kind, i in edges:
        if kind == 1:
            active.discard(i)
            continue
        active.add(i)
        if len(active) > best:
            best, groups = len(active), [frozenset(active)]
        elif len(active) == best and frozenset(active) not in groups:
            groups.append(frozenset(active))
    majority = len(groups) == 1 and 2 * best > len(good)
    # With a majority there is one group; without one, the nearest zero: drifting only if even it says so.
    chosen = min(groups, key=lambda g: abs(_median(good[i].answer.offset_ms for i in g)))
    truechimers = tuple(s for i, s in enumerate(good) if i in chosen)
    offset = _median(s.answer.offset_ms for s in truechimers)
    return Consensus(offset_ms=offset, jitter_ms=_jitter_ms(truechimers, offset),
                     truechimers=truechimers, falsetickers=tuple(s for s in good if s not in truechimers),
                     majority=majority)


def _jitter_ms(truechimers, offset_ms):
    # Like ntpd's system jitter: the servers' own jitter combined with how far they are from each other.
    peers = [s.jitter_ms for s in truechimers if s.jitter_ms is not None]
    peer_sq = sum(j * j for j in peers) / len(peers) if peers else None
    selection_sq = (sum((s.answer.offset_ms - offset_ms) ** 2 for s in truechimers) / len(truechimers)
                    if len(truechimers) >= 2 else None)
    if peer_sq is None and selection_sq is None:
        return None
    return math.sqrt((peer_sq or 0.0) + (selection_sq or 0.0))


def _plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _listed(items):
    shown = "; ".join(items[:_LISTED])
    return shown + (f"; and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def _by_status(servers):
    # Servers that failed the same way share one entry ("a, b: no answer within 5 s (…)"): the hint is said once.
    groups = {}
    for s in servers:
        groups.setdefault(s.answer.status, []).append(s.server)
    items = []
    for status, names in groups.items():
        shown = ", ".join(names[:_LISTED]) + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")
        items.append(f"{shown}: {status}")
    return items


def decide(servers, sync, zone, *, max_offset_ms):
    """The Verdict of one check. Pure.

    ``servers``: a ServerStatus per configured server (empty when none are
    configured); ``sync``: the time service's state (``service`` name or
    "none", ``synchronized`` True/False/None); ``zone``: a ZoneCheck;
    ``max_offset_ms``: the drift limit.
    """
    found = consensus(servers, max_offset_ms=max_offset_ms)
    problems, parts, notes = [], [], []
    if found is not None:
        agree = len(found.truechimers)
        if abs(found.offset_ms) > max_offset_ms:
            problems.append(DRIFTING)
        line = f"clock {format_offset(found.offset_ms)} {_side(found.offset_ms)} {_plural(agree, 'server')}"
        if not found.falsetickers and agree == 1:
            line += " (only 1 server answered)"
        if found.falsetickers:
            others = [f"{s.server}: clock {format_offset(s.answer.offset_ms)} {_side(s.answer.offset_ms)} it"
                      for s in found.falsetickers]
            verb = "disagrees" if len(others) == 1 else "disagree"
            line += f"; {len(others)} other {verb} ({_listed(others)})"
            if not found.majority:
                line += "; no majority: add servers so most can agree"
        parts.append(line)
    if sync.synchronized is False:
        problems.append(UNSYNCED)
        where = _SYNC_HELP.get(sync.service)
        parts.append(f"{sync.service} not synchronised" + (f" (see '{where}')" if where else ""))
    elif sync.service == "none" and not servers:
        problems.append(UNSYNCED)
        parts.append("no time service found (timesyncd, chrony, ntpd) and no [time] servers to compare with")
    elif sync.service == "none":
        notes.append("no time service found (timesyncd, chrony, ntpd)")
    unusable = [s for s in servers if not s.answer.ok]
    if servers and found is None:
        problems.append(UNREACHABLE)
        parts.append(f"none of {_plural(len(servers), 'server')} answered usefully ({_listed(_by_status(unusable))})")
    elif unusable:
        notes.append(f"{len(unusable)} unusable ({_listed(_by_status(unusable))})")
    if zone.wanted_zone and not zone.matches:
        problems.append(WRONG_ZONE)
        parts.append(f"clock in {zone.system_zone}, expected {zone.wanted_zone}" if zone.system_zone
                     else f"system time zone unknown, expected {zone.wanted_zone}")
    if not servers and sync.synchronized:
        parts.append(f"{sync.service} synchronised (no [time] servers to compare with)")
    problems.sort(key=PRECEDENCE.index)
    name = problems[0] if problems else OK
    reason = short_reason("; ".join(parts + notes) or "nothing to check")
    return Verdict(name=name, reason=reason,
                   offset_ms=found.offset_ms if found else None, jitter_ms=found.jitter_ms if found else None,
                   agree=len(found.truechimers) if found else 0,
                   usable=sum(1 for s in servers if s.answer.ok), problems=tuple(problems))


def _median(values):
    """The median of ``values`` (any iterable of numbers, at least one): the middle one, or the mean of the
    two middle ones. Not statistics.median: that module brings fractions and decimal into the agent."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2

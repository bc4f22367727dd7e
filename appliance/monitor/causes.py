"""Why a device went silent and why it came back: the evidence at hand, read as a cause. Pure.

On the way down the evidence is what others see: a watcher (a Pi that is
itself up at the monitor and watches the silent one on the LAN) reports it
silent there too (the device failed) or still heard (it lost its own way to
the Internet); a device of the same site that is still up says the site has
power and Internet. On the way up it is the first heartbeat back: a new boot
id means the device lost power; the same boot with failed sends recorded
means the Internet was down while it stayed powered; the same boot with a
restarted agent means the agent was restarted.

Every function takes the evidence and a ``times`` formatter (``short(ts)``
"10:48", ``zoned(ts)`` "10:48 EST", ``clock(ts)`` "10:48:12", such as
``appliance.alerts.messages.Times``) and returns a ``Cause`` or None when the
evidence says nothing. Times are wall-clock epoch seconds on the monitor's
clock; what the device says in its own clock (its failed sends) is moved
onto the monitor's by the beat's clock offset.
"""

from dataclasses import dataclass

from appliance.timefmt import format_duration

# What a cause is called where a short label fits (the outage table, a subject).
LABELS = {
    "power-cut": "power cut",
    "internet": "Internet outage",
    "agent-restart": "agent restart",
    "device-failure": "device failure",
    "device-internet": "own Internet path",
    "site-outage": "site outage",
    "reboot": "reboot",
    "unknown": "cause unknown",
}
# Two clocks of one device that tick together (its uptime, 0.01 s steps, and its agent's monotonic age, read
# a moment apart) agree this closely; an agent restarted after a silence long enough for a DOWN moved further.
AGENT_SLACK_S = 1.0
# A boot or a failed send this close to the edge of the silence still counts as inside it:
# the monitor's receive time and the device's send time differ by the network delay.
EDGE_SLACK_S = 5.0
# A watcher must have heard the device this long after the monitor last did before that says "alive on the
# LAN": both may hear the same last beat a moment apart. With an estimate of the device's heartbeat interval,
# two intervals are enough (the watcher heard beats the monitor never got); without one, this.
LAN_MARGIN_S = 30.0


def lan_margin(interval_s):
    """The margin for ``cause_on_down``: two heartbeat intervals when the interval is known."""
    return LAN_MARGIN_S if interval_s is None else min(LAN_MARGIN_S, 2 * interval_s)


@dataclass(frozen=True)
class Cause:
    """A cause: ``kind`` (a key of LABELS), ``summary`` (one short sentence with its evidence, for the
    first line of an alert) and ``detail`` (the evidence in full, with its error bounds)."""

    kind: str
    summary: str
    detail: str

    @property
    def label(self):
        return LABELS.get(self.kind, self.kind)


@dataclass(frozen=True)
class PeerReport:
    """What one watcher says of a device, from the watcher's last heartbeat.

    ``last_heard_at``, ``down_since`` and ``power_cycles`` ((at,
    came_back_at or None) of each time the watcher's relay cut the device's
    power) are on the monitor's clock (the watcher's own clock corrected by
    its offset); ``reported_at`` is when the monitor received the report;
    ``same_site`` whether watcher and device share a site.
    """

    watcher: str
    state: str
    last_heard_at: float | None
    down_since: float | None
    reported_at: float
    same_site: bool = False
    power_cycles: tuple = ()


# -- on the way down ------------------------------------------------------------


def cause_on_down(*, last_heard_at, reports=(), site_mates_up=(), times, lan_margin_s=LAN_MARGIN_S):
    """The cause of a device's silence from what others see, or None when nobody saw anything.

    ``last_heard_at`` is the monitor's last heartbeat from the device;
    ``reports`` are PeerReports from watchers that are up at the monitor;
    ``site_mates_up`` names the devices of its site that are up. A watcher
    that heard it on the LAN ``lan_margin_s`` or more after the monitor last
    did says it lost its own Internet path; one that reports it silent (and
    reported after the monitor last heard it) says it failed; a site mate
    that is up says the site has power and Internet.
    """
    heard = [r for r in reports if r.state == "up" and r.last_heard_at is not None
             and r.last_heard_at >= last_heard_at + lan_margin_s]
    if heard:
        r = max(heard, key=lambda r: r.last_heard_at)
        who = _who(r)
        return Cause("device-internet",
                     f"its own Internet path failed \u2014 {who} is up and still hears it on the LAN "
                     f"(last {times.short(r.last_heard_at)})",
                     f"{r.watcher} heard it on the LAN at {times.clock(r.last_heard_at)}, after the monitor last "
                     f"heard it at {times.clock(last_heard_at)}: the device runs, but its heartbeats do not "
                     f"reach the Internet (its Wi-Fi, cable or route)")
    silent = [r for r in reports if r.state == "down" and r.reported_at >= last_heard_at]
    if silent:
        r = min(silent, key=lambda r: (not r.same_site, r.watcher))
        since = f" since {times.clock(r.down_since)}" if r.down_since is not None else ""
        return Cause("device-failure",
                     f"device failure \u2014 {_who(r)} is up and reports it silent on the LAN too",
                     f"{r.watcher} is up at the monitor, so its site has power and Internet, and it has not heard "
                     f"the device on the LAN{since} either: the device itself failed (power supply, SD card, "
                     f"a crash)")
    if site_mates_up:
        mates = _names(site_mates_up)
        verb = "is" if len(site_mates_up) == 1 else "are"
        return Cause("device-failure",
                     f"device failure or its own link \u2014 {mates} (same site) {verb} up, so the site has power "
                     f"and Internet",
                     f"{mates} of the same site {verb} still heard by the monitor: the site has power and Internet, "
                     f"so this device or its own network link failed")
    return None


def cause_of_site(site, members, *, times):
    """The Cause of a whole site going silent: ``members`` is [(device, last_heard_at or None)], all silent."""
    heard = [t for _, t in members if t is not None]
    since = f" since {times.zoned(min(heard))}" if heard else ""
    each = ", ".join(f"{name} last heard {times.clock(t)}" if t is not None else f"{name} never heard"
                     for name, t in members)
    return Cause("site-outage",
                 f"all {len(members)} devices silent{since} \u2014 power cut or Internet outage at the site; "
                 f"the first heartbeat back will tell",
                 f"every device of site {site} went silent: {each}")


def merged_into_site(site, count, *, times):
    """The Cause a device's own DOWN carries when it is part of its site's outage."""
    return Cause("site-outage",
                 f"site outage \u2014 all {count} devices of site {site} are silent; the first heartbeat back "
                 f"will tell power from Internet",
                 f"one alert went out for site {site} instead of one per device")


def _who(report):
    return f"{report.watcher} (same site)" if report.same_site else report.watcher


def _names(names):
    names = sorted(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# -- on the way up ----------------------------------------------------------------


def boot_time(beat, received_at):
    """When the device booted, on the monitor's clock: ``received_at`` minus its uptime; None when unknown.

    Uptime counts from the kernel's start, so the device's own clock plays no
    part; the answer is late by the heartbeat's delivery delay (under a
    second on a working network, at most the agent's heartbeat.timeout_s).
    """
    uptime = beat.get("uptime_s")
    return None if uptime is None else received_at - uptime


def _agent_start(beat):
    """Seconds after boot the agent started, from clocks the wall clock's steps do not move; else None.

    ``sent_at`` and ``agent_started_at`` come from one reading of the wall
    clock, so their difference is the agent's monotonic age; uptime minus it
    stays the same for as long as the agent runs.
    """
    uptime, sent, started = beat.get("uptime_s"), beat.get("sent_at"), beat.get("agent_started_at")
    if uptime is None or sent is None or started is None:
        return None
    return uptime - (sent - started)


def agent_restarted(previous, beat):
    """True/False whether the agent restarted between two beats of one boot; None when they cannot tell."""
    before, after = _agent_start(previous), _agent_start(beat)
    if before is not None and after is not None:
        return abs(after - before) > AGENT_SLACK_S
    if previous.get("agent_started_at") is not None and beat.get("agent_started_at") is not None:
        return abs(beat["agent_started_at"] - previous["agent_started_at"]) > AGENT_SLACK_S
    return None


def failed_sends(beat, start, end):
    """The beat's send-failure windows that overlap [start, end], on the monitor's clock, oldest first.

    Returns [(from, to, failures)]. The windows are in the device's clock:
    they are moved by the beat's clock offset (its send time against the
    monitor's receive time) when that is known.
    """
    offset_ms = beat.get("clock_offset_ms")
    shift = offset_ms / 1000.0 if offset_ms is not None else 0.0
    out = []
    for w in beat.get("send_failures") or ():
        lo, hi = w["from"] - shift, w["to"] - shift
        if hi >= start - EDGE_SLACK_S and lo <= end + EDGE_SLACK_S:
            out.append((lo, hi, w["failures"]))
    return sorted(out)


def cause_on_up(previous, first, *, outage_started_at, received_at, times, down_cause=None, reports=()):
    """The cause of an outage that ``first`` (the first heartbeat back) ends; None when nothing tells.

    ``previous`` is the last heartbeat before the silence (a stored beat
    dict, or None), ``outage_started_at`` when the monitor last heard the
    device, ``received_at`` when ``first`` arrived, ``down_cause`` the kind
    of cause found on the way down (a watcher or a site mate was up: the
    site had power and Internet), ``reports`` PeerReports on the device (a
    watcher's relay that cut its power restarted it). Beats are intake dicts
    with ``received_at`` and ``clock_offset_ms`` added.
    """
    if previous is None:
        return None
    last = outage_started_at
    booted = boot_time(first, received_at)
    old_id, new_id = previous.get("boot_id"), first.get("boot_id")
    if old_id and new_id:
        rebooted = old_id != new_id
    elif booted is not None:
        rebooted = booted > last + EDGE_SLACK_S
    else:
        return None
    site_up = down_cause in ("device-failure", "device-internet")
    windows = failed_sends(first, last, received_at)
    if rebooted and (booted is None or booted >= last - EDGE_SLACK_S):
        cycled = _relay_cycle(reports, last, booted if booted is not None else received_at)
        if cycled is not None:
            watcher, at = cycled
            return Cause("device-failure",
                         f"device failure, {format_duration(received_at - last)} (power-cycled by {watcher}'s relay "
                         f"{times.short(at)}, last heard {times.short(last)})",
                         f"{watcher}'s peer watchdog cut the device's power at {times.clock(at)} after it stayed "
                         f"silent, and it booted again (new boot id): the device had hung or failed while the site "
                         f"was up")
        return _power_cut(previous, first, last, received_at, booted, windows, site_up, times)
    if rebooted:
        # A new boot from before the silence: the stored last beat predates a reboot the monitor
        # missed, so only the failed sends can tell anything.
        return _internet(first, last, received_at, windows, site_up, None, times) if windows else None
    restarted = agent_restarted(previous, first)
    if windows:
        return _internet(first, last, received_at, windows, site_up, restarted, times)
    if restarted:
        started = received_at - (first["sent_at"] - first["agent_started_at"])
        uptime = first.get("uptime_s")
        up = f"; up {format_duration(uptime)}" if uptime is not None else ""
        return Cause("agent-restart",
                     f"agent restarted, {format_duration(received_at - last)} (no reboot{up}; agent started "
                     f"{times.short(started)}, last heard {times.short(last)})",
                     f"same boot id: the device stayed powered; its phonehome agent started again at "
                     f"{times.clock(started)} after it was last heard at {times.clock(last)}, and recorded no "
                     f"failed sends")
    if restarted is False:
        return Cause("unknown",
                     f"cause unknown, {format_duration(received_at - last)} (no reboot, no agent restart, no failed "
                     f"sends recorded)",
                     "same boot id and the same agent, which recorded no failed sends: its heartbeats were lost "
                     "on the way, or the agent or the device stalled")
    return None


def _relay_cycle(reports, start, end):
    """(watcher, at) of the last power cycle a watcher's relay made within [start, end], or None."""
    cycles = [(at, r.watcher) for r in reports for at, _ in r.power_cycles
              if start - EDGE_SLACK_S <= at <= end + EDGE_SLACK_S]
    if not cycles:
        return None
    at, watcher = max(cycles)
    return watcher, at


def _power_cut(previous, first, last, received_at, booted, windows, site_up, times):
    interval = previous.get("interval_s")
    if booted is None:
        kind, what = ("device-failure", "device rebooted") if site_up else ("power-cut", "power cut")
        return Cause(kind, f"{what}, at most {format_duration(received_at - last)} (new boot, last heard "
                           f"{times.short(last)})",
                     f"new boot id, no uptime: the device booted between {times.clock(last)} (last heard) and "
                     f"{times.clock(received_at)}")
    off = max(0.0, booted - last)
    evidence = f"rebooted {times.short(booted)}, last heard {times.short(last)}"
    if site_up:
        kind, summary = "device-failure", f"device rebooted, {format_duration(off)} ({evidence}; the site was up)"
    else:
        kind, summary = "power-cut", f"power cut, {format_duration(off)} ({evidence})"
    detail = (f"new boot id: the device booted at {times.clock(booted)} (received {times.clock(received_at)} "
              f"with uptime {format_duration(first['uptime_s'])}; earlier at most by the heartbeat's delivery delay); "
              f"power went off after {times.clock(last)} (its last heartbeat)")
    if interval is not None and interval < off:
        detail += (f" and before {times.clock(last + interval)} (its next heartbeat was due): off for "
                   f"{format_duration(off - interval)} to {format_duration(off)}")
    else:
        detail += f": off for at most {format_duration(off)}"
    if windows:
        back = max(hi for _, hi, _ in windows)
        detail += (f"; after booting its sends failed until {times.clock(back)} (the router or the Internet came "
                   f"back later)")
    return Cause(kind, summary, detail)


def _internet(first, last, received_at, windows, site_up, restarted, times):
    lo, hi = windows[0][0], max(w[1] for w in windows)
    count = sum(w[2] for w in windows)
    span = f"{times.short(max(lo, last))}\u2013{times.short(min(hi, received_at))}"
    length = format_duration(max(0.0, min(hi, received_at) - max(lo, last)))
    if site_up:
        kind, summary = "device-internet", f"own Internet path down, {length} ({span} by its failed sends; " \
                                           f"the site was up)"
    else:
        kind, summary = "internet", f"Internet down, {length} ({span} by its own failed sends; no reboot)"
    uptime = first.get("uptime_s")
    up = f" (up {format_duration(uptime)})" if uptime is not None else ""
    detail = (f"same boot id{up}: the device stayed powered; it recorded {count} failed send"
              f"{'s' if count != 1 else ''} from {times.clock(lo)} to {times.clock(hi)}"
              f"{' (its clock, corrected by its offset)' if first.get('clock_offset_ms') is not None else ''}")
    if restarted:
        detail += "; its agent was also restarted meanwhile"
    return Cause(kind, summary, detail)


# -- short reboots while up ------------------------------------------------------


def rebooted(previous, beat):
    """True when ``beat`` comes from another boot than ``previous``: a new boot id, or without boot ids an
    uptime that went backwards. Cheap: it runs for every heartbeat."""
    old_id, new_id = previous.get("boot_id"), beat.get("boot_id")
    if old_id and new_id:
        return old_id != new_id
    old_up, new_up = previous.get("uptime_s"), beat.get("uptime_s")
    return old_up is not None and new_up is not None and new_up < old_up


def reboot_in_beat(previous, beat, *, received_at, times):
    """A Cause of kind "reboot" when ``beat`` comes from a new boot of a device that stayed up; else None.

    See ``rebooted``. The first beat after a monitor restart is compared with
    the stored last beat, so a restart of the monitor alone is no reboot.
    """
    if previous is None or not rebooted(previous, beat):
        return None
    booted = boot_time(beat, received_at)
    last = previous.get("received_at")
    if booted is None:
        return Cause("reboot", "rebooted (new boot id), power blip?",
                     "new boot id, no uptime: the boot time is not known")
    summary = f"rebooted at {times.zoned(booted)} (up {format_duration(beat['uptime_s'])}), power blip?"
    detail = f"new boot id: booted at {times.clock(booted)} (received {times.clock(received_at)} with uptime " \
             f"{format_duration(beat['uptime_s'])})"
    if last is not None and last <= booted:
        detail += f"; last heard before it at {times.clock(last)}, so it was off for at most " \
                  f"{format_duration(booted - last)}"
    return Cause("reboot", summary, detail)

"""The monitor's reading of its events: causes, sites and reboots, from what the service holds.

The service hands every heartbeat (``on_beat``) and every event before it is
stored (``plan``) to one ``Explainer``, under its lock. It gives back the
events with their causes, the site alerts and reboots they lead to, and what
becomes of DOWNs held for a site window (``Settled`` entries for the store).
No I/O and no clock: the decisions are ``causes`` and ``sites``; this module
gathers their evidence from the service's last beats and machine states.

Per heartbeat it costs a few dictionary reads (more only for a beat that
carries peer reports, at most 50 of them), so ingestion stays O(1).
"""

import dataclasses
import logging

from appliance.alerts.messages import Times
from appliance.monitor.causes import (PeerReport, cause_of_site, cause_on_down, cause_on_up, lan_margin,
                                      merged_into_site, reboot_in_beat, rebooted)
from appliance.monitor.events import Event, Kind, State
from appliance.monitor.sites import Sites
from appliance.monitor.store import Settled
from appliance.timefmt import format_duration

log = logging.getLogger("phonehome.monitor")
# A site's own events go under "site:NAME": no device name has a colon, so a site may share a device's name.
SITE_PREFIX = "site:"


class PeerIndex:
    """Who reports on whom: {device: {watchers}}, from each watcher's last heartbeat."""

    def __init__(self):
        self._watchers = {}   # device -> set of watcher names
        self._subjects = {}   # watcher -> frozenset of the devices its last beat reports on

    def update(self, watcher, peers):
        """``watcher``'s latest beat reports on ``peers`` (its "peers" list, or None)."""
        if not peers and watcher not in self._subjects:
            return
        new = frozenset(p["name"] for p in peers or () if p["name"] != watcher)
        old = self._subjects.get(watcher, frozenset())
        if new == old:
            return
        for name in old - new:
            watchers = self._watchers.get(name)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    del self._watchers[name]
        for name in new - old:
            self._watchers.setdefault(name, set()).add(watcher)
        if new:
            self._subjects[watcher] = new
        else:
            self._subjects.pop(watcher, None)

    def watchers(self, device):
        """The names whose last beat reports on ``device``."""
        return set(self._watchers.get(device, ()))


class Explainer:
    """Causes, sites and reboots for one MonitorService.

    ``machine`` is the service's Machine, ``beats`` its {device: last beat}
    dict (only read: ``on_beat`` adds its interval estimate to the new beat
    before the service keeps it); ``devices`` the MonitoredDevices; ``tz``
    the zone the cause sentences are written in (None: the host's, as the
    alerts use).
    """

    def __init__(self, machine, beats, devices, *, window_s=60.0, notify_reboots=False, tz=None):
        self._machine = machine
        self._beats = beats
        self._tz = tz
        self._configs = {d.name: d for d in devices}
        self._sites = Sites(devices, window_s=window_s)
        self.notify_reboots = notify_reboots
        self._peers = PeerIndex()
        for name, beat in beats.items():
            self._peers.update(name, beat.get("peers"))
        self._down_causes = {}  # device -> the cause kind found on the way down, while its outage lasts

    @property
    def window_s(self):
        """How long a sited device's DOWN waits for the rest of its site (monitor.site_window_s)."""
        return self._sites.window_s

    def configure(self, devices, *, window_s, notify_reboots):
        """Use a new device list; return the Settled releases of held DOWNs whose device left its site."""
        self._configs = {d.name: d for d in devices}
        self.notify_reboots = notify_reboots
        return [Settled(event_id, True, None, None, device=device) for device, event_id in
                self._sites.configure(devices, window_s=window_s)]

    def restore(self, *, held, site_outages, open_causes, now):
        """Take back what the store kept across a restart; return Settled releases for DOWNs that lost their site.

        ``held`` is Store.held_downs(), ``site_outages`` Store.site_outages(),
        ``open_causes`` Store.open_causes().
        """
        self._down_causes.update(open_causes)
        for site in site_outages:
            if self._sites.members(site):
                self._sites.went_out(site)
        settle = []
        for event_id, device, at in held:
            site = self._sites.site_of(device)
            if site is None:
                settle.append(Settled(event_id, True, None, None, device=device))
            else:
                self._sites.hold(site, device, event_id, now, at=at)
        return settle

    def _times(self, now):
        return Times(now.wall, self._tz)

    def _state(self, name):
        return self._machine.state_of(name) if name in self._machine else None

    # -- heartbeats -----------------------------------------------------------

    def on_beat(self, previous, beat, old, events, now):
        """Read one heartbeat: return ``events`` with the UP's cause, and a REBOOT when it rebooted while up.

        ``previous`` is the device's last beat before this one (None if
        none), ``old`` its State before this beat, ``beat`` the intake dict
        with ``received_at`` and ``clock_offset_ms`` set; this adds the
        ``interval_s`` estimate to it.
        """
        device = beat["device"]
        if previous is not None:
            self._estimate_interval(previous, beat, now)
        self._peers.update(device, beat.get("peers"))
        if old is State.UP and not events:
            return self._reboot(previous, beat, now)
        out = []
        for e in events:
            if e.kind is Kind.UP and previous is not None:
                cause = cause_on_up(previous, beat, outage_started_at=e.outage_started_at, received_at=now.wall,
                                    times=self._times(now), down_cause=self._down_causes.get(device),
                                    reports=self._reports_on(device))
                if cause is not None:
                    e = dataclasses.replace(e, cause=cause.kind, reason=cause.summary, detail=cause.detail)
            out.append(e)
        return out

    def _estimate_interval(self, previous, beat, now):
        """The seconds between two consecutive sends of one agent, carried from beat to beat."""
        if previous.get("boot_id") != beat.get("boot_id"):
            return
        seq, last = previous.get("seq"), previous.get("received_at")
        config = self._configs.get(beat["device"])
        if seq and beat["seq"] == seq + 1 and last is not None and config is not None \
                and 0 < now.wall - last < config.max_silence_s:
            beat["interval_s"] = now.wall - last
        elif previous.get("interval_s") is not None:
            beat["interval_s"] = previous["interval_s"]

    def _reboot(self, previous, beat, now):
        if previous is None or not rebooted(previous, beat):  # checked first: this runs for every heartbeat
            return []
        cause = reboot_in_beat(previous, beat, received_at=now.wall, times=self._times(now))
        device = beat["device"]
        return [Event(device, Kind.REBOOT, State.UP, State.UP, now.wall, cause.summary,
                      last_heard_at=previous.get("received_at"), cause=cause.kind, detail=cause.detail,
                      site=self._sites.site_of(device), alert=True if self.notify_reboots else None)]

    # -- events ------------------------------------------------------------

    def plan(self, events, now, muted):
        """Causes and sites for events about to be stored: return (events, [Settled]).

        ``muted(name)`` says whether a device's alerts are paused. A DOWN
        gets the cause the evidence tells now, or is held for its site's
        window, or is merged into a site alert (which this adds); an UP
        releases its DOWN when that is still held; a REMINDER of a device
        whose whole site is out stands for the site's, or is not alerted.
        """
        out, settle = [], []
        for e in events:
            site = self._sites.site_of(e.device)
            if site is not None and e.kind is not Kind.SITE_DOWN:
                e = dataclasses.replace(e, site=site)
            if e.kind is Kind.DOWN:
                self._plan_down(e, site, now, muted, out, settle)
                continue
            if e.kind is Kind.UP:
                event_id = self._sites.take_device(e.device)
                if event_id is not None:  # back within its site window: its DOWN goes out first
                    settle.append(self._release(e.device, event_id, now))
                if site is not None:
                    self._sites.back(site)
                self._down_causes.pop(e.device, None)
            elif e.kind is Kind.REMINDER and site is not None and self._sites.is_out(site):
                if e.device == self._sites.lead(site, muted, self._state):
                    e = dataclasses.replace(e, cause="site-outage",
                                            reason=f"all {len(self._sites.members(site))} devices silent")
                else:
                    e = dataclasses.replace(e, alert=False)
            out.append(e)
        return out, settle

    def _plan_down(self, e, site, now, muted, out, settle):
        if site is None:
            out.append(self._with_down_cause(e, now))
        elif self._sites.is_out(site):
            out.append(self._merged(e, site, now))
        elif self._sites.all_silent(site, self._state):
            out.append(self._merged(e, site, now))
            out.append(self._site_down(site, self._sites.take(site), now, muted, settle))
        elif self._sites.window_s > 0 and e.alerts and not muted(e.device):
            out.append(dataclasses.replace(e, held=True))
        else:
            out.append(self._with_down_cause(e, now))

    def _with_down_cause(self, e, now):
        cause = self._down_cause(e.device, now)
        if cause is None:
            return e
        self._down_causes[e.device] = cause.kind
        return dataclasses.replace(e, cause=cause.kind, reason=cause.summary, detail=cause.detail)

    def _down_cause(self, device, now):
        view = self._machine.view(device)
        if view.last_heard_at is None:
            return None
        site = self._sites.site_of(device)
        mates = [n for n in self._sites.members(site) if n != device and self._state(n) is State.UP]
        return cause_on_down(last_heard_at=view.last_heard_at, reports=self._reports_on(device),
                             site_mates_up=mates, times=self._times(now),
                             lan_margin_s=lan_margin((self._beats.get(device) or {}).get("interval_s")))

    def _reports_on(self, device):
        """PeerReports on ``device`` from watchers that are up at this monitor."""
        config = self._configs.get(device)
        site = config.site if config is not None else ""
        reports = []
        for watcher in sorted(self._peers.watchers(device)):
            beat = self._beats.get(watcher)
            if beat is None or self._state(watcher) is not State.UP:
                continue
            entry = next((p for p in beat.get("peers") or () if p["name"] == device), None)
            if entry is None:
                continue
            shift = (beat.get("clock_offset_ms") or 0.0) / 1000.0  # the watcher's clock onto ours
            heard, since = entry.get("last_heard_at"), entry.get("down_since")
            watcher_config = self._configs.get(watcher)
            reports.append(PeerReport(
                watcher, entry["state"], None if heard is None else heard - shift,
                None if since is None else since - shift, beat["received_at"],
                same_site=bool(site) and watcher_config is not None and watcher_config.site == site,
                power_cycles=tuple((c["at"] - shift, None if c["came_back_at"] is None else c["came_back_at"] - shift)
                                   for c in entry.get("power_cycles") or ())))
        return reports

    def _release(self, device, event_id, now):
        cause = self._down_cause(device, now) if device in self._machine else None
        if cause is None:
            return Settled(event_id, True, None, None, device=device)
        self._down_causes[device] = cause.kind
        return Settled(event_id, True, cause.kind, cause.summary, cause.detail, device=device)

    def _merged(self, e, site, now):
        cause = merged_into_site(site, len(self._sites.members(site)), times=self._times(now))
        self._down_causes[e.device] = cause.kind
        return dataclasses.replace(e, alert=False, held=False, cause=cause.kind, reason=cause.summary,
                                   detail=cause.detail)

    def _site_down(self, site, held, now, muted, settle):
        """The SITE_DOWN event of ``site``, every device of which is silent; adds to ``settle`` the merges of
        the ``held`` DOWNs ({device: event id})."""
        times = self._times(now)
        merged = merged_into_site(site, len(self._sites.members(site)), times=times)
        for device, event_id in sorted(held.items()):
            self._down_causes[device] = merged.kind
            settle.append(Settled(event_id, False, merged.kind, merged.summary, merged.detail, device=device))
        views = [self._machine.view(n) for n in self._sites.members(site) if n in self._machine]
        views = [v for v in views if v.state is State.DOWN]
        cause = cause_of_site(site, [(v.name, v.last_heard_at) for v in views], times=times)
        started = min((v.outage_started_at for v in views if v.outage_started_at is not None), default=now.wall)
        heard = max((v.last_heard_at for v in views if v.last_heard_at is not None), default=None)
        self._sites.went_out(site)
        return Event(SITE_PREFIX + site, Kind.SITE_DOWN, State.UP, State.DOWN, now.wall, cause.summary,
                     last_heard_at=heard, outage_started_at=started, outage_s=now.wall - started, cause=cause.kind,
                     detail=cause.detail, site=site, alert=not all(muted(n) for n in self._sites.members(site)))

    def due(self, now, muted):
        """Decide the site windows that have ended: return (events, [Settled]) as ``plan`` does."""
        events, settle = [], []
        for site, held in self._sites.due(now):
            if self._sites.all_silent(site, self._state):  # e.g. decided after a restart
                events.append(self._site_down(site, held, now, muted, settle))
            else:
                settle.extend(self._release(device, event_id, now) for device, event_id in sorted(held.items()))
        return events, settle

    def stored(self, events, now):
        """Events are in the store: open the site windows of the DOWNs it holds.

        Returns [Settled] for held DOWNs whose site alert went out before they
        could be stored (a write that failed for a while): they are merged.
        """
        settle = []
        for e in events:
            if not e.held or e.site is None:
                continue
            if self._sites.is_out(e.site):
                merged = merged_into_site(e.site, len(self._sites.members(e.site)), times=self._times(now))
                settle.append(Settled(e.id, False, merged.kind, merged.summary, merged.detail, device=e.device))
            else:
                self._sites.hold(e.site, e.device, e.id, now)
        return settle

    def next_due(self):
        """The monotonic time the next site window ends, or None."""
        return self._sites.next_due()

    def site_of(self, device):
        return self._sites.site_of(device)


def log_event(e, muted, *, window_s, why_quiet=lambda e: None):
    """Log one line for a stored event; ``muted`` names the devices whose alerts are paused; ``why_quiet(e)``
    says why an event that is not alerted is not (flapping, acknowledged), when the reason is not its site's."""
    quiet = " (alerts paused)" if e.alerts and e.kind is not Kind.SITE_DOWN and e.device in muted else ""
    held_back = None if e.alerts else why_quiet(e)
    if e.kind is Kind.REMINDER:
        why = "not reminding: alerts paused" if quiet else "reminding" if e.alerts else \
            f"not reminding: {held_back}" if held_back else f"not reminding: site {e.site}'s reminder stands for it"
        log.info("%s: still down (%s); %s", e.device, e.reason, why)
    elif e.kind is Kind.CLOCK:
        log.info("%s: %s", e.device, e.reason)
    elif e.kind in (Kind.FLAPPING, Kind.STEADY):
        log.info("%s: %s: %s%s", e.device, e.kind.value, e.reason, quiet)
    elif e.kind is Kind.REBOOT:
        log.info("%s: %s (%s)%s", e.device, e.reason, "alerting" if e.alerts else "recorded, not alerted", quiet)
    elif e.kind is Kind.SITE_DOWN:
        log.info("site %s: %s; one alert for the site%s", e.site, e.reason, "" if e.alerts else
                 " (alerts paused for all its devices)")
    elif e.kind in (Kind.MASS_SILENCE, Kind.MASS_SILENCE_END):
        (log.warning if e.kind is Kind.MASS_SILENCE else log.info)("%s: %s", e.kind.value.replace("-", " "), e.reason)
    elif e.held:
        log.info("%s: %s -> %s (%s); alert held up to %s for the rest of site %s%s", e.device, e.old.value,
                 e.new.value, e.reason, format_duration(window_s), e.site, quiet)
    elif e.kind is Kind.DOWN and e.cause == "site-outage":
        log.info("%s: %s -> %s (no heartbeat); part of site %s's alert", e.device, e.old.value, e.new.value, e.site)
    else:
        log.info("%s: %s -> %s (%s)%s", e.device, e.old.value, e.new.value, e.reason,
                 quiet or (f" (not alerted: {held_back})" if held_back else ""))

"""The monitor's doubt about itself: mass silence, its own connectivity, and the DOWN alerts it holds. Pure.

When many devices fall silent at once, the likelier story is the monitor's
own problem (its Internet link, its way in) or a regional one, not many
failures at once. So:

- Mass silence: when the DOWNs of the last minute (``MASS_WINDOW_S``) reach
  ``monitor.mass_silence_share`` of the devices that were up, and those are at
  least ``monitor.mass_silence_min_devices``, one MASS_SILENCE alert goes out
  and the devices' own DOWN alerts are held. The first DOWNs of such a
  silence come before the share is reached, so a DOWN is held for up to a
  minute ("watch") when the devices that are already quiet (not heard for
  half their max_silence_s) would reach the share if they went down too.
- Connectivity: "ok" when a canary answered its last probe, "lost" when none
  did, "unknown" without canaries. While it is lost, every new DOWN is held.
- Release: a held DOWN goes out once the monitor has a proof of its own
  connectivity received after it was held (a canary's answer or any
  heartbeat) and the device is still silent its ``max_silence_s`` after that
  proof: the startup grace again, because a monitor that was cut off is like
  one that was not running. When the canaries answered all along since the
  device went silent, the grace is not needed: it goes out at the proof.
- A device back before then has its DOWN merged (never sent) and its UP
  recorded but not sent: nobody was told it was down. (One back within a
  watch, when no mass silence came of it, gets its DOWN, then its UP, as
  with a site window.)
- A held site alert goes out when a device of its site is still down at its
  release (the held DOWNs of its devices merge into it), else it is merged.
- When the last held DOWN of a mass silence is settled, one MASS_SILENCE_END
  alert says how it ended.

Held DOWNs are rows of the store (status 'held', plus a ``self_holds`` row):
a restarted monitor takes them back; having not run, it needs a new proof
and grace for each. Per heartbeat this costs one test (``beat``); the
first proof after new holds dates them all at once.
"""

import dataclasses
import logging

from appliance.alerts.messages import Times
from appliance.monitor.connectivity import Connectivity
from appliance.monitor.events import Event, Kind, State
from appliance.monitor.store import Settled
from appliance.timefmt import format_duration

log = logging.getLogger("phonehome.monitor")

MASS_WINDOW_S = 60.0
# A device not heard for this share of its max_silence_s is "quiet": it may be the next to go down.
QUIET_FRACTION = 0.5
# The devices' states are counted (O(devices)) at most this often while DOWNs come in.
CENSUS_EVERY_S = 1.0
# The monitor's own events go under this name: no device name has a colon.
MONITOR = "monitor:self"
SITE_PREFIX = "site:"
_SHOWN_NAMES = 20


def is_mass_silence(silent, up, *, share, min_devices):
    """True when ``silent`` devices gone down within one window, out of ``silent + up`` that were up, are a mass
    silence: at least two, at least ``share`` (0 < share <= 1) of them, and those at least ``min_devices``."""
    total = silent + up
    return total >= min_devices and silent >= 2 and silent >= share * total


def may_become_mass(silent, quiet, up, *, share, min_devices):
    """True when the silence would be a mass silence if the ``quiet`` devices (of the ``up`` ones) went down too."""
    return is_mass_silence(silent + quiet, up - quiet, share=share, min_devices=min_devices)


class _Hold:
    """One held alert: a DOWN ("down") or a site alert ("site"); monotonic times."""

    __slots__ = ("event_id", "key", "kind", "site", "silent_since", "max_silence_s", "reason", "proof", "due")

    def __init__(self, event_id, key, kind, site, silent_since, max_silence_s, reason):
        self.event_id, self.key, self.kind, self.site = event_id, key, kind, site
        self.silent_since, self.max_silence_s, self.reason = silent_since, max_silence_s, reason
        self.proof = None   # the first proof of connectivity after it was held
        self.due = None     # when it goes out, once proved


class _Episode:
    __slots__ = ("event_id", "at", "silent", "total", "back", "released")

    def __init__(self, at, silent, total):
        self.event_id, self.at, self.silent, self.total = None, at, silent, total
        self.back = self.released = 0


class SelfCheck:
    """Mass silences and the alerts held while the monitor doubts its own connectivity.

    ``devices`` are the MonitoredDevices; ``share`` and ``min_devices`` are
    monitor.mass_silence_share and mass_silence_min_devices; ``tz`` the zone
    of the times written into reasons (None: the host's). Every method takes
    the current time as a ``Now`` and is called under the service's lock.
    """

    def __init__(self, devices=(), *, share=0.5, min_devices=4, tz=None):
        self.connectivity = Connectivity()
        self._tz = tz
        self._recent = {}       # device -> monotonic time of its DOWN, oldest first, within MASS_WINDOW_S
        self._downs = 0         # DOWNs seen, to correct a census taken less than CENSUS_EVERY_S ago
        self._census = None     # (mono, up, quiet, self._downs then)
        self._watch_until = None
        self._episode = None
        self._holds = {}        # device name or "site:NAME" -> _Hold
        self._unproven = []     # holds waiting for a proof of connectivity
        self._pending = {}      # key -> reason, for events marked self_held and not stored yet
        self._next = None       # cached next_due
        self.configure(devices, share=share, min_devices=min_devices)

    def configure(self, devices, *, share, min_devices):
        """Use a new device list and thresholds; holds of removed devices are merged at the next ``due``."""
        self._configs = {d.name: d for d in devices}
        groups = {}
        for d in devices:
            if d.site:
                groups.setdefault(d.site, []).append(d.name)
        self._members = {site: tuple(sorted(names)) for site, names in groups.items() if len(names) >= 2}
        self.share, self.min_devices = share, min_devices
        for h in self._holds.values():  # a changed max_silence_s applies to holds not yet proved
            if h.proof is None:
                h.max_silence_s = self._max_silence(h.kind, h.key, h.site)

    # -- what the service asks -------------------------------------------------

    @property
    def holding(self):
        """Why new DOWN alerts are held now ("mass", "watch", "lost"), or None."""
        if self._episode is not None:
            return "mass"
        if self._watch_until is not None:
            return "watch"
        if self.connectivity.state == "lost":
            return "lost"
        return None

    def held_ids(self):
        """The event ids of the alerts held (for the site windows' restore to leave alone)."""
        return {h.event_id for h in self._holds.values()}

    def held_count(self):
        return len(self._holds) + len(self._pending)

    def episode_started_at(self):
        """Wall time of the open mass silence, or None."""
        return self._episode.at if self._episode is not None else None

    def next_due(self):
        """The monotonic time the next hold or watch may end, or None. O(1) (cached)."""
        return self._next

    # -- proofs of connectivity ------------------------------------------------

    def beat(self, now):
        """A heartbeat arrived (any device): the monitor can be reached. O(1) but for the first after new holds."""
        if self._unproven:
            self._prove(now)

    def canary(self, ok, now, detail=""):
        """A canary probe's result; returns True when the connectivity state changed."""
        changed = self.connectivity.canary(ok, now, detail)
        if ok and self._unproven:
            self._prove(now)
        return changed

    def _prove(self, now):
        since = self.connectivity.ok_since
        for h in self._unproven:
            if self._holds.get(h.key) is h:
                h.proof = now.mono
                # Canaries that answered all along since it went silent: the monitor could have heard it.
                h.due = now.mono if since is not None and since <= h.silent_since else now.mono + h.max_silence_s
        self._unproven = []
        self._update_next()

    # -- events ---------------------------------------------------------------

    def plan(self, events, settles, now, *, muted, state_of, census, last_heard):
        """Hold what must wait for the monitor's own connectivity: return (events, settles) to store.

        ``events`` and ``settles`` are what the site logic made of a batch
        (see explain.Explainer.plan); ``muted(name)`` says whether a
        device's alerts are paused, ``state_of(name)`` gives its State (None
        for an unknown one), ``census(now)`` gives (up, quiet) over all
        devices (see machine.Machine.census), ``last_heard(name)`` a device's
        last heartbeat's wall time or None. A MASS_SILENCE event may come
        first in the events returned.
        """
        downs = [e.device for e in events if e.kind is Kind.DOWN]
        for e in events:
            if e.kind is Kind.UP:
                self._recent.pop(e.device, None)
        out = []
        if downs:
            out += self._count(downs, now, census)
        reason = self.holding
        out_settles = []
        for s in settles:
            if s.release and reason is not None and s.by != "self":
                # The site window let a DOWN go while the monitor doubts itself: it is held on, here.
                heard = last_heard(s.device)
                self._add(s.event_id, s.device, "down", self._site_of(s.device), now, heard, reason)
                s = dataclasses.replace(s, release=False, keep_held=True, by="self")
            out_settles.append(s)
        for e in events:
            out.append(self._plan_event(e, reason, now, muted, state_of, out_settles))
        out += self._maybe_end(now)
        return out, out_settles

    def _count(self, downs, now, census):
        """Count a batch of DOWNs; open a mass silence or a watch. Returns [MASS_SILENCE event] or []."""
        for name in downs:
            self._recent.pop(name, None)
            self._recent[name] = now.mono
        self._downs += len(downs)
        horizon = now.mono - MASS_WINDOW_S
        for name in [n for n, t in self._recent.items() if t < horizon]:
            del self._recent[name]
        if self._episode is not None:
            return []
        silent = len(self._recent)
        up, quiet = self._census_now(now, census)
        if is_mass_silence(silent, up, share=self.share, min_devices=self.min_devices):
            return [self._open(now, silent, silent + up)]
        if self._watch_until is None and may_become_mass(silent, quiet, up, share=self.share,
                                                         min_devices=self.min_devices):
            self._watch_until = now.mono + MASS_WINDOW_S
            self._update_next()
            log.info("%d device(s) down within a minute and %d more quiet: their DOWN alerts wait up to %s in "
                     "case it is a mass silence", silent, quiet, format_duration(MASS_WINDOW_S))
        return []

    def _census_now(self, now, census):
        c = self._census
        if c is None or not 0 <= now.mono - c[0] < CENSUS_EVERY_S:
            up, quiet = census(now)
            self._census = (now.mono, up, quiet, self._downs)
            return up, quiet
        gone = self._downs - c[3]  # went down since the census: they were up (and quiet)
        return max(0, c[1] - gone), max(0, c[2] - gone)

    def _open(self, now, silent, total):
        self._episode = _Episode(now.wall, silent, total)
        self._watch_until = None
        for h in self._holds.values():
            if h.reason == "watch":
                h.reason = "mass"
        self._update_next()
        state = self.connectivity.state
        names = sorted(self._recent)
        shown = ", ".join(names[:_SHOWN_NAMES]) + (f" and {len(names) - _SHOWN_NAMES} more"
                                                   if len(names) > _SHOWN_NAMES else "")
        reason = (f"{silent} of {total} devices silent within a minute \u2014 monitor-side or regional problem? "
                  f"monitor connectivity: {state}")
        detail = (f"silent: {shown}. Their DOWN alerts are held until the monitor's own connectivity is confirmed "
                  f"(a canary answers or a heartbeat arrives) and they stay silent their max_silence_s after that.")
        return Event(MONITOR, Kind.MASS_SILENCE, State.UP, State.DOWN, now.wall, reason, outage_started_at=now.wall,
                     detail=detail)

    def _plan_event(self, e, reason, now, muted, state_of, settles):
        if e.kind is Kind.DOWN:
            if reason is not None and e.alerts and not e.held and not muted(e.device):
                self._pending[e.device] = reason
                return dataclasses.replace(e, self_held=True)
        elif e.kind is Kind.SITE_DOWN:
            if reason is not None and e.alerts:
                self._pending[e.device] = reason
                return dataclasses.replace(e, self_held=True)
        elif e.kind is Kind.UP:
            hold = self._holds.pop(e.device, None)
            if hold is not None and hold.reason in ("watch", "released"):
                # Only waiting to see whether more follow, as a site window does: its DOWN, then its UP.
                settles.append(Settled(hold.event_id, True, None, None, device=e.device, by="self"))
                return e
            if hold is not None:
                settles.append(self._merge(hold, "back before the monitor's own connectivity was confirmed"))
                self._back()
                log.info("%s: back before its held DOWN alert went out: neither DOWN nor UP is sent", e.device)
                return dataclasses.replace(e, alert=False)
            if e.site and SITE_PREFIX + e.site in self._holds:
                return dataclasses.replace(e, alert=False)  # its site's alert was never sent
        elif e.kind is Kind.REMINDER and e.alerts:
            return self._remind(e, muted, state_of)
        return e

    def _remind(self, e, muted, state_of):
        """While alerts are held, one device's reminder stands for all of them (the first by name), said so."""
        held = self._held_devices(state_of)
        if e.device not in held:
            return e
        lead = next((n for n in held if not muted(n)), None)
        if e.device != lead:
            return dataclasses.replace(e, alert=False)
        why = "a mass silence" if self._episode is not None else "the monitor's own connectivity is in doubt"
        return dataclasses.replace(e, reason=f"{e.reason}; {len(held)} device(s) silent whose DOWN alerts are "
                                             f"held: {why}")

    def _held_devices(self, state_of):
        names = set()
        for h in self._holds.values():
            if h.kind == "down":
                names.add(h.key)
            else:
                names.update(n for n in self._members.get(h.site, ()) if state_of(n) is State.DOWN)
        return sorted(names)

    def stored(self, events, now, *, last_heard):
        """Events are in the store: take up the holds of those marked self_held and the mass silence's id."""
        for e in events:
            if e.kind is Kind.MASS_SILENCE and self._episode is not None and self._episode.event_id is None:
                self._episode.event_id = e.id
            if not e.self_held:
                continue
            reason = self._pending.pop(e.device, None) or self.holding or "lost"
            if e.kind is Kind.SITE_DOWN:
                self._add(e.id, e.device, "site", e.site, now, e.last_heard_at, reason)
            else:
                self._add(e.id, e.device, "down", e.site or self._site_of(e.device), now,
                          e.last_heard_at if e.last_heard_at is not None else last_heard(e.device), reason)

    def _add(self, event_id, key, kind, site, now, heard_wall, reason, *, quiet=False):
        silent = now.mono - max(0.0, now.wall - heard_wall) if heard_wall is not None else now.mono
        hold = _Hold(event_id, key, kind, site, silent, self._max_silence(kind, key, site), reason)
        self._holds[key] = hold
        self._unproven.append(hold)
        if not quiet:
            log.info("%s: DOWN alert held: %s", key, _WHY[reason])

    def _max_silence(self, kind, key, site):
        names = self._members.get(site, ()) if kind == "site" else (key,)
        return max((self._configs[n].max_silence_s for n in names if n in self._configs), default=0.0)

    def _site_of(self, name):
        config = self._configs.get(name)
        return config.site if config is not None and config.site in self._members else None

    # -- the scheduler --------------------------------------------------------------

    def due(self, now, *, state_of):
        """Settle the holds whose time came: return (events, [Settled]) for the store."""
        if (self._next is None or now.mono < self._next) and (self._episode is None or self._holds):
            return [], []  # nothing due (called at every step of the scheduler)
        settles = []
        if self._watch_until is not None and now.mono >= self._watch_until:
            self._watch_until = None
            lost = self.connectivity.state == "lost"
            for h in self._holds.values():
                if h.reason == "watch":
                    h.reason = "lost" if lost else "released"
            if not lost:
                log.info("no mass silence within a minute: the DOWN alerts held meanwhile go out")
        ready = [h for h in self._holds.values() if h.reason == "released" or (h.due is not None and now.mono >= h.due)]
        # Site alerts first: the DOWNs of a site whose alert goes out merge into it.
        for h in sorted(ready, key=lambda h: (h.kind != "site", h.key)):
            if h.key not in self._holds:
                continue
            if h.kind == "site":
                settles += self._settle_site(h, now, state_of)
            elif SITE_PREFIX + str(h.site) in self._holds:
                continue  # waits for its site's alert
            elif state_of(h.key) is State.DOWN:
                del self._holds[h.key]
                settles.append(Settled(h.event_id, True, None, None, device=h.key, by="self"))
                self._released(h, now)
            else:  # removed from the config, or back while its UP was not seen here
                del self._holds[h.key]
                settles.append(self._merge(h, "the device is no longer down"))
        events = self._maybe_end(now)
        self._update_next()
        return events, settles

    def _settle_site(self, h, now, state_of):
        del self._holds[h.key]
        members = self._members.get(h.site, ())
        down = [n for n in members if state_of(n) is State.DOWN]
        if not down:
            self._back()
            return [self._merge(h, "its site came back before the monitor's own connectivity was confirmed")]
        out = [Settled(h.event_id, True, None, None, device=h.key, by="self")]
        back = [n for n in members if n not in down]
        if back:
            out[0] = dataclasses.replace(out[0], reason=f"all {len(members)} devices went silent; "
                                                        f"{', '.join(back)} came back since")
        for name in down:
            mate = self._holds.get(name)
            if mate is not None:
                del self._holds[name]
                out.append(self._merge(mate, "merged into the site alert"))
        self._released(h, now)
        return out

    def _released(self, h, now):
        if self._episode is not None:
            self._episode.released += 1
        log.info("%s: held DOWN alert goes out: the monitor's connectivity is confirmed and it is still silent",
                 h.key)

    def _back(self):
        if self._episode is not None:
            self._episode.back += 1

    def _merge(self, h, note):
        return Settled(h.event_id, False, None, None, device=h.key, by="self", note=note)

    def _maybe_end(self, now):
        ep = self._episode
        # Not in the batch that opened it (its id comes with the write): its end is at least one step later.
        if ep is None or ep.event_id is None or self._holds or self._pending:
            return []
        self._episode = None
        times = Times(now.wall, self._tz)
        if ep.released:
            reason = (f"the monitor's connectivity is confirmed; {ep.released} device(s) or site(s) still silent "
                      f"\u2014 their DOWN alerts went out; {ep.back} came back before")
        else:
            reason = (f"the silent devices are back by {times.zoned(now.wall)} and no DOWN or UP alert was sent "
                      f"for them; monitor connectivity: {self.connectivity.state}")
        return [Event(MONITOR, Kind.MASS_SILENCE_END, State.DOWN, State.UP, now.wall, reason,
                      outage_started_at=ep.at, outage_s=max(0.0, now.wall - ep.at))]

    def _update_next(self):
        dues = [h.due for h in self._holds.values() if h.due is not None]
        if self._watch_until is not None:
            dues.append(self._watch_until)
        self._next = min(dues, default=None)

    # -- after a restart -----------------------------------------------------------

    def restore(self, rows, *, episode, now):
        """Take back the holds a stopped monitor left: ``rows`` from Store.self_holds(), ``episode`` the open
        mass silence's (event id, wall time) or None. Each needs a new proof and grace."""
        if episode is not None:
            self._episode = _Episode(episode[1], 0, 0)
            self._episode.event_id = episode[0]
        for event_id, key, kind, site, last_heard_at in rows:
            kind = "site" if kind == Kind.SITE_DOWN.value else "down"
            if kind == "down":
                site = self._site_of(key)
            self._add(event_id, key, kind, site, now, last_heard_at, "mass" if episode is not None else "lost",
                      quiet=True)  # the service says how many, once
        self._update_next()


_WHY = {
    "mass": "part of a mass silence, until the monitor's own connectivity is confirmed",
    "watch": "many devices quiet at once, up to a minute in case it is a mass silence",
    "lost": "the monitor's own connectivity is lost or not yet confirmed",
    "released": "",
}

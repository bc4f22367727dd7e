"""Alerts nobody needs right now, for one MonitorService: paused sites, acknowledged outages, flapping devices.

Device pauses are ``pauses.Pauses``; a site's pause lives in the same object
under "site:NAME" and mutes every device whose ``site`` is NAME, and with
them the site's own alert. The service calls, under its lock:

- ``screen(events, now)`` with the events the machine and the heartbeats
  make, before their causes and sites are planned: a flapping device's
  changes, reminders and reboots, and an acknowledged outage's reminders,
  come back with ``alert=False`` (stored, not sent), and the change that
  makes a device flapping is followed by one FLAPPING event;
- ``due(now, machine)`` from its scheduler: the STEADY summaries of flapping
  devices that kept one state for ``monitor.flap_quiet_s``;
- ``pause_of``/``muted`` for whose alerts are paused.

``ack_link(event)`` is called by the alert workers (any thread): it reads
only the store and settings that are replaced whole on a reload.
"""

import dataclasses
import logging

from appliance.alerts.messages import Times
from appliance.errors import AckError
from appliance.monitor.acks import LINK_VALID_S, Ack, Acks, link_key, make_token
from appliance.monitor.events import Event, Kind, State
from appliance.monitor.explain import SITE_PREFIX
from appliance.monitor.flapping import Flapping
from appliance.timefmt import format_duration

log = logging.getLogger("phonehome.monitor")
_CHANGES = (Kind.DOWN, Kind.UP)
# What a flapping device's alerts are, besides its changes: summarised too.
_SUMMARISED = (Kind.REMINDER, Kind.REBOOT)


class Quiet:
    """Site pauses, acknowledgements and flapping for one service.

    ``store`` is the service's Store, ``settings`` its config's Monitor,
    ``pauses`` its Pauses, ``secret`` the monitor's secret in data_dir
    (bytes) from which the acknowledgement links' key is derived.
    """

    def __init__(self, store, settings, pauses, *, secret, now):
        self._store = store
        self._pauses = pauses
        self._key = link_key(secret)
        self.acks = Acks(store.acks(), now=now)
        self.flapping = Flapping(threshold=settings.flap_threshold, quiet_s=settings.flap_quiet_s)
        self.flapping.restore(store.flap_episodes(), now)
        self.configure(settings)

    def configure(self, settings):
        """Use a new config's Monitor table; forget what belongs to devices no longer in it."""
        members = {}
        for d in settings.devices:
            if d.site:
                members.setdefault(d.site, []).append(d.name)
        self._members = {site: tuple(sorted(names)) for site, names in members.items()}
        self._site_of = {d.name: d.site for d in settings.devices if d.site}
        self.ack_duration_s = settings.ack_duration_s
        self.public_url = settings.public_url.rstrip("/")
        names = {d.name for d in settings.devices}
        gone = [device for device in self.flapping.episodes() if device not in names]
        self.flapping.configure(threshold=settings.flap_threshold, quiet_s=settings.flap_quiet_s, devices=names)
        for device in gone:
            self._forget_flap(device)

    # -- sites and pauses ---------------------------------------------------

    def sites(self):
        """{site: device names, sorted} of every site named in the config (one device is a site too)."""
        return dict(self._members)

    def site_of(self, name):
        """The site of device ``name`` in the config, or None."""
        return self._site_of.get(name)

    def site_pause(self, site, now):
        """``site``'s Pause while it lasts, else None."""
        return self._pauses.get(SITE_PREFIX + site, now)

    def pause_of(self, name, now):
        """The Pause that mutes device ``name``: its own or its site's, the longer one when both; else None."""
        own = self._pauses.get(name, now)
        site = self._site_of.get(name)
        theirs = self._pauses.get(SITE_PREFIX + site, now) if site else None
        if own is None or theirs is None:
            return own or theirs
        if own.until is None or theirs.until is None:
            return own if own.until is None else theirs
        return own if own.until >= theirs.until else theirs

    def muted(self, names, now):
        """The subset of device ``names`` whose alerts are paused at ``now`` (by themselves or by their site)."""
        return {n for n in names if self.pause_of(n, now) is not None}

    def paused_names(self, now):
        """The names of every device whose alerts are paused at ``now`` (of sites in the config only)."""
        names = set()
        for key in self._pauses.active(now):
            if key.startswith(SITE_PREFIX):
                names.update(self._members.get(key[len(SITE_PREFIX):], ()))
            else:
                names.add(key)
        return names

    # -- events -------------------------------------------------------------

    def screen(self, events, now):
        """The events with flapping and acknowledged outages taken into account, and FLAPPING events added."""
        out = []
        for e in events:
            if e.kind in _CHANGES:
                if e.kind is Kind.UP:
                    self.acks.drop(e.device)  # its outage is over; an acknowledgement is of one outage
                began, episode = self.flapping.change(e.device, now)
                if episode is not None:
                    self._save_flap(episode)
                    out.append(dataclasses.replace(e, alert=False))
                    if began:
                        out.append(self._flapping_event(e, episode, now))
                    continue
            elif e.kind in _SUMMARISED and e.alerts and self.flapping.episode(e.device) is not None:
                e = dataclasses.replace(e, alert=False)
            elif e.kind is Kind.REMINDER and e.alerts and self.acks.get(e.device, now) is not None:
                e = dataclasses.replace(e, alert=False)
            out.append(e)
        return out

    def _flapping_event(self, change, episode, now):
        times = Times(now.wall, None)
        return Event(change.device, Kind.FLAPPING, change.new, change.new, now.wall,
                     f"{episode.changes} state changes in the last hour",
                     last_heard_at=change.last_heard_at,
                     outage_started_at=change.outage_started_at if change.new is State.DOWN else None,
                     detail=f"first change {times.short(episode.first_at)}; its alerts are summarised until it keeps "
                            f"one state for {format_duration(self.flapping.quiet_s)}",
                     alert=True)

    def due(self, now, machine):
        """STEADY events of the flapping devices that kept one state for ``flap_quiet_s``; ``machine`` the
        service's Machine."""
        events = []
        for episode in self.flapping.due(now):
            self._forget_flap(episode.device)
            if episode.device not in machine:
                continue
            view = machine.view(episode.device)
            times = Times(now.wall, None)
            reason = (f"steady again since {times.short(episode.last_at)}: {episode.changes} changes during "
                      f"{times.short(episode.first_at)}\u2013{times.short(episode.last_at)}")
            down = view.state is State.DOWN
            events.append(Event(episode.device, Kind.STEADY, view.state, view.state, now.wall, reason,
                                last_heard_at=view.last_heard_at,
                                outage_started_at=view.outage_started_at if down else None,
                                outage_s=now.wall - view.outage_started_at
                                if down and view.outage_started_at is not None else None,
                                alert=True))
        return events

    def next_due(self):
        """The monotonic time a flapping episode may end, or None."""
        return self.flapping.next_due()

    def why_quiet(self, e, now):
        """Why ``e`` (a DOWN, UP or REMINDER) is recorded but not alerted, when this module decided it; else None."""
        if e.alerts or e.kind not in (Kind.DOWN, Kind.UP, Kind.REMINDER):
            return None
        if self.flapping.episode(e.device) is not None:
            return "flapping: summarised"
        ack = self.acks.get(e.device, now) if e.kind is Kind.REMINDER else None
        if ack is not None:
            return f"outage acknowledged ({ack.by}) until {Times(now.wall, None).zoned(ack.until)}"
        return None

    def _save_flap(self, episode):
        try:
            self._store.save_flap(episode)
        except Exception as exc:  # the episode goes on in memory; a restart may notice it once more
            log.error("%s: cannot keep its flapping episode in the database (%s)", episode.device, exc)

    def _forget_flap(self, device):
        try:
            self._store.delete_flap(device)
        except Exception as exc:
            log.error("%s: cannot remove its flapping episode from the database (%s)", device, exc)

    # -- acknowledgements -----------------------------------------------------

    def acknowledge(self, device, now, *, down, outage_id=None, for_s=None, by):
        """Acknowledge ``device``'s outage for ``for_s`` s (None: monitor.ack_duration_s); return the Ack.

        ``down`` says whether the device is down now; ``outage_id`` (from a
        link) must then be its current outage. Raises AckError when there is
        nothing to acknowledge, StoreError when it cannot be saved (then
        nothing changed).
        """
        current = self._store.current_outage(device) if down else None
        if outage_id is not None and outage_id != current:
            raise AckError(f"that outage of {device} is over, so there is nothing to acknowledge"
                           f"{'; it is down again, in a newer outage' if current is not None else ''}",
                           reason="over")
        if current is None:
            raise AckError(f"{device} is not down, so there is no outage to acknowledge", reason="not-down")
        seconds = self.ack_duration_s if for_s is None else for_s
        ack = Ack(current, now.wall, now.wall + seconds, by)
        self._store.save_ack(device, ack)
        return self.acks.acknowledge(device, ack, now)

    def ack_link(self, event):
        """The acknowledgement link for an alert about ``event``, or None (no monitor.public_url, or not about
        an outage that lasts). Never raises: an alert goes out without its link rather than not at all."""
        url = self.public_url
        if not url or event.new is not State.DOWN or event.kind not in (Kind.DOWN, Kind.REMINDER, Kind.FLAPPING,
                                                                          Kind.STEADY):
            return None
        try:
            outage_id = self._store.outage_of(event)
        except Exception as exc:
            log.error("cannot find the outage of %s's %s alert for its acknowledgement link: %s", event.device,
                      event.kind.value, exc)
            return None
        if outage_id is None:
            return None
        return f"{url}/ack/{make_token(self._key, event.device, outage_id, event.at + LINK_VALID_S)}"

    @property
    def link_key(self):
        """The key of the acknowledgement links (for the page that reads them)."""
        return self._key

    # -- views ---------------------------------------------------------------

    def describe(self, name, now):
        """What a device's dict adds: its own pause, its site and the site's pause, its acknowledgement, its
        flapping."""
        site = self._site_of.get(name)
        own = self._pauses.get(name, now)
        site_pause = self._pauses.get(SITE_PREFIX + site, now) if site else None
        ack = self.acks.get(name, now)
        episode = self.flapping.episode(name)
        return {
            # alerts_paused (the device's dict) is either pause; these say which.
            "device_paused": own is not None,
            "device_paused_until": None if own is None else own.until,
            "site": site,
            "site_paused": site_pause is not None,
            "site_paused_until": None if site_pause is None else site_pause.until,
            "acknowledged": ack is not None,
            "acknowledged_until": None if ack is None else ack.until,
            "acknowledged_by": None if ack is None else ack.by,
            "flapping": episode is not None,
            "flapping_since": None if episode is None else episode.first_at,
            "flapping_changes": None if episode is None else episode.changes,
        }

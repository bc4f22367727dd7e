"""What people do to quiet alerts, as MonitorService methods: pause a device or a site, acknowledge an outage,
list pauses.

A mixin of ``MonitorService``: it uses the service's ``_lock``, ``_clock``,
``machine``, ``store``, ``_pauses`` and ``_quiet`` (a ``quiet.Quiet``). The
pages, the JSON API and the CLI (through the API) call these.
"""

import logging

from appliance.alerts.messages import Times
from appliance.monitor.acks import read_token
from appliance.monitor.events import State
from appliance.monitor.explain import SITE_PREFIX
from appliance.monitor.pauses import check_pause_s
from appliance.timefmt import format_duration

log = logging.getLogger("phonehome.monitor")


class QuietControls:
    """Device and site pauses and acknowledgements of a MonitorService."""

    # -- devices -----------------------------------------------------------

    def pause(self, name, *, for_s=None):
        """Pause ``name``'s alerts for ``for_s`` seconds (None: until resumed); return the Pause.

        Its transitions are still stored; only alerts are not queued. The pause
        is saved and survives a restart. Raises KeyError for an unknown device,
        ValueError for a ``for_s`` that is not positive, StoreError when it
        cannot be saved (then nothing changed).
        """
        check_pause_s(for_s)
        now = self._clock.now()
        with self._lock:
            if name not in self.machine:
                raise KeyError(name)
            until = None if for_s is None else now.wall + for_s
            self.store.save_pause(name, paused_at=now.wall, until=until)
            pause = self._pauses.pause(name, now, for_s=for_s)
        log.info("%s: alerts paused %s", name, "until resumed" if for_s is None else f"for {format_duration(for_s)}")
        return pause

    def resume(self, name):
        """Alert about ``name`` again; True when it was paused. Raises KeyError, StoreError as ``pause``."""
        now = self._clock.now()
        with self._lock:
            if name not in self.machine:
                raise KeyError(name)
            was = self._pauses.get(name, now) is not None
            self.store.delete_pause(name)
            self._pauses.resume(name)
        if was:
            log.info("%s: alerts resumed", name)
        return was

    # -- sites -------------------------------------------------------------

    def sites(self, now=None):
        """Every site named in the config, by name, as dicts (see ``site``)."""
        now = now or self._clock.now()
        with self._lock:
            return [self._site_dict(site, names, now) for site, names in sorted(self._quiet.sites().items())]

    def site_names(self, now=None):
        """[(site, paused)] of every site named in the config, by name: cheap enough for every view of the list."""
        now = now or self._clock.now()
        with self._lock:
            return [(site, self._quiet.site_pause(site, now) is not None) for site in sorted(self._quiet.sites())]

    def site(self, name, now=None):
        """One site: {"name", "devices": [{"name", "state"}], "down", "paused", "paused_at", "paused_until"}.

        Raises KeyError for a site no device names.
        """
        now = now or self._clock.now()
        with self._lock:
            return self._site_dict(name, self._quiet.sites()[name], now)

    def _site_dict(self, site, names, now):
        pause = self._quiet.site_pause(site, now)
        devices = [{"name": n, "state": self.machine.state_of(n).value} for n in names if n in self.machine]
        return {"name": site, "devices": devices, "down": sum(d["state"] == State.DOWN.value for d in devices),
                "paused": pause is not None, "paused_at": None if pause is None else pause.paused_at,
                "paused_until": None if pause is None else pause.until}

    def pause_site(self, site, *, for_s=None):
        """Pause the alerts of every device of ``site`` and of the site itself for ``for_s`` s (None: until
        resumed); return the Pause.

        Their transitions are still stored. The pause is saved and survives a
        restart; a device added to the site later is paused with it. Raises
        KeyError for a site no device names, ValueError for a ``for_s`` that
        is not positive, StoreError when it cannot be saved (then nothing changed).
        """
        check_pause_s(for_s)
        now = self._clock.now()
        with self._lock:
            if site not in self._quiet.sites():
                raise KeyError(site)
            until = None if for_s is None else now.wall + for_s
            self.store.save_pause(SITE_PREFIX + site, paused_at=now.wall, until=until)
            pause = self._pauses.pause(SITE_PREFIX + site, now, for_s=for_s)
        log.info("site %s: alerts paused %s", site, "until resumed" if for_s is None else
                 f"for {format_duration(for_s)}")
        return pause

    def resume_site(self, site):
        """Alert about ``site`` and its devices again (devices paused on their own stay paused); True when it was
        paused. Raises KeyError, StoreError as ``pause_site``."""
        now = self._clock.now()
        with self._lock:
            if site not in self._quiet.sites():
                raise KeyError(site)
            was = self._pauses.get(SITE_PREFIX + site, now) is not None
            self.store.delete_pause(SITE_PREFIX + site)
            self._pauses.resume(SITE_PREFIX + site)
        if was:
            log.info("site %s: alerts resumed", site)
        return was

    def pauses(self, now=None):
        """Every pause that lasts now: [{"device" or "site": name, "paused_at", "until"}], devices first, by name.

        Wall-clock epoch seconds; ``until`` None means until resumed.
        """
        now = now or self._clock.now()
        with self._lock:
            active = self._pauses.active(now)
        rows = []
        for key, pause in sorted(active.items(), key=lambda kv: (kv[0].startswith(SITE_PREFIX), kv[0])):
            kind, name = ("site", key[len(SITE_PREFIX):]) if key.startswith(SITE_PREFIX) else ("device", key)
            rows.append({kind: name, "paused_at": pause.paused_at, "until": pause.until})
        return rows

    # -- acknowledgements ---------------------------------------------------

    def acknowledge(self, name, *, outage_id=None, for_s=None, by="dashboard"):
        """Acknowledge device ``name``'s outage: no reminders for ``for_s`` s (None: monitor.ack_duration_s).

        ``outage_id`` (from a link) must be the outage that lasts now. The UP
        alert is still sent; if the outage lasts longer, reminders resume.
        Returns the Ack. Raises KeyError for an unknown device, ValueError for
        a bad ``for_s``, AckError when there is no such outage now, StoreError
        when it cannot be saved (then nothing changed).
        """
        if for_s is not None and not (isinstance(for_s, (int, float)) and 0 < for_s < float("inf")):
            raise ValueError(f"an acknowledgement lasts a positive number of seconds, got {for_s!r}")
        now = self._clock.now()
        with self._lock:
            if name not in self.machine:
                raise KeyError(name)
            down = self.machine.state_of(name) is State.DOWN
            ack = self._quiet.acknowledge(name, now, down=down, outage_id=outage_id, for_s=for_s, by=by)
        log.info("%s: outage acknowledged (%s) until %s: no reminders until then", name, by,
                 Times(now.wall, None).zoned(ack.until))
        return ack

    def read_ack_link(self, token, now=None):
        """The AckLink of an acknowledgement link's token; raises AckError when it is forged or expired."""
        now = now or self._clock.now()
        return read_token(self._quiet.link_key, token, now_wall=now.wall)

"""Sites: devices at one place, alerted about as one when all of them go silent. Pure.

A site with two or more devices holds each DOWN of its devices for up to
``monitor.site_window_s`` (the DOWN is stored at once; only its alert waits,
as a held delivery in the store, so a monitor killed meanwhile still has it).
When every device of the site that was ever heard is down, one site alert
goes out and the held DOWNs are dropped; when the window ends first, they go
out one by one, each with the cause the evidence tells by then.

Windows are timed on the monotonic clock; the store keeps the DOWN's wall
time, from which a restarted monitor reopens the window (or decides at once
when it ended while the monitor was stopped). Every method that judges
takes the current time as a ``Now``.
"""

from appliance.monitor.events import State


class Sites:
    """The sites of the configured devices, their open windows and their open outages."""

    def __init__(self, devices=(), *, window_s=60.0):
        self._members = {}   # site -> sorted names (sites of two or more devices only)
        self._site_of = {}   # name -> site, for those devices
        self._windows = {}   # site -> [end (monotonic), {device: held DOWN event id}]
        self._out = set()    # sites whose alert went out and none of whose devices is back since
        self.window_s = window_s
        self.configure(devices, window_s=window_s)

    def configure(self, devices, *, window_s):
        """Use a new device list; return [(device, event id)] of held DOWNs no longer in a site, to release."""
        groups = {}
        for d in devices:
            if d.site:
                groups.setdefault(d.site, []).append(d.name)
        self._members = {site: tuple(sorted(names)) for site, names in groups.items() if len(names) >= 2}
        self._site_of = {name: site for site, names in self._members.items() for name in names}
        self.window_s = window_s
        orphans = []
        for site, (end, held) in list(self._windows.items()):
            for device, event_id in list(held.items()):
                if self._site_of.get(device) != site:
                    orphans.append((device, event_id))
                    del held[device]
            if not held:
                del self._windows[site]
        self._out &= set(self._members)
        return orphans

    def site_of(self, name):
        """The site of ``name`` when it shares it with another device; else None."""
        return self._site_of.get(name)

    def members(self, site):
        """The devices of ``site``, by name."""
        return self._members.get(site, ())

    def all_silent(self, site, state_of):
        """True when every device of ``site`` ever heard is DOWN, and they are at least two.

        ``state_of(name)`` gives a device's State (None when unknown).
        """
        seen = [state_of(n) for n in self.members(site)]
        seen = [s for s in seen if s is not None and s is not State.NEW]
        return len(seen) >= 2 and all(s is State.DOWN for s in seen)

    # -- windows -----------------------------------------------------------

    def hold(self, site, device, event_id, now, *, at=None):
        """Hold ``device``'s DOWN (event ``event_id``) in ``site``'s window, opening it when none is open.

        ``at`` is the DOWN's wall time when it is older than ``now`` (restored
        after a restart): the window then ends ``window_s`` after it.
        """
        window = self._windows.get(site)
        if window is None:
            left = self.window_s if at is None else max(0.0, min(self.window_s, at + self.window_s - now.wall))
            window = self._windows[site] = [now.mono + left, {}]
        window[1][device] = event_id

    def held(self, site):
        """{device: event id} of the DOWNs held in ``site``'s window."""
        window = self._windows.get(site)
        return dict(window[1]) if window else {}

    def take(self, site):
        """Close ``site``'s window; return its {device: event id}."""
        window = self._windows.pop(site, None)
        return window[1] if window else {}

    def take_device(self, device):
        """Remove ``device``'s held DOWN from its window (it came back); return the event id or None."""
        site = self._site_of.get(device)
        window = self._windows.get(site)
        if window is None or device not in window[1]:
            return None
        event_id = window[1].pop(device)
        if not window[1]:
            del self._windows[site]
        return event_id

    def due(self, now):
        """The sites whose window has ended, closed; [(site, {device: event id})]."""
        ended = [site for site, (end, _) in self._windows.items() if end <= now.mono]
        return [(site, self._windows.pop(site)[1]) for site in sorted(ended)]

    def next_due(self):
        """The monotonic time the next window ends, or None."""
        return min((end for end, _ in self._windows.values()), default=None)

    # -- site outages ---------------------------------------------------------

    def went_out(self, site):
        """The site's alert went out: its devices' reminders are the site's until one is back."""
        self._out.add(site)

    def back(self, site):
        """A device of ``site`` is back: its outage as a site is over."""
        self._out.discard(site)

    def is_out(self, site):
        return site in self._out

    def lead(self, site, muted, state_of):
        """The device whose reminders stand for the site's: the first down one by name whose alerts are not paused.

        ``muted(name)`` says whether a device's alerts are paused (when all
        are, the first down one leads); ``state_of(name)`` gives its State.
        """
        down = [n for n in self.members(site) if state_of(n) is State.DOWN]
        return next((n for n in down if not muted(n)), down[0] if down else None)

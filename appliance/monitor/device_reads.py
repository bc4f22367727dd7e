"""How the pages, the JSON API and the metrics read devices, as MonitorService methods.

A mixin of ``MonitorService``: it uses the service's ``_lock``, ``_clock``,
``machine``, ``_beats`` (a ``lastbeats.LastBeats``), ``_outages`` and
``_quiet`` (a ``quiet.Quiet``). The pages, the JSON API, the metrics and the
CLI (through the API) call these.
"""

from appliance.monitor.lastbeats import unpack
from appliance.monitor.views import DeviceList, device_dict, select


class DeviceReads:
    """The read side of a MonitorService: devices as dicts, pages of them, and metric rows."""

    def devices(self, now=None):
        """Every device as a dict for the JSON API (no secrets), in name order."""
        now = now or self._clock.now()
        with self._lock:
            return [self._as_dict(v, now, self._quiet.pause_of(v.name, now)) for v in self.machine.views()]

    def device_pages(self, now=None, *, size=500):
        """Every device as ``devices()`` gives it, in name order, as lists of at most ``size``: with 100,000
        devices the whole list at once holds about 200 MB. Each list is made under the lock when it is
        reached, so a device removed meanwhile is left out."""
        now = now or self._clock.now()
        with self._lock:
            names = [name for name, _, _ in self.machine.rows()]
        for start in range(0, len(names), size):
            page = []
            with self._lock:
                for name in names[start:start + size]:
                    try:
                        view = self.machine.view(name)
                    except KeyError:  # gone in a reload since the names were taken
                        continue
                    page.append(self._as_dict(view, now, self._quiet.pause_of(name, now)))
            yield page

    def metric_rows(self, now=None):
        """Every device as a row for metrics.iter_metrics, in name order: (name, state value, seconds since its
        last heartbeat or None, outages total, its own clock offset in ms or None, the monitor's estimate in ms
        or None).

        Not ``devices()``: a full dict per device is a few KB, and with 100,000
        devices a scrape would hold hundreds of MB at once. Under the lock only
        a tuple per device is taken; the last beats are decoded after it.
        """
        now = now or self._clock.now()
        with self._lock:
            return _MetricRows([(name, state.value, heard, self._outages.get(name, 0), self._beats.raw(name))
                                for name, state, heard in self.machine.rows()], now.wall)

    def device(self, name, now=None):
        """One device's dict as in ``devices``; raises KeyError for an unknown device."""
        now = now or self._clock.now()
        with self._lock:
            return self._as_dict(self.machine.view(name), now, self._quiet.pause_of(name, now))

    def device_list(self, *, state=None, query="", offset=0, limit=100, now=None):
        """One page of devices for people, down first, then by name: a DeviceList (see views.select).

        Only the page's devices become dicts, and the sorting happens outside
        the lock, so heartbeats wait for neither.
        """
        now = now or self._clock.now()
        with self._lock:
            states = self.machine.states()
            paused = self._quiet.paused_names(now)  # by themselves or by their site
        names, counts = select(states, paused, state=state, query=query)
        page = []
        with self._lock:
            for name in names[offset:offset + limit]:
                if name in self.machine:  # a reload may have removed it meanwhile
                    page.append(self._as_dict(self.machine.view(name), now, self._quiet.pause_of(name, now)))
        return DeviceList(total=len(names), counts=counts, devices=page)

    def _as_dict(self, view, now, pause):
        return {**device_dict(view, self._beats.get(view.name), outages_total=self._outages.get(view.name, 0),
                              pause=pause, now=now), **self._quiet.describe(view.name, now)}


class _MetricRows:
    """The rows metric_rows returns, made a slice at a time: each last beat is decoded only when its slice is
    read, so a scrape of 100,000 devices never holds 100,000 decoded rows."""

    __slots__ = ("_snapshot", "_wall")

    def __init__(self, snapshot, wall):
        self._snapshot, self._wall = snapshot, wall  # [(name, state value, heard wall, outages, raw beat)]

    def __len__(self):
        return len(self._snapshot)

    def __getitem__(self, index):
        if not isinstance(index, slice):
            return self[index:index + 1 or None][0]
        out = []
        for name, state, heard, outages, raw in self._snapshot[index]:
            beat = unpack(raw) if raw else {}
            out.append((name, state, None if heard is None else max(0.0, self._wall - heard), outages,
                        (beat.get("time") or {}).get("offset_ms"), beat.get("clock_offset_ms")))
        return out

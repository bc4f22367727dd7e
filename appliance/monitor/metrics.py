"""The monitor's figures in Prometheus' text exposition format."""



_FAMILIES = (
    ("phonehome_device_up", "gauge", "1 while the device is up, 0 while it is down (absent until first seen)."),
    ("phonehome_device_seconds_since_heartbeat", "gauge", "Seconds since the last heartbeat was received."),
    ("phonehome_device_outages_total", "counter", "Outages recorded for the device."),
    ("phonehome_device_clock_offset_seconds", "gauge",
     "The device's clock minus true time: as its NTP check says (source=device) and as send vs receive "
     "time says (source=monitor, includes the network delay)."),
)
CHUNK_DEVICES = 500


def render_metrics(devices, *, received_total):
    """Prometheus text for ``devices``: dicts with "name", "state", "seconds_since_heartbeat",
    "outages_total" and optionally "time" and "clock_offset_ms" (as MonitorService.devices makes them)."""
    rows = [(d["name"], d["state"], d["seconds_since_heartbeat"], d["outages_total"],
             (d.get("time") or {}).get("offset_ms"), d.get("clock_offset_ms")) for d in devices]
    return "".join(iter_metrics(rows, received_total=received_total))


def iter_metrics(rows, *, received_total):
    """The Prometheus text in pieces of CHUNK_DEVICES devices, for a streamed answer.

    ``rows`` is a list of (name, state value, seconds since heartbeat or None,
    outages total, device's own clock offset in ms or None, the monitor's
    estimate of it in ms or None) (see MonitorService.metric_rows). Pieces,
    not one text: with 100,000 devices the whole text is megabytes, and the
    allocator keeps a freed buffer that size for the thread that made it.
    """
    def family(index, lines_of):
        name, kind, help_text = _FAMILIES[index]
        yield f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"
        for i in range(0, len(rows), CHUNK_DEVICES):
            yield "".join(line for row in rows[i:i + CHUNK_DEVICES] for line in lines_of(_escape(row[0]), row))

    def up(name, row):
        if row[1] != "new":
            yield f'phonehome_device_up{{device="{name}"}} {1 if row[1] == "up" else 0}\n'

    def since(name, row):
        if row[2] is not None:
            yield f'phonehome_device_seconds_since_heartbeat{{device="{name}"}} {_number(row[2])}\n'

    def outages(name, row):
        yield f'phonehome_device_outages_total{{device="{name}"}} {_number(row[3])}\n'

    def offsets(name, row):
        for source, value in (("device", row[4]), ("monitor", row[5])):
            if value is not None:
                yield f'phonehome_device_clock_offset_seconds{{device="{name}",source="{source}"}} ' \
                      f'{_number(value / 1000)}\n'

    for index, lines_of in enumerate((up, since, outages, offsets)):
        yield from family(index, lines_of)
    yield ("# HELP phonehome_heartbeats_received_total Heartbeats accepted since the monitor started.\n"
           "# TYPE phonehome_heartbeats_received_total counter\n"
           f"phonehome_heartbeats_received_total {_number(received_total)}\n")


def _escape(value):
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value):
    """Every digit of ``value``: "1234567", "0.25" (``:g`` keeps six, so a counter would stall at 1.23457e+06)."""
    return str(value) if isinstance(value, int) else repr(float(value))

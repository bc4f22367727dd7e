"""The monitor's figures in Prometheus' text exposition format."""


def render_metrics(devices, *, received_total):
    """Prometheus text for the ``devices`` dicts of MonitorService.devices()."""
    lines = []

    def family(name, kind, help_text, samples):
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{labels} {_number(value)}")

    def label(d):
        return '{device="%s"}' % _escape(d["name"])

    family("phonehome_device_up", "gauge", "1 while the device is up, 0 while it is down (absent until first seen).",
           [(label(d), 1 if d["state"] == "up" else 0) for d in devices if d["state"] != "new"])
    family("phonehome_device_seconds_since_heartbeat", "gauge", "Seconds since the last heartbeat was received.",
           [(label(d), d["seconds_since_heartbeat"]) for d in devices if d["seconds_since_heartbeat"] is not None])
    family("phonehome_device_outages_total", "counter", "Outages recorded for the device.",
           [(label(d), d["outages_total"]) for d in devices])
    family("phonehome_device_clock_offset_seconds", "gauge",
           "The device's clock minus true time: as its NTP check says (source=device) and as send vs receive "
           "time says (source=monitor, includes the network delay).",
           [(f'{{device="{_escape(d["name"])}",source="{source}"}}', value / 1000)
            for d in devices for source, value in _offsets(d)])
    family("phonehome_heartbeats_received_total", "counter", "Heartbeats accepted since the monitor started.",
           [("", received_total)])
    return "\n".join(lines) + "\n"


def _escape(value):
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value):
    """Every digit of ``value``: "1234567", "0.25" (``:g`` keeps six, so a counter would stall at 1.23457e+06)."""
    return str(value) if isinstance(value, int) else repr(float(value))


def _offsets(device):
    report = device.get("time") or {}
    if report.get("offset_ms") is not None:
        yield "device", report["offset_ms"]
    if device.get("clock_offset_ms") is not None:
        yield "monitor", device["clock_offset_ms"]

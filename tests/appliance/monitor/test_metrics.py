"""The Prometheus text of the monitor's figures: every digit of a value kept."""

from appliance.monitor.metrics import render_metrics


def device(name, state="up", since=0.25, outages=0):
    return {"name": name, "state": state, "seconds_since_heartbeat": since, "outages_total": outages}


def samples(text):
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))


def test_counters_past_a_million_keep_every_digit():
    # With six significant digits a busy monitor's counter would stall for ten heartbeats at a time.
    text = render_metrics([device("home", outages=1_234_567)], received_total=12_345_679)
    assert samples(text)["phonehome_heartbeats_received_total"] == "12345679"
    assert samples(text)['phonehome_device_outages_total{device="home"}'] == "1234567"


def test_gauges_are_plain_decimal_numbers():
    text = render_metrics([device("home", since=1234567.125), device("cabin", state="down", since=0.5)],
                          received_total=0)
    s = samples(text)
    assert s['phonehome_device_seconds_since_heartbeat{device="home"}'] == "1234567.125"
    assert s['phonehome_device_up{device="home"}'] == "1" and s['phonehome_device_up{device="cabin"}'] == "0"


def test_the_streamed_pieces_make_the_same_text_for_many_devices():
    from appliance.monitor.metrics import CHUNK_DEVICES, iter_metrics

    devices = [dict(device(f"d{i:04d}", state=("up", "down", "new")[i % 3], since=None if i % 3 == 2 else i + 0.5,
                           outages=i), time={"offset_ms": 2.5} if i % 2 else None, clock_offset_ms=i * 10.0)
               for i in range(CHUNK_DEVICES * 2 + 7)]
    text = render_metrics(devices, received_total=5)
    rows = [(d["name"], d["state"], d["seconds_since_heartbeat"], d["outages_total"],
             (d["time"] or {}).get("offset_ms"), d["clock_offset_ms"]) for d in devices]
    pieces = list(iter_metrics(rows, received_total=5))
    assert "".join(pieces) == text and len(pieces) > 4 * 3
    s = samples(text)
    assert s['phonehome_device_outages_total{device="d1006"}'] == "1006"
    assert 'phonehome_device_up{device="d0002"}' not in s  # new: absent until first seen
    assert s['phonehome_device_clock_offset_seconds{device="d0001",source="device"}'] == "0.0025"
    assert s['phonehome_device_clock_offset_seconds{device="d0001",source="monitor"}'] == "0.01"
    assert 'phonehome_device_clock_offset_seconds{device="d0000",source="device"}' not in s

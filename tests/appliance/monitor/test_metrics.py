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

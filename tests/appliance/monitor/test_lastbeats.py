"""Each device's last heartbeat kept as compact JSON: what goes in comes out, as a copy."""

from appliance.monitor.lastbeats import LastBeats, json_text, pack, unpack
from appliance.monitor.store import Store

BEAT = {"device": "home", "sent_at": 1700000000.25, "seq": 7, "boot_id": "b-1", "uptime_s": 12.5,
        "send_failures": [], "time": {"verdict": "ok", "offset_ms": 1.25, "synchronized": True},
        "received_at": 1700000000.5, "clock_offset_ms": None}


def test_a_beat_comes_back_equal_and_each_read_is_a_copy():
    beats = LastBeats()
    beats["home"] = BEAT
    first = beats.get("home")
    assert first == BEAT
    first["time"]["verdict"] = "drifting"
    first["seq"] = 8
    assert beats.get("home") == BEAT


def test_unknown_devices_and_counts():
    beats = LastBeats()
    assert beats.get("cabin") is None and beats.get("cabin", {}) == {} and beats.raw("cabin") is None
    beats["home"] = BEAT
    beats["home"] = dict(BEAT, seq=9)  # a newer beat replaces the older
    assert "home" in beats and "cabin" not in beats and len(beats) == 1
    assert dict(beats.items()) == {"home": dict(BEAT, seq=9)}


def test_the_raw_form_is_what_the_store_writes_and_reads_back(tmp_path):
    beats = LastBeats()
    beats["home"] = BEAT
    store = Store(str(tmp_path / "monitor.sqlite3"))
    try:
        store.save_heartbeats([("home", 1700000000.5, json_text(beats.raw("home")))])
        assert store.last_beats() == {"home": BEAT}
        assert LastBeats(store.last_beat_texts()).get("home") == BEAT
    finally:
        store.close()


def test_it_is_smaller_than_the_dict_it_stands_for():
    import sys

    beats = LastBeats()
    beats["home"] = BEAT
    dict_bytes = sys.getsizeof(BEAT) + sys.getsizeof(BEAT["time"])
    assert sys.getsizeof(beats.raw("home")) < dict_bytes


def test_packing_keeps_every_key_its_order_and_any_unknown_ones():
    odd = dict(BEAT, time={"verdict": "ok", "future": 1}, peers=[{"name": "cabin", "state": "up"}], extra={"a": [1]})
    for beat in (BEAT, odd, {}, {"device": "home"}, dict(BEAT, time=None), {"only": "extras"}):
        assert unpack(pack(beat)) == beat
    assert list(unpack(pack(BEAT))) == list(BEAT)  # in the order intake and the service make them
    assert len(pack(BEAT)) < len(json_text(BEAT)) * 0.75

"""The status model: one snapshot built from the parts' own statuses, and its headline."""

from appliance.agent.heartbeats import TargetStatus
from appliance.status import Network, Setup, build_snapshot
from appliance.timecheck.checker import TimeStatus

ONLINE = Network(interface="eth0", ip="192.0.2.10")


def snap(targets, *, network=ONLINE, configured=True, time_status=None):
    return build_snapshot(1000.0, device_name="home", configured=configured, targets=targets,
                          time_status=time_status, network=network, uptime_s=60.0,
                          setup=Setup(code="ABCD-EFGH", url="http://phonehome.local/setup", claimed=False))


def target(state, *, last_ok_at=None, beats_ok=0, last_error=None):
    return TargetStatus(label="m", kind="phonehome", url="http://m/", state=state, last_ok_at=last_ok_at,
                        beats_ok=beats_ok, last_error=last_error)


def test_headline_and_heartbeat_follow_the_targets():
    assert snap([target("ok", last_ok_at=990.0)]).headline == "OK"
    assert snap([target("ok"), target("failing", last_error="connection refused")]).headline == "DOWN"
    assert snap([target("ok"), target("unknown")]).headline == "WAIT"
    assert snap([], configured=False).headline == "SETUP"
    assert snap([target("ok")], network=Network()).headline == "NO NET"


def test_facts_are_taken_from_the_parts():
    s = snap([target("ok", last_ok_at=990.0, beats_ok=3), target("failing", last_ok_at=950.0, beats_ok=2,
                                                                 last_error="HTTP 500 from m")],
             time_status=TimeStatus(verdict="drifting", reason="clock 2.3 s ahead of 3 servers", offset_ms=2300.0,
                                    system_zone="UTC"))
    assert s.heartbeat == "failing" and s.last_error == "HTTP 500 from m"
    assert s.heartbeat_age_s == 10.0 and s.beats_sent == 5
    assert (s.time_verdict, s.time_offset_ms, s.time_zone) == ("drifting", 2300.0, "UTC")


def test_before_anything_is_known():
    s = snap([target("unknown")], time_status=None)
    assert s.heartbeat == "unknown" and s.heartbeat_age_s is None and s.time_verdict == "unknown"

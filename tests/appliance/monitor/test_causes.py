"""The causes of outages, from tables of evidence: beats before and after, peer reports, site mates."""

import pytest

from appliance.alerts.messages import Times
from appliance.monitor.causes import (PeerReport, agent_restarted, cause_of_site, cause_on_down, cause_on_up,
                                      failed_sends, reboot_in_beat)

from .conftest import NY
from .conftest import ny as at

LAST = at("10:01:00")          # the monitor last heard the device
BACK = at("10:50:00")          # the first heartbeat after the outage arrived
BOOTED_UPTIME = BACK - at("10:48:00")   # uptime that puts the boot at 10:48


def times(ref=BACK):
    return Times(ref, NY)


def before(**fields):
    """The last beat before the silence: boot A, up two days, its agent started at boot + 20 s."""
    beat = {"device": "home", "seq": 2880, "boot_id": "boot-a", "uptime_s": 2 * 86400.0, "sent_at": LAST,
            "agent_started_at": LAST - 2 * 86400.0 + 20, "received_at": LAST, "clock_offset_ms": 0.0,
            "send_failures": [], "interval_s": 60.0}
    beat.update(fields)
    return beat


def after(**fields):
    """The first beat back: by default the same boot and agent, 49 minutes later, no failed sends."""
    up = 2 * 86400.0 + (BACK - LAST)
    beat = {"device": "home", "seq": 2881, "boot_id": "boot-a", "uptime_s": up, "sent_at": BACK,
            "agent_started_at": LAST - 2 * 86400.0 + 20, "received_at": BACK, "clock_offset_ms": 0.0,
            "send_failures": []}
    beat.update(fields)
    return beat


def failures(start, end, count=40, shift=0.0):
    return [{"from": at(start) + shift, "to": at(end) + shift, "failures": count}]


def relay(watcher, cycled_at):
    return PeerReport(watcher, "up", at("10:49:30"), None, BACK, same_site=True,
                      power_cycles=((at(cycled_at), at("10:49:00")),))


@pytest.mark.parametrize("name, previous, first, options, kind, summary, detail_words", [
    ("a new boot is a power cut from the last heartbeat to the boot",
     before(), after(boot_id="boot-b", uptime_s=BOOTED_UPTIME, agent_started_at=at("10:48:20"), seq=1), {},
     "power-cut", "power cut, 47 min (rebooted 10:48, last heard 10:01)",
     ["booted at 10:48:00", "uptime 2 min", "after 10:01:00", "before 10:02:00 (its next heartbeat was due)",
      "off for 46 min to 47 min"]),
    ("without an interval estimate only the upper bound is honest",
     before(interval_s=None), after(boot_id="boot-b", uptime_s=BOOTED_UPTIME), {},
     "power-cut", "power cut, 47 min (rebooted 10:48, last heard 10:01)", ["off for at most 47 min"]),
    ("sends that failed after the boot: the router came back later",
     before(), after(boot_id="boot-b", uptime_s=BOOTED_UPTIME, send_failures=failures("10:48:30", "10:50:00")), {},
     "power-cut", "power cut, 47 min (rebooted 10:48, last heard 10:01)",
     ["after booting its sends failed until 10:50:00"]),
    ("no boot ids (the curl form): an uptime that starts after the last heartbeat is a reboot",
     before(boot_id=None), after(boot_id=None, uptime_s=BOOTED_UPTIME), {},
     "power-cut", "power cut, 47 min (rebooted 10:48, last heard 10:01)", []),
    ("a new boot without uptime: the boot time is unknown, the length an upper bound",
     before(), after(boot_id="boot-b", uptime_s=None), {},
     "power-cut", "power cut, at most 49 min (new boot, last heard 10:01)", ["booted between 10:01:00"]),
    ("the same boot with failed sends is an Internet outage",
     before(), after(send_failures=failures("10:01:30", "10:47:10")), {},
     "internet", "Internet down, 45 min (10:01\u201310:47 by its own failed sends; no reboot)",
     ["same boot id (up 2 d 0 h)", "40 failed sends from 10:01:30 to 10:47:10"]),
    ("failed sends in a clock an hour fast are moved onto the monitor's",
     before(clock_offset_ms=3_600_000.0),
     after(sent_at=BACK + 3600, agent_started_at=LAST - 2 * 86400.0 + 20 + 3600, clock_offset_ms=3_600_000.0,
           send_failures=failures("10:01:30", "10:47:10", shift=3600)), {},
     "internet", "Internet down, 45 min (10:01\u201310:47 by its own failed sends; no reboot)",
     ["corrected by its offset"]),
    ("failures and an agent restart: the failures explain the silence",
     before(), after(agent_started_at=at("10:30:00"), send_failures=failures("10:01:30", "10:47:10")), {},
     "internet", "Internet down, 45 min (10:01\u201310:47 by its own failed sends; no reboot)",
     ["agent was also restarted"]),
    ("the same boot with a restarted agent is an agent restart",
     before(), after(seq=1, agent_started_at=at("10:47:00")), {},
     "agent-restart", "agent restarted, 49 min (no reboot; up 2 d 0 h; agent started 10:47, last heard 10:01)",
     ["started again at 10:47:00"]),
    ("a wall-clock step of an hour is no agent restart: the agent's age comes from the monotonic clock",
     before(), after(sent_at=BACK + 3600, agent_started_at=LAST - 2 * 86400.0 + 20 + 3600), {},
     "unknown", "cause unknown, 49 min (no reboot, no agent restart, no failed sends recorded)", ["lost on the way"]),
    ("the site was up (found on the way down) and it rebooted: the device, not the site, lost power",
     before(), after(boot_id="boot-b", uptime_s=BOOTED_UPTIME), {"down_cause": "device-failure"},
     "device-failure", "device rebooted, 47 min (rebooted 10:48, last heard 10:01; the site was up)", []),
    ("a watcher still heard it on the LAN and it recorded failed sends: its own Internet path",
     before(), after(send_failures=failures("10:01:30", "10:47:10")), {"down_cause": "device-internet"},
     "device-internet", "own Internet path down, 45 min (10:01\u201310:47 by its failed sends; the site was up)", []),
    ("a watcher's relay cut its power during the outage: a failed device brought back",
     before(), after(boot_id="boot-b", uptime_s=BOOTED_UPTIME), {"reports": [relay("garage-pi", "10:47:50")]},
     "device-failure", "device failure, 49 min (power-cycled by garage-pi's relay 10:47, last heard 10:01)",
     ["garage-pi's peer watchdog cut the device's power at 10:47:50"]),
    ("a relay cycle from before the silence says nothing",
     before(), after(boot_id="boot-b", uptime_s=BOOTED_UPTIME), {"reports": [relay("garage-pi", "09:00:00")]},
     "power-cut", "power cut, 47 min (rebooted 10:48, last heard 10:01)", []),
])
def test_cause_on_up(name, previous, first, options, kind, summary, detail_words):
    cause = cause_on_up(previous, first, outage_started_at=LAST, received_at=BACK, times=times(), **options)
    assert cause is not None, name
    assert (cause.kind, cause.summary) == (kind, summary), name
    for words in detail_words:
        assert words in cause.detail, (name, cause.detail)


@pytest.mark.parametrize("name, previous, first", [
    ("no beat before the outage is known", None, after()),
    ("same boot, an agent that does not say when it started, no failed sends", before(agent_started_at=None),
     after(agent_started_at=None)),
    ("no boot ids and no uptime", before(boot_id=None, uptime_s=None), after(boot_id=None, uptime_s=None)),
    ("no boot ids and an uptime that runs on: not rebooted, and nothing else to tell",
     before(boot_id=None, agent_started_at=None), after(boot_id=None, agent_started_at=None)),
])
def test_cause_on_up_says_nothing_without_evidence(name, previous, first):
    assert cause_on_up(previous, first, outage_started_at=LAST, received_at=BACK, times=times()) is None, name


def test_a_new_boot_from_before_the_silence_is_not_this_outages_power_cut():
    # The stored last beat predates a reboot the monitor missed (its write-behind was lost): only failures tell.
    first = after(boot_id="boot-b", uptime_s=BACK - at("09:00:00"))
    assert cause_on_up(before(), first, outage_started_at=LAST, received_at=BACK, times=times()) is None
    first["send_failures"] = failures("10:01:30", "10:47:10")
    assert cause_on_up(before(), first, outage_started_at=LAST, received_at=BACK, times=times()).kind == "internet"


def test_failed_sends_outside_the_outage_are_left_out():
    beat = after(send_failures=failures("08:00:00", "08:05:00") + failures("10:01:30", "10:47:10", count=3))
    assert failed_sends(beat, LAST, BACK) == [(at("10:01:30"), at("10:47:10"), 3)]


@pytest.mark.parametrize("previous, first, restarted", [
    (before(), after(), False),
    (before(), after(agent_started_at=at("10:47:00")), True),
    (before(), after(sent_at=BACK - 7200, agent_started_at=LAST - 2 * 86400.0 + 20 - 7200), False),  # clock step
    (before(uptime_s=None), after(uptime_s=None), False),                  # no uptime: the start times compared
    (before(uptime_s=None), after(uptime_s=None, agent_started_at=at("10:47:00")), True),
    (before(agent_started_at=None), after(), None),
])
def test_agent_restarted(previous, first, restarted):
    assert agent_restarted(previous, first) is restarted


# -- on the way down --------------------------------------------------------------


def report(state, *, heard=None, since=None, reported=None, same_site=True, watcher="home"):
    return PeerReport(watcher, state, None if heard is None else at(heard), None if since is None else at(since),
                      at(reported or "10:06:00"), same_site=same_site)


@pytest.mark.parametrize("name, reports, mates, kind, summary", [
    ("a watcher that is up reports it silent on the LAN too: the device failed",
     [report("down", heard="10:01:10", since="10:03:00")], [],
     "device-failure", "device failure \u2014 home (same site) is up and reports it silent on the LAN too"),
    ("a watcher of another site",
     [report("down", heard="10:01:10", same_site=False)], [],
     "device-failure", "device failure \u2014 home is up and reports it silent on the LAN too"),
    ("a watcher still hears it on the LAN: it lost its own Internet path",
     [report("up", heard="10:05:30")], [],
     "device-internet", "its own Internet path failed \u2014 home (same site) is up and still hears it on the LAN "
                        "(last 10:05)"),
    ("hearing it beats a silent report from another watcher",
     [report("down", heard="10:01:10", watcher="cabin", same_site=False), report("up", heard="10:05:30")], [],
     "device-internet", "its own Internet path failed \u2014 home (same site) is up and still hears it on the LAN "
                        "(last 10:05)"),
    ("a report of 'up' that heard it only around the monitor's last beat: no evidence; a site mate is up",
     [report("up", heard="10:01:05")], ["home"],
     "device-failure", "device failure or its own link \u2014 home (same site) is up, so the site has power and "
                       "Internet"),
    ("two site mates up",
     [], ["home", "cabin"],
     "device-failure", "device failure or its own link \u2014 cabin and home (same site) are up, so the site has "
                       "power and Internet"),
])
def test_cause_on_down(name, reports, mates, kind, summary):
    cause = cause_on_down(last_heard_at=LAST, reports=reports, site_mates_up=mates, times=times(at("10:06:00")))
    assert (cause.kind, cause.summary) == (kind, summary), name


@pytest.mark.parametrize("name, reports", [
    ("nobody saw anything", []),
    ("a silent report made before the monitor last heard it is old news", [report("down", reported="10:00:00")]),
    ("a watcher that never heard it", [report("new")]),
])
def test_cause_on_down_says_nothing_without_evidence(name, reports):
    assert cause_on_down(last_heard_at=LAST, reports=reports, times=times()) is None, name


def test_a_whole_silent_site():
    cause = cause_of_site("home", [("garage-pi", at("10:01:30")), ("home", LAST)], times=times(at("10:07:00")))
    assert cause.kind == "site-outage"
    assert cause.summary == ("all 2 devices silent since 10:01 EST \u2014 power cut or Internet outage at the site; "
                             "the first heartbeat back will tell")
    assert cause.detail == "every device of site home went silent: garage-pi last heard 10:01:30, home last heard " \
                           "10:01:00"


# -- reboots while up ------------------------------------------------------------------


@pytest.mark.parametrize("name, previous, beat, summary", [
    ("a new boot id", before(received_at=at("03:11:00")), after(boot_id="boot-b", uptime_s=40.0),
     "rebooted at 03:12 EST (up 40 s), power blip?"),
    ("no boot ids: the uptime went backwards", before(boot_id=None, received_at=at("03:11:00")),
     after(boot_id=None, uptime_s=40.0), "rebooted at 03:12 EST (up 40 s), power blip?"),
])
def test_a_reboot_while_up(name, previous, beat, summary):
    cause = reboot_in_beat(previous, beat, received_at=at("03:12:40"), times=times(at("03:12:40")))
    assert (cause.kind, cause.summary) == ("reboot", summary), name
    assert "off for at most 1 min" in cause.detail


@pytest.mark.parametrize("name, previous, beat", [
    ("the same boot", before(), after()),
    ("nothing before it", None, after(boot_id="boot-b")),
    ("no boot ids and an uptime that runs on", before(boot_id=None), after(boot_id=None)),
    ("no boot ids and no uptime", before(boot_id=None, uptime_s=None), after(boot_id=None, uptime_s=None)),
])
def test_no_reboot(name, previous, beat):
    assert reboot_in_beat(previous, beat, received_at=BACK, times=times()) is None, name


@pytest.mark.parametrize("interval_s, margin", [(None, 30.0), (60.0, 30.0), (5.0, 10.0), (0.2, 0.4)])
def test_the_lan_margin_is_two_heartbeat_intervals_when_the_interval_is_known(interval_s, margin):
    from appliance.monitor.causes import lan_margin

    assert lan_margin(interval_s) == pytest.approx(margin)

"""The verdict: a pure function, tested on tables of server answers; no network, no sleeping."""

import pytest

from appliance.timecheck.ntp import ServerAnswer
from appliance.timecheck.system import SyncState
from appliance.timecheck.tracking import ServerStatus
from appliance.timecheck.verdict import (
    ZoneCheck, _median, consensus, decide, format_offset, short_reason,
)

SYNCED = SyncState("chrony", True, "chrony: synchronised to 192.0.2.1, stratum 2")
UNSYNCED = SyncState("timesyncd", False, "timesyncd: not synchronised (NTPSynchronized=no)")
NO_SERVICE = SyncState("none", None, "none found (…)")
NO_ZONE_CHECK = ZoneCheck("Etc/UTC")
RIGHT_ZONE = ZoneCheck("America/New_York", "America/New_York", True)
WRONG_ZONE = ZoneCheck("UTC", "America/New_York", False)
FIVE = {"ok", "drifting", "unsynced", "unreachable", "wrong-zone"}


def ok(offset_ms, *, name=None, delay_ms=2.0, offsets=None):
    answer = ServerAnswer(name or f"ntp{offset_ms:g}", "ok", "ok", address="192.0.2.1", offset_ms=offset_ms,
                          delay_ms=delay_ms, stratum=2, leap=0, refid="192.0.2.9")
    return ServerStatus(answer=answer, reach=1, offsets_ms=tuple(offsets or (offset_ms,)))


def bad(name, code="timeout", status="no answer within 5 s"):
    return ServerStatus(answer=ServerAnswer(name, code, status), reach=0)


def servers(*offsets):
    return [ok(o, name=f"s{i}") for i, o in enumerate(offsets)]


# (servers, sync state, zone, expected verdict, expected consensus offset in ms, servers agreeing)
TABLE = [
    ("all agree", servers(0.4, -0.3, 1.2, 0.1), SYNCED, NO_ZONE_CHECK, "ok", 0.25, 4),
    ("one falseticker does not flip ok", servers(0.1, 0.3, -0.2, -2300), SYNCED, NO_ZONE_CHECK, "ok", 0.1, 3),
    ("one truechimer does not flip drifting", servers(2300, 2301, 2299, 0.2), SYNCED, NO_ZONE_CHECK, "drifting",
     2300, 3),
    ("two falsetickers out of five", servers(0, 1, 2, 9000, -7000), SYNCED, NO_ZONE_CHECK, "ok", 1, 3),
    ("one server, drifting", servers(600), SYNCED, NO_ZONE_CHECK, "drifting", 600, 1),
    ("one server, within the limit", servers(-400), SYNCED, NO_ZONE_CHECK, "ok", -400, 1),
    ("exactly at the limit is ok", servers(500), SYNCED, NO_ZONE_CHECK, "ok", 500, 1),
    # Without a majority the largest group nearest zero counts: drifting only if even it says so.
    ("1 against 1: one server alone cannot raise drifting", servers(0.2, 2300), SYNCED, NO_ZONE_CHECK, "ok", 0.2,
     1),
    ("1 against 1, the other way round", servers(2300, 0.2), SYNCED, NO_ZONE_CHECK, "ok", 0.2, 1),
    ("1 against 1, both far off: drifting", servers(2300, -1900), SYNCED, NO_ZONE_CHECK, "drifting", -1900, 1),
    ("2 that agree, far off: drifting", servers(2300, 2301), SYNCED, NO_ZONE_CHECK, "drifting", 2300.5, 2),
    ("2 against 2: the nearer pair counts", servers(0, 1, -2300, -2301), SYNCED, NO_ZONE_CHECK, "ok", 0.5, 2),
    ("2 against 2, both pairs far off", servers(900, 901, -2300, -2301), SYNCED, NO_ZONE_CHECK, "drifting",
     900.5, 2),
    ("servers within the limit of each other agree", servers(0, 300, 450), SYNCED, NO_ZONE_CHECK, "ok", 300, 3),
    ("a chain (0 agrees with 450, 450 with 900): the nearer pair counts", servers(0, 450, 900), SYNCED,
     NO_ZONE_CHECK, "ok", 225, 2),
    ("the largest group decides even without a majority", servers(0, 2300, 2301, 6000, -7000), SYNCED,
     NO_ZONE_CHECK, "drifting", 2300.5, 2),
    ("some unusable, the rest decide", servers(0.5, 0.7) + [bad("x.invalid", "unresolvable", "unresolvable host")],
     SYNCED, NO_ZONE_CHECK, "ok", 0.6, 2),
    ("none usable", [bad("a"), bad("b", "kiss", "kiss-of-death RATE")], SYNCED, NO_ZONE_CHECK, "unreachable",
     None, 0),
    ("service unsynced, servers fine", servers(0.1, 0.2, 0.3), UNSYNCED, NO_ZONE_CHECK, "unsynced", 0.2, 3),
    ("wrong zone, all else fine", servers(0.1, 0.2, 0.3), SYNCED, WRONG_ZONE, "wrong-zone", 0.2, 3),
    ("right zone", servers(0.1, 0.2, 0.3), SYNCED, RIGHT_ZONE, "ok", 0.2, 3),
    ("drifting beats unsynced and wrong zone", servers(2300, 2300, 2300), UNSYNCED, WRONG_ZONE, "drifting", 2300, 3),
    ("unsynced beats unreachable", [bad("a")], UNSYNCED, WRONG_ZONE, "unsynced", None, 0),
    ("unreachable beats wrong zone", [bad("a")], SYNCED, WRONG_ZONE, "unreachable", None, 0),
    ("no servers, service synchronised", [], SYNCED, NO_ZONE_CHECK, "ok", None, 0),
    ("no servers, service not synchronised", [], UNSYNCED, NO_ZONE_CHECK, "unsynced", None, 0),
    ("no servers and no service: nothing keeps the clock", [], NO_SERVICE, NO_ZONE_CHECK, "unsynced", None, 0),
    ("no service, but the servers vouch for the clock", servers(0.1, 0.2), NO_SERVICE, NO_ZONE_CHECK, "ok", 0.15, 2),
    ("no servers, wrong zone", [], SYNCED, WRONG_ZONE, "wrong-zone", None, 0),
    ("zone unreadable", [], SYNCED, ZoneCheck(None, "Europe/Berlin", False), "wrong-zone", None, 0),
]


@pytest.mark.parametrize("label, table, sync, zone, name, offset_ms, agree", TABLE, ids=[row[0] for row in TABLE])
def test_verdict_table(label, table, sync, zone, name, offset_ms, agree):
    verdict = decide(table, sync, zone, max_offset_ms=500)
    assert verdict.name == name, verdict.reason
    assert verdict.name in FIVE  # never "unknown": that is only the checker's "not checked yet"
    assert (verdict.problems[0] if verdict.problems else "ok") == name
    if offset_ms is None:
        assert verdict.offset_ms is None
    else:
        assert verdict.offset_ms == pytest.approx(offset_ms)
    assert verdict.agree == agree
    assert verdict.reason and "\n" not in verdict.reason


def test_the_reason_names_every_problem_most_serious_first():
    verdict = decide(servers(2300, 2300, 2300), UNSYNCED, WRONG_ZONE, max_offset_ms=500)
    assert verdict.reason == ("clock 2.3 s ahead of 3 servers; timesyncd not synchronised (see 'timedatectl "
                              "timesync-status'); clock in UTC, expected America/New_York")
    assert verdict.problems == ("drifting", "unsynced", "wrong-zone")


def test_the_reason_says_who_disagrees():
    table = servers(0.1, 0.3, -0.2) + [ok(-2300, name="127.0.0.1:40001")]
    verdict = decide(table, SYNCED, NO_ZONE_CHECK, max_offset_ms=500)
    assert verdict.reason == ("clock 0.1 ms ahead of 3 servers; 1 other disagrees "
                              "(127.0.0.1:40001: clock 2.3 s behind it)")
    drifting = decide(servers(2300, 2301, 2299) + [ok(0.2, name="good.lan")], SYNCED, NO_ZONE_CHECK,
                      max_offset_ms=500)
    assert drifting.reason == "clock 2.3 s ahead of 3 servers; 1 other disagrees (good.lan: clock 0.2 ms ahead of it)"


def test_without_a_majority_the_reason_says_so_and_what_to_do():
    verdict = decide(servers(0.2, 2300), SYNCED, NO_ZONE_CHECK, max_offset_ms=500)
    assert verdict.reason == ("clock 0.2 ms ahead of 1 server; 1 other disagrees (s1: clock 2.3 s ahead of it); "
                              "no majority: add servers so most can agree")
    assert (verdict.usable, verdict.agree) == (2, 1)


def test_one_falseticker_among_two_cannot_raise_drifting_in_either_order():
    for table in (servers(0.1, 2300), servers(2300, 0.1), servers(0.1, -2300), servers(-2300, 0.1)):
        assert decide(table, SYNCED, NO_ZONE_CHECK, max_offset_ms=500).name == "ok"


def test_one_falseticker_among_three_or_more_cannot_flip_either_way():
    for n in (3, 4, 5):
        honest_ok, honest_drifting = [0.1 * i for i in range(n - 1)], [2300 + i for i in range(n - 1)]
        for liar in (-9000, -2300, -700, 600, 2300, 9000):
            assert decide(servers(*honest_ok, liar), SYNCED, NO_ZONE_CHECK, max_offset_ms=500).name == "ok"
        for liar in (-9000, -2300, 0, 600, 9000):
            assert decide(servers(*honest_drifting, liar), SYNCED, NO_ZONE_CHECK, max_offset_ms=500).name == \
                "drifting"


def test_a_single_usable_server_decides_and_the_reason_says_it_was_the_only_one():
    verdict = decide(servers(600) + [bad("b.lan"), bad("c.lan")], SYNCED, NO_ZONE_CHECK, max_offset_ms=500)
    assert (verdict.name, verdict.offset_ms, verdict.agree, verdict.usable) == ("drifting", 600, 1, 1)
    assert verdict.reason == ("clock 600 ms ahead of 1 server (only 1 server answered); 2 unusable "
                              "(b.lan, c.lan: no answer within 5 s)")
    assert decide(servers(-0.4), SYNCED, NO_ZONE_CHECK, max_offset_ms=500).reason == \
        "clock 0.4 ms behind 1 server (only 1 server answered)"


def test_a_negative_delay_cannot_turn_an_interval_inside_out():
    # ntp.judge_reply refuses such answers; the consensus does not trust them either.
    table = [ok(0, name="a"), ok(2300, name="b"), ok(2301, name="liar", delay_ms=-10_000)]
    found = consensus(table, max_offset_ms=500)
    assert sorted(s.server for s in found.truechimers) == ["b", "liar"]
    assert found.majority


def test_unreachable_lists_what_each_server_said():
    table = [bad("a.invalid", "unresolvable", "unresolvable host"), bad("b.lan"),
             bad("c.lan", "refused", "port closed (ICMP refused)"), bad("d.lan", "kiss", "kiss-of-death RATE (…)")]
    verdict = decide(table, SYNCED, NO_ZONE_CHECK, max_offset_ms=500)
    assert verdict.reason == ("none of 4 servers answered usefully (a.invalid: unresolvable host; "
                              "b.lan: no answer within 5 s; c.lan: port closed (ICMP refused); and 1 more)")


def test_servers_that_failed_the_same_way_are_listed_once_with_the_hint_said_once():
    silent = "no answer within 5 s (is outbound UDP port 123 allowed?)"
    table = [bad(f"{i}.pool", status=silent) for i in range(4)] + [
        bad("ntp.lan", "refused", "port closed (ICMP refused; wrong port?)"), bad("x.lan", status=silent)]
    verdict = decide(table, SYNCED, NO_ZONE_CHECK, max_offset_ms=500)
    assert verdict.reason == ("none of 6 servers answered usefully (0.pool, 1.pool, 2.pool and 2 more: "
                              "no answer within 5 s (is outbound UDP port 123 allowed?); "
                              "ntp.lan: port closed (ICMP refused; wrong port?))")


def test_the_reason_is_cut_to_200_characters_in_one_place():
    table = [bad(f"server-with-a-long-name-{i}.example.lan", status=f"odd failure number {i}") for i in range(9)]
    verdict = decide(table, UNSYNCED, WRONG_ZONE, max_offset_ms=500)
    assert len(verdict.reason) == 200 and verdict.reason.endswith("…")
    assert short_reason(verdict.reason) == verdict.reason
    assert short_reason("x" * 200) == "x" * 200
    assert short_reason("x" * 198 + "; y") == "x" * 198 + "…"


def test_unusable_servers_and_a_missing_service_are_noted_without_changing_ok():
    table = servers(0.5, 0.7) + [bad("x.invalid", "unresolvable", "unresolvable host")]
    verdict = decide(table, NO_SERVICE, NO_ZONE_CHECK, max_offset_ms=500)
    assert verdict.name == "ok"
    assert verdict.reason == ("clock 0.6 ms ahead of 2 servers; no time service found (timesyncd, chrony, ntpd); "
                              "1 unusable (x.invalid: unresolvable host)")
    assert verdict.usable == 2


def test_no_servers_reason_comes_from_the_service():
    assert decide([], SYNCED, NO_ZONE_CHECK, max_offset_ms=500).reason == \
        "chrony synchronised (no [time] servers to compare with)"
    assert decide([], UNSYNCED, NO_ZONE_CHECK, max_offset_ms=500).reason == \
        "timesyncd not synchronised (see 'timedatectl timesync-status')"
    chrony = SyncState("chrony", False, "chrony: not synchronised")
    assert decide([], chrony, NO_ZONE_CHECK, max_offset_ms=500).reason == \
        "chrony not synchronised (see 'chronyc tracking')"


def test_the_zone_reason():
    assert decide([], SYNCED, WRONG_ZONE, max_offset_ms=500).reason.startswith(
        "clock in UTC, expected America/New_York")
    assert "system time zone unknown, expected Europe/Berlin" in decide(
        [], SYNCED, ZoneCheck(None, "Europe/Berlin", False), max_offset_ms=500).reason


def test_jitter_combines_each_servers_jitter_with_their_spread():
    a = ok(1.0, name="a", offsets=(4.0, 1.0))  # peer jitter 3 ms
    b = ok(3.0, name="b", offsets=(3.0,))  # none yet
    found = consensus([a, b], max_offset_ms=500)
    assert found.offset_ms == 2.0
    # peer: sqrt(9 / 1); selection: sqrt(((1-2)^2 + (3-2)^2) / 2) = 1
    assert found.jitter_ms == pytest.approx((9 + 1) ** 0.5)
    assert consensus([ok(1.0)], max_offset_ms=500).jitter_ms is None
    assert consensus([bad("x")], max_offset_ms=500) is None


def test_a_wide_delay_lets_a_distant_server_agree():
    # The interval is offset ± (delay/2 + max_offset/2): a slow path widens what a server can vouch for.
    table = [ok(0, name="a"), ok(0.5, name="b"), ok(700, name="far", delay_ms=400)]
    assert consensus(table, max_offset_ms=500).falsetickers == ()
    narrow = [ok(0, name="a"), ok(0.5, name="b"), ok(700, name="far", delay_ms=2)]
    assert [s.server for s in consensus(narrow, max_offset_ms=500).falsetickers] == ["far"]


@pytest.mark.parametrize("ms, text", [
    (0.04, "0.0 ms"), (0.4, "0.4 ms"), (-9.94, "9.9 ms"), (12.4, "12 ms"), (999.4, "999 ms"), (999.6, "1.0 s"),
    (2300, "2.3 s"), (-2349, "2.3 s"), (59_900, "59.9 s"), (60_000, "1 min"), (3 * 3600_000 + 120_000, "3 h 2 min"),
    (2 * 86400_000, "2 d 0 h"),
])
def test_format_offset(ms, text):
    assert format_offset(ms) == text


@pytest.mark.parametrize("values, median", [([3.0], 3.0), ([5.0, 1.0], 3.0), ([2.0, -7.0, 9.0], 2.0),
                                            ([4.0, 1.0, 3.0, 2.0], 2.5)])
def test_median_is_the_middle_value_or_the_mean_of_the_middle_two(values, median):
    assert _median(iter(values)) == median

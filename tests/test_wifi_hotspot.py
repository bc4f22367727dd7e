"""When the setup hotspot opens and closes: hotspot.step fed tables of (time, what NetworkManager shows) with the
state and actions expected after each look. Times are monotonic seconds; nothing sleeps."""

import pytest

from appliance.wifi.hotspot import (CLOSE, DISABLED, HOTSPOT, JOINING, OFF, ONLINE, OPEN, RETRYING, WAITING, Facts,
                                    Timing, first, step)

TIMING = Timing(after_s=120, retry_every_s=300, retry_for_s=60)
NONE = Facts()                                   # no network, no hotspot
UP = Facts(uplink="Home")                        # a network is up
SPOT = Facts(hotspot=True)                       # the hotspot is up, nothing else
SPOT_SAVED = Facts(hotspot=True, saved_wifi=True)  # … and a Wi-Fi network is saved
NO_WIFI = Facts(problem="NetworkManager has no Wi-Fi device 'wlan0'")


def run(rows, *, enabled=True, start=0.0):
    """Feed ``rows`` of (now, facts, expected state, expected actions); return the flips seen."""
    state, flips = first(start), []
    for now, facts, want_state, want_actions in rows:
        state, actions, flip = step(state, facts, now, enabled=enabled, timing=TIMING)
        assert (state.name, actions) == (want_state, want_actions), f"at {now} s with {facts}"
        if flip is not None:
            flips.append(flip)
    return flips


def test_it_opens_only_after_after_s_without_any_network_then_closes_when_a_network_is_up():
    flips = run([
        (0, NONE, WAITING, ()),
        (60, NONE, WAITING, ()),
        (119.9, NONE, WAITING, ()),        # a slow DHCP at boot does not open it
        (120, NONE, HOTSPOT, (OPEN,)),
        (125, SPOT, HOTSPOT, ()),          # opened: nothing more to do
        (400, SPOT, HOTSPOT, ()),          # nothing saved to retry: it stays for whoever comes
        (405, Facts(uplink="Home", hotspot=True), ONLINE, (CLOSE,)),  # the join worked, or a cable came
        (410, UP, ONLINE, ()),
    ])
    assert [(f.old, f.new, f.at) for f in flips] == [("starting", WAITING, 0), (WAITING, HOTSPOT, 120),
                                                    (HOTSPOT, ONLINE, 405)]
    assert flips[1].reason == "no network for 2 min; opening the hotspot"
    assert flips[2].reason == "'Home' is up; closing the hotspot"


def test_a_network_lost_again_reopens_it_after_after_s_and_a_short_drop_never_does():
    run([
        (0, UP, ONLINE, ()),
        (50, NONE, WAITING, ()),
        (150, UP, ONLINE, ()),             # back after 100 s: no hotspot
        (200, NONE, WAITING, ()),          # the clock starts again from this loss
        (319, NONE, WAITING, ()),
        (320, NONE, HOTSPOT, (OPEN,)),
    ])


def test_an_open_hotspot_steps_aside_for_the_saved_wifi_every_retry_every_s():
    flips = run([
        (0, NONE, WAITING, ()),
        (120, NONE, HOTSPOT, (OPEN,)),
        (125, SPOT_SAVED, HOTSPOT, ()),
        (419, SPOT_SAVED, HOTSPOT, ()),
        (420, SPOT_SAVED, RETRYING, (CLOSE,)),  # open for 300 s: let NetworkManager try the router
        (425, NONE, RETRYING, ()),
        (479, NONE, RETRYING, ()),
        (480, NONE, HOTSPOT, (OPEN,)),          # the router is still off: back for the next 300 s
        (485, SPOT_SAVED, HOTSPOT, ()),
        (780, SPOT_SAVED, RETRYING, (CLOSE,)),
        (800, UP, ONLINE, ()),                  # the router is back: the appliance is not stuck in hotspot mode
    ])
    assert flips[2].reason == "closing the hotspot for 1 min so the saved Wi-Fi can connect if it is back"


def test_someone_on_the_setup_page_keeps_the_hotspot_from_stepping_aside():
    used_at_400 = Facts(hotspot=True, saved_wifi=True, page_mono=400)
    run([
        (0, NONE, WAITING, ()),
        (120, NONE, HOTSPOT, (OPEN,)),
        (420, used_at_400, HOTSPOT, ()),   # due, but someone used the page 20 s ago
        (699, used_at_400, HOTSPOT, ()),
        (700, used_at_400, RETRYING, (CLOSE,)),  # nobody for 300 s
    ])


def test_a_join_wins_and_a_failed_one_from_the_hotspot_reopens_it_at_once():
    joining = Facts(joining="Home")
    run([
        (0, NONE, WAITING, ()),
        (120, NONE, HOTSPOT, (OPEN,)),
        (125, Facts(hotspot=True, joining="Home"), JOINING, ()),
        (130, joining, JOINING, ()),      # the hotspot went down for the join: nothing to do about it
        (170, NONE, HOTSPOT, (OPEN,)),    # wrong passphrase: the person is waiting for the hotspot
        (175, SPOT, HOTSPOT, ()),
        (180, joining, JOINING, ()),
        (200, UP, ONLINE, ()),            # this time it worked
    ])


def test_a_failed_join_without_the_hotspot_waits_after_s_again():
    run([
        (0, UP, ONLINE, ()),
        (10, Facts(uplink="Home", joining="Office"), JOINING, ()),
        (40, NONE, WAITING, ()),
        (159, NONE, WAITING, ()),
        (160, NONE, HOTSPOT, (OPEN,)),
    ])


def test_a_hotspot_that_goes_down_or_cannot_open_is_tried_again_after_after_s():
    run([
        (0, NONE, WAITING, ()),
        (120, NONE, HOTSPOT, (OPEN,)),
        (125, NONE, WAITING, ()),         # opening failed (or NetworkManager dropped it)
        (244, NONE, WAITING, ()),
        (245, NONE, HOTSPOT, (OPEN,)),
    ])


def test_a_hotspot_found_up_at_start_is_taken_over_not_reopened():
    flips = run([(7, SPOT, HOTSPOT, ()), (12, SPOT, HOTSPOT, ())], start=7)
    assert flips[0].reason == "the hotspot is up"


def test_without_wifi_it_is_idle_and_says_so_once_per_reason():
    flips = run([
        (0, NO_WIFI, OFF, ()),
        (500, NO_WIFI, OFF, ()),
        (600, Facts(problem="nmcli is not installed"), OFF, ()),
        (700, NONE, WAITING, ()),         # a Wi-Fi stick was plugged in
    ])
    assert [f.reason for f in flips] == ["NetworkManager has no Wi-Fi device 'wlan0'; the hotspot is idle",
                                         "nmcli is not installed; the hotspot is idle",
                                         "no network; the hotspot opens after 2 min without one"]


def test_turned_off_it_never_opens_and_closes_one_that_is_up():
    run([
        (0, SPOT, DISABLED, (CLOSE,)),
        (5, NONE, DISABLED, ()),
        (1000, NONE, DISABLED, ()),
        (1005, UP, ONLINE, ()),
    ], enabled=False)


@pytest.mark.parametrize("after_s", [10, 120, 3600])
def test_after_s_is_the_config_value(after_s):
    timing = Timing(after_s=after_s)
    state, _, _ = step(first(0), NONE, 0, enabled=True, timing=timing)
    state, actions, _ = step(state, NONE, after_s - 0.5, enabled=True, timing=timing)
    assert actions == ()
    state, actions, _ = step(state, NONE, after_s, enabled=True, timing=timing)
    assert (state.name, actions) == (HOTSPOT, (OPEN,))

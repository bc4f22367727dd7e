"""The peer's power relay: when to power-cycle (PowerCycler, on tables of explicit times) and the pin that does
it (PeerRelay, a real gpiozero OutputDevice over a MockFactory)."""

import pytest
from gpiozero import LED

from appliance.clock import Now
from hardware.errors import HardwareUnavailable
from hardware.relay import CAME_BACK, CAME_BACK_LATE, MAX_WAIT_S, NOT_BACK, OFF, ON, PeerRelay, PowerCycle, \
    PowerCycler

T0 = Now(mono=5000.0, wall=1_790_000_000.0)
AFTER_S, OFF_S, GAP_S = 600.0, 10.0, 3600.0
PIN = 24


def at(t, *, wall_step=0.0):
    """The reading ``t`` seconds after T0 (the wall clock also stepped by ``wall_step``)."""
    return Now(T0.mono + t, T0.wall + t + wall_step)


def cycler(**options):
    return PowerCycler(**{"after_s": AFTER_S, "off_s": OFF_S, "min_gap_s": GAP_S, "started": T0, **options})


def play(c, script):
    """Run ``script`` rows (t, peer state, last heard at t=…, expected action, expected news) through ``c``;
    an expected action is confirmed with done(). Returns the Steps."""
    steps = []
    for t, state, heard, action, news in script:
        now = at(t)
        step = c.tick(now, state, None if heard is None else T0.wall + heard)
        assert (step.action, step.news) == (action, news), f"at t={t}: {step}"
        if step.action:
            c.done(step.action, now)
        steps.append(step)
    return steps


# (t, state, heard at, action, news): a peer last heard at t=0, declared down by the monitor at t=300.
CYCLE = [
    (0, "up", 0, None, None),
    (300, "down", 0, None, None),
    (599.9, "down", 0, None, None),
    (600, "down", 0, OFF, None),
    (605, "down", 0, None, None),
    (610, "down", 0, ON, None),
    (700, "down", 0, None, None),
]


def test_a_silent_down_peer_is_power_cycled_and_its_comeback_is_told():
    c = cycler()
    play(c, CYCLE + [(735, "up", 730, None, CAME_BACK)])
    (cycle,) = c.cycles
    assert cycle == PowerCycle(at=T0.wall + 600, came_back_at=T0.wall + 730)
    assert c.phase == "idle"


def test_the_comeback_is_timed_from_the_power_off():
    steps = play(cycler(), CYCLE + [(735, "up", 730, None, CAME_BACK)])
    assert steps[-1].after_s == pytest.approx(130.0)


def test_a_peer_that_does_not_come_back_is_told_and_tried_again_only_after_the_gap():
    c = cycler()
    steps = play(c, CYCLE + [
        (1209, "down", 0, None, None),
        (1210, "down", 0, None, NOT_BACK),        # on at 610, then after_s of silence
        (1300, "down", 0, None, None),
        (4199, "down", 0, None, None),            # the gap runs from the last power-off (600)
        (4200, "down", 0, OFF, None),
    ])
    assert steps[8].after_s == pytest.approx(610.0)
    assert [x.came_back_at for x in c.cycles] == [None, None]


def test_a_comeback_after_the_verdict_is_still_recorded():
    c = cycler()
    play(c, CYCLE + [(1210, "down", 0, None, NOT_BACK), (1500, "up", 1490, None, CAME_BACK_LATE)])
    assert c.cycles[-1].came_back_at == T0.wall + 1490


@pytest.mark.parametrize("state", ["up", "new"])
def test_a_peer_that_is_not_down_is_never_power_cycled(state):
    c = cycler()
    play(c, [(0, state, None, None, None), (100_000, state, None, None, None)])
    assert c.cycles == ()


def test_only_silence_this_watcher_witnessed_counts():
    # Both Pis lost power; the watcher boots first and the monitor restored the peer as down, last heard an
    # hour before: the peer still gets after_s to boot.
    c = cycler()
    play(c, [(0, "down", -3600, None, None), (599, "down", -3600, None, None), (600, "down", -3600, OFF, None)])


def test_a_wall_clock_step_neither_fires_nor_delays_a_power_cycle():
    c = cycler()
    assert c.tick(at(100), "down", T0.wall).action is None
    assert c.tick(at(200, wall_step=7200), "down", T0.wall).action is None   # NTP set the clock 2 h on
    assert c.tick(at(599, wall_step=7200), "down", T0.wall).action is None
    assert c.tick(at(600, wall_step=7200), "down", T0.wall).action == OFF


def test_a_heartbeat_resets_the_silence():
    play(cycler(), [(0, "up", 0, None, None), (500, "down", 450, None, None), (1000, "down", 450, None, None),
                    (1050, "down", 450, OFF, None)])


def test_the_gap_holds_across_a_restart():
    history = (PowerCycle(at=T0.wall - 1000, came_back_at=T0.wall - 900),)
    c = cycler(history=history)
    play(c, [(600, "down", -3600, None, None), (2599, "down", -3600, None, None),
             (2600, "down", -3600, OFF, None)])
    assert len(c.cycles) == 2


def test_a_comeback_after_a_restart_is_recorded_by_wall_time():
    c = cycler(history=(PowerCycle(at=T0.wall - 100),))
    steps = play(c, [(50, "up", -200, None, None),          # heard before that power cycle: not a comeback
                     (60, "up", 55, None, CAME_BACK_LATE)])
    assert steps[-1].after_s == pytest.approx(155.0)
    assert c.cycles[-1].came_back_at == T0.wall + 55


def test_an_action_the_relay_did_not_carry_out_is_proposed_again():
    c = cycler()
    assert c.tick(at(600), "down", T0.wall).action == OFF
    assert c.tick(at(601), "down", T0.wall).action == OFF   # no done(): GPIO failed
    assert c.cycles == ()
    c.done(OFF, at(601))
    assert c.tick(at(700), "down", T0.wall).action == ON    # overdue: proposed until done
    assert c.tick(at(701), "down", T0.wall).action == ON


@pytest.mark.parametrize("t, state, expected", [
    (0, "up", MAX_WAIT_S),       # nothing to wait for: the monitor wakes the caller when the peer changes
    (300, "down", 300.0),        # until after_s of silence
    (590, "down", 10.0),
])
def test_the_wait_names_the_next_deadline(t, state, expected):
    assert cycler().tick(at(t), state, T0.wall).wait_s == pytest.approx(min(expected, MAX_WAIT_S))


def test_the_wait_during_a_cycle_is_its_next_step():
    c = cycler()
    c.tick(at(600), "down", T0.wall)
    c.done(OFF, at(600))
    assert c.tick(at(603), "down", T0.wall).wait_s == pytest.approx(7.0)
    assert c.tick(at(610), "down", T0.wall).action == ON
    c.done(ON, at(610))
    assert c.tick(at(650), "down", T0.wall).wait_s == pytest.approx(MAX_WAIT_S)


def test_an_on_outside_a_cycle_changes_nothing():
    c = cycler()
    assert c.done(ON, at(1)) is None and c.phase == "idle" and c.cycles == ()


def test_only_the_newest_cycles_are_kept():
    c = cycler(history=tuple(PowerCycle(at=T0.wall - 10_000 + i) for i in range(30)), min_gap_s=1.0)
    assert len(c.cycles) == 20 and c.cycles[-1].at == T0.wall - 10_000 + 29


# --- the pin ---------------------------------------------------------------------------------------------

def states(factory, pin):
    return [s.state for s in factory.pin(pin).states]


def test_the_peer_has_power_from_the_start_and_a_cycle_takes_the_pin_low_then_high(factory):
    with PeerRelay(PIN, pin_factory=factory) as relay:
        assert factory.pin(PIN).state is True and relay.powered
        relay.power_off()
        assert factory.pin(PIN).state is False and not relay.powered
        relay.power_on()
    assert states(factory, PIN)[-3:] == [True, False, True]


def test_an_active_low_relay_cuts_the_power_with_the_pin_high(factory):
    with PeerRelay(PIN, active_high=False, pin_factory=factory) as relay:
        assert factory.pin(PIN).state is False
        relay.power_off()
        assert factory.pin(PIN).state is True


def test_closing_gives_the_power_back_and_is_idempotent(factory):
    relay = PeerRelay(PIN, pin_factory=factory)
    relay.power_off()
    relay.close()
    relay.close()
    assert states(factory, PIN)[-1] is True
    assert relay.powered
    relay.power_on()  # nothing to do: the power is on
    with pytest.raises(HardwareUnavailable, match="closed"):
        relay.power_off()


def test_a_pin_in_use_is_one_clear_error(factory):
    holder = LED(PIN, pin_factory=factory)
    try:
        with pytest.raises(HardwareUnavailable, match=r"GPIO 24 is in use .*\[peer\] relay_pin") as caught:
            PeerRelay(PIN, pin_factory=factory)
        assert caught.value.pins == (PIN,)
    finally:
        holder.close()


def test_a_comeback_is_never_recorded_before_its_power_off():
    c = cycler()
    play(c, CYCLE)
    now = at(700, wall_step=-3600)            # the wall clock stepped back an hour meanwhile
    step = c.tick(now, "up", now.wall)
    assert step.news == CAME_BACK and step.cycle.came_back_at == step.cycle.at

"""Clock jumps: the wall clock moves a day forward or back, on the monitor's side or the agent's, and the
monitor neither cries wolf nor misses an outage.

Both sides run their real code on injected clocks, with no sleeps: a MonitorService on a real SQLite file,
driven by ``tick(now)`` and ``receive()``, and (for the agent's side) the agent's real TargetWorker, whose
heartbeats go through the real request builder straight into ``receive()``; a Link that is cut makes its
sends fail as a dead Internet connection does. A World holds the true time; each side reads its own
monotonic clock (never stepped) and its own wall clock, which the test steps.

What "right" means for an outage's times when the monitor's wall clock steps: lengths are what really passed,
by the monotonic clock (a DOWN comes max_silence_s after the last beat, an UP says how long the silence
really was); wall times are the ones the monitor's clock shows when the event is made, so after a step the
time the device was last heard is given on the stepped clock (now minus the real silence), the clock a
person reading the alert has in front of them (a step is most often NTP correcting a wrong clock).
"""

import json
import threading

import pytest

from appliance.agent.failures import FailureLog
from appliance.agent.heartbeats import TargetWorker
from appliance.agent.transport import Response
from appliance.clock import Now
from appliance.config.schema import Alerts, Config, Monitor, MonitoredDevice, Target
from appliance.errors import SendError
from appliance.monitor.events import Kind
from appliance.monitor.service import MonitorService

pytestmark = pytest.mark.fault

DAY_S = 86_400.0
MAX_SILENCE_S = 300.0
REMINDER_EVERY_S = 3600.0
INTERVAL_S = 60.0
TOKEN = "home-token-123"
STEPS = pytest.mark.parametrize("step_s", [DAY_S, -DAY_S], ids=["plus-1-day", "minus-1-day"])


class SideClock:
    """One side's clocks: monotonic = the world's time + a fixed origin; wall = the world's time + a
    start + every step so far."""

    def __init__(self, world, *, mono0, wall0):
        self._world, self._mono0, self._wall0 = world, mono0, wall0
        self.stepped_s = 0.0

    def now(self):
        return Now(self._mono0 + self._world.t, self._wall0 + self._world.t + self.stepped_s)

    def step_wall(self, seconds):
        self.stepped_s += seconds


class World:
    """The true time ``t`` (seconds from the start), the monitor's and the agent's clocks."""

    def __init__(self):
        self.t = 0.0
        self.monitor = SideClock(self, mono0=5_000.0, wall0=1_750_000_000.0)
        self.agent = SideClock(self, mono0=200.0, wall0=1_750_000_000.0 + 0.2)  # its NTP is 0.2 s off


@pytest.fixture
def world():
    return World()


@pytest.fixture
def service(tmp_path, world):
    """A MonitorService watching "home" (max_silence_s 300, a reminder every hour), alerts to an outbox."""
    device = MonitoredDevice(name="home", token=TOKEN, max_silence_s=MAX_SILENCE_S,
                             reminder_every_s=REMINDER_EVERY_S)
    config = Config(data_dir=str(tmp_path / "monitor"), monitor=Monitor(devices=(device,)),
                    alerts=Alerts(outbox_dir=str(tmp_path / "outbox")))
    s = MonitorService(config, clock=world.monitor)
    yield s
    s.stop()


def events(service):
    """Stored events of "home", oldest first."""
    return [e for e in reversed(service.store.events()) if e.device == "home"]


def kinds(service):
    return [e.kind for e in events(service)]


def beat(service, world, *, seq):
    """A heartbeat as the agent sends it, with the agent's wall clock as its send time."""
    agent = world.agent.now()
    body = {"device": "home", "sent_at": agent.wall, "seq": seq, "boot_id": "boot-1", "uptime_s": agent.mono,
            "agent_started_at": agent.wall - (agent.mono - 200.0)}
    answer = service.receive(json.dumps(body).encode(), "application/json", f"Bearer {TOKEN}")
    assert answer.status == 200, answer.body
    return answer


def run_monitor(service, world, until_t, *, beat_every_s=None, seq=None):
    """Move the world on to ``until_t``, ticking the monitor when it asks (and every 10 s at least) and
    sending a beat every ``beat_every_s`` if given; returns the next seq."""
    seq = seq or [0]
    next_beat = world.t if beat_every_s else None
    while world.t < until_t:
        if next_beat is not None and world.t >= next_beat:
            seq[0] += 1
            beat(service, world, seq=seq[0])
            next_beat += beat_every_s
        delay = service.tick(world.monitor.now())
        wake = [world.t + min(delay, 10.0), until_t] + ([next_beat] if next_beat is not None else [])
        world.t = max(world.t, min(wake))
        if delay == 0.0:
            continue
    service.tick(world.monitor.now())
    return seq


# -- the monitor's wall clock jumps --------------------------------------------------------------


@STEPS
def test_a_monitor_clock_jump_while_a_device_beats_steadily_brings_no_down(service, world, step_s):
    seq = run_monitor(service, world, 1200, beat_every_s=INTERVAL_S)
    world.monitor.step_wall(step_s)
    run_monitor(service, world, 3 * 3600, beat_every_s=INTERVAL_S, seq=seq)
    assert kinds(service) == [Kind.FIRST_SEEN]
    assert service.device("home")["state"] == "up"
    assert service.store.deliveries() == []


@STEPS
def test_a_monitor_clock_jump_while_a_device_is_silent_brings_down_at_the_right_time_once(service, world, step_s):
    beat(service, world, seq=1)
    heard = world.monitor.now()
    run_monitor(service, world, 100)
    world.monitor.step_wall(step_s)
    run_monitor(service, world, MAX_SILENCE_S - 0.1)
    assert kinds(service) == [Kind.FIRST_SEEN], "DOWN came before max_silence_s of real silence"
    run_monitor(service, world, MAX_SILENCE_S)
    assert kinds(service) == [Kind.FIRST_SEEN, Kind.DOWN], "no DOWN after max_silence_s of real silence"
    down = events(service)[-1]
    assert down.at == heard.wall + step_s + MAX_SILENCE_S  # the monitor's clock when it fired
    assert down.outage_s == MAX_SILENCE_S and down.reason == "no heartbeat for 5 min"
    # Last heard 5 minutes before the DOWN, on the clock the DOWN is written in.
    assert down.at - down.last_heard_at == MAX_SILENCE_S
    assert down.outage_started_at == down.last_heard_at
    run_monitor(service, world, MAX_SILENCE_S + REMINDER_EVERY_S - 0.1)
    assert kinds(service) == [Kind.FIRST_SEEN, Kind.DOWN]
    run_monitor(service, world, MAX_SILENCE_S + REMINDER_EVERY_S)
    assert kinds(service) == [Kind.FIRST_SEEN, Kind.DOWN, Kind.REMINDER]
    reminder = events(service)[-1]
    assert reminder.outage_s == MAX_SILENCE_S + REMINDER_EVERY_S
    assert reminder.outage_started_at == down.outage_started_at


@STEPS
@pytest.mark.parametrize("when", ["before-down", "after-down"])
def test_a_monitor_clock_jump_during_an_outage_leaves_its_length_true(service, world, step_s, when):
    """The UP says how long the device was really silent: not negative, not a day too long."""
    beat(service, world, seq=1)
    run_monitor(service, world, 100 if when == "before-down" else 1000)
    world.monitor.step_wall(step_s)
    run_monitor(service, world, 2000)
    assert kinds(service) == [Kind.FIRST_SEEN, Kind.DOWN]
    down = events(service)[-1]
    beat(service, world, seq=2)
    up = events(service)[-1]
    assert up.kind is Kind.UP
    assert up.outage_s == 2000
    # Same boot, same agent, no failed sends: the explanation reads "cause unknown", with the true length.
    assert up.cause == "unknown" and up.reason.startswith("cause unknown, 33 min ("), up.reason
    # On the clock of the event: an UP after the step starts its outage on the stepped clock.
    assert up.at - up.outage_started_at == 2000
    assert up.outage_started_at == down.outage_started_at + (step_s if when == "after-down" else 0.0)
    assert service.store.outages()[0]["duration_s"] == 2000
    assert service.device("home")["state"] == "up"


# -- the agent's wall clock jumps ----------------------------------------------------------------


class Link:
    """The agent's way to the monitor: its sends go straight into MonitorService.receive(), or fail as a dead
    Internet connection does while ``cut``."""

    def __init__(self, service):
        self.service = service
        self.cut = False

    def __call__(self, method, url, *, headers, body, timeout_s):
        if self.cut:
            raise SendError("cannot connect to 192.0.2.1:443: Network is unreachable")
        answer = self.service.receive(body, headers["Content-Type"], headers["Authorization"])
        return Response(status=answer.status, body=json.dumps(answer.body).encode(), elapsed_s=0.05)


@pytest.fixture
def agent(tmp_path, world, service):
    """The agent's real TargetWorker for one phonehome target, on the agent's clocks, sending over a Link."""
    link = Link(service)
    target = Target(url="https://monitor.example/api/heartbeat", kind="phonehome", token=TOKEN)
    worker = TargetWorker(target, device="home", boot_id="boot-1", started=world.agent.now(), clock=world.agent,
                          send=link, failures=FailureLog(str(tmp_path / "agent-state.json"), boot_id="boot-1"),
                          interval_s=INTERVAL_S, timeout_s=10.0, uptime=lambda: world.agent.now().mono,
                          rand=lambda: 0.0, paused=threading.Event())
    worker.link = link
    return worker


def run_both(service, worker, world, until_t, *, at=()):
    """Move the world on to ``until_t``, each side ticking when it asks; ``at`` is [(t, action)] done on the way."""
    todo = sorted(at, key=lambda item: item[0])
    while world.t < until_t:
        while todo and todo[0][0] <= world.t:
            todo.pop(0)[1]()
        agent_delay = worker.tick(world.agent.now())
        monitor_delay = service.tick(world.monitor.now())
        wake = [world.t + agent_delay, world.t + monitor_delay, until_t] + [t for t, _ in todo[:1]]
        world.t = max(world.t, min(wake))
    service.tick(world.monitor.now())


@STEPS
def test_an_agent_clock_jump_while_beating_brings_no_down_and_no_missed_beat(service, agent, world, step_s):
    run_both(service, agent, world, 1800, at=[(600, lambda: world.agent.step_wall(step_s))])
    assert kinds(service) == [Kind.FIRST_SEEN]
    assert agent.status.state == "ok" and agent.status.beats_ok == 30  # every minute from 0 to 29 min
    offset_ms = service.store.last_beats()["home"]["clock_offset_ms"] if service.flush() is None else None
    assert offset_ms == pytest.approx((step_s + 0.2) * 1000)  # the monitor sees the agent's clock a day off
    assert service.device("home")["state"] == "up"


@STEPS
def test_an_agent_clock_jump_during_an_internet_outage_still_reads_as_an_internet_outage(
        service, agent, world, step_s):
    """The Internet goes at 10 min and comes back at 30 min; the agent's clock steps a day at 20 min (its
    NTP, say, stepping when a server answered on the LAN). DOWN at 15 min, UP at 30 min; the UP's cause is the
    Internet, from the agent's failed sends, and its length is the 20 minutes that really passed."""
    link = agent.link
    run_both(service, agent, world, 2400, at=[(600, lambda: setattr(link, "cut", True)),
                                              (1200, lambda: world.agent.step_wall(step_s)),
                                              (1800, lambda: setattr(link, "cut", False))])
    assert kinds(service) == [Kind.FIRST_SEEN, Kind.DOWN, Kind.UP]
    down, up = events(service)[1:]
    assert down.at - down.last_heard_at == MAX_SILENCE_S
    assert down.last_heard_at == events(service)[0].at + 540  # the last beat got through at 9 min
    assert up.outage_s == pytest.approx(1800 - 540, abs=INTERVAL_S)
    assert up.cause == "internet", up.reason
    # 10 min to 30 min by the failed sends, whichever way the agent's clock went meanwhile.
    assert up.reason.startswith("Internet down, 20 min ("), up.reason
    assert "recorded 44 failed sends" in up.detail, up.detail  # each minute's beat and its backed-off retries
    assert agent.status.state == "ok"

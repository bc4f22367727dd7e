"""The monitor's self-check: mass silences and the DOWN alerts held until its own connectivity is confirmed.

The decisions are pure tables; the rest goes through a MonitorService on a
real SQLite file, driven by receive() and tick(now) on a hand-moved clock,
its alerts through a real outbox channel (dispatcher.tick, no threads) read
back as e-mails. Canaries are real HTTP servers on 127.0.0.1 (the ``ping``
fixture) and a port nothing listens on.
"""

import email
import email.policy
import io
import json

import pytest

from appliance.alerts.channels import OutboxChannel
from appliance.alerts.messages import SMS_CHARS
from appliance.clock import Now
from appliance.config.schema import Alerts, Config, Monitor, MonitoredDevice
from appliance.monitor.connectivity import Connectivity
from appliance.monitor.events import Kind
from appliance.monitor.selfcheck import is_mass_silence, may_become_mass
from appliance.monitor.service import MonitorService

from .conftest import ManualClock
from .conftest import ny as at

START = Now(mono=1000.0, wall=at("09:00:00"))


pytestmark = pytest.mark.usefixtures("new_york")


# -- the decisions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("silent, up, share, min_devices, mass", [
    (7, 3, 0.5, 4, True),     # the example
    (5, 5, 0.5, 4, True),     # exactly the share
    (4, 6, 0.5, 4, False),    # below it
    (2, 2, 0.5, 4, True),     # 4 devices, half of them
    (2, 1, 0.5, 4, False),    # 3 devices were up: below mass_silence_min_devices
    (1, 3, 0.25, 4, False),   # one device is never a mass silence, whatever the share
    (2, 6, 0.25, 4, True),
    (10, 0, 1.0, 4, True),    # share 1: all of them
    (9, 1, 1.0, 4, False),
    (0, 0, 0.5, 4, False),
])
def test_mass_silence_is_a_share_of_the_devices_that_were_up(silent, up, share, min_devices, mass):
    assert is_mass_silence(silent, up, share=share, min_devices=min_devices) is mass


@pytest.mark.parametrize("silent, quiet, up, held", [
    (1, 4, 9, True),    # the first DOWN of a silence: 4 more quiet would make 5 of 10
    (1, 3, 9, False),   # 4 of 10 at most: sent at once
    (1, 0, 3, False),
    (2, 0, 2, True),    # already a mass silence
])
def test_a_down_waits_when_the_quiet_devices_could_make_a_mass_silence(silent, quiet, up, held):
    assert may_become_mass(silent, quiet, up, share=0.5, min_devices=4) is held


def test_connectivity_is_unknown_until_a_canary_answers_and_changes_once_per_change():
    c = Connectivity()
    assert c.state == "unknown"
    t = Now(10.0, 1000.0)
    assert c.canary(False, t) is True and c.state == "lost" and c.ok_since is None
    assert c.canary(False, t.later(60)) is False
    assert c.canary(True, t.later(120)) is True and c.state == "ok" and c.ok_since == 130.0
    assert c.canary(True, t.later(180)) is False and c.ok_since == 130.0  # ok since the first answer in a row


# -- a monitor with ten devices ---------------------------------------------------------------------------


class Monitored:
    """A MonitorService whose alerts go to an outbox; ``sent()`` delivers what is due and reads it back."""

    def __init__(self, tmp_path, clock, names, **monitor):
        devices = tuple(MonitoredDevice(name=n, token=f"{n}-token-123", max_silence_s=300, reminder_every_s=14400,
                                        site=monitor.pop(f"site_{n}", "")) for n in names)
        self.config = Config(data_dir=str(tmp_path / "data"), monitor=Monitor(devices=devices, **monitor),
                             alerts=Alerts(outbox_dir=str(tmp_path / "outbox")))
        self.outbox = tmp_path / "outbox"
        self.clock = clock
        self._read = set()
        self.start()

    def start(self, clock=None):
        self.clock = clock or self.clock
        channel = OutboxChannel(str(self.outbox), stream=io.StringIO())
        self.service = MonitorService(self.config, clock=self.clock, channels=[channel])
        return self.service

    def beat(self, *names):
        for name in names:
            body = json.dumps({"device": name, "sent_at": self.clock.now().wall, "seq": 1, "boot_id": "b00t-1",
                               "uptime_s": 86400.0}).encode()
            answer = self.service.receive(body, "application/json", f"Bearer {name}-token-123")
            assert answer.status == 200, answer.body

    def until(self, text, *, beating=()):
        """Move the clock on to "HH:MM:SS" New York time and tick; ``beating`` devices beat every 30 s meanwhile
        (and not at the end)."""
        end = at(text)
        while beating and end - self.clock.now().wall > 30:
            self.service.tick(self.clock.advance(30))
            self.beat(*beating)
        self.service.tick(self.clock.advance(end - self.clock.now().wall))

    def mails(self):
        self.service.dispatcher.tick("outbox", self.clock.now())
        new = sorted(p for p in self.outbox.glob("*.eml") if p.name not in self._read) if self.outbox.exists() \
            else []
        self._read.update(p.name for p in new)
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in new]

    def sent(self):
        """The subjects of the alerts delivered since the last call."""
        return [str(m["Subject"]) for m in self.mails()]

    def statuses(self, kind):
        """{device: delivery status} of the events of ``kind``."""
        events = {e.id: e.device for e in self.service.store.events(limit=1000) if e.kind is kind}
        return {events[d["event_id"]]: d["status"] for d in self.service.store.deliveries()
                if d["event_id"] in events}


NAMES = tuple(f"pi{i}" for i in range(10))
BEATING = ("pi7", "pi8", "pi9")


@pytest.fixture
def clock():
    return ManualClock(START)


@pytest.fixture
def monitors(tmp_path):
    made = []

    def make(clock, names=NAMES, **monitor):
        m = Monitored(tmp_path, clock, names, **monitor)
        made.append(m)
        return m

    yield make
    for m in made:
        m.service.stop()


def test_seven_of_ten_silent_at_once_make_one_alert_and_their_downs_wait(monitors, clock):
    m = monitors(clock)
    m.beat(*NAMES)
    m.until("09:05:00", beating=BEATING)         # pi7..pi9 beat on; pi0..pi6 are silent from 09:00
    #                                              the seven DOWNs fire in one step
    [mail] = m.mails()
    assert mail["Subject"] == "MASS SILENCE: 7 of 10 devices silent within a minute"
    first = mail.get_content().splitlines()[0]
    assert first == ("mass silence: 7 of 10 devices silent within a minute \u2014 monitor-side or regional problem? "
                     "monitor connectivity: unknown")
    assert len(first) <= SMS_CHARS
    assert "silent: pi0, pi1, pi2, pi3, pi4, pi5, pi6." in mail.get_content()
    assert set(m.statuses(Kind.DOWN).values()) == {"held"}
    assert len(m.statuses(Kind.DOWN)) == 7       # all stored, none sent

    m.until("09:05:30")
    m.beat(*BEATING)                             # a heartbeat: the way in works, connectivity confirmed
    m.until("09:07:00", beating=BEATING)
    m.beat("pi0")                                # back before its DOWN went out: neither DOWN nor UP is sent
    m.until("09:10:29", beating=BEATING)
    assert m.sent() == []
    m.until("09:10:30")                          # still silent max_silence_s after the proof: released, once
    assert sorted(m.sent()) == sorted([f"DOWN: pi{i}" for i in range(1, 7)] + ["MASS SILENCE OVER after 5 min"])
    m.until("09:12:00", beating=BEATING + ("pi0",))
    assert m.sent() == []
    statuses = m.statuses(Kind.DOWN)
    assert statuses.pop("pi0") == "merged" and set(statuses.values()) == {"sent"}
    assert m.statuses(Kind.UP) == {}             # pi0's UP: recorded, no delivery
    assert [e.device for e in m.service.store.events(limit=100) if e.kind is Kind.UP] == ["pi0"]
    m.beat("pi1")                                # its DOWN was sent: its UP is too
    assert m.sent() == ["UP: pi1 after 12 min"]


def test_the_end_says_how_it_ended(monitors, clock):
    m = monitors(clock)
    m.beat(*NAMES)
    m.until("09:05:00", beating=BEATING)
    m.sent()
    m.beat(*BEATING)
    m.until("09:10:00", beating=BEATING)
    [end] = [mail for mail in m.mails() if "OVER" in mail["Subject"]]
    assert end.get_content().splitlines()[0] == (
        "mass silence over: the monitor's connectivity is confirmed; 7 device(s) or site(s) still silent "
        "\u2014 their DOWN alerts went out; 0 came back before.")


def test_a_monitor_cut_off_gets_one_alert_and_one_all_clear_for_everyone(monitors, clock):
    names = NAMES[:5]
    m = monitors(clock, names)
    m.beat(*names)
    m.until("09:05:00")                           # all five silent: the monitor's own link is the likely cause
    assert m.sent() == ["MASS SILENCE: 5 of 5 devices silent within a minute"]
    m.until("09:20:00")
    m.beat("pi0")                                 # the link is back; the others follow within their interval
    m.until("09:20:40")
    m.beat("pi1", "pi2", "pi3")
    m.until("09:21:10")
    m.beat("pi4")
    [end] = m.mails()
    assert end["Subject"] == "MASS SILENCE OVER after 16 min"
    assert end.get_content().splitlines()[0] == (
        "mass silence over: the silent devices are back by 09:21 EST and no DOWN or UP alert was sent for them; "
        "monitor connectivity: unknown.")
    assert set(m.statuses(Kind.DOWN).values()) == {"merged"}
    m.until("09:24:59")
    assert m.sent() == []


def test_the_first_downs_of_a_staggered_silence_wait_for_the_rest(monitors, clock):
    """Each device beats once a minute at its own second; the monitor hears nothing from 09:10 on."""
    m = monitors(clock)
    for second in range(0, 600):
        m.service.tick(clock.advance(1))
        for i, name in enumerate(NAMES):
            if second % 60 == i * 6:
                m.beat(name)
    for _ in range(400):                          # 09:10 to 09:16:40, a step a second: DOWNs 09:14:00-09:14:54
        m.service.tick(clock.advance(1))
        assert not [s for s in m.sent() if s.startswith("DOWN")]
    kinds = [e.kind for e in m.service.store.events(limit=100)]
    assert kinds.count(Kind.DOWN) == 10 and kinds.count(Kind.MASS_SILENCE) == 1
    assert set(m.statuses(Kind.DOWN).values()) == {"held"}
    assert m.statuses(Kind.MASS_SILENCE) == {"monitor:self": "sent"}


def test_a_watch_that_finds_no_mass_silence_sends_the_down_late_by_a_minute_at_most(monitors, clock):
    m = monitors(clock, ("a", "b", "c", "d"))
    m.beat("a", "b", "c", "d")
    m.until("09:01:30")
    m.beat("b", "c", "d")
    for t in ("09:02:30", "09:03:30", "09:04:30"):
        m.until(t)
        m.beat("b")                                # c and d fall quiet (silent for half their max_silence_s)
    m.until("09:05:00")                            # a is DOWN; were c and d to follow, 3 of 4: it waits
    assert m.sent() == []
    m.until("09:05:30")
    m.beat("b", "c", "d")
    m.until("09:05:59")
    assert m.sent() == []
    m.until("09:06:00")
    assert m.sent() == ["DOWN: a"]
    assert m.statuses(Kind.MASS_SILENCE) == {}


def test_a_device_back_within_a_watch_gets_its_down_then_its_up(monitors, clock):
    m = monitors(clock, ("a", "b", "c", "d"))
    m.beat("a", "b", "c", "d")
    m.until("09:01:30")
    m.beat("b", "c", "d")
    m.until("09:04:30", beating=("b",))
    m.until("09:05:00")                            # a is DOWN and waits, as above
    assert m.sent() == []
    m.beat("a")
    assert m.sent() == ["DOWN: a", "UP: a after 5 min"]


def test_a_single_down_among_beating_devices_goes_out_at_once(monitors, clock):
    m = monitors(clock)
    m.beat(*NAMES)
    m.until("09:05:00", beating=NAMES[1:])
    assert m.sent() == ["DOWN: pi0"]


def test_below_the_minimum_of_devices_there_is_no_mass_silence(monitors, clock):
    m = monitors(clock, NAMES[:3])
    m.beat(*NAMES[:3])
    m.until("09:05:00")
    assert sorted(m.sent()) == ["DOWN: pi0", "DOWN: pi1", "DOWN: pi2"]


def test_one_reminder_stands_for_all_held_downs(monitors, clock):
    names = NAMES[:4]
    m = monitors(clock, names)
    m.beat(*names)
    m.until("09:05:00")
    assert m.sent() == ["MASS SILENCE: 4 of 4 devices silent within a minute"]
    m.until("13:05:00")                            # four hours on, nothing heard: one reminder, not four
    [mail] = m.mails()
    assert mail["Subject"] == "REMINDER: pi0 still down (4 h 5 min)"
    assert "4 device(s) silent whose DOWN alerts are held: a mass silence" in mail.get_content()


# -- canaries -----------------------------------------------------------------------------------------


def test_while_the_canaries_say_lost_a_down_is_held_then_released_after_the_grace(monitors, clock, ping, free_port,
                                                                                    caplog):
    closed = f"http://127.0.0.1:{free_port()}/generate_204"
    m = monitors(clock, ("home",), canary_urls=(closed,), canary_every_s=60)
    m.beat("home")
    with caplog.at_level("INFO", logger="phonehome.monitor"):
        assert m.service.selfwatch.probe().ok is False
        assert m.service.selfwatch.probe().ok is False     # said once per change
    lost = [r.getMessage() for r in caplog.records if "connectivity" in r.getMessage()]
    assert len(lost) == 1 and lost[0].startswith("monitor connectivity lost: no canary answered: 127.0.0.1:")
    m.until("09:05:00")
    assert m.sent() == []                                   # held: the monitor may be the one cut off
    assert m.statuses(Kind.DOWN) == {"home": "held"}
    m.service.reload(Config(data_dir=m.config.data_dir, alerts=m.config.alerts,
                            monitor=Monitor(devices=m.config.monitor.devices, canary_urls=(ping.url,))))
    m.until("09:06:00")
    probe = m.service.selfwatch.probe()                     # a real answer from 127.0.0.1
    assert probe.ok and probe.status == 200
    m.until("09:10:59")
    assert m.sent() == []
    m.until("09:11:00")                                     # silent max_silence_s since connectivity came back
    assert m.sent() == ["DOWN: home"]


def test_with_canaries_answering_all_along_the_held_downs_go_out_at_the_next_answer(monitors, clock, ping):
    m = monitors(clock, canary_urls=(ping.url,))
    assert m.service.selfwatch.probe().ok
    m.beat(*NAMES)
    m.until("09:05:00", beating=BEATING)
    assert m.sent() == ["MASS SILENCE: 7 of 10 devices silent within a minute"]
    m.service.selfwatch.probe()                              # a regional problem: the monitor reached the canary
    m.until("09:05:01")
    assert sorted(m.sent()) == sorted([f"DOWN: pi{i}" for i in range(7)] + ["MASS SILENCE OVER after 1 s"])


# -- across a restart -------------------------------------------------------------------------------------


def test_a_monitor_killed_during_a_hold_settles_it_after_its_restart(monitors, clock, caplog):
    names = NAMES[:5]
    m = monitors(clock, names)
    m.beat(*names)
    m.until("09:05:00")
    assert m.sent() == ["MASS SILENCE: 5 of 5 devices silent within a minute"]
    m.service.store.close()                                  # killed: nothing more is written

    again = ManualClock(Now(mono=5.0, wall=at("09:30:00")))  # a new process
    with caplog.at_level("INFO", logger="phonehome.monitor"):
        m.start(again)
    said = [r.getMessage() for r in caplog.records]
    assert ("monitor was not running from 09:05 to 09:30 EST (25 min); it did not stop cleanly (a crash, a kill "
            "or a power cut), last known alive at the start of the gap; startup grace of 300 s applies") in said
    assert any(s.startswith("5 alert(s) held by the self-check when the monitor stopped") for s in said)
    m.until("09:31:00")
    m.beat("pi0", "pi1")                                     # proof; two are back
    m.until("09:35:59", beating=("pi0", "pi1"))
    assert m.sent() == []
    m.until("09:36:00")
    assert sorted(m.sent()) == ["DOWN: pi2", "DOWN: pi3", "DOWN: pi4", "MASS SILENCE OVER after 31 min"]
    statuses = m.statuses(Kind.DOWN)
    assert [statuses[n] for n in names] == ["merged", "merged", "sent", "sent", "sent"]
    assert m.service.store.self_holds() == []


def test_a_held_down_is_not_mistaken_for_a_site_window_after_a_restart(monitors, clock):
    m = monitors(clock, ("home",), canary_urls=("http://127.0.0.1:9/",))
    m.beat("home")
    m.service.selfwatch.canary_result(_lost(), clock.now())
    m.until("09:05:00")
    m.service.store.close()
    m.start(ManualClock(Now(mono=5.0, wall=at("09:06:00"))))
    m.until("09:07:00")
    assert m.sent() == []                                    # a site window's hold would have gone out at once
    assert m.statuses(Kind.DOWN) == {"home": "held"}


def _lost():
    from appliance.monitor.canaries import Probe

    return Probe(False, problems=("127.0.0.1:9: connection refused",))


# -- sites ---------------------------------------------------------------------------------------------------


def test_site_alerts_are_held_too_and_merge_their_devices_downs(monitors, clock):
    sites = {f"site_{n}": "barn" for n in NAMES[:4]}
    m = monitors(clock, NAMES[:6], **sites)
    m.beat(*NAMES[:6])
    m.until("09:05:00")
    assert m.sent() == ["MASS SILENCE: 6 of 6 devices silent within a minute"]
    m.until("09:06:00")
    m.beat("pi5")                                            # proof; pi4 (no site) and the barn stay silent
    m.until("09:11:00", beating=("pi5",))
    assert sorted(m.sent()) == ["DOWN: pi4", "DOWN: site barn", "MASS SILENCE OVER after 6 min"]

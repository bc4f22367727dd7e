"""The relay's watchdog on a real inside monitor (MonitorService on SQLite, fed through receive()) and a real
gpiozero OutputDevice over a MockFactory, driven by calling tick() at times the test sets. Alerts go to a real
outbox directory; the bounded retry is shown with a channel that fails on cue."""

import email
import email.policy
import io
import json
import logging
import os

import pytest
from gpiozero.pins.mock import MockFactory

from appliance.agent.watchdog import RETRY_GPIO_S, STATE_FILE, AlertOutbox, PeerWatchdog
from appliance.alerts.channels import OutboxChannel
from appliance.alerts.messages import Message
from appliance.config.schema import Alerts, Config, Device, Monitor, MonitoredDevice, Peer
from appliance.errors import DeliveryError
from appliance.monitor.service import MonitorService
from hardware.errors import HardwareUnavailable
from hardware.relay import PeerRelay

PEER, TOKEN, PIN = "garage-pi", "garage-token-1234", 24


@pytest.fixture
def factory():
    factory = MockFactory()
    yield factory
    factory.close()


@pytest.fixture
def config(tmp_path):
    return Config(data_dir=str(tmp_path / "data"), device=Device(name="house-pi"),
                  monitor=Monitor(devices=(MonitoredDevice(name=PEER, token=TOKEN, max_silence_s=300.0,
                                                           reminder_every_s=0.0),)),
                  peer=Peer(device=PEER, relay_pin=PIN, power_cycle_after_s=600.0, power_cycle_off_s=10.0,
                            power_cycle_min_gap_s=3600.0),
                  alerts=Alerts(outbox_dir=str(tmp_path / "outbox")))


class Rig:
    """A real MonitorService and a PeerWatchdog on the same hand-moved clock; nothing runs by itself."""

    def __init__(self, config, clock, factory, **options):
        self.config, self.clock, self.factory = config, clock, factory
        self.service = MonitorService(config, clock=clock, channels=[])
        self.notified = []
        self.watchdogs = []
        self.watchdog = self.new_watchdog(**options)

    def new_watchdog(self, **options):
        options = {"pin_factory": self.factory, **options}
        watchdog = PeerWatchdog(self.config, service=lambda: self.service, clock=self.clock,
                                notify=lambda: self.notified.append(self.clock.now().mono), **options)
        self.watchdogs.append(watchdog)
        return watchdog

    def beat(self):
        body = {"device": PEER, "sent_at": self.clock.now().wall, "seq": 1, "boot_id": "b", "uptime_s": 1.0}
        answer = self.service.receive(json.dumps(body).encode(), "application/json", f"Bearer {TOKEN}")
        assert answer.status == 200, answer.body

    def at(self, seconds_later):
        """Move the clock on, let the monitor fire its deadlines, tick the watchdog; return the watchdog's wait."""
        now = self.clock.advance(seconds_later)
        self.service.tick(now)
        return self.watchdog.tick(now)

    def pin(self):
        return [s.state for s in self.factory.pin(PIN).states]

    def alerts(self):
        """The watchdog's alerts sent so far (the outbox's .eml files), as (subject, first line of the body)."""
        self.watchdog.alerts.tick(self.clock.now())
        out = []
        directory = self.config.alerts.outbox_dir
        for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else ():
            with open(os.path.join(directory, name), "rb") as f:
                mail = email.message_from_binary_file(f, policy=email.policy.default)
            out.append((mail["Subject"], mail.get_content().splitlines()[0]))
        return out

    def close(self):
        for watchdog in self.watchdogs:
            watchdog.stop()
        self.service.stop()


@pytest.fixture
def rig(config, clock, factory):
    made = []

    def make(**options):
        made.append(Rig(config, clock, factory, **options))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_a_silent_peer_is_power_cycled_once_and_its_comeback_told(rig):
    r = rig()
    r.beat()
    r.at(0)
    assert r.pin() == [False, True]            # the peer has power from the start (gpiozero starts pins low)
    r.at(300)                                  # the monitor declares it down
    assert r.service.device(PEER)["state"] == "down" and r.pin()[-1] is True
    assert r.at(299) == pytest.approx(1.0)     # one more second of silence to go
    assert r.at(1) == pytest.approx(10.0)      # power off; on again in off_s
    assert r.pin()[-1] is False
    r.at(10)
    assert r.pin()[-2:] == [False, True]
    (cycle,) = r.watchdog.cycles()
    assert cycle.at == r.clock.now().wall - 10 and cycle.came_back_at is None
    assert r.alerts() == [("POWER CYCLE: garage-pi", "garage-pi silent for 10 min: power-cycled it (off 10 s).")]
    assert len(r.notified) == 1                # the heartbeat tells the cloud at once
    r.clock.advance(110)
    r.beat()
    r.at(0)
    assert r.watchdog.cycles()[0].came_back_at == r.clock.now().wall
    assert r.alerts()[-1] == ("BACK AFTER POWER CYCLE: garage-pi",
                              "garage-pi came back 2 min after the power cycle.")
    assert len(r.notified) == 2
    with open(f"{r.config.data_dir}/{STATE_FILE}") as f:
        assert json.load(f) == {"device": PEER, "cycles": [c.as_json() for c in r.watchdog.cycles()]}


def test_a_peer_that_stays_silent_is_told_and_not_cycled_again_within_the_gap(rig):
    r = rig()
    r.beat()
    r.at(300)
    r.at(300)
    r.at(10)
    r.at(600)                                  # after_s since power-on
    assert r.alerts()[-1] == ("NOT BACK AFTER POWER CYCLE: garage-pi",
                              "garage-pi did not come back within 10 min after the power cycle; the next is not "
                              "before 1 h 0 min after it.")
    r.at(1800)
    assert len(r.watchdog.cycles()) == 1
    r.at(1190)                                 # an hour after the first power-off
    assert len(r.watchdog.cycles()) == 2


def test_the_gap_holds_across_a_restart_of_the_watchdog(rig):
    r = rig()
    r.beat()
    r.at(300)
    r.at(300)
    r.at(10)
    r.watchdog.stop()
    r.watchdog = r.new_watchdog()              # the agent restarted; the record is read back
    assert len(r.watchdog.cycles()) == 1
    r.at(0)
    r.at(1200)                                 # silent for long, but within the gap
    assert len(r.watchdog.cycles()) == 1
    r.at(2400)
    assert len(r.watchdog.cycles()) == 2


def test_stopping_in_the_middle_of_a_power_cycle_gives_the_power_back(rig):
    r = rig()
    r.beat()
    r.at(300)
    r.at(300)
    assert r.pin()[-1] is False
    r.watchdog.stop()
    assert r.pin()[-1] is True
    assert r.watchdog.cycler.phase == "watching"


def test_no_gpio_is_said_once_and_tried_again(rig, caplog):
    opened = []

    def no_gpio_at_first(pin, **options):
        if len(opened) < 3:
            opened.append(None)
            raise HardwareUnavailable("GPIO is not available here (not a Raspberry Pi, …)", pins=(pin,))
        opened.append(PeerRelay(pin, **options))
        return opened[-1]

    r = rig(open_relay=no_gpio_at_first)
    r.beat()
    with caplog.at_level(logging.INFO, logger="phonehome.peer"):
        r.at(0)
        r.at(300)
        assert r.at(300) == RETRY_GPIO_S       # a power cycle is due, but there is no relay until the retry
        assert r.watchdog.cycles() == () and len(opened) == 3
        r.at(RETRY_GPIO_S / 2)
        assert len(opened) == 3
        r.at(RETRY_GPIO_S / 2)
    assert len(opened) == 4 and len(r.watchdog.cycles()) == 1 and r.pin()[-1] is False
    gpio = [x.getMessage() for x in caplog.records if "GPIO" in x.getMessage()]
    assert len(gpio) == 2 and "goes on without power cycles" in gpio[0] and "works again" in gpio[1]


def test_paused_alerts_are_not_sent_but_the_cycle_still_happens(rig):
    r = rig()
    r.beat()
    r.service.pause(PEER)
    r.at(300)
    r.at(300)
    assert len(r.watchdog.cycles()) == 1 and r.alerts() == []


def test_a_peer_removed_from_the_monitor_is_left_alone(rig, config):
    r = rig()
    r.service.reload(Config(data_dir=config.data_dir, monitor=Monitor(devices=())))
    assert r.at(10_000) == 60.0 and r.watchdog.cycles() == ()


# --- the alerts' bounded retry --------------------------------------------------------------------------

class Flaky:
    """A channel that fails ``failures`` times (retryable or not), then accepts."""

    name = label = "flaky"

    def __init__(self, failures, *, retryable=True):
        self.failures, self.retryable, self.sent, self.tries = failures, retryable, [], 0

    def send(self, message):
        self.tries += 1
        if self.tries <= self.failures:
            raise DeliveryError("server says no", retryable=self.retryable)
        self.sent.append(message)


MESSAGE = Message(subject="POWER CYCLE: garage-pi", body="garage-pi silent for 10 min\n", device=PEER,
                  kind="power-cycle", at=1.0)


def test_an_alert_is_retried_with_back_off_and_delivered(clock, tmp_path):
    flaky, outbox = Flaky(2), OutboxChannel(str(tmp_path / "outbox"), stream=io.StringIO())
    alerts = AlertOutbox([flaky, outbox], clock=clock, retry_first_s=10.0, rand=lambda: 1.0)
    alerts.put(MESSAGE)
    assert alerts.tick(clock.now()) == 10.0      # the outbox got it; the flaky channel waits for its retry
    assert len(list((tmp_path / "outbox").iterdir())) == 1
    assert alerts.tick(clock.advance(10)) == 20.0
    assert alerts.tick(clock.advance(20)) is None
    assert flaky.sent == [MESSAGE]


def test_an_alert_is_given_up_after_a_bounded_number_of_tries(clock, caplog):
    flaky = Flaky(100)
    alerts = AlertOutbox([flaky], clock=clock, retry_first_s=1.0, retry_max_s=1.0, tries=4, rand=lambda: 1.0)
    alerts.put(MESSAGE)
    delay = alerts.tick(clock.now())
    while delay is not None:
        delay = alerts.tick(clock.advance(delay))
    assert flaky.tries == 4 and flaky.sent == []
    assert any("given up (4 tries)" in x.getMessage() for x in caplog.records)


def test_an_alert_that_retrying_cannot_help_is_given_up_at_once(clock):
    flaky = Flaky(1, retryable=False)
    alerts = AlertOutbox([flaky], clock=clock)
    alerts.put(MESSAGE)
    assert alerts.tick(clock.now()) is None and flaky.tries == 1

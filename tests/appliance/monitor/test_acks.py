"""Acknowledged outages: the pure bookkeeping and the link's token with explicit times, then a MonitorService on a
real SQLite file whose alerts go to a real outbox channel, on a hand-moved clock."""

import re
from dataclasses import replace

import pytest

from appliance.clock import Now
from appliance.errors import AckError
from appliance.monitor.acks import LINK_VALID_S, Ack, Acks, AckLink, link_key, make_token, read_token

from .conftest import T0, ManualClock
from .outbox_monitor import Monitored, device

DAY_S = 86400.0
KEY = link_key(b"k" * 32)

# -- Acks, pure ---------------------------------------------------------------------


def test_an_ack_ends_on_the_monotonic_clock():
    acks = Acks(now=T0)
    acks.acknowledge("home", Ack(7, T0.wall, T0.wall + DAY_S, "link"), T0)
    assert acks.get("home", Now(T0.mono + 60, T0.wall + 5 * DAY_S)).outage_id == 7   # a wall-clock step
    assert acks.get("home", T0.later(DAY_S - 1)) is not None
    assert acks.get("home", T0.later(DAY_S)) is None
    assert acks.active(T0) == {}


def test_stored_acks_are_restored_against_the_wall_clock_and_ended_ones_dropped():
    stored = {"home": Ack(7, T0.wall, T0.wall + DAY_S, "link"), "cabin": Ack(8, T0.wall, T0.wall + 60, "dashboard")}
    restarted = Now(mono=5.0, wall=T0.wall + 3600)
    acks = Acks(stored, now=restarted)
    assert set(acks.active(restarted)) == {"home"}
    assert acks.get("home", Now(5.0 + DAY_S - 3600, 0)) is None
    assert acks.drop("home") is False                          # ended already (get dropped it)


# -- the link's token -------------------------------------------------------------------


def test_a_token_names_its_device_outage_and_expiry():
    token = make_token(KEY, "garage-pi", 42, T0.wall + LINK_VALID_S)
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token)    # safe in a URL path as it is
    assert read_token(KEY, token, now_wall=T0.wall) == AckLink("garage-pi", 42, float(int(T0.wall + LINK_VALID_S)))


def _tampered():
    good = make_token(KEY, "home", 42, T0.wall + 3600)
    payload, mac = good.split(".")
    other_payload = make_token(KEY, "home", 43, T0.wall + 3600).split(".")[0]
    return [
        ("another outage, same MAC", f"{other_payload}.{mac}"),
        ("another key", make_token(link_key(b"x" * 32), "home", 42, T0.wall + 3600)),
        ("cut short", good[:-3]),
        ("no MAC", payload),
        ("two dots", good + ".x"),
        ("empty", ""),
        ("not base64", "!!!.???"),
        ("not ASCII", "h\u00e9.m\u00e4c"),
        ("too long", "a" * 300 + "." + mac),
    ]


@pytest.mark.parametrize("why, token", _tampered())
def test_a_changed_token_is_refused_as_forged(why, token):
    with pytest.raises(AckError, match="not valid: it was changed or cut short") as caught:
        read_token(KEY, token, now_wall=T0.wall)
    assert caught.value.reason == "forged"


def test_an_expired_token_is_refused_saying_so():
    token = make_token(KEY, "home", 42, T0.wall + 3600)
    with pytest.raises(AckError, match="expired") as caught:
        read_token(KEY, token, now_wall=T0.wall + 3600)
    assert caught.value.reason == "expired"


# -- through the service ------------------------------------------------------------------------


@pytest.fixture
def monitored(tmp_path, clock):
    made = []

    def make(**monitor):
        m = Monitored(tmp_path, clock, [device(reminder_every_s=3600)], ack_duration_s=4 * 3600, **monitor)
        made.append(m)
        return m

    yield make
    for m in made:
        m.service.stop()


def down(m):
    m.beat()
    m.tick(0)
    m.tick(61)
    assert m.sent() == ["DOWN: home"]


def test_an_ack_stops_reminders_until_it_ends_then_they_resume(monitored):
    m = monitored()
    down(m)
    ack = m.service.acknowledge("home", by="dashboard")
    assert ack.until == m.clock.now().wall + 4 * 3600 and ack.by == "dashboard"
    assert ack.outage_id == m.service.store.outages(device="home")[0]["id"]
    info = m.service.device("home")
    assert info["acknowledged"] and info["acknowledged_until"] == ack.until and info["acknowledged_by"] == "dashboard"
    for _ in range(3):                                         # 3 reminders within the 4 h: recorded, not sent
        m.tick(3600)
        assert m.sent() == []
    assert [e.kind.value for e in m.service.store.events(device="home", limit=3)] == ["reminder"] * 3
    m.tick(3600)                                               # the 4th comes as the ack ends: sent
    assert [s.split(" (")[0] for s in m.sent()] == ["REMINDER: home still down"]
    assert m.service.device("home")["acknowledged"] is False


def test_the_up_alert_is_sent_while_acknowledged_and_the_ack_ends_with_its_outage(monitored):
    m = monitored()
    down(m)
    m.service.acknowledge("home")
    m.tick(600)
    m.beat()
    m.tick(0)
    assert [s.split(" after")[0] for s in m.sent()] == ["UP: home"]
    assert m.service.device("home")["acknowledged"] is False
    m.tick(61)                                                 # a new outage: reminded again
    m.tick(3600)
    assert [s.split(" (")[0] for s in m.sent()] == ["DOWN: home", "REMINDER: home still down"]


def test_acknowledging_a_device_that_is_up_or_an_outage_that_ended_is_refused(monitored):
    m = monitored()
    m.beat()
    m.tick(0)
    with pytest.raises(AckError, match="home is not down, so there is no outage to acknowledge"):
        m.service.acknowledge("home")
    m.tick(61)
    first = m.service.store.current_outage("home")
    m.beat()
    m.tick(0)
    with pytest.raises(AckError, match="that outage of home is over") as caught:
        m.service.acknowledge("home", outage_id=first, by="link")
    assert caught.value.reason == "over"
    m.tick(61)                                                 # down again: the old link still names the old one
    with pytest.raises(AckError, match="down again, in a newer outage"):
        m.service.acknowledge("home", outage_id=first, by="link")
    with pytest.raises(KeyError):
        m.service.acknowledge("garage")
    with pytest.raises(ValueError):
        m.service.acknowledge("home", for_s=0)


def test_an_ack_survives_a_restart(monitored, clock):
    m = monitored()
    down(m)
    m.service.acknowledge("home", by="link")
    m.service.stop()
    again = ManualClock(Now(mono=5.0, wall=clock.now().wall + 600))
    m.start(again)
    assert m.service.device("home")["acknowledged_by"] == "link"
    m.tick(3600)
    assert m.sent() == []


def test_with_public_url_down_and_reminder_alerts_carry_a_link_to_their_outage(monitored):
    m = monitored(public_url="https://monitor.example.com/")
    m.beat()
    m.tick(0)
    m.tick(61)
    m.tick(3600)
    outage_id = m.service.store.current_outage("home")
    for message in m.messages():                               # the DOWN and a REMINDER
        body = message.get_content().replace("\r\n", "\n")
        assert len(body.splitlines()[0]) <= 160 and "/ack/" not in body.splitlines()[0]
        link = re.search(r"^Acknowledge \(no more reminders about this outage for a while\): "
                         r"https://monitor\.example\.com/ack/(\S+)$", body, re.M)
        assert link, body
        read = m.service.read_ack_link(link.group(1))
        assert (read.device, read.outage_id) == ("home", outage_id)
        assert read.expires_at == pytest.approx(m.clock.now().wall + LINK_VALID_S, abs=3700)


def test_without_public_url_there_is_no_link_and_up_alerts_never_have_one(monitored):
    m = monitored()
    down(m)
    m.beat()
    m.tick(0)
    assert all("/ack/" not in msg.get_content() for msg in m.messages())
    m.service.reload(replace(m.config, monitor=replace(m.config.monitor, public_url="https://m.example.com")))
    m.tick(61)                                                 # DOWN: with a link now
    m.beat()                                                   # UP: without
    m.tick(0)
    assert ["/ack/" in msg.get_content() for msg in m.messages()] == [True, False]

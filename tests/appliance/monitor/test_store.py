"""The monitor's SQLite store, on real files: what is written survives a reopen."""

import dataclasses
import sqlite3

import pytest

from appliance.monitor.events import Event, Kind, State
from appliance.monitor.store import Settled, Store

T = 1_700_000_000.0


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "data" / "monitor.sqlite3")


def down(at=T + 300):
    return Event("home", Kind.DOWN, State.UP, State.DOWN, at, "no heartbeat for 5 min", last_heard_at=T,
                 outage_started_at=T, outage_s=300.0)


def up(at=T + 3000):
    return Event("home", Kind.UP, State.DOWN, State.UP, at, "back", last_heard_at=at, outage_started_at=T,
                 outage_s=at - T)


def test_store_uses_wal(db_path):
    Store(db_path).close()
    assert sqlite3.connect(db_path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_event_outage_state_and_deliveries_written_together_and_survive_reopen(db_path):
    s = Store(db_path)
    first = Event("home", Kind.FIRST_SEEN, State.NEW, State.UP, T, "first", last_heard_at=T)
    stored = s.record([first, down()], ["email", "outbox"])
    assert [e.id for e in stored] == [1, 2]
    s.close()
    s = Store(db_path)
    r = s.restored()["home"]
    assert r.state is State.DOWN and r.outage_started_at == T and r.last_alert_at == T + 300
    assert [d["channel"] for d in s.deliveries()] == ["email", "outbox"]  # none for first-seen
    assert s.outages()[0]["ended_at"] is None
    s.record([up()], ["email"])
    o = s.outages()[0]
    assert o["ended_at"] == T + 3000 and o["duration_s"] == 3000
    assert s.restored()["home"].state is State.UP and s.restored()["home"].outage_started_at is None
    assert [e.kind for e in s.events()] == [Kind.UP, Kind.DOWN, Kind.FIRST_SEEN]
    assert s.outage_counts() == {"home": 1}


def test_deliveries_come_in_order_with_their_retry_times(db_path):
    s = Store(db_path)
    s.record([down()], ["email"])
    s.record([up()], ["email"])
    pending = s.pending_deliveries("email")
    assert [d.event_id for d in pending] == [1, 2]
    s.retry_later(pending[0].id, T + 5000, "connection refused")
    first = s.pending_deliveries("email")[0]
    assert (first.attempts, first.next_try_at) == (1, T + 5000)
    s.delivered(pending[0].id, T + 5000)
    s.given_up(pending[1].id, T + 5000, "550 no such user")
    assert [(d["status"], d["attempts"]) for d in s.deliveries()] == [("sent", 2), ("failed", 1)]
    assert s.pending_deliveries("email") == []


def test_deliveries_of_removed_channels_are_given_up(db_path):
    s = Store(db_path)
    s.record([down()], ["email", "apprise:1234abcd"])
    assert s.abandon_deliveries(keep=["email"], at=T, error="channel removed") == 1
    assert [(d["channel"], d["status"]) for d in s.deliveries()] == [("email", "pending"),
                                                                      ("apprise:1234abcd", "failed")]
    assert s.abandon_deliveries(keep=[], at=T, error="channel removed") == 1
    assert s.pending_deliveries("email") == []


def test_a_failed_begin_releases_the_lock(db_path):
    s = Store(db_path)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database
    s._db.execute("PRAGMA busy_timeout=50")
    with pytest.raises(sqlite3.OperationalError):
        s.record([down()], ["email"])
    blocker.execute("ROLLBACK")
    assert s.record([down()], ["email"])[0].id == 1  # neither the lock nor a transaction was left behind


def test_heartbeats_written_behind_are_read_back(db_path):
    s = Store(db_path)
    s.save_heartbeats([("home", T, {"seq": 7, "boot_id": "b"}), ("cabin", T + 1, {"seq": 1})])
    s.close()
    s = Store(db_path)
    assert s.last_beats() == {"home": {"seq": 7, "boot_id": "b"}, "cabin": {"seq": 1}}
    assert s.restored()["home"].last_heard_at == T


def test_a_failed_transaction_leaves_nothing_behind(db_path):
    s = Store(db_path)
    bad = Event("home", Kind.DOWN, State.UP, State.DOWN, T, "x", outage_started_at=None)  # started_at NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        s.record([down(), bad], ["email"])
    assert s.events() == [] and s.deliveries() == [] and s.outages() == []


def test_a_muted_devices_events_are_stored_without_deliveries(db_path):
    s = Store(db_path)
    cabin = Event("cabin", Kind.DOWN, State.UP, State.DOWN, T + 300, "silent", last_heard_at=T,
                  outage_started_at=T, outage_s=300.0)
    stored = s.record([down(), cabin], ["email", "outbox"], muted={"home"})
    assert [e.device for e in stored] == ["home", "cabin"]
    assert {d["event_id"] for d in s.deliveries()} == {stored[1].id}
    assert s.outage_counts() == {"home": 1, "cabin": 1}
    assert s.restored()["home"].state is State.DOWN


def test_pauses_are_saved_replaced_deleted_and_survive_reopen(db_path):
    s = Store(db_path)
    s.save_pause("home", paused_at=T, until=T + 3600)
    s.save_pause("cabin", paused_at=T, until=None)
    s.save_pause("home", paused_at=T + 10, until=T + 86410)
    s.close()
    s = Store(db_path)
    assert s.pauses() == {"home": (T + 10, T + 86410), "cabin": (T, None)}
    s.delete_pause("cabin")
    s.delete_pause("garage")                                  # not paused: nothing to do
    assert s.pauses() == {"home": (T + 10, T + 86410)}


def test_outages_page_newest_first(db_path):
    s = Store(db_path)
    for i in range(5):
        s.record([down(at=T + 1000 * i + 300), up(at=T + 1000 * i + 600)], [])
    assert [o["detected_at"] for o in s.outages(device="home", limit=2, offset=2)] == [T + 2300, T + 1300]
    assert s.outages(device="home", limit=2, offset=10) == []


# -- causes, held alerts and sites ------------------------------------------------------

# The tables as the first release made them, before causes and sites.
OLD_SCHEMA = """
CREATE TABLE devices (name TEXT PRIMARY KEY, state TEXT NOT NULL, last_heard_at REAL, outage_id INTEGER,
                      last_alert_at REAL, last_beat TEXT);
CREATE TABLE events (id INTEGER PRIMARY KEY, device TEXT NOT NULL, kind TEXT NOT NULL, old TEXT NOT NULL,
                     new TEXT NOT NULL, at REAL NOT NULL, reason TEXT NOT NULL, last_heard_at REAL,
                     outage_started_at REAL, outage_s REAL);
CREATE INDEX events_device ON events(device, id);
CREATE TABLE outages (id INTEGER PRIMARY KEY, device TEXT NOT NULL, started_at REAL NOT NULL,
                      detected_at REAL NOT NULL, ended_at REAL, duration_s REAL);
CREATE INDEX outages_device ON outages(device, id);
CREATE TABLE deliveries (id INTEGER PRIMARY KEY, event_id INTEGER NOT NULL REFERENCES events(id),
                         channel TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
                         attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, next_try_at REAL NOT NULL,
                         done_at REAL, last_error TEXT);
CREATE INDEX deliveries_pending ON deliveries(channel, status, id);
CREATE TABLE pauses (device TEXT PRIMARY KEY, paused_at REAL NOT NULL, until REAL);
INSERT INTO events VALUES (1, 'home', 'down', 'up', 'down', 1700000300, 'no heartbeat for 5 min', 1700000000,
                           1700000000, 300);
INSERT INTO outages VALUES (1, 'home', 1700000000, 1700000300, NULL, NULL);
INSERT INTO devices VALUES ('home', 'down', 1700000000, 1, 1700000300, NULL);
INSERT INTO deliveries (event_id, channel, created_at, next_try_at) VALUES (1, 'email', 1700000300, 1700000300);
"""


def test_a_database_from_before_causes_opens_and_keeps_its_history(db_path):
    import os

    os.makedirs(os.path.dirname(db_path))
    old = sqlite3.connect(db_path)
    old.executescript(OLD_SCHEMA)
    old.close()
    s = Store(db_path)
    [event] = s.events()
    assert (event.kind, event.reason, event.cause, event.detail, event.site) == (Kind.DOWN, "no heartbeat for 5 min",
                                                                                  None, None, None)
    assert s.outages()[0]["cause"] is None and s.outages()[0]["cause_text"] is None
    assert s.open_causes() == {} and s.held_downs() == [] and s.site_outages() == {}
    assert [d.event_id for d in s.pending_deliveries("email")] == [1]
    s.record([dataclasses.replace(up(), cause="power-cut", reason="power cut, 47 min")], ["email"])
    assert s.outages()[0]["cause"] == "power-cut" and s.outages()[0]["cause_text"] == "power cut, 47 min"
    s.close()
    Store(db_path).close()  # opening it again adds nothing twice


def test_the_cause_found_going_down_is_kept_until_the_one_found_coming_back(db_path):
    s = Store(db_path)
    s.record([dataclasses.replace(down(), cause="device-failure", reason="device failure \u2014 home is up",
                                  detail="evidence")], [])
    assert s.open_causes() == {"home": "device-failure"}
    assert (s.events()[0].cause, s.events()[0].detail) == ("device-failure", "evidence")
    assert s.outages()[0]["cause_text"] == "device failure \u2014 home is up"
    s.record([up()], [])                                      # no cause on the way up: the one from going down stays
    assert s.outages()[0]["cause"] == "device-failure" and s.open_causes() == {}


def test_held_alerts_wait_until_settled_and_then_go_or_merge(db_path):
    s = Store(db_path)
    cabin = Event("cabin", Kind.DOWN, State.UP, State.DOWN, T + 310, "no heartbeat for 5 min", last_heard_at=T + 10,
                  outage_started_at=T + 10, outage_s=300.0, site="lake")
    home, cabin = s.record([dataclasses.replace(down(), site="lake", held=True), dataclasses.replace(cabin, held=True)],
                           ["email", "outbox"])
    assert s.pending_deliveries("email") == []                # held: nobody is told yet
    assert s.held_downs() == [(home.id, "home", T + 300), (cabin.id, "cabin", T + 310)]
    s.close()
    s = Store(db_path)                                        # a restart keeps them held
    site = Event("lake", Kind.SITE_DOWN, State.UP, State.DOWN, T + 320, "all 2 devices silent",
                 outage_started_at=T, cause="site-outage", site="lake")
    [site] = s.record([site], ["email"], settle=[Settled(home.id, True, "device-failure", "device failure", "why"),
                                        Settled(cabin.id, False, "site-outage", "site outage")])
    assert s.held_downs() == []
    assert [(d["event_id"], d["channel"], d["status"]) for d in s.deliveries()] == [
        (home.id, "email", "pending"), (home.id, "outbox", "pending"), (cabin.id, "email", "merged"),
        (cabin.id, "outbox", "merged"), (site.id, "email", "pending")]
    assert s.event(home.id).cause == "device-failure" and s.event(home.id).detail == "why"
    assert s.event(cabin.id).reason == "site outage"
    assert {o["device"]: o["cause"] for o in s.outages()} == {"home": "device-failure", "cabin": "site-outage"}
    assert s.site_outages() == {"lake": T}
    assert "lake" not in s.restored()                         # a site is not a device
    s.record([dataclasses.replace(up(), site="lake")], [])    # a device of the site is back
    assert s.site_outages() == {}


def test_a_settle_without_a_cause_keeps_the_events_reason(db_path):
    s = Store(db_path)
    [home] = s.record([dataclasses.replace(down(), held=True)], ["email"])
    s.record([], ["email"], settle=[Settled(home.id, True, None, None)])
    assert s.event(home.id).reason == "no heartbeat for 5 min" and s.event(home.id).cause is None
    assert [d["status"] for d in s.deliveries()] == ["pending"]

"""Alert delivery with a real SQLite store and real channels: an aiosmtpd sink, a silent TCP port, an outbox.

The dispatcher's step, ``tick(channel, now)``, is called with explicit times;
only the last test starts its threads.
"""

import io
import logging
import os
import threading
import time

import pytest

from appliance.alerts.channels import OutboxChannel
from appliance.alerts.smtp import EmailChannel
from appliance.clock import Now, SystemClock
from appliance.config.schema import Email
from appliance.backoff import backoff_s
from appliance.monitor.dispatch import Dispatcher
from appliance.monitor.events import Event, Kind, State
from appliance.monitor.store import Store

T = 1_700_000_000.0
ME = "me@example.com"


def at(seconds):
    """The reading ``seconds`` after the alerts were queued (wall T)."""
    return Now(mono=1000.0 + seconds, wall=T + seconds)


def down(when=T):
    return Event("home", Kind.DOWN, State.UP, State.DOWN, when, "no heartbeat for 5 min", last_heard_at=when - 300,
                 outage_started_at=when - 300, outage_s=300.0)


def up(when=T):
    return Event("home", Kind.UP, State.DOWN, State.UP, when, "heartbeat received again", last_heard_at=when,
                 outage_started_at=when - 600, outage_s=600.0)


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "monitor.sqlite3"))
    yield s
    s.close()


def email(port, **overrides):
    options = dict(smtp_host="127.0.0.1", smtp_port=port, sender="phonehome@example.com", to=(ME,),
                   security="none", timeout_s=5.0)
    options.update(overrides)
    return EmailChannel(Email(**options))


def dispatcher(store, *channels, give_up_after_s=3600.0, rand=lambda: 0.5):
    return Dispatcher(store, channels, clock=SystemClock(), give_up_after_s=give_up_after_s, retry_first_s=10.0,
                      retry_max_s=600.0, rand=rand)


def rows(store):
    return {(d["event_id"], d["channel"]): d for d in store.deliveries()}


def subjects(sink):
    return [m["Subject"].split(":")[0] for m in sink.messages]


# -- back-off ----------------------------------------------------------------


@pytest.mark.parametrize("attempts, rand, seconds", [
    (1, 0.0, 5.0),      # half the step at the lowest jitter
    (1, 1.0, 10.0),     # the whole step at the highest
    (2, 0.0, 10.0),
    (3, 1.0, 40.0),     # doubling
    (7, 1.0, 600.0),    # 640 capped at retry_max_s
    (30, 0.0, 300.0),   # still capped, and jittered below the cap
    (5000, 1.0, 600.0),  # no overflow however long a channel keeps failing
])
def test_retry_delay_doubles_is_capped_and_jittered_between_half_and_whole(attempts, rand, seconds):
    assert backoff_s(attempts, first_s=10.0, max_s=600.0, rand=lambda: rand) == seconds


def test_a_temporary_refusal_is_retried_with_back_off_and_sent_once_when_the_server_accepts(store, smtp_server):
    sink, port = smtp_server(refuse={ME: "451 try later"})
    jitter = iter([0.0, 0.999, 0.5])
    d = dispatcher(store, email(port), rand=lambda: next(jitter))
    [event] = store.record([down()], ["email"])
    key = (event.id, "email")

    assert d.tick("email", at(0)) == pytest.approx(5.0)       # first retry: 10 s at the lowest jitter
    row = rows(store)[key]
    assert (row["status"], row["attempts"], row["next_try_at"]) == ("pending", 1, T + 5.0)
    assert "451 try later" in row["last_error"]

    assert d.tick("email", at(4.9)) == pytest.approx(0.1)     # not due: not tried
    assert rows(store)[key]["attempts"] == 1

    d.tick("email", at(5))                                    # second retry: 20 s at the highest jitter
    row = rows(store)[key]
    assert row["attempts"] == 2 and row["next_try_at"] == pytest.approx(T + 5 + 19.99)

    sink.refuse = {}
    assert d.tick("email", at(24.99)) is None
    row = rows(store)[key]
    assert (row["status"], row["attempts"], row["done_at"], row["last_error"]) == ("sent", 3, T + 24.99, None)
    assert d.tick("email", at(1000)) is None
    assert subjects(sink) == ["DOWN"]                         # exactly once


def test_a_permanent_refusal_is_given_up_at_once_quoting_the_server(store, smtp_server, caplog):
    sink, port = smtp_server(refuse={ME: "550 no such user here"})
    d = dispatcher(store, email(port))
    [event] = store.record([down()], ["email"])
    with caplog.at_level(logging.ERROR, logger="phonehome.alerts"):
        assert d.tick("email", at(0)) is None
    row = rows(store)[(event.id, "email")]
    assert (row["status"], row["attempts"], row["done_at"]) == ("failed", 1, T)
    assert "550 no such user here" in row["last_error"]
    assert [r.getMessage() for r in caplog.records if "given up (retrying cannot help)" in r.getMessage()]
    assert sink.messages == []


def test_a_server_that_never_answers_costs_one_timeout_and_the_alert_waits_for_a_retry(store, silent_port):
    d = dispatcher(store, email(silent_port, timeout_s=0.3))
    [event] = store.record([down()], ["email"])
    started = time.monotonic()
    assert d.tick("email", at(0)) == pytest.approx(7.5)      # retried: 10 s at the middle jitter
    assert time.monotonic() - started < 1.5
    row = rows(store)[(event.id, "email")]
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert "timeout_s = 0.3 s" in row["last_error"]
    assert [(dl.event_id, dl.next_try_at) for dl in store.pending_deliveries("email")] == [(event.id, T + 7.5)]


def test_after_give_up_after_s_an_alert_is_failed_and_that_is_logged_once(store, smtp_server, caplog):
    _, port = smtp_server(refuse={ME: "451 try later"})
    d = dispatcher(store, email(port), give_up_after_s=60, rand=lambda: 0.999)
    [event] = store.record([down()], ["email"])
    with caplog.at_level(logging.ERROR, logger="phonehome.alerts"):
        for seconds in (0, 10, 30):                           # retries due at about +10, +30, +70
            d.tick("email", at(seconds))
        assert rows(store)[(event.id, "email")]["status"] == "pending"
        assert d.tick("email", at(70)) is None
        for seconds in (71, 500, 5000):
            assert d.tick("email", at(seconds)) is None
    row = rows(store)[(event.id, "email")]
    assert (row["status"], row["attempts"]) == ("failed", 4)
    assert "451 try later" in row["last_error"]
    given_up = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(given_up) == 1, given_up
    assert "undelivered for 1 min" in given_up[0] and "DOWN home" in given_up[0]


# -- channels are independent --------------------------------------------------


def test_a_down_waiting_for_a_retry_holds_back_its_up_but_never_another_channel(tmp_path, store, smtp_server):
    sink, port = smtp_server(refuse={ME: "451 try later"})
    outbox_dir = tmp_path / "outbox"
    d = dispatcher(store, email(port), OutboxChannel(str(outbox_dir), stream=io.StringIO()))
    [first] = store.record([down(T)], d.channel_names)
    [second] = store.record([up(T + 1)], d.channel_names)

    retry_in = d.tick("email", at(2))
    assert d.tick("outbox", at(2)) is None                    # both written right away
    assert sorted(os.listdir(outbox_dir)) == ["20231114T221320Z-home-down.eml", "20231114T221321Z-home-up.eml"]
    r = rows(store)
    assert r[(first.id, "outbox")]["status"] == r[(second.id, "outbox")]["status"] == "sent"
    # The UP was not even tried: a person must never get UP before its DOWN.
    assert (r[(first.id, "email")]["attempts"], r[(second.id, "email")]["attempts"]) == (1, 0)
    assert sink.messages == []

    sink.refuse = {}
    d.tick("email", at(2 + retry_in))
    assert subjects(sink) == ["DOWN", "UP"]
    assert {row["status"] for row in store.deliveries()} == {"sent"}


def test_a_failing_channel_warns_once_when_it_starts_failing_and_says_once_when_it_works(store, smtp_server, caplog):
    sink, port = smtp_server(refuse={ME: "451 try later"})
    d = dispatcher(store, email(port), rand=lambda: 0.0)
    store.record([down(T)], ["email"])
    caplog.set_level(logging.INFO, logger="phonehome.alerts")

    def said(level, words):
        return [r for r in caplog.records if r.levelno == level and words in r.getMessage()]

    for seconds in (0, 5, 15, 35):                            # four failed attempts
        d.tick("email", at(seconds))
    assert len(said(logging.WARNING, "failing: SMTP server")) == 1
    assert "451 try later" in said(logging.WARNING, "failing")[0].getMessage()
    assert said(logging.INFO, "works again") == []

    sink.refuse = {}
    d.tick("email", at(75))
    store.record([up(T + 100)], ["email"])
    d.tick("email", at(100))
    assert len(said(logging.INFO, "works again")) == 1
    assert subjects(sink) == ["DOWN", "UP"]

    sink.refuse = {ME: "451 try later"}                       # failing again is news again
    store.record([down(T + 200)], ["email"])
    d.tick("email", at(200))
    d.tick("email", at(205))
    assert len(said(logging.WARNING, "failing: SMTP server")) == 2
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 2


# -- threads -------------------------------------------------------------------


def test_workers_send_as_soon_as_they_are_woken_and_stop_joins_them(tmp_path, store, smtp_sink):
    outbox_dir = tmp_path / "outbox"
    before = set(threading.enumerate())
    d = dispatcher(store, email(smtp_sink.port), OutboxChannel(str(outbox_dir), stream=io.StringIO()))
    d.start()
    workers = set(threading.enumerate()) - before
    assert {t.name for t in workers} == {"alerts-email", "alerts-outbox"}

    store.record([down(time.time())], d.channel_names)
    d.wake()
    deadline = time.monotonic() + 1.0
    while not (smtp_sink.messages and outbox_dir.exists() and os.listdir(outbox_dir)):
        assert time.monotonic() < deadline, "no alert within a second of wake()"
        time.sleep(0.01)
    assert subjects(smtp_sink) == ["DOWN"]

    started = time.monotonic()
    d.stop()
    assert time.monotonic() - started < 1.0
    assert not [t.name for t in workers if t.is_alive()]
    assert {row["status"] for row in store.deliveries()} == {"sent"}


def test_a_wall_clock_step_neither_gives_an_alert_up_nor_postpones_its_retry(store, smtp_server):
    sink, port = smtp_server(refuse={ME: "451 try later"})
    d = dispatcher(store, email(port), give_up_after_s=60, rand=lambda: 0.999)
    [event] = store.record([down()], ["email"])
    assert d.tick("email", at(0)) == pytest.approx(9.995)
    # NTP steps the wall clock a day ahead: on the wall clock the alert is a day old.
    stepped = Now(mono=at(10).mono, wall=at(10).wall + 86400)
    d.tick("email", stepped)
    assert rows(store)[(event.id, "email")]["status"] == "pending"
    # And a day back: the retry still comes on time by the monotonic clock.
    sink.refuse = {}
    back = Now(mono=at(40).mono, wall=at(40).wall - 86400)
    assert d.tick("email", back) is None
    assert subjects(sink) == ["DOWN"]


def test_channels_added_by_a_reload_get_a_worker_and_removed_ones_give_their_alerts_up(store, smtp_server, tmp_path):
    sink, port = smtp_server()
    d = dispatcher(store)  # started with no channel at all
    d.start()
    try:
        [event] = store.record([down()], ["apprise:0000dead"])
        d.configure([email(port)], give_up_after_s=3600)
        assert rows(store)[(event.id, "apprise:0000dead")]["status"] == "failed"
        store.record([up()], ["email"])
        d.wake()
        deadline = time.monotonic() + 5
        while not sink.messages and time.monotonic() < deadline:
            time.sleep(0.02)
        assert subjects(sink) == ["UP"]
    finally:
        d.stop()

"""Power cuts: SIGKILL the product at random moments while it saves config, writes state and sends alerts.

Most cuts kill a forked child that runs the real code in a loop (real
atomic writes, the real SQLite store, the real dispatcher talking to a real
SMTP sink) after a random 0-30 ms; a fresh instance then opens the same
files and must find everything that was finished. Set PHONEHOME_FAULT_SEED
to replay a run; the seed is printed (pytest shows it with a failure).

Kills per category: config saves 250 (settings saves 220, set-password 30), agent state files 250
(send-failure windows 100, setup code 100, clock history 50), the monitor's
store 300, alert sending 200 (1,000 in all), plus the real `phonehome
monitor` and `phonehome agent` processes killed in test_power_cut_processes.py.

The at-most-twice window: the dispatcher marks a delivery sent after the
SMTP server has accepted the message. A kill between the server's "250
accepted" and that mark (a few SQLite milliseconds) leaves the row pending,
and the restarted monitor sends the message again: the one alert that was in
flight at the kill may arrive twice, never more, and no alert is lost.
"""

import json
import os
import random
import sqlite3
import subprocess
import sys
import time

import pytest

from appliance.agent.failures import FailureLog
from appliance.atomic import STALE_TMP_S
from appliance.alerts.smtp import EmailChannel
from appliance.auth import Passwords
from appliance.clock import Now, SystemClock
from appliance.config import config_from_table, load_config, save_config
from appliance.monitor.dispatch import Dispatcher
from appliance.monitor.events import Event, Kind, State
from appliance.monitor.store import Store
from appliance.setup import FILE_NAME as SETUP_FILE, load_setup, reset_setup
from appliance.timecheck.history import OffsetHistory, decode
from tests.faults.forkkill import run_and_kill
from tests.processes import wait_until

pytestmark = pytest.mark.fault

CONFIG_CUTS, PASSWORD_CUTS = 220, 30
FAILURE_LOG_CUTS, SETUP_CUTS, TIME_HISTORY_CUTS = 100, 100, 50
STORE_CUTS, STORE_CUTS_PER_FILE = 300, 20
ALERT_CUTS, ALERTS_PER_ROUND, ROUNDS_PER_SINK = 200, 4, 5


@pytest.fixture
def rng():
    seed = int(os.environ.get("PHONEHOME_FAULT_SEED", "0")) or random.randrange(1, 2**31)
    print(f"power-cut seed: PHONEHOME_FAULT_SEED={seed}")
    return random.Random(seed)


def integrity_ok(path):
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()


# -- config saves (the settings page's save_config) and the CLI's set-password --------------------

def _config(n):
    return config_from_table({"device": {"name": f"cfg-{n}"}, "heartbeat": {"interval_s": 30 + n % 50},
                              "time": {"servers": []}})


def test_config_saves_survive_power_cuts(tmp_path, rng):
    path = str(tmp_path / "phonehome.toml")
    save_config(path, _config(0))
    done = 0
    for _ in range(CONFIG_CUTS):
        start = done

        def work(report, start=start):
            n = start
            while True:
                n += 1
                report(f"next {n}")
                save_config(path, _config(n))
                report(f"done {n}")

        cut = run_and_kill(work, rng)
        numbers = [int(line.split()[1]) for line in cut.lines if line.startswith("done")]
        done = numbers[-1] if numbers else done
        loaded = load_config(path, missing_ok=False)  # the one schema loader: raises for half a file
        # The last finished save, or the one the cut interrupted: never an older one.
        assert loaded.device.name in (f"cfg-{done}", f"cfg-{done + 1}"), (loaded.device.name, done, cut.delay_ms)
        done = int(loaded.device.name.split("-")[1])
    assert done > CONFIG_CUTS  # the cuts let saves finish: they hit mid-save, not only before the first
    # Cuts mid-save leave temporary files; the first save of the process that starts after a cut removes
    # those older than a write can take.
    left = [name for name in os.listdir(tmp_path) if name.startswith(".tmp-")]
    assert left, "no cut landed between a temporary file's creation and its rename"
    past = time.time() - STALE_TMP_S - 1
    for name in left:
        os.utime(tmp_path / name, (past, past))
    restarted = ("import sys\nfrom appliance.config import load_config, save_config\n"
                 "save_config(sys.argv[1], load_config(sys.argv[1], missing_ok=False))\n")
    subprocess.run([sys.executable, "-c", restarted, path], check=True, timeout=60)
    assert os.listdir(tmp_path) == ["phonehome.toml"]


def test_password_sets_survive_power_cuts(tmp_path, rng):
    passwords = Passwords(str(tmp_path))
    passwords.set("password-0")
    done = 0
    for _ in range(PASSWORD_CUTS):
        start = done

        def work(report, start=start):
            n = start
            while True:
                n += 1
                Passwords(str(tmp_path)).set(f"password-{n}")
                report(f"done {n}")

        cut = run_and_kill(work, rng, max_ms=150)  # scrypt takes most of a set: cuts across a few
        numbers = [int(line.split()[1]) for line in cut.lines]
        done = numbers[-1] if numbers else done
        with open(passwords.path, encoding="utf-8") as f:
            assert isinstance(json.load(f)["hash"], str)
        assert passwords.is_set
    assert passwords.check(f"password-{done}") or passwords.check(f"password-{done + 1}")


# -- the agent's state files ---------------------------------------------------------------------

def _shape(windows):
    return {key: (w.open.from_at if w.open else None, [(c.from_at, c.to_at) for c in w.closed])
            for key, w in windows.items() if w.open or w.closed}


def _loaded_shape(path):
    log = FailureLog(path, boot_id="boot-1")
    return _shape(log._windows)


def test_agent_failure_windows_survive_power_cuts(tmp_path, rng):
    path = str(tmp_path / "agent-state.json")
    at = 1_700_000_000.0
    interrupted = 0
    for _ in range(FAILURE_LOG_CUTS):
        start_at = at

        def work(report, start_at=start_at):
            log = FailureLog(path, boot_id="boot-1")
            t = start_at
            while True:
                t += 1.0
                key = f"url http://127.0.0.1:{int(t) % 3}/"
                old = log.windows(key)
                # Every step opens or closes a window, so every step saves the file.
                new = old.failed(t) if old.open is None else old.succeeded(t, acknowledged=int(t) % 4 == 0)
                report(json.dumps({"next": _shape({**log._windows, key: new}), "at": t}))
                if old.open is None:
                    log.failed(key, t)
                else:
                    log.succeeded(key, t, acknowledged=int(t) % 4 == 0)
                report(json.dumps({"done": _shape(log._windows), "at": t}))

        before = _loaded_shape(path)
        cut = run_and_kill(work, rng)
        reports = [json.loads(line) for line in cut.lines]
        done = [r["done"] for r in reports if "done" in r]
        upcoming = [r["next"] for r in reports if "next" in r]
        after = _loaded_shape(path)
        # The state after the last finished step, or after the one the cut interrupted: never older, never torn.
        allowed = [done[-1] if done else before] + ([upcoming[-1]] if len(upcoming) > len(done) else [])
        assert _js(after) in [_js(a) for a in allowed], (after, allowed, cut.delay_ms)
        interrupted += len(allowed) == 2 and _js(after) == _js(allowed[1]) != _js(allowed[0])
        at = max([r["at"] for r in reports], default=at) + 1.0
        if os.path.exists(path):  # none until the first window opens
            with open(path, encoding="utf-8") as f:
                assert json.load(f)["boot_id"] == "boot-1"
    print(f"failure windows: {interrupted} cuts came after the rename of an unreported step")


def _js(value):
    return json.dumps(value, sort_keys=True)


def test_setup_code_survives_power_cuts(tmp_path, rng):
    data_dir = str(tmp_path)
    codes = [reset_setup(data_dir).code]
    for _ in range(SETUP_CUTS):
        def work(report):
            while True:
                report(reset_setup(data_dir).code)

        cut = run_and_kill(work, rng)
        with open(os.path.join(data_dir, SETUP_FILE), encoding="utf-8") as f:
            stored = json.load(f)["code"]  # whole JSON, never half of one
        assert load_setup(data_dir).code == stored  # the product's loader reads it, does not make a new one
        reported = codes[-1:] + cut.lines
        # The last code the child finished, or one it was writing when cut.
        assert stored == reported[-1] or stored not in reported[:-1], (stored, reported[-3:])
        codes.append(stored)


def test_clock_history_survives_power_cuts(tmp_path, rng):
    path = str(tmp_path / "time-history.json")
    written = 0
    for _ in range(TIME_HISTORY_CUTS):
        def work(report):
            history = OffsetHistory(path)
            history.load()
            n = len(history.points())
            while True:
                n += 1
                # One check per 5-minute slot, each a new point; every one written at once.
                history.add(Now(mono=float(n), wall=1_700_000_000.0 + n * 300), 12.5, "ok")
                history.flush()
                report(str(n))

        cut = run_and_kill(work, rng)
        written = int(cut.lines[-1]) if cut.lines else written
        if os.path.exists(path):
            with open(path, "rb") as f:
                points = decode(f.read())  # the product's decoder, which raises for a torn file
            # The last finished write, or the one the cut interrupted.
            assert len(points) in (written, written + 1), (len(points), written)
            written = len(points)
    assert written > TIME_HISTORY_CUTS


# -- the monitor's store ------------------------------------------------------------------------

def _next_event(device, state, at):
    if state is State.DOWN:
        return Event(device, Kind.UP, State.DOWN, State.UP, at, "heard again", last_heard_at=at,
                     outage_started_at=at - 30, outage_s=30.0)
    return Event(device, Kind.DOWN, State.UP, State.DOWN, at, "silent", last_heard_at=at - 30,
                 outage_started_at=at - 30)


def test_store_keeps_every_committed_event_through_power_cuts(tmp_path, rng):
    total = 0
    for round_ in range(STORE_CUTS):
        if round_ % STORE_CUTS_PER_FILE == 0:  # a new file now and then: checking all of a big one costs time
            path = str(tmp_path / f"monitor-{round_}.sqlite3")
            committed = {}  # event id -> (device, kind)
            sent = set()
        def work(report, round_=round_):
            store = Store(path)
            states = {name: r.state for name, r in store.restored().items()}
            at = 1_700_000_000.0 + round_ * 1000
            n = 0
            while True:
                n += 1
                at += 1.0
                device = f"dev-{n % 5}"
                event = _next_event(device, states.get(device, State.UP), at)
                [stored] = store.record([event], ["email", "outbox"])
                states[device] = event.new
                report(f"event {stored.id} {device} {event.kind.value}")
                if n % 3 == 0:
                    store.save_heartbeats([(device, at, {"device": device, "seq": n})])
                pending = store.pending_deliveries("email", limit=1)
                if pending:
                    store.delivered(pending[0].id, at)
                    report(f"sent {pending[0].id}")

        cut = run_and_kill(work, rng)
        for line in cut.lines:
            word, *rest = line.split()
            if word == "event":
                committed[int(rest[0])] = (rest[1], rest[2])
                total += 1
            else:
                sent.add(int(rest[0]))
        assert integrity_ok(path), f"round {round_}"
        _check_store(Store(path), committed, sent)
    assert total > STORE_CUTS  # the cuts came after commits, not only before the first


def _check_store(store, committed, sent):
    try:
        events = {e.id: e for e in store.events(limit=10**9)}
        for event_id, (device, kind) in committed.items():
            assert event_id in events, f"committed event {event_id} ({device} {kind}) lost"
            assert (events[event_id].device, events[event_id].kind.value) == (device, kind)
        deliveries = store.deliveries()
        per_event = {}
        for d in deliveries:
            per_event.setdefault(d["event_id"], []).append(d["channel"])
        assert all(sorted(per_event.get(i, ())) == ["email", "outbox"] for i in events), "a delivery row is missing"
        statuses = {d["id"]: d["status"] for d in deliveries}
        assert all(statuses[i] == "sent" for i in sent), "a delivery marked sent is pending again"
        # Each device's state and open outage follow from its last event, in one transaction with it.
        restored = store.restored()
        outages = store.outages(limit=10**9)
        for device in {e.device for e in events.values()}:
            last = max((e for e in events.values() if e.device == device), key=lambda e: e.id)
            assert restored[device].state is last.new
            downs = sum(1 for e in events.values() if e.device == device and e.kind is Kind.DOWN)
            mine = [o for o in outages if o["device"] == device]
            assert len(mine) == downs
            assert sum(1 for o in mine if o["ended_at"] is None) == (1 if last.new is State.DOWN else 0)
    finally:
        store.close()


# -- alert sending --------------------------------------------------------------------------------

def _email(port):
    return config_from_table({"alerts": {"email": {
        "smtp_host": "127.0.0.1", "smtp_port": port, "security": "none", "sender": "phonehome@example.com",
        "to": ["me@example.com"], "timeout_s": 5}}}).alerts.email


def _send_all(store, channel, report=None):
    clock = SystemClock()
    dispatcher = Dispatcher(store, [channel], clock=clock, give_up_after_s=3600)
    while store.pending_deliveries("email"):
        dispatcher.tick("email", clock.now())
        if report:
            report("tick")


def test_every_due_alert_is_sent_once_through_power_cuts(tmp_path, rng, smtp_server):
    """Each alert arrives exactly once, except the one in flight at a cut, which may arrive twice.

    That one is the at-most-twice window of the dispatcher (see its module
    docstring): the sink accepted it, the kill came before the row said sent.
    """
    in_doubt = {}  # round -> devices whose alert was still pending when the monitor came back
    mid_sending = 0
    sinks = []
    for round_ in range(ALERT_CUTS):
        if round_ % ROUNDS_PER_SINK == 0:  # aiosmtpd slows down with every message it has taken: a fresh one
            sink, port = smtp_server()
            sinks.append(sink)
            channel = EmailChannel(_email(port))
        path = str(tmp_path / f"alerts-{round_}.sqlite3")
        store = Store(path)
        at = time.time() - 1
        store.record([Event(f"r{round_}-d{j}", Kind.DOWN, State.UP, State.DOWN, at, "silent",
                            last_heard_at=at - 30, outage_started_at=at - 30) for j in range(ALERTS_PER_ROUND)],
                     ["email"])
        store.close()

        def work(report, path=path, channel=channel):
            _send_all(Store(path), channel)

        run_and_kill(work, rng)
        assert integrity_ok(path), f"round {round_}"
        store = Store(path)  # the monitor restarted on the same files
        pending = store.pending_deliveries("email")
        in_doubt[round_] = {store.event(d.event_id).device for d in pending}
        mid_sending += 0 < len(pending) < ALERTS_PER_ROUND
        _send_all(store, channel)
        assert {d["status"] for d in store.deliveries()} == {"sent"}
        store.close()
    expected = ALERT_CUTS * ALERTS_PER_ROUND
    wait_until(lambda: sum(len(s.envelopes) for s in sinks) >= expected, 10, "every alert at the sinks")
    time.sleep(0.2)  # a message a sink was still taking in at a cut lands by now
    counts = {}
    for sink in sinks:
        for message in sink.messages:
            device = message["Subject"].split(":")[1].split()[0]
            counts[device] = counts.get(device, 0) + 1
    twice_total = 0
    for round_ in range(ALERT_CUTS):
        twice = []
        for j in range(ALERTS_PER_ROUND):
            device = f"r{round_}-d{j}"
            assert counts.get(device, 0) >= 1, f"{device}'s alert was lost"
            assert counts[device] <= 2, f"{device}'s alert arrived {counts[device]} times"
            if counts[device] == 2:
                assert device in in_doubt[round_], f"{device} arrived twice but was marked sent before the cut"
                twice.append(device)
        assert len(twice) <= 1, f"round {round_}: more than the one alert in flight was sent twice: {twice}"
        twice_total += len(twice)
    print(f"alerts: {expected} due, {mid_sending} cuts mid-sending, {twice_total} sent twice (in flight at the cut)")
    assert mid_sending > ALERT_CUTS // 10  # the cuts did land while alerts were going out

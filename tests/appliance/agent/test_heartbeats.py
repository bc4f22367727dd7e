import json
import logging
import time

import pytest

from appliance import __version__
from appliance.agent.failures import STATE_FILE
from appliance.agent.heartbeats import TargetStatus
from appliance.clock import SystemClock
from appliance.config.schema import Target

TOKEN = "s3cret-token-123"
RECEIVED_AT = 1_750_000_000.25
WALL0 = 1_750_000_000.0  # the fake clock's wall time at the start


def phonehome(server, **kwargs):
    return Target(url=f"{server.url}/api/heartbeat", kind="phonehome", token=TOKEN, name="monitor", **kwargs)


@pytest.fixture
def one_sender(server, make_config, make_sender):
    """A sender with one phonehome target on the recording server; its worker is ticked by hand."""
    sender = make_sender(make_config(phonehome(server)))
    return sender, sender.workers[0]


def beats(server):
    return [r.json() for r in server.requests]


# --- tick: what is due gets done -----------------------------------------------------------------

def test_first_tick_sends_at_once(one_sender, server, clock):
    sender, worker = one_sender
    assert worker.tick(clock.now()) == 60.0
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/api/heartbeat")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["User-Agent"] == f"phonehome/{__version__}"
    assert request.json() == {"device": "home", "sent_at": WALL0, "seq": 1, "boot_id": "boot-1", "uptime_s": 123.0,
                              "agent_started_at": WALL0, "send_failures": [], "version": __version__}
    [status] = sender.status()
    assert status.state == "ok"
    assert (status.last_ok_at, status.last_attempt_at, status.last_received_at) == (WALL0, WALL0, RECEIVED_AT)
    assert 0 < status.last_rtt_ms < 2000
    assert (status.last_error, status.consecutive_failures) == (None, 0)


def test_status_before_any_beat_is_unknown(one_sender, server):
    sender, _ = one_sender
    assert sender.status() == (TargetStatus(label="monitor", kind="phonehome", url=f"{server.url}/api/heartbeat"),)


def test_beats_keep_a_steady_cadence(one_sender, server, clock):
    _, worker = one_sender
    worker.tick(clock.now())
    assert worker.tick(clock.advance(30)) == 30.0
    assert len(server.requests) == 1
    assert worker.tick(clock.advance(30.5)) == 59.5  # woke late; the next beat is still on the minute
    assert worker.tick(clock.advance(59.5)) == 60.0
    assert [b["seq"] for b in beats(server)] == [1, 2, 3]
    assert [b["sent_at"] - WALL0 for b in beats(server)] == [0, 60.5, 120]
    assert beats(server)[2]["agent_started_at"] == WALL0


def test_wall_clock_steps_neither_fire_nor_delay_beats(one_sender, server, clock):
    _, worker = one_sender
    worker.tick(clock.now())
    clock.advance(20)
    assert worker.tick(clock.step_wall(3 * 3600)) == 40.0  # NTP set the clock three hours forward
    assert worker.tick(clock.step_wall(-6 * 3600)) == 40.0  # and then back
    assert len(server.requests) == 1
    worker.tick(clock.advance(40))
    assert len(server.requests) == 2
    # agent_started_at follows the corrected wall clock, measured back on the monotonic one
    assert beats(server)[1]["agent_started_at"] == pytest.approx(WALL0 - 3 * 3600)


def test_falling_behind_sends_one_beat_not_a_burst(one_sender, server, clock):
    _, worker = one_sender
    worker.tick(clock.now())
    assert worker.tick(clock.advance(250)) == 60.0
    assert worker.tick(clock.advance(1)) == 59.0
    assert len(server.requests) == 2


def test_unknown_uptime_is_sent_as_null(server, make_config, make_sender, clock):
    sender = make_sender(make_config(phonehome(server)), uptime=lambda: None)
    sender.workers[0].tick(clock.now())
    assert beats(server)[0]["uptime_s"] is None


# --- failures: back off, carry the window, log state changes only --------------------------------

def test_failures_back_off_and_the_restoring_beat_carries_the_window(one_sender, server, clock, tmp_path):
    sender, worker = one_sender
    server.reply_json(500, {"error": "database is locked"})
    delays = [worker.tick(clock.now())]
    for _ in range(5):
        delays.append(worker.tick(clock.advance(delays[-1])))
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 29.0]  # rand()=0: half of 2, 4, 8 ... s; then the minute's beat
    [status] = sender.status()
    assert (status.state, status.consecutive_failures) == ("failing", 6)
    assert status.last_error == "HTTP 500 from 127.0.0.1: database is locked"
    assert status.last_ok_at is None

    server.reply_json(200, {"received_at": RECEIVED_AT})
    assert worker.tick(clock.advance(29)) == 60.0
    restoring = beats(server)[-1]
    assert restoring["send_failures"] == [{"from": WALL0, "to": WALL0 + 60, "failures": 6}]
    assert restoring["seq"] == 7
    worker.tick(clock.advance(60))
    assert beats(server)[-1]["send_failures"] == []  # acknowledged by the 200, so dropped
    assert sender.status()[0].state == "ok"
    with open(tmp_path / "data" / STATE_FILE) as f:
        assert json.load(f)["targets"] == {}


def test_log_has_one_line_per_state_change(one_sender, server, clock, caplog):
    _, worker = one_sender
    caplog.set_level(logging.DEBUG, logger="phonehome.agent")
    worker.tick(clock.now())
    server.reply_json(500, {"error": "database is locked"})
    delay = 60.0
    for _ in range(5):
        delay = worker.tick(clock.advance(delay))
    server.reply_json(200, {"received_at": RECEIVED_AT})
    delay = worker.tick(clock.advance(delay))
    worker.tick(clock.advance(delay))

    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert lines[0][0] == "INFO" and lines[0][1].startswith("heartbeat to monitor ok (round trip ")
    assert lines[1:] == [
        ("WARNING", "heartbeat to monitor failing: HTTP 500 from 127.0.0.1: database is locked; retrying"),
        ("INFO", "heartbeat to monitor restored after 31 s (5 failed sends)"),
    ]
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


# --- the other kinds -------------------------------------------------------------------------------

def test_uptime_kuma_pings_with_the_previous_round_trip(server, make_config, make_sender, clock):
    sender = make_sender(make_config(Target(url=f"{server.url}/api/push/AbCd?status=up&msg=OK&ping=",
                                            kind="uptime-kuma")))
    worker = sender.workers[0]
    worker.tick(clock.now())
    first_rtt_ms = sender.status()[0].last_rtt_ms
    worker.tick(clock.advance(60))
    first, second = (r.path for r in server.requests)
    assert first == "/api/push/AbCd?status=up&msg=OK&ping="
    assert second == f"/api/push/AbCd?status=up&msg=OK&ping={first_rtt_ms:.0f}"


def test_url_kind_appends_the_time_and_any_answer_is_delivered(server, make_config, make_sender, clock):
    server.reply(404, b"not found")
    sender = make_sender(make_config(Target(url=f"{server.url}/raspberrypiPhoneHome?", kind="url")))
    sender.workers[0].tick(clock.now())
    assert server.requests[0].path == f"/raspberrypiPhoneHome?{int(WALL0)}"
    assert sender.status()[0].state == "ok"


# --- pause, resume, beat_now -------------------------------------------------------------------------

def test_nothing_is_sent_while_paused(one_sender, server, clock):
    sender, worker = one_sender
    sender.pause()
    assert worker.tick(clock.now()) == 60.0
    assert worker.tick(clock.advance(60)) == 60.0
    assert server.requests == []
    assert sender.beat_now()[0].error == "heartbeats are paused"
    assert server.requests == []
    sender.resume()
    assert worker.tick(clock.advance(1)) == 59.0  # resuming sends at once, then keeps the cadence
    assert len(server.requests) == 1


def test_beat_now_reports_each_target(server, closed_port, make_config, make_sender):
    sender = make_sender(make_config(phonehome(server),
                                     Target(url=f"http://127.0.0.1:{closed_port}/ping", kind="healthchecks")))
    ok, refused = sender.beat_now()
    assert (ok.label, ok.ok, ok.result.received_at) == ("monitor", True, RECEIVED_AT)
    assert (refused.label, refused.ok, refused.result) == ("127.0.0.1", False, None)
    assert refused.error == f"connection refused by 127.0.0.1:{closed_port}"
    assert [s.state for s in sender.status()] == ["ok", "failing"]


def test_phonehome_beats_carry_the_peers_and_beat_now_can_pick_the_kinds(server, make_config, make_sender):
    peers = [{"name": "garage-pi", "state": "up", "last_heard_at": WALL0, "down_since": None, "power_cycles": []}]
    sender = make_sender(make_config(phonehome(server), Target(url=f"{server.url}/hc", kind="healthchecks")),
                         peers=lambda: peers)
    (attempt,) = sender.beat_now(kinds=("phonehome",))
    assert attempt.ok and attempt.label == "monitor"
    [request] = server.requests
    assert request.json()["peers"] == peers
    sender.beat_now()  # every kind; only the phonehome beat has a body to carry the peers in
    (ping,) = [r for r in server.requests if r.path == "/hc"]
    assert ping.method == "GET" and ping.body == b""
    assert len(server.requests) == 3


# --- threads: real time, sub-second intervals ---------------------------------------------------------

def test_a_silent_target_does_not_delay_a_healthy_one(silent_server, server, make_config, make_sender):
    silent = [Target(url=f"{silent_server.url}/{i}", kind="url") for i in range(2)]
    healthy = Target(url=f"{server.url}/healthy", kind="healthchecks")
    sender = make_sender(make_config(*silent, healthy, interval_s=0.2, timeout_s=0.2), clock=SystemClock())
    started = time.monotonic()
    sender.start()
    time.sleep(1.05)
    stopping = time.monotonic()
    sender.stop()
    assert time.monotonic() - stopping < 0.5  # the sends in flight end within their timeout
    arrivals = [r.at_mono - started for r in server.requests]
    assert arrivals[0] < 0.1  # not behind the silent targets' timeouts
    assert len(arrivals) >= 4  # due at 0, 0.2, 0.4, 0.6, 0.8, 1.0; one after the other, only 2 or 3
    silent_status = sender.status()[0]
    assert silent_status.state == "failing"
    assert silent_status.last_error == "no answer from 127.0.0.1 within 0.2 s"


def test_failure_windows_survive_an_agent_restart_but_not_a_reboot(server, make_config, make_sender, wait_for,
                                                                   tmp_path):
    config = make_config(phonehome(server), interval_s=0.2, timeout_s=0.2)
    real = dict(clock=SystemClock(), rand=lambda: 0.999)

    def failing_run(boot_id):
        server.reply_json(503, {"error": "down for maintenance"})
        server.requests.clear()
        with make_sender(config, boot_id=boot_id, **real):
            wait_for(lambda: len(server.requests) >= 3, what="three failed beats")
        return beats(server)  # stopped: no more requests from this sender

    def first_good_beat(boot_id):
        server.reply_json(200, {"received_at": RECEIVED_AT})
        server.requests.clear()
        with make_sender(config, boot_id=boot_id, **real):
            wait_for(lambda: len(server.requests) >= 2, what="two good beats")
        return beats(server)

    failed = failing_run("boot-A")
    with open(tmp_path / "data" / STATE_FILE) as f:
        saved = json.load(f)
    assert saved["boot_id"] == "boot-A"
    opened = list(saved["targets"].values())[0]["open"]
    assert isinstance(opened.pop("from_mono"), float)  # the same moment on the monotonic clock, for clock steps
    assert opened == {"from": failed[0]["sent_at"], "to": None, "failures": len(failed)}

    good = first_good_beat("boot-A")  # the agent restarted; the Pi did not
    [window] = good[0]["send_failures"]
    assert window == {"from": failed[0]["sent_at"], "to": good[0]["sent_at"], "failures": len(failed)}
    assert good[1]["send_failures"] == []

    failing_run("boot-A")
    good = first_good_beat("boot-B")  # the Pi rebooted: the monitor learns that from the boot id
    assert good[0]["send_failures"] == []
    assert good[0]["boot_id"] == "boot-B"

import json
import logging
import os
import stat

import pytest

from appliance.agent.failures import MAX_WINDOWS, STATE_FILE, FailureLog, Window, Windows, target_key
from appliance.atomic import write_atomic
from appliance.config.schema import Target

KEY = "phonehome https://monitor.example.com/api/heartbeat"


class CountingWriter:
    def __init__(self):
        self.writes = 0

    def __call__(self, path, data, **kwargs):
        self.writes += 1
        write_atomic(path, data, **kwargs)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / STATE_FILE)


@pytest.fixture
def writer():
    return CountingWriter()


# --- the bookkeeping ----------------------------------------------------------------------------

def test_window_opens_counts_and_closes():
    w = Windows().failed(100.0).failed(160.0).failed(220.0)
    assert w == Windows(open=Window(100.0, None, 3))
    assert w.carried(280.0) == (Window(100.0, 280.0, 3),)  # the send that closes a window carries it
    assert w.succeeded(280.0, acknowledged=True) == Windows()


def test_closed_windows_stay_until_acknowledged():
    w = Windows().failed(100.0).succeeded(160.0, acknowledged=False)
    w = w.failed(220.0).failed(280.0).succeeded(340.0, acknowledged=False)
    assert w == Windows(closed=(Window(100.0, 160.0, 1), Window(220.0, 340.0, 2)))
    assert w.carried(400.0) == w.closed
    assert w.succeeded(400.0, acknowledged=True) == Windows()


def test_at_most_max_windows_are_kept():
    w = Windows()
    for i in range(MAX_WINDOWS + 10):
        w = w.failed(i * 100.0).succeeded(i * 100.0 + 50, acknowledged=False)
    assert len(w.closed) == MAX_WINDOWS
    assert w.closed[0].from_at == 1000.0  # the oldest went first
    assert len(w.failed(99_999.0).carried(100_000.0)) == MAX_WINDOWS


def test_key_is_kind_and_url_without_the_token():
    target = Target(url="https://monitor.example.com/api/heartbeat", kind="phonehome", token="s3cret-token")
    assert target_key(target) == KEY


# --- saving: only when a window opens, closes or is acknowledged --------------------------------

def test_writes_only_when_windows_change_shape(path, writer):
    log = FailureLog(path, boot_id="boot-1", write=writer)
    log.succeeded(KEY, 50.0, acknowledged=True)
    assert writer.writes == 0
    log.failed(KEY, 100.0)
    assert writer.writes == 1  # opened
    for minute in range(1, 30):
        log.failed(KEY, 100.0 + 60 * minute)
    assert writer.writes == 1  # not once per failed minute
    log.succeeded(KEY, 2000.0, acknowledged=False)
    assert writer.writes == 2  # closed
    log.succeeded(KEY, 2060.0, acknowledged=False)
    assert writer.writes == 2
    log.succeeded(KEY, 2120.0, acknowledged=True)
    assert writer.writes == 3  # acknowledged
    log.succeeded(KEY, 2180.0, acknowledged=True)
    assert writer.writes == 3


def test_file_holds_boot_id_and_windows_for_the_owner_only(path):
    log = FailureLog(path, boot_id="boot-1")
    log.failed(KEY, 100.0)
    with open(path) as f:
        assert json.load(f) == {"boot_id": "boot-1",
                                "targets": {KEY: {"open": {"from": 100.0, "to": None, "failures": 1},
                                                  "closed": []}}}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_flush_saves_counts_that_were_spared(path, writer):
    log = FailureLog(path, boot_id="boot-1", write=writer)
    log.failed(KEY, 100.0)
    log.failed(KEY, 160.0)
    log.flush()
    assert writer.writes == 2
    log.flush()
    assert writer.writes == 2
    assert FailureLog(path, boot_id="boot-1").windows(KEY).open == Window(100.0, None, 2)


# --- loading: across agent restarts, not reboots ------------------------------------------------

def test_windows_survive_an_agent_restart(path):
    FailureLog(path, boot_id="boot-1").failed(KEY, 100.0)
    again = FailureLog(path, boot_id="boot-1")
    assert again.carried(KEY, 400.0) == (Window(100.0, 400.0, 1),)


def test_windows_do_not_survive_a_reboot(path, caplog):
    FailureLog(path, boot_id="boot-1").failed(KEY, 100.0)
    with caplog.at_level(logging.INFO, logger="phonehome.agent"):
        after_reboot = FailureLog(path, boot_id="boot-2")
    assert after_reboot.windows(KEY) == Windows()
    assert "from an earlier boot" in caplog.text


def test_unknown_boot_id_never_matches(path):
    FailureLog(path, boot_id="").failed(KEY, 100.0)
    assert FailureLog(path, boot_id="").windows(KEY) == Windows()


@pytest.mark.parametrize("content", ["{not json", "[]", '{"boot_id": "boot-1"}',
                                     '{"boot_id": "boot-1", "targets": {"k": {"open": {"from": "x"}}}}'])
def test_corrupt_file_is_logged_once_and_ignored(path, caplog, content):
    with open(path, "w") as f:
        f.write(content)
    with caplog.at_level(logging.WARNING, logger="phonehome.agent"):
        log = FailureLog(path, boot_id="boot-1")
        log.failed(KEY, 100.0)
        log.failed(KEY, 160.0)
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith(f"ignoring {path}")
    assert FailureLog(path, boot_id="boot-1").windows(KEY).open == Window(100.0, None, 1)  # overwritten


def test_unwritable_state_is_logged_once_and_never_raises(path, caplog):
    def broken(path, data, **kwargs):
        raise PermissionError(13, "Permission denied")

    log = FailureLog(path, boot_id="boot-1", write=broken)
    with caplog.at_level(logging.WARNING, logger="phonehome.agent"):
        for i in range(3):
            log.failed(KEY, 100.0 + i)
            log.succeeded(KEY, 200.0 + i, acknowledged=True)
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot save {path}: Permission denied; send-failure windows will not survive an agent restart "
        f"(check that the data directory is writable)"]


def test_a_wall_clock_step_during_a_window_moves_its_edges_onto_the_clock_of_the_send():
    # Failed sends from wall 100 (monotonic 10); NTP steps the wall clock a day back at monotonic 500.
    w = Windows().failed(100.0, mono=10.0).failed(160.0, mono=70.0)
    day = 86_400.0
    [carried] = w.carried(1000.0 - day, mono=910.0)
    assert (carried.from_at, carried.to_at, carried.failures) == (100.0 - day, 1000.0 - day, 2)
    closed = w.succeeded(1000.0 - day, acknowledged=False, mono=910.0)
    assert [(c.from_at, c.to_at) for c in closed.carried(1060.0 - day, mono=970.0)] == [(100.0 - day, 1000.0 - day)]
    # No step (a slew of well under a second): the edges stay exactly as read.
    assert w.carried(1000.3, mono=910.0)[0].from_at == 100.0

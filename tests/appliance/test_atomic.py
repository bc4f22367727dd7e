"""Atomic writes: the target is whole before and after, and no temp file is left behind."""

import os

import pytest

from appliance.atomic import STALE_TMP_S, Sweeps, write_atomic


def test_replaces_content_and_mode(tmp_path):
    path = tmp_path / "f"
    path.write_text("old")
    write_atomic(str(path), "new", mode=0o600)
    assert path.read_text() == "new"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["f"]


def test_failure_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "f"
    path.write_text("old")


    with pytest.raises(TypeError):
        write_atomic(str(path), 12345)  # not bytes or str: fails while writing
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f"]


def test_missing_directory_raises(tmp_path):
    with pytest.raises(OSError):
        write_atomic(str(tmp_path / "nope" / "f"), "x")


def test_a_directory_is_swept_for_leftovers_at_most_once_a_minute():
    sweeps = Sweeps()
    assert sweeps.due("/a", 100.0)  # the first write after a start looks at once
    assert not sweeps.due("/a", 100.0 + STALE_TMP_S - 1)
    assert sweeps.due("/b", 101.0)  # each directory on its own
    assert sweeps.due("/a", 100.0 + STALE_TMP_S)
    assert not sweeps.due("/a", 100.0 + STALE_TMP_S + 1)

"""The one-time setup code on real files: made once, kept, unreadable files replaced, reset makes a new one."""

import json
import os
import re

from appliance.setup import FILE_NAME, load_setup, reset_setup


def test_code_is_made_once_and_kept(tmp_path):
    first = load_setup(str(tmp_path))
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}", first.code) and not first.claimed
    assert not set(first.code) & set("01OIL")  # nothing to misread on a tiny display
    assert load_setup(str(tmp_path)).code == first.code
    assert os.stat(tmp_path / FILE_NAME).st_mode & 0o777 == 0o600


def test_a_corrupt_file_gets_a_new_code(tmp_path, caplog):
    (tmp_path / FILE_NAME).write_text("{not json")
    setup = load_setup(str(tmp_path))
    assert setup.code and "unreadable" in caplog.text
    assert json.loads((tmp_path / FILE_NAME).read_text())["code"] == setup.code


def test_claimed_is_read_and_reset_forgets_it(tmp_path):
    (tmp_path / FILE_NAME).write_text(json.dumps({"code": "ABCD-EFGH", "claimed_at": 1.7e9}))
    assert load_setup(str(tmp_path)).claimed
    fresh = reset_setup(str(tmp_path))
    assert fresh.code != "ABCD-EFGH" and not fresh.claimed
    assert load_setup(str(tmp_path)) == fresh

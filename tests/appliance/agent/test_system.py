import pytest

from appliance.agent.system import read_boot_id, read_uptime_s


def test_boot_id_is_read_and_stripped(tmp_path):
    path = tmp_path / "boot_id"
    path.write_text("3f2b6c1e-8d4a-4e55-9a0b-0c1d2e3f4a5b\n")
    assert read_boot_id(str(path)) == "3f2b6c1e-8d4a-4e55-9a0b-0c1d2e3f4a5b"


def test_missing_boot_id_is_empty(tmp_path):
    assert read_boot_id(str(tmp_path / "absent")) == ""


def test_uptime_is_the_first_number(tmp_path):
    path = tmp_path / "uptime"
    path.write_text("350735.47 234388.90\n")
    assert read_uptime_s(str(path)) == 350735.47


@pytest.mark.parametrize("content", ["", "garbage 1.0\n"])
def test_unparsable_uptime_is_none(tmp_path, content):
    path = tmp_path / "uptime"
    path.write_text(content)
    assert read_uptime_s(str(path)) is None


def test_missing_uptime_is_none(tmp_path):
    assert read_uptime_s(str(tmp_path / "absent")) is None

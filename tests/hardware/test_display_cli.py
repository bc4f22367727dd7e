"""``phonehome display snapshot FILE.png``: the real installed command as a subprocess, with the frame file a
DisplayService wrote in a runtime directory of the test's own (systemd's $RUNTIME_DIRECTORY)."""

import os
import pathlib
import subprocess
import sys

from PIL import Image

from appliance.clock import Now, SystemClock
from appliance.config import load_config
from hardware.display import DisplayService
from hardware.oled import frame_path

PHONEHOME = os.path.join(os.path.dirname(sys.executable), "phonehome")


def write_config(tmp_path, display="", *, name="config.toml"):
    path = tmp_path / name
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n[display]\n{display}')
    return str(path)


def phonehome(tmp_path, *args):
    env = {**os.environ, "RUNTIME_DIRECTORY": str(tmp_path / "run")}
    return subprocess.run([PHONEHOME, *args], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
                          check=False)


def test_without_a_running_agent_it_renders_the_status_page_and_says_so(tmp_path):
    config = write_config(tmp_path, 'driver = "ssd1306"\nheight = 32\n')
    done = phonehome(tmp_path, "display", "snapshot", "out.png", "--config", config)
    assert done.returncode == 0, done.stderr
    assert "the agent is not running" in done.stderr and "fresh rendering of the Status page" in done.stderr
    with Image.open(tmp_path / "out.png") as image:
        assert image.format == "PNG" and image.mode == "1" and image.size == (128, 32)
        assert image.getbbox() is not None
    assert not (tmp_path / "data" / "setup.json").exists()  # taking a picture makes no setup code


def test_it_copies_the_frame_the_running_agent_shows(tmp_path, snapshot_of, make_device):
    config_path = write_config(tmp_path, 'driver = "ssd1306"\n')
    config = load_config(config_path)
    mirror = frame_path(config.display, config.data_dir, environ={"RUNTIME_DIRECTORY": str(tmp_path / "run")})
    svc = DisplayService(config.display, snapshot=snapshot_of, clock=SystemClock(), data_dir=config.data_dir,
                         open_device=lambda *_, **__: make_device(), mirror_path=mirror)
    svc.tick(SystemClock().now())
    done = phonehome(tmp_path, "display", "snapshot", "shown.png", "--config", config_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert (tmp_path / "shown.png").read_bytes() == pathlib.Path(mirror).read_bytes()
    with Image.open(tmp_path / "shown.png") as image:
        assert image.size == (128, 64) and image.tobytes() == svc.frame.tobytes()


def test_a_stale_frame_is_not_taken_for_the_agent_s(tmp_path, snapshot_of, make_device):
    config_path = write_config(tmp_path, 'driver = "sh1106"\npage_s = 5\n')
    config = load_config(config_path)
    mirror = frame_path(config.display, config.data_dir, environ={"RUNTIME_DIRECTORY": str(tmp_path / "run")})
    svc = DisplayService(config.display, snapshot=snapshot_of, clock=SystemClock(), data_dir=config.data_dir,
                         open_device=lambda *_, **__: make_device(), mirror_path=mirror)
    svc.tick(Now(mono=0.0, wall=snapshot_of().at))
    old = os.stat(mirror).st_mtime - 13  # 2 x page_s + 2 s is the limit
    os.utime(mirror, (old, old))
    done = phonehome(tmp_path, "display", "snapshot", "out.png", "--config", config_path)
    assert done.returncode == 0 and "no picture newer than 12 s" in done.stderr


def test_driver_none_says_there_is_no_picture_to_copy(tmp_path):
    done = phonehome(tmp_path, "display", "snapshot", "out.png", "--config", write_config(tmp_path))
    assert done.returncode == 0 and "driver is 'none'" in done.stderr
    with Image.open(tmp_path / "out.png") as image:
        assert image.size == (128, 64)


def test_bad_config_exits_2_and_an_unwritable_file_exits_1(tmp_path):
    bad = write_config(tmp_path, "height = 48\n", name="bad.toml")
    done = phonehome(tmp_path, "display", "snapshot", "out.png", "--config", bad)
    assert done.returncode == 2 and "display.height" in done.stderr
    good = write_config(tmp_path)
    done = phonehome(tmp_path, "display", "snapshot", str(tmp_path / "no" / "such" / "dir.png"), "--config", good)
    assert done.returncode == 1 and "cannot write" in done.stderr

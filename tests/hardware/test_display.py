"""DisplayService driven tick by tick with explicit Now readings, onto luma's dummy device (recording, failing
on cue, or missing); the emulator and the frame file written for real in tmp_path; luma's real drivers on a
fake I2C interface; one test of the thread."""

import datetime
import errno
import logging
import os
import threading

import luma.core.error
import luma.core.interface.serial
import pytest
from PIL import Image

from appliance.clock import Now, SystemClock
from appliance.status import Setup
from hardware.display import (
    DIM_CONTRAST,
    IDLE_S,
    MIN_DELAY_S,
    RETRY_S,
    SETUP_HOLD_S,
    SHIFT_EVERY_S,
    SHIFTS,
    DisplayService,
)
from hardware.oled import EmulatorDevice, explain_failure, frame_path, open_device
from hardware.pages import NETWORK, SETUP, STATUS, TIME, render

T = Now(mono=1000.0, wall=1_790_000_000.0)
UTC = datetime.UTC
UNCLAIMED = Setup(code="K7QM-2XPW", url="http://phonehome.local/setup", claimed=False)


@pytest.fixture
def service(tmp_path, display_config, snapshot_of):
    """Factory: ``service(open_device, snapshot=callable, mirror_path=None, **display settings)``."""
    made = []

    def make(open_device, *, snapshot=None, mirror_path=None, **settings):
        svc = DisplayService(display_config(**settings), snapshot=snapshot or snapshot_of, clock=SystemClock(),
                             data_dir=str(tmp_path), open_device=open_device, tz=UTC, mirror_path=mirror_path)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.stop()


def expected(svc, snapshot, now, *, shift=(0, 0)):
    return render(svc.page, snapshot, width=svc.width, height=svc.height, shift=shift, now_wall=now.wall, tz=UTC)


def display_records(caplog, level):
    return [r.getMessage() for r in caplog.records if r.name == "phonehome.display" and r.levelno == level]


# -- pages and buttons ------------------------------------------------------------------------------------

def test_first_tick_opens_the_device_and_shows_the_status_page(service, opener, make_device, snapshot_of):
    device = make_device()
    open_ = opener(device)
    svc = service(open_)
    assert open_.calls == 0  # nothing touches the hardware before the first tick
    delay = svc.tick(T)
    assert open_.calls == 1 and svc.device is device and svc.page == STATUS
    assert svc.frame.tobytes() == expected(svc, snapshot_of(), T).tobytes()
    assert device.image.tobytes() == svc.frame.tobytes()
    assert 0 < delay <= 1.0


def test_pages_rotate_every_page_s(service, opener, make_device):
    svc = service(opener(make_device()), page_s=5.0)
    shown = []
    for s in (0, 4.9, 5.0, 9.9, 10.0, 15.0):
        svc.tick(T.later(s))
        shown.append(svc.page)
    assert shown == [STATUS, STATUS, NETWORK, NETWORK, TIME, STATUS]


def test_setup_page_rotates_while_the_code_is_unclaimed_and_leaves_once_claimed(service, opener, make_device,
                                                                                 snapshot_of):
    claimed = False

    def snapshot():
        return snapshot_of(setup=None) if claimed else snapshot_of(setup=UNCLAIMED)

    svc = service(opener(make_device()), snapshot=snapshot)
    svc.tick(T)
    svc.tick(T.later(5))
    assert svc.page == SETUP
    claimed = True
    svc.tick(T.later(6))
    assert svc.page == STATUS


def test_next_page_moves_on_at_once_and_restarts_the_page_timer(service, opener, make_device):
    svc = service(opener(make_device()), page_s=5.0)
    svc.tick(T)
    svc.next_page()
    svc.tick(T.later(1))
    assert svc.page == NETWORK
    svc.tick(T.later(5.9))
    assert svc.page == NETWORK
    svc.tick(T.later(6))
    assert svc.page == TIME


def test_show_setup_holds_the_setup_page_then_rotation_goes_on(service, opener, make_device, snapshot_of):
    svc = service(opener(make_device()), snapshot=lambda: snapshot_of(setup=UNCLAIMED))
    svc.tick(T)
    svc.show_setup()
    svc.tick(T.later(1))
    assert svc.page == SETUP
    svc.tick(T.later(1 + SETUP_HOLD_S - 0.1))
    assert svc.page == SETUP
    svc.tick(T.later(1 + SETUP_HOLD_S))
    assert svc.page == NETWORK  # the page after Setup in the rotation


def test_show_setup_works_when_the_code_is_claimed_and_a_press_ends_it(service, opener, make_device):
    svc = service(opener(make_device()))
    svc.tick(T)
    svc.show_setup()
    svc.tick(T.later(1))
    assert svc.page == SETUP  # shows "already set up" and where to manage it
    svc.next_page()
    svc.tick(T.later(2))
    assert svc.page == STATUS


def test_dims_after_dim_after_s_without_a_press_and_wakes_on_wake(service, opener, make_device):
    device = make_device()
    svc = service(opener(device), dim_after_s=300.0)
    svc.tick(T)
    svc.tick(T.later(299.9))
    assert not svc.dimmed and device.contrasts == []
    svc.tick(T.later(300))
    svc.tick(T.later(301))
    assert svc.dimmed and device.contrasts == [DIM_CONTRAST]
    svc.wake()
    svc.tick(T.later(302))
    assert not svc.dimmed and device.contrasts == [DIM_CONTRAST, 0xCF]
    svc.tick(T.later(601.9))
    assert not svc.dimmed
    svc.tick(T.later(602))
    assert svc.dimmed
    svc.next_page()  # a press wakes too
    svc.tick(T.later(603))
    assert not svc.dimmed and device.contrasts == [DIM_CONTRAST, 0xCF, DIM_CONTRAST, 0xCF]


def test_sh1106_wakes_to_its_own_contrast_and_dim_after_0_never_dims(service, opener, make_device):
    device = make_device()
    svc = service(opener(device), driver="sh1106", dim_after_s=10.0)
    svc.tick(T)
    svc.tick(T.later(10))
    svc.wake()
    svc.tick(T.later(11))
    assert device.contrasts == [DIM_CONTRAST, 0x7F]
    never = make_device()
    svc = service(opener(never), dim_after_s=0)
    svc.tick(T)
    svc.tick(T.later(86400 * 30))
    assert not svc.dimmed and never.contrasts == []


def test_content_moves_by_a_pixel_every_few_minutes(service, opener, make_device, snapshot_of):
    svc = service(opener(make_device()))
    for k in range(6):
        now = T.later(k * SHIFT_EVERY_S + 1)
        svc.tick(now)
        assert svc.frame.tobytes() == expected(svc, snapshot_of(), now, shift=SHIFTS[k % 4]).tobytes(), k
    assert SHIFTS == ((0, 0), (1, 0), (1, 1), (0, 1))


def test_the_device_gets_a_frame_only_when_the_picture_changes(service, opener, make_device, snapshot_of):
    device = make_device()
    at = [T.wall]
    svc = service(opener(device), snapshot=lambda: snapshot_of(at=at[0], last_ok_at=T.wall - 12), page_s=60.0)
    svc.tick(T)
    svc.tick(T.later(0.5))
    svc.tick(T.later(0.9))
    assert device.frames == 1
    at[0] = T.wall + 1  # "beat 13 s ago" now
    svc.tick(T.later(1))
    assert device.frames == 2


def test_delay_is_until_the_next_wall_clock_second_or_sooner_work(service, opener, make_device):
    svc = service(opener(make_device()), page_s=5.0)
    assert svc.tick(Now(mono=T.mono, wall=T.wall + 0.25)) == pytest.approx(0.75)
    assert svc.tick(Now(mono=T.mono + 4.9, wall=T.wall + 5.05)) == pytest.approx(0.1)
    assert svc.tick(Now(mono=T.mono + 5.0, wall=T.wall + 5.9999)) == MIN_DELAY_S


# -- absent and failing hardware -----------------------------------------------------------------------------

def test_absent_display_is_said_once_retried_every_60_s_and_frames_keep_coming(service, opener, make_device,
                                                                                tmp_path, caplog):
    caplog.set_level(logging.DEBUG, "phonehome.display")
    missing = luma.core.error.DeviceNotFoundError("I2C device not found on address: 0x3C")
    device = make_device()
    open_ = opener(missing, missing, device)
    mirror = tmp_path / "run" / "display.png"
    svc = service(open_, mirror_path=str(mirror))
    assert svc.tick(T) <= 1.0
    assert svc.device is None and svc.frame is not None and mirror.exists()
    frames = {svc.frame.tobytes()}
    for s in range(1, 60):
        svc.tick(T.later(s))
        frames.add(svc.frame.tobytes())
    assert open_.calls == 1 and len(frames) >= 3  # pages went on rotating
    svc.tick(T.later(RETRY_S))
    assert open_.calls == 2 and svc.device is None
    svc.tick(T.later(2 * RETRY_S))
    assert open_.calls == 3 and svc.device is device
    assert device.image.tobytes() == svc.frame.tobytes()
    assert display_records(caplog, logging.WARNING) == [
        ("no ssd1306 display answers at 0x3C on /dev/i2c-1: check the wiring and [display] i2c_address "
         "('i2cdetect -y 1' lists the addresses that answer); enable I2C with raspi-config; "
         "trying again every 60 s, the agent goes on without it")]
    assert display_records(caplog, logging.INFO) == ["the ssd1306 display at 0x3C on /dev/i2c-1 answers now"]


def test_display_that_stops_answering_mid_run_is_said_once_and_found_again(service, opener, make_device, caplog):
    caplog.set_level(logging.INFO, "phonehome.display")
    flaky, spare = make_device(fail_after=2), make_device()
    open_ = opener(flaky, spare)
    svc = service(open_)
    for s in (0, 5, 10, 15, 20):  # each a new page: the third frame fails
        svc.tick(T.later(s))
    assert flaky.frames == 2 and flaky.cleaned_up and svc.device is None
    assert svc.frame.tobytes() == expected(svc, svc._snapshot(), T.later(20)).tobytes()
    svc.tick(T.later(10 + RETRY_S))
    assert svc.device is spare and spare.image.tobytes() == svc.frame.tobytes()
    assert display_records(caplog, logging.WARNING) == [
        ("the ssd1306 display at 0x3C on /dev/i2c-1 stopped answering (Remote I/O error): check the wiring and "
         "the display's power; trying again every 60 s, the agent goes on without it")]
    assert display_records(caplog, logging.INFO) == [
        "display: the ssd1306 display at 0x3C on /dev/i2c-1, 128x64",
        "the ssd1306 display at 0x3C on /dev/i2c-1 answers again"]


@pytest.mark.parametrize("exc,running,says", [
    (luma.core.error.DeviceNotFoundError("I2C device not found: /dev/i2c-1"), False,
     ("there is no I2C bus /dev/i2c-1 for the ssd1306 display: enable I2C with raspi-config (Interface Options, "
      "I2C) and reboot, or set [display] i2c_port")),
    (FileNotFoundError(errno.ENOENT, "No such file or directory"), False, "there is no I2C bus /dev/i2c-1"),
    (luma.core.error.DevicePermissionError("I2C device permission denied: /dev/i2c-1"), False,
     ("no permission to open /dev/i2c-1 for the ssd1306 display: add the agent's user to the i2c group "
      "('sudo adduser phonehome i2c') and restart the agent")),
    (PermissionError(errno.EACCES, "Permission denied"), False, "add the agent's user to the i2c group"),
    (luma.core.error.DeviceNotFoundError("I2C device not found on address: 0x3C"), False,
     "no ssd1306 display answers at 0x3C on /dev/i2c-1: check the wiring and [display] i2c_address"),
    (OSError(errno.ENXIO, "No such device or address"), False, "no ssd1306 display answers at 0x3C"),
    (ImportError("No module named 'smbus2'"), False,
     ("cannot drive the ssd1306 display at 0x3C on /dev/i2c-1: No module named 'smbus2'; "
      "reinstall phonehome")),
    (OSError(errno.EREMOTEIO, "Remote I/O error"), True,
     ("the ssd1306 display at 0x3C on /dev/i2c-1 stopped answering (Remote I/O error): "
      "check the wiring")),
])
def test_failures_say_what_to_check(display_config, exc, running, says):
    assert says in explain_failure(display_config(), exc, data_dir="/data", running=running)


def test_an_emulator_that_cannot_write_says_which_setting_to_check(display_config):
    config = display_config(driver="emulator", emulator_file="/nowhere/oled.png")
    said = explain_failure(config, PermissionError(errno.EACCES, "Permission denied"), data_dir="/d", running=True)
    assert said == ("cannot write the picture of the display emulator (/nowhere/oled.png): Permission denied; "
                    "check [display] emulator_file and that its directory exists and is writable")


def test_a_missing_i2c_bus_with_the_real_driver_is_said_with_its_number(service, display_config, tmp_path, caplog):
    with pytest.raises(luma.core.error.DeviceNotFoundError):
        open_device(display_config(i2c_port=250), data_dir=str(tmp_path))
    svc = service(open_device, i2c_port=250)
    svc.tick(T)
    svc.tick(T.later(RETRY_S))
    assert svc.device is None and svc.frame is not None
    assert [m.split(":")[0] for m in display_records(caplog, logging.WARNING)] == [
        "there is no I2C bus /dev/i2c-250 for the ssd1306 display"]


class FakeI2c:
    """Stands in for luma's i2c interface: records what luma's drivers send; ``answers=False`` is an empty bus."""

    def __init__(self, port=1, address=0x3C, *, answers=True):
        self.port, self.address, self.answers = port, address, answers
        self.commands, self.closed = [], False

    def command(self, *cmd):
        if not self.answers:
            raise luma.core.error.DeviceNotFoundError(f"I2C device not found on address: 0x{self.address:02X}")
        self.commands.append(cmd)

    def data(self, data):
        pass

    def cleanup(self):
        self.closed = True


@pytest.fixture
def fake_i2c(monkeypatch):
    """Factory: ``fake_i2c(answers=True)`` -> the list of FakeI2c that luma's ``i2c(port, address)`` makes."""
    def install(*, answers=True):
        made = []

        def i2c(port=1, address=0x3C):
            made.append(FakeI2c(port, address, answers=answers))
            return made[-1]

        monkeypatch.setattr(luma.core.interface.serial, "i2c", i2c)
        return made

    return install


@pytest.mark.parametrize("driver,rotate,size", [("ssd1306", 180, (128, 64)), ("sh1106", 90, (32, 128))])
def test_open_device_builds_luma_s_driver_by_name(fake_i2c, display_config, driver, rotate, size):
    made = fake_i2c()
    device = open_device(display_config(driver=driver, height=32 if driver == "sh1106" else 64, rotate=rotate,
                                        i2c_port=3, i2c_address=0x3D), data_dir="/d")
    assert type(device).__name__ == driver and device.size == size and device.rotate == rotate // 90
    serial, = made
    assert (serial.port, serial.address) == (3, 0x3D)
    assert serial.commands[0] == (0xE3,)  # the probe comes before luma's init sequence
    device.persist = True  # nothing to switch off at exit


def test_open_device_closes_the_bus_when_nothing_answers(fake_i2c, display_config):
    made = fake_i2c(answers=False)
    with pytest.raises(luma.core.error.DeviceNotFoundError):
        open_device(display_config(), data_dir="/d")
    assert made[0].closed


def test_driver_none_opens_nothing_and_starts_no_thread(service, opener, make_device):
    open_ = opener(make_device())
    svc = service(open_, driver="none")
    threads = threading.active_count()
    svc.start()
    assert threading.active_count() == threads
    assert svc.tick(T) == IDLE_S and svc.frame is None and open_.calls == 0
    assert open_device(svc.config, data_dir="/d") is None


# -- the emulator and the frame file ---------------------------------------------------------------------------

class Writes:
    """Counts whole-file writes of ``path``: write_atomic renames a new file over it, so its inode changes."""

    def __init__(self, path):
        self.path, self.count, self._inode = path, 0, None

    def check(self):
        inode = os.stat(self.path).st_ino
        if inode != self._inode:
            self.count, self._inode = self.count + 1, inode
        return self.count


def test_emulator_writes_its_png_only_when_the_picture_changes(service, display_config, snapshot_of, tmp_path):
    png = tmp_path / "oled.png"
    at = [T.wall]
    settings = {"driver": "emulator", "emulator_file": str(png), "page_s": 60.0}
    svc = service(open_device, snapshot=lambda: snapshot_of(at=at[0], last_ok_at=T.wall - 12),
                  mirror_path=frame_path(display_config(**settings), str(tmp_path)), **settings)
    assert svc.mirror_path == str(png)  # the emulator's file is the frame file
    writes = Writes(png)
    svc.tick(T)
    assert isinstance(svc.device, EmulatorDevice) and writes.check() == 1
    for s in (0.2, 0.5, 0.9):
        svc.tick(T.later(s))
        assert writes.check() == 1
    at[0] = T.wall + 1
    svc.tick(T.later(1))
    assert writes.check() == 2
    with Image.open(png) as shown:
        assert shown.mode == "1" and shown.tobytes() == svc.frame.tobytes()


def test_emulator_writes_the_picture_upright_when_the_panel_is_turned(service, tmp_path):
    png = tmp_path / "oled.png"
    svc = service(open_device, driver="emulator", emulator_file=str(png), rotate=90)
    svc.tick(T)
    assert (svc.width, svc.height) == (64, 128)
    assert svc.device.image.size == (128, 64)  # what the controller gets
    with Image.open(png) as shown:
        assert shown.size == (64, 128) and shown.tobytes() == svc.frame.tobytes()


def test_stop_blanks_the_emulator_picture(service, tmp_path):
    png = tmp_path / "oled.png"
    svc = service(open_device, driver="emulator", emulator_file=str(png))
    svc.tick(T)
    svc.stop()
    with Image.open(png) as shown:
        assert shown.getbbox() is None


def test_frame_file_is_written_when_the_picture_changes_and_kept_fresh_while_it_does_not(service, opener,
                                                                                        make_device, tmp_path):
    mirror = tmp_path / "run" / "display.png"  # the directory is made on the first write
    svc = service(opener(make_device()), mirror_path=str(mirror), page_s=5.0)
    writes = Writes(mirror)
    svc.tick(T)
    svc.tick(T.later(0.5))
    assert writes.check() == 1
    svc.show_setup()  # held for a minute: the picture stays the same
    svc.tick(T.later(1))
    assert writes.check() == 2
    os.utime(mirror, (0, 0))
    svc.tick(T.later(3))
    assert os.stat(mirror).st_mtime == 0  # touched no more often than every page_s
    svc.tick(T.later(6))
    assert os.stat(mirror).st_mtime > 0 and writes.check() == 2
    with Image.open(mirror) as shown:
        assert shown.tobytes() == svc.frame.tobytes()
    svc.stop()
    assert not mirror.exists()  # a stopped agent leaves no picture that could pass for a live one


def test_frame_file_that_cannot_be_written_is_said_once_and_the_display_goes_on(service, opener, make_device,
                                                                               tmp_path, caplog):
    (tmp_path / "file").write_text("")
    device = make_device()
    svc = service(opener(device), mirror_path=str(tmp_path / "file" / "display.png"))
    for s in range(0, 130, 5):
        svc.tick(T.later(s))
    assert device.frames > 20
    warnings = display_records(caplog, logging.WARNING)
    assert len(warnings) == 1 and warnings[0].startswith(f"cannot write the display's picture to {tmp_path}/file/")


def test_frame_path_prefers_systemd_s_runtime_directory_read_when_called(monkeypatch, display_config, tmp_path):
    config = display_config()
    monkeypatch.setenv("RUNTIME_DIRECTORY", f"{tmp_path}/a:{tmp_path}/b")
    assert frame_path(config, "/data") == f"{tmp_path}/a/display.png"
    monkeypatch.delenv("RUNTIME_DIRECTORY")
    assert frame_path(config, "/data", run_dir=str(tmp_path)) == f"{tmp_path}/display.png"
    assert frame_path(config, "/data", environ={}, run_dir=str(tmp_path / "no" / "phonehome")) is None
    # The emulator's picture goes to RAM under systemd too (a new PNG a second would wear the card),
    # and next to the data outside it.
    assert frame_path(display_config(driver="emulator"), "/data", environ={"RUNTIME_DIRECTORY": "/r:/s"}) == \
        "/r/display.png"
    assert frame_path(display_config(driver="emulator"), "/data", environ={}) == "/data/display.png"
    assert frame_path(display_config(driver="emulator", emulator_file="/x/oled.png"), "/data") == "/x/oled.png"


# -- start and stop --------------------------------------------------------------------------------------------

def test_stop_blanks_the_display_and_is_idempotent(service, opener, make_device):
    device = make_device()
    svc = service(opener(device))
    svc.tick(T)
    assert device.image.getbbox() is not None
    svc.stop()
    assert device.image.getbbox() is None and device.cleaned_up and svc.device is None
    svc.stop()
    svc.start()  # a stopped service stays stopped
    assert svc._thread is None


class SignallingDevice:
    """Wraps a RecordingDevice: ``shown`` is set at each frame."""

    def __init__(self, device):
        self.device, self.shown = device, threading.Event()
        self.display_real = device.display
        device.display = self._display

    def _display(self, image):
        self.display_real(image)
        self.shown.set()


def test_start_runs_the_loop_in_a_thread_and_a_press_is_served_at_once(service, opener, make_device):
    device = make_device()
    signal = SignallingDevice(device)
    svc = service(opener(device), page_s=3600.0)
    svc.start()
    assert signal.shown.wait(10)
    first = svc.page
    signal.shown.clear()
    svc.next_page()  # wakes the loop: no waiting for the next second
    assert signal.shown.wait(10)
    assert (first, svc.page) == (STATUS, NETWORK)
    thread = svc._thread
    svc.stop()
    assert not thread.is_alive() and device.image.getbbox() is None


def test_the_thread_survives_a_failing_snapshot_and_says_so_once(service, opener, make_device, snapshot_of,
                                                                 caplog):
    device = make_device()
    signal = SignallingDevice(device)
    asked = threading.Event()
    calls = []

    def snapshot():
        calls.append(1)
        asked.set()
        if len(calls) == 1:
            raise ValueError("a bug")
        return snapshot_of()

    svc = service(opener(device), snapshot=snapshot)
    svc.start()
    assert asked.wait(10)
    svc.wake()  # the loop waits a second after a failure; a press needs no waiting
    assert signal.shown.wait(10)
    svc.stop()
    errors = display_records(caplog, logging.ERROR)
    assert errors == ["the display could not draw its page; trying again every second"]

"""The OLED as a device: a luma device picked by name, the file that mirrors its frame, and what a failure means.

``open_device`` builds the device ``[display] driver`` names: ssd1306 or
sh1106 on I2C, ``emulator`` (luma's dummy device that also writes each new
frame as a PNG) or nothing for "none". ``explain_failure`` turns what a
missing or failing display raises into one sentence saying what to check.
"""

import errno
import io
import logging
import os

import luma.core.error
from luma.core.device import dummy

from appliance.atomic import write_atomic

log = logging.getLogger("phonehome.display")

FRAME_FILE = "display.png"
RUN_DIR = "/run/phonehome"
# What a missing or failing display raises: the bus or device file (OSError), luma's own errors
# (DeviceNotFoundError, DevicePermissionError, ...) and a missing smbus2 (ImportError).
FAILURES = (OSError, luma.core.error.Error, ImportError)
# The SSD1306's and SH1106's "no operation" command: proves something answers at the address.
_NOP = 0xE3


class EmulatorDevice(dummy):
    """luma's ``dummy`` device that also writes each new frame to ``path`` as a PNG (atomically).

    The PNG holds the picture upright, as a person reads the panel, whatever
    ``rotate`` is; ``image`` holds it as the panel's controller would get it.
    A frame equal to the last one written is not written again. Raises
    OSError from ``display`` when the file cannot be written.
    """

    def __init__(self, path, *, width=128, height=64, rotate=0):
        super().__init__(width=width, height=height, rotate=rotate, mode="1")
        self.path = path
        # luma clears a device at exit; the emulator's picture is cleared by DisplayService.stop instead.
        self.persist = True
        self._written = None

    def display(self, image):
        super().display(image)
        data = image.tobytes()
        if data != self._written:
            write_atomic(self.path, png_bytes(image))
            self._written = data


def open_device(display_config, *, data_dir):
    """The luma device ``display_config.driver`` names, ready to ``display()``; None for driver "none".

    ``ssd1306`` and ``sh1106`` talk I2C on /dev/i2c-``i2c_port`` at
    ``i2c_address``; ``emulator`` writes PNGs to ``emulator_path()``. The
    device takes pictures of its ``size`` (width and height swapped when
    ``rotate`` is 90 or 270). Raises OSError, luma.core.error.Error or
    ImportError when the display cannot be reached; ``explain_failure``
    turns those into what to check.
    """
    driver, rotate = display_config.driver, display_config.rotate // 90
    width, height = display_config.width, display_config.height
    if driver == "none":
        return None
    if driver == "emulator":
        return EmulatorDevice(emulator_path(display_config, data_dir), width=width, height=height, rotate=rotate)
    from luma.core.interface.serial import i2c
    from luma.oled.device import sh1106, ssd1306

    make = {"ssd1306": ssd1306, "sh1106": sh1106}[driver]
    serial = i2c(port=display_config.i2c_port, address=display_config.i2c_address)
    try:
        # Asked first, so an absent display fails before luma builds a device: each luma device is kept
        # alive by an atexit hook, and a retry every minute would otherwise pile them up, bus open.
        serial.command(_NOP)
        return make(serial, width=width, height=height, rotate=rotate)
    except BaseException:
        serial.cleanup()
        raise


def emulator_path(display_config, data_dir, *, environ=None):
    """Where the emulator driver writes its PNG.

    ``emulator_file`` when set; otherwise display.png in systemd's
    ``$RUNTIME_DIRECTORY`` (in RAM: a new picture every second would
    otherwise write hundreds of MB a day to the SD card), read from
    ``environ`` (default os.environ) at call time; outside systemd
    data_dir/display.png, where a developer looks for it.
    """
    if display_config.emulator_file:
        return display_config.emulator_file
    runtime = _runtime_dir(os.environ if environ is None else environ)
    return os.path.join(runtime or data_dir, FRAME_FILE)


def _runtime_dir(environ):
    """The first directory of systemd's ``$RUNTIME_DIRECTORY``, or None outside a unit that sets one."""
    return environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or None


def frame_path(display_config, data_dir, *, environ=None, run_dir=RUN_DIR):
    """The file that mirrors the frame on the display, for ``phonehome display snapshot``; None for none.

    The emulator's own PNG for driver "emulator"; otherwise display.png in
    systemd's ``$RUNTIME_DIRECTORY`` when set (read from ``environ``, default
    os.environ, at call time), else in ``run_dir`` (/run/phonehome) if it
    exists or could be made. /run is in memory: a frame a second never wears
    the SD card.
    """
    environ = os.environ if environ is None else environ
    if display_config.driver == "emulator":
        return emulator_path(display_config, data_dir, environ=environ)
    runtime = _runtime_dir(environ)
    if runtime:
        return os.path.join(runtime, FRAME_FILE)
    if os.path.isdir(run_dir) or os.access(os.path.dirname(run_dir.rstrip("/")) or "/", os.W_OK):
        return os.path.join(run_dir, FRAME_FILE)
    return None


def png_bytes(image):
    """``image`` encoded as PNG."""
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def describe(display_config, data_dir):
    """'the ssd1306 display at 0x3C on /dev/i2c-1', or the emulator and its file, for log lines."""
    if display_config.driver == "emulator":
        return f"the display emulator ({emulator_path(display_config, data_dir)})"
    return (f"the {display_config.driver} display at 0x{display_config.i2c_address:02X} "
            f"on /dev/i2c-{display_config.i2c_port}")


def explain_failure(display_config, exc, *, data_dir, running):
    """One sentence: what failed and what to check. ``running`` is True when it failed mid-run."""
    driver, port = display_config.driver, display_config.i2c_port
    bus, where = f"/dev/i2c-{port}", describe(display_config, data_dir)
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if driver == "emulator":
        return (f"cannot write the picture of {where}: {reason}; check [display] emulator_file and that its "
                f"directory exists and is writable")
    if running:
        return f"{where} stopped answering ({reason}): check the wiring and the display's power"
    if isinstance(exc, ImportError):
        return f"cannot drive {where}: {exc}; reinstall phonehome so that luma.oled and smbus2 are installed"
    code = getattr(exc, "errno", None)
    if isinstance(exc, luma.core.error.DevicePermissionError) or code in (errno.EACCES, errno.EPERM):
        return (f"no permission to open {bus} for the {driver} display: add the agent's user to the i2c group "
                f"('sudo adduser phonehome i2c') and restart the agent")
    no_bus = code == errno.ENOENT or (isinstance(exc, luma.core.error.DeviceNotFoundError)
                                      and "address" not in str(exc))
    if no_bus:
        return (f"there is no I2C bus {bus} for the {driver} display: enable I2C with raspi-config "
                f"(Interface Options, I2C) and reboot, or set [display] i2c_port")
    return (f"no {driver} display answers at 0x{display_config.i2c_address:02X} on {bus}: check the wiring and "
            f"[display] i2c_address ('i2cdetect -y {port}' lists the addresses that answer); "
            f"enable I2C with raspi-config")


def close_device(device, *, blank):
    """Blank (when asked), switch off and release ``device``; a display that is gone is no error here."""
    try:
        if not blank:
            device.persist = True  # luma's cleanup then only closes the bus, sending nothing
        elif device.persist:
            device.clear()
        device.cleanup()
    except FAILURES as exc:
        log.debug("closing the display: %s", exc)

"""The service that keeps the status pages on the OLED.

``hardware.oled`` builds the device ``[display] driver`` names (ssd1306 or
sh1106 on I2C, or ``emulator``: luma's dummy device that also writes each new
frame as a PNG). ``DisplayService`` decides what is shown: ``tick(now)``
picks the page, renders it with ``hardware.pages``, hands the picture to the
device only when it changed, dims after ``dim_after_s`` without a button
press and moves everything by a pixel now and then against burn-in. It writes
the frame it shows to a file in /run (``frame_path``), which is where
``phonehome display snapshot`` and the web page get exactly that picture.

A display that is missing or stops answering never stops the agent: one log
line says what to check, the service retries every 60 s and keeps rendering
frames (the file and ``frame`` still show them), and one line says when it
answers again.
"""

import logging
import os
import threading

from appliance.atomic import write_atomic
from hardware.oled import (
    FAILURES,
    close_device,
    describe,
    emulator_path,
    explain_failure,
    frame_path,
    open_device,
    png_bytes,
)
from hardware.pages import SETUP, pages_for, render

log = logging.getLogger("phonehome.display")

RETRY_S = 60.0
SHIFT_EVERY_S = 180.0
SHIFTS = ((0, 0), (1, 0), (1, 1), (0, 1))
# A held button shows the setup code long enough to type it on a phone; a short press moves on sooner.
SETUP_HOLD_S = 60.0
# Dimmed, not switched off: the box must still answer a glance ("is the Internet down?") at 3 a.m.
# OLED wear grows with the current, which the contrast setting cuts to a fraction. Luma's
# drivers start at these levels, so waking restores them.
DIM_CONTRAST = 0x00
NORMAL_CONTRAST = {"ssd1306": 0xCF, "sh1106": 0x7F}
MIN_DELAY_S = 0.02
IDLE_S = 3600.0
_AUTO = object()


# -- the service ---------------------------------------------------------------------------------------

class DisplayService:
    """Shows the status pages on the OLED: rotation, button actions, dimming, burn-in shift, retries.

    ``snapshot`` is a callable returning the current appliance.status.Snapshot;
    ``clock`` gives ``Now`` readings (appliance.clock) for the thread;
    ``open_device(display_config, data_dir=…)`` makes the device (tests hand
    in luma's dummy); ``tz`` is the zone the Time page shows (None: the
    system's). ``mirror_path`` is where the shown frame is also written as
    PNG; default ``frame_path(display_config, data_dir)``, None: nowhere.
    Nothing touches the hardware until the first ``tick``. Driver "none"
    makes a service that does nothing.
    """

    def __init__(self, display_config, *, snapshot, clock, data_dir, open_device=open_device, tz=None,
                 mirror_path=_AUTO):
        self.config = display_config
        self._snapshot = snapshot
        self._clock = clock
        self._data_dir = data_dir
        self._open_device = open_device
        self._tz = tz
        self.mirror_path = frame_path(display_config, data_dir) if mirror_path is _AUTO else mirror_path
        swap = display_config.rotate in (90, 270)
        self.width = display_config.height if swap else display_config.width
        self.height = display_config.width if swap else display_config.height
        self.frame = None  # the last picture rendered: what the panel shows (or would, were it there)
        self.page = None
        self.dimmed = False
        self._lock = threading.Lock()
        self._presses = []
        self._kick = threading.Event()
        self._stopping = threading.Event()
        self._thread = None
        self._stopped = False
        self._device = None
        self._device_dimmed = False
        self._answered_once = False
        self._failing = False
        self._retry_at = None
        self._started_at = None
        self._page_since = None
        self._pinned_until = None
        self._active_since = None
        self._frame_bytes = None
        self._shown = None
        self._mirror_bytes = None
        self._mirror_at = None
        self._mirror_failing = False
        self._mirror_retry_at = None

    @property
    def enabled(self):
        """False for driver "none": the service then renders nothing and starts no thread."""
        return self.config.driver != "none"

    @property
    def device(self):
        """The luma device in use, or None while the display is absent."""
        return self._device

    # -- the button (called from gpiozero's thread) --

    def next_page(self):
        """Show the next page now and wake the display (a short press)."""
        self._press("next")

    def show_setup(self):
        """Show the Setup page, with the code, for SETUP_HOLD_S, and wake the display (a long hold)."""
        self._press("setup")

    def wake(self):
        """Undim the display and restart the dimming countdown."""
        self._press("wake")

    def _press(self, action):
        with self._lock:
            self._presses.append(action)
        self._kick.set()

    # -- one step --

    def tick(self, now):
        """Do what is due at ``now`` (appliance.clock.Now); return the seconds until there is more to do.

        Applies button presses, opens the device when a retry is due, renders
        the page and hands it to the device and the mirror file only if the
        picture changed, and dims or wakes. Device failures are logged (once)
        and retried, never raised; an exception from ``snapshot()`` is. After
        ``stop()`` (and for driver "none") it does nothing.
        """
        if not self.enabled or self._stopped:
            return IDLE_S
        if self._started_at is None:
            self._started_at = self._active_since = self._page_since = now.mono
        if self._device is None and (self._retry_at is None or now.mono >= self._retry_at):
            self._try_open(now)
        snapshot = self._snapshot()
        self._choose_page(pages_for(snapshot), now)
        shift = SHIFTS[int((now.mono - self._started_at) // SHIFT_EVERY_S) % len(SHIFTS)]
        frame = render(self.page, snapshot, width=self.width, height=self.height, shift=shift, now_wall=now.wall,
                       tz=self._tz)
        data = frame.tobytes()
        if data != self._frame_bytes:
            self.frame, self._frame_bytes = frame, data
        self._show(now)
        self._dim(now)
        self._mirror(now)
        return self._delay(now)

    def _choose_page(self, rotation, now):
        with self._lock:
            presses, self._presses = self._presses, []
        for action in presses:
            self._active_since = now.mono
            if action == "next":
                at = rotation.index(self.page) if self.page in rotation else -1
                self.page, self._page_since, self._pinned_until = rotation[(at + 1) % len(rotation)], now.mono, None
            elif action == "setup":
                self.page, self._page_since, self._pinned_until = SETUP, now.mono, now.mono + SETUP_HOLD_S
        if self._pinned_until is not None:
            if now.mono < self._pinned_until:
                return
            self._pinned_until, self._page_since = None, now.mono - self.config.page_s
        if self.page not in rotation:
            self.page, self._page_since = rotation[0], now.mono
        elif now.mono - self._page_since >= self.config.page_s:
            self.page = rotation[(rotation.index(self.page) + 1) % len(rotation)]
            self._page_since = now.mono

    def _delay(self, now):
        # Ages and the clock move on the wall clock's seconds: tick just after each one.
        due = [1.0 - now.wall % 1.0]
        due.append((self._pinned_until or self._page_since + self.config.page_s) - now.mono)
        if self.config.dim_after_s and not self.dimmed:
            due.append(self._active_since + self.config.dim_after_s - now.mono)
        if self._device is None and self._retry_at is not None:
            due.append(self._retry_at - now.mono)
        return max(MIN_DELAY_S, min(due))

    # -- the device --

    def _try_open(self, now):
        try:
            device = self._open_device(self.config, data_dir=self._data_dir)
        except FAILURES as exc:
            self._retry_at = now.mono + RETRY_S
            if self._failing:
                log.debug("display still absent: %s", exc)
            else:
                self._failing = True
                log.warning("%s; trying again every %.0f s, the agent goes on without it",
                            explain_failure(self.config, exc, data_dir=self._data_dir, running=False), RETRY_S)
            return
        if device is None:
            self._retry_at = now.mono + IDLE_S
            return
        self._device, self._shown, self._device_dimmed, self._retry_at = device, None, False, None
        where = describe(self.config, self._data_dir)
        if self._failing:
            log.info("%s answers %s", where, "again" if self._answered_once else "now")
        else:
            log.info("display: %s, %dx%d", where, self.width, self.height)
        self._failing, self._answered_once = False, True

    def _lost(self, exc, now):
        log.warning("%s; trying again every %.0f s, the agent goes on without it",
                    explain_failure(self.config, exc, data_dir=self._data_dir, running=True), RETRY_S)
        device, self._device = self._device, None
        self._failing, self._retry_at = True, now.mono + RETRY_S
        close_device(device, blank=False)

    def _show(self, now):
        if self._device is None or self._frame_bytes == self._shown:
            return
        try:
            self._device.display(self.frame)
        except FAILURES as exc:
            self._lost(exc, now)
            return
        self._shown = self._frame_bytes

    def _dim(self, now):
        dim_after_s = self.config.dim_after_s
        self.dimmed = bool(dim_after_s) and now.mono - self._active_since >= dim_after_s
        if self._device is None or self.dimmed == self._device_dimmed:
            return
        level = DIM_CONTRAST if self.dimmed else NORMAL_CONTRAST.get(self.config.driver, 0xCF)
        try:
            self._device.contrast(level)
        except FAILURES as exc:
            self._lost(exc, now)
            return
        self._device_dimmed = self.dimmed
        log.debug("display %s", "dimmed" if self.dimmed else "awake")

    # -- the frame file --

    def _mirror(self, now):
        path = self.mirror_path
        if path is None or (self._mirror_retry_at is not None and now.mono < self._mirror_retry_at):
            return
        # The emulator writes this very file itself, and only when the picture changes.
        written_by_device = self._emulator_writes(path)
        try:
            if self._frame_bytes != self._mirror_bytes and not written_by_device:
                os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                write_atomic(path, png_bytes(self.frame))
                self._mirror_bytes, self._mirror_at = self._frame_bytes, now.mono
            elif self._mirror_at is None or now.mono - self._mirror_at >= self.config.page_s:
                # A steady picture still proves the agent runs: the CLI trusts a file touched lately.
                os.utime(path)
                self._mirror_at = now.mono
        except FileNotFoundError:
            self._mirror_bytes = None  # removed (or not written yet): written afresh next tick
            return
        except OSError as exc:
            self._mirror_bytes, self._mirror_retry_at = None, now.mono + RETRY_S
            if not self._mirror_failing:
                self._mirror_failing = True
                log.warning("cannot write the display's picture to %s (%s): 'phonehome display snapshot' will "
                            "draw its own; check that the directory is writable (systemd: RuntimeDirectory=)",
                            path, exc.strerror or exc)
            return
        if self._mirror_failing:
            self._mirror_failing = False
            log.info("writing the display's picture to %s again", path)

    def _emulator_writes(self, path):
        return self.config.driver == "emulator" and path == emulator_path(self.config, self._data_dir)

    # -- the thread --

    def start(self):
        """Run ``tick`` in a thread until ``stop()``. Does nothing for driver "none" or when already started."""
        if not self.enabled or self._thread is not None or self._stopped:
            return
        self._thread = threading.Thread(target=self._run, name="phonehome-display", daemon=True)
        self._thread.start()

    def _run(self):
        broken = False
        while not self._stopping.is_set():
            self._kick.clear()
            try:
                delay = self.tick(self._clock.now())
                broken = False
            except Exception:
                # A bug in drawing must not end the thread, nor the agent's heartbeats; said once, not each second.
                if not broken:
                    log.exception("the display could not draw its page; trying again every second")
                broken, delay = True, 1.0
            self._kick.wait(delay)

    def stop(self):
        """End the thread, blank and switch off the display, remove the frame file. Idempotent; never raises."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        device, self._device = self._device, None
        if device is not None:
            close_device(device, blank=True)
        # A frame left behind would pass for the running agent's until it went stale.
        if self.mirror_path and self._mirror_bytes is not None and not self._emulator_writes(self.mirror_path):
            try:
                os.unlink(self.mirror_path)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

"""Luma's ``dummy`` device standing in for the OLED (recording, or failing on cue), snapshots and Display configs."""

import errno

import pytest
from gpiozero.pins.mock import MockFactory
from luma.core.device import dummy

from appliance.config.schema import Display
from appliance.status import Network, Setup, Snapshot

T0_WALL = 1_790_000_000.0


class RecordingDevice(dummy):
    """luma's dummy device that also counts frames and records contrast levels.

    ``fail_after`` frames accepted, every later ``display()`` raises the
    OSError an I2C write to a display that is no longer there raises.
    """

    def __init__(self, width=128, height=64, rotate=0, *, fail_after=None):
        super().__init__(width=width, height=height, rotate=rotate, mode="1")
        self.frames = 0
        self.contrasts = []
        self.cleaned_up = False
        self.fail_after = fail_after

    def display(self, image):
        if self.fail_after is not None and self.frames >= self.fail_after:
            raise OSError(errno.EREMOTEIO, "Remote I/O error")
        super().display(image)
        self.frames += 1

    def contrast(self, level):
        super().contrast(level)
        self.contrasts.append(level)

    def cleanup(self):
        super().cleanup()
        self.cleaned_up = True


class Opener:
    """An ``open_device`` for DisplayService: hands out ``devices`` in turn; an exception in the list is raised."""

    def __init__(self, *devices):
        self.devices = list(devices)
        self.calls = 0

    def __call__(self, display_config, *, data_dir):
        self.calls += 1
        item = self.devices.pop(0) if len(self.devices) > 1 else self.devices[0]
        if isinstance(item, BaseException):
            raise item
        return item


@pytest.fixture
def display_config():
    """Factory: ``display_config(**changes)`` -> a Display for an SSD1306 128x64 with the defaults, changed."""
    def make(**changes):
        return Display(**{"driver": "ssd1306", **changes})
    return make


def make_snapshot(at=T0_WALL, **changes):
    """A healthy appliance, last beat 12 s before ``at``, setup code already claimed; ``changes`` apply."""
    facts = {"at": at, "device_name": "home", "configured": True, "heartbeat": "ok", "last_ok_at": at - 12,
             "beats_sent": 5, "last_error": None, "network": Network(interface="eth0", ip="192.0.2.10"),
             "time_verdict": "ok", "time_reason": "", "time_offset_ms": 3.0, "time_zone": "UTC", "uptime_s": 3600.0,
             "setup": Setup(code="K7QM-2XPW", url="http://phonehome.local/setup", claimed=True)}
    facts.update(changes)
    return Snapshot(**facts)


@pytest.fixture
def snapshot_of():
    """``make_snapshot`` as a fixture: ``snapshot_of(at=…, **changes)``."""
    return make_snapshot


@pytest.fixture
def make_device():
    """Factory: ``make_device(width=128, height=64, rotate=0, fail_after=None)`` -> a RecordingDevice."""
    return RecordingDevice


@pytest.fixture
def opener():
    """Factory: ``opener(device_or_exception, …)`` -> an Opener to pass as DisplayService's open_device."""
    return Opener


@pytest.fixture
def factory():
    """A fresh gpiozero MockFactory, passed to devices explicitly (never set as gpiozero's global one)."""
    factory = MockFactory()
    yield factory
    factory.close()

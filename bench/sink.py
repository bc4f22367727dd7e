"""A real SMTP server (aiosmtpd) in the bench process that stamps every message as it is accepted.

The stamp is taken when the whole message has arrived (DATA complete),
just before the server answers "250", on both clocks of this machine:
``time.monotonic()`` for latencies against times taken in this process, and
``time.time()`` to line up with the wall-clock times the monitor stores.
"""

import logging
import threading
import time
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import default as default_policy

from aiosmtpd.controller import Controller

from bench.common import free_port


@dataclass(frozen=True)
class Arrival:
    """One accepted message: which device and kind (from phonehome's X- headers), when, on both clocks."""

    device: str
    kind: str
    subject: str
    mono: float
    wall: float


class StampingSink:
    """aiosmtpd handler keeping an Arrival per message; ``wait_for`` blocks until a matching one comes."""

    def __init__(self):
        self.arrivals = []
        self._cond = threading.Condition()
        self._parser = BytesHeaderParser(policy=default_policy)

    async def handle_DATA(self, server, session, envelope):
        mono, wall = time.monotonic(), time.time()
        headers = self._parser.parsebytes(envelope.content)
        arrival = Arrival(str(headers.get("X-Phonehome-Device", "")), str(headers.get("X-Phonehome-Kind", "")),
                          str(headers.get("Subject", "")), mono, wall)
        with self._cond:
            self.arrivals.append(arrival)
            self._cond.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, device, kind, *, after_mono, timeout_s):
        """The first Arrival of ``kind`` for ``device`` stamped after ``after_mono``; None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for a in self.arrivals:
                    if a.device == device and a.kind == kind and a.mono > after_mono:
                        return a
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def count(self, kind=None):
        with self._cond:
            return sum(1 for a in self.arrivals if kind is None or a.kind == kind)


class SmtpSink:
    """A running StampingSink on 127.0.0.1 (context manager); ``port``, ``handler``."""

    def __init__(self):
        self.handler = StampingSink()
        self.port = free_port()
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self._controller.start()
        return self

    def __exit__(self, *exc):
        self._controller.stop()
        return False

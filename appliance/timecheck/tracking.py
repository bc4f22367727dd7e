"""Each server across checks: ntpq's reach register and jitter. Pure: one answer in, a new ServerStatus out."""

import math
from dataclasses import dataclass

from appliance.timecheck.ntp import ServerAnswer

REACH_BITS = 8
JITTER_SAMPLES = 8
STEP_MS = 128.0  # ntpd's step threshold: a larger jump between two answers is a clock step, not jitter


@dataclass(frozen=True)
class ServerStatus:
    """One configured server: its latest answer and what the last checks said.

    ``reach`` is ntpq's 8-bit shift register (bit 0 = the latest attempt, 1
    when a packet came back; 0o377 = the last 8 all did). ``offsets_ms`` are
    the offsets of the last ok answers (at most 8, oldest first, from the
    same address).
    """

    answer: ServerAnswer
    reach: int = 0
    offsets_ms: tuple[float, ...] = ()
    address: str | None = None

    @property
    def server(self):
        return self.answer.server

    @property
    def jitter_ms(self):
        """ntpd's peer jitter in ms: RMS of the differences between the newest offset and the earlier ones.

        None with fewer than two ok answers from this server's current address.
        """
        if len(self.offsets_ms) < 2:
            return None
        newest = self.offsets_ms[-1]
        earlier = self.offsets_ms[:-1]
        return math.sqrt(sum((o - newest) ** 2 for o in earlier) / len(earlier))


def track(previous, answer):
    """The ServerStatus after ``answer``, given the ``previous`` one (None for a server's first check).

    A new address (pool names rotate) starts a new jitter series: offsets
    from two different machines say nothing about either one's jitter. So
    does an offset more than ``STEP_MS`` (128 ms, ntpd's step threshold) from
    the previous one: our clock (or the server's) was stepped, and jitter
    measured across the step would stay huge for the next 8 checks although
    the clock is steady again.
    """
    reach = (((previous.reach if previous else 0) << 1) | (1 if answer.replied else 0)) & (2 ** REACH_BITS - 1)
    offsets = previous.offsets_ms if previous else ()
    address = previous.address if previous else None
    if answer.ok:
        if answer.address != address:
            offsets, address = (), answer.address
        elif offsets and abs(answer.offset_ms - offsets[-1]) > STEP_MS:
            offsets = ()
        offsets = (offsets + (answer.offset_ms,))[-JITTER_SAMPLES:]
    return ServerStatus(answer=answer, reach=reach, offsets_ms=offsets, address=address)


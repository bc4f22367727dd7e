"""Acknowledged outages: a person said "I know", so reminders stop for a while. Pure, but for the link's HMAC.

An acknowledgement belongs to one outage (the store's outage id) and lasts
``monitor.ack_duration_s``: while it lasts the outage's REMINDER events are
recorded but not sent; when the outage outlives it, reminders resume; the UP
alert is always sent. It ends on the monotonic clock while the process runs,
as a pause does; the wall-clock end is kept for people and for a restart.

A DOWN or REMINDER alert can carry a link that acknowledges its outage
without a login: the link is a capability, an HMAC over (device, outage id,
expiry) with a key derived from the monitor's secret in data_dir. Knowing a
link lets one acknowledge that one outage, nothing else, until it expires.
"""

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from appliance.errors import AckError

# How long the link in an alert works: long enough for a week away, short enough that old mail is harmless.
LINK_VALID_S = 7 * 86400.0
MAX_TOKEN = 200
_KEY_PURPOSE = b"phonehome acknowledgement links v1"


@dataclass(frozen=True)
class Ack:
    """One outage's acknowledgement: wall-clock epoch seconds; ``by`` is "link", "dashboard" or "api"."""

    outage_id: int
    acked_at: float
    until: float
    by: str


class Acks:
    """The acknowledged outages, one per device at most (a device has one outage at a time)."""

    def __init__(self, stored=None, *, now):
        """``stored`` is {device: Ack} of the devices' current outages; ended ones are dropped."""
        self._acks = {}  # device -> (Ack, monotonic end)
        for device, ack in (stored or {}).items():
            if ack.until > now.wall:
                self._acks[device] = (ack, now.mono + (ack.until - now.wall))

    def acknowledge(self, device, ack, now):
        """Keep ``ack`` for ``device`` (replacing any), ending ``ack.until - now.wall`` from ``now``; return it."""
        self._acks[device] = (ack, now.mono + (ack.until - now.wall))
        return ack

    def drop(self, device):
        """Forget ``device``'s acknowledgement (its outage ended); True when it had one."""
        return self._acks.pop(device, None) is not None

    def get(self, device, now):
        """``device``'s Ack while it lasts, else None."""
        entry = self._acks.get(device)
        if entry is None:
            return None
        ack, end = entry
        if now.mono >= end:
            del self._acks[device]
            return None
        return ack

    def active(self, now):
        """{device: Ack} of every acknowledgement that lasts at ``now``."""
        return {d: a for d in list(self._acks) if (a := self.get(d, now)) is not None}


@dataclass(frozen=True)
class AckLink:
    """What an acknowledgement link names: the outage ``outage_id`` of ``device``, until ``expires_at`` (wall)."""

    device: str
    outage_id: int
    expires_at: float


def link_key(secret):
    """The links' HMAC key, derived from the monitor's secret (bytes) so it signs nothing else."""
    return hmac.new(secret, _KEY_PURPOSE, hashlib.sha256).digest()


def make_token(key, device, outage_id, expires_at):
    """The URL-safe token of an acknowledgement link (see ``read_token``)."""
    payload = f"{device}/{int(outage_id)}/{int(expires_at)}".encode()
    return f"{_b64(payload)}.{_b64(_mac(key, payload))}"


def read_token(key, token, *, now_wall):
    """The AckLink a token names; raises AckError (reason "forged" or "expired") saying what to do instead."""
    forged = AckError("this acknowledgement link is not valid: it was changed or cut short on the way; open the "
                      "link from the alert exactly as it is, or acknowledge on the device's page", reason="forged")
    if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 1:
        raise forged
    payload_text, mac_text = token.split(".")
    try:
        payload, mac = _unb64(payload_text), _unb64(mac_text)
    except (binascii.Error, ValueError):
        raise forged from None
    if not hmac.compare_digest(mac, _mac(key, payload)):
        raise forged
    try:
        device, outage_id, expires_at = payload.decode().split("/")
        link = AckLink(device, int(outage_id), float(int(expires_at)))
    except ValueError:  # signed by us, so only an older format could land here
        raise forged from None
    if now_wall >= link.expires_at:
        raise AckError("this acknowledgement link has expired (links in alerts work for "
                       f"{int(LINK_VALID_S // 86400)} days); acknowledge on the device's page instead",
                       reason="expired")
    return link


def _mac(key, payload):
    return hmac.new(key, payload, hashlib.sha256).digest()[:16]


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text):
    if not text or not text.isascii():
        raise ValueError("empty or not ASCII")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

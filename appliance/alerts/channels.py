"""The channels that carry an alert ``Message`` to a person.

Each channel has a stable ``name`` (the delivery queue's key for it), a
``label`` that is safe to log (no secrets), and ``send(message)``, which
returns when the message was handed over and otherwise raises
``DeliveryError`` whose ``retryable`` says whether trying later can help.

- ``EmailChannel`` (module ``smtp``): SMTP, also for carrier e-mail-to-SMS gateways.
- ``AppriseChannel``: one Apprise URL (ntfy, Pushover, Telegram, json://, ...).
- ``OutboxChannel``: writes .eml files and prints the alert; how the demo
  shows alerts without any mail server.
"""

import hashlib
import logging
import os
import re
import sys
import threading
import time
from typing import Protocol
from urllib.parse import unquote

from appliance.alerts.eml import build_email
from appliance.alerts.smtp import EmailChannel
from appliance.atomic import write_atomic
from appliance.config.secrets import mask_url
from appliance.errors import DeliveryError

__all__ = ["AppriseChannel", "Channel", "EmailChannel", "OutboxChannel", "build_channels", "build_email", "mask_url",
           "redact"]

OUTBOX_SENDER = "phonehome@localhost"


class Channel(Protocol):
    """What the delivery queue needs from a channel."""

    name: str    # stable key, e.g. "email", "apprise:1f2e3d4c", "outbox"
    label: str   # for logs and the status page; never holds a secret

    def send(self, message):
        """Deliver ``message`` or raise DeliveryError(text, retryable=...)."""


class AppriseChannel:
    """Alerts through one Apprise URL.

    ``name`` is "apprise:" and the first 8 hex digits of the URL's SHA-256,
    so reordering ``alerts.urls`` keeps each URL's queue; changing a URL
    starts a new one. ``label`` shows the scheme and, when it is a real
    host name, the host; everything else (tokens, topics, passwords) is
    masked, also in error texts. Raises ValueError for a URL Apprise cannot use.
    """

    def __init__(self, url):
        import apprise  # imported here: only configs with Apprise URLs pay for it

        self._apprise_mod = apprise
        self._apprise = apprise.Apprise()
        self.name = "apprise:" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:8]
        self.label = mask_url(url)
        self._secrets = _url_secrets(url, self.label)
        if not self._apprise.add(url):
            raise ValueError(f"{self.label} is not an Apprise URL that phonehome can use; "
                             f"see https://github.com/caronc/apprise/wiki for the formats")

    def send(self, message):
        """Notify through the URL; raises DeliveryError(retryable=True) when Apprise reports failure.

        Apprise only says True or False, so every failure is retried; the
        text carries the last warning Apprise logged during this send.
        Apprise's own timeouts apply (4 s to connect and 4 s to read by
        default; the URL's ``cto=`` and ``rto=`` change them).
        """
        # LogCapture hooks the process-wide "apprise" logger: another thread
        # sending through Apprise at the same moment may add its lines.
        with self._apprise_mod.LogCapture(level=logging.WARNING, fmt="%(message)s") as log:
            try:
                ok = self._apprise.notify(body=message.body, title=message.subject)
            except Exception as exc:  # a third-party plugin's bug must not kill the sender
                raise DeliveryError(f"{self.label}: Apprise failed with {type(exc).__name__}: "
                                    f"{self._scrub(str(exc))}; will retry", retryable=True) from None
            captured = log.getvalue()
        if ok:
            return
        lines = [line.strip() for line in captured.splitlines() if line.strip()]
        why = f" ({self._scrub(lines[-1])})" if lines else ""
        raise DeliveryError(f"{self.label} did not accept the alert{why}; will retry. "
                            f"If it keeps failing, check the URL in alerts.urls and that the service is reachable",
                            retryable=True)

    def _scrub(self, text):
        return _replace_all(text, self._secrets)


def redact(text, url):
    """``text`` with every piece of ``url`` that ``mask_url`` hides replaced by "****"."""
    return _replace_all(text, _url_secrets(url, mask_url(url)))


def _replace_all(text, secrets):
    for secret in secrets:
        text = text.replace(secret, "****")
    return text


def _url_secrets(url, label):
    """The pieces of ``url`` that ``label`` hides, longest first, raw and %-decoded."""
    body = url.partition("://")[2]
    pieces = {p for p in re.split(r"[/:@?&=#,;+\s]+", body) if len(p) >= 3}
    pieces |= {unquote(p) for p in pieces}
    shown = set(re.split(r"[/:@?&=#,;+\s\[\]]+", label))
    return sorted((p for p in pieces if p not in shown), key=len, reverse=True)


class OutboxChannel:
    """Writes each alert as an .eml file in ``directory`` and prints it to ``stream``.

    Files are named "<UTC time>-<device>-<kind>.eml" (the event's time; "-2",
    "-3", … are added when a name is taken) and written atomically, so a
    reader never sees half a file. The directory is created when missing.
    The printed block goes to ``stream`` (None: whatever ``sys.stdout`` is at
    send time) and is best effort: a closed stream does not fail the send.
    """

    name = "outbox"

    def __init__(self, directory, *, stream=None, sender=OUTBOX_SENDER, to=(OUTBOX_SENDER,)):
        self.directory = directory
        self.label = f"outbox {directory}"
        self._stream = stream
        self._sender = sender
        self._to = tuple(to)
        # Names are chosen then written; the lock keeps two sends of this
        # channel from choosing the same name (one process writes an outbox).
        self._lock = threading.Lock()

    def send(self, message):
        """Write and print ``message``; return the file's path.

        Raises DeliveryError: retryable for e.g. a full disk, not retryable
        when the directory cannot be created or written for lack of permission.
        """
        now = time.time()
        mail = build_email(message, sender=self._sender, to=self._to, sent_at=now)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(message.at if message.at is not None else now))
        base = "-".join(_safe_name(p) for p in (stamp, message.device or "phonehome", message.kind))
        try:
            os.makedirs(self.directory, exist_ok=True)
            with self._lock:
                path = self._free_path(base)
                write_atomic(path, mail.as_bytes())
        except (PermissionError, NotADirectoryError, FileExistsError) as exc:
            raise DeliveryError(f"cannot write alerts to outbox directory {self.directory!r} ({exc.strerror}); "
                                f"check alerts.outbox_dir and that phonehome may write there",
                                retryable=False) from None
        except OSError as exc:
            raise DeliveryError(f"cannot write an alert to outbox directory {self.directory!r} ({exc}); "
                                f"will retry", retryable=True) from None
        self._print(message, path)
        return path

    def _free_path(self, base):
        path, n = os.path.join(self.directory, base + ".eml"), 1
        while os.path.exists(path):
            n += 1
            path = os.path.join(self.directory, f"{base}-{n}.eml")
        return path

    def _print(self, message, path):
        summary = message.body.split("\n", 1)[0]
        rule = "=" * 72
        block = f"\n{rule}\n  ALERT  {message.subject}\n  {summary}\n  (saved as {path})\n{rule}\n"
        stream = self._stream if self._stream is not None else sys.stdout
        try:
            stream.write(block)
            stream.flush()
        except (OSError, ValueError):  # stdout closed or a broken pipe: the file is what counts
            pass


def _safe_name(text):
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def build_channels(alerts, *, stream=None, ssl_context=None):
    """The channels an ``Alerts`` config asks for: e-mail, each Apprise URL, the outbox.

    A URL listed twice gets one channel. The outbox's .eml files carry the
    e-mail sender and recipients when e-mail is configured; ``stream`` is where
    the outbox prints (None: sys.stdout at send time). ``ssl_context``
    is for SMTP servers with a private CA (and tests). Raises ValueError for
    an Apprise URL that config validation should have refused.
    """
    channels, seen = [], set()
    if alerts.email is not None:
        channels.append(EmailChannel(alerts.email, ssl_context=ssl_context))
    for url in alerts.urls:
        if url not in seen:
            seen.add(url)
            channels.append(AppriseChannel(url))
    if alerts.outbox_dir:
        kwargs = {"sender": alerts.email.sender, "to": alerts.email.to} if alerts.email else {}
        channels.append(OutboxChannel(alerts.outbox_dir, stream=stream, **kwargs))
    return channels

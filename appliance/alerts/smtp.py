"""E-mail alerts over SMTP, with every failure sorted into "retry" or "fix the config".

smtplib's timeout bounds each socket operation, not a conversation: a server
that answers one byte at a time could hold it forever. So the conversation
runs in a worker thread that the caller waits for at most ``timeout_s``;
past that the socket is shut down and the send reported as retryable.
"""

import smtplib
import socket
import ssl
import threading
import time

from appliance.alerts.eml import build_email
from appliance.errors import DeliveryError


class EmailChannel:
    """Alerts by e-mail through ``email`` (a ``config.schema.Email``).

    ``ssl_context`` verifies the server's certificate (default: the system's
    CAs); pass one for a server with a private CA.
    """

    name = "email"

    def __init__(self, email, *, ssl_context=None):
        self._email = email
        # Built once: loading the system's CAs costs more than a whole SMTP conversation on a LAN.
        if ssl_context is None and email.security != "none":
            ssl_context = ssl.create_default_context()
        self._ssl_context = ssl_context
        self.where = f"{email.smtp_host}:{email.smtp_port}"
        self.label = f"e-mail via {self.where}"

    def send(self, message):
        """Send ``message`` to every ``email.to`` address within ``email.timeout_s`` seconds.

        Reads the password from ``email.password_file`` first, on every send,
        so a changed password needs no restart. Raises DeliveryError:
        retryable for refused or timed-out connections and 4xx replies, not
        retryable for 5xx refusals, failed logins, TLS problems and a
        missing password file. A recipient refused while others accepted
        the message is reported as not retryable, so they get no duplicate.
        """
        e = self._email
        password = self._password() if e.username else None
        mail = build_email(message, sender=e.sender, to=e.to, sent_at=time.time())
        talk = _Conversation(e, self._ssl_context, mail, password)
        worker = threading.Thread(target=talk.run, name=f"phonehome-smtp-{self.where}", daemon=True)
        worker.start()
        worker.join(e.timeout_s)
        if worker.is_alive() and not talk.delivered:
            talk.abort()
            raise DeliveryError(f"SMTP server {self.where} did not finish within timeout_s = {e.timeout_s:g} s "
                                f"(stuck at: {talk.stage}); will retry. If this persists, check smtp_host, "
                                f"smtp_port and security{_port_hint(e)}", retryable=True)
        if talk.error is not None:
            if isinstance(talk.error, DeliveryError):
                raise talk.error
            if isinstance(talk.error, (smtplib.SMTPException, OSError)):
                raise classify(talk.error, e, stage=talk.stage) from talk.error
            raise talk.error  # a bug, not a delivery problem: let it surface

    def _password(self):
        path = self._email.password_file
        try:
            with open(path, encoding="utf-8") as f:
                password = f.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise DeliveryError(f"cannot read the SMTP password file {path!r} ({why}); put the password for "
                                f"{self._email.username!r} in it, readable by the user phonehome runs as",
                                retryable=False) from None
        if not password:
            raise DeliveryError(f"the SMTP password file {path!r} is empty; put the password for "
                                f"{self._email.username!r} in it", retryable=False)
        return password


class _Conversation:
    """One SMTP conversation, run in a worker thread; ``error`` holds what it raised."""

    def __init__(self, email, context, mail, password):
        self._email = email
        self._context = context
        self._mail = mail
        self._password = password
        self._smtp = None
        self._sock = None
        self._aborted = False
        self._lock = threading.Lock()
        self.stage = "connecting"
        self.error = None
        self.delivered = False

    def run(self):
        try:
            self._talk()
        except BaseException as exc:  # noqa: BLE001  (handed to the waiting caller)
            self.error = exc

    def abort(self):
        """Cut the connection, so a late reply cannot deliver what was reported as failed."""
        with self._lock:
            self._aborted = True
            socks = {self._sock, getattr(self._smtp, "sock", None)} - {None}
        for sock in socks:
            _cut(sock)

    def _on_socket(self, sock):
        with self._lock:
            self._sock = sock
            aborted = self._aborted
        if aborted:
            _cut(sock)

    def _talk(self):
        e, t = self._email, self._email.timeout_s
        self.stage = "connecting and waiting for the server's greeting"
        if e.security == "ssl":
            smtp = _SMTP_SSL(e.smtp_host, e.smtp_port, timeout=t, context=self._context, on_socket=self._on_socket)
        else:
            smtp = _SMTP(e.smtp_host, e.smtp_port, timeout=t, on_socket=self._on_socket)
        with self._lock:
            self._smtp = smtp
            aborted = self._aborted
        try:
            if aborted:
                return
            self.stage = "EHLO"
            smtp.ehlo()
            if e.security == "starttls":
                self.stage = "STARTTLS"
                smtp.starttls(context=self._context)
                smtp.ehlo()
            if e.username:
                self.stage = "login"
                smtp.login(e.username, self._password)
            self.stage = "sending the message"
            refused = smtp.send_message(self._mail, from_addr=e.sender, to_addrs=list(e.to))
            if refused:
                accepted = [a for a in e.to if a not in refused]
                self.error = DeliveryError(f"SMTP server {e.smtp_host}:{e.smtp_port} delivered the alert to "
                                           f"{', '.join(accepted)} but refused {_replies(refused)}; check that "
                                           f"address in alerts.email.to", retryable=False)
            # From here on the server has the message: a slow or failed goodbye must not make it "failed".
            self.delivered = True
            self.stage = "QUIT"
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                pass
        finally:
            smtp.close()


class _Tracked:
    """Mixin for smtplib's classes: hands each new socket to ``on_socket`` before the greeting is read,
    so another thread can cut a server that keeps the conversation hanging even there."""

    def __init__(self, *args, on_socket, **kwargs):
        self._on_socket = on_socket
        super().__init__(*args, **kwargs)

    def _get_socket(self, host, port, timeout):
        sock = super()._get_socket(host, port, timeout)
        self._on_socket(sock)
        return sock


class _SMTP(_Tracked, smtplib.SMTP):
    pass


class _SMTP_SSL(_Tracked, smtplib.SMTP_SSL):
    pass


def _cut(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


def classify(exc, email, *, stage=""):
    """The DeliveryError for an smtplib or socket error ``exc`` met while talking to ``email.smtp_host``.

    4xx replies, refused or timed-out connections and dropped connections are
    retryable; 5xx replies, failed logins and TLS problems are not (retrying
    cannot fix a configuration). Each text names the server and what to check.
    """
    where = f"SMTP server {email.smtp_host}:{email.smtp_port}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        temporary = any(_temporary(code) for code, _ in exc.recipients.values())
        return DeliveryError(f"{where} refused every recipient: {_replies(exc.recipients)}; "
                             + ("will retry" if temporary else "check the addresses in alerts.email.to"),
                             retryable=temporary)
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return _reply_error(exc, f"{where} refused the sender address {exc.sender!r}",
                            "check alerts.email.sender (many servers accept only the address you log in as)")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return _reply_error(exc, f"{where} rejected the login of {email.username!r}",
                            f"check alerts.email.username and the password in {email.password_file!r}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        if stage == "STARTTLS":
            return DeliveryError(f"{where} does not offer STARTTLS; set alerts.email.security to 'ssl' "
                                 f"(usually port 465), or 'none' only on a network you trust", retryable=False)
        if stage == "login":
            plain = " without TLS" if email.security == "none" else ""
            return DeliveryError(f"{where} does not offer a login (SMTP AUTH){plain}; use security 'starttls' "
                                 f"or 'ssl', or remove alerts.email.username", retryable=False)
        return DeliveryError(f"{where}: {exc} ({stage}); addresses with non-ASCII characters need a server "
                             f"with SMTPUTF8: check alerts.email.sender and alerts.email.to", retryable=False)
    if isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(exc.__context__, TimeoutError):
        exc = exc.__context__  # smtplib reports a read timeout as "Connection unexpectedly closed"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return DeliveryError(f"{where} closed the connection ({stage}); will retry. If this persists, "
                             f"check smtp_port and security{_port_hint(email)}", retryable=True)
    if isinstance(exc, smtplib.SMTPDataError):
        return _reply_error(exc, f"{where} refused the message",
                            "the server may take it for spam; ask the mail provider, or try another sender")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply_error(exc, f"{where} answered an error ({stage})", "check smtp_host, smtp_port and security")
    if isinstance(exc, smtplib.SMTPException):  # e.g. "No suitable authentication method found."
        return DeliveryError(f"{where}: {exc} ({stage}); check alerts.email", retryable=False)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return DeliveryError(f"{where}: its TLS certificate cannot be verified ({exc.verify_message}); check that "
                             f"smtp_host is the name the certificate was issued for", retryable=False)
    if isinstance(exc, ssl.SSLError):
        why = getattr(exc, "reason", None) or exc
        return DeliveryError(f"{where}: TLS failed ({why}); check security: 'ssl' is for implicit TLS "
                             f"(usually port 465), 'starttls' for port 587", retryable=False)
    if isinstance(exc, ConnectionRefusedError):
        return DeliveryError(f"{where} refused the connection; check smtp_host and smtp_port "
                             f"(will retry in case the server is only down)", retryable=True)
    if isinstance(exc, socket.gaierror):
        return DeliveryError(f"cannot look up SMTP server {email.smtp_host!r} ({exc.strerror}); check smtp_host "
                             f"and this host's DNS (will retry)", retryable=True)
    if isinstance(exc, TimeoutError):
        return DeliveryError(f"{where} did not answer within timeout_s = {email.timeout_s:g} s ({stage}); "
                             f"will retry. If this persists, check smtp_host, smtp_port and security"
                             f"{_port_hint(email)}", retryable=True)
    return DeliveryError(f"cannot talk to {where} ({exc.strerror or exc}, {stage}); will retry. "
                         f"If this persists, check the network and smtp_host", retryable=True)


def _temporary(code):
    return 400 <= code < 500


def _reply_error(exc, what, fix):
    reply = f"{exc.smtp_code} {_text(exc.smtp_error)}"
    if _temporary(exc.smtp_code):
        return DeliveryError(f"{what}: {reply} (a temporary refusal; will retry)", retryable=True)
    return DeliveryError(f"{what}: {reply}; {fix}", retryable=False)


def _replies(refused):
    """ "a@x (550 no such user), b@y (451 try later)" from smtplib's {address: (code, reply)}."""
    return ", ".join(f"{addr} ({code} {_text(reply)})" for addr, (code, reply) in refused.items())


def _text(reply):
    return (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)).replace("\n", " ")


def _port_hint(email):
    if email.smtp_port == 465 and email.security != "ssl":
        return " (port 465 usually needs security = 'ssl')"
    if email.smtp_port == 587 and email.security == "ssl":
        return " (port 587 usually needs security = 'starttls')"
    return ""

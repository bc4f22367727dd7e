import email
import email.policy
import smtplib
import socket
import ssl
import threading
import time

import pytest

from appliance.alerts.smtp import EmailChannel, classify
from appliance.errors import DeliveryError

# The sink requires a login over plain text on purpose (no TLS set-up needed to test AUTH).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


def received(sink):
    """The messages a sink got, parsed."""
    return [email.message_from_bytes(e.content, policy=email.policy.default) for e in sink.envelopes]


@pytest.mark.parametrize("kind", ["down", "reminder", "up"])
def test_alert_arrives_with_subject_body_and_headers(smtp_server, email_config, alert, kind):
    sink, port = smtp_server()
    message = alert(kind)
    EmailChannel(email_config(port, to=("me@example.com", "sms@txt.example.net"))).send(message)

    [envelope] = sink.envelopes
    assert envelope.mail_from == "phonehome@example.com"
    assert envelope.rcpt_tos == ["me@example.com", "sms@txt.example.net"]
    [mail] = received(sink)
    assert mail["Subject"] == message.subject
    assert mail["From"] == "phonehome@example.com"
    assert mail["To"] == "me@example.com, sms@txt.example.net"
    assert mail["Date"] and mail["Message-ID"].endswith("@example.com>")
    assert mail.get_content().replace("\r\n", "\n") == message.body


def test_starttls_with_a_trusted_certificate(smtp_server, email_config, alert, server_tls, client_tls):
    sink, port = smtp_server(tls_context=server_tls, require_starttls=True)
    EmailChannel(email_config(port, security="starttls"), ssl_context=client_tls).send(alert("down"))
    assert [m["Subject"] for m in received(sink)] == ["DOWN: home"]


def test_starttls_not_offered_is_a_config_error(smtp_server, email_config, alert):
    sink, port = smtp_server()  # no TLS context: EHLO does not list STARTTLS
    with pytest.raises(DeliveryError) as caught:
        EmailChannel(email_config(port, security="starttls")).send(alert("down"))
    assert not caught.value.retryable
    assert f"127.0.0.1:{port} does not offer STARTTLS" in str(caught.value)
    assert "security" in str(caught.value)
    assert sink.envelopes == []  # nothing went out in clear text


def test_implicit_tls(smtp_server, email_config, alert, server_tls, client_tls):
    sink, port = smtp_server(ssl_context=server_tls)
    EmailChannel(email_config(port, security="ssl"), ssl_context=client_tls).send(alert("up"))
    assert [m["Subject"] for m in received(sink)] == ["UP: home after 47 min"]


def test_untrusted_certificate_is_not_retryable(smtp_server, email_config, alert, server_tls):
    sink, port = smtp_server(ssl_context=server_tls)
    with pytest.raises(DeliveryError) as caught:
        EmailChannel(email_config(port, security="ssl")).send(alert("up"))  # system CAs only
    assert not caught.value.retryable
    assert "certificate" in str(caught.value) and f"127.0.0.1:{port}" in str(caught.value)
    assert sink.envelopes == []


@pytest.mark.parametrize("reply, retryable", [
    ("550 5.1.1 no such user", False),
    ("451 4.3.0 mailbox busy, try later", True),
])
def test_refused_recipient(smtp_server, email_config, alert, reply, retryable):
    sink, port = smtp_server(refuse={"me@example.com": reply})
    with pytest.raises(DeliveryError) as caught:
        EmailChannel(email_config(port)).send(alert("down"))
    assert caught.value.retryable is retryable
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "me@example.com" in str(caught.value) and reply.split()[0] in str(caught.value)
    assert sink.envelopes == []


def test_one_recipient_refused_others_served_is_not_retried(smtp_server, email_config, alert):
    sink, port = smtp_server(refuse={"typo@example.com": "550 5.1.1 no such user"})
    with pytest.raises(DeliveryError) as caught:
        EmailChannel(email_config(port, to=("me@example.com", "typo@example.com"))).send(alert("down"))
    assert not caught.value.retryable  # a retry would send me@example.com a duplicate
    assert "delivered the alert to me@example.com but refused typo@example.com (550" in str(caught.value)
    assert [e.rcpt_tos for e in sink.envelopes] == [["me@example.com"]]


def test_connection_refused_is_retryable_and_names_the_server(email_config, closed_port, alert):
    with pytest.raises(DeliveryError) as caught:
        EmailChannel(email_config(closed_port)).send(alert("down"))
    assert caught.value.retryable
    assert f"SMTP server 127.0.0.1:{closed_port} refused the connection; check smtp_host and smtp_port" \
        in str(caught.value)


def test_silent_server_times_out_within_timeout_s(email_config, silent_port, alert):
    channel = EmailChannel(email_config(silent_port, timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        channel.send(alert("down"))
    elapsed = time.monotonic() - started
    assert caught.value.retryable
    assert f"127.0.0.1:{silent_port}" in str(caught.value) and "0.5 s" in str(caught.value)
    assert elapsed < 3  # 0.5 s plus generous slack; without a bound it would wait for ever


def test_dripping_server_cannot_stretch_the_conversation_past_timeout_s(email_config, dripping_port, alert):
    # One byte every 0.1 s resets smtplib's per-operation 0.5 s timeout each time;
    # only the overall deadline ends this (the server itself gives up after 5 s).
    channel = EmailChannel(email_config(dripping_port, timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        channel.send(alert("down"))
    elapsed = time.monotonic() - started
    assert caught.value.retryable
    assert "did not finish within timeout_s = 0.5 s" in str(caught.value)
    assert elapsed < 3
    # The abandoned conversation was cut, so a late reply cannot deliver a message reported as failed.
    [worker] = [t for t in threading.enumerate() if t.name == f"phonehome-smtp-127.0.0.1:{dripping_port}"] or [None]
    if worker is not None:
        worker.join(2)
        assert not worker.is_alive()


def test_login_with_password_file(smtp_server, email_config, alert, smtp_login, tmp_path):
    user, password = smtp_login
    secret = tmp_path / "smtp-password"
    secret.write_text(password + "\n")  # editors add a newline; it is not part of the password
    sink, port = smtp_server(auth=True, auth_required=True)
    EmailChannel(email_config(port, username=user, password_file=str(secret))).send(alert("down"))
    assert len(sink.envelopes) == 1


def test_wrong_password_is_not_retryable(smtp_server, email_config, alert, smtp_login, tmp_path):
    user, _ = smtp_login
    secret = tmp_path / "smtp-password"
    secret.write_text("hunter2-not-it")
    sink, port = smtp_server(auth=True, auth_required=True)
    with pytest.raises(DeliveryError) as caught:
        EmailChannel(email_config(port, username=user, password_file=str(secret))).send(alert("down"))
    assert not caught.value.retryable
    text = str(caught.value)
    assert f"127.0.0.1:{port} rejected the login of {user!r}: 535" in text and str(secret) in text
    assert "hunter2" not in text
    assert sink.envelopes == []


@pytest.mark.parametrize("content", [None, ""])
def test_missing_or_empty_password_file_is_not_retryable(smtp_server, email_config, alert, smtp_login, tmp_path,
                                                         content):
    user, _ = smtp_login
    secret = tmp_path / "smtp-password"
    if content is not None:
        secret.write_text(content)
    sink, port = smtp_server(auth=True, auth_required=True)
    with pytest.raises(DeliveryError) as caught:
        EmailChannel(email_config(port, username=user, password_file=str(secret))).send(alert("down"))
    assert not caught.value.retryable
    assert f"SMTP password file {str(secret)!r}" in str(caught.value)
    assert sink.envelopes == []


def test_password_is_read_at_send_time(smtp_server, email_config, alert, smtp_login, tmp_path):
    user, password = smtp_login
    secret = tmp_path / "smtp-password"
    sink, port = smtp_server(auth=True, auth_required=True)
    channel = EmailChannel(email_config(port, username=user, password_file=str(secret)))  # file not there yet
    secret.write_text(password)
    channel.send(alert("down"))
    assert len(sink.envelopes) == 1


def test_name_and_label(email_config):
    channel = EmailChannel(email_config(587, smtp_host="mail.example.com"))
    assert (channel.name, channel.label) == ("email", "e-mail via mail.example.com:587")


@pytest.mark.parametrize("exc, stage, retryable, says", [
    (smtplib.SMTPSenderRefused(553, b"5.7.1 sender not owned by user", "phonehome@example.com"), "", False,
     "refused the sender address 'phonehome@example.com': 553 5.7.1 sender not owned by user; "
     "check alerts.email.sender"),
    (smtplib.SMTPSenderRefused(452, b"4.3.1 insufficient storage", "phonehome@example.com"), "", True,
     "452 4.3.1 insufficient storage (a temporary refusal; will retry)"),
    (smtplib.SMTPAuthenticationError(454, b"4.7.0 temporary authentication failure"), "login", True,
     "rejected the login of 'alerts@example.com': 454"),
    (smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"), "login", False,
     "check alerts.email.username and the password in '/etc/phonehome/smtp-password'"),
    (smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server."), "login", False,
     "does not offer a login (SMTP AUTH)"),
    (smtplib.SMTPDataError(554, b"5.7.1 message rejected as spam"), "sending the message", False,
     "refused the message: 554 5.7.1 message rejected as spam"),
    (smtplib.SMTPConnectError(421, b"4.7.0 too many connections"), "connecting", True, "421 4.7.0 too many"),
    (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), "EHLO", True, "closed the connection (EHLO)"),
    (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "connecting", False,
     "'ssl' is for implicit TLS (usually port 465)"),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "connecting", True,
     "cannot look up SMTP server 'mail.example.com' (Name or service not known); check smtp_host"),
    (ConnectionResetError(104, "Connection reset by peer"), "sending the message", True,
     "cannot talk to SMTP server mail.example.com:587 (Connection reset by peer, sending the message)"),
])
def test_classify(email_config, exc, stage, retryable, says):
    config = email_config(587, smtp_host="mail.example.com", username="alerts@example.com",
                          password_file="/etc/phonehome/smtp-password")
    error = classify(exc, config, stage=stage)
    assert error.retryable is retryable
    assert says in str(error)

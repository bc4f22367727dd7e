"""The RFC 5322 form of an alert, shared by the e-mail channel and the outbox."""

import email.policy
import email.utils
from email.message import EmailMessage


def build_email(message, *, sender, to, sent_at, message_id=None):
    """The RFC 5322 form of ``message`` as an ``email.message.EmailMessage``.

    ``sent_at`` (epoch seconds, UTC) becomes the Date header; ``message_id``
    defaults to a new unique one in the sender's domain (never the host's
    FQDN, whose lookup can hang on a host without DNS).
    """
    mail = EmailMessage(policy=email.policy.SMTP)
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["Subject"] = message.subject
    mail["Date"] = email.utils.formatdate(sent_at, usegmt=True)
    domain = sender.rpartition("@")[2] or "localhost"
    mail["Message-ID"] = message_id or email.utils.make_msgid("phonehome", domain=domain)
    mail["X-Phonehome-Kind"] = message.kind
    if message.device:
        mail["X-Phonehome-Device"] = message.device
    mail.set_content(message.body)
    return mail

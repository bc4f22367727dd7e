import email
import email.policy
import email.utils

from appliance.alerts.eml import build_email
from appliance.alerts.messages import Message

SENT_AT = 1736870100.0  # 2025-01-14 15:55:00 UTC


def test_build_email_has_every_header_and_round_trips():
    message = Message("DOWN: home", "home is DOWN since 10:55 EST.\n\n\u2014 phonehome monitor\n",
                      device="home", kind="down", at=SENT_AT)
    mail = build_email(message, sender="phonehome@example.com", to=("a@example.com", "b@example.com"),
                       sent_at=SENT_AT)
    parsed = email.message_from_bytes(mail.as_bytes(), policy=email.policy.default)

    assert parsed["From"] == "phonehome@example.com"
    assert parsed["To"] == "a@example.com, b@example.com"
    assert parsed["Subject"] == "DOWN: home"
    assert email.utils.parsedate_to_datetime(parsed["Date"]).timestamp() == SENT_AT
    assert parsed["Message-ID"].startswith("<") and parsed["Message-ID"].endswith("@example.com>")
    assert (parsed["X-Phonehome-Device"], parsed["X-Phonehome-Kind"]) == ("home", "down")
    assert parsed.get_content().replace("\r\n", "\n") == message.body


def test_message_ids_are_unique_unless_given():
    message = Message("s", "b\n")
    ids = {build_email(message, sender="p@example.com", to=("a@example.com",), sent_at=SENT_AT)["Message-ID"]
           for _ in range(3)}
    assert len(ids) == 3
    fixed = build_email(message, sender="p@example.com", to=("a@example.com",), sent_at=SENT_AT,
                        message_id="<x@example.com>")
    assert fixed["Message-ID"] == "<x@example.com>"

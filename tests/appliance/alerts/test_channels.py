import email
import email.policy
import io
import os
import re

import pytest

from appliance.alerts.channels import AppriseChannel, EmailChannel, OutboxChannel, build_channels, mask_url, redact
from appliance.alerts.messages import Message
from appliance.config.schema import Alerts
from appliance.errors import DeliveryError

# ---------------------------------------------------------------- Apprise


def test_apprise_json_posts_title_and_message(http_server, alert):
    message = alert("down")
    AppriseChannel(f"json://127.0.0.1:{http_server.server_port}/hooks/phonehome").send(message)
    [(path, payload)] = http_server.requests
    assert path == "/hooks/phonehome"
    assert payload["title"] == message.subject
    assert payload["message"] == message.body.rstrip()  # Apprise trims the final newline


def test_apprise_refused_connection_is_retryable_and_hides_secrets(closed_port, alert):
    channel = AppriseChannel(f"json://user:secret@127.0.0.1:{closed_port}/hook")
    with pytest.raises(DeliveryError) as caught:
        channel.send(alert("down"))
    text = str(caught.value)
    assert caught.value.retryable
    assert f"json://127.0.0.1:{closed_port}/****" in text
    assert "error" in text.lower()  # Apprise's own last log line is quoted
    assert "secret" not in text and "secret" not in channel.label and "secret" not in repr(caught.value)


def test_apprise_http_error_quotes_what_apprise_logged(http_server, alert):
    http_server.status = 500
    with pytest.raises(DeliveryError) as caught:
        AppriseChannel(f"json://127.0.0.1:{http_server.server_port}/hook").send(alert("up"))
    assert caught.value.retryable
    assert "500" in str(caught.value)
    assert len(http_server.requests) == 1


def test_apprise_name_is_a_stable_hash_of_the_url():
    a, b = "json://127.0.0.1:9/a", "ntfy://my-topic"
    assert re.fullmatch(r"apprise:[0-9a-f]{8}", AppriseChannel(a).name)
    assert AppriseChannel(a).name == AppriseChannel(a).name
    assert AppriseChannel(a).name != AppriseChannel(b).name


def test_apprise_rejects_an_unusable_url_without_showing_it():
    with pytest.raises(ValueError) as caught:
        AppriseChannel("nosuchscheme://token-abcdef@example.com")
    assert "token-abcdef" not in str(caught.value)


@pytest.mark.parametrize("url, shown", [
    ("json://user:secret@127.0.0.1:8080/path?token=abc", "json://127.0.0.1:8080/****"),
    ("json://127.0.0.1:8080", "json://127.0.0.1:8080"),
    ("ntfys://user:pw@ntfy.example.com/topic", "ntfys://ntfy.example.com/****"),
    ("ntfy://my-secret-topic", "ntfy://****"),  # the "host" is the topic
    ("tgram://123456789:ABCdefGhIJKlmn/12345", "tgram://****"),  # the "host" is the bot token
    ("pover://userkey@apptoken", "pover://****"),
    ("json://localhost/x", "json://localhost/****"),
    ("json://[::1]:80/x", "json://[::1]:80/****"),
])
def test_mask_url(url, shown):
    assert mask_url(url) == shown


def test_apprise_log_lines_quoted_in_errors_are_redacted(closed_port, alert, monkeypatch):
    # Apprise's plugins mask secrets themselves; a plugin that does not must not leak them through us.
    import logging

    url = f"json://user:s3cr3t-pw@127.0.0.1:{closed_port}/hook-token-123"
    channel = AppriseChannel(url)

    def leaky_notify(**kwargs):
        logging.getLogger("apprise").warning("POST to %s failed", url)
        return False

    monkeypatch.setattr(channel._apprise, "notify", leaky_notify)
    with pytest.raises(DeliveryError) as caught:
        channel.send(alert("down"))
    text = str(caught.value)
    assert "POST to json://****:****@127.0.0.1" in text and "failed" in text
    assert "s3cr3t-pw" not in text and "hook-token-123" not in text


def test_redact_hides_every_secret_piece_of_the_url():
    url = "ntfys://alice:p%40ss-w0rd@ntfy.example.com/alerts-topic?token=tk_123456"
    text = redact(f"POST to {url} failed for alice with p@ss-w0rd, token tk_123456, topic alerts-topic", url)
    for secret in ("alice", "p%40ss-w0rd", "p@ss-w0rd", "tk_123456", "alerts-topic"):
        assert secret not in text
    assert "ntfy.example.com" in text and "failed" in text


# ---------------------------------------------------------------- Outbox


def read_eml(path):
    with open(path, "rb") as f:
        return email.message_from_bytes(f.read(), policy=email.policy.default)


def test_outbox_writes_an_eml_file_and_prints_the_alert(tmp_path, alert):
    stream = io.StringIO()
    message = alert("down")
    path = OutboxChannel(str(tmp_path / "outbox"), stream=stream).send(message)

    assert os.path.basename(path) == "20250114T155500Z-home-down.eml"
    assert os.listdir(tmp_path / "outbox") == ["20250114T155500Z-home-down.eml"]  # no temporary left over
    mail = read_eml(path)
    assert mail["Subject"] == "DOWN: home"
    assert mail["From"] and mail["To"] and mail["Date"] and mail["Message-ID"]
    assert mail.get_content().replace("\r\n", "\n") == message.body
    printed = stream.getvalue()
    assert "DOWN: home" in printed
    assert message.body.split("\n", 1)[0] in printed
    assert path in printed


def test_outbox_names_are_unique_within_one_second(tmp_path, alert):
    outbox = OutboxChannel(str(tmp_path), stream=io.StringIO())
    message = alert("up")
    paths = [outbox.send(message) for _ in range(3)]
    assert [os.path.basename(p) for p in paths] == [
        "20250114T164200Z-home-up.eml", "20250114T164200Z-home-up-2.eml", "20250114T164200Z-home-up-3.eml"]
    assert all(read_eml(p)["Subject"] == "UP: home after 47 min" for p in paths)


def test_outbox_message_without_event_uses_the_write_time(tmp_path):
    path = OutboxChannel(str(tmp_path), stream=io.StringIO()).send(Message("phonehome test alert", "hello\n",
                                                                           kind="test"))
    assert re.fullmatch(r"\d{8}T\d{6}Z-phonehome-test\.eml", os.path.basename(path))


def test_outbox_in_a_place_that_is_a_file_is_not_retryable(tmp_path, alert):
    blocker = tmp_path / "outbox"
    blocker.write_text("not a directory")
    with pytest.raises(DeliveryError) as caught:
        OutboxChannel(str(blocker), stream=io.StringIO()).send(alert("down"))
    assert not caught.value.retryable
    assert str(blocker) in str(caught.value) and "outbox_dir" in str(caught.value)


def test_outbox_survives_a_closed_stream(tmp_path, alert):
    stream = io.StringIO()
    stream.close()
    path = OutboxChannel(str(tmp_path), stream=stream).send(alert("down"))
    assert os.path.exists(path)


# ---------------------------------------------------------------- build_channels


def test_build_channels_from_config(tmp_path, email_config):
    urls = ("json://127.0.0.1:9/a", "ntfy://my-topic", "json://127.0.0.1:9/a")
    alerts = Alerts(urls=urls, email=email_config(587), outbox_dir=str(tmp_path))
    channels = build_channels(alerts, stream=io.StringIO())

    assert [type(c) for c in channels] == [EmailChannel, AppriseChannel, AppriseChannel, OutboxChannel]
    names = [c.name for c in channels]
    assert names[0] == "email" and names[-1] == "outbox"
    assert len(set(names)) == 4  # the URL listed twice got one channel

    reordered = build_channels(Alerts(urls=urls[::-1][:2]), stream=io.StringIO())
    by_url = {c.label: c.name for c in reordered}
    assert by_url == {c.label: c.name for c in channels[1:3]}  # reordering keeps each URL's queue key


def test_outbox_uses_the_email_addresses_when_email_is_configured(tmp_path, email_config, alert):
    alerts = Alerts(email=email_config(587, to=("me@example.com",)), outbox_dir=str(tmp_path))
    outbox = build_channels(alerts, stream=io.StringIO())[-1]
    mail = read_eml(outbox.send(alert("down")))
    assert (mail["From"], mail["To"]) == ("phonehome@example.com", "me@example.com")


def test_no_channels_configured():
    assert build_channels(Alerts()) == []


def test_outbox_prints_to_stdout_as_it_is_at_send_time(tmp_path, alert, capsys):
    OutboxChannel(str(tmp_path)).send(alert("up"))
    assert "ALERT  UP: home after 47 min" in capsys.readouterr().out

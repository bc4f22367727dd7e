"""A MonitorService on a real SQLite file whose alerts go to a real outbox channel, read back as e-mails; driven
by receive() and tick(now) on a hand-moved clock, without threads or sleeping. For the tests of quieted alerts."""

import email
import email.policy
import io
import json

from appliance.alerts.channels import OutboxChannel
from appliance.config.schema import Alerts, Config, Monitor, MonitoredDevice
from appliance.monitor.service import MonitorService


def device(name="home", *, max_silence_s=60, reminder_every_s=1800, site=""):
    return MonitoredDevice(name=name, token=f"{name}-token-123", max_silence_s=max_silence_s,
                           reminder_every_s=reminder_every_s, site=site)


class Monitored:
    """``devices`` (MonitoredDevices) watched by a MonitorService with ``monitor`` settings."""

    def __init__(self, tmp_path, clock, devices, **monitor):
        self.config = Config(data_dir=str(tmp_path / "data"), monitor=Monitor(devices=tuple(devices), **monitor),
                             alerts=Alerts(outbox_dir=str(tmp_path / "outbox")))
        self.outbox = tmp_path / "outbox"
        self.clock = clock
        self.seen = set()
        self.start()

    def start(self, clock=None):
        self.clock = clock or self.clock
        channel = OutboxChannel(str(self.outbox), stream=io.StringIO())
        self.service = MonitorService(self.config, clock=self.clock, channels=[channel])
        return self.service

    def beat(self, name="home"):
        body = json.dumps({"device": name, "sent_at": self.clock.now().wall, "seq": 1, "boot_id": "b00t-1",
                           "uptime_s": 600.0}).encode()
        assert self.service.receive(body, "application/json", f"Bearer {name}-token-123").status == 200

    def tick(self, seconds=0.0):
        self.service.tick(self.clock.advance(seconds))

    def up_for(self, seconds, names=("home",)):
        """Every device in ``names`` beats every 30 s for ``seconds``."""
        for _ in range(int(seconds // 30)):
            self.clock.advance(30)
            for name in names:
                self.beat(name)
            self.tick(0)

    def messages(self):
        """Deliver what is due; return the alerts that arrived since the last call (EmailMessages)."""
        self.service.dispatcher.tick("outbox", self.clock.now())
        new = []
        for path in sorted(self.outbox.glob("*.eml")) if self.outbox.exists() else []:
            if path.name not in self.seen:
                self.seen.add(path.name)
                new.append(email.message_from_bytes(path.read_bytes(), policy=email.policy.default))
        return new

    def sent(self):
        """Deliver what is due; return the subjects of the alerts that arrived since the last call."""
        return [str(m["Subject"]) for m in self.messages()]

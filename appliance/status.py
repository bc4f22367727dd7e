"""The one status model: what the appliance knows of itself at a moment, for the OLED, the LEDs and the web page.

A ``Snapshot`` is built by a pure function from the parts' own statuses (the
heartbeat targets, the clock check, the network, the setup state), so every
consumer reads the same facts and none re-derives them.
"""

from dataclasses import dataclass

# What the big word on the display says, from best to worst.
HEADLINES = ("OK", "SETUP", "WAIT", "DOWN", "NO NET")


@dataclass(frozen=True)
class Network:
    """The appliance's network as the system sees it; None where unknown."""

    interface: str | None = None
    ip: str | None = None
    wifi_ssid: str | None = None
    wifi_signal_dbm: int | None = None

    @property
    def online(self):
        """True when the interface of the default route has an address."""
        return bool(self.ip)


@dataclass(frozen=True)
class Setup:
    """The one-time setup code shown until the appliance is claimed on its web page."""

    code: str
    url: str
    claimed: bool


@dataclass(frozen=True)
class Peer:
    """A device this appliance watches (a [[monitor.devices]] entry of the monitor inside the agent)."""

    name: str
    state: str                  # "new", "up" or "down", as the monitor decides
    last_heard_at: float | None


@dataclass(frozen=True)
class Snapshot:
    """Everything a status display needs, at one wall-clock moment ``at`` (epoch seconds).

    ``heartbeat`` is "off" (not configured), "unknown" (nothing sent yet),
    "ok" (every target answered its last beat) or "failing" (some did not).
    ``beats_sent`` counts successful beats since the agent started, so a
    LED can blink once per beat. ``time_verdict`` is the clock check's
    verdict ("unknown" before its first check).
    """

    at: float
    device_name: str
    configured: bool
    heartbeat: str
    last_ok_at: float | None
    beats_sent: int
    last_error: str | None
    network: Network
    time_verdict: str
    time_reason: str
    time_offset_ms: float | None
    time_zone: str | None
    uptime_s: float | None
    setup: Setup | None
    peers: tuple[Peer, ...] = ()

    @property
    def headline(self):
        """The big word on the display: OK, SETUP, WAIT, DOWN or NO NET."""
        if not self.network.online:
            return "NO NET"
        if not self.configured:
            return "SETUP"
        return {"ok": "OK", "failing": "DOWN"}.get(self.heartbeat, "WAIT")

    @property
    def heartbeat_age_s(self):
        """Seconds since the last successful heartbeat, None if there was none."""
        return None if self.last_ok_at is None else max(0.0, self.at - self.last_ok_at)


def build_snapshot(at, *, device_name, configured, targets, time_status, network, uptime_s, setup, peers=()):
    """A Snapshot from the parts' statuses. Pure.

    ``targets`` are heartbeats.TargetStatus (empty when not configured);
    ``time_status`` a timecheck TimeStatus or None; ``network`` a Network;
    ``setup`` a Setup or None; ``peers`` the Peers this appliance watches.
    """
    if not configured or not targets:
        heartbeat = "off"
    elif any(t.state == "failing" for t in targets):
        heartbeat = "failing"
    elif all(t.state == "ok" for t in targets):
        heartbeat = "ok"
    else:
        heartbeat = "unknown"
    oks = [t.last_ok_at for t in targets if t.last_ok_at is not None]
    errors = [t.last_error for t in targets if t.state == "failing" and t.last_error]
    return Snapshot(
        at=at, device_name=device_name, configured=configured, heartbeat=heartbeat,
        last_ok_at=max(oks) if oks else None,
        beats_sent=sum(t.beats_ok for t in targets),
        last_error=errors[0] if errors else None,
        network=network,
        time_verdict=time_status.verdict if time_status else "unknown",
        time_reason=time_status.reason if time_status else "",
        time_offset_ms=time_status.offset_ms if time_status else None,
        time_zone=time_status.system_zone if time_status else None,
        uptime_s=uptime_s, setup=setup, peers=tuple(peers))

"""When to open and close the setup hotspot: a pure decision on what NetworkManager reports, with the time.

- The hotspot opens when the appliance has had no network (no connection but the hotspot) for ``after_s``,
  so a slow DHCP at boot does not open it.
- It closes as soon as another connection is up: a network was joined from the page, or a cable plugged in.
- A router that was off with the power comes back after the Pi: with the hotspot open, the Wi-Fi radio cannot
  look for it. So every ``retry_every_s`` the hotspot closes for ``retry_for_s`` and NetworkManager tries the
  saved networks, unless someone used the setup page in the last ``retry_every_s`` (they are setting it up).
"""

from dataclasses import dataclass

RETRY_EVERY_S = 300.0
RETRY_FOR_S = 60.0


@dataclass(frozen=True)
class Seen:
    """What NetworkManager reports: a Wi-Fi device, another connection up, the hotspot up; the page's last use."""

    has_wifi: bool
    online: bool
    hotspot_up: bool
    page_used_at: float = None  # monotonic time of the last request to the page while the hotspot was up


class HotspotPolicy:
    """``decide(now, seen)`` returns "open", "close" or None (nothing to do). ``now`` is monotonic seconds."""

    def __init__(self, after_s, *, retry_every_s=RETRY_EVERY_S, retry_for_s=RETRY_FOR_S):
        self.after_s = after_s
        self.retry_every_s = retry_every_s
        self.retry_for_s = retry_for_s
        self.offline_since = None
        self.opened_at = None
        self.retry_until = None

    def decide(self, now, seen):
        if not seen.has_wifi:
            return None
        if seen.online:
            self.offline_since = self.retry_until = None
            return "close" if seen.hotspot_up else None
        if self.offline_since is None:
            self.offline_since = now
        if seen.hotspot_up:
            if self.opened_at is None:
                self.opened_at = now
            used = seen.page_used_at is not None and now - seen.page_used_at < self.retry_every_s
            if now - self.opened_at >= self.retry_every_s and not used:
                self.retry_until = now + self.retry_for_s
                self.opened_at = None
                return "close"
            return None
        self.opened_at = None
        if self.retry_until is not None:
            if now < self.retry_until:
                return None  # NetworkManager is trying the saved networks
            self.retry_until = None
            return "open"
        return "open" if now - self.offline_since >= self.after_s else None

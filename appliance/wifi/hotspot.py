"""When to open and close the setup hotspot: a pure decision on what NetworkManager reports and the time.

``step(state, facts, now_mono, …)`` returns the next State, the actions to take ("open", "close") and a
Flip (old state, new state, time, reason) when the state changed. Times are monotonic seconds.

- The hotspot opens once the appliance has had no network (no connection up but the hotspot) for
  ``after_s``, so a slow DHCP at boot or a router's restart does not open it.
- It closes as soon as another connection is up: a network joined from the page, or a cable plugged in.
- A join from the page wins over everything while it runs; if it brings no network, a hotspot that was up
  opens again at once (the person is waiting for it).
- A hotspot that goes down by itself (or fails to open) counts as no network: it opens again ``after_s``
  later, which is also the pause between attempts when it cannot open at all.
- After a power cut the Pi boots faster than the router. While the hotspot holds the radio it cannot see the
  router come back, so while a Wi-Fi network is saved the hotspot steps aside: every ``retry_every_s`` it
  closes for ``retry_for_s`` and NetworkManager connects to the saved network by itself if it is there.
  300 s keeps a person on the setup page from waiting long when the router is back, and is NetworkManager's
  own pause before it retries a network it gave up on; 60 s covers a scan, the handshake and a slow DHCP.
  While someone has used the page within ``retry_every_s`` the hotspot stays: they are setting it up.
"""

from dataclasses import dataclass

from appliance.timefmt import format_duration

STARTING = "starting"  # no observation yet
OFF = "off"            # the Wi-Fi cannot be used (``Facts.problem`` says why)
ONLINE = "online"      # a network connection is up
WAITING = "waiting"    # no network since ``since``
HOTSPOT = "hotspot"    # the hotspot is up
RETRYING = "retrying"  # the hotspot is closed for a moment so the saved Wi-Fi can come back
JOINING = "joining"    # a join from the page is under way
DISABLED = "disabled"  # no network, and wifi.hotspot is false

OPEN, CLOSE = "open", "close"

RETRY_EVERY_S = 300.0
RETRY_FOR_S = 60.0


@dataclass(frozen=True)
class Facts:
    """One look at NetworkManager.

    ``problem``: why the Wi-Fi cannot be used ("" when it can); ``uplink``: the name of a connection other
    than the hotspot that is up ("" when none); ``hotspot``: the hotspot is up; ``joining``: the name of the
    network a join from the page is joining ("" when none); ``saved_wifi``: a Wi-Fi network is saved for
    NetworkManager to connect to; ``page_mono``: when the Wi-Fi page was last used (None: never).
    """

    problem: str = ""
    uplink: str = ""
    hotspot: bool = False
    joining: str = ""
    saved_wifi: bool = False
    page_mono: float | None = None


@dataclass(frozen=True)
class State:
    """``name`` since ``since`` (monotonic s); ``why`` is what OFF is about; ``from_hotspot``: a JOINING
    that began while the hotspot was up."""

    name: str
    since: float
    why: str = ""
    from_hotspot: bool = False


@dataclass(frozen=True)
class Flip:
    """A change of state, as logged: ``old`` -> ``new`` at ``at`` (monotonic s) because of ``reason``."""

    old: str
    new: str
    at: float
    reason: str


@dataclass(frozen=True)
class Timing:
    """``after_s`` without a network before the hotspot opens; the retry rhythm (see the module's doc)."""

    after_s: float = 120.0
    retry_every_s: float = RETRY_EVERY_S
    retry_for_s: float = RETRY_FOR_S


def first(now):
    """The state before the first look."""
    return State(STARTING, now)


def step(state, facts, now, *, enabled, timing):
    """(next State, actions, Flip or None) for ``facts`` seen at ``now``; ``enabled`` is wifi.hotspot."""
    new, actions, reason = _next(state, facts, now, enabled, timing)
    changed = (new.name, new.why) != (state.name, state.why)
    return new, actions, (Flip(state.name, new.name, now, reason) if changed else None)


def _next(s, f, now, enabled, t):
    stay = (s, (), "")
    if f.problem:
        return State(OFF, now if s.name != OFF else s.since, why=f.problem), (), f"{f.problem}; the hotspot is idle"
    if f.joining:
        if s.name == JOINING:
            return stay
        was_up = f.hotspot or s.name in (HOTSPOT, RETRYING)
        return State(JOINING, now, from_hotspot=was_up), (), f"joining '{f.joining}' as asked on the Wi-Fi page"
    close = (CLOSE,) if f.hotspot else ()
    if f.uplink:
        reason = f"'{f.uplink}' is up" + ("; closing the hotspot" if close else "")
        return (s if s.name == ONLINE else State(ONLINE, now)), close, reason
    if not enabled:
        return (s if s.name == DISABLED else State(DISABLED, now)), close, "no network, and wifi.hotspot is off"
    if f.hotspot:
        if s.name != HOTSPOT:
            return State(HOTSPOT, now), (), "the hotspot is up"
        used = f.page_mono is not None and now - f.page_mono < t.retry_every_s
        if f.saved_wifi and not used and now - s.since >= t.retry_every_s:
            return State(RETRYING, now), (CLOSE,), (f"closing the hotspot for {format_duration(t.retry_for_s)} "
                                                    f"so the saved Wi-Fi can connect if it is back")
        return stay
    if s.name == JOINING:
        if s.from_hotspot:
            return State(HOTSPOT, now), (OPEN,), "the join brought no network; opening the hotspot again"
        return State(WAITING, now), (), "the join brought no network"
    if s.name == WAITING:
        if now - s.since >= t.after_s:
            return State(HOTSPOT, now), (OPEN,), f"no network for {format_duration(now - s.since)}; opening the hotspot"
        return stay
    if s.name == RETRYING:
        if now - s.since >= t.retry_for_s:
            return State(HOTSPOT, now), (OPEN,), (f"the saved Wi-Fi did not connect within "
                                                  f"{format_duration(t.retry_for_s)}; opening the hotspot again")
        return stay
    if s.name == HOTSPOT:
        return State(WAITING, now), (), (f"the hotspot is down (closed elsewhere, or it could not open); it opens "
                                         f"again after {format_duration(t.after_s)} without a network")
    return State(WAITING, now), (), f"no network; the hotspot opens after {format_duration(t.after_s)} without one"

"""What the status LEDs show: a pure mapping from a status Snapshot to a pattern per colour.

One rule wins at a time, the first in ``RULES`` that applies, so a person
reads one thing off the box (red before amber before green; the button's
own feedback before everything, because the person holding it is watching).
``LED_TABLE`` is the same list as rows a person reads, and
``led_table_markdown()`` renders it for the README.

A pattern gives each colour (green, red, amber) one ``Light``: off, on,
blink (gpiozero times it), or beat: on, going dark for a moment each time
a heartbeat is delivered (the driver sees ``Snapshot.beats_sent`` grow).
With one RGB LED the colours mix on it: amber is red+green (yellow), and
"all three" is white. Without an amber LED, amber lights red and green
together.
"""

from dataclasses import dataclass

from appliance.timecheck.verdict import DRIFTING, UNREACHABLE, UNSYNCED

BUTTON_MODES = ("setup", "reset-armed")
# A clock that is wrong or unchecked-against-anything. "wrong-zone" is left out
# on purpose: heartbeats carry UTC, so a wrong zone only changes the local times
# shown to people, and the display's Time page says so.
CLOCK_PROBLEMS = (DRIFTING, UNSYNCED, UNREACHABLE)


@dataclass(frozen=True)
class Light:
    """How one LED colour behaves: ``kind`` is "off", "on", "blink" or "beat".

    ``on_s``/``off_s`` are the blink's seconds on and off (blink only).
    "beat" is steady on, dark for a moment per heartbeat delivered.
    """

    kind: str
    on_s: float | None = None
    off_s: float | None = None

    @property
    def lit(self):
        """True unless the colour is off."""
        return self.kind != "off"

    def describe(self):
        """How it looks, in words: 'steady', 'blinking fast (0.2 s on, 0.2 s off)', …"""
        if self.kind == "blink":
            speed = "fast" if self.on_s + self.off_s < 1.0 else "slowly"
            return f"blinking {speed} ({self.on_s:g} s on, {self.off_s:g} s off)"
        return {"off": "off", "on": "steady",
                "beat": "steady, dark for a moment each time a heartbeat is delivered"}[self.kind]


OFF = Light("off")
ON = Light("on")
BEAT = Light("beat")
SLOW = Light("blink", 1.0, 1.0)
FAST = Light("blink", 0.2, 0.2)

COLOURS = ("green", "red", "amber")
# (red, green, blue) of each colour on one RGB LED.
_RGB = {"green": (0, 1, 0), "red": (1, 0, 0), "amber": (1, 1, 0)}
WHITE = (1, 1, 1)


@dataclass(frozen=True)
class Pattern:
    """A Light for each of the three colours."""

    green: Light = OFF
    red: Light = OFF
    amber: Light = OFF

    @property
    def lit(self):
        """The colours that are not off, in COLOURS order."""
        return tuple(c for c in COLOURS if getattr(self, c).lit)

    def rgb(self):
        """``((r, g, b), light)``: the pattern on one RGB LED, each component 0 or 1.

        All three colours lit is white. Raises ValueError when the lit colours
        behave differently, which one LED cannot show (no rule does that).
        """
        lit = self.lit
        if not lit:
            return (0, 0, 0), OFF
        lights = {getattr(self, c) for c in lit}
        if len(lights) > 1:
            raise ValueError(f"one RGB LED cannot show {self}: the lit colours behave differently")
        if len(lit) == len(COLOURS):
            return WHITE, lights.pop()
        colour = tuple(max(_RGB[c][i] for c in lit) for i in range(3))
        return colour, lights.pop()

    def describe(self):
        """What a person sees, e.g. 'Red, blinking fast (0.2 s on, 0.2 s off)'."""
        lit = self.lit
        if not lit:
            return "All off"
        light = getattr(self, lit[0]).describe()
        if len(lit) == len(COLOURS):
            return f"All LEDs (RGB: white), {light}"
        names = " and ".join(lit)
        return f"{names[0].upper()}{names[1:]}, {light}"


@dataclass(frozen=True)
class Rule:
    """One row of the LED table: when it applies, what it shows, and what it tells a person."""

    name: str
    pattern: Pattern
    means: str
    todo: str


# In precedence order: the first that applies is shown. rule_for() holds the conditions.
RULES = (
    Rule("reset-armed", Pattern(green=FAST, red=FAST, amber=FAST),
          "Factory reset armed: the button was held 15 s.",
          "To erase the settings, hold the button again for 5 s within 10 s of letting go. "
          "To keep them, press it briefly or wait 10 s."),
    Rule("setup", Pattern(amber=FAST),
          "The button has been held 5 s.",
          "The display shows the setup code; keep holding to 15 s for a factory reset."),
    Rule("no-network", Pattern(red=FAST),
          "No network: the appliance has no address (cable out, Wi-Fi down, router off).",
          "Check the cable or Wi-Fi and the router; the display's Network page shows the interface."),
    Rule("heartbeat-failing", Pattern(red=SLOW),
          "Heartbeats are not getting through: a monitor does not answer (Internet down beyond the "
          "router, or the monitor is off).",
          "Check the Internet connection; the display's Status page and the web page show the last error."),
    Rule("not-configured", Pattern(amber=ON),
          "Not set up yet: no device name or heartbeat target.",
          "Hold the button 5 s to see the setup code, then open http://phonehome.local/setup."),
    Rule("clock", Pattern(amber=ON),
          "The clock is not synchronised (drifting, not synced, or no NTP server answers); "
          "heartbeats still go out.",
          "See the display's Time page or run `phonehome time check`; check NTP and that UDP port 123 is open."),
    Rule("waiting", Pattern(green=SLOW),
          "Waiting for the first answer to a heartbeat (just started, or a target was added).",
          "Wait a minute; if it turns red, see above."),
    Rule("ok", Pattern(green=BEAT),
          "All good: heartbeats are delivered (once a minute by default).",
          "Nothing."),
)
_BY_NAME = {r.name: r for r in RULES}

# Not a rule: what a dark box means, for the table a person reads.
DARK = Rule("dark", Pattern(), "No power, or the phonehome agent is not running.",
            "Check the power supply; on the Pi, `systemctl status phonehome-agent`.")


def rule_for(snapshot, *, button_mode=None):
    """The Rule that applies to ``snapshot`` (a status.Snapshot). Pure.

    ``button_mode`` is the button's feedback, ButtonMachine.mode: None,
    "setup" or "reset-armed". Raises ValueError for another mode.
    """
    if button_mode is not None:
        if button_mode not in BUTTON_MODES:
            raise ValueError(f"button_mode must be None or one of {BUTTON_MODES}, got {button_mode!r}")
        return _BY_NAME[button_mode]
    if not snapshot.network.online:
        return _BY_NAME["no-network"]
    if snapshot.heartbeat == "failing":
        return _BY_NAME["heartbeat-failing"]
    # A configured agent always has targets, so heartbeat "off" means not configured too.
    if not snapshot.configured or snapshot.heartbeat == "off":
        return _BY_NAME["not-configured"]
    if snapshot.time_verdict in CLOCK_PROBLEMS:
        return _BY_NAME["clock"]
    if snapshot.heartbeat != "ok":
        return _BY_NAME["waiting"]
    return _BY_NAME["ok"]


def pattern_for(snapshot, *, button_mode=None):
    """The Pattern the LEDs show for ``snapshot``; see rule_for(). Pure."""
    return rule_for(snapshot, button_mode=button_mode).pattern


@dataclass(frozen=True)
class LedRow:
    """One row of the LED table: what you see, what it means, what to do."""

    seen: str
    means: str
    todo: str


LED_TABLE = tuple(LedRow(r.pattern.describe(), r.means, r.todo) for r in (*RULES, DARK))


def led_table_markdown():
    """LED_TABLE as a Markdown table with a note on RGB and two-LED builds, for the README."""
    lines = ["| you see | it means | what to do |", "|---|---|---|"]
    lines += [f"| {row.seen} | {row.means} | {row.todo} |" for row in LED_TABLE]
    lines += ["", ("When several apply, the row nearer the top wins. With one RGB LED, amber shows as yellow "
                   "(red and green together); without an amber LED, red and green light together instead.")]
    return "\n".join(lines) + "\n"

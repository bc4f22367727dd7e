"""The one configuration schema: a tree of frozen dataclasses.

The config file, the command line and (later) the web forms all go through
it. Field docs here are the config reference the README prints. Relative
file and directory names are taken relative to the config file's directory.
"""

import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from appliance.config.secrets import masked
from appliance.config.validate import setting

# Small enough for tests and the demo to run with sub-second intervals.
MIN_INTERVAL_S = 0.05

TARGET_KINDS = ("phonehome", "healthchecks", "uptime-kuma", "url")
SECURITY_MODES = ("starttls", "ssl", "none")
# \Z, not $: "$" also matches before a trailing newline, which would let "home\n" through.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\Z")


def check_url(value):
    # Only the start of the URL is repeated: ping and push URLs carry their secret in the path.
    try:
        parts = urlsplit(value)
    except ValueError:  # "http://[abc": an unclosed IPv6 bracket
        return "is not a valid URL (an IPv6 address goes in brackets: http://[2001:db8::1]:8081/)"
    if parts.scheme not in ("http", "https"):
        # Only the scheme: in other URL kinds (pover://USER@TOKEN) the host part is the secret.
        shown = f"{parts.scheme}://…" if parts.scheme else "a value without '://'"
        return f"must start with http:// or https://, got {shown}"
    if not parts.hostname:
        return f"has no host name, got '{parts.scheme}://…'"
    return None


def check_public_url(value):
    problem = check_url(value)
    if problem:
        return problem
    parts = urlsplit(value)
    if parts.query or parts.fragment or parts.username or parts.password:
        return f"must be the address only, without a query, fragment or login, got {value!r}"
    return None


def check_share(value):
    return None if 0 < value <= 1 else f"must be more than 0 and at most 1 (0.5 = half the devices), got {value:g}"


def check_name(value):
    if not _NAME.match(value):
        return (f"must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit, "
                f"got {value!r}")
    return None


def check_listen(value):
    host, sep, port = value.rpartition(":")
    # isascii: "²".isdigit() is true, yet int("²") fails.
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        return f"must be HOST:PORT with a port from 1 to 65535 (e.g. '127.0.0.1:8081'), got {value!r}"
    return None


def check_email(value):
    return None if _EMAIL.match(value) else f"must be an e-mail address like 'me@example.com', got {value!r}"


def check_apprise_url(value):
    import apprise  # imported here: only configs with Apprise URLs pay for it

    # Apprise logs a URL it cannot parse in full, token included: keep that out of the logs.
    logger = logging.getLogger("apprise")
    was, logger.disabled = logger.disabled, True
    try:
        plugin = apprise.Apprise.instantiate(value)
    finally:
        logger.disabled = was
    if plugin is None:
        scheme = value.split("://", 1)[0] if "://" in value else value[:12]
        # The URL itself is not repeated: it usually holds a token.
        return (f"is not an Apprise URL that phonehome can use (it starts {scheme!r}) "
                f"(see https://github.com/caronc/apprise/wiki for the formats, e.g. 'ntfy://my-topic')")
    return None


# A device changing state more often than this within an hour is flapping whatever the setting; the flapping
# detector keeps threshold + 1 change times per device.
MAX_FLAP_THRESHOLD = 1000


def check_flap_threshold(value):
    return None if value <= MAX_FLAP_THRESHOLD else f"must be at most {MAX_FLAP_THRESHOLD}, got {value}"


def check_port(value):
    return None if 1 <= value <= 65535 else f"must be a port from 1 to 65535, got {value}"


@dataclass(frozen=True)
class Device:
    """This appliance."""

    name: str = setting("", doc="this appliance's name, as the monitor knows it (e.g. 'home'); empty: not set yet",
                        check=lambda v: check_name(v) if v else None)


@dataclass(frozen=True)
class Target:
    """One place the agent phones home to."""

    url: str = setting(doc="where to send the heartbeat (http:// or https://)", check=check_url, secret=True)
    kind: str = setting("phonehome", doc="phonehome, healthchecks, uptime-kuma or url", choices=TARGET_KINDS)
    token: str = setting("", doc="the device's token on a phonehome monitor (kind phonehome only)", secret=True)
    name: str = setting("", doc="a label for logs and the status page (default: the URL's host)")

    @property
    def label(self):
        return self.name or urlsplit(self.url).hostname or self.url

    def problems(self):
        if self.kind == "phonehome" and not self.token:
            yield "token", "required for kind 'phonehome': the token listed for this device in the monitor's config"
        if self.kind != "phonehome" and self.token:
            yield "token", f"not used by kind {self.kind!r}: the URL itself identifies the check; remove it"


@dataclass(frozen=True)
class Heartbeat:
    """How often and where the agent phones home."""

    interval_s: float = setting(60.0, doc="seconds between heartbeats", min=MIN_INTERVAL_S, unit=" s")
    timeout_s: float = setting(10.0, doc="longest a heartbeat request may take, DNS included",
                               min=MIN_INTERVAL_S, unit=" s")
    targets: tuple[Target, ...] = setting((), doc="the [[heartbeat.targets]] to phone home to")

    def problems(self):
        if self.timeout_s > self.interval_s:
            yield "timeout_s", (f"must not be longer than heartbeat.interval_s ({self.interval_s:g} s), "
                                f"or a slow target would delay the next beat; got {self.timeout_s:g}")
        seen = set()
        for i, t in enumerate(self.targets):
            if (t.kind, t.url) in seen:
                yield f"targets[{i}].url", (f"{masked(t.url)!r} is listed twice with kind {t.kind!r} "
                                            f"(the same URL as another target); remove one")
            seen.add((t.kind, t.url))


@dataclass(frozen=True, slots=True)  # slots: a monitor may hold 100,000 of them (about 100 bytes saved each)
class MonitoredDevice:
    """A device the monitor watches."""

    name: str = setting(doc="the device's name; heartbeats carry it in their 'device' field", check=check_name)
    token: str = setting("", doc="shared secret the device sends as 'Authorization: Bearer TOKEN'", secret=True)
    max_silence_s: float = setting(300.0, doc="silence after which the device is declared down",
                                   min=MIN_INTERVAL_S, unit=" s")
    reminder_every_s: float = setting(14400.0, doc="repeat the DOWN alert this often while down; 0 = never",
                                      min=0, unit=" s")
    magic: str = setting("", doc="string that marks this device's requests in monitor.access_log", secret=True)
    site: str = setting("", doc="where the device is (e.g. 'home'); when every device of a site goes silent, one "
                                "alert goes out for the site; empty: no site",
                        check=lambda v: check_name(v) if v else None)

    def problems(self):
        if not self.token and not self.magic:
            yield "token", "required (or a 'magic' string for access-log monitoring): the device could never report"
        if self.token and len(self.token) < 8:
            yield "token", "must be at least 8 characters; use e.g. the output of 'openssl rand -hex 16'"
        if self.magic and any(c.isspace() for c in self.magic):
            yield "magic", "must not contain spaces"
        if 0 < self.reminder_every_s < self.max_silence_s:
            yield "reminder_every_s", (f"must be 0 (never) or at least max_silence_s ({self.max_silence_s:g} s), "
                                       f"got {self.reminder_every_s:g}")


@dataclass(frozen=True)
class Monitor:
    """The monitor: receives heartbeats and decides who is down."""

    listen: str = setting("127.0.0.1:8081", doc="HOST:PORT the monitor's HTTP API listens on", check=check_listen)
    access_log: str = setting("", doc="an Apache/nginx access log (combined format) to follow for 'magic' strings",
                         path=True)
    devices: tuple[MonitoredDevice, ...] = setting((), doc="the [[monitor.devices]] to watch")
    site_window_s: float = setting(60.0, doc="how long a DOWN of a device with a site waits for the rest of "
                                             "its site before it is alerted alone; 0 = never waits",
                                   min=0, unit=" s")
    notify_reboots: bool = setting(False, doc="alert when a device rebooted without being silent for "
                                              "max_silence_s (a power blip); always recorded")
    canary_urls: tuple[str, ...] = setting((), doc="URLs the monitor fetches to check its own Internet connection "
                                                   "(any HTTP answer counts); while none answers, DOWN alerts are "
                                                   "held; empty: no check", check=check_url)
    canary_every_s: float = setting(60.0, doc="how often the canaries are asked", min=MIN_INTERVAL_S, unit=" s")
    mass_silence_share: float = setting(0.5, doc="when this share of the devices that were up go silent within a "
                                                 "minute, one 'mass silence' alert goes out and their DOWN alerts "
                                                 "wait until the monitor's own connectivity is confirmed "
                                                 "(more than 0, at most 1)", check=check_share)
    mass_silence_min_devices: int = setting(4, doc="no mass silence with fewer devices up than this", min=2)
    flap_threshold: int = setting(4, doc="a device that changes state (down or up) more than this often within "
                                         "an hour gets one FLAPPING alert instead of one per change; 0 = never",
                                  min=0, check=check_flap_threshold)
    flap_quiet_s: float = setting(3600.0, doc="how long a flapping device must keep one state before one summary "
                                              "goes out and its alerts are sent one by one again",
                                  min=MIN_INTERVAL_S, unit=" s")
    ack_duration_s: float = setting(86400.0, doc="how long an acknowledged outage sends no reminders (they resume "
                                                 "if it lasts longer; the UP alert is always sent)",
                                    min=MIN_INTERVAL_S, unit=" s")
    public_url: str = setting("", doc="the monitor's address as people open it (e.g. "
                                      "'https://monitor.example.com'); DOWN and REMINDER alerts then carry a link "
                                      "that acknowledges the outage; empty: no link",
                              check=lambda v: check_public_url(v) if v else None)

    def problems(self):
        names, tokens = set(), set()
        for i, d in enumerate(self.devices):
            if d.name in names:
                yield f"devices[{i}].name", f"{d.name!r} is listed twice; device names must be unique"
            if d.token and d.token in tokens:
                yield f"devices[{i}].token", "is the same as another device's token; give each device its own"
            names.add(d.name)
            tokens.add(d.token)
            if d.magic and not self.access_log:
                yield f"devices[{i}].magic", "has no effect without monitor.access_log; set the log's path"


@dataclass(frozen=True)
class Email:
    """E-mail alerts through an SMTP server (also carrier e-mail-to-SMS gateways)."""

    smtp_host: str = setting(doc="the SMTP server's host name")
    sender: str = setting(doc="From: address", check=check_email)
    to: tuple[str, ...] = setting(doc="recipient addresses", check=check_email)
    smtp_port: int = setting(587, doc="the SMTP server's port", check=check_port)
    security: str = setting("starttls", doc="starttls, ssl (implicit TLS, port 465) or none", choices=SECURITY_MODES)
    username: str = setting("", doc="SMTP login name (needs password_file)")
    password_file: str = setting("", doc="file holding the SMTP password, so the config holds no secret",
                                path=True)
    timeout_s: float = setting(30.0, doc="longest one SMTP conversation may take", min=MIN_INTERVAL_S, unit=" s")

    def problems(self):
        if not self.to:
            yield "to", "must list at least one recipient"
        if self.username and not self.password_file:
            yield "password_file", "required when username is set"


@dataclass(frozen=True)
class Alerts:
    """Where alerts go and how hard phonehome tries."""

    urls: tuple[str, ...] = setting((), doc="Apprise URLs (ntfy://, pover://, tgram://, json://, …)",
                                    check=check_apprise_url, secret=True)
    email: Email | None = setting(None, doc="the [alerts.email] table; leave it out for no e-mail")
    outbox_dir: str = setting("", doc="also write every alert as an .eml file here and print it",
                              path=True)
    give_up_after_s: float = setting(86400.0, doc="keep retrying an undelivered alert this long",
                                     min=MIN_INTERVAL_S, unit=" s")


def check_ntp_server(value):
    host, port = split_host_port(value, default_port=123)
    if port is None or not host or any(c.isspace() or c in "/@" for c in host):
        return (f"must be a host name or address, optionally with :PORT (e.g. 'pool.ntp.org', "
                f"'192.168.1.1', 'ntp.lan:11123', '[2001:db8::1]:123'), got {value!r}")
    return None


def split_host_port(value, *, default_port):
    """('host', port) from 'host', 'host:port', '[v6]' or '[v6]:port'; port None when it is not 1-65535."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if not rest else None)
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, ""  # a bare IPv6 address has several colons and no port
    if port == "":
        return host, default_port
    if port is None or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        return host, None
    return host, int(port)


def check_timezone(value):
    import zoneinfo

    if not value:
        return None
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return (f"is not a time zone in the IANA database, got {value!r} "
                f"(e.g. 'America/New_York', 'Europe/Berlin', 'UTC'; 'timedatectl list-timezones' lists them)")
    return None


@dataclass(frozen=True)
class Time:
    """The clock checks: NTP offset against several servers, the system's sync state, the time zone."""

    servers: tuple[str, ...] = setting(("0.pool.ntp.org", "1.pool.ntp.org", "2.pool.ntp.org", "3.pool.ntp.org"),
                                       doc="NTP servers to compare the clock with: HOST or HOST:PORT; "
                                           "an empty list checks only the system's time service and zone",
                                       check=check_ntp_server)
    check_every_s: float = setting(900.0, doc="seconds between clock checks", min=MIN_INTERVAL_S, unit=" s")
    until_synced_every_s: float = setting(30.0, doc="after boot, the first wait between checks until a good "
                                                    "answer; it doubles up to check_every_s",
                                          min=MIN_INTERVAL_S, unit=" s")
    max_offset_ms: float = setting(500.0, doc="offset from the servers above which the clock is 'drifting'",
                                   min=0, unit=" ms")
    timeout_s: float = setting(5.0, doc="longest wait for one server's answer", min=MIN_INTERVAL_S, unit=" s")
    timezone: str = setting("", doc="the IANA time zone this appliance should be in (e.g. 'America/New_York'); "
                                    "empty: not checked", check=check_timezone)

    def problems(self):
        if self.until_synced_every_s > self.check_every_s:
            yield "until_synced_every_s", (f"must not be longer than check_every_s ({self.check_every_s:g} s), "
                                           f"got {self.until_synced_every_s:g}")
        if len(set(self.servers)) != len(self.servers):
            yield "servers", "lists a server twice; remove the repeat"


DISPLAY_DRIVERS = ("none", "ssd1306", "sh1106", "emulator")
# BCM numbers of the GPIO pins on the 40-pin header of the supported boards.
GPIO_PINS = range(2, 28)


def check_pin(value):
    if value not in GPIO_PINS:
        return f"must be a BCM GPIO number from 2 to 27 (the 40-pin header's GPIOs), got {value}"
    return None


def check_i2c_address(value):
    # 0x00-0x07 and 0x78-0x7F are reserved by the I2C specification.
    if not 0x08 <= value <= 0x77:
        return f"must be an I2C address from 0x08 to 0x77 (usually 0x3C or 0x3D), got {value:#04x}"
    return None


@dataclass(frozen=True)
class Display:
    """The small OLED on the appliance."""

    driver: str = setting("none", doc="ssd1306, sh1106, none (no display) or emulator (renders to a PNG file)",
                          choices=DISPLAY_DRIVERS)
    i2c_port: int = setting(1, doc="the I2C bus number (/dev/i2c-N)", min=0)
    i2c_address: int = setting(0x3C, doc="the display's I2C address (write it as 0x3C)", check=check_i2c_address,
                               shown="0x3C")
    width: int = setting(128, doc="pixels across", choices=(128,))
    height: int = setting(64, doc="pixels down", choices=(64, 32))
    rotate: int = setting(0, doc="degrees the picture is turned", choices=(0, 90, 180, 270))
    page_s: float = setting(5.0, doc="seconds each page is shown before the next", min=MIN_INTERVAL_S, unit=" s")
    dim_after_s: float = setting(300.0, doc="dim the display after this long without a button press "
                                            "(against OLED burn-in); 0 = never", min=0, unit=" s")
    emulator_file: str = setting("", doc="where the emulator driver writes its PNG (default: display.png in the "
                                     "service's runtime directory, in RAM; outside systemd data_dir/display.png)",
                                 path=True)


@dataclass(frozen=True)
class Leds:
    """Status LEDs: separate green/red (and optional amber) LEDs, or one RGB LED."""

    green: int | None = setting(None, doc="BCM pin of the green LED", check=check_pin)
    red: int | None = setting(None, doc="BCM pin of the red LED", check=check_pin)
    amber: int | None = setting(None, doc="BCM pin of the amber LED (optional)", check=check_pin)
    rgb: tuple[int, ...] = setting((), doc="BCM pins of one RGB LED as [red, green, blue], instead of the above",
                                   check=check_pin)
    active_high: bool = setting(True, doc="false when an LED lights with its pin low (common anode)")

    @property
    def pins(self):
        return [p for p in (self.green, self.red, self.amber, *self.rgb) if p is not None]

    def problems(self):
        if self.rgb and len(self.rgb) != 3:
            yield "rgb", f"must list three pins [red, green, blue], got {len(self.rgb)}"
        if self.rgb and any(p is not None for p in (self.green, self.red, self.amber)):
            yield "rgb", "set either rgb or green/red/amber, not both"
        if (self.green is None) != (self.red is None) and not self.rgb:
            yield "red" if self.red is None else "green", "set both green and red (amber is optional)"


@dataclass(frozen=True)
class Button:
    """The push button: press for the next page, hold for setup, hold longer for a factory reset."""

    pin: int | None = setting(None, doc="BCM pin the button connects to ground", check=check_pin)


@dataclass(frozen=True)
class Peer:
    """The peer watchdog's relay: power-cycles a watched device (another Pi) that stays silent."""

    device: str = setting("", doc="the [[monitor.devices]] name whose power the relay switches; "
                                  "required with relay_pin")
    relay_pin: int | None = setting(None, doc="BCM pin driving the relay in the peer's power lead; "
                                              "none: never power-cycle", check=check_pin)
    relay_active_high: bool = setting(True, doc="true when the peer has power with the pin high; false when "
                                                "with the pin low (a low-triggered relay board)")
    power_cycle_after_s: float = setting(600.0, doc="power-cycle the peer once it is down and this Pi has heard "
                                                    "nothing from it for this long",
                                         min=MIN_INTERVAL_S, unit=" s")
    power_cycle_off_s: float = setting(10.0, doc="how long the peer's power stays off in a power cycle",
                                       min=MIN_INTERVAL_S, unit=" s")
    power_cycle_min_gap_s: float = setting(3600.0, doc="at most one power cycle this often (kept across "
                                                       "restarts in data_dir/peer-relay.json)",
                                           min=MIN_INTERVAL_S, unit=" s")

    def problems(self):
        if self.relay_pin is not None and not self.device:
            yield "device", ("required when relay_pin is set: the name of the [[monitor.devices]] entry "
                             "the relay powers")
        if self.device and self.relay_pin is None:
            yield "relay_pin", (f"required when device is set: the BCM pin of the relay that powers "
                                f"{self.device!r} (or remove device)")
        if self.power_cycle_min_gap_s <= self.power_cycle_off_s:
            yield "power_cycle_min_gap_s", (f"must be longer than power_cycle_off_s "
                                            f"({self.power_cycle_off_s:g} s), got {self.power_cycle_min_gap_s:g}")


def check_hostname(value):
    labels = value.rstrip(".").split(".")
    if not value or len(value) > 253 or not all(re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", x)
                                                for x in labels):
        return f"must be a host name like 'phonehome.lan' or 'monitor.example.com' (no port, no scheme), got {value!r}"
    return None


@dataclass(frozen=True)
class Web:
    """The web pages: the appliance's setup page and dashboard (the monitor's are on monitor.listen)."""

    listen: str = setting("127.0.0.1:8080", doc="HOST:PORT the appliance's web page listens on "
                                                "(the SD image uses 0.0.0.0:80); empty: no web page",
                          check=lambda v: check_listen(v) if v else None)
    hostnames: tuple[str, ...] = setting((), doc="names besides this machine's own host name, localhost and IP "
                                                 "addresses that browsers may use to reach the pages (e.g. "
                                                 "'monitor.example.com' behind a proxy); others are refused "
                                                 "against DNS rebinding", check=check_hostname)
    api_token: str = setting("", doc="lets scripts read /api/v1/status, /api/v1/devices and /metrics, and pause "
                                     "alerts (/api/v1/pauses, 'phonehome monitor pause'), with 'Authorization: "
                                     "Bearer TOKEN'; empty: those need a logged-in session",
                             secret=True)

    def problems(self):
        if self.api_token and len(self.api_token) < 16:
            yield "api_token", "must be at least 16 characters; use e.g. the output of 'openssl rand -hex 16'"


def check_interface(value):
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}", value):
        return f"must be a network interface name like 'wlan0' (1 to 15 letters, digits, '-', '_', '.'), got {value!r}"
    return None


@dataclass(frozen=True)
class Wifi:
    """Wi-Fi: the setup hotspot an appliance without a network opens, and the Wi-Fi page that joins a network."""

    hotspot: bool = setting(True, doc="open a hotspot phonehome-XXXX (XXXX from the Wi-Fi MAC address) when "
                                      "there is no network, whose page at http://10.42.0.1/ joins a Wi-Fi "
                                      "network; needs NetworkManager")
    hotspot_after_s: float = setting(120.0, doc="how long without any network before the hotspot opens",
                                     min=10.0, unit=" s")
    interface: str = setting("wlan0", doc="the Wi-Fi interface", check=check_interface)


@dataclass(frozen=True)
class System:
    """The appliance's system (the SD image)."""

    read_only_root: bool = setting(False, doc="mount the root file system read-only with a RAM overlay from the "
                                              "next boot on, so a power cut cannot damage it; the config, "
                                              "data_dir, Wi-Fi networks and the clock file stay writable "
                                              "(needs the SD image's initramfs; takes effect after a reboot)")


@dataclass(frozen=True)
class Config:
    """The whole configuration file."""

    data_dir: str = setting("/var/lib/phonehome", doc="where state and history live", path=True)
    device: Device = setting(doc="this appliance ([device] table)", factory=Device)
    heartbeat: Heartbeat = setting(doc="the [heartbeat] table", factory=Heartbeat)
    monitor: Monitor | None = setting(None, doc="the [monitor] table; an agent with one also runs a monitor")
    alerts: Alerts = setting(doc="the [alerts] table", factory=Alerts)
    time: Time = setting(doc="the [time] table", factory=Time)
    display: Display = setting(doc="the [display] table", factory=Display)
    leds: Leds = setting(doc="the [leds] table", factory=Leds)
    button: Button = setting(doc="the [button] table", factory=Button)
    peer: Peer = setting(doc="the [peer] table: a relay that power-cycles a silent watched device",
                         factory=Peer)
    web: Web = setting(doc="the [web] table", factory=Web)
    wifi: Wifi = setting(doc="the [wifi] table", factory=Wifi)
    system: System = setting(doc="the [system] table", factory=System)

    @property
    def agent_configured(self):
        """True when the agent has what it needs to send heartbeats."""
        return bool(self.device.name and self.heartbeat.targets)

    def problems(self):
        pins = self.leds.pins + ([self.button.pin] if self.button.pin is not None else [])
        for pin in sorted({p for p in pins if pins.count(p) > 1}):
            yield "leds", f"GPIO {pin} is used twice (LEDs and button need a pin each)"
        if self.display.driver in ("ssd1306", "sh1106") and self.display.i2c_port == 1:
            for pin in sorted(set(pins) & {2, 3}):
                yield "leds" if pin in self.leds.pins else "button", (
                    f"GPIO {pin} is the I2C bus the display uses (GPIO 2 = SDA, 3 = SCL); choose another pin")
        if self.heartbeat.targets and not self.device.name:
            yield "device.name", "required when heartbeat.targets are set: the monitor knows the device by it"
        yield from self._peer_problems(pins)

    def _peer_problems(self, pins):
        relay = self.peer.relay_pin
        if relay is not None and relay in pins:
            owner = "button" if relay == self.button.pin else "LEDs"
            yield "peer.relay_pin", f"GPIO {relay} is also used by the {owner}; give the relay a pin of its own"
        if relay is not None and self.display.driver in ("ssd1306", "sh1106") and self.display.i2c_port == 1 \
                and relay in (2, 3):
            yield "peer.relay_pin", (f"GPIO {relay} is the I2C bus the display uses (GPIO 2 = SDA, 3 = SCL); "
                                     f"choose another pin")
        if not self.peer.device:
            return
        if self.monitor is None:
            yield "peer.device", (f"needs a [monitor] table with {self.peer.device!r} in [[monitor.devices]]: "
                                  f"this Pi must watch the device it power-cycles; add them, or remove [peer]")
            return
        names = [d.name for d in self.monitor.devices]
        if self.peer.device not in names:
            watched = ", ".join(repr(n) for n in names) or "none yet"
            yield "peer.device", (f"{self.peer.device!r} is not in [[monitor.devices]] (watched: {watched}); "
                                  f"add it there or name one of those")

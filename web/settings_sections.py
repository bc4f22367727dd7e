"""The settings pages' forms, one class per part of the config schema.

A form starts from the running config's TOML table and changes only its own
part (``apply``); the page then validates the whole table with the schema.
Secrets (tokens, URLs that carry one, the SMTP password) are never sent back
to the browser: their inputs are empty with the masked value as a hint, and
an empty input keeps the current value.
"""

import os
import re

from appliance.atomic import write_atomic
from appliance.config.schema import DISPLAY_DRIVERS, SECURITY_MODES, TARGET_KINDS, Email, Monitor
from appliance.config.secrets import is_masked, masked
from web.settings_forms import (
    UNCHANGED, checked, hex_number, items, lines, number, put, shown_number, text, whole, whole_list,
)

SMTP_PASSWORD_FILE = "smtp-password"
_GPIO = re.compile(r"\bGPIO (\d+)\b")
_MAGIC = re.compile(r"monitor\.devices\[\d+\]\.magic")

TARGET_KIND_NAMES = {"phonehome": "a phonehome monitor (needs a token)", "healthchecks": "a healthchecks.io check",
                     "uptime-kuma": "an Uptime Kuma push monitor", "url": "any URL (a plain GET)"}
DRIVER_NAMES = {"none": "no display", "ssd1306": "SSD1306 OLED", "sh1106": "SH1106 OLED",
                "emulator": "emulator (draws into a PNG file)"}
SECURITY_NAMES = {"starttls": "STARTTLS (port 587)", "ssl": "TLS from the start (port 465)",
                  "none": "none (only on a trusted network)"}


class Section:
    """One settings form: its fields, where each lives in the config, and how its strings convert."""

    name = ""                 # the page: /settings/<name>, template settings/<name>.html
    title = ""
    fields = {}               # form field -> key path in the config (``[*]``: any item of a list)
    secret = frozenset()      # fields whose values never go back to the browser
    checkboxes = frozenset()  # fields a browser leaves out when unticked

    def values(self, config):
        """The form's fields filled from ``config`` (secrets left out)."""
        return {}

    def typed(self, form, config):
        """What to show after a rejected form: what the person typed, secrets excepted."""
        shown = self.values(config)
        for name in self.fields:
            if name in self.checkboxes:
                shown[name] = checked(form, name)
            elif name not in self.secret:
                shown[name] = form.get(name, "")
        return shown

    def placeholders(self, config):
        """{secret field: what may be shown of its current value}."""
        return {}

    def stale(self, config, form):
        """Why ``form`` no longer fits ``config`` (another window changed it meanwhile), or None."""
        return None

    def apply(self, table, form, config, errors):
        """Change this form's part of ``table`` (the whole config's) from ``form``; put conversion errors in
        ``errors``."""
        raise NotImplementedError

    def hook(self, path, message, form):
        """[(field, prefix)] for a problem its key path alone does not place; None to place it by path."""

    def before_save(self, form, config):
        """Write what lives beside the config file (runs after validation); raises OSError."""

    def summary(self, config):
        return ""


class DeviceForm(Section):
    name, title = "device", "Device"
    fields = {"name": "device.name"}

    def values(self, config):
        return {"name": config.device.name}

    def apply(self, table, form, config, errors):
        table.setdefault("device", {})["name"] = text(form, "name")

    def summary(self, config):
        return f"named '{config.device.name}'" if config.device.name else "no name yet"


class HeartbeatForm(Section):
    name, title = "heartbeat", "Heartbeat"
    fields = {"interval_s": "heartbeat.interval_s", "timeout_s": "heartbeat.timeout_s"}

    def values(self, config):
        return {name: shown_number(getattr(config.heartbeat, name)) for name in self.fields}

    def apply(self, table, form, config, errors):
        heartbeat = table.setdefault("heartbeat", {})
        put(heartbeat, "interval_s", number(form, "interval_s", errors, example="60"))
        put(heartbeat, "timeout_s", number(form, "timeout_s", errors, example="10"))

    def summary(self, config):
        h = config.heartbeat
        return f"every {shown_number(h.interval_s)} s, each request within {shown_number(h.timeout_s)} s"


class TargetsList(Section):
    """Only the overview's entry: the list page has no form of its own."""

    name, title = "targets", "Heartbeat targets"

    def summary(self, config):
        targets = config.heartbeat.targets
        if not targets:
            return "none yet: the agent sends no heartbeats"
        return f"{len(targets)} target(s): " + ", ".join(f"{t.label} ({t.kind})" for t in targets)


class TimeForm(Section):
    name, title = "time", "Time"
    fields = {"timezone": "time.timezone", "servers": "time.servers", "check_every_s": "time.check_every_s",
              "until_synced_every_s": "time.until_synced_every_s", "max_offset_ms": "time.max_offset_ms",
              "timeout_s": "time.timeout_s"}

    def values(self, config):
        t = config.time
        return {"timezone": t.timezone, "servers": "\n".join(t.servers), "check_every_s": shown_number(t.check_every_s),
                "until_synced_every_s": shown_number(t.until_synced_every_s),
                "max_offset_ms": shown_number(t.max_offset_ms), "timeout_s": shown_number(t.timeout_s)}

    def apply(self, table, form, config, errors):
        t = table.setdefault("time", {})
        t["timezone"] = text(form, "timezone")
        t["servers"] = lines(form, "servers")
        put(t, "check_every_s", number(form, "check_every_s", errors, example="900"))
        put(t, "until_synced_every_s", number(form, "until_synced_every_s", errors, example="30"))
        put(t, "max_offset_ms", number(form, "max_offset_ms", errors, unit="milliseconds", example="500"))
        put(t, "timeout_s", number(form, "timeout_s", errors, example="5"))

    def summary(self, config):
        t = config.time
        zone = f"zone {t.timezone}" if t.timezone else "zone not checked"
        servers = f"{len(t.servers)} NTP server(s)" if t.servers else "no NTP servers"
        return f"{zone}; {servers}; checked every {shown_number(t.check_every_s)} s"


class DisplayForm(Section):
    name, title = "display", "Display"
    fields = {name: f"display.{name}" for name in ("driver", "i2c_port", "i2c_address", "width", "height", "rotate",
                                                   "page_s", "dim_after_s", "emulator_file")}

    def values(self, config):
        d = config.display
        return {"driver": d.driver, "i2c_port": str(d.i2c_port), "i2c_address": f"0x{d.i2c_address:02X}",
                "width": str(d.width), "height": str(d.height), "rotate": str(d.rotate),
                "page_s": shown_number(d.page_s), "dim_after_s": shown_number(d.dim_after_s),
                "emulator_file": d.emulator_file}

    def apply(self, table, form, config, errors):
        d = table.setdefault("display", {})
        d["driver"] = text(form, "driver")
        put(d, "i2c_port", whole(form, "i2c_port", errors, what="a bus number", example="1"))
        put(d, "i2c_address", hex_number(form, "i2c_address", errors))
        for name, example in (("width", "128"), ("height", "64"), ("rotate", "180")):
            put(d, name, whole(form, name, errors, example=example))
        put(d, "page_s", number(form, "page_s", errors, example="5"))
        put(d, "dim_after_s", number(form, "dim_after_s", errors, example="300"))
        d["emulator_file"] = text(form, "emulator_file")

    def summary(self, config):
        d = config.display
        if d.driver == "none":
            return "no display"
        if d.driver == "emulator":
            return "emulator, drawing into a PNG file"
        return f"{d.driver} at 0x{d.i2c_address:02X} on I2C bus {d.i2c_port}, turned {d.rotate}°"


class PinsForm(Section):
    name, title = "pins", "LEDs and button"
    fields = {"green": "leds.green", "red": "leds.red", "amber": "leds.amber", "rgb": "leds.rgb",
              "active_high": "leds.active_high", "button": "button.pin"}
    checkboxes = frozenset({"active_high"})
    _pins = ("green", "red", "amber", "button")

    def values(self, config):
        leds = config.leds
        return {"green": shown_number(leds.green), "red": shown_number(leds.red), "amber": shown_number(leds.amber),
                "rgb": ", ".join(str(p) for p in leds.rgb), "active_high": leds.active_high,
                "button": shown_number(config.button.pin)}

    def apply(self, table, form, config, errors):
        leds = table.setdefault("leds", {})
        for name in ("green", "red", "amber"):
            put(leds, name, whole(form, name, errors, what="a BCM GPIO number", example="17", optional=True))
        put(leds, "rgb", whole_list(form, "rgb", errors, what="a BCM GPIO number", example="17, 27, 22"))
        leds["active_high"] = checked(form, "active_high")
        put(table.setdefault("button", {}), "pin",
            whole(form, "button", errors, what="a BCM GPIO number", example="26", optional=True))

    def hook(self, path, message, form):
        # "leds: GPIO 17 is used twice" names no field: show it at every field that holds that pin.
        found = _GPIO.search(message)
        if path not in ("leds", "button") or not found:
            return None
        pin = found.group(1)
        holders = [name for name in self._pins if text(form, name) == pin]
        holders += ["rgb"] if pin in items(form, "rgb") else []
        return [(name, "") for name in holders]

    def summary(self, config):
        leds, parts = config.leds, []
        if leds.rgb:
            parts.append("RGB LED on GPIO " + ", ".join(str(p) for p in leds.rgb))
        for name in ("green", "red", "amber"):
            if getattr(leds, name) is not None:
                parts.append(f"{name} LED on GPIO {getattr(leds, name)}")
        if config.button.pin is not None:
            parts.append(f"button on GPIO {config.button.pin}")
        return "; ".join(parts) or "none used"


class PeersForm(Section):
    name, title = "peers", "Peer watchdog"
    fields = {"enabled": "monitor", "listen": "monitor.listen", "access_log": "monitor.access_log",
              "relay_device": "peer.device", "relay_pin": "peer.relay_pin",
              "relay_active_high": "peer.relay_active_high", "power_cycle_after_s": "peer.power_cycle_after_s",
              "power_cycle_off_s": "peer.power_cycle_off_s", "power_cycle_min_gap_s": "peer.power_cycle_min_gap_s"}
    checkboxes = frozenset({"enabled", "relay_active_high"})

    def values(self, config):
        monitor, peer = config.monitor or Monitor(), config.peer
        return {"enabled": config.monitor is not None, "listen": monitor.listen, "access_log": monitor.access_log,
                "relay_device": peer.device, "relay_pin": shown_number(peer.relay_pin),
                "relay_active_high": peer.relay_active_high,
                "power_cycle_after_s": shown_number(peer.power_cycle_after_s),
                "power_cycle_off_s": shown_number(peer.power_cycle_off_s),
                "power_cycle_min_gap_s": shown_number(peer.power_cycle_min_gap_s)}

    def apply(self, table, form, config, errors):
        if not checked(form, "enabled"):
            table.pop("monitor", None)
            table.pop("peer", None)  # the relay power-cycles a watched device: nothing to do without them
            return
        monitor = table.setdefault("monitor", {})
        monitor["listen"] = text(form, "listen")
        monitor["access_log"] = text(form, "access_log")
        peer = table.setdefault("peer", {})
        peer["device"] = text(form, "relay_device")
        put(peer, "relay_pin", whole(form, "relay_pin", errors, what="a BCM GPIO number", example="24",
                                     optional=True))
        peer["relay_active_high"] = checked(form, "relay_active_high")
        for name, example in (("power_cycle_after_s", "600"), ("power_cycle_off_s", "10"),
                              ("power_cycle_min_gap_s", "3600")):
            put(peer, name, number(form, name, errors, example=example))

    def hook(self, path, message, form):
        # A device's magic string needs the access log: the field to fix is this page's.
        return [("access_log", f"{path}: ")] if _MAGIC.fullmatch(path) else None

    def summary(self, config):
        monitor = config.monitor
        if monitor is None:
            return "off"
        names = ", ".join(d.name for d in monitor.devices) or "no devices yet"
        relay = config.peer
        power = f"; power-cycles {relay.device} through GPIO {relay.relay_pin}" if relay.relay_pin is not None else ""
        return f"on at {monitor.listen}, watching {names}{power}"


class AlertsForm(Section):
    name, title = "alerts", "Alerts"
    fields = {"urls": "alerts.urls", "outbox_dir": "alerts.outbox_dir", "give_up_after_s": "alerts.give_up_after_s",
              "smtp_host": "alerts.email.smtp_host", "smtp_port": "alerts.email.smtp_port",
              "security": "alerts.email.security", "sender": "alerts.email.sender", "to": "alerts.email.to",
              "username": "alerts.email.username", "password": "alerts.email.password_file",
              "smtp_timeout_s": "alerts.email.timeout_s"}
    secret = frozenset({"password"})
    _email_fields = ("smtp_host", "sender", "to", "username", "password")

    def values(self, config):
        a = config.alerts
        email = a.email or Email(smtp_host="", sender="", to=())  # no e-mail yet: the schema's defaults
        return {"urls": "\n".join(masked(u) for u in a.urls), "outbox_dir": a.outbox_dir,
                "give_up_after_s": shown_number(a.give_up_after_s), "smtp_host": email.smtp_host,
                "smtp_port": str(email.smtp_port), "security": email.security, "sender": email.sender,
                "to": "\n".join(email.to), "username": email.username, "smtp_timeout_s": shown_number(email.timeout_s)}

    def typed(self, form, config):
        shown = super().typed(form, config)
        # Apprise URLs carry their token: a rejected form shows the new ones hidden too (paste them again).
        shown["urls"] = "\n".join(line if is_masked(line) else masked(line) for line in lines(form, "urls"))
        return shown

    def placeholders(self, config):
        email = config.alerts.email
        return {"password": "(a password is set)"} if email is not None and email.password_file else {}

    def apply(self, table, form, config, errors):
        alerts = table.setdefault("alerts", {})
        put(alerts, "urls", self._urls(form, config, errors))
        alerts["outbox_dir"] = text(form, "outbox_dir")
        put(alerts, "give_up_after_s", number(form, "give_up_after_s", errors, example="86400"))
        if not any(text(form, name) for name in self._email_fields):
            alerts.pop("email", None)  # every e-mail field empty: no e-mail alerts
            return
        email = alerts.setdefault("email", {})
        for name in ("smtp_host", "sender"):
            put(email, name, text(form, name) or None)  # left out, the schema says "required" and what it is
        email["to"] = items(form, "to")
        put(email, "smtp_port", whole(form, "smtp_port", errors, what="a port number", example="587"))
        email["security"] = text(form, "security")
        email["username"] = text(form, "username")
        if text(form, "password"):
            email["password_file"] = os.path.join(config.data_dir, SMTP_PASSWORD_FILE)
        elif checked(form, "password_clear"):
            email.pop("password_file", None)
        put(email, "timeout_s", number(form, "smtp_timeout_s", errors, example="30"))

    @staticmethod
    def _urls(form, config, errors):
        """The Apprise URLs: a line still masked keeps the current URL it stands for (the first unused match)."""
        unused, out = list(config.alerts.urls), []
        for i, line in enumerate(lines(form, "urls")):
            if not is_masked(line):
                out.append(line)
                continue
            match = next((u for u in unused if masked(u) == line), None)
            if match is None:
                errors["urls"] = (f"entry {i + 1} ({line!r}) stands for a hidden URL that is no longer in the "
                                  f"settings; paste the full URL again or delete the line")
                return UNCHANGED
            unused.remove(match)
            out.append(match)
        return out

    def before_save(self, form, config):
        password = form.get("password", "")
        if password.strip():
            os.makedirs(config.data_dir, exist_ok=True)
            write_atomic(os.path.join(config.data_dir, SMTP_PASSWORD_FILE), password.strip() + "\n", mode=0o600)

    def summary(self, config):
        a, parts = config.alerts, []
        if a.urls:
            parts.append(f"{len(a.urls)} Apprise URL(s)")
        if a.email is not None:
            parts.append("e-mail to " + ", ".join(a.email.to))
        if a.outbox_dir:
            parts.append(f"copies in {a.outbox_dir}")
        return "; ".join(parts) or "none: nobody is told when a watched device goes down"


class WebForm(Section):
    name, title = "web", "Web page"
    fields = {"listen": "web.listen", "hostnames": "web.hostnames", "api_token": "web.api_token"}
    secret = frozenset({"api_token"})

    def values(self, config):
        return {"listen": config.web.listen, "hostnames": "\n".join(config.web.hostnames)}

    def placeholders(self, config):
        return {"api_token": masked(config.web.api_token)}

    def apply(self, table, form, config, errors):
        web = table.setdefault("web", {})
        web["listen"] = text(form, "listen")
        web["hostnames"] = lines(form, "hostnames")
        token = text(form, "api_token")
        if token:
            web["api_token"] = token
        elif checked(form, "api_token_clear"):
            web.pop("api_token", None)

    def summary(self, config):
        web = config.web
        where = f"on {web.listen}" if web.listen else "off"
        return f"{where}; API token {'set' if web.api_token else 'not set'}"


class SystemForm(Section):
    """The system under the appliance; the page also shows what is mounted now (appliance.rootfs)."""

    name, title = "system", "System and Wi-Fi"
    fields = {"read_only_root": "system.read_only_root", "hotspot": "wifi.hotspot",
              "hotspot_after_s": "wifi.hotspot_after_s", "interface": "wifi.interface"}
    checkboxes = frozenset({"read_only_root", "hotspot"})

    def values(self, config):
        return {"read_only_root": config.system.read_only_root, "hotspot": config.wifi.hotspot,
                "hotspot_after_s": shown_number(config.wifi.hotspot_after_s), "interface": config.wifi.interface}

    def apply(self, table, form, config, errors):
        table.setdefault("system", {})["read_only_root"] = checked(form, "read_only_root")
        wifi = table.setdefault("wifi", {})
        wifi["hotspot"] = checked(form, "hotspot")
        put(wifi, "hotspot_after_s", number(form, "hotspot_after_s", errors, example="120"))
        wifi["interface"] = text(form, "interface")

    def summary(self, config):
        if config.system.read_only_root:
            root = "root file system read-only with a RAM overlay (from the boot after it was set)"
        else:
            root = "root file system writable"
        return f"{root}; setup hotspot {'on' if config.wifi.hotspot else 'off'}"


# The pages with one form each, by URL name, in the overview's order (targets and peers' devices have lists).
SECTIONS = {s.name: s for s in (DeviceForm(), HeartbeatForm(), TargetsList(), TimeForm(), DisplayForm(), PinsForm(),
                                PeersForm(), AlertsForm(), WebForm(), SystemForm())}
CHOICES = {"kind": [(k, f"{k}: {TARGET_KIND_NAMES[k]}") for k in TARGET_KINDS],
           "driver": [(d, f"{d}: {DRIVER_NAMES[d]}") for d in DISPLAY_DRIVERS],
           "security": [(s, f"{s}: {SECURITY_NAMES[s]}") for s in SECURITY_MODES]}

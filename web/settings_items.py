"""The settings forms for one entry of a list: a heartbeat target, a device the peer watchdog watches.

An entry is addressed by its index in the list (as in the key paths of the
schema's messages, ``heartbeat.targets[2]``); ``index`` None adds one. Its
forms also carry the entry's fingerprint (``entry_key``): when another
window changed the list since the page was loaded, the index may name
another entry, and ``stale`` says so instead of editing or removing it.
"""

import hashlib
import hmac
import json

from flask import current_app

from appliance.config.validate import to_table

from appliance.config.schema import MonitoredDevice
from appliance.config.secrets import masked
from web.settings_forms import UNCHANGED, checked, number, put, shown_number, text
from web.settings_sections import Section


STALE = ("this list changed in another window since this page was loaded, so nothing was changed; "
         "open the list again and repeat the change")


def entry_key(entry):
    """A fingerprint of a list entry for its forms; keyed with the session key, so it reveals nothing of the
    entry's secrets."""
    data = json.dumps(to_table(entry), sort_keys=True).encode()
    return hmac.new(current_app.secret_key, data, hashlib.sha256).hexdigest()[:16]


def _stale(entry, form):
    return STALE if entry is None or not hmac.compare_digest(form.get("entry", ""), entry_key(entry)) else None


class TargetForm(Section):
    """One [[heartbeat.targets]] entry; ``index`` None adds one."""

    name, title = "target", "Heartbeat target"
    fields = {"name": "heartbeat.targets[*].name", "kind": "heartbeat.targets[*].kind",
              "url": "heartbeat.targets[*].url", "token": "heartbeat.targets[*].token"}
    secret = frozenset({"url", "token"})

    def __init__(self, index=None):
        self.index = index

    def current(self, config):
        targets = config.heartbeat.targets
        return targets[self.index] if self.index is not None and self.index < len(targets) else None

    def stale(self, config, form):
        return None if self.index is None else _stale(self.current(config), form)

    def values(self, config):
        target = self.current(config)
        return {"name": target.name, "kind": target.kind} if target else {"name": "", "kind": "phonehome"}

    def placeholders(self, config):
        target = self.current(config)
        return {"url": masked(target.url), "token": masked(target.token)} if target else {}

    def apply(self, table, form, config, errors):
        targets = table.setdefault("heartbeat", {}).setdefault("targets", [])
        if self.index is None:
            targets.append({})
        item = targets[-1 if self.index is None else self.index]
        item["name"] = text(form, "name")
        item["kind"] = text(form, "kind")
        put(item, "url", text(form, "url") or UNCHANGED)
        token = text(form, "token")
        if token:
            item["token"] = token
        elif item["kind"] != "phonehome":  # a kind without tokens: the old one goes, not "remove it" forever
            item.pop("token", None)


class RemoveItem(Section):
    """Removing entry ``index`` of the list at ``path`` (e.g. ("heartbeat", "targets"))."""

    def __init__(self, path, index):
        self.path, self.index = path, index

    def stale(self, config, form):
        entries = config
        for key in self.path:
            entries = getattr(entries, key, None) or ()
        return _stale(entries[self.index] if self.index < len(entries) else None, form)

    def apply(self, table, form, config, errors):
        for key in self.path[:-1]:
            table = table[key]
        del table[self.path[-1]][self.index]


class PeerDeviceForm(Section):
    """One [[monitor.devices]] entry; ``index`` None adds one."""

    name, title = "peer", "Watched device"
    fields = {name: f"monitor.devices[*].{name}" for name in ("name", "token", "max_silence_s", "reminder_every_s",
                                                               "magic")}
    secret = frozenset({"token"})

    def __init__(self, index=None):
        self.index = index

    def current(self, config):
        devices = config.monitor.devices if config.monitor is not None else ()
        return devices[self.index] if self.index is not None and self.index < len(devices) else None

    def stale(self, config, form):
        return None if self.index is None else _stale(self.current(config), form)

    def values(self, config):
        device = self.current(config)
        if device is None:
            device = MonitoredDevice(name="")  # the schema's defaults
        return {"name": device.name, "max_silence_s": shown_number(device.max_silence_s),
                "reminder_every_s": shown_number(device.reminder_every_s), "magic": device.magic}

    def placeholders(self, config):
        device = self.current(config)
        return {"token": masked(device.token)} if device else {}

    def apply(self, table, form, config, errors):
        devices = table["monitor"].setdefault("devices", [])  # KeyError: the watchdog was turned off meanwhile
        if self.index is None:
            devices.append({})
        item = devices[-1 if self.index is None else self.index]
        item["name"] = text(form, "name")
        token = text(form, "token")
        if token:
            item["token"] = token
        elif checked(form, "token_clear"):
            item.pop("token", None)
        put(item, "max_silence_s", number(form, "max_silence_s", errors, example="300"))
        put(item, "reminder_every_s", number(form, "reminder_every_s", errors, example="14400 (0 = never)"))
        item["magic"] = text(form, "magic")

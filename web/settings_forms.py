"""The two translations around the config schema that the settings pages need.

A form's strings become TOML values (numbers, pins, hex addresses, lists),
and the schema's problems ("heartbeat.targets[2].url: …") come back as a
message next to the form field they name. Nothing here validates a setting
itself: that is the schema's job, so a form accepts exactly what the config
file accepts.
"""

import dataclasses
import math
import re

from appliance.config.secrets import masked

# Which settings page owns a key path, for problems a page cannot show next to one of its own fields.
OWNERS = (("heartbeat.targets", "Heartbeat targets"), ("heartbeat", "Heartbeat"), ("device", "Device"),
          ("time", "Time"), ("display", "Display"), ("leds", "LEDs and button"), ("button", "LEDs and button"),
          ("monitor", "Peer watchdog"), ("peer", "Peer watchdog"), ("alerts", "Alerts"), ("web", "Web page"),
          ("system", "System and Wi-Fi"), ("wifi", "System and Wi-Fi"))

_INDEX = re.compile(r"\[\d+\]")
_LAST_INDEX = re.compile(r"\[(\d+)\]$")
_SPLIT = re.compile(r"[,\n]")


class Unchanged:
    """What a converter returns for input it could not read: the table keeps its value, the error says why."""


UNCHANGED = Unchanged()


def text(form, name):
    """The form's value for ``name``, stripped ("" when the field was not sent)."""
    return form.get(name, "").strip()


def checked(form, name):
    """True when the checkbox ``name`` was ticked (a browser leaves an unticked box out of the form)."""
    return name in form


def lines(form, name):
    """The non-empty lines of a textarea, stripped."""
    return [line.strip() for line in form.get(name, "").splitlines() if line.strip()]


def items(form, name):
    """The entries of a field that takes several, separated by commas or new lines."""
    return [item.strip() for item in _SPLIT.split(form.get(name, "")) if item.strip()]


def number(form, name, errors, *, unit="seconds", example="60"):
    """A float from the form, or UNCHANGED with the reason in ``errors[name]``."""
    value = text(form, name)
    if not value:
        errors[name] = f"is empty; enter a number of {unit}, e.g. {example}"
        return UNCHANGED
    try:
        parsed = float(value)
    except ValueError:
        parsed = math.nan
    if not math.isfinite(parsed):
        errors[name] = f"must be a number of {unit} (digits, maybe with a '.'), e.g. {example}; got {value!r}"
        return UNCHANGED
    return parsed


def whole(form, name, errors, *, what="a whole number", example="1", optional=False):
    """An int from the form; None for an empty optional field; UNCHANGED with the reason in ``errors[name]``."""
    value = text(form, name)
    if not value:
        if optional:
            return None
        errors[name] = f"is empty; enter {what}, e.g. {example}"
        return UNCHANGED
    try:
        return int(value, 10)
    except ValueError:
        errors[name] = f"must be {what} (digits only), e.g. {example}; got {value!r}"
        return UNCHANGED


def whole_list(form, name, errors, *, what, example):
    """A list of ints from comma- or line-separated entries, or UNCHANGED with the reason in ``errors[name]``."""
    out = []
    for i, entry in enumerate(items(form, name)):
        try:
            out.append(int(entry, 10))
        except ValueError:
            errors[name] = f"entry {i + 1} must be {what} (digits only), e.g. {example}; got {entry!r}"
            return UNCHANGED
    return out


def hex_number(form, name, errors, *, example="0x3C"):
    """An int written as hex with 0x (or as a decimal number), or UNCHANGED with the reason in ``errors[name]``."""
    value = text(form, name)
    try:
        return int(value, 0)
    except ValueError:
        errors[name] = f"must be an address in hex with its 0x, e.g. {example}; got {value!r}"
        return UNCHANGED


def put(table, key, value):
    """Set ``table[key]``: UNCHANGED keeps it, None removes it (the schema's default applies)."""
    if value is UNCHANGED:
        return
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value


def shown_number(value):
    """A number as a person types it: 60 rather than 60.0."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def place(problems, fields, *, hook=None, secrets=()):
    """Sort schema problems ("key.path: message") into {form field: message}; the rest under "form".

    ``fields`` maps form field names to key paths, with ``[*]`` for "any item
    of this list" (an edited item can clash with a sibling: the config was
    valid before the edit, so the clash is the edit's). ``hook(path,
    message)`` may name the fields for problems the paths alone cannot
    place. No secret in ``secrets`` survives into a message.
    """
    by_path = {path: name for name, path in fields.items()}
    errors = {}
    for problem in problems:
        path, _, message = problem.partition(": ")
        message = scrub(message, secrets)
        names = (hook(path, message) if hook else None) or _field_for(path, by_path)
        if names:
            for name, prefix in names:
                _add(errors, name, prefix + message)
        else:
            _add(errors, "form", f"{path}: {message}{_owner_hint(path)}")
    return errors


def _field_for(path, by_path):
    generic = _INDEX.sub("[*]", path)
    if generic in by_path:
        return [(by_path[generic], "")]
    last = _LAST_INDEX.search(path)
    if last:  # an entry of a list of plain values: the field that holds the whole list
        whole_path = _INDEX.sub("[*]", path[:last.start()])
        if whole_path in by_path:
            return [(by_path[whole_path], f"entry {int(last.group(1)) + 1}: ")]
    return []


def _owner_hint(path):
    for prefix, title in OWNERS:
        if path == prefix or path.startswith((prefix + ".", prefix + "[")):
            return f" (change it on the settings page '{title}')"
    return ""


def _add(errors, name, message):
    errors[name] = f"{errors[name]}; {message}" if name in errors else message


def scrub(message, secrets):
    """``message`` with every secret in ``secrets`` replaced by its masked form (longest first)."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        message = message.replace(secret, masked(secret))
    return message


def secret_values(obj):
    """Every secret value in a config dataclass tree (for ``scrub``)."""
    out = set()
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        values = value if isinstance(value, tuple) else (value,)
        for item in values:
            if f.metadata.get("secret") and isinstance(item, str):
                out.add(item)
            elif dataclasses.is_dataclass(item):
                out |= secret_values(item)
    return out

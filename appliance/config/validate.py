"""The engine that turns a TOML table into the frozen dataclasses of ``schema``.

It walks the dataclass fields, checks every value, and collects every problem
with its key path (``heartbeat.targets[1].url: …``) instead of stopping at the
first, so a person fixes a config file in one go. Unknown keys get a "did you
mean" hint. Checks that involve several fields live on the dataclass itself as
``problems(self) -> [(key, message)]``.
"""

import dataclasses
import math
import os
import types
import typing


def setting(default=dataclasses.MISSING, *, doc, factory=None, check=None, min=None, choices=None, unit="",
            path=False, shown=None, secret=False):
    """A config field with its documentation and its checks.

    ``check(value)`` returns an error message or None; ``min`` is the smallest
    accepted number; ``choices`` the accepted strings; ``path`` marks a file
    or directory name that is taken relative to the config file's directory;
    ``shown`` is how the reference writes the default (e.g. "0x3C"); ``secret``
    marks a value never shown in full (see ``appliance.config.secrets``).
    """
    meta = {"doc": doc, "check": check, "min": min, "choices": choices, "unit": unit, "path": path, "shown": shown,
            "secret": secret}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def build(cls, table, path, problems):
    """Build ``cls`` from ``table``; append problems; return the instance or None."""
    if not isinstance(table, dict):
        problems.append(f"{path or 'config'}: must be a table, got {_describe(table)}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in table:
        if key not in fields:
            problems.append(f"{_join(path, key)}: unknown key{_suggest(key, fields)}")
    values = {}
    before = len(problems)
    for name, f in fields.items():
        if name not in table:
            continue
        value = _convert(hints[name], table[name], _join(path, name), problems, f.metadata)
        if value is not _BAD:
            values[name] = value
    if len(problems) != before:
        return None
    try:
        obj = cls(**values)
    except TypeError as exc:  # a required field is missing
        missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        for name in missing:
            problems.append(f"{_join(path, name)}: required, {fields[name].metadata.get('doc', '')}".rstrip(", "))
        if not missing:
            problems.append(f"{path or 'config'}: {exc}")
        return None
    check = getattr(obj, "problems", None)
    if check is not None:
        for key, message in check():
            problems.append(f"{_join(path, key)}: {message}")
    return obj


_BAD = object()


def _convert(hint, value, path, problems, meta):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)][0]
        return _convert(inner, value, path, problems, meta)
    if dataclasses.is_dataclass(hint):
        obj = build(hint, value, path, problems)
        return _BAD if obj is None else obj
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list):
            problems.append(f"{path}: must be a list, got {_describe(value)}")
            return _BAD
        out = [_convert(item, v, f"{path}[{i}]", problems, meta) for i, v in enumerate(value)]
        return _BAD if any(v is _BAD for v in out) else tuple(out)
    return _scalar(hint, value, path, problems, meta)


# TOML's integers are 64-bit; tomllib reads longer ones, which no whole-number setting can use.
INT_RANGE = range(-2**63, 2**63)
# The longest duration any setting takes: 31 days. Longer ones are mistakes, and waits beyond what the
# platform's clock calls accept would kill the thread that waits.
MAX_DURATION_S = 31 * 86400


_FLOATS = {}
_FLOATS_MAX = 1024


def _shared_float(value):
    """``float(value)``, one object per distinct value: 100,000 [[monitor.devices]] with the same max_silence_s
    then hold one float, not 100,000 (24 bytes each). Bounded: past _FLOATS_MAX distinct values, plain floats."""
    value = float(value)
    shared = _FLOATS.get(value)
    if shared is not None:
        return shared
    if len(_FLOATS) < _FLOATS_MAX:
        _FLOATS[value] = value
    return value


def _scalar(hint, value, path, problems, meta):
    bad = len(problems)
    describe = _describe_secret if meta.get("secret") else _describe
    if hint is bool:
        if not isinstance(value, bool):
            problems.append(f"{path}: must be true or false, got {describe(value)}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: must be a whole number, got {describe(value)}")
        elif value not in INT_RANGE:
            problems.append(f"{path}: must be a whole number of at most 19 digits, got {describe(value)}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            what = "a number of seconds" if meta.get("unit") else "a number"  # e.g. a share
            problems.append(f"{path}: must be {what}, got {describe(value)}")
        else:
            value = _shared_float(value)
    elif hint is str:
        if not isinstance(value, str):
            problems.append(f"{path}: must be a string, got {describe(value)}")
        else:
            # A copy made now, while the parsed TOML is still alive, lands in fresh memory pages; the parser's
            # original sits among its key strings and dicts, and would keep their pages from being freed after
            # the parse (with 100,000 [[monitor.devices]] that was several hundred bytes per device).
            value = value.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")
    if len(problems) != bad:
        return _BAD
    low = meta.get("min")
    if low is not None and value < low:
        problems.append(f"{path}: must be at least {low:g}{meta.get('unit', '')}, got {value:g}")
        return _BAD
    if meta.get("unit") == " s" and value > MAX_DURATION_S:
        problems.append(f"{path}: must be at most {MAX_DURATION_S} s (31 days), got {value:g}")
        return _BAD
    choices = meta.get("choices")
    if choices and value not in choices:
        problems.append(f"{path}: must be one of {', '.join(repr(c) for c in choices)}, got {value!r}"
                        f"{_suggest(str(value), choices)}")
        return _BAD
    check = meta.get("check")
    if check is not None:
        message = check(value)
        if message:
            problems.append(f"{path}: {message}")
            return _BAD
    return value


def _join(path, key):
    return f"{path}.{key}" if path else key


def _suggest(word, candidates):
    candidates = [c for c in candidates if isinstance(c, str)]  # numbers have no near misses worth naming
    import difflib  # here: only a config with an unknown key needs it, and the agent keeps what it imports

    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _describe_secret(value):
    """What a wrong secret value is, never the value itself."""
    return {bool: "true or false", int: "a number", float: "a number", dict: "a table", list: "a list"}.get(
        type(value), "a value of another kind")


def _finite(number):
    """math.isfinite, False also for an integer too large for a float (isfinite raises for one)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def _describe(value):
    if isinstance(value, int) and not isinstance(value, bool) and value not in INT_RANGE:
        return f"a whole number of {len(str(abs(value)))} digits"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    return repr(value)


def resolve_paths(obj, base_dir):
    """A copy of ``obj`` whose relative ``path`` fields are joined to ``base_dir``."""
    changes = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("path") and value and not os.path.isabs(value):
            changes[f.name] = os.path.normpath(os.path.join(base_dir, value))
        elif dataclasses.is_dataclass(value):
            changes[f.name] = resolve_paths(value, base_dir)
    return dataclasses.replace(obj, **changes) if changes else obj


def to_table(obj):
    """The TOML table for a config dataclass (inverse of ``build``); None values are left out."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        if dataclasses.is_dataclass(value):
            value = to_table(value)
        elif isinstance(value, tuple):
            value = [to_table(v) if dataclasses.is_dataclass(v) else v for v in value]
        out[f.name] = value
    return out

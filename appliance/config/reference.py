"""The configuration reference, generated from the schema so the README cannot drift from it."""

import dataclasses
import typing

from appliance.config.schema import Config


def render_reference():
    """Markdown: one table per TOML table, one row per key (type, default, meaning)."""
    out = []
    _table(Config, "", out)
    return "\n".join(out) + "\n"


def _table(cls, path, out):
    hints = typing.get_type_hints(cls)
    header = f"`[{path}]`" if path else "top level"
    if path.endswith("[]"):
        header = f"`[[{path[:-2]}]]`"
    rows, children = [], []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        inner = _inner(hint)
        if dataclasses.is_dataclass(inner):
            child = f"{path}.{f.name}" if path else f.name
            children.append((inner, child + ("[]" if typing.get_origin(hint) is tuple else "")))
            continue
        doc = f.metadata.get("doc", "")
        if f.metadata.get("min") is not None:
            doc += f" (at least {f.metadata['min']:g})"
        if f.metadata.get("choices"):
            doc += " (one of " + ", ".join(f"`{c}`" for c in f.metadata["choices"]) + ")"
        kind = "milliseconds" if f.metadata.get("unit") == " ms" else _type(hint)
        if hint is float and not f.metadata.get("unit"):
            kind = "number"  # a float without a unit is not a duration (e.g. a share)
        rows.append(f"| `{f.name}` | {kind} | {_default(f)} | {doc} |")
    if rows:
        out += [f"#### {header}", "", "| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    for inner, child in children:
        _table(inner, child, out)


def _inner(hint):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple or (args and typing.get_origin(hint) is not None):
        return args[0]
    return hint


def _type(hint):
    if typing.get_origin(hint) is tuple:
        return f"list of {_type(typing.get_args(hint)[0])}"
    optional = [a for a in typing.get_args(hint) if a is not type(None)]
    if optional:  # e.g. int | None: a key that may be left out
        return f"{_type(optional[0])} (optional)"
    return {str: "string", float: "seconds", int: "integer", bool: "boolean"}.get(hint, str(hint))


def _default(f):
    if f.metadata.get("shown"):
        return f"`{f.metadata['shown']}`"
    if f.default is dataclasses.MISSING:
        return "required"
    if f.default is None:
        return "(none)"
    if f.default in ("", ()):
        return "(empty)"
    if isinstance(f.default, float):
        return f"{f.default:g}"
    return f"`{f.default!r}`".replace("'", '"')

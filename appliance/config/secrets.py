"""Which settings are secrets, and how they are shown without giving them away.

A field marked ``secret=True`` in the schema (tokens, URLs that carry a
token) is never rendered back in full: the web forms and the config
download show ``masked(value)``, and a value that is still masked when it
comes back means "unchanged" in a form and "refused" in a restored file.
"""

import dataclasses
from urllib.parse import urlsplit

from appliance.config.validate import to_table

MASK = "****"


def mask_url(url):
    """``url`` reduced to what is safe to show: "json://127.0.0.1:8080/****", "tgram://****".

    Many Apprise URLs keep a token where the host goes (tgram://BOTTOKEN/…,
    ntfy://TOPIC), so the host is shown only when it looks like a host name
    (has a dot, is an IPv6 address, or is "localhost").
    """
    parts = urlsplit(url)
    try:
        host, port = parts.hostname or "", parts.port
    except ValueError:  # "tgram://123:ABC/…": the token's second half parses as a port
        host, port = "", None
    if "." not in host and ":" not in host and host != "localhost":
        return f"{parts.scheme}://****"
    shown = f"[{host}]" if ":" in host else host
    if port is not None:
        shown += f":{port}"
    rest = parts.username or parts.password or parts.path.strip("/") or parts.query or parts.fragment
    return f"{parts.scheme}://{shown}" + ("/****" if rest else "")


def masked(value):
    """What may be shown of a secret: a URL without its secret parts, or a token's last four characters."""
    if not value:
        return ""
    if "://" in value:
        return mask_url(value)
    return MASK + (value[-4:] if len(value) >= 16 else "")


def is_masked(value):
    """True for a value ``masked`` made (it cannot be a real secret: phonehome's secrets never hold '****')."""
    return isinstance(value, str) and MASK in value


def secret_fields(cls):
    """The names of ``cls``'s fields marked secret."""
    return {f.name for f in dataclasses.fields(cls) if f.metadata.get("secret")}


def masked_table(obj):
    """The TOML table of a config dataclass with every secret masked (the inverse of nothing: for showing only)."""
    table = to_table(obj)
    _mask(obj, table)
    return table


def _mask(obj, table):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name not in table:
            continue
        if f.metadata.get("secret"):
            table[f.name] = [masked(v) for v in value] if isinstance(value, tuple) else masked(value)
        elif dataclasses.is_dataclass(value):
            _mask(value, table[f.name])
        elif isinstance(value, tuple):
            for item, sub in zip(value, table[f.name]):
                if dataclasses.is_dataclass(item):
                    _mask(item, sub)


def masked_paths(obj, prefix=""):
    """The key paths ("heartbeat.targets[0].token") whose values in ``obj`` are still masked."""
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{prefix}.{f.name}" if prefix else f.name
        if f.metadata.get("secret"):
            values = value if isinstance(value, tuple) else (value,)
            if any(is_masked(v) for v in values):
                out.append(path)
        elif dataclasses.is_dataclass(value):
            out += masked_paths(value, path)
        elif isinstance(value, tuple):
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    out += masked_paths(item, f"{path}[{i}]")
    return out

"""Cutting text that people read to a length that fits (a display line, an SMS, a field on the wire)."""


def shorten(text, limit):
    """``text`` cut to at most ``limit`` characters, ending in "…" when it was cut."""
    if len(text) <= limit:
        return text
    return text[:limit - 1].rstrip(" ;,(") + "…"

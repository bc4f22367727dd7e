"""Each device's last heartbeat, kept as its compact JSON text.

A parsed heartbeat from the agent (its clock check included) is a dict of a
dozen keys, a nested dict and a float or string per value: about 1.4 KB in
CPython. The same beat as compact JSON bytes is about 0.5 KB, and it is the
form the store writes anyway. The monitor reads a device's last beat once per
heartbeat (the one before, to compare) and for pages; decoding ~450 bytes of
JSON costs a few microseconds, so with 100,000 devices this trade keeps
about 90 MB out of memory for a few percent of the CPU a heartbeat costs.
"""

import json

_ENCODE = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


class LastBeats:
    """{device name: last heartbeat dict}, stored encoded; every read returns a fresh dict.

    Only the methods the monitor uses: ``get``, ``[name] = beat``, ``in``,
    ``len``, ``items`` and ``raw``. A returned dict may be changed freely:
    it is a copy.
    """

    __slots__ = ("_texts",)

    def __init__(self, texts=None):
        """``texts`` is {name: JSON bytes or str} as the store holds them."""
        self._texts = {name: text.encode() if isinstance(text, str) else text for name, text in (texts or {}).items()}

    def get(self, name, default=None):
        """The device's last heartbeat as a new dict, or ``default`` when it has none."""
        text = self._texts.get(name)
        return default if text is None else json.loads(text)

    def __setitem__(self, name, beat):
        self._texts[name] = _ENCODE(beat).encode()

    def raw(self, name):
        """The device's last heartbeat as compact JSON (UTF-8 bytes, not to be changed), or None."""
        return self._texts.get(name)

    def items(self):
        """(name, beat dict) of every device that has a last heartbeat (each decoded: O(devices))."""
        return ((name, json.loads(text)) for name, text in list(self._texts.items()))

    def __contains__(self, name):
        return name in self._texts

    def __len__(self):
        return len(self._texts)

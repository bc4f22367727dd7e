"""Each device's last heartbeat, kept as compact JSON without its key names.

A parsed heartbeat from the agent (its clock check included) is a dict of a
dozen keys, a nested dict and a float or string per value: about 1.4 KB in
CPython. As JSON it is about 500 bytes, almost half of them key names; kept
as a JSON array of its values in a fixed key order (a bit mask says which
keys are present) it is about 300 bytes, small enough for Python's own
allocator instead of malloc. With 100,000 devices that keeps about 110 MB
out of memory. The monitor reads a device's last beat once per heartbeat
(the one before, to compare) and for pages; decoding costs a few
microseconds. The store keeps full JSON objects (``json_text``).
"""

import json

_ENCODE = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
# In the order intake.parse_heartbeat and the service add them, so a beat comes back with its keys in order.
_KEYS = ("device", "sent_at", "seq", "boot_id", "uptime_s", "agent_started_at", "version", "send_failures", "time",
         "peers", "received_at", "clock_offset_ms", "interval_s")
_TIME_KEYS = ("verdict", "reason", "service", "zone", "offset_ms", "jitter_ms", "checked_at", "synchronized")
_EXTRAS = 1 << len(_KEYS)  # a dict of keys not in _KEYS follows the values
_TIME_PACKED = _EXTRAS << 1  # "time" is packed as [mask, values...] over _TIME_KEYS
_TIME_INDEX = _KEYS.index("time")


def pack(beat):
    """The compact JSON (UTF-8 bytes) of a heartbeat dict; ``unpack`` gives back an equal dict."""
    mask, values = 0, [0]
    for i, key in enumerate(_KEYS):
        if key in beat:
            mask |= 1 << i
            value = beat[key]
            if i == _TIME_INDEX and isinstance(value, dict) and value.keys() <= _TIME_KEY_SET:
                mask |= _TIME_PACKED
                value = _pack_keys(value, _TIME_KEYS)
            values.append(value)
    if len(beat) > mask.bit_count() - bool(mask & _TIME_PACKED):
        mask |= _EXTRAS
        values.append({k: v for k, v in beat.items() if k not in _KEY_SET})
    values[0] = mask
    return _ENCODE(values).encode()


def unpack(packed):
    """The heartbeat dict of ``pack``'s bytes (a new dict each time)."""
    values = json.loads(packed)
    mask = values[0]
    beat, at = {}, 1
    for i, key in enumerate(_KEYS):
        if mask & (1 << i):
            value = values[at]
            at += 1
            if i == _TIME_INDEX and mask & _TIME_PACKED:
                value = _unpack_keys(value, _TIME_KEYS)
            beat[key] = value
    if mask & _EXTRAS:
        beat.update(values[at])
    return beat


def _pack_keys(d, keys):
    mask, out = 0, [0]
    for i, key in enumerate(keys):
        if key in d:
            mask |= 1 << i
            out.append(d[key])
    out[0] = mask
    return out


def _unpack_keys(values, keys):
    mask, d, at = values[0], {}, 1
    for i, key in enumerate(keys):
        if mask & (1 << i):
            d[key] = values[at]
            at += 1
    return d


_KEY_SET = frozenset(_KEYS)
_TIME_KEY_SET = frozenset(_TIME_KEYS)


class LastBeats:
    """{device name: last heartbeat dict}, stored packed; every read returns a fresh dict.

    Only the methods the monitor uses: ``get``, ``[name] = beat``, ``in``,
    ``len``, ``items`` and ``raw``. A returned dict may be changed freely: it
    is a copy.
    """

    __slots__ = ("_packed",)

    def __init__(self, texts=None):
        """``texts`` is {name: JSON object text (str or bytes)} as the store holds them."""
        self._packed = {name: pack(json.loads(text)) for name, text in (texts or {}).items()}

    def get(self, name, default=None):
        """The device's last heartbeat as a new dict, or ``default`` when it has none."""
        packed = self._packed.get(name)
        return default if packed is None else unpack(packed)

    def __setitem__(self, name, beat):
        self._packed[name] = pack(beat)

    def raw(self, name):
        """The device's last heartbeat packed (bytes, for ``unpack`` or ``json_text``), or None."""
        return self._packed.get(name)

    def items(self):
        """(name, beat dict) of every device that has a last heartbeat (each unpacked: O(devices))."""
        return ((name, unpack(packed)) for name, packed in list(self._packed.items()))

    def __contains__(self, name):
        return name in self._packed

    def __len__(self):
        return len(self._packed)


def json_text(beat):
    """A heartbeat as the store writes it, a JSON object (str): from ``pack``'s bytes or from a dict."""
    return _ENCODE(unpack(beat) if isinstance(beat, bytes) else beat)

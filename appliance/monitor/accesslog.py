"""Heartbeats from a web server's access log, the way phonehome started in 2013.

The original setup: cron on the Pi ran ``curl http://server/raspberrypiPhoneHome?<epoch>``
every minute, and a Perl script on the server grepped Apache's access log for
the newest line containing ``raspberrypiPhoneHome``. With ``monitor.access_log``
set, each line whose request contains a device's ``magic`` string is that
device's heartbeat, timed by the log line's own timestamp (so lines read late —
at startup, after a rotation — still count for when they happened).

``parse_line`` and ``device_for`` are pure. ``AccessLogFollower`` is the file
edge: a loop you call (``poll()``), which follows the log through rotations.
"""

import grp
import logging
import os
import pwd
import re
from datetime import datetime, timedelta, timezone

logger = logging.getLogger(__name__)

SCAN_BYTES = 1024 * 1024        # what the first poll reads of an existing log
MAX_LINE_BYTES = 64 * 1024      # longer lines are dropped, so memory stays bounded
_CHUNK_BYTES = 64 * 1024

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}

# "[02/Feb/2013:22:00:02 -0500] " followed by the opening quote of the request
# line. Apache (%t "%r") and nginx ($time_local "$request") both write this, in
# common, combined, vhost_combined and most custom formats; what comes before
# it (client, ident, user, a vhost) does not matter to us. Apache and nginx
# escape '"' inside logged fields (\" and \x22), so no field before the request
# can fake this opening.
_HEAD = re.compile(
    r'\[(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})? ([+-])(\d{2})(\d{2})\] "')
# The rest of the request line up to its closing quote, then status and size;
# anything after (referer, user agent, extra fields) is allowed and ignored.
_REST = re.compile(r'((?:[^"\\]|\\.)*)" (?:\d{3}|-) (?:\d+|-)(?:\s|$)')


def parse_line(line):
    """Parse one access-log line (str, or bytes decoded as UTF-8 with replacement).

    Returns ``(epoch_s, request_path)``: the line's timestamp converted to UTC
    epoch seconds (float) using the zone written in it, and the request target
    as logged (path and query, e.g. ``/raspberrypiPhoneHome?1359860402``).
    Returns None for anything that is not a common/combined-format request
    line (a blank line, a truncated line, a bad date, a request line that is
    not ``METHOD TARGET [PROTOCOL]``); never raises.
    """
    if isinstance(line, (bytes, bytearray)):
        line = bytes(line).decode("utf-8", errors="replace")
    # Only the first timestamp-and-quote counts: a later one lives inside the
    # referer or user agent, which anyone can set (see _HEAD).
    head = _HEAD.search(line)
    if head is None:
        return None
    rest = _REST.match(line, head.end())
    if rest is None:
        return None
    day, month, year, hour, minute, second, fraction, sign, zone_h, zone_m = head.groups()
    if month not in _MONTHS or int(zone_m) >= 60:
        return None
    offset = timedelta(hours=int(zone_h), minutes=int(zone_m))
    try:
        stamp = datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second),
                         tzinfo=timezone(-offset if sign == "-" else offset))
    except ValueError:  # 31 Feb, hour 25, a zone of 24 h or more
        return None
    parts = rest.group(1).split()
    if len(parts) not in (2, 3) or (len(parts) == 3 and not parts[2].startswith("HTTP/")):
        return None   # "-", a TLS handshake sent to port 80, a target with spaces
    return stamp.timestamp() + float(fraction or 0), parts[1]


def device_for(request_path, magics):
    """The device whose magic string ``request_path`` contains, or None.

    ``magics`` is a sequence of ``(magic, device_name)`` pairs as built by
    ``magic_table``; the first match wins. Matching is case-sensitive, like
    the grep it replaces.
    """
    for magic, name in magics:
        if magic in request_path:
            return name
    return None


def magic_table(magics):
    """Turn ``{magic: device_name}`` into pairs for ``device_for``.

    Empty magic strings are dropped (every path contains ""), and longer
    magics come first, so with both "pi" and "pi-garage" configured a request
    for /pi-garage counts for the device that owns "pi-garage".
    """
    return tuple(sorted(((m, n) for m, n in magics.items() if m), key=lambda mn: (-len(mn[0]), mn[0])))


class AccessLogFollower:
    """Follow an access log like ``tail -F`` and report each device's heartbeat lines.

    ``magics`` maps magic string -> device name. ``on_heartbeat(device_name,
    line_epoch_s)`` is called once per matching line, in file order, with the
    line's own timestamp (UTC epoch seconds); an exception it raises is logged
    and the next line is handled. Only the request line is searched for the
    magic string, never the referer or user agent: a link to
    /raspberrypiPhoneHome on someone's page, or a crafted User-Agent, must
    not count as the Pi being alive.

    The first ``poll()`` reads the last ``scan_bytes`` (1 MiB) of an existing
    log, from a line start, so the monitor learns the latest heartbeat at
    startup; after that only new lines are read. Rotation is followed:
    rename-and-create (we switch once the new file has lines, i.e. once the
    server has reopened its log, and read the renamed file to its end first),
    copytruncate (the file shrinks below our position: read it from the start
    again; a file that regrows past our position between two polls goes
    unnoticed), and a log that is missing, unreadable or back again, each
    logged once. Lines
    longer than ``max_line_bytes`` (64 KiB) are dropped. The file is read as
    bytes and decoded as UTF-8 with replacement characters.

    Not thread-safe except for ``update_magics``; one thread calls ``poll()``.
    Also a context manager; ``close()`` is idempotent.
    """

    def __init__(self, path, magics, on_heartbeat, *, log=logger,
                 scan_bytes=SCAN_BYTES, max_line_bytes=MAX_LINE_BYTES):
        self.path = os.fspath(path)
        self._magics = magic_table(magics)
        self._on_heartbeat = on_heartbeat
        self._log = log
        self._scan_bytes = scan_bytes
        self._max_line_bytes = max_line_bytes
        self._file = None          # the open log, binary and unbuffered
        self._ident = None         # (st_dev, st_ino) of the open log
        self._offset = 0           # bytes of the open log read so far
        self._pending = bytearray()  # a line still waiting for its newline
        self._skipping = False     # dropping bytes up to the next newline
        self._opened_once = False  # the tail scan is for the first file only
        self._problem = None       # (kind, detail) logged last; None when fine
        self._error = None         # the first OSError of the current poll
        self._closed = False

    def update_magics(self, magics):
        """Use a new ``{magic: device_name}`` from the next line on, keeping our place in the log.

        Safe to call from another thread than the one calling ``poll()``.
        """
        self._magics = magic_table(magics)

    def poll(self):
        """Read what is new in the log and report heartbeats; returns the number of lines handled.

        Lines handled are complete lines read and examined, heartbeat or not
        (a fragment still waiting for its newline and dropped overlong lines
        do not count). Never raises for file problems: they are logged once
        each and retried on the next call. Returns 0 after ``close()``.
        """
        if self._closed:
            return 0
        self._error = None
        handled = self._follow()
        self._report(self._error)   # after the whole poll, so one state per poll is logged at most once
        return handled

    def close(self):
        """Close the log file; idempotent."""
        self._closed = True
        self._close_file()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _follow(self):
        handled = self._read_to_end() if self._file is not None else 0
        try:
            st = os.stat(self.path)
        except OSError as e:
            self._error = self._error or e
            return handled   # keep reading the open file: the writer may not have reopened yet
        if self._file is not None and (st.st_dev, st.st_ino) == self._ident:
            if st.st_size < self._offset:
                self._log.info("access log %s was truncated (copytruncate rotation?); reading it from the start",
                               self.path)
                self._rewind(0)
                handled += self._read_to_end()
            return handled
        if self._file is not None and st.st_size == 0:
            # Renamed and recreated, but the server still writes to the old
            # file until it reopens its logs; switch once the new one has lines.
            return handled
        return handled + self._open_new()

    def _open_new(self):
        """Open the file now at ``self.path``: the first one, or the next after a rotation."""
        try:
            new = open(self.path, "rb", buffering=0)
        except OSError as e:
            self._error = self._error or e
            return 0
        st = os.fstat(new.fileno())
        if (st.st_dev, st.st_ino) == self._ident:  # rotated back between stat and open
            new.close()
            return 0
        handled = 0
        if self._file is not None:
            handled += self._read_to_end()   # lines the old file got since this poll's first read (a race)
            handled += self._flush_fragment()
            if self._problem is None:
                self._log.info("access log %s was rotated; following the new file", self.path)
            self._close_file()
        self._file, self._ident = new, (st.st_dev, st.st_ino)
        if self._opened_once:
            self._rewind(0)   # a new file after rotation: every line in it is new
        else:
            self._opened_once = True
            start = st.st_size - self._scan_bytes
            # Start one byte early and skip through the first newline: if that
            # byte is the newline ending the previous line, we start exactly
            # at `start`; otherwise the partial line is skipped.
            self._rewind(start - 1 if start > 0 else 0, skip_partial=start > 0)
        return handled + self._read_to_end()

    def _rewind(self, offset, *, skip_partial=False):
        self._file.seek(offset)
        self._offset = offset
        self._pending.clear()
        self._skipping = skip_partial

    def _close_file(self):
        if self._file is not None:
            self._file.close()
        self._file = None

    def _read_to_end(self):
        handled = 0
        while True:
            try:
                chunk = self._file.read(_CHUNK_BYTES)
            except OSError as e:   # EIO on a failing disk, a vanished NFS mount
                self._error = self._error or e
                return handled
            if not chunk:
                return handled
            self._offset += len(chunk)
            handled += self._feed(chunk)

    def _feed(self, chunk):
        """Split ``chunk`` into lines, keeping an unterminated fragment for the next read."""
        handled, start = 0, 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            piece = chunk[start:end]
            start = end + 1
            if self._skipping:
                self._skipping = False
                continue
            if self._pending:
                self._pending += piece
                piece = bytes(self._pending)
                self._pending.clear()
            if len(piece) > self._max_line_bytes:
                self._warn_long_line()
                continue
            handled += self._handle_line(piece)
        if not self._skipping:
            self._pending += chunk[start:]
            if len(self._pending) > self._max_line_bytes:
                self._warn_long_line()
                self._pending.clear()
                self._skipping = True
        return handled

    def _flush_fragment(self):
        """Handle the old file's unterminated last line: nobody will finish it now."""
        if self._skipping or not self._pending:
            return 0
        piece = bytes(self._pending)
        self._pending.clear()
        return self._handle_line(piece)

    def _warn_long_line(self):
        self._log.warning("access log %s: dropped a line longer than %d bytes", self.path, self._max_line_bytes)

    def _handle_line(self, raw):
        parsed = parse_line(raw)   # a CR before the newline is trailing whitespace to it
        if parsed is None:
            return 1
        epoch_s, request_path = parsed
        # The request line only: a magic string in the referer (a link on
        # someone's page) or the user agent is not the Pi phoning home.
        device = device_for(request_path, self._magics)
        if device is not None:
            try:
                self._on_heartbeat(device, epoch_s)
            except Exception:
                # A bug downstream must not stop the log being followed.
                self._log.exception("access log %s: handling a heartbeat of %s failed", self.path, device)
        return 1

    def _report(self, error):
        """Log a problem with the log file once when it starts and once when it ends."""
        if error is None:
            if self._problem is not None:
                kind = self._problem[0]
                what = {"missing": "is back", "denied": "is readable now"}.get(kind, "can be read again")
                self._log.info("access log %s %s; following it", self.path, what)
                self._problem = None
            return
        if isinstance(error, FileNotFoundError):
            problem = ("missing", None)
        elif isinstance(error, PermissionError):
            problem = ("denied", None)
        else:
            problem = ("error", error.errno)
        if problem == self._problem:
            return
        self._problem = problem
        if problem[0] == "missing":
            if self._file is None:
                self._log.warning("access log %s does not exist; waiting for it to appear", self.path)
            else:
                self._log.warning("access log %s has disappeared; reading what is left of it and waiting for "
                                  "it to come back", self.path)
        elif problem[0] == "denied":
            self._log.error("%s", _permission_advice(self.path))
        else:
            self._log.error("cannot read access log %s: %s; will keep trying", self.path,
                            error.strerror or error)


def _permission_advice(path):
    """What to tell a person whose phonehome may not read ``path``."""
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:   # a uid with no passwd entry, e.g. in a container
        user = str(os.geteuid())
    try:
        group = grp.getgrgid(os.stat(path).st_gid).gr_name
    except (OSError, KeyError):
        group = "adm"  # Debian's group for reading logs in /var/log
    return (f"cannot read access log {path}: permission denied for user {user!r}. "
            f"Add the user to the log's group and restart phonehome: sudo usermod -aG {group} {user}")

"""The monitor's memory: devices, events, outages, alert deliveries and paused alerts in SQLite (WAL).

An event, the outage it opens or closes, the device's new state and one
delivery row per alert channel are written in one transaction, so a monitor
killed at any moment either knows about a transition and will alert it, or
never saw it. Last-heartbeat times are written behind, at most once a second
in one batch, because losing a second of them costs nothing (the startup
grace covers it) and writing each one would cap ingestion at the disk's speed.
"""

import dataclasses
import json
import os
import sqlite3
import threading

from appliance.errors import StoreError
from appliance.monitor.events import ALERTING, Event, Kind, State
from appliance.monitor.machine import Restored
from appliance.monitor.store_quiet import QUIET_SCHEMA, QuietRecords
from appliance.monitor.store_self import SELF_SCHEMA, SelfRecords

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    last_heard_at REAL,
    outage_id INTEGER,
    last_alert_at REAL,
    last_beat TEXT
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    old TEXT NOT NULL,
    new TEXT NOT NULL,
    at REAL NOT NULL,
    reason TEXT NOT NULL,
    last_heard_at REAL,
    outage_started_at REAL,
    outage_s REAL
);
CREATE INDEX IF NOT EXISTS events_device ON events(device, id);
CREATE TABLE IF NOT EXISTS outages (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    started_at REAL NOT NULL,
    detected_at REAL NOT NULL,
    ended_at REAL,
    duration_s REAL
);
CREATE INDEX IF NOT EXISTS outages_device ON outages(device, id);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES events(id),
    channel TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_try_at REAL NOT NULL,
    done_at REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries(channel, status, id);
CREATE TABLE IF NOT EXISTS pauses (
    device TEXT PRIMARY KEY,
    paused_at REAL NOT NULL,
    until REAL
);
CREATE TABLE IF NOT EXISTS site_outages (
    site TEXT PRIMARY KEY,
    started_at REAL NOT NULL,
    event_id INTEGER NOT NULL REFERENCES events(id)
);
"""
# Columns added after the first release: a database made before them gets them at open.
# (table, column, type)
ADDED_COLUMNS = (
    ("events", "cause", "TEXT"),
    ("events", "detail", "TEXT"),
    ("events", "site", "TEXT"),
    ("outages", "cause", "TEXT"),
    ("outages", "cause_text", "TEXT"),
    ("outages", "event_id", "INTEGER"),
)
# Needs the added columns, so it comes after them.
INDEXES = """
CREATE INDEX IF NOT EXISTS outages_event ON outages(event_id);
CREATE INDEX IF NOT EXISTS deliveries_held ON deliveries(event_id) WHERE status='held';
"""
# Kinds that are about a site, not a device: no device row, no outage row of their own.
_SITE_KINDS = (Kind.SITE_DOWN,)
# Kinds that are about the monitor itself (selfcheck): no device row, no outage row, no site row.
_MONITOR_KINDS = (Kind.MASS_SILENCE, Kind.MASS_SILENCE_END)


class Store(QuietRecords, SelfRecords):
    """One SQLite database; every method is safe to call from any thread."""

    def __init__(self, path):
        """Open (or create) the database at ``path``; raises StoreError saying what to change."""
        self.path = path
        self._lock = threading.Lock()
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a power cut without corruption; the last
            # commits may be lost, which the delivery rows' at-least-once rule covers.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(SCHEMA + QUIET_SCHEMA + SELF_SCHEMA)
            self._add_columns()
            self._db.executescript(INDEXES)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the monitor's database {path}: {exc}; set data_dir to a directory "
                             f"this user can write") from None

    def _add_columns(self):
        missing = [c for c in ADDED_COLUMNS if c[1] not in self._columns(c[0])]
        if not missing:
            return
        with self._tx() as db:  # checked again inside: another process may have added them meanwhile
            for table, column, kind in missing:
                if column not in self._columns(table):
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def _columns(self, table):
        return {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}

    def close(self):
        with self._lock:
            self._db.close()

    def _tx(self):
        return _Transaction(self._db, self._lock)

    # -- device state --------------------------------------------------

    def restored(self):
        """{name: Restored} for every device the store knows."""
        with self._lock:
            rows = self._db.execute(
                "SELECT d.name, d.state, d.last_heard_at, o.started_at, d.last_alert_at "
                "FROM devices d LEFT JOIN outages o ON o.id = d.outage_id").fetchall()
        return {name: Restored(State(state), heard, started, alert) for name, state, heard, started, alert in rows}

    def record(self, events, channels, *, muted=(), settle=(), told=None):
        """Store events with their outages and device states; queue a delivery per channel.

        ``channels`` are the names of the alert channels in force; ``muted``
        names devices whose alerts are paused: their events are stored as
        any other, but no delivery is queued (a site event's ``alert`` flag
        already says whether its site is muted). An event marked ``held``
        gets its deliveries queued as held: nobody is told until a later
        ``settle`` releases them. ``settle`` holds Settled entries for events
        recorded earlier with held deliveries, done first: their cause is
        written (on the event and its outage) and their deliveries released
        or dropped. ``told(event)`` names the channels that already sent an
        event's alert from memory while the disk could not take it: their
        rows are written as sent. Returns the events with their ``id`` set.
        """
        stored = []
        told = told or (lambda event: ())
        with self._tx() as db:
            for s in settle:
                self._settle(db, s)
            for e in events:
                stored.append(self._insert(db, e, channels, muted, told(e)))
        return stored

    def _settle(self, db, s):
        db.execute("UPDATE events SET cause=COALESCE(?, cause), reason=COALESCE(?, reason), "
                   "detail=COALESCE(?, detail) WHERE id=?", (s.cause, s.reason, s.detail, s.event_id))
        if s.cause is not None:
            db.execute("UPDATE outages SET cause=?, cause_text=? WHERE event_id=?", (s.cause, s.reason, s.event_id))
        if s.keep_held:  # the self-check holds it on
            self._self_hold(db, s.event_id, s.device)
            return
        self._self_settled(db, s.event_id)
        if s.release:
            db.execute("UPDATE deliveries SET status='pending' WHERE event_id=? AND status='held'", (s.event_id,))
        else:
            db.execute("UPDATE deliveries SET status='merged', done_at=created_at, last_error=? "
                       "WHERE event_id=? AND status='held'", (s.note or "merged into the site alert", s.event_id))

    def _insert(self, db, e, channels, muted, told):
        event_id = db.execute(
            "INSERT INTO events (device, kind, old, new, at, reason, last_heard_at, outage_started_at, outage_s, "
            "cause, detail, site) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (e.device, e.kind.value, e.old.value, e.new.value, e.at, e.reason, e.last_heard_at,
             e.outage_started_at, e.outage_s, e.cause, e.detail, e.site)).lastrowid
        text = e.reason if e.cause else None
        if e.kind in _SITE_KINDS:
            db.execute("INSERT OR REPLACE INTO site_outages (site, started_at, event_id) VALUES (?,?,?)",
                       (e.site or e.device, e.outage_started_at if e.outage_started_at is not None else e.at,
                        event_id))
        elif e.kind not in _MONITOR_KINDS:
            db.execute("INSERT OR IGNORE INTO devices (name, state) VALUES (?, ?)", (e.device, e.old.value))
            if e.kind is Kind.DOWN:
                outage = db.execute(
                    "INSERT INTO outages (device, started_at, detected_at, cause, cause_text, event_id) "
                    "VALUES (?,?,?,?,?,?)", (e.device, e.outage_started_at, e.at, e.cause, text, event_id)).lastrowid
                db.execute("UPDATE devices SET outage_id=? WHERE name=?", (outage, e.device))
            elif e.kind is Kind.UP:
                db.execute(
                    "UPDATE outages SET ended_at=?, duration_s=?, cause=COALESCE(?, cause), "
                    "cause_text=COALESCE(?, cause_text) WHERE id=(SELECT outage_id FROM devices WHERE name=?)",
                    (e.last_heard_at, e.outage_s, e.cause, text, e.device))
                db.execute("UPDATE devices SET outage_id=NULL WHERE name=?", (e.device,))
                if e.site:
                    db.execute("DELETE FROM site_outages WHERE site=?", (e.site,))
            # The reminder schedule counts from the last DOWN or REMINDER the machine made, alerted or not.
            db.execute("UPDATE devices SET state=?, last_heard_at=COALESCE(?, last_heard_at), "
                       "last_alert_at=CASE WHEN ? THEN ? ELSE last_alert_at END WHERE name=?",
                       (e.new.value, e.last_heard_at, e.kind in ALERTING, e.at, e.device))
        if e.self_held:
            self._self_hold(db, event_id, e.device)
        if e.alerts and (e.kind in _SITE_KINDS or e.kind in _MONITOR_KINDS or e.device not in muted):
            status = "held" if e.held or e.self_held else "pending"
            db.executemany(
                "INSERT INTO deliveries (event_id, channel, status, created_at, next_try_at, done_at, attempts) "
                "VALUES (?,?,?,?,?,?,?)",
                [(event_id, ch, "sent", e.at, e.at, e.at, 1) if ch in told else (event_id, ch, status, e.at, e.at,
                                                                                  None, 0) for ch in channels])
        return dataclasses.replace(e, id=event_id)

    def save_heartbeats(self, beats):
        """Write behind the last heartbeat of devices: an iterable of (name, heard_at, beat).

        ``beat`` is a dict, or its JSON object already encoded (str, see lastbeats.json_text).
        """
        rows = [(name, heard, beat if isinstance(beat, str) else json.dumps(beat, separators=(",", ":")))
                for name, heard, beat in beats]
        if not rows:
            return
        with self._tx() as db:
            db.executemany(
                "INSERT INTO devices (name, state, last_heard_at, last_beat) VALUES (?, 'up', ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET last_heard_at=excluded.last_heard_at, last_beat=excluded.last_beat",
                rows)

    def held_downs(self):
        """[(event id, device, at)] of the DOWN events whose deliveries are held for a site window, oldest first."""
        with self._lock:
            return self._db.execute(
                "SELECT e.id, e.device, e.at FROM events e WHERE e.id IN "
                "(SELECT event_id FROM deliveries WHERE status='held') ORDER BY e.id").fetchall()

    def site_outages(self):
        """{site: started_at} of every site whose alert went out and none of whose devices came back since."""
        with self._lock:
            return dict(self._db.execute("SELECT site, started_at FROM site_outages").fetchall())

    def open_causes(self):
        """{device: cause kind} of the outages that last now and have a cause (the one found on the way down)."""
        with self._lock:
            return dict(self._db.execute(
                "SELECT d.name, o.cause FROM devices d JOIN outages o ON o.id = d.outage_id "
                "WHERE o.cause IS NOT NULL").fetchall())

    def last_beats(self):
        """{name: last stored heartbeat dict} for the API after a restart."""
        with self._lock:
            rows = self._db.execute("SELECT name, last_beat FROM devices WHERE last_beat IS NOT NULL").fetchall()
        return {name: json.loads(beat) for name, beat in rows}

    def last_beat_texts(self):
        """{name: last stored heartbeat as its JSON text}: what lastbeats.LastBeats holds, without decoding."""
        with self._lock:
            return dict(self._db.execute("SELECT name, last_beat FROM devices WHERE last_beat IS NOT NULL"))

    # -- history -------------------------------------------------------

    _EVENT_COLUMNS = ("id, device, kind, old, new, at, reason, last_heard_at, outage_started_at, outage_s, "
                      "cause, detail, site")
    _OUTAGE_COLUMNS = ("id", "device", "started_at", "detected_at", "ended_at", "duration_s", "cause", "cause_text")

    def events(self, *, device=None, limit=100):
        """The newest events first, optionally of one device."""
        return [_event(row) for row in self._newest("events", self._EVENT_COLUMNS, device, limit)]

    def event(self, event_id):
        """One event by id; raises KeyError when there is none."""
        with self._lock:
            row = self._db.execute(f"SELECT {self._EVENT_COLUMNS} FROM events WHERE id=?", (event_id,)).fetchone()
        if row is None:
            raise KeyError(event_id)
        return _event(row)

    def outages(self, *, device=None, limit=100, offset=0):
        """Outages, newest first, skipping ``offset``, as dicts (ended_at and duration_s are None while it lasts)."""
        rows = self._newest("outages", ", ".join(self._OUTAGE_COLUMNS), device, limit, offset)
        return [dict(zip(self._OUTAGE_COLUMNS, row)) for row in rows]

    def _newest(self, table, columns, device, limit, offset=0):
        where, args = ("WHERE device=?", (device,)) if device is not None else ("", ())
        with self._lock:
            # The (device, id) index serves both the filter and the order: a page costs its rows, not the table.
            return self._db.execute(f"SELECT {columns} FROM {table} {where} ORDER BY id DESC LIMIT ? OFFSET ?",
                                    args + (limit, offset)).fetchall()

    def outage_counts(self):
        """{device: number of outages ever recorded}."""
        with self._lock:
            return dict(self._db.execute("SELECT device, COUNT(*) FROM outages GROUP BY device").fetchall())

    # -- paused alerts -------------------------------------------------

    def pauses(self):
        """{device: (paused_at, until)} of every stored pause; ``until`` is None for "until resumed".

        Wall-clock epoch seconds. Pauses that have ended are included: the caller knows the time.
        """
        with self._lock:
            rows = self._db.execute("SELECT device, paused_at, until FROM pauses").fetchall()
        return {device: (paused_at, until) for device, paused_at, until in rows}

    def save_pause(self, device, *, paused_at, until):
        """Pause ``device``'s alerts from ``paused_at`` until ``until`` (None: until resumed), replacing any pause.

        Raises StoreError when the database cannot be written.
        """
        self._write("INSERT INTO pauses (device, paused_at, until) VALUES (?, ?, ?) ON CONFLICT(device) DO UPDATE "
                    "SET paused_at=excluded.paused_at, until=excluded.until", (device, paused_at, until))

    def delete_pause(self, device):
        """End ``device``'s pause (nothing happens when there is none). Raises StoreError like save_pause."""
        self._write("DELETE FROM pauses WHERE device=?", (device,))

    def _write(self, sql, args):
        try:
            with self._tx() as db:
                db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the monitor's database {self.path}: {exc}; check that data_dir "
                             f"is writable and the disk is not full") from None

    # -- alert deliveries ----------------------------------------------

    def pending_deliveries(self, channel, *, limit=20):
        """Pending deliveries of ``channel``, oldest event first.

        Order matters: a person must never get UP before the DOWN it ends, so the
        sender works down this list and stops at the first one that must wait.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT id, event_id, attempts, created_at, next_try_at FROM deliveries "
                "WHERE channel=? AND status='pending' ORDER BY id LIMIT ?", (channel, limit)).fetchall()
        return [Delivery(*row) for row in rows]

    def abandon_deliveries(self, *, keep, at, error):
        """Give up pending deliveries whose channel is not in ``keep``; return how many."""
        marks = ",".join("?" * len(keep))
        where = f"status='pending' AND channel NOT IN ({marks})" if keep else "status='pending'"
        with self._tx() as db:
            return db.execute(f"UPDATE deliveries SET status='failed', done_at=?, last_error=? WHERE {where}",
                              (at, error, *keep)).rowcount

    def delivered(self, delivery_id, at):
        with self._tx() as db:
            db.execute("UPDATE deliveries SET status='sent', done_at=?, attempts=attempts+1, last_error=NULL "
                       "WHERE id=?", (at, delivery_id))

    def retry_later(self, delivery_id, next_try_at, error):
        with self._tx() as db:
            db.execute("UPDATE deliveries SET attempts=attempts+1, next_try_at=?, last_error=? WHERE id=?",
                       (next_try_at, error, delivery_id))

    def given_up(self, delivery_id, at, error):
        with self._tx() as db:
            db.execute("UPDATE deliveries SET status='failed', done_at=?, attempts=attempts+1, last_error=? "
                       "WHERE id=?", (at, error, delivery_id))

    def deliveries(self, *, event_id=None):
        """Delivery rows as dicts, for the history page and tests."""
        sql = "SELECT id, event_id, channel, status, attempts, created_at, next_try_at, done_at, last_error " \
              "FROM deliveries"
        args = ()
        if event_id is not None:
            sql += " WHERE event_id=?"
            args = (event_id,)
        keys = ("id", "event_id", "channel", "status", "attempts", "created_at", "next_try_at", "done_at",
                "last_error")
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [dict(zip(keys, row)) for row in rows]


@dataclasses.dataclass(frozen=True)
class Settled:
    """What became of a DOWN whose alert was held for its site window (see ``Store.record``).

    ``release`` True queues its alert; False drops it (merged into the site's
    alert). ``cause``, ``reason`` and ``detail`` replace the event's unless None.
    The self-check (``selfcheck``) settles the alerts it holds the same way
    (``by`` "self", ``note`` saying why one is merged), and ``keep_held`` hands
    one over to it: only the cause is written, its deliveries stay held.
    """

    event_id: int
    release: bool
    cause: str | None
    reason: str | None
    detail: str | None = None
    device: str = ""  # for the log
    by: str = "site"
    note: str = ""
    keep_held: bool = False


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One alert to send on one channel; times are wall-clock epoch seconds."""

    id: int
    event_id: int
    attempts: int
    created_at: float
    next_try_at: float


class _Transaction:
    def __init__(self, db, lock):
        self._db, self._lock = db, lock

    def __enter__(self):
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()  # a locked or broken database must not hang every later caller
            raise
        return self._db

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                try:
                    self._db.execute("COMMIT")
                    return False
                except BaseException:
                    self._rollback()
                    raise
            self._rollback()
        finally:
            self._lock.release()
        return False

    def _rollback(self):
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")


def _event(row):
    id_, device, kind, old, new, at, reason, heard, started, outage_s, cause, detail, site = row
    return Event(device, Kind(kind), State(old), State(new), at, reason, heard, started, outage_s, id_,
                 cause=cause, detail=detail, site=site)

"""The store's part for quieted alerts: acknowledged outages and flapping episodes (a mixin of ``Store``).

Site pauses need no table of their own: they are rows of ``pauses`` whose
key is "site:NAME" (no device name has a colon). Acknowledgements are kept
as history, one row per acknowledged outage; only those of outages that last
now are read back at a start. A flapping episode has a row while it lasts.
"""

from appliance.monitor.acks import Ack
from appliance.monitor.events import Kind, State
from appliance.monitor.flapping import Episode

QUIET_SCHEMA = """
CREATE TABLE IF NOT EXISTS acks (
    outage_id INTEGER PRIMARY KEY REFERENCES outages(id),
    device TEXT NOT NULL,
    acked_at REAL NOT NULL,
    until REAL NOT NULL,
    by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS flapping (
    device TEXT PRIMARY KEY,
    first_at REAL NOT NULL,
    changes INTEGER NOT NULL,
    last_at REAL NOT NULL
);
"""


class QuietRecords:
    """Methods of ``Store`` (which holds ``_db``, ``_lock`` and ``_write``) for acks and flapping episodes."""

    # -- outages by id ---------------------------------------------------

    def current_outage(self, device):
        """The id of ``device``'s outage that lasts now, or None."""
        with self._lock:
            row = self._db.execute("SELECT outage_id FROM devices WHERE name=?", (device,)).fetchone()
        return row[0] if row else None

    def outage_of(self, event):
        """The id of the outage an event of a device that is down belongs to (its DOWN, a REMINDER, a FLAPPING or
        STEADY event while down), or None (not down, or not found)."""
        with self._lock:
            if event.kind is Kind.DOWN and event.id is not None:
                row = self._db.execute("SELECT id FROM outages WHERE event_id=?", (event.id,)).fetchone()
            elif event.new is State.DOWN and event.outage_started_at is not None:
                # The (device, id) index finds the device's outages newest first; the start time picks the one.
                row = self._db.execute("SELECT id FROM outages WHERE device=? AND started_at=? ORDER BY id DESC "
                                       "LIMIT 1", (event.device, event.outage_started_at)).fetchone()
            else:
                row = None
        return row[0] if row else None

    # -- acknowledgements -------------------------------------------------

    def acks(self):
        """{device: Ack} of the acknowledgements of outages that last now (ended or not: the caller knows the time)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT d.name, a.outage_id, a.acked_at, a.until, a.by FROM acks a "
                "JOIN devices d ON d.outage_id = a.outage_id").fetchall()
        return {name: Ack(outage_id, acked_at, until, by) for name, outage_id, acked_at, until, by in rows}

    def save_ack(self, device, ack):
        """Keep ``ack`` of ``device``'s outage, replacing an earlier one of the same outage. Raises StoreError."""
        self._write("INSERT INTO acks (outage_id, device, acked_at, until, by) VALUES (?,?,?,?,?) "
                    "ON CONFLICT(outage_id) DO UPDATE SET acked_at=excluded.acked_at, until=excluded.until, "
                    "by=excluded.by", (ack.outage_id, device, ack.acked_at, ack.until, ack.by))

    def ack_of_outage(self, outage_id):
        """The Ack of one outage, or None."""
        with self._lock:
            row = self._db.execute("SELECT outage_id, acked_at, until, by FROM acks WHERE outage_id=?",
                                   (outage_id,)).fetchone()
        return Ack(*row) if row else None

    def outage(self, outage_id):
        """One outage as a dict like ``outages()`` gives, or None."""
        columns = ("id", "device", "started_at", "detected_at", "ended_at", "duration_s")
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(columns)} FROM outages WHERE id=?", (outage_id,)).fetchone()
        return dict(zip(columns, row)) if row else None

    # -- flapping episodes -------------------------------------------------

    def flap_episodes(self):
        """[Episode] of the flapping episodes that were open when last written."""
        with self._lock:
            rows = self._db.execute("SELECT device, first_at, changes, last_at FROM flapping").fetchall()
        return [Episode(*row) for row in rows]

    def save_flap(self, episode):
        """Write an open flapping episode (replacing its row). Raises StoreError."""
        self._write("INSERT INTO flapping (device, first_at, changes, last_at) VALUES (?,?,?,?) "
                    "ON CONFLICT(device) DO UPDATE SET first_at=excluded.first_at, changes=excluded.changes, "
                    "last_at=excluded.last_at", (episode.device, episode.first_at, episode.changes, episode.last_at))

    def delete_flap(self, device):
        """The episode of ``device`` ended. Raises StoreError."""
        self._write("DELETE FROM flapping WHERE device=?", (device,))


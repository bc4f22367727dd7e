"""The store's part for the monitor's check of itself: its run log and the alerts it holds (a mixin of ``Store``).

``runs`` has one row per start of the monitor: when it started, when it was
last known alive (written at most once a minute) and when it stopped
cleanly (NULL after a crash, a kill or a power cut). ``self_holds`` names the
events whose deliveries are held by the self-check (see ``selfcheck``), so a
restarted monitor tells them from those held for a site window; the row goes
in the transaction that stores the event and out in the one that releases or
merges its deliveries.
"""

from appliance.monitor.events import Kind
from appliance.monitor.runlog import Run

SELF_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    alive_at REAL NOT NULL,
    stopped_at REAL
);
CREATE TABLE IF NOT EXISTS self_holds (
    event_id INTEGER PRIMARY KEY REFERENCES events(id),
    device TEXT NOT NULL,
    held_at REAL NOT NULL  -- the event's time
);
"""
# Runs kept: a start a day for three years.
KEEP_RUNS = 1000
MONITOR = "monitor:self"


class SelfRecords:
    """Methods of ``Store`` (which holds ``_db``, ``_lock``, ``_tx`` and ``_write``) for the run log and held
    alerts."""

    # -- the run log -------------------------------------------------------

    def start_run(self, at):
        """Record a start at wall time ``at``; return (the previous Run or None, this run's id)."""
        with self._tx() as db:
            row = db.execute("SELECT id, started_at, alive_at, stopped_at FROM runs ORDER BY id DESC LIMIT 1"
                             ).fetchone()
            run_id = db.execute("INSERT INTO runs (started_at, alive_at) VALUES (?, ?)", (at, at)).lastrowid
            db.execute("DELETE FROM runs WHERE id <= ?", (run_id - KEEP_RUNS,))
        return (Run(*row) if row else None), run_id

    def run_alive(self, run_id, at):
        """The run ``run_id`` is alive at wall time ``at``. Raises StoreError when it cannot be written."""
        self._write("UPDATE runs SET alive_at=? WHERE id=?", (at, run_id))

    def run_stopped(self, run_id, at):
        """The run ``run_id`` stopped cleanly at wall time ``at``. Raises StoreError like run_alive."""
        self._write("UPDATE runs SET alive_at=?, stopped_at=? WHERE id=?", (at, at, run_id))

    def runs(self, *, limit=20):
        """The newest runs first, as Runs."""
        with self._lock:
            rows = self._db.execute("SELECT id, started_at, alive_at, stopped_at FROM runs ORDER BY id DESC "
                                    "LIMIT ?", (limit,)).fetchall()
        return [Run(*row) for row in rows]

    # -- alerts held by the self-check ---------------------------------------

    def self_holds(self):
        """[(event id, device, kind value, site, last_heard_at)] of the events the self-check holds, oldest first."""
        with self._lock:
            return self._db.execute(
                "SELECT e.id, e.device, e.kind, e.site, e.last_heard_at FROM self_holds h "
                "JOIN events e ON e.id = h.event_id ORDER BY e.id").fetchall()

    def open_mass_silence(self):
        """(event id, wall time) of the last MASS_SILENCE when no MASS_SILENCE_END followed it, else None."""
        with self._lock:
            row = self._db.execute("SELECT id, at, kind FROM events WHERE device=? AND kind IN (?, ?) "
                                   "ORDER BY id DESC LIMIT 1",
                                   (MONITOR, Kind.MASS_SILENCE.value, Kind.MASS_SILENCE_END.value)).fetchone()
        return (row[0], row[1]) if row and row[2] == Kind.MASS_SILENCE.value else None

    def _self_hold(self, db, event_id, device):
        """Inside a transaction: the self-check holds event ``event_id``'s deliveries."""
        db.execute("INSERT OR REPLACE INTO self_holds (event_id, device, held_at) "
                   "SELECT id, ?, at FROM events WHERE id=?", (device, event_id))

    def _self_settled(self, db, event_id):
        """Inside a transaction: the event's deliveries were released or merged."""
        db.execute("DELETE FROM self_holds WHERE event_id=?", (event_id,))

"""Atomic file writes: a power cut leaves either the old file or the new one, never half of one."""

import os
import tempfile
import time

# A temporary file this old is not a write under way (one takes milliseconds) but what a power cut left.
STALE_TMP_S = 60.0
_TMP_PREFIX = ".tmp-"


def write_atomic(path, data, *, mode=0o644):
    """Replace ``path`` with ``data`` (str or bytes) atomically.

    Writes a temporary file in the same directory, fsyncs it, renames it over
    ``path`` and fsyncs the directory so the rename itself survives a power
    cut. Raises OSError when the directory is missing or not writable.
    Temporary files that power cuts left in the directory (older than
    STALE_TMP_S) are removed, so they do not pile up on a card that loses
    power often.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    prefix = f"{_TMP_PREFIX}{os.path.basename(path)[:100]}-"  # within NAME_MAX with mkstemp's suffix
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)
    if _SWEEPS.due(directory, time.monotonic()):
        _remove_stale(directory)


class Sweeps:
    """When each directory's leftover temporary files were last looked for, so a directory is read at most
    once per STALE_TMP_S: an outbox of thousands of alerts is not read again at every write.

    The first write to a directory after a start looks at once, since power cuts end the process.
    """

    def __init__(self):
        self._last = {}

    def due(self, directory, now_mono):
        """True (and noted) when ``directory`` was not looked at within STALE_TMP_S seconds of ``now_mono``."""
        last = self._last.get(directory)
        if last is not None and now_mono - last < STALE_TMP_S:
            return False
        self._last[directory] = now_mono
        return True


# Per process, like the files it sweeps: a cache of when, not state anything depends on.
_SWEEPS = Sweeps()


def _remove_stale(directory):
    # Only the matches are kept: a directory of thousands of files (an outbox of alerts) is read, not held.
    try:
        with os.scandir(directory) as entries:
            matches = [entry for entry in entries if entry.name.startswith(_TMP_PREFIX)]
    except OSError:
        return
    for entry in matches:
        try:
            if time.time() - entry.stat(follow_symlinks=False).st_mtime > STALE_TMP_S:
                os.unlink(entry.path)
        except OSError:  # gone meanwhile, or not ours to remove: the write itself succeeded
            pass


def fsync_dir(directory):
    """Flush a directory entry change (a rename or a new file) to disk."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)

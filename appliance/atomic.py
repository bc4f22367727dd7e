"""Atomic file writes: a power cut leaves either the old file or the new one, never half of one."""

import os
import tempfile
import time

# A temporary file this old is not a write under way (one takes milliseconds) but what a power cut left.
STALE_TMP_S = 60.0


def write_atomic(path, data, *, mode=0o644):
    """Replace ``path`` with ``data`` (str or bytes) atomically.

    Writes a temporary file in the same directory, fsyncs it, renames it over
    ``path`` and fsyncs the directory so the rename itself survives a power
    cut. Raises OSError when the directory is missing or not writable.
    Temporary files that power cuts left from earlier writes of ``path`` are
    removed, so they do not pile up on a card that loses power often.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    directory = os.path.dirname(os.path.abspath(path))
    prefix = f".tmp-{os.path.basename(path)[:100]}-"  # within NAME_MAX with mkstemp's suffix
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
    _remove_stale(directory, prefix)


def _remove_stale(directory, prefix):
    # Only the matches are kept: a directory of thousands of files (an outbox of alerts) is read, not held.
    try:
        with os.scandir(directory) as entries:
            matches = [entry for entry in entries if entry.name.startswith(prefix)]
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

"""Power cuts in miniature: fork a child that runs real product code in a loop, SIGKILL it at a random moment.

A SIGKILL is what a power cut looks like to a process (minus what the kernel
had not written yet, which fsync and SQLite's WAL cover). Forking from the
test process costs a few milliseconds where starting a `phonehome` process
costs most of a second, so a thousand cuts fit in the fault suite's budget.
The child reports what it has finished over a pipe, one line at a time, so
the test knows what must have survived.
"""

import os
import signal
import time
import traceback
import warnings


class Cut:
    """What one killed child said: ``lines`` it reported (whole lines only), ``finished`` if it ended itself."""

    def __init__(self, lines, finished, delay_ms):
        self.lines, self.finished, self.delay_ms = lines, finished, delay_ms


def run_and_kill(work, rng, *, max_ms=30.0):
    """Fork; the child runs ``work(report)`` and the parent SIGKILLs it after a random 0..``max_ms`` ms.

    ``report(text)`` sends one line to the parent. A child that raises fails
    the test with its traceback (an error is not a power cut). Returns a Cut.
    """
    delay_ms = rng.uniform(0.0, max_ms)
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # The test process has threads (the SMTP sink's); the child only runs product code and _exits.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 0
        try:
            os.close(read_fd)
            # Let go of the parent's sockets and event-loop descriptors (the SMTP sink's): a copy held by a
            # killed child slows the sink's next connections down.
            os.closerange(3, write_fd)
            os.closerange(write_fd + 1, 1 << 16)

            def report(text):
                os.write(write_fd, (text + "\n").encode())

            work(report)
        except BaseException:
            status = 3
            try:
                os.write(write_fd, ("ERROR " + traceback.format_exc().replace("\n", " | ") + "\n").encode())
            except OSError:
                pass
        finally:
            os._exit(status)
    os.close(write_fd)
    time.sleep(delay_ms / 1000)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    chunks = []
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_fd)
    text = b"".join(chunks).decode()
    lines = text.split("\n")[:-1]  # a line cut in half by the kill is not a report
    errors = [line for line in lines if line.startswith("ERROR ")]
    assert not errors, errors[0]
    finished = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert finished or (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL), status
    return Cut(lines, finished, delay_ms)

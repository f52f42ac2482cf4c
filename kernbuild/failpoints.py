"""Named step boundaries where a test can kill kernbuild, as a power cut or an OOM killer would.

The places where an interrupted kernbuild could leave something half-done are few and
known: just before a file, a cache entry or a repository generation is renamed into
place (:mod:`kernbuild.fsutil`), just after a container or a Slurm job is started (it
now runs outside kernbuild), just before a repository switches generations. Each calls
:func:`boundary` with a name. The fault-injection test
(``tests/integration/test_kill_trials.py``) first runs a command with
``KERNBUILD_FAILPOINT_TRACE=FILE``, which lists the boundaries it crossed, in order, one
per line; then reruns it once per boundary with ``KERNBUILD_FAILPOINT=N``, and the N-th
boundary the process reaches sends it SIGKILL: no handler runs, no ``finally``, nothing
is cleaned up, exactly what a real kill leaves. It then checks what the kill left behind
and that the next run recovers. This is how etcd's gofail and FreeBSD's fail(9) test
crash consistency: by name, deterministic, at every boundary rather than by luck.

Both variables are taken out of the environment when this module is first imported:
they are meant for the one kernbuild process the test started, not for the processes it
starts in turn (a Slurm worker, cwltool), whose boundaries would be counted apart.
With neither set (every real run), :func:`boundary` returns at once.
"""

from __future__ import annotations

import os
import signal
import threading

#: The number of the boundary at which to SIGKILL this process (1 is the first).
KILL_AT = "KERNBUILD_FAILPOINT"
#: A file to which every boundary crossed is appended as "N NAME".
TRACE = "KERNBUILD_FAILPOINT_TRACE"

_kill_at = int(_n) if (_n := os.environ.pop(KILL_AT, "")).isdigit() else 0
_trace = os.environ.pop(TRACE, "")
_lock = threading.Lock()
_crossed = 0


def boundary(name: str) -> None:
    """Mark one step boundary called ``name`` (``commit:kern.lock``, ``container:build``).

    Threads share one count, so a trace is deterministic only for a run that crosses its
    boundaries in one order (``-j 1``); the trial test runs so."""
    if not _kill_at and not _trace:
        return
    global _crossed
    with _lock:
        _crossed += 1
        if _trace:
            with open(_trace, "a", encoding="utf-8") as out:
                out.write(f"{_crossed} {name}\n")
        if _crossed == _kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

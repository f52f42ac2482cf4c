"""Locks on a state directory, so that two kernbuild commands on one state never corrupt it.

Each shared resource of a state directory has a named lock: a file under
``<state>/locks/`` held with ``flock(2)``. The kernel drops a flock lock when
its holder's last descriptor closes, a SIGKILL included, so a killed command
never leaves a stale lock behind: the next one simply gets it. (The descriptor
is close-on-exec, as Python opens every file, so no child process keeps it.)
The holder writes its pid, command and start time into the file, only so that
a waiter can say whom it waits for; the lock itself is the flock, never the file.

The resources, in lock order::

    release         cutting a KERN-N release (it freezes everything below)
    matrix          the matrix tester's results database (``state/matrix``)
    image:<tag>     one image: its docker build, SIF, sandbox and kern.lock entry
    environment     the suite's base and build images (made once, not twice at once)
    build:<recipe>  one recipe's build: its cache entry, its log, its next +bN version
    repo            the apt repository: its pool, its generations, the switch of current
    lockfile        kern.lock, rewritten whole with each image's entry

A command that holds several locks takes them top to bottom in this list and
never takes one above a lock it already holds (two of one kind, such as two
``build:`` locks, are never held at once by one thread). With one order for
everyone, no two commands can each wait for the other: no deadlock.

A lock that is held makes the caller wait (after printing once whom for),
refuse at once (``wait=0``, ``--no-wait``) or wait at most ``wait`` seconds;
``KERNBUILD_LOCK_WAIT`` sets that for every command (seconds; 0 refuses).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from kernbuild.errors import KernError

#: Environment variable: seconds to wait for a busy lock (0: refuse at once).
WAIT_ENV = "KERNBUILD_LOCK_WAIT"
#: The lock order (see the module docstring); a resource's kind is what precedes ':'.
ORDER = ("release", "matrix", "image", "environment", "build", "repo", "lockfile")
_POLL = 0.2  # seconds between tries of a bounded wait

Say = Callable[[str], None]


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as the holder wrote it."""

    pid: int
    command: str
    since: float  # time.time() when it took the lock

    def __str__(self) -> str:
        started = datetime.fromtimestamp(self.since)
        when = started.strftime("%H:%M:%S" if started.date() == datetime.now().date()
                                else "%Y-%m-%d %H:%M:%S")
        return f"pid {self.pid} ({self.command}, since {when})"


def command_line(argv: list[str] | None = None) -> str:
    """This process's command as a person typed it, less the options naming directories
    (``--state``, ``--recipes``: long paths that say nothing about what it does)."""
    args = list(sys.argv[1:] if argv is None else argv)
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--state", "--recipes", "--source-mirror"):
            skip = True
        elif not arg.startswith(("--state=", "--recipes=", "--source-mirror=")):
            kept.append(arg)
    return " ".join(["kernbuild", *kept])


def wait_from_env() -> float | None:
    """The wait ``KERNBUILD_LOCK_WAIT`` asks for: None (no limit) when unset."""
    value = os.environ.get(WAIT_ENV, "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise KernError(f"{WAIT_ENV}={value!r} is not a number of seconds",
                        "set it to 0 to refuse a busy state, or to the seconds to wait") from None
    if seconds < 0:
        raise KernError(f"{WAIT_ENV}={value!r} is negative", "0 refuses; unset waits forever")
    return seconds


class StateLocks:
    """The named locks of one state directory.

    ``wait`` is how long :meth:`hold` waits for a busy lock: None without limit,
    0 not at all (it refuses), else that many seconds. ``say`` prints the one
    line saying whom it waits for. The lock files are in ``state/locks``, or in
    ``directory`` for a part used on its own (a repository outside a state).
    """

    def __init__(self, state: Path, *, wait: float | None = None, say: Say | None = None,
                 command: str | None = None, directory: Path | None = None) -> None:
        self.state = Path(state)
        self.directory = Path(directory) if directory is not None else self.state / "locks"
        self.wait = wait
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self.command = command or command_line()

    def path(self, resource: str) -> Path:
        """The lock file of ``resource`` (an image tag's '/' is escaped, never a directory)."""
        if resource.split(":", 1)[0] not in ORDER:
            raise ValueError(f"unknown lock resource {resource!r}; kinds: {', '.join(ORDER)}")
        return self.directory / f"{quote(resource, safe=':@+=,')}.lock"

    def holder(self, resource: str) -> Holder | None:
        """Who holds (or last held) ``resource``, as written in its lock file; None if unknown."""
        try:
            data = json.loads(self.path(resource).read_text())
            return Holder(int(data["pid"]), str(data["command"]), float(data["since"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @contextmanager
    def hold(self, resource: str) -> Iterator[None]:
        """Hold ``resource`` for the block: at once if it is free, else wait as configured."""
        path = self.path(resource)
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self._acquire(fd, resource)
            # Who holds it now, for a waiter's message; one small write at offset 0.
            record = json.dumps({"pid": os.getpid(), "command": self.command,
                                 "since": time.time(), "resource": resource}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, record + b"\n", 0)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _acquire(self, fd: int, resource: str) -> None:
        if _try_lock(fd):
            return
        holder = self._holder_while_held(resource)
        who = f"held by {holder}" if holder else "held by another kernbuild command"
        if self.wait == 0:
            raise KernError(f"state {self.state} is busy: {resource} is {who}",
                            "wait for it to finish, or run without --no-wait "
                            f"({WAIT_ENV} unset) to wait for it")
        self.say(f"waiting for {resource}: {who}")
        if self.wait is None:
            _lock_blocking(fd)
            return
        deadline = time.monotonic() + self.wait
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                raise KernError(f"state {self.state} is still busy after {self.wait:g} s: "
                                f"{resource} is {who}",
                                f"wait longer ({WAIT_ENV}=SECONDS, or unset to wait without "
                                "limit), or let that command finish first")
            time.sleep(_POLL)

    def _holder_while_held(self, resource: str) -> Holder | None:
        # The holder writes its record just after it takes the lock: in that instant the
        # file may still be empty or name the previous holder; look again shortly.
        for _ in range(10):
            holder = self.holder(resource)
            if holder is not None and process_alive(holder.pid, holder.since):
                return holder
            time.sleep(0.05)
        return None


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _lock_blocking(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_EX)  # Ctrl-C still interrupts it (PEP 475 runs the handler)


def process_alive(pid: int, started_before: float | None = None) -> bool:
    """Whether process ``pid`` is alive (another user's counts). With ``started_before``
    (a time.time()), a process that started later is not the one meant: its pid was
    reused after the one meant died."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if started_before is not None:
        began = _start_time(pid)
        if began is not None and began > started_before + 1:  # clock ticks are coarse
            return False
    return True


def _start_time(pid: int) -> float | None:
    """When ``pid`` started (time.time() scale), from /proc; None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime, after comm
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text()
                    .splitlines() if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")

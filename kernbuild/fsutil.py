"""Writing files and trees so that a reader, or a later run, never sees half of one.

Every file kernbuild hands to someone else (a lockfile, a repository index, a
recipe, a SIF, a cache entry) is written beside its final name and renamed into
place: a rename on one filesystem is atomic, so a crash or a full disk leaves
the old content or the new, never a mixture. These are the only helpers that do
it; a full disk becomes a :class:`KernError` naming the directory.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable
from pathlib import Path

from kernbuild.errors import KernError
from kernbuild.failpoints import boundary


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644, *,
                 durable: bool = False) -> Path:
    """Write ``data`` to ``path`` whole or not at all; returns ``path``.

    ``mode`` is the file's permission bits (mkstemp's 0600 would hide a shared
    cache's files from other users). With ``durable``, the data is fsync'ed before
    the rename, for files that must survive a power cut (results of long runs).
    """
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    with disk_space(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(raw)
                if durable:
                    out.flush()
                    os.fsync(out.fileno())
            os.chmod(tmp, mode)
            boundary(f"commit:{path.parent.name}/{path.name}")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def atomic_write_json(path: Path, data: object, *, durable: bool = False) -> Path:
    """``data`` as indented, key-sorted JSON (one trailing newline), written atomically."""
    return atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n",
                        durable=durable)


def atomic_copy(source: Path, target: Path) -> Path:
    """Copy ``source`` to ``target`` so readers see the old file or the new one, whole."""
    target = Path(target)
    with disk_space(target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.chmod(tmp, 0o644)
            boundary(f"commit:{target.parent.name}/{target.name}")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return target


@contextmanager
def partial_dir(final: Path) -> Iterator[Path]:
    """A temporary directory beside ``final`` (same filesystem: a rename from it is
    atomic), removed at the end whatever happens. What should survive is renamed
    out of it (:func:`replace_dir`) before the block ends."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        yield work
    finally:
        try:
            remove_tree(work)
        except OSError:
            pass  # never hide the block's own error behind a cleanup's


def remove_tree(path: Path) -> None:
    """Remove a temporary tree, even one an archive left without write permission."""

    def retry(function: Callable[[str], object], name: str, _exc: object) -> None:
        try:
            os.chmod(os.path.dirname(name), stat.S_IRWXU)
            function(name)
        except FileNotFoundError:
            pass

    if not os.path.lexists(path):
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:
        shutil.rmtree(path, onerror=retry)


def remove_dead_scratch(root: Path, named: "re.Pattern[str]") -> list[Path]:
    """Remove the entries of ``root`` whose name ``named`` matches with a process id
    (its first group) of a process that is gone: the scratch a SIGKILLed run left.
    The removed paths."""
    from kernbuild.locks import process_alive

    removed = []
    for entry in root.iterdir() if root.is_dir() else ():
        match = named.match(entry.name)
        if match and not process_alive(int(match.group(1))):
            remove_tree(entry)
            removed.append(entry)
    return removed


def replace_dir(source: Path, dest: Path) -> None:
    """Move a finished tree to ``dest`` (absent or an empty directory) in one rename."""
    boundary(f"commit:{Path(dest).parent.name}/{Path(dest).name}")
    os.replace(source, dest)


def check_empty_destination(dest: Path) -> None:
    """Refuse a destination that holds something: nothing is ever unpacked over it."""
    dest = Path(dest)
    if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
        raise KernError(f"{dest} already exists and is not an empty directory",
                        "remove it, or choose another destination")


class DiskFull(KernError):
    """A full disk (ENOSPC, EDQUOT) under ``where``. A caller that knows more, such as
    which repository generation is still served, catches this and says it."""

    def __init__(self, message: str, hint: str, where: Path) -> None:
        super().__init__(message, hint)
        self.where = Path(where)


def human_size(size: int) -> str:
    """Bytes in decimal units, as df -H and apt print them: 58 MB, 12 kB, 512 B."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.{1 if unit == 'GB' else 0}f} {unit}"
    return f"{size} B"


def free_space(where: Path) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem of ``where`` (or of
    its nearest existing parent: a full disk may have stopped its creation); None if
    that cannot be read."""
    path = Path(where).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        found = os.statvfs(path)
    except OSError:
        return None
    return found.f_bavail * found.f_frsize


def no_space(where: Path) -> DiskFull:
    """The error of a full disk under ``where``, with the space left there."""
    free = free_space(where)
    left = f" ({human_size(free)} free)" if free is not None else ""
    return DiskFull(f"no space left on {where}{left}",
                    f"free some space there (df -h {where}), or point kernbuild at another "
                    "directory; then run the command again", where)


@contextmanager
def disk_space(where: Path) -> Iterator[None]:
    """Turn ENOSPC (and EDQUOT) inside the block into a KernError naming ``where``."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise no_space(where) from exc
        raise

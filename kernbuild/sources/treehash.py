"""Content hashes of files and trees, independent of where and when a tree was unpacked."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from kernbuild.errors import KernError

_TREE_HASH_VERSION = b"kernbuild-tree-hash-v1\n"
#: The :func:`tree_hash` of an empty tree: the key of a metapackage's source.
EMPTY_TREE_KEY = hashlib.sha256(_TREE_HASH_VERSION).hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 of one file's content, as hex."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def tree_hash(root: Path, skip: Callable[[str, list[str]], list[str]] | None = None) -> str:
    """A sha256 over the content of the tree ``root``, as hex.

    Covers every regular file and symlink: its path relative to ``root``,
    whether it is executable (files) and its content sha256 or link target.
    Directories count only through what they hold; mtimes, owners and other
    mode bits are ignored, so the hash is the same wherever and whenever the
    tree was unpacked. Symlinks are not followed.

    Args:
        skip: like :func:`shutil.copytree`'s ``ignore``: ``skip(dir, names)``
            returns the names in ``dir`` to leave out.

    Raises:
        KernError: the tree holds a device file, FIFO or socket.
    """
    entries: list[tuple[bytes, bytes, bytes]] = []
    pending: list[tuple[str, bytes]] = [(str(root), b"")]  # (directory, its relative path/)
    while pending:
        directory, prefix = pending.pop()
        with os.scandir(directory) as scan:
            found = list(scan)
        skipped = set(skip(directory, [e.name for e in found])) if skip else set()
        for entry in found:
            if entry.name in skipped:
                continue
            relative = prefix + os.fsencode(entry.name)
            if entry.is_symlink():
                entries.append((relative, b"l", os.fsencode(os.readlink(entry.path))))
            elif entry.is_dir():
                pending.append((entry.path, relative + b"/"))
            elif entry.is_file():
                mode = entry.stat().st_mode
                with open(entry.path, "rb") as handle:
                    content = hashlib.file_digest(handle, "sha256").digest()
                entries.append((relative, b"x" if mode & 0o111 else b"-", content))
            else:
                raise KernError(f"{entry.path} is a device file, FIFO or socket",
                                "a source tree holds only files, directories and symlinks")
    digest = hashlib.sha256(_TREE_HASH_VERSION)
    for relative, kind, value in sorted(entries):
        # Length-prefixed fields: no file name can make two trees hash alike.
        for field in (relative, kind, value):
            digest.update(len(field).to_bytes(8, "big"))
            digest.update(field)
    return digest.hexdigest()

"""``kern.lock``: every image built, with exactly what went into it.

The file sits beside the recipes directory and is JSON: ``{"images": {tag:
entry}}``, one :class:`~kernbuild.results.LockEntry` per image tag, written
whole or not at all (a reader never sees half of it). This module is the only
code that reads or writes it; ``kernbuild image`` records, ``doctor --gpu`` and
the release read.
"""

from __future__ import annotations

import json
from pathlib import Path

from kernbuild.errors import KernError
from kernbuild.fsutil import atomic_write_json
from kernbuild.results import LockEntry, from_json, to_json

LOCKFILE = "kern.lock"
_REBUILD = "rebuild an image (kernbuild image NAME) to rewrite it"


def lockfile_path(recipes: Path) -> Path:
    """Where the suite in ``recipes`` keeps its lockfile: beside the directory."""
    return Path(recipes).parent / LOCKFILE


def read_lock(path: Path) -> dict[str, LockEntry]:
    """The entries of the lockfile at ``path`` by tag; none if there is no file yet.

    A file that is not a lockfile is one KernError naming it, never a traceback."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise KernError(f"{path} cannot be read: {exc}", _REBUILD) from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, dict):
        raise KernError(f"{path} has no images table", _REBUILD)
    entries = {}
    for tag, entry in sorted(images.items()):
        try:
            if not isinstance(entry, dict):
                raise TypeError(f"a {type(entry).__name__}, not an object")
            entries[tag] = from_json(LockEntry, {**entry, "tag": tag})
        except (TypeError, ValueError) as exc:
            raise KernError(f"{path}: the entry of {tag} is not an image record ({exc})",
                            _REBUILD) from None
    return entries


def record(path: Path, entry: LockEntry) -> None:
    """Record ``entry`` under its tag, keeping every other image's entry.

    An unreadable file is replaced (it held nothing kernbuild could use)."""
    try:
        images = json.loads(Path(path).read_text()).get("images", {})
        if not isinstance(images, dict):
            images = {}
    except (OSError, ValueError, AttributeError):
        images = {}
    images[entry.tag] = to_json(entry)
    atomic_write_json(Path(path), {"images": images})


def gpu_images(path: Path) -> dict[str, str | None]:
    """The GPU images the lockfile records, each with the CUDA release it was built
    with (None if not recorded)."""
    return {tag: entry.cuda for tag, entry in read_lock(path).items() if entry.gpu}

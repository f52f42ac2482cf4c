"""``kern.lock``: every image built, with exactly what went into it.

The file sits beside the recipes directory and is JSON: ``{"images": {tag:
entry}}``, one :class:`~kernbuild.results.LockEntry` per image tag, written
whole or not at all (a reader never sees half of it). This module is the only
code that reads or writes it; ``kernbuild image`` records, ``doctor --gpu`` and
the release read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from pathlib import Path

from kernbuild import limits
from kernbuild.errors import KernError
from kernbuild.fsutil import atomic_write_json
from kernbuild.results import LockEntry, from_json, to_json

LOCKFILE = "kern.lock"
_REBUILD = "rebuild an image (kernbuild image NAME) to rewrite it"


def lockfile_path(recipes: Path) -> Path:
    """Where the suite in ``recipes`` keeps its lockfile: beside the directory."""
    return Path(recipes).parent / LOCKFILE


def _load(path: Path) -> object:
    """The JSON value of the lockfile ``path``, of :data:`~kernbuild.limits.MAX_LOCK_BYTES` at most.

    Raises FileNotFoundError where there is no file, else KernError for anything
    that is not JSON, with the line and column where there is one.
    """
    if not os.path.lexists(path):
        raise FileNotFoundError(path)
    try:
        text = limits.decode_utf8(limits.read_bytes(Path(path), limits.MAX_LOCK_BYTES))
        return json.loads(text)
    except limits.InputRefused as exc:
        raise KernError(f"{path}:{exc.line}:{exc.column}: cannot be read: {exc.message}",
                        _REBUILD) from None
    except json.JSONDecodeError as exc:
        raise KernError(f"{path}:{exc.lineno}:{exc.colno}: cannot be read: not JSON: {exc.msg}",
                        _REBUILD) from None
    # ValueError: an integer of more than 4300 digits. RecursionError: arrays nested
    # thousands deep, which the C decoder refuses cleanly at the recursion limit.
    except (ValueError, RecursionError) as exc:
        raise KernError(f"{path}: cannot be read: {str(exc)[:200]}", _REBUILD) from None


def read_lock(path: Path) -> dict[str, LockEntry]:
    """The entries of the lockfile at ``path`` by tag; none if there is no file yet.

    A file that is not a lockfile is one KernError naming it, never a traceback."""
    try:
        data = _load(path)
    except FileNotFoundError:
        return {}
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, dict):
        raise KernError(f"{path} has no images table", _REBUILD)
    entries = {}
    for tag, entry in sorted(images.items()):
        try:
            if not isinstance(entry, dict):
                raise TypeError(f"a {type(entry).__name__}, not an object")
            entries[tag] = _checked(from_json(LockEntry, {**entry, "tag": tag}))
        # AttributeError: a nested record (sif, sandbox) that is not an object.
        except (TypeError, ValueError, AttributeError) as exc:
            raise KernError(f"{path}: the entry of {tag[:80]} is not an image record "
                            f"({str(exc)[:200]})", _REBUILD) from None
    return entries


def _checked(record: object) -> object:
    """``record`` (a results dataclass) if each field has its declared type, else
    TypeError: from_json converts shapes, not types, and readers of an entry trust them."""
    hints = typing.get_type_hints(type(record))
    for item in dataclasses.fields(record):
        value, hint = getattr(record, item.name), hints[item.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        if union and value is None and type(None) in typing.get_args(hint):
            continue
        allowed = [t for t in typing.get_args(hint) if t is not type(None)] if union else [hint]
        origin = tuple(typing.get_origin(t) or t for t in allowed)
        if dataclasses.is_dataclass(value):
            _checked(value)
        elif not isinstance(value, origin) or (bool in origin) != isinstance(value, bool):
            raise TypeError(f"{item.name} is {kind_of(value)}")
        elif isinstance(value, dict) and not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in value.items()):
            raise TypeError(f"{item.name} maps to something other than text")
    return record


def kind_of(value: object) -> str:
    """A JSON value's type, in words."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(type(value), "?")


def record(path: Path, entry: LockEntry) -> None:
    """Record ``entry`` under its tag, keeping every other image's entry.

    An unreadable file is replaced (it held nothing kernbuild could use)."""
    try:
        images = _load(path).get("images", {})
        if not isinstance(images, dict):
            images = {}
    except (FileNotFoundError, KernError, AttributeError):
        images = {}
    images[entry.tag] = to_json(entry)
    atomic_write_json(Path(path), {"images": images})


def gpu_images(path: Path) -> dict[str, str | None]:
    """The GPU images the lockfile records, each with the CUDA release it was built
    with (None if not recorded)."""
    return {tag: entry.cuda for tag, entry in read_lock(path).items() if entry.gpu}

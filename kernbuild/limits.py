"""The bounds on every file kernbuild reads from a user, and the one way such files are read.

A recipe, ``suite.yaml``, a patch or ``kern.lock`` may hold anything, including
content crafted to exhaust time, memory or stack: a YAML "billion laughs" (aliases
that expand exponentially), brackets nested a hundred thousand deep, a FIFO that
never ends, a gigabyte-long line. Each limit below is set far above what the
suite's real files need (the largest recipe is about 5 KB, 100 values and 6 levels
deep) and far below what would take more than a moment to read, so a hostile file
is refused with one diagnostic at its line instead of hanging or crashing lint.
Raise one only with a real file that needs it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# --- recipes and suite.yaml (kernbuild.recipe.document) -----------------------------

#: Bytes in one recipe or suite.yaml file, checked before it is read.
MAX_YAML_BYTES = 256 * 1024
#: YAML nodes (keys and values) in one file, counted while composing it and again
#: while reading it with every alias expanded: this is what stops a billion laughs.
#: Pure-Python YAML composes some tens of thousands of nodes a second.
MAX_YAML_NODES = 5_000
#: Nesting levels of mappings and lists; the recipe schema itself is 6 deep. Also
#: keeps the recursive composer, reader and schema far from Python's recursion limit.
MAX_YAML_DEPTH = 32
#: Characters in one scalar (a description, a smoke script).
MAX_SCALAR_CHARS = 64 * 1024
#: Characters of a number literal: no field needs more, and Python refuses to turn
#: integers of more than 4300 digits into text (a ValueError in any message about one).
MAX_NUMBER_CHARS = 100
#: Diagnostics shown per file; a file with more gets one more saying how many were left out.
MAX_DIAGNOSTICS_PER_FILE = 25
#: Characters of a user's value quoted in a diagnostic; longer ones are cut with "...".
MAX_QUOTED_CHARS = 80

# --- other files ----------------------------------------------------------------------

#: Bytes in one patch a recipe applies (the suite's largest is about 8 KB).
MAX_PATCH_BYTES = 8 * 1024 * 1024
#: Bytes in kern.lock (about 1 KB per image built).
MAX_LOCK_BYTES = 16 * 1024 * 1024


class InputRefused(Exception):
    """A user's file that is not read: not a regular file, too large, or not UTF-8.

    ``line`` and ``column`` (1-based) say where, when the problem has a place.
    """

    def __init__(self, message: str, hint: str = "", line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.line = line
        self.column = column


def read_bytes(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, refusing anything else or more than ``max_bytes``.

    The size is checked on the open file before reading, and the read stops one byte
    past the limit, so a file that grows meanwhile is refused too. Opening does not
    block: a FIFO named ``x.yaml`` must not wait forever for a writer.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputRefused(f"cannot read: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputRefused("not a regular file", "name a file, not a directory, "
                                                     "device or pipe")
        if info.st_size > max_bytes:
            raise InputRefused(f"the file has {info.st_size} bytes, more than the "
                               f"{max_bytes} allowed", f"{path.name} cannot be this large")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise InputRefused(f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise InputRefused(f"the file grew past the {max_bytes} bytes allowed while read")
    return data


def decode_utf8(data: bytes) -> str:
    """``data`` as UTF-8 text, or :class:`InputRefused` at the line and column of the
    first byte that is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputRefused(f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot start "
                           "a character here", "save the file as UTF-8", line, column) from None


def quoted(value: object) -> str:
    """``repr(value)`` for a diagnostic, cut to :data:`MAX_QUOTED_CHARS` characters.

    A 50 MB value must not become a 50 MB message, nor a huge integer a ValueError.
    """
    if isinstance(value, str) and len(value) > MAX_QUOTED_CHARS:
        return repr(value[:MAX_QUOTED_CHARS]) + "..."
    text = repr(value) if not isinstance(value, int) or abs(value) < 10 ** 50 \
        else f"<an integer of about {value.bit_length() * 3 // 10} digits>"
    return text if len(text) <= MAX_QUOTED_CHARS + 2 else text[:MAX_QUOTED_CHARS] + "..."

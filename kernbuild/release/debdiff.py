"""Which files of two .debs differ: pure logic, on the bytes of both packages.

A .deb is an ``ar`` archive of ``debian-binary``, ``control.tar.*`` and
``data.tar.*`` (deb(5)). :func:`deb_differences` reads both packages' members
(:func:`read_ar`), and inside each tar member that differs, every file's type,
mode, owner, mtime, link target and content sha256 (:func:`tar_entries`), and
names each file that differs and how: what ``diffoscope`` (Debian's tool, which
then shows the bytes) would point at first, without needing it. Members that
Python cannot open (a ``.tar.zst``) are named as a whole.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass

AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60


@dataclass(frozen=True)
class ArMember:
    """One member of an ar archive, with the header fields deb(5) uses."""

    name: str
    mtime: int
    mode: str
    data: bytes


@dataclass(frozen=True)
class TarEntry:
    """What a tar member holds, as far as a package's bytes go."""

    kind: str  # file, dir, symlink, hardlink or other
    mode: int
    owner: str  # uid:gid (uname/gname)
    mtime: int
    target: str  # a link's target
    size: int
    sha256: str  # of a regular file's content ("" otherwise)


@dataclass(frozen=True)
class Difference:
    """One thing that differs between a frozen and a rebuilt .deb: in ``member`` (an
    ar member such as ``data.tar.xz``), the file ``path`` ("" for the member itself),
    and how (``content``, ``mtime 1714521600 -> 1748736000``, ``only in the rebuilt``)."""

    member: str
    path: str
    what: str

    def __str__(self) -> str:
        return f"{self.member}: {self.path}: {self.what}" if self.path else \
            f"{self.member}: {self.what}"


def read_ar(data: bytes) -> list[ArMember]:
    """The members of the ar archive ``data``, in order; ValueError if it is not one."""
    if not data.startswith(AR_MAGIC):
        raise ValueError("not an ar archive (no !<arch> magic)")
    members, offset = [], len(AR_MAGIC)
    while offset + _AR_HEADER <= len(data):
        header = data[offset:offset + _AR_HEADER]
        if header[58:60] != b"`\n":
            raise ValueError(f"a damaged ar member header at byte {offset}")
        size = int(header[48:58].decode().strip())
        start = offset + _AR_HEADER
        members.append(ArMember(header[:16].decode().strip().rstrip("/"),
                                int(header[16:28].decode().strip() or 0),
                                header[40:48].decode().strip(), data[start:start + size]))
        offset = start + size + (size % 2)  # members are padded to an even size
    return members


def tar_entries(data: bytes) -> dict[str, TarEntry]:
    """Every member of the (gzip, xz, bzip2 or plain) tar archive ``data`` by name."""
    kinds = {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir",
             tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink"}
    entries = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
        for member in archive:
            content = archive.extractfile(member) if member.isreg() else None
            entries[member.name] = TarEntry(
                kinds.get(member.type, "other"), member.mode,
                f"{member.uid}:{member.gid} ({member.uname}/{member.gname})", int(member.mtime),
                member.linkname, member.size,
                hashlib.sha256(content.read()).hexdigest() if content else "")
    return entries


def deb_differences(frozen: bytes, rebuilt: bytes) -> tuple[Difference, ...]:
    """What differs between two .debs, member by member and file by file; () when
    their bytes are equal. A member that differs while every file in it is the same is
    named as a whole (its compression or member order differs)."""
    if frozen == rebuilt:
        return ()
    try:
        before, after = read_ar(frozen), read_ar(rebuilt)
    except ValueError as exc:
        return (Difference("(the .deb)", "", f"cannot be read as a .deb: {exc}"),)
    found: list[Difference] = []
    names_before, names_after = [m.name for m in before], [m.name for m in after]
    if names_before != names_after:
        found.append(Difference("(ar members)", "", f"{' '.join(names_before)} -> "
                                                    f"{' '.join(names_after)}"))
    by_name = {m.name: m for m in after}
    for old in before:
        new = by_name.get(old.name)
        if new is None:
            continue
        for field in ("mtime", "mode"):
            if getattr(old, field) != getattr(new, field):
                found.append(Difference(old.name, "", f"ar header {field} "
                                                      f"{getattr(old, field)} -> "
                                                      f"{getattr(new, field)}"))
        if old.data != new.data:
            found += _member_differences(old.name, old.data, new.data)
    return tuple(found)


def _member_differences(name: str, old: bytes, new: bytes) -> list[Difference]:
    if ".tar" not in name:
        return [Difference(name, "", "content")]
    try:
        before, after = tar_entries(old), tar_entries(new)
    except (tarfile.TarError, EOFError, OSError) as exc:
        return [Difference(name, "", f"content (cannot be opened here: {exc}; diffoscope "
                                     "shows it)")]
    found = []
    for path in sorted(set(before) | set(after)):
        if path not in after:
            found.append(Difference(name, path, "only in the frozen .deb"))
        elif path not in before:
            found.append(Difference(name, path, "only in the rebuilt .deb"))
        else:
            found += [Difference(name, path, what)
                      for what in entry_differences(before[path], after[path])]
    if not found:
        order = list(before) != list(after)
        found.append(Difference(name, "", "the same files, in another order" if order else
                                "the same files, compressed differently"))
    return found


def entry_differences(old: TarEntry, new: TarEntry) -> list[str]:
    """How one file differs: ``content`` (its sha256) and each metadata field that does."""
    found = []
    if old.sha256 != new.sha256 or old.size != new.size:
        found.append(f"content (sha256 {old.sha256[:12] or '-'} -> {new.sha256[:12] or '-'})")
    for field, shown in (("kind", str), ("mode", lambda m: f"{m:04o}"), ("owner", str),
                         ("mtime", str), ("target", str)):
        if getattr(old, field) != getattr(new, field):
            found.append(f"{field} {shown(getattr(old, field))} -> "
                         f"{shown(getattr(new, field))}")
    return found

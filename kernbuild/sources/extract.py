"""Safe extraction of source archives: nothing an archive holds may land outside its tree,
and no archive, however crafted, may exhaust time, memory, disk or stack.

Limits (each a field of :class:`ArchiveLimits`, the defaults these constants):

- :data:`MAX_MEMBERS`: entries in one archive (the Linux kernel has about 90,000).
- :data:`MAX_UNPACKED_BYTES`: bytes of all members together. Tar members are
  counted from their headers before their data is decompressed (a tar member's
  data is exactly its declared size), zip members as their bytes are written,
  so a small archive that expands to terabytes (a compression bomb) is refused
  after unpacking at most this much, and usually at once.
- :data:`MAX_PATH_BYTES`, :data:`MAX_NAME_BYTES` and :data:`MAX_DEPTH`: a member's
  path (and a link's target), each part of it, and how many directories deep it
  goes. The depth also bounds the recursion of every later walk of the tree.
- :data:`MAX_METADATA_BYTES`: bytes of tar extension headers (pax headers, GNU
  long names), which tarfile reads into memory, in all; :data:`MAX_HEADER_CHAIN`
  such headers in a row before one member (tarfile recurses through them).
- :data:`MAX_ZIP_DIRECTORY_BYTES`: a zip's central directory, which zipfile
  reads whole into memory before any check could run.

Every refusal is a :class:`KernError` naming the archive and the member.
"""

from __future__ import annotations

import lzma
import os
import posixpath
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from kernbuild.errors import KernError

MAX_MEMBERS = 200_000
MAX_UNPACKED_BYTES = 16 << 30  # CUDA's orig tarballs unpack to about 6 GB
MAX_PATH_BYTES = 4096  # Linux's PATH_MAX
MAX_NAME_BYTES = 255  # Linux's NAME_MAX
MAX_DEPTH = 128  # directories; real sources stay under 30
MAX_METADATA_BYTES = 64 << 20  # a pax header of a file is about 100 bytes
MAX_HEADER_CHAIN = 8  # pax + GNU long name + long link is 3
MAX_ZIP_DIRECTORY_BYTES = 64 << 20  # about 500,000 entries; parsed, about 10 times that

_COPY_BUFFER = 1 << 18


@dataclass(frozen=True)
class ArchiveLimits:
    """The limits above, as one value (tests shrink them)."""

    max_members: int = MAX_MEMBERS
    max_bytes: int = MAX_UNPACKED_BYTES
    max_path: int = MAX_PATH_BYTES
    max_name: int = MAX_NAME_BYTES
    max_depth: int = MAX_DEPTH
    max_metadata: int = MAX_METADATA_BYTES
    max_header_chain: int = MAX_HEADER_CHAIN
    max_zip_directory: int = MAX_ZIP_DIRECTORY_BYTES


DEFAULT_LIMITS = ArchiveLimits()


class _Refusal(Exception):
    """Raised deep inside tarfile or zipfile: a member is refused. Not a tarfile error,
    so that tarfile passes it through untouched."""

    def __init__(self, member: str | None, problem: str) -> None:
        super().__init__(f"{member}: {problem}")
        self.member = member
        self.problem = problem


def extract_archive(archive: Path, dest: Path, label: str | None = None,
                    limits: ArchiveLimits = DEFAULT_LIMITS) -> Path:
    """Unpack ``archive`` into the new directory ``dest``, refusing anything unsafe.

    Tar (plain, gzip, xz, bzip2) and zip are recognised by content, not by name.
    Refused: absolute member paths, ``..`` components, links whose target
    leaves the tree, device files, FIFOs and sparse files, and anything past
    ``limits`` (see the module's docstring). Tar is unpacked member by member
    as its headers are read, with the ``data`` extraction filter on top of these
    checks; zip is checked whole, from its central directory, then unpacked
    member by member.

    Args:
        label: how messages name the archive (its URL, say); defaults to its path.

    Returns:
        The unpacked tree: ``dest``, or its only entry when that is a directory
        (the usual ``name-version/`` top level of a release tarball).

    Raises:
        KernError: naming the archive and the offending member. ``dest`` may
            then hold a partial tree: unpack into a temporary directory.
    """
    label = label or str(archive)
    dest.mkdir(parents=True)
    with open(archive, "rb") as handle:
        magic = handle.read(4)
    try:
        # By content: a plain tar that ends with a zip member also "looks like" a zip.
        if magic in (b"PK\x03\x04", b"PK\x05\x06"):
            _extract_zip(archive, dest, label, limits)
        else:
            _extract_tar(archive, dest, label, limits)
    except _Refusal as refusal:
        raise _refused(label, refusal.member, refusal.problem) from None
    except RecursionError:  # a safety net: the limits above should make it unreachable
        raise KernError(f"cannot unpack {label}: it nests too deeply",
                        "the archive is unsafe to unpack; check the source's URL and "
                        "sha256") from None
    entries = list(dest.iterdir())
    tree = entries[0] if (len(entries) == 1 and entries[0].is_dir()
                          and not entries[0].is_symlink()) else dest
    # Per-member checks see the archive's root; a link may still leave the stripped tree.
    _check_links(tree, label)
    return tree


def _extract_tar(archive: Path, dest: Path, label: str, limits: ArchiveLimits) -> None:
    # A class per archive: tarfile makes members through it, and it carries the budget.
    info = type("_Info", (_BoundedTarInfo,), {"limits": limits, "budget": _Budget()})
    try:
        with tarfile.open(archive, "r:*", tarinfo=info) as tar:
            # Lazily: each member is checked as its header is read, before its data is.
            tar.extractall(dest, members=_checked_members(tar, limits), filter="data")
    except tarfile.FilterError as exc:
        raise _refused(label, exc.tarinfo.name, str(exc)) from None
    except tarfile.ReadError as exc:
        if any(dest.iterdir()):  # it began as a tar: damaged, not something else
            raise KernError(f"cannot unpack {label}: {exc}", _DAMAGED) from None
        raise KernError(f"{label} is not an archive kernbuild can unpack",
                        "supported: .tar, .tar.gz/.tgz, .tar.xz, .tar.bz2 and .zip") from None
    except (tarfile.TarError, EOFError, OSError, ValueError, KeyError, zlib.error,
            lzma.LZMAError) as exc:  # KeyError: a hard link to a member that is not there
        raise KernError(f"cannot unpack {label}: {exc}", _DAMAGED) from None


_DAMAGED = "the archive is damaged; delete it from the cache and fetch again"


class _Budget:
    """What one archive has used of the limits tarfile cannot see coming."""

    def __init__(self) -> None:
        self.metadata = 0
        self.chain = 0


class _BoundedTarInfo(tarfile.TarInfo):
    """A tar member that refuses, before tarfile reads them into memory, oversized or
    endless extension headers and sparse maps.

    This hooks tarfile's ``_proc_member``, the one place every header passes
    through, because tarfile offers no public limit: it reads a pax header or a
    GNU long name whole, whatever size it declares, recurses once per header in
    a row, and reads a GNU sparse map block after block for as long as it goes on.
    """

    limits: ArchiveLimits
    budget: _Budget
    _EXTENSIONS = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                   tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _Refusal(self.name, "is a sparse file")
        if self.type not in self._EXTENSIONS:
            self.budget.chain = 0
            return super()._proc_member(tarfile_)
        budget, limits = self.budget, self.limits
        budget.metadata += self.size
        budget.chain += 1
        if budget.metadata > limits.max_metadata:
            raise _Refusal(self.name, f"brings the archive's extension headers past "
                                      f"{limits.max_metadata} bytes")
        if budget.chain > limits.max_header_chain:
            raise _Refusal(self.name, f"is one of more than {limits.max_header_chain} "
                                      "extension headers in a row")
        return super()._proc_member(tarfile_)

    def _proc_gnusparse_10(self, next: tarfile.TarInfo, pax_headers: dict,
                           tarfile_: tarfile.TarFile) -> None:
        raise _Refusal(next.name, "is a sparse file")


def _checked_members(tar: tarfile.TarFile, limits: ArchiveLimits):
    """The members of ``tar``, read one by one; refuses the first one past a limit."""
    count = total = 0
    for member in tar:
        count += 1
        if count > limits.max_members:
            raise _Refusal(member.name, f"is past the limit of {limits.max_members} members")
        problem = _tar_member_problem(member, limits)
        if problem:
            raise _Refusal(member.name, problem)
        total += max(member.size, 0)
        if total > limits.max_bytes:
            raise _Refusal(member.name, f"brings the unpacked size past the limit of "
                                        f"{limits.max_bytes} bytes")
        yield member
        # Done with: kept, tarfile would hold every member's headers until the end.
        tar.members.clear()


def _tar_member_problem(member: tarfile.TarInfo, limits: ArchiveLimits) -> str:
    """Why ``member`` must not be unpacked, or ""."""
    problem = _name_problem(member.name, limits)
    if problem:
        return problem
    if member.ischr() or member.isblk() or member.isfifo():
        return "is a device file or FIFO"
    if member.issparse():
        return "is a sparse file"
    if member.issym() or member.islnk():
        if len(os.fsencode(member.linkname)) > limits.max_path:
            return f"is a link to a path longer than {limits.max_path} bytes"
    if member.issym():
        return _link_problem(posixpath.dirname(member.name), member.linkname, "symlink")
    if member.islnk():  # hard link targets are relative to the archive root
        return _link_problem("", member.linkname, "hard link")
    return ""


def _extract_zip(archive: Path, dest: Path, label: str, limits: ArchiveLimits) -> None:
    _check_zip_directory(archive, limits)
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_members:
                raise _Refusal(infos[limits.max_members].filename,
                               f"is past the limit of {limits.max_members} members")
            declared = 0
            for info in infos:  # check everything before writing anything
                problem = _name_problem(info.filename, limits) or _zip_type_problem(info)
                declared += info.file_size
                if not problem and declared > limits.max_bytes:
                    problem = (f"brings the unpacked size past the limit of "
                               f"{limits.max_bytes} bytes")
                if problem:
                    raise _Refusal(info.filename, problem)
            root = os.path.realpath(dest)
            budget = [limits.max_bytes]  # counted again as written: never trust a header
            for info in infos:
                _extract_zip_member(zf, info, dest, root, label, limits, budget)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError,
            EOFError, OSError, ValueError, zlib.error, lzma.LZMAError) as exc:
        raise KernError(f"cannot unpack {label}: {exc}",
                        "the archive is damaged, encrypted or uses an unsupported "
                        "compression") from None


def _check_zip_directory(archive: Path, limits: ArchiveLimits) -> None:
    """Refuse a zip whose central directory is too large to read, from its end record.

    zipfile reads and parses the whole directory on opening, before any member
    can be looked at; its size is in the end record (the zip64 one if present).
    An archive without an end record is left for zipfile to reject.
    """
    with open(archive, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        length = handle.tell()
        start = max(0, length - (22 + 0xFFFF))  # the record, then at most a 64 kB comment
        handle.seek(start)
        tail = handle.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) < at + 22:
            return
        entries, directory = struct.unpack("<HI", tail[at + 10:at + 16])
        locator = tail[at - 20:at] if at >= 20 else b""
        if (entries == 0xFFFF or directory == 0xFFFFFFFF) and locator[:4] == b"PK\x06\x07":
            handle.seek(struct.unpack("<Q", locator[8:16])[0])
            record = handle.read(56)
            if len(record) == 56 and record[:4] == b"PK\x06\x06":
                entries, directory = struct.unpack("<QQ", record[32:48])
    if directory > limits.max_zip_directory:
        raise _Refusal(None, f"its central directory is {directory} bytes, past the "
                             f"limit of {limits.max_zip_directory}")
    if entries > limits.max_members:
        raise _Refusal(None, f"its central directory lists {entries} members, past the "
                             f"limit of {limits.max_members}")


def _extract_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, root: str,
                        label: str, limits: ArchiveLimits, budget: list[int]) -> None:
    target = dest / info.filename
    # zipfile.extract() would silently rename bad members; we refuse instead, and
    # check through real paths so that no earlier symlink can redirect a write.
    if not inside(os.path.realpath(target.parent), root) or target.is_symlink():
        raise _refused(label, info.filename, "would be written through a symlink")
    if info.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = _zip_mode(info)
    if mode is not None and stat.S_ISLNK(mode):
        with zf.open(info) as source:  # a link's target is a path: never read more
            raw = source.read(limits.max_path + 1)
        if len(raw) > limits.max_path:
            raise _refused(label, info.filename,
                           f"is a link to a path longer than {limits.max_path} bytes")
        link = raw.decode("utf-8")
        problem = _link_problem(posixpath.dirname(info.filename), link, "symlink")
        if problem or not inside(os.path.realpath(target.parent / link), root):
            raise _refused(label, info.filename, problem or "is a symlink leaving the tree")
        os.symlink(link, target)
        return
    with zf.open(info) as source, open(target, "wb") as out:
        _copy_bounded(source, out, budget, info.filename, limits)
    if mode is not None:  # zip keeps Unix modes only when made on Unix; keep the x bit
        os.chmod(target, 0o755 if mode & 0o100 else 0o644)


def _copy_bounded(source: IO[bytes], out: IO[bytes], budget: list[int], member: str,
                  limits: ArchiveLimits) -> None:
    """Copy ``source`` to ``out`` while ``budget[0]`` bytes last; refuse ``member`` after."""
    while chunk := source.read(_COPY_BUFFER):
        budget[0] -= len(chunk)
        if budget[0] < 0:
            raise _Refusal(member, f"brings the unpacked size past the limit of "
                                   f"{limits.max_bytes} bytes")
        out.write(chunk)


def _zip_mode(info: zipfile.ZipInfo) -> int | None:
    """The Unix mode stored in a zip member, or None if it was made elsewhere."""
    mode = info.external_attr >> 16
    return mode if info.create_system == 3 and mode else None


def _zip_type_problem(info: zipfile.ZipInfo) -> str:
    mode = _zip_mode(info)
    if mode is not None and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR,
                                                       stat.S_IFLNK):
        return "is a device file, FIFO or socket"
    return ""


def _name_problem(name: str, limits: ArchiveLimits) -> str:
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    parts = re.split(r"[/\\]", name)
    if ".." in parts:
        return "has a '..' path component"
    if len(os.fsencode(name)) > limits.max_path:
        return f"has a path longer than {limits.max_path} bytes"
    if any(len(os.fsencode(part)) > limits.max_name for part in parts):
        return f"has a path component longer than {limits.max_name} bytes"
    if len([part for part in parts if part not in ("", ".")]) > limits.max_depth:
        return f"is more than {limits.max_depth} directories deep"
    return ""


def _link_problem(directory: str, target: str, what: str) -> str:
    """Why a link in ``directory`` (relative to the archive root) to ``target`` is unsafe."""
    if target.startswith("/") or re.match(r"^[A-Za-z]:", target):
        return f"is a {what} to the absolute path {target}"
    resolved = posixpath.normpath(posixpath.join(directory, target))
    if resolved == ".." or resolved.startswith("../"):
        return f"is a {what} to {target}, outside the tree"
    return ""


def _check_links(tree: Path, label: str) -> None:
    """Refuse any symlink in ``tree`` that, fully resolved, points outside it."""
    root = os.path.realpath(tree)
    for directory, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            path = os.path.join(directory, name)
            if os.path.islink(path) and not inside(os.path.realpath(path), root):
                raise _refused(label, os.path.relpath(path, tree),
                               f"is a symlink to {os.readlink(path)}, outside the tree")


def inside(path: str, root: str) -> bool:
    """Whether the real path ``path`` is ``root`` or below it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _refused(label: str, member: str | None, problem: str) -> KernError:
    what = f"member {member!r} {problem}" if member is not None else problem
    return KernError(f"refusing to unpack {label}: {what}",
                     "the archive is unsafe to unpack; check the source's URL and sha256 "
                     "and ask upstream")

"""Safe extraction of source archives: nothing an archive holds may land outside its tree."""

from __future__ import annotations

import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path

from kernbuild.errors import KernError

_COPY_BUFFER = 1 << 18


def extract_archive(archive: Path, dest: Path, label: str | None = None) -> Path:
    """Unpack ``archive`` into the new directory ``dest``, refusing anything unsafe.

    Tar (plain, gzip, xz, bzip2) and zip are recognised by content, not by name.
    Refused: absolute member paths, ``..`` components, links whose target
    leaves the tree, device files and FIFOs. Tar is unpacked with the ``data``
    extraction filter on top of these checks; zip is unpacked member by member.

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
    # By content: a plain tar that ends with a zip member also "looks like" a zip.
    if magic in (b"PK\x03\x04", b"PK\x05\x06"):
        _extract_zip(archive, dest, label)
    else:
        _extract_tar(archive, dest, label)
    entries = list(dest.iterdir())
    tree = entries[0] if (len(entries) == 1 and entries[0].is_dir()
                          and not entries[0].is_symlink()) else dest
    # Per-member checks see the archive's root; a link may still leave the stripped tree.
    _check_links(tree, label)
    return tree


def _extract_tar(archive: Path, dest: Path, label: str) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                problem = _tar_member_problem(member)
                if problem:
                    raise _refused(label, member.name, problem)
            tar.extractall(dest, filter="data")
    except tarfile.FilterError as exc:
        raise _refused(label, exc.tarinfo.name, str(exc)) from None
    except tarfile.ReadError:
        raise KernError(f"{label} is not an archive kernbuild can unpack",
                        "supported: .tar, .tar.gz/.tgz, .tar.xz, .tar.bz2 and .zip") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise KernError(f"cannot unpack {label}: {exc}",
                        "the archive is damaged; delete it from the cache and fetch again") \
            from None


def _tar_member_problem(member: tarfile.TarInfo) -> str:
    """Why ``member`` must not be unpacked, or ""."""
    problem = _name_problem(member.name)
    if problem:
        return problem
    if member.ischr() or member.isblk() or member.isfifo():
        return "is a device file or FIFO"
    if member.issym():
        return _link_problem(posixpath.dirname(member.name), member.linkname, "symlink")
    if member.islnk():  # hard link targets are relative to the archive root
        return _link_problem("", member.linkname, "hard link")
    return ""


def _extract_zip(archive: Path, dest: Path, label: str) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:  # check everything before writing anything
                problem = _name_problem(info.filename) or _zip_type_problem(info)
                if problem:
                    raise _refused(label, info.filename, problem)
            root = os.path.realpath(dest)
            for info in infos:
                _extract_zip_member(zf, info, dest, root, label)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError,
            EOFError, OSError, zlib.error, lzma.LZMAError, UnicodeDecodeError) as exc:
        raise KernError(f"cannot unpack {label}: {exc}",
                        "the archive is damaged, encrypted or uses an unsupported "
                        "compression") from None


def _extract_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, root: str,
                        label: str) -> None:
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
        link = zf.read(info).decode("utf-8")
        problem = _link_problem(posixpath.dirname(info.filename), link, "symlink")
        if problem or not inside(os.path.realpath(target.parent / link), root):
            raise _refused(label, info.filename, problem or "is a symlink leaving the tree")
        os.symlink(link, target)
        return
    with zf.open(info) as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out, _COPY_BUFFER)
    if mode is not None:  # zip keeps Unix modes only when made on Unix; keep the x bit
        os.chmod(target, 0o755 if mode & 0o100 else 0o644)


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


def _name_problem(name: str) -> str:
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "has a '..' path component"
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


def _refused(label: str, member: str, problem: str) -> KernError:
    return KernError(f"refusing to unpack {label}: member {member!r} {problem}",
                     "the archive is unsafe to unpack; check the source's URL and sha256 "
                     "and ask upstream")

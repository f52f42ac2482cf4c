"""Unpacked image trees for CVMFS, as OSG's cvmfs-singularity-sync publishes them.

:func:`export_sandbox` stores a root filesystem once per image digest under
``<repository>/.images/`` and points the image's name at it with a relative
symlink, switched atomically; sites run it with ``apptainer exec`` of the
directory, as they run singularity.opensciencegrid.org and unpacked.cern.ch.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from pathlib import Path, PurePosixPath

from kernbuild.errors import KernError
from kernbuild.fsutil import disk_space, partial_dir
from kernbuild.images.singularity import inside
from kernbuild.runtime.tools import run_tool

# What OSG's cvmfs-singularity-sync creates in every published image: the points its
# sites bind (/cvmfs, /srv) and those apptainer mounts (/dev, /proc, /sys).
CVMFS_MOUNT_POINTS = ("cvmfs", "srv", "dev", "proc", "sys")


def export_sandbox(rootfs: Path, cvmfs: Path, name: str, digest: str) -> tuple[Path, bool]:
    """Publish ``rootfs`` in the CVMFS repository tree ``cvmfs`` as ``name``; returns
    (the tree, whether anything changed).

    As OSG's cvmfs-singularity-sync and unpacked.cern.ch lay it out: the tree is
    stored once per image digest, at ``cvmfs/.images/<digest hex>`` (copied, with
    ownership, links and modes, into a temporary directory beside it and renamed
    into place), with the mount points sites bind (/cvmfs, /srv) or apptainer
    mounts (/dev, /proc, /sys), and with every file readable and every directory
    searchable and writable by its owner, so the publisher can read and later
    remove it. ``cvmfs/<name>`` (``name`` may have ``/``: ``kern/losoto:1``) is a
    relative symlink to it, switched atomically. Publishing a digest already there
    copies nothing; publishing a name that already points at it changes nothing
    and returns False.
    """
    rootfs, cvmfs = Path(rootfs), Path(cvmfs)
    match = re.fullmatch(r"(?:sha256:)?([0-9a-f]{64})", digest)
    if not match:
        raise KernError(f"{digest!r} is not an image digest", "sha256:<64 hex digits>")
    parts = PurePosixPath(name).parts
    if not name or name.startswith("/") or any(p in ("..", ".") for p in parts) \
            or parts[0] == ".images":
        raise KernError(f"{name!r} cannot name an image in {cvmfs}",
                        "a relative path without '.' or '..', e.g. kern/losoto:1")
    images = cvmfs / ".images"
    tree = images / match.group(1)
    changed = False
    with disk_space(cvmfs):
        if not tree.is_dir():
            if not (rootfs / ".singularity.d/actions/exec").is_file():
                raise KernError(f"{rootfs} has no /.singularity.d: apptainer could not run it",
                                "write it first (write_singularity_dir)")
            images.mkdir(parents=True, exist_ok=True)
            with partial_dir(tree) as work:
                copy = work / "rootfs"
                copy.mkdir()
                run_tool(["cp", "-a", f"{rootfs}/.", str(copy)], where=cvmfs)
                for point in CVMFS_MOUNT_POINTS:
                    inside(copy, point).mkdir(mode=0o755, exist_ok=True)
                _make_publishable(copy)
                try:
                    os.rename(copy, tree)
                    changed = True
                except OSError as exc:  # published meanwhile by another run: keep theirs
                    if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
        link = cvmfs / name
        link.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(tree, link.parent)
        if not (link.is_symlink() and os.readlink(link) == target):
            if link.exists() and not link.is_symlink():
                raise KernError(f"{link} exists and is not a symlink", "move it away first")
            temporary = link.with_name(f".{link.name}.{secrets.token_hex(4)}")
            os.symlink(target, temporary)
            os.replace(temporary, link)
            changed = True
    return tree, changed


def _make_publishable(root: Path) -> None:
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames:
            path = os.path.join(directory, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode) and (mode & 0o111 == 0 or mode & 0o222 == 0):
                os.chmod(path, stat.S_IMODE(mode) | stat.S_IXUSR | stat.S_IWUSR)
        for name in filenames:
            path = os.path.join(directory, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode) and mode & 0o444 == 0:
                os.chmod(path, stat.S_IMODE(mode) | stat.S_IRUSR)


def link_release(cvmfs: Path, release: str, name: str, digest: str) -> Path:
    """Name the published tree of image ``digest`` after a release as well:
    ``cvmfs/<release>/<name>`` (``kern-2/wcslib``) -> ``.images/<digest>``.

    A release's name stays on the digest it was cut with while ``kern/<name>:N``
    may move: tags come and go, digests are forever. The tree must be published
    already (:func:`export_sandbox`); the link is switched atomically."""
    match = re.fullmatch(r"(?:sha256:)?([0-9a-f]{64})", digest)
    tree = Path(cvmfs) / ".images" / (match.group(1) if match else "")
    if not match or not tree.is_dir():
        raise KernError(f"no sandbox of {digest} is published in {cvmfs}",
                        "publish it first: kernbuild image NAME -f sandbox --cvmfs DIR")
    export_sandbox(tree, Path(cvmfs), f"{release}/{name}", digest)
    return Path(cvmfs) / release / name

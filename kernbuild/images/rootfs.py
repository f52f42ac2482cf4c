"""A Docker image's root filesystem, unpacked as it is in the image, safely.

The first step of every SIF and sandbox: ``docker export`` of a container of the
image, streamed straight into a hardened extraction (no member may land or link
outside the destination), into a temporary directory renamed into place.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from kernbuild.errors import KernError
from kernbuild.fsutil import check_empty_destination, disk_space, partial_dir, replace_dir
from kernbuild.runtime.docker import stream

if TYPE_CHECKING:
    import docker


def export_rootfs(client: docker.DockerClient, image: str, dest: Path) -> Path:
    """The root filesystem of ``image`` unpacked into ``dest`` (absent or empty); returns ``dest``.

    The image's container is exported (``docker export``) and streamed straight into
    the extraction; the container is removed whatever happens. Ownership (numeric,
    as in the image: run as root to keep it), permissions including setuid bits,
    symlinks and hardlinks are kept; device nodes are skipped (a container gets its
    /dev at run time). A member with an absolute path or ``..``, or one that would be
    written through a symlink or hardlinked to something outside ``dest``, makes the
    whole export fail: such an archive is not a root filesystem.
    """
    from docker.errors import DockerException, ImageNotFound

    dest = Path(dest)
    check_empty_destination(dest)
    try:
        # Never started, so the command only has to satisfy images without a CMD.
        container = client.containers.create(image, command=["true"],
                                             labels={"kernbuild": "export"})
    except ImageNotFound as exc:
        raise KernError(f"no image {image} in the Docker engine",
                        "build it first ('kernbuild image ...'), or pull or import it") from exc
    except DockerException as exc:
        raise KernError(f"cannot create a container of {image}: {exc}") from exc
    try:
        with disk_space(dest.parent), partial_dir(dest) as partial:
            try:
                with tarfile.open(fileobj=stream(container.export(chunk_size=1 << 20)),
                                  mode="r|") as archive:
                    _extract_rootfs(archive, partial)
            except tarfile.TarError as exc:
                raise KernError(f"the export of {image} is not a readable archive: {exc}",
                                "try again; if it persists, rebuild the image") from exc
            # Docker's marker of "inside a Docker container": not true under apptainer.
            (partial / ".dockerenv").unlink(missing_ok=True)
            replace_dir(partial, dest)
    except DockerException as exc:
        raise KernError(f"cannot export {image}: {exc}") from exc
    finally:
        container.remove(force=True)
    return dest


def _extract_rootfs(archive: tarfile.TarFile, root: Path) -> None:
    """Extract a root filesystem archive into ``root`` (see :func:`export_rootfs`).

    tarfile's 'data' filter would refuse absolute symlinks (every Debian root
    filesystem has them; inside the container they resolve against its own root),
    drop ownership and clear setuid bits, so the checks that matter are made here and
    the archive is then extracted as trusted.
    """
    real_root = os.path.realpath(root)

    def safe(members: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
        for member in members:
            if member.ischr() or member.isblk():
                continue
            _check_member_path(member.name, member.name, root, real_root)
            if member.islnk():
                _check_member_path(member.linkname, member.name, root, real_root)
            yield member

    trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
    archive.extractall(root, members=safe(archive), numeric_owner=True, **trusted)
    os.chmod(root, 0o755)  # the temporary directory was made 0700; "/" is 0755


def _check_member_path(name: str, member: str, root: Path, real_root: str) -> None:
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts:
        raise KernError(f"refusing to unpack the image: {member!r} points at {name!r}",
                        "the archive is not a plain root filesystem; rebuild the image")
    # The parent must resolve inside the root: writing through a symlink to "/etc"
    # would otherwise write to this machine's /etc.
    parent = os.path.realpath(root.joinpath(*parts[:-1]) if len(parts) > 1 else root)
    if parent != real_root and not parent.startswith(real_root + os.sep):
        raise KernError(f"refusing to unpack the image: {member!r} would be written "
                        f"outside it, through a symlink", "rebuild the image")

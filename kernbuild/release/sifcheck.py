"""Does a SIF rebuilt from a release's image give the same squashfs payload?

A SIF is a header (a random UUID, creation times), a definition object, the
labels and a primary system partition, the squashfs root filesystem: that
partition, :func:`kernbuild.images.sif.squashfs_payload`, is what must not
change when the SIF is made again from the same image. kernbuild's own
assembly (:func:`kernbuild.images.build.assemble_from_image`) dates it from
the image, so it is reproducible. ``apptainer build`` (1.4.5, Debian's) is not,
and cannot be made so from outside: two builds of one ``docker save`` archive
differ in the squashfs superblock's mkfs time and the times of the 30 files of
``/.singularity.d`` (and its links ``/.exec``, ``/.run``...) it writes; with
``SOURCE_DATE_EPOCH`` passed to it, which its mksquashfs honours, they still
differ in ``/.singularity.d/labels.json``, whose ``org.label-schema.build-date``
label is the wall clock. So a release's SIF that apptainer made is not what a
rebuild is compared with: two SIFs kernbuild assembles from its image are.

:func:`check_sifs` makes, for each image of a release still in the engine, the
SIF twice and compares the payloads; where the release's own SIF was assembled
by kernbuild and is still there with its recorded sha256, the rebuild is
compared with it instead. Where the payloads differ, both are unpacked and each
file that differs is named, with how (its content, mtime, mode, owner).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kernbuild.errors import KernError
from kernbuild.release.debdiff import TarEntry, entry_differences
from kernbuild.sources import file_sha256
from kernbuild.workspace import Workspace

IDENTICAL, DIFFERS, SKIPPED = "identical", "differs", "skipped"
ASSEMBLED = "mksquashfs+siftool"  # how the lockfile names kernbuild's own assembly


@dataclass(frozen=True)
class SifCheck:
    """One image's SIF payload made again: ``identical``, ``differs`` (``differences``
    names the files) or ``skipped`` (``detail`` says why)."""

    image: str  # its tag
    digest: str
    status: str
    against: str = ""  # what the rebuild was compared with: the release's SIF or a second one
    first_sha256: str = ""
    second_sha256: str = ""
    differences: tuple[str, ...] = ()
    detail: str = ""


def tree_entries(root: Path) -> dict[str, TarEntry]:
    """Every file of the unpacked tree ``root`` by its path in it, as :func:`tar_entries`
    describes a .deb's files (times to the nanosecond; device nodes by kind only)."""
    kinds = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink"}
    entries = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        kind = kinds.get(stat.S_IFMT(info.st_mode), "other")
        entries[str(path.relative_to(root))] = TarEntry(
            kind, stat.S_IMODE(info.st_mode), f"{info.st_uid}:{info.st_gid}", info.st_mtime_ns,
            os.readlink(path) if kind == "symlink" else "", info.st_size if kind == "file" else 0,
            file_sha256(path) if kind == "file" else "")
    return entries


def tree_differences(first: dict[str, TarEntry], second: dict[str, TarEntry]) -> tuple[str, ...]:
    """Each file of two root filesystems that differs, and how: ``path: content``,
    ``path: mtime A -> B``, ``path: only in the first``."""
    found = []
    for path in sorted(first.keys() | second.keys()):
        if path not in second:
            found.append(f"{path}: only in the first")
        elif path not in first:
            found.append(f"{path}: only in the second")
        else:
            found += [f"{path}: {what}" for what in entry_differences(first[path], second[path])]
    return tuple(found)


def payload_differences(first: Path, second: Path,
                        scratch: Path) -> tuple[str, tuple[str, str, tuple[str, ...]]]:
    """(status, (first payload's sha256, second's, what differs)) of two SIFs; where the
    payloads differ, both are unpacked under ``scratch`` and their files compared."""
    from kernbuild.images.sif import squashfs_payload, unpack_sif

    one, two = squashfs_payload(first), squashfs_payload(second)
    sums = hashlib.sha256(one).hexdigest(), hashlib.sha256(two).hexdigest()
    if one == two:
        return IDENTICAL, (*sums, ())
    # the superblock's modification time, bytes 8-12 (squashfs_super_block.mkfs_time)
    named = (f"(superblock): mkfs time {int.from_bytes(one[8:12], 'little')} -> "
             f"{int.from_bytes(two[8:12], 'little')}",) if one[8:12] != two[8:12] else ()
    del one, two
    named += tree_differences(tree_entries(unpack_sif(first, scratch / "first")),
                              tree_entries(unpack_sif(second, scratch / "second")))
    return DIFFERS, (*sums, named or ("the same files and times; their layout differs",))


def check_sifs(workspace: Workspace, suite, record,
               say: Callable[[str], None] = lambda _: None) -> tuple[SifCheck, ...]:
    """Each image of the release ``record`` made into a SIF again (see the module), with
    the definition file its plan gives in ``suite`` (the recipes as released), which
    the SIF's root filesystem holds as ``/.singularity.d/Singularity``."""
    from kernbuild import engine
    from kernbuild.images.build import assemble_from_image
    from kernbuild.images.plan import plan_image
    from kernbuild.images.writers import WRITERS
    from kernbuild.lockfile import read_lock
    from kernbuild.release.cut import releases_dir

    from docker.errors import ImageNotFound

    client = engine.connect()
    workspace.images.mkdir(parents=True, exist_ok=True)
    lock_path = releases_dir(workspace) / record.distribution / "kern.lock"
    locks = read_lock(lock_path) if lock_path.is_file() else {}
    checks = []
    for image in record.images:
        try:
            labels = client.images.get(image.digest).labels or {}
        except ImageNotFound:  # removed since (docker image prune): nothing to make it of
            checks.append(SifCheck(image.tag, image.digest, SKIPPED,
                                   detail="the image is not in this engine"))
            continue
        definition = WRITERS["singularity"].render(
            plan_image(suite, suite.get(image.recipe), suite.settings.base_tag))
        say(f"{image.tag}: making its SIF again from {image.digest[:19]}")
        with tempfile.TemporaryDirectory(dir=workspace.images) as scratch:
            work = Path(scratch)
            again = assemble_from_image(client, image.digest, definition, labels,
                                        work / "again.sif", work)
            frozen = _frozen_sif(locks.get(image.tag), image.sif_sha256)
            if frozen is None:
                other = assemble_from_image(client, image.digest, definition, labels,
                                            work / "second.sif", work)
                against = "a second SIF made from the image"
            else:
                other, against = frozen, f"the release's SIF {frozen}"
            status, (first, second, named) = payload_differences(other, again, work)
        checks.append(SifCheck(image.tag, image.digest, status, against, first, second, named))
    return tuple(checks)


def _frozen_sif(lock, recorded_sha256: str) -> Path | None:
    """The release's own SIF where kernbuild assembled it and it is still what the
    release recorded; None otherwise (made by apptainer, gone or changed)."""
    sif = getattr(lock, "sif", None)
    if sif is None or sif.built_with != ASSEMBLED or not recorded_sha256:
        return None
    path = Path(sif.path)
    if not path.is_file():
        return None
    if file_sha256(path) != recorded_sha256:
        raise KernError(f"{path}: not the SIF {lock.tag} was released with (sha256 "
                        f"{recorded_sha256[:12]} recorded)",
                        "make it again with kernbuild image -f sif, or remove it")
    return path

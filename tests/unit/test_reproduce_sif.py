"""A SIF's squashfs payload made twice: the same with an epoch, each difference named
without one (kernbuild's own assembly, mksquashfs and siftool, no Docker)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from kernbuild.images import sif, singularity
from kernbuild.release.sifcheck import DIFFERS, IDENTICAL, payload_differences
from tests.unit.test_sif import DEFINITION, ENVIRONMENT, LABELS, make_rootfs, needs_sif_tools

EPOCH = 1_700_000_000


def _sif(tmp_path: Path, name: str, epoch: int | None) -> Path:
    """A SIF of a root filesystem made anew, as each SIF of an image is: its
    /.singularity.d written now."""
    root = make_rootfs(tmp_path / f"rootfs-{name}")
    for path in [root, *root.rglob("*")]:  # as exported from one image: its own times
        os.utime(path, (EPOCH - 86400, EPOCH - 86400), follow_symlinks=False)
    singularity.write_singularity_dir(root, DEFINITION, LABELS, ENVIRONMENT)
    return sif.assemble_sif(root, DEFINITION, LABELS, tmp_path / f"{name}.sif", epoch=epoch)


@needs_sif_tools
def test_an_epoch_makes_the_payload_the_same(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = _sif(tmp_path, "a", EPOCH)
    time.sleep(1.1)  # a second later, as a rebuild is
    second = _sif(tmp_path, "b", EPOCH)
    assert first.read_bytes() != second.read_bytes()  # the header's UUID and times
    status, (one, two, named) = payload_differences(first, second, tmp_path / "cmp")
    assert (status, named) == (IDENTICAL, ()) and one == two
    assert sif.squashfs_payload(first)[:4] == b"hsqs"


@needs_sif_tools
def test_without_an_epoch_the_clock_is_named(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = _sif(tmp_path, "a", None)
    time.sleep(1.1)
    second = _sif(tmp_path, "b", None)
    status, (one, two, named) = payload_differences(first, second, tmp_path / "cmp")
    assert status == DIFFERS and one != two
    assert named[0].startswith("(superblock): mkfs time ")
    # the files written now: /.singularity.d, and /etc/hosts and resolv.conf for binds
    said = " ".join(named)
    assert ".singularity.d: mtime" in said and "etc/hosts: mtime" in said
    # ... and only those: the image's own files keep their times
    assert not [line for line in named
                if line.startswith(("etc/debian_version", "etc/owned", "usr/", "tmp"))]

"""A full disk, for real: a 2 MiB tmpfs whose space runs out at every step of a publish.

Needs root (to mount the tmpfs) and the apt repository tools; skips cleanly without.
Each test unmounts what it mounted. No Docker.
"""

from __future__ import annotations

import base64
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernbuild.errors import KernError
from kernbuild.fsutil import DiskFull, atomic_copy, atomic_write
from kernbuild.repo import AptRepository, SigningKey
from tests.unit.test_repo import key, make_deb
from tests.unit.test_repo import pytestmark as repo_tools

pytestmark = repo_tools
__all__ = ["key"]  # the session's signing key fixture, shared with test_repo

PAGE = 4096
SIZE = 2 * 1024 * 1024


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """An empty 2 MiB tmpfs, unmounted afterwards; skip where none can be mounted."""
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0755", "tmpfs",
                              str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def free(where: Path) -> int:
    found = os.statvfs(where)
    return found.f_bavail * found.f_frsize


def fill(disk: Path, leave: int) -> Path:
    """A file taking all but ``leave`` bytes (whole pages) of ``disk``'s space."""
    filler = disk / "filler"
    filler.unlink(missing_ok=True)
    with open(filler, "wb") as out:
        out.write(b"\0" * max(0, free(disk) - leave))
    assert abs(free(disk) - leave) <= PAGE, (free(disk), leave)
    return filler


def leftovers(root: Path) -> list[str]:
    """Temporary files and half-made generations a failed write could leave."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if (p.name.startswith(".") and not p.name.endswith(".lock"))
                  or p.name.endswith(".tmp"))


# -- the atomic writers --------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["atomic_write", "atomic_copy"])
def test_atomic_writers_leave_the_old_file_and_no_temporary_on_enospc(
        disk: Path, tmp_path: Path, writer: str) -> None:
    target = disk / "data" / "file.bin"
    atomic_write(target, b"old\n")
    big = os.urandom(64 * PAGE)
    source = tmp_path / "big.bin"
    source.write_bytes(big)
    filler = fill(disk, 8 * PAGE)

    with pytest.raises(DiskFull) as error:
        if writer == "atomic_write":
            atomic_write(target, big)
        else:
            atomic_copy(source, target)
    assert isinstance(error.value, KernError)
    assert error.value.message.startswith(f"no space left on {target.parent} (")
    assert "kB free)" in error.value.message
    assert f"df -h {target.parent}" in error.value.hint
    assert target.read_bytes() == b"old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]

    filler.unlink()
    atomic_write(target, big) if writer == "atomic_write" else atomic_copy(source, target)
    assert target.read_bytes() == big


# -- publishing ----------------------------------------------------------------------------


def test_publish_running_out_of_space_at_every_step(
        disk: Path, tmp_path: Path, key: SigningKey, figure) -> None:
    """Space runs out at each point of a publish in turn (the pool copy, the keys, each
    index, each signature): every failure says the disk is full and which generation is
    still served, leaves that one served and whole, and the same publish succeeds once
    space is freed."""
    debs = tmp_path / "debs"
    debs.mkdir()
    small = make_deb(debs, "hello", "1.0")
    noise = base64.b64encode(random.Random(13).randbytes(90_000)).decode()  # xz can't shrink it
    big = make_deb(debs, "bigdata", "1.0", noise)
    pages = -(-big.stat().st_size // PAGE)
    outcomes: dict[str, int] = {"in the pool copy": 0, "after the pool copy": 0, "published": 0}

    for extra in range(-1, 16):
        root = disk / "repo"
        shutil.rmtree(root, ignore_errors=True)
        repo = AptRepository(root, "kern-test", key)
        assert repo.publish([small]) == 1
        filler = fill(disk, (pages + extra) * PAGE)
        try:
            number = repo.publish([big])
        except KernError as exc:
            assert isinstance(exc, DiskFull), str(exc)
            text = str(exc)
            assert exc.message.startswith(f"no space left on {root}"), text
            assert "free)" in exc.message, text
            assert "publishing kern-test stopped; generation 1 is still served" in text
            assert "free space there (df -h" in exc.hint and "run the command again" in exc.hint
            assert os.readlink(repo.current) == "generations/1"
            assert [r.name for r in repo.packages()] == ["hello"]
            assert repo.verify().ok, [str(p) for p in repo.verify().problems]
            assert leftovers(root) == [], leftovers(root)
            assert sorted(p.name for p in repo.generations.iterdir()) == ["1"]
            pooled = (root / "pool/main/b/bigdata/bigdata_1.0_all.deb").exists()
            outcomes["after the pool copy" if pooled else "in the pool copy"] += 1
            filler.unlink()
            assert repo.publish([big]) == 2  # the same publish, once space is freed
        else:
            outcomes["published"] += 1
            assert number == 2
            filler.unlink()
        assert os.readlink(repo.current) == "generations/2"
        assert sorted(r.name for r in repo.packages()) == ["bigdata", "hello"]
        assert repo.verify().ok

    figure(f"full disk: 17 fill levels around a {big.stat().st_size} B .deb: "
           + ", ".join(f"{n} {what}" for what, n in outcomes.items()))
    # Every part of the publish was hit: the copy, what follows it, and enough room.
    assert all(outcomes.values()), outcomes

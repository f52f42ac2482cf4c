"""``kernbuild repo verify`` on a real repository published by the real code, then tampered.

Each tampering changes one file the way corruption or an attacker would, and the report
must name that file; apt itself (the host's apt-get, against a private configuration)
refuses the same repository. Needs apt-ftparchive, gpg, gpgv and dpkg-deb; no Docker.
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from kernbuild.errors import KernError
from kernbuild.repo import AptRepository, SigningKey
from kernbuild.repo.verify import Verification
from tests.unit.test_repo import AptClient, _kill_agent, key, make_deb, needs_apt_get
from tests.unit.test_repo import pytestmark as repo_tools

pytestmark = repo_tools
__all__ = ["key"]  # the session's signing key fixture, shared with test_repo

DIST = "kern-test"
INDEX = f"dists/{DIST}/main/binary-amd64"


@pytest.fixture
def repo(tmp_path: Path, key: SigningKey) -> AptRepository:
    """A repository of three packages in two generations, as publishes leave it."""
    debs = tmp_path / "debs"
    debs.mkdir()
    repo = AptRepository(tmp_path / "repo", DIST, key)
    repo.publish([make_deb(debs, "hello", "1.0", "one\n"),
                  make_deb(debs, "libfoo1", "2.0", "x" * 5000, source="libfoo")])
    repo.publish([make_deb(debs, "hello", "1.1", "two\n")])
    return repo


def served(repo: AptRepository, relative: str) -> Path:
    """A file of the served generation (``pool/...`` resolves through its link)."""
    return repo.current.resolve() / relative


def flip_byte(path: Path, offset: int = -20) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def rewrite_index(repo: AptRepository, change: Callable[[bytes], bytes]) -> None:
    """Change the Packages index in all three forms, as someone replacing it would."""
    index = served(repo, INDEX)
    text = change((index / "Packages").read_bytes())
    (index / "Packages").write_bytes(text)
    (index / "Packages.gz").write_bytes(gzip.compress(text))
    (index / "Packages.xz").write_bytes(lzma.compress(text, format=lzma.FORMAT_XZ))


def named(result: Verification) -> set[str]:
    return {problem.path for problem in result.problems}


def test_a_published_repository_verifies(repo: AptRepository) -> None:
    result = repo.verify()
    assert result.problems == []
    assert (result.generation, result.indexes, result.packages) == (2, 3, 3)
    assert result.signatures
    assert result.size == sum(served(repo, r.filename).stat().st_size for r in repo.packages())
    assert result.summary() == f"{DIST}: 3 indexes, 3 packages, 2 kB verified, signatures good"


def test_never_published_is_an_error_not_a_pass(tmp_path: Path, key: SigningKey) -> None:
    with pytest.raises(KernError, match="never been published"):
        AptRepository(tmp_path / "empty", DIST, key).verify()


POOL_DEB = "pool/main/h/hello/hello_1.0_all.deb"


@pytest.mark.parametrize("tamper, file, message", [
    (lambda repo: flip_byte(served(repo, POOL_DEB)), POOL_DEB, "SHA256 differs"),
    (lambda repo: served(repo, POOL_DEB).write_bytes(served(repo, POOL_DEB).read_bytes()[:-64]),
     POOL_DEB, "truncated"),
    (lambda repo: served(repo, POOL_DEB).unlink(), POOL_DEB, "missing"),
    (lambda repo: rewrite_index(repo, lambda t: t.replace(b"test package hello",
                                                          b"test package hellO")),
     f"{INDEX}/Packages", "SHA256 differs from Release's"),
    (lambda repo: (served(repo, f"{INDEX}/Packages.gz").write_bytes(b"")),
     f"{INDEX}/Packages.gz", "size differs from Release's"),
    (lambda repo: served(repo, f"dists/{DIST}/Release").write_bytes(
        served(repo, f"dists/{DIST}/Release").read_bytes().replace(b"Label: kernbuild",
                                                                   b"Label: kernbuilt")),
     f"dists/{DIST}/Release", "does not match its signature Release.gpg"),
    (lambda repo: flip_byte(served(repo, f"dists/{DIST}/InRelease"), 60),
     f"dists/{DIST}/InRelease", "signature does not verify"),
    (lambda repo: served(repo, "kern-archive-keyring.gpg").write_bytes(b"\x99junk"),
     "kern-archive-keyring.gpg", "is not the signing key's public key"),
], ids=["deb-changed", "deb-truncated", "deb-missing", "packages", "packages-gz-emptied",
        "release", "inrelease", "keyring"])
def test_tampering_is_reported_by_file_name(repo: AptRepository, tamper, file: str,
                                            message: str) -> None:
    tamper(repo)
    result = repo.verify()
    where = file if file.startswith("pool/") else f"generations/2/{file}"
    assert where in named(result), [str(p) for p in result.problems]
    assert any(p.path == where and message in p.message for p in result.problems), \
        [str(p) for p in result.problems]
    assert not result.ok and "FAILED verification" in result.summary()


def test_every_tampered_file_is_named_with_expected_and_found(
        repo: AptRepository, figure) -> None:
    deb = served(repo, POOL_DEB)
    listed = next(r for r in repo.packages() if r.filename == POOL_DEB)
    assert listed.version == "1.0"
    size = deb.stat().st_size
    deb.write_bytes(deb.read_bytes()[: size // 2])
    rewrite_index(repo, lambda t: t.replace(b"Maintainer: kernbuild tests",
                                            b"Maintainer: someone else"))
    release = served(repo, f"dists/{DIST}/Release")
    release.write_bytes(release.read_bytes() + b"Extra: field\n")
    changed = {POOL_DEB, f"generations/2/{INDEX}/Packages", f"generations/2/dists/{DIST}/Release"}

    result = repo.verify()
    reported = changed & named(result)
    truncated = next(p for p in result.problems if p.path == POOL_DEB)
    assert (truncated.expected, truncated.actual) == (f"{size} bytes", f"{size // 2} bytes")
    assert reported == changed, [str(p) for p in result.problems]
    figure(f"tampered: {len(changed)} files changed, {len(reported)} reported by name "
           f"({len(result.problems)} problems in all)")


def test_a_stale_current_link_is_reported(repo: AptRepository) -> None:
    link = repo.root / ".swap"
    link.symlink_to("generations/7")
    os.replace(link, repo.current)
    assert [str(p) for p in repo.verify().problems] == [
        "current: points to generations/7, which is missing"]


def test_republishing_over_a_corrupt_pool_file_says_so(repo: AptRepository,
                                                         tmp_path: Path) -> None:
    """Not "bump the revision": the pool's copy is what went wrong, and verify names it."""
    deb = served(repo, POOL_DEB)
    original = deb.read_bytes()
    again = tmp_path / "hello-again.deb"  # the very package that was published
    again.write_bytes(original)
    assert repo.publish([again]) == 2  # the same file again: nothing to do
    flip_byte(deb)
    with pytest.raises(KernError) as error:
        repo.publish([again])
    assert error.value.message.startswith(f"{POOL_DEB}: the pool's copy is corrupt")
    assert "kernbuild repo verify" in error.value.hint
    deb.write_bytes(original)
    assert repo.publish([again]) == 2 and repo.verify().ok


@needs_apt_get
def test_apt_refuses_what_verify_names(repo: AptRepository, tmp_path: Path) -> None:
    """The same chain apt walks: a changed .deb is a Hash Sum mismatch for apt, and the
    file verify names; a replaced index is refused at update."""
    line = repo.sources_line(f"file:{repo.current}", str(repo.root / "kern-archive-keyring.gpg"))
    flip_byte(served(repo, POOL_DEB))
    apt = AptClient(tmp_path / "client-deb", line)
    assert apt("update").returncode == 0
    fetched = apt("install", "--download-only", "-y", "hello=1.0")
    assert fetched.returncode != 0
    assert f"{POOL_DEB}  Hash Sum mismatch" in fetched.stderr, fetched.stderr
    assert POOL_DEB in named(repo.verify())

    rewrite_index(repo, lambda t: t.replace(b"Version: 1.1", b"Version: 9.9"))
    apt = AptClient(tmp_path / "client-index", line)
    update = apt("update")
    assert "Hash Sum mismatch" in update.stdout + update.stderr, update.stdout + update.stderr
    assert apt("install", "--download-only", "-y", "hello=9.9").returncode != 0
    assert f"generations/2/{INDEX}/Packages" in named(repo.verify())


# -- the command ---------------------------------------------------------------------------


def kernbuild(suite_dir: Path, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kernbuild.cli", "--recipes", str(suite_dir),
                           "--state", str(state), *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})


def test_the_command_names_the_file_and_exits_1(suite_dir: Path, tmp_path: Path) -> None:
    from kernbuild.build import open_repository
    from kernbuild.recipe import load_suite
    from kernbuild.workspace import Workspace

    state = tmp_path / "state"
    nothing = kernbuild(suite_dir, state, "repo", "verify")
    assert nothing.returncode == 1 and "nothing has been published" in nothing.stderr
    assert "Traceback" not in nothing.stderr
    assert not (state / "gnupg").exists()  # verifying made no key

    repo = open_repository(Workspace(suite_dir, state), load_suite(suite_dir))
    try:
        repo.publish([make_deb(tmp_path, "hello", "1.0")])
        good = kernbuild(suite_dir, state, "repo", "verify")
        assert good.returncode == 0, good.stderr
        assert re.fullmatch(r"kern-9, kern-dev: 6 indexes, 1 package, \d+ B verified, "
                            r"signatures good", good.stdout.strip()), good.stdout
        flip_byte(repo.root / "pool/main/h/hello/hello_1.0_all.deb")
        bad = kernbuild(suite_dir, state, "repo", "verify")
        assert bad.returncode == 1
        assert bad.stdout.startswith("pool/main/h/hello/hello_1.0_all.deb: SHA256 differs")
        assert "FAILED verification" in bad.stderr and "Traceback" not in bad.stderr
        data = json.loads(kernbuild(suite_dir, state, "repo", "verify", "--json").stdout)
        assert data["ok"] is False
        assert [p["path"] for p in data["problems"]] == ["pool/main/h/hello/hello_1.0_all.deb"]
    finally:
        _kill_agent(state / "gnupg")

"""Frozen distributions beside rolling ones, tested with real gpg and a real apt client.

A release freezes kern-N as exactly its packages: signed once, carried byte for byte
into every later generation, never published to again, and installable with apt
whatever is published after it (kern-dev and the next kern-N move on).
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernbuild.errors import KernError
from kernbuild.repo import AptRepository, SigningKey
from tests.unit.test_repo import AptClient, _QuietHandler, key, make_deb, needs_apt_get
from tests.unit.test_repo import pytestmark  # noqa: F401 - the same tools are needed

__all__ = ["key"]


def _repo(root: Path, key: SigningKey, release: int) -> AptRepository:
    """The repository as the suite at ``release`` opens it."""
    return AptRepository(root, f"kern-{release}", key, rolling="kern-dev")


def _dists(repo: AptRepository) -> dict[str, bytes]:
    """Every file of every frozen distribution as served."""
    out = {}
    for dist in repo.frozen():
        tree = repo.current / "dists" / dist
        out |= {str(p.relative_to(repo.current)): p.read_bytes()
                for p in sorted(tree.rglob("*")) if p.is_file()}
    return out


@pytest.fixture
def two_releases(tmp_path: Path, key: SigningKey) -> tuple[AptRepository, dict[str, Path]]:
    """kern-1 frozen with hello 1.0 and gone 1.0; then kern-2 with hello 2.0 and new 1.0,
    published, frozen, and one more publish to kern-3 after it."""
    debs = tmp_path / "debs"
    debs.mkdir()
    made = {"hello1": make_deb(debs, "hello", "1.0-1kern1", "one\n"),
            "gone1": make_deb(debs, "gone", "1.0-1kern1"),
            "hello2": make_deb(debs, "hello", "2.0-1kern2", "two\n"),
            "new2": make_deb(debs, "new", "1.0-1kern2"),
            "hello3": make_deb(debs, "hello", "3.0-1kern3", "three\n")}
    root = tmp_path / "repo"
    first = _repo(root, key, 1)
    first.publish([made["hello1"], made["gone1"]])
    first.freeze(first.packages())
    second = _repo(root, key, 2)
    second.publish([made["hello2"], made["new2"]])
    refs = [r for r in second.packages() if r.version.endswith("kern2")]
    second.freeze(refs)
    third = _repo(root, key, 3)
    third.publish([made["hello3"]])
    return third, made


def test_frozen_distributions_list_exactly_their_release(two_releases) -> None:
    repo, _ = two_releases
    assert repo.frozen() == ["kern-1", "kern-2"]
    assert repo.distributions() == ["kern-1", "kern-2", "kern-3", "kern-dev"]
    assert {(r.name, r.version) for r in repo.packages("kern-1")} == {
        ("hello", "1.0-1kern1"), ("gone", "1.0-1kern1")}
    assert {(r.name, r.version) for r in repo.packages("kern-2")} == {
        ("hello", "2.0-1kern2"), ("new", "1.0-1kern2")}
    # The rolling ones list every version ever published.
    for rolling in ("kern-dev", "kern-3"):
        assert {r.version for r in repo.packages(rolling) if r.name == "hello"} == {
            "1.0-1kern1", "2.0-1kern2", "3.0-1kern3"}
    release = (repo.current / "dists" / "kern-1" / "Release").read_text()
    assert "Suite: kern-1" in release and "Codename: kern-1" in release
    assert repo.verify().ok, repo.verify().problems


def test_a_frozen_distribution_is_carried_byte_for_byte(tmp_path: Path, key: SigningKey) -> None:
    debs = tmp_path / "debs"
    debs.mkdir()
    repo = _repo(tmp_path / "repo", key, 1)
    repo.publish([make_deb(debs, "hello", "1.0-1kern1")])
    repo.freeze(repo.packages())
    before = _dists(repo)
    assert before and all(name.startswith("dists/kern-1/") for name in before)
    later = _repo(repo.root, key, 2)
    for minor in range(3):
        later.publish([make_deb(debs, "hello", f"1.{minor}-1kern2", str(minor))])
    assert _dists(later) == before  # the very bytes signed at the release
    assert later.current_generation() == 5


def test_publishing_or_freezing_a_frozen_release_again_is_refused(
    tmp_path: Path, key: SigningKey
) -> None:
    debs = tmp_path / "debs"
    debs.mkdir()
    repo = _repo(tmp_path / "repo", key, 1)
    repo.publish([make_deb(debs, "hello", "1.0-1kern1")])
    repo.freeze(repo.packages())
    served = repo.current_generation()
    with pytest.raises(KernError) as err:
        repo.publish([make_deb(debs, "late", "1.0-1kern1")])
    assert "kern-1 is a frozen release" in err.value.message
    assert "release: N+1" in err.value.hint
    # Other packages: refused. The same ones (a release killed after its freeze, run
    # again): nothing changes, the release goes on.
    other = _repo(tmp_path / "repo", key, 2)
    other.publish([make_deb(debs, "other", "1.0-1kern2")])
    served = repo.current_generation()
    with pytest.raises(KernError) as err:
        repo.freeze(other.packages())
    assert "kern-1 is frozen already" in err.value.message
    frozen = {p: p.read_bytes() for p in (repo.root / "frozen").rglob("*") if p.is_file()}
    assert repo.freeze(repo.packages()) == served == repo.current_generation()
    assert {p: p.read_bytes() for p in (repo.root / "frozen").rglob("*")
            if p.is_file()} == frozen
    assert not list((repo.root / "pool").rglob("late_*"))


def test_freezing_a_file_not_in_the_pool_is_refused(tmp_path: Path, key: SigningKey) -> None:
    from kernbuild.repo import PackageRef

    debs = tmp_path / "debs"
    debs.mkdir()
    repo = _repo(tmp_path / "repo", key, 1)
    repo.publish([make_deb(debs, "hello", "1.0-1kern1")])
    ghost = PackageRef("ghost", "1.0", "all", "pool/main/g/ghost/ghost_1.0_all.deb")
    with pytest.raises(KernError) as err:
        repo.freeze([*repo.packages(), ghost])
    assert "ghost_1.0_all.deb" in err.value.message
    assert repo.frozen() == [] and not repo.is_frozen()


def test_verify_names_a_changed_frozen_release(two_releases) -> None:
    repo, _ = two_releases
    index = repo.current / "dists" / "kern-1" / "main" / "binary-amd64" / "Packages"
    index.write_bytes(index.read_bytes() + b"\n")
    result = repo.verify()
    assert not result.ok
    named = {p.path for p in result.problems}
    assert any(path.endswith("dists/kern-1/main/binary-amd64/Packages") for path in named), named
    assert any("differs from the frozen release" in p.message for p in result.problems)


@pytest.fixture
def served_root(two_releases) -> Iterator[str]:
    repo, _ = two_releases
    handler = functools.partial(_QuietHandler, directory=str(repo.current))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@needs_apt_get
@pytest.mark.parametrize("dist, wanted, absent", [
    ("kern-1", {"hello": "1.0-1kern1", "gone": "1.0-1kern1"}, "new"),
    ("kern-2", {"hello": "2.0-1kern2", "new": "1.0-1kern2"}, "gone"),
    ("kern-dev", {"hello": "3.0-1kern3", "gone": "1.0-1kern1", "new": "1.0-1kern2"}, None),
])
def test_apt_installs_each_release_as_it_was(two_releases, served_root: str, tmp_path: Path,
                                             dist: str, wanted: dict, absent: str | None) -> None:
    repo, made = two_releases
    apt = AptClient(tmp_path / f"client-{dist}", repo.sources_line(
        served_root, str(repo.root / "kern-archive-keyring.gpg")).replace("kern-3", dist))
    update = apt("update")
    assert update.returncode == 0 and "W:" not in update.stderr, update.stdout + update.stderr
    for name, version in wanted.items():
        # No version given: apt picks the distribution's own (the newest it lists).
        got = apt("install", "--download-only", "-y", name)
        assert got.returncode == 0, got.stdout + got.stderr
        assert (apt.home / "cache/archives" / f"{name}_{version}_all.deb").is_file(), \
            sorted(p.name for p in (apt.home / "cache/archives").glob("*.deb"))
    if dist == "kern-1":
        downloaded = apt.home / "cache/archives/hello_1.0-1kern1_all.deb"
        assert downloaded.read_bytes() == made["hello1"].read_bytes()
    if absent:
        assert apt("install", "--download-only", "-y", absent).returncode != 0


def test_the_next_release_verifies_before_its_first_publish(tmp_path: Path,
                                                            key: SigningKey) -> None:
    """Right after a release the suite says kern-2, which nothing was published to yet:
    what is served (kern-dev, kern-1) verifies; the first publish adds kern-2."""
    debs = tmp_path / "debs"
    debs.mkdir()
    first = _repo(tmp_path / "repo", key, 1)
    first.publish([make_deb(debs, "hello", "1.0-1kern1")])
    first.freeze(first.packages())
    second = _repo(first.root, key, 2)
    result = second.verify()
    assert result.ok, result.problems
    assert result.distributions == ["kern-1", "kern-dev"]
    assert second.packages() == []
    second.publish([make_deb(debs, "hello", "1.0-1kern2")])
    assert second.distributions() == ["kern-1", "kern-2", "kern-dev"]
    assert second.verify().ok

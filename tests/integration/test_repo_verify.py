"""A tampered repository: apt in a clean container refuses it, and ``repo verify`` names
the file that was changed.

No recipe is built: two tiny .debs made with dpkg-deb are published by the real code,
and the repository is given to a container of the suite's base image as smoke tests
give it (bind-mounted read-only, ``file:`` sources line, the repository's keyring). The
container knows only that source, so apt needs no network and the test takes seconds
once the base image exists (about a minute to make it with mmdebstrap if not).
"""

from __future__ import annotations

import gzip
import lzma
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernbuild.build.environment import ensure_base
from kernbuild.recipe import load_suite
from kernbuild.repo import AptRepository, SigningKey
from kernbuild.runtime.docker import DockerSession
from kernbuild.smoke import KEYRING, REPO_MOUNT
from tests.integration.conftest import ROOT
from tests.unit.test_repo import _kill_agent, make_deb

pytestmark = pytest.mark.docker

DIST = "kern-test"
INDEX = f"dists/{DIST}/main/binary-amd64"
#: Only the kernbuild repository: the base image's own Debian sources are moved away.
APT_ONLY_KERN = "rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*.sources"


@pytest.fixture(scope="module")
def base_image(docker_engine, tmp_path_factory) -> str:
    """The suite's base image (made with mmdebstrap if the engine lacks it)."""
    settings = load_suite(ROOT / "recipes").settings
    tag, _ = ensure_base(docker_engine, settings, tmp_path_factory.mktemp("images"))
    return tag


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[AptRepository]:
    key = SigningKey.ensure(tmp_path / "gnupg")
    repo = AptRepository(tmp_path / "repo", DIST, key)
    debs = tmp_path / "debs"
    debs.mkdir()
    repo.publish([make_deb(debs, "kern-hello", "1.0", "hello\n"),
                  make_deb(debs, "kern-other", "1.0", "other\n")])
    assert repo.verify().ok
    yield repo
    _kill_agent(tmp_path / "gnupg")


@pytest.fixture
def client(docker_engine, base_image: str, repo: AptRepository) -> Iterator[DockerSession]:
    """A clean container of the base image that reads ``repo`` as smoke tests do."""
    with DockerSession(docker_engine, base_image,
                       volumes={str(repo.root.resolve()): {"bind": REPO_MOUNT, "mode": "ro"}},
                       labels={"kernbuild": "test-repo-verify"}) as session:
        session.put_files({
            KEYRING: (repo.root / "kern-archive-keyring.gpg").read_bytes(),
            "/etc/apt/sources.list.d/kern.list":
                (repo.sources_line(f"file:{REPO_MOUNT}/current", KEYRING) + "\n").encode()})
        assert session.exec(["sh", "-c", APT_ONLY_KERN]).ok
        yield session


def apt(session: DockerSession, *args: str):
    return session.exec(["apt-get", "-q", *args],
                        environment={"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"})


def problems(repo: AptRepository) -> dict[str, str]:
    return {p.path: p.message for p in repo.verify().problems}


@pytest.mark.parametrize("damage", ["changed", "truncated"])
def test_apt_refuses_a_tampered_deb_and_verify_names_it(
        repo: AptRepository, client: DockerSession, damage: str, figure) -> None:
    update = apt(client, "update")
    assert update.ok, update.output
    control = apt(client, "install", "-y", "kern-other")
    assert control.ok, control.output  # the repository, the key and the mount all work

    pool = "pool/main/k/kern-hello/kern-hello_1.0_all.deb"
    deb = repo.root / pool
    data = bytearray(deb.read_bytes())
    if damage == "changed":
        data[-30] ^= 0x01
    else:
        del data[-200:]
    deb.write_bytes(bytes(data))

    install = apt(client, "install", "-y", "kern-hello")
    assert not install.ok
    assert ("Hash Sum mismatch" in install.output
            or "File has unexpected size" in install.output), install.output
    assert pool in install.output, install.output
    found = problems(repo)
    assert list(found) == [pool], found
    said = "Hash Sum mismatch" if "Hash Sum" in install.output else "File has unexpected size"
    figure(f"{damage} .deb: apt refused it ({said}); verify: {pool}: {found[pool]}")


def test_apt_refuses_a_tampered_packages_index_and_verify_names_it(
        repo: AptRepository, client: DockerSession, figure) -> None:
    index = repo.current.resolve() / INDEX
    # A newer version slipped in, in every form of the index, as a replacement would be.
    text = (index / "Packages").read_bytes().replace(b"Version: 1.0", b"Version: 1.1", 1)
    (index / "Packages").write_bytes(text)
    (index / "Packages.gz").write_bytes(gzip.compress(text))
    (index / "Packages.xz").write_bytes(lzma.compress(text, format=lzma.FORMAT_XZ))

    update = apt(client, "update")
    assert "Hash Sum mismatch" in update.output or "File has unexpected size" in update.output, \
        update.output
    assert apt(client, "install", "-y", "kern-hello=1.1").exit_code != 0
    found = problems(repo)
    generation = f"generations/{repo.current_generation()}"
    assert {f"{generation}/{INDEX}/{name}" for name in ("Packages", "Packages.gz", "Packages.xz")
            } <= found.keys(), found
    figure(f"Packages: apt refused the update; verify named {len(found)} files: "
           + ", ".join(sorted(Path(p).name for p in found)))

"""The signed apt repository, tested for real: real .debs, real gpg, a real apt client.

Needs apt-ftparchive (apt-utils), gpg, gpgv and dpkg-deb; no Docker. The apt client tests
also need apt-get; they run it against a private configuration and a local HTTP server.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernbuild.errors import KernError
from kernbuild.repo import AptRepository, PackageRef, SigningKey
from kernbuild.repo import apt as apt_module

_TOOLS = {"apt-ftparchive": "apt-utils", "gpg": "gpg", "gpgv": "gpgv", "dpkg-deb": "dpkg"}
_MISSING = [f"{tool} ({pkg})" for tool, pkg in _TOOLS.items() if shutil.which(tool) is None]
pytestmark = pytest.mark.skipif(
    bool(_MISSING), reason=f"apt repository tests need {', '.join(_MISSING)} installed"
)
needs_apt_get = pytest.mark.skipif(
    shutil.which("apt-get") is None, reason="the apt client test needs apt-get"
)


# -- helpers ----------------------------------------------------------------------------------


def make_deb(
    out: Path,
    name: str,
    version: str,
    content: str = "hello\n",
    arch: str = "all",
    source: str | None = None,
) -> Path:
    """A tiny real .deb built with dpkg-deb, holding one file."""
    tag = hashlib.sha256(content.encode()).hexdigest()[:8]
    tree = out / f"tree-{name}-{version}-{tag}"
    (tree / "DEBIAN").mkdir(parents=True)
    control = [
        f"Package: {name}",
        *([f"Source: {source}"] if source else []),
        f"Version: {version}",
        f"Architecture: {arch}",
        "Maintainer: kernbuild tests <tests@localhost>",
        f"Description: test package {name}",
        " A package built by kernbuild's tests.",
    ]
    (tree / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
    (tree / "usr" / "share" / name).mkdir(parents=True)
    (tree / "usr" / "share" / name / "data.txt").write_text(content)
    deb = out / f"{name}_{version.split(':')[-1]}_{arch}-{tag}.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


def _kill_agent(home: Path) -> None:
    if shutil.which("gpgconf"):
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)


def test_a_home_too_deep_for_gpg_agents_sockets_still_signs(tmp_path: Path) -> None:
    """Past 107 bytes a socket path cannot be bound: the agent listens in gnupg's socket
    directory for that home instead (seen with a state under pytest-xdist's tree)."""
    home = tmp_path / ("deep" * 20) / "gnupg"
    assert len(f"{home}/S.gpg-agent.browser") > 107
    key = SigningKey.ensure(home)
    release = tmp_path / "Release"
    release.write_text("Origin: test\n")
    key.sign(release)
    assert b"BEGIN PGP SIGNATURE" in (tmp_path / "InRelease").read_bytes()
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)


@pytest.fixture(scope="session")
def key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningKey]:
    home = tmp_path_factory.mktemp("gnupg")
    yield SigningKey.ensure(home)
    _kill_agent(home)


@pytest.fixture(scope="session")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningKey]:
    home = tmp_path_factory.mktemp("gnupg-other")
    yield SigningKey.ensure(home, uid="someone else <else@localhost>")
    _kill_agent(home)


@pytest.fixture
def repo(tmp_path: Path, key: SigningKey) -> AptRepository:
    return AptRepository(tmp_path / "repo", "kern-test", key)


@pytest.fixture
def debs(tmp_path: Path) -> Path:
    out = tmp_path / "debs"
    out.mkdir()
    return out


def generation_dirs(repo: AptRepository) -> list[str]:
    return sorted(p.name for p in repo.generations.iterdir())


def gpgv_ok(repo: AptRepository, key: SigningKey, tmp_path: Path) -> bool:
    keyring = tmp_path / "verify-keyring.gpg"
    keyring.write_bytes(key.export_public(binary=True))
    dist = repo.current / "dists" / repo.distribution
    inrelease = subprocess.run(
        ["gpgv", "--keyring", str(keyring), str(dist / "InRelease")], capture_output=True
    )
    detached = subprocess.run(
        ["gpgv", "--keyring", str(keyring), str(dist / "Release.gpg"), str(dist / "Release")],
        capture_output=True,
    )
    return inrelease.returncode == 0 and detached.returncode == 0


# -- signing key --------------------------------------------------------------------------------


def test_key_is_created_once_and_reused(tmp_path: Path) -> None:
    home = tmp_path / "gnupg"
    try:
        first = SigningKey.ensure(home)
        assert home.stat().st_mode & 0o777 == 0o700
        assert len(first.fingerprint) == 40
        again = SigningKey.ensure(home)
        assert again.fingerprint == first.fingerprint
        chosen = SigningKey.ensure(home, fingerprint=first.fingerprint.lower())
        assert chosen.fingerprint == first.fingerprint
        assert first.export_public(binary=False).startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK")
        assert first.export_public(binary=True)[:1] != b"-"
    finally:
        _kill_agent(home)


def test_configured_key_missing_from_home_says_how_to_import(key: SigningKey) -> None:
    with pytest.raises(KernError) as err:
        SigningKey.ensure(key.gnupg_home, fingerprint="0" * 40)
    assert "0" * 40 in err.value.message
    assert "--import" in err.value.hint


# -- publishing ---------------------------------------------------------------------------------


def test_never_published_repository_is_empty(
    repo: AptRepository, key: SigningKey, tmp_path: Path
) -> None:
    assert repo.packages() == []
    assert repo.current_generation() is None
    assert not repo.has("hello", "1.0", "all")
    # Publishing nothing still gives a valid, signed, empty repository.
    assert repo.publish([]) == 1
    assert repo.packages() == []
    assert gpgv_ok(repo, key, tmp_path)
    assert repo.publish([]) == 1


def test_two_versions_are_both_listed_and_signed(
    repo: AptRepository, key: SigningKey, debs: Path, tmp_path: Path
) -> None:
    assert repo.publish([make_deb(debs, "hello", "1.0")]) == 1
    assert repo.publish([make_deb(debs, "hello", "2.0", "world\n")]) == 2

    assert os.readlink(repo.current) == "generations/2"
    assert repo.packages() == [
        PackageRef("hello", "1.0", "all", "pool/main/h/hello/hello_1.0_all.deb"),
        PackageRef("hello", "2.0", "all", "pool/main/h/hello/hello_2.0_all.deb"),
    ]
    assert repo.has("hello", "1.0", "all") and repo.has("hello", "2.0", "all")
    assert not repo.has("hello", "3.0", "all")
    for ref in repo.packages():
        assert (repo.current / ref.filename).is_file()

    dist = repo.current / "dists" / "kern-test"
    release = (dist / "Release").read_text()
    for field in ["Origin: kernbuild", "Label: kernbuild", "Suite: kern-test",
                  "Codename: kern-test", "Architectures: amd64", "Components: main", "Date:"]:
        assert field in release
    for index in ["Packages", "Packages.gz", "Packages.xz"]:
        assert f"main/binary-amd64/{index}" in release
    assert gpgv_ok(repo, key, tmp_path)

    # current/ is self-contained: keys and pool are inside it.
    assert (repo.current / "kern-archive-keyring.gpg").read_bytes() == key.export_public(True)
    assert (repo.current / "kern-archive-keyring.asc").is_file()
    assert (repo.root / "kern-archive-keyring.gpg").read_bytes() == key.export_public(True)
    assert os.readlink(repo.current / "pool") == "../../pool"


def test_republishing_identical_debs_is_a_no_op(repo: AptRepository, debs: Path) -> None:
    deb = make_deb(debs, "hello", "1.0")
    assert repo.publish([deb]) == 1
    copy = debs / "renamed.deb"
    shutil.copyfile(deb, copy)
    inrelease = (repo.current / "dists" / "kern-test" / "InRelease").read_bytes()
    assert repo.publish([deb, copy]) == 1
    assert generation_dirs(repo) == ["1"]
    assert (repo.current / "dists" / "kern-test" / "InRelease").read_bytes() == inrelease


def test_same_version_with_different_content_is_refused(
    repo: AptRepository, debs: Path
) -> None:
    repo.publish([make_deb(debs, "hello", "1.0", "original\n")])
    before = repo.packages()
    pool_file = repo.root / "pool/main/h/hello/hello_1.0_all.deb"
    pool_bytes = pool_file.read_bytes()
    fresh = make_deb(debs, "fresh", "1.0")

    with pytest.raises(KernError) as err:
        repo.publish([fresh, make_deb(debs, "hello", "1.0", "tampered\n")])
    assert "version already published with different content; bump the revision" in str(err.value)

    assert repo.packages() == before
    assert generation_dirs(repo) == ["1"]
    assert pool_file.read_bytes() == pool_bytes
    assert not (repo.root / "pool/main/f").exists()  # nothing of the batch was copied


def test_interrupted_publish_keeps_previous_generation(
    repo: AptRepository, key: SigningKey, debs: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    repo.publish([make_deb(debs, "hello", "1.0")])
    v2 = make_deb(debs, "hello", "2.0", "two\n")

    def interrupted(self: SigningKey, release: Path) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(SigningKey, "sign", interrupted)
        with pytest.raises(KeyboardInterrupt):
            repo.publish([v2])

    assert os.readlink(repo.current) == "generations/1"
    assert generation_dirs(repo) == ["1"]
    assert [r.version for r in repo.packages()] == ["1.0"]
    assert gpgv_ok(repo, key, tmp_path)

    # The .deb reached the pool; publishing it again completes the job.
    assert repo.publish([v2]) == 2
    assert [r.version for r in repo.packages()] == ["1.0", "2.0"]


def test_pool_layout_per_source_and_architecture_filter(
    tmp_path: Path, key: SigningKey, debs: Path
) -> None:
    repo = AptRepository(tmp_path / "repo", "kern-test", key, architectures=("amd64", "arm64"))
    repo.publish([
        make_deb(debs, "libfoo1", "1:1.2-1kern1", arch="amd64", source="libfoo (1.2-1kern1)"),
        make_deb(debs, "python3-bar", "0.1-1", arch="arm64", source="bar"),
        make_deb(debs, "baz", "3.0"),
    ])
    by_name = {r.name: r for r in repo.packages()}
    assert by_name["libfoo1"].filename == "pool/main/libf/libfoo/libfoo1_1.2-1kern1_amd64.deb"
    assert by_name["libfoo1"].version == "1:1.2-1kern1"
    assert by_name["python3-bar"].filename == "pool/main/b/bar/python3-bar_0.1-1_arm64.deb"
    assert by_name["baz"].filename == "pool/main/b/baz/baz_3.0_all.deb"

    binary = repo.current / "dists" / "kern-test" / "main"
    amd64 = (binary / "binary-amd64" / "Packages").read_text()
    arm64 = (binary / "binary-arm64" / "Packages").read_text()
    assert "libfoo1" in amd64 and "python3-bar" not in amd64 and "baz" in amd64
    assert "python3-bar" in arm64 and "libfoo1" not in arm64 and "baz" in arm64

    with pytest.raises(KernError) as err:
        repo.publish([make_deb(debs, "qux", "1.0", arch="riscv64")])
    assert "riscv64" in err.value.hint


def test_old_generations_are_pruned(
    repo: AptRepository, debs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apt_module, "GENERATIONS_KEPT", 3)
    for minor in range(5):
        repo.publish([make_deb(debs, "hello", f"1.{minor}", str(minor))])
    assert generation_dirs(repo) == ["3", "4", "5"]
    assert len(repo.packages()) == 5


def test_concurrent_publishes_do_not_interleave(repo: AptRepository, debs: Path) -> None:
    batches = [[make_deb(debs, f"pkg{i}", "1.0")] for i in range(4)]
    errors: list[BaseException] = []

    def publish(batch: list[Path]) -> None:
        try:
            AptRepository(repo.root, repo.distribution, repo.key).publish(batch)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert generation_dirs(repo) == ["1", "2", "3", "4"]
    assert sorted(r.name for r in repo.packages()) == ["pkg0", "pkg1", "pkg2", "pkg3"]


def test_missing_tool_names_the_debian_package(
    repo: AptRepository, debs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        apt_module.shutil, "which",
        lambda tool, *a, **k: None if tool == "apt-ftparchive" else real_which(tool, *a, **k),
    )
    with pytest.raises(KernError) as err:
        repo.publish([make_deb(debs, "hello", "1.0")])
    assert "apt-ftparchive" in err.value.message
    assert "apt-utils" in err.value.hint


def test_sources_line(repo: AptRepository) -> None:
    assert repo.sources_line("http://repo.example/kern", "/usr/share/keyrings/k.gpg") == (
        "deb [signed-by=/usr/share/keyrings/k.gpg] http://repo.example/kern kern-test main"
    )


# -- a real apt client --------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(repo: AptRepository) -> Iterator[str]:
    """``repo.current`` served over HTTP on localhost, as a client would reach it."""
    handler = functools.partial(_QuietHandler, directory=str(repo.current))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class AptClient:
    """apt-get with a private configuration: its own sources, lists, cache and dpkg status."""

    def __init__(self, home: Path, sources_line: str) -> None:
        self.home = home
        empty = home / "empty.d"
        for d in [empty, home / "state/lists/partial", home / "cache/archives/partial",
                  home / "downloads"]:
            d.mkdir(parents=True)
        (home / "sources.list").write_text(sources_line + "\n")
        (home / "status").write_text("")
        self.options = [
            f"Dir::Etc::SourceList={home / 'sources.list'}",
            f"Dir::Etc::SourceParts={empty}",
            f"Dir::Etc::TrustedParts={empty}",
            f"Dir::Etc::Trusted={home / 'no-trusted.gpg'}",
            f"Dir::Etc::PreferencesParts={empty}",
            f"Dir::State={home / 'state'}",
            f"Dir::State::status={home / 'status'}",
            f"Dir::Cache={home / 'cache'}",
            "Debug::NoLocking=1",
            "APT::Sandbox::User=root",
            "Acquire::http::Proxy::127.0.0.1=DIRECT",
            "Acquire::Retries=0",
        ]

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = ["apt-get"]
        for option in self.options:
            cmd += ["-o", option]
        return subprocess.run([*cmd, *args], cwd=self.home / "downloads",
                              capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})


@needs_apt_get
def test_apt_accepts_the_signature_and_installs_both_versions(
    repo: AptRepository, debs: Path, tmp_path: Path, served: str
) -> None:
    v1 = make_deb(debs, "hello", "1.0", "one\n")
    v2 = make_deb(debs, "hello", "2.0", "two\n")
    repo.publish([v1])
    repo.publish([v2])

    apt = AptClient(tmp_path / "client", repo.sources_line(
        served, str(repo.root / "kern-archive-keyring.gpg")))
    update = apt("update")
    assert update.returncode == 0, update.stdout + update.stderr
    assert "W:" not in update.stderr and "E:" not in update.stderr, update.stderr

    for version, original in [("1.0", v1), ("2.0", v2)]:
        got = apt("download", f"hello={version}")
        assert got.returncode == 0, got.stdout + got.stderr
        downloaded = apt.home / "downloads" / f"hello_{version}_all.deb"
        assert downloaded.read_bytes() == original.read_bytes()

    install = apt("install", "--download-only", "-y", "hello=1.0")
    assert install.returncode == 0, install.stdout + install.stderr
    assert (apt.home / "cache/archives/hello_1.0_all.deb").is_file()


@needs_apt_get
def test_apt_refuses_a_repository_signed_by_another_key(
    repo: AptRepository, other_key: SigningKey, debs: Path, tmp_path: Path, served: str
) -> None:
    repo.publish([make_deb(debs, "hello", "1.0")])
    wrong = tmp_path / "wrong-keyring.gpg"
    wrong.write_bytes(other_key.export_public(binary=True))

    apt = AptClient(tmp_path / "client", repo.sources_line(served, str(wrong)))
    update = apt("update")
    output = update.stdout + update.stderr
    assert update.returncode != 0, output
    assert "NO_PUBKEY" in output or "not signed" in output, output
    assert apt("download", "hello=1.0").returncode != 0

"""Fetching, verifying and caching sources: kernbuild.sources.

No test touches the real network: remote sources are served by a local HTTP
server on 127.0.0.1, git sources come from a repository made in tmp_path.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import tarfile
import textwrap
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest
import yaml

from kernbuild import __version__
from kernbuild.errors import KernError
from kernbuild.recipe import Recipe, load_recipe
from kernbuild.recipe.schema import SOURCE_KINDS
from kernbuild.sources import FetchedSource, SourceCache, extract_archive, tree_hash
from kernbuild.sources import cache as cache_module
from kernbuild.sources.cache import KINDS
from kernbuild.sources.http import NetLimits
from kernbuild.sources.kind import SourceKind, SourceLocation
from tests.localhttp import serving

# --- fixtures and helpers -------------------------------------------------------------


@dataclass
class Served:
    """A local HTTP server over ``root``; ``requests`` logs (path, User-Agent)."""

    url: str
    root: Path
    requests: list[tuple[str, str | None]] = field(default_factory=list)

    def put(self, relative: str, data: bytes) -> str:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return f"{self.url}/{relative}"


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy from the environment would swallow requests meant for 127.0.0.1.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # Transient failures are retried after BACKOFF seconds, then twice that: keep the
    # suite fast (test_source_faults.py counts the retries themselves).
    monkeypatch.setattr(cache_module, "NetLimits", functools.partial(NetLimits, backoff=0.01))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Served]:
    root = tmp_path / "www"
    root.mkdir()
    served = Served("", root)

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            served.requests.append((self.path, self.headers.get("User-Agent")))
            super().do_GET()

        def log_message(self, *args) -> None:
            pass

    with serving(Handler) as served.url:
        yield served


def write_recipe(tmp_path: Path, source: dict, name: str = "demo",
                 version: str = "1.0") -> Recipe:
    document = {
        "name": name, "version": version, "summary": "a demo", "description": "A demo.",
        "license": "MIT", "source": source, "build": {"system": "none"},
        "packages": {name: {}},
    }
    path = tmp_path / "recipes" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_recipe(path)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_tar(entries: dict[str, bytes | str | tarfile.TarInfo], mode: str = "w:gz") -> bytes:
    """A tar archive: bytes are files (names ending in .sh are executable),
    strings starting with '->' are symlinks, TarInfo is added as it is."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, value in entries.items():
            if isinstance(value, tarfile.TarInfo):
                tar.addfile(value)
            elif isinstance(value, str):
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.SYMTYPE, value[2:]
                tar.addfile(info)
            else:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(value), 0o755 if name.endswith(".sh") else 0o644
                tar.addfile(info, io.BytesIO(value))
    return buffer.getvalue()


def make_zip(entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (0o100755 if name.endswith(".sh") else 0o100644) << 16
            zf.writestr(info, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buffer.getvalue()


RELEASE = {"demo-1.0/setup.py": b"print('setup')\n", "demo-1.0/run.sh": b"#!/bin/sh\n",
           "demo-1.0/python/demo.py": b"X = 1\n"}


def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every network access fail loudly."""

    def no_network(self, url, recipe):
        raise AssertionError(f"network used: {url}")

    monkeypatch.setattr(SourceCache, "_open", no_network)


def trees(cache: Path) -> list[str]:
    """The names in the cache's trees/ directory (none if it was never made)."""
    return sorted(p.name for p in (cache / "trees").iterdir()) if (cache / "trees").exists() \
        else []


def leftovers(root: Path) -> list[str]:
    """Temporary files or directories left anywhere in the cache."""
    return [str(p) for p in root.rglob(".tmp-*")]


# --- url ----------------------------------------------------------------------------------


def test_url_fetch_is_verified_unpacked_and_cached(tmp_path: Path, server: Served) -> None:
    archive = make_tar(RELEASE)
    url = server.put("demo-1.0.tar.gz", archive)
    recipe = write_recipe(tmp_path, {"url": url, "sha256": sha256(archive)})
    cache = SourceCache(tmp_path / "cache")

    fetched = cache.fetch(recipe)

    assert isinstance(fetched, FetchedSource)
    assert fetched.sha256 == sha256(archive) == cache.key(recipe)
    assert fetched.tree == tmp_path / "cache" / "trees" / sha256(archive)  # top dir stripped
    assert (fetched.tree / "setup.py").read_bytes() == b"print('setup')\n"
    assert os.access(fetched.tree / "run.sh", os.X_OK)
    assert not os.access(fetched.tree / "setup.py", os.X_OK)
    assert fetched.files == (tmp_path / "cache" / "blobs" / sha256(archive),)
    assert fetched.files[0].read_bytes() == archive
    assert server.requests == [("/demo-1.0.tar.gz", f"kernbuild/{__version__}")]
    assert leftovers(tmp_path / "cache") == []


def test_second_fetch_uses_no_network(tmp_path: Path, server: Served,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_tar(RELEASE)
    url = server.put("demo-1.0.tar.gz", archive)
    recipe = write_recipe(tmp_path, {"url": url, "sha256": sha256(archive)})
    first = SourceCache(tmp_path / "cache").fetch(recipe)

    offline(monkeypatch)
    again = SourceCache(tmp_path / "cache").fetch(recipe)

    assert again == first
    assert len(server.requests) == 1


def test_tree_is_rebuilt_from_cached_blob_without_network(
        tmp_path: Path, server: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = make_tar(RELEASE)
    recipe = write_recipe(tmp_path, {"url": server.put("d.tgz", archive),
                                     "sha256": sha256(archive)})
    cache = SourceCache(tmp_path / "cache")
    shutil.rmtree(cache.fetch(recipe).tree)

    offline(monkeypatch)
    assert (cache.fetch(recipe).tree / "setup.py").is_file()


def test_key_needs_no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    offline(monkeypatch)
    recipe = write_recipe(tmp_path, {"url": "https://example.invalid/x.tar.gz",
                                     "sha256": "a" * 64})
    assert SourceCache(tmp_path / "cache").key(recipe) == "a" * 64
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("suffix, mode", [("tar", "w"), ("tar.gz", "w:gz"), ("tgz", "w:gz"),
                                          ("tar.xz", "w:xz"), ("tar.bz2", "w:bz2"),
                                          ("zip", None)])
def test_archive_formats(tmp_path: Path, server: Served, suffix: str, mode: str | None) -> None:
    archive = make_zip(RELEASE) if mode is None else make_tar(RELEASE, mode)
    url = server.put(f"demo-1.0.{suffix}", archive)
    recipe = write_recipe(tmp_path, {"url": url, "sha256": sha256(archive)})

    tree = SourceCache(tmp_path / "cache").fetch(recipe).tree

    assert sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()) \
        == ["python/demo.py", "run.sh", "setup.py"]
    assert os.access(tree / "run.sh", os.X_OK)


def test_archive_without_single_top_directory_is_kept_whole(tmp_path: Path,
                                                           server: Served) -> None:
    archive = make_tar({"a.txt": b"a", "b/c.txt": b"c"})
    recipe = write_recipe(tmp_path, {"url": server.put("flat.tar.gz", archive),
                                     "sha256": sha256(archive)})
    tree = SourceCache(tmp_path / "cache").fetch(recipe).tree
    assert (tree / "a.txt").is_file() and (tree / "b" / "c.txt").is_file()


def test_subdir_is_applied(tmp_path: Path, server: Served) -> None:
    archive = make_tar(RELEASE)
    url = server.put("demo-1.0.tar.gz", archive)
    recipe = write_recipe(tmp_path, {"url": url, "sha256": sha256(archive),
                                     "subdir": "python"})
    fetched = SourceCache(tmp_path / "cache").fetch(recipe)
    assert fetched.tree == tmp_path / "cache" / "trees" / sha256(archive) / "python"
    assert (fetched.tree / "demo.py").is_file()

    missing = write_recipe(tmp_path, {"url": url, "sha256": sha256(archive),
                                      "subdir": "nope"}, name="other")
    with pytest.raises(KernError, match="subdir 'nope'") as caught:
        SourceCache(tmp_path / "cache").fetch(missing)
    assert "python" in caught.value.hint


def test_not_an_archive_is_refused(tmp_path: Path, server: Served) -> None:
    data = b"just some text\n" * 50
    recipe = write_recipe(tmp_path, {"url": server.put("notes.txt", data),
                                     "sha256": sha256(data)})
    with pytest.raises(KernError, match="not an archive"):
        SourceCache(tmp_path / "cache").fetch(recipe)
    assert trees(tmp_path / "cache") == []


def test_progress_is_reported(tmp_path: Path, server: Served) -> None:
    archive = os.urandom(600_000)  # several chunks; content never gets unpacked
    archive = make_tar({"big/blob.bin": archive})
    recipe = write_recipe(tmp_path, {"url": server.put("big-1.0.tar.gz", archive),
                                     "sha256": sha256(archive)})
    calls: list[tuple[str, int, int | None]] = []

    SourceCache(tmp_path / "cache", progress=lambda *a: calls.append(a)).fetch(recipe)

    assert calls[0] == ("big-1.0.tar.gz", 0, len(archive))
    assert calls[-1] == ("big-1.0.tar.gz", len(archive), len(archive))
    assert [done for _, done, _ in calls] == sorted(done for _, done, _ in calls)
    assert len(calls) > 2


# --- checksum mismatch ---------------------------------------------------------------------


def test_checksum_mismatch_is_refused_and_cache_kept(tmp_path: Path, server: Served) -> None:
    good = make_tar(RELEASE)
    good_recipe = write_recipe(tmp_path, {"url": server.put("demo-1.0.tar.gz", good),
                                          "sha256": sha256(good)})
    cache = SourceCache(tmp_path / "cache")
    good_tree = cache.fetch(good_recipe).tree

    genuine = make_tar({"other-2.0/x.py": b"genuine"})
    tampered = make_tar({"other-2.0/x.py": b"evil"})
    bad_recipe = write_recipe(tmp_path, {"url": server.put("other-2.0.tar.gz", tampered),
                                         "sha256": sha256(genuine)}, name="other")
    with pytest.raises(KernError) as caught:
        cache.fetch(bad_recipe)

    error = caught.value
    assert sha256(genuine) in error.message and sha256(tampered) in error.message
    assert f"{server.url}/other-2.0.tar.gz" in error.message
    assert str(bad_recipe.path) in error.message
    assert f"update sha256 in {bad_recipe.path}" in error.hint
    assert "tampered" in error.hint
    # Nothing of the bad download remains; the good source is untouched.
    blobs = tmp_path / "cache" / "blobs"
    assert sorted(p.name for p in blobs.iterdir()) == [sha256(good)]
    assert (blobs / sha256(good)).read_bytes() == good
    assert trees(tmp_path / "cache") == [sha256(good)]
    assert (good_tree / "setup.py").read_bytes() == b"print('setup')\n"
    assert leftovers(tmp_path / "cache") == []


# --- safe extraction -----------------------------------------------------------------------


def _hardlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info


def _device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info


EVIL_TARS = {
    "dotdot": ({"pkg/ok.txt": b"ok", "pkg/../../evil": b"x"}, "pkg/../../evil"),
    "absolute": ({"pkg/ok.txt": b"ok", "/tmp/kernbuild-evil": b"x"}, "/tmp/kernbuild-evil"),
    "symlink-absolute": ({"pkg/ok.txt": b"ok", "pkg/passwd": "->/etc/passwd"}, "pkg/passwd"),
    "symlink-relative": ({"pkg/ok.txt": b"ok", "pkg/up": "->../../.."}, "pkg/up"),
    # Inside the archive, but outside the tree once the top directory is stripped.
    "symlink-after-strip": ({"pkg/ok.txt": b"ok", "pkg/up": "->.."}, "up"),
    "hardlink": ({"pkg/ok.txt": b"ok", "pkg/h": _hardlink("pkg/h", "../outside")}, "pkg/h"),
    "device": ({"pkg/ok.txt": b"ok", "pkg/null": _device("pkg/null")}, "pkg/null"),
}


@pytest.mark.parametrize("case", sorted(EVIL_TARS))
def test_unsafe_tar_is_refused(tmp_path: Path, case: str) -> None:
    entries, member = EVIL_TARS[case]
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(make_tar(entries))
    recipe = write_recipe(tmp_path, {"path": str(archive)})

    with pytest.raises(KernError) as caught:
        SourceCache(tmp_path / "cache").fetch(recipe)

    assert "refusing to unpack" in caught.value.message
    assert str(archive) in caught.value.message
    assert repr(member) in caught.value.message
    assert trees(tmp_path / "cache") == []
    assert not (tmp_path / "evil").exists() and not Path("/tmp/kernbuild-evil").exists()


@pytest.mark.parametrize("entries, symlinks, member", [
    ({"pkg/ok.txt": b"ok", "../evil": b"x"}, {}, "../evil"),
    ({"pkg/ok.txt": b"ok", "pkg/../../evil": b"x"}, {}, "pkg/../../evil"),
    ({"pkg/ok.txt": b"ok", "/tmp/kernbuild-evil": b"x"}, {}, "/tmp/kernbuild-evil"),
    ({"pkg/ok.txt": b"ok"}, {"pkg/up": "../../etc"}, "pkg/up"),
    ({"pkg/ok.txt": b"ok"}, {"pkg/abs": "/etc"}, "pkg/abs"),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink-relative", "symlink-absolute"])
def test_unsafe_zip_is_refused(tmp_path: Path, server: Served, entries: dict,
                               symlinks: dict, member: str) -> None:
    archive = make_zip(entries, symlinks)
    url = server.put("evil.zip", archive)
    recipe = write_recipe(tmp_path, {"url": url, "sha256": sha256(archive)})

    with pytest.raises(KernError) as caught:
        SourceCache(tmp_path / "cache").fetch(recipe)

    assert url in caught.value.message and repr(member) in caught.value.message
    assert trees(tmp_path / "cache") == []
    assert not (tmp_path / "evil").exists() and not Path("/tmp/kernbuild-evil").exists()


def test_zip_symlink_inside_tree_is_kept(tmp_path: Path) -> None:
    archive = tmp_path / "ok.zip"
    archive.write_bytes(make_zip({"pkg/lib/real.txt": b"r"}, {"pkg/link": "lib/real.txt"}))
    tree = extract_archive(archive, tmp_path / "out")
    assert tree == tmp_path / "out" / "pkg"
    assert os.readlink(tree / "link") == "lib/real.txt"
    assert (tree / "link").read_bytes() == b"r"


# --- path --------------------------------------------------------------------------------


def test_path_directory_is_copied_with_a_stable_tree_hash(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "mod.py").write_text("X = 1\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    (src / "link").symlink_to("pkg/mod.py")
    recipe = write_recipe(tmp_path, {"path": "../src"})  # relative to the recipe file
    cache = SourceCache(tmp_path / "cache")

    key = cache.key(recipe)
    fetched = cache.fetch(recipe)

    assert key == fetched.sha256 == tree_hash(src) == tree_hash(fetched.tree)
    assert fetched.tree == tmp_path / "cache" / "trees" / key
    assert fetched.files == ()
    assert (fetched.tree / "pkg" / "mod.py").read_text() == "X = 1\n"
    assert os.readlink(fetched.tree / "link") == "pkg/mod.py"
    assert os.access(fetched.tree / "run.sh", os.X_OK)

    os.utime(src / "pkg" / "mod.py", (0, 0))  # mtimes do not count
    assert cache.key(recipe) == key

    (src / "pkg" / "mod.py").write_text("X = 2\n")
    changed = cache.key(recipe)
    assert changed != key
    assert (cache.fetch(recipe).tree / "pkg" / "mod.py").read_text() == "X = 2\n"
    assert (fetched.tree / "pkg" / "mod.py").read_text() == "X = 1\n"  # old tree untouched


@pytest.mark.parametrize("change", ["exec-bit", "symlink-target", "rename", "new-file"])
def test_tree_hash_sees_every_kind_of_change(tmp_path: Path, change: str) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_text("a")
    (tmp_path / "d" / "b").write_text("b")
    (tmp_path / "d" / "l").symlink_to("a")
    before = tree_hash(tmp_path / "d")
    if change == "exec-bit":
        (tmp_path / "d" / "a").chmod(0o755)
    elif change == "symlink-target":
        (tmp_path / "d" / "l").unlink()
        (tmp_path / "d" / "l").symlink_to("b")
    elif change == "rename":
        (tmp_path / "d" / "b").rename(tmp_path / "d" / "c")
    else:
        (tmp_path / "d" / "e").mkdir()
        (tmp_path / "d" / "e" / "f").write_text("")
    assert tree_hash(tmp_path / "d") != before


def test_tree_hash_does_not_depend_on_location(tmp_path: Path) -> None:
    for where in ("one", "two/deeper"):
        (tmp_path / where / "x").mkdir(parents=True)
        (tmp_path / where / "x" / "f").write_text("same")
    assert tree_hash(tmp_path / "one") == tree_hash(tmp_path / "two" / "deeper")


def test_path_source_ignores_dot_git(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / ".git").mkdir(parents=True)
    (src / ".git" / "index").write_text("1")
    (src / "a.py").write_text("a")
    recipe = write_recipe(tmp_path, {"path": str(src)})
    cache = SourceCache(tmp_path / "cache")
    key = cache.key(recipe)
    (src / ".git" / "index").write_text("2")
    assert cache.key(recipe) == key
    assert not (cache.fetch(recipe).tree / ".git").exists()


def test_path_archive_is_unpacked(tmp_path: Path) -> None:
    archive = tmp_path / "demo-1.0.tar.gz"
    archive.write_bytes(make_tar(RELEASE))
    recipe = write_recipe(tmp_path, {"path": str(archive)})
    cache = SourceCache(tmp_path / "cache")
    fetched = cache.fetch(recipe)
    assert fetched.sha256 == cache.key(recipe) == sha256(archive.read_bytes())
    assert (fetched.tree / "setup.py").is_file() and fetched.files == ()


def test_missing_path_is_a_kern_error(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, {"path": "../nowhere"})
    with pytest.raises(KernError, match="does not exist"):
        SourceCache(tmp_path / "cache").key(recipe)


# --- git ---------------------------------------------------------------------------------


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org",
                           *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    """A local repository with two commits: (path, first commit, second commit)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "upstream"
    repo.mkdir()
    _git(repo, "init", "--quiet")
    (repo / "version.txt").write_text("1\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "--quiet", "-m", "one")
    first = _git(repo, "rev-parse", "HEAD")
    (repo / "version.txt").write_text("2\n")
    (repo / "new.txt").write_text("new\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "--quiet", "-m", "two")
    return repo, first, _git(repo, "rev-parse", "HEAD")


def test_git_source_at_a_commit(tmp_path: Path, repo: tuple[Path, str, str]) -> None:
    path, first, _ = repo
    recipe = write_recipe(tmp_path, {"git": str(path), "commit": first})
    cache = SourceCache(tmp_path / "cache")

    fetched = cache.fetch(recipe)

    assert cache.key(recipe) == first
    assert fetched.tree == tmp_path / "cache" / "trees" / first
    assert (fetched.tree / "version.txt").read_text() == "1\n"
    assert not (fetched.tree / "new.txt").exists()
    assert not (fetched.tree / ".git").exists()
    assert fetched.sha256 == tree_hash(fetched.tree) and fetched.files == ()
    assert cache.fetch(recipe) == fetched  # from the cache


def test_git_source_by_file_url(tmp_path: Path, repo: tuple[Path, str, str]) -> None:
    path, _, second = repo
    recipe = write_recipe(tmp_path, {"git": path.as_uri(), "commit": second})
    tree = SourceCache(tmp_path / "cache").fetch(recipe).tree
    assert (tree / "new.txt").read_text() == "new\n"


def test_git_wrong_commit_is_refused(tmp_path: Path, repo: tuple[Path, str, str]) -> None:
    path, _, _ = repo
    wrong = "0123456789abcdef0123456789abcdef01234567"
    recipe = write_recipe(tmp_path, {"git": str(path), "commit": wrong})
    with pytest.raises(KernError) as caught:
        SourceCache(tmp_path / "cache").fetch(recipe)
    assert wrong in caught.value.message and str(path) in caught.value.message
    assert str(recipe.path) in caught.value.hint
    assert trees(tmp_path / "cache") == []


def test_git_missing_repository_is_refused(tmp_path: Path,
                                           repo: tuple[Path, str, str]) -> None:
    recipe = write_recipe(tmp_path, {"git": str(tmp_path / "no-repo"), "commit": repo[1]})
    with pytest.raises(KernError, match="cannot clone"):
        SourceCache(tmp_path / "cache").fetch(recipe)


# --- source mirrors ------------------------------------------------------------------------

COMMIT = "934efe7a05ed85e921fbd94b365bfb87c7b050cb"
UNREACHABLE = "https://github.invalid/lofar-astron/Prefactor.git"  # as GitHub is from here


def mirror_with(tmp_path: Path, name: str, data: bytes) -> Path:
    mirror = tmp_path / "mirror"
    mirror.mkdir(exist_ok=True)
    (mirror / name).write_bytes(data)
    return mirror


def test_git_source_from_a_mirror_without_the_network(tmp_path: Path) -> None:
    archive = make_tar({"prefactor-3.2/setup.py": b"# prefactor\n"})
    mirror = mirror_with(tmp_path, f"prefactor-{COMMIT}.tar.gz", archive)
    recipe = write_recipe(tmp_path, {"git": UNREACHABLE, "commit": COMMIT,
                                     "sha256": sha256(archive)}, name="prefactor")
    cache = SourceCache(tmp_path / "cache", source_mirrors=(mirror,))

    fetched = cache.fetch(recipe)

    assert (fetched.tree / "setup.py").read_bytes() == b"# prefactor\n"
    assert fetched.sha256 == sha256(archive) == cache.key(recipe)
    assert (tmp_path / "cache" / "blobs" / sha256(archive)).read_bytes() == archive
    shutil.rmtree(mirror)  # now served from the cache
    assert SourceCache(tmp_path / "cache").fetch(recipe) == fetched


def test_url_source_from_a_mirror_by_file_name(tmp_path: Path) -> None:
    archive = make_tar(RELEASE)
    mirror = mirror_with(tmp_path, "demo-1.0.tar.gz", archive)
    recipe = write_recipe(tmp_path, {"url": "http://127.0.0.1:9/dl/demo-1.0.tar.gz",
                                     "sha256": sha256(archive)})
    fetched = SourceCache(tmp_path / "cache", source_mirrors=(mirror,)).fetch(recipe)
    assert fetched.sha256 == sha256(archive)


def test_a_tampered_mirror_file_is_refused(tmp_path: Path) -> None:
    archive = make_tar({"prefactor-3.2/setup.py": b"# prefactor\n"})
    tampered = bytearray(archive)
    tampered[len(tampered) // 2] ^= 0x01  # one byte changed
    mirror = mirror_with(tmp_path, f"prefactor-{COMMIT}.tar.gz", bytes(tampered))
    recipe = write_recipe(tmp_path, {"git": UNREACHABLE, "commit": COMMIT,
                                     "sha256": sha256(archive)}, name="prefactor")
    with pytest.raises(KernError) as caught:
        SourceCache(tmp_path / "cache", source_mirrors=(mirror,)).fetch(recipe)
    message = caught.value.message
    assert "sha256 mismatch" in message and f"prefactor-{COMMIT}.tar.gz" in message
    assert sha256(archive) in message and sha256(bytes(tampered)) in message
    assert "source mirror" in caught.value.hint
    assert not (tmp_path / "cache" / "blobs").exists() or \
        list((tmp_path / "cache" / "blobs").iterdir()) == []
    assert trees(tmp_path / "cache") == [] and leftovers(tmp_path / "cache") == []


@pytest.mark.parametrize("with_mirror", [False, True])
def test_a_source_in_no_mirror_says_how_to_supply_it(tmp_path: Path, with_mirror: bool) -> None:
    mirrors = (mirror_with(tmp_path, "unrelated.tar.gz", b"x"),) if with_mirror else ()
    recipe = write_recipe(tmp_path, {"git": UNREACHABLE, "commit": COMMIT,
                                     "sha256": "a" * 64}, name="prefactor", version="3.2")
    with pytest.raises(KernError) as caught:
        SourceCache(tmp_path / "cache", source_mirrors=mirrors).fetch(recipe)
    message, hint = caught.value.message, caught.value.hint
    assert UNREACHABLE in message and f"Prefactor-{COMMIT}.tar.gz" in message
    assert (str(mirrors[0]) if with_mirror else "none is configured") in message
    assert f"git archive --format=tar --prefix=Prefactor-3.2/ {COMMIT}" in hint
    assert "--source-mirror" in hint and "KERNBUILD_SOURCE_MIRROR" in hint
    assert trees(tmp_path / "cache") == []


def test_the_mirror_file_may_carry_the_lower_case_or_recipe_name(tmp_path: Path) -> None:
    archive = make_tar({"x-1/a": b"a"})
    mirror = mirror_with(tmp_path, f"prefactor-{COMMIT}.tar.gz", archive)  # repo: Prefactor
    recipe = write_recipe(tmp_path, {"git": UNREACHABLE, "commit": COMMIT,
                                     "sha256": sha256(archive)}, name="lofar-prefactor")
    assert SourceCache(tmp_path / "cache", source_mirrors=(mirror,)).fetch(recipe).sha256 \
        == sha256(archive)


def test_source_mirrors_come_from_the_workspace_then_the_suite(tmp_path: Path) -> None:
    from kernbuild.recipe.model import SuiteSettings
    from kernbuild.workspace import Workspace

    ws = Workspace(tmp_path / "recipes", tmp_path / "state", (tmp_path / "cli",))
    settings = SuiteSettings.from_dict({"source_mirrors": ["../../shared/sources"]})
    cache = SourceCache.for_workspace(ws, settings)
    assert cache.source_mirrors == (tmp_path / "cli",
                                    tmp_path / "recipes" / "../../shared/sources")
    # Where verified sources are found is not a build input.
    assert settings.build_inputs() == SuiteSettings().build_inputs()


# --- debian ------------------------------------------------------------------------------


@dataclass
class FakeDebianSource:
    recipe: Recipe
    pool: Path  # the package's directory in the served pool
    files: dict[str, bytes]  # name -> content, as listed in the .dsc


def publish_debian_source(tmp_path: Path, server: Served, src: str = "foo",
                          area: str = "main") -> FakeDebianSource:
    orig = make_tar({f"{src}-1.0/src/main.c": b"int main(void) { return 0; }\n",
                     f"{src}-1.0/docs/.keep": b""})
    component = make_tar({"extra-0.3/extra.py": b"E = 1\n"})
    debian = make_tar({"debian/control": b"Source: " + src.encode() + b"\n"}, "w:xz")
    files = {f"{src}_1.0.orig.tar.gz": orig, f"{src}_1.0.orig-extra.tar.gz": component,
             f"{src}_1.0-1.debian.tar.xz": debian}
    listing = "\n".join(f" {sha256(data)} {len(data)} {name}" for name, data in files.items())
    dsc = textwrap.dedent(f"""\
        Format: 3.0 (quilt)
        Source: {src}
        Version: 1:1.0-1
        Checksums-Sha256:
        """).encode() + listing.encode() + b"\n"
    prefix = src[:4] if src.startswith("lib") else src[0]
    pool = server.root / "debian" / "pool" / area / prefix / src
    pool.mkdir(parents=True)
    for name, data in {**files, f"{src}_1.0-1.dsc": dsc}.items():
        (pool / name).write_bytes(data)
    recipe = write_recipe(tmp_path, {"debian": src, "version": "1:1.0-1",
                                     "sha256": sha256(dsc)}, name=src)
    return FakeDebianSource(recipe, pool, files)


@pytest.mark.parametrize("src", ["foo", "libfoo"])
def test_debian_source(tmp_path: Path, server: Served, src: str,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    fake = publish_debian_source(tmp_path, server, src)
    cache = SourceCache(tmp_path / "cache", mirror=f"{server.url}/debian")

    fetched = cache.fetch(fake.recipe)

    assert fetched.sha256 == cache.key(fake.recipe) == fake.recipe.source.sha256
    prefix = "libf" if src == "libfoo" else "f"
    assert (f"/debian/pool/main/{prefix}/{src}/{src}_1.0-1.dsc",
            f"kernbuild/{__version__}") == server.requests[0]  # epoch dropped
    # The upstream tree: the orig tarball, its component in extra/, no debian/.
    assert (fetched.tree / "src" / "main.c").is_file()
    assert (fetched.tree / "extra" / "extra.py").read_text() == "E = 1\n"
    assert not (fetched.tree / "debian").exists()
    assert fetched.files[0].read_bytes() == (fake.pool / f"{src}_1.0-1.dsc").read_bytes()
    # Only the upstream tarballs: kernbuild renders its own debian/.
    assert sorted(p.name for p in fetched.files[1:]) == sorted(
        sha256(data) for name, data in fake.files.items() if ".orig" in name)

    offline(monkeypatch)
    assert SourceCache(tmp_path / "cache", mirror=f"{server.url}/debian").fetch(
        fake.recipe) == fetched


@pytest.fixture(scope="module")
def archive_key(tmp_path_factory: pytest.TempPathFactory):
    """A key that plays Debian's archive key, and one that does not."""
    from kernbuild.repo import SigningKey

    if not shutil.which("gpg") or not shutil.which("gpgv"):
        pytest.skip("needs gpg and gpgv")
    keys = [SigningKey.ensure(tmp_path_factory.mktemp(f"gnupg-{n}"), uid=f"{n} <{n}@localhost>")
            for n in ("archive", "intruder")]
    yield keys
    for key in keys:
        subprocess.run(["gpgconf", "--homedir", str(key.gnupg_home), "--kill", "all"],
                       capture_output=True)


def sign_sources_index(server: Served, fake: FakeDebianSource, dsc: bytes, key, *,
                       dsc_sha: str | None = None) -> None:
    """dists/trixie/InRelease, signed by ``key``, over a Sources.xz listing ``fake``."""
    import lzma

    listing = "".join(f" {sha256(data)} {len(data)} {name}\n" for name, data in
                      {**fake.files, f"{fake.recipe.name}_1.0-1.dsc": dsc}.items())
    if dsc_sha:
        listing = listing.replace(sha256(dsc), dsc_sha)
    entry = (f"Package: other\nVersion: 1\n\nPackage: {fake.recipe.name}\nVersion: 1:1.0-1\n"
             f"Checksums-Sha256:\n{listing}\n")
    dists = server.root / "debian" / "dists" / "trixie"
    (dists / "main" / "source").mkdir(parents=True)
    index = lzma.compress(entry.encode())
    (dists / "main" / "source" / "Sources.xz").write_bytes(index)
    (dists / "Release").write_text(f"Suite: trixie\nSHA256:\n {sha256(index)} {len(index)} "
                                   "main/source/Sources.xz\n")
    key.sign(dists / "Release")


def test_debian_source_without_its_dsc_comes_through_the_signed_index(
        tmp_path: Path, server: Served, archive_key) -> None:
    fake = publish_debian_source(tmp_path, server)
    dsc = (fake.pool / "foo_1.0-1.dsc").read_bytes()
    (fake.pool / "foo_1.0-1.dsc").unlink()  # as some proxies in front of Debian do
    sign_sources_index(server, fake, dsc, archive_key[0])
    keyring = tmp_path / "debian-archive-keyring.gpg"
    keyring.write_bytes(archive_key[0].export_public(binary=True))
    cache = SourceCache(tmp_path / "cache", mirror=f"{server.url}/debian", keyring=keyring)

    fetched = cache.fetch(fake.recipe)

    assert (fetched.tree / "src" / "main.c").is_file()
    assert (fetched.tree / "extra" / "extra.py").read_text() == "E = 1\n"
    requests = [path for path, _ in server.requests]
    assert "/debian/dists/trixie/InRelease" in requests
    assert not any("debian.tar" in path for path in requests)  # upstream tarballs only
    # Another key's signature, or a pin the signed index does not list, is refused.
    other = tmp_path / "other-keyring.gpg"
    other.write_bytes(archive_key[1].export_public(binary=True))
    with pytest.raises(KernError, match="is not signed by a key in"):
        SourceCache(tmp_path / "cache2", mirror=f"{server.url}/debian",
                    keyring=other).fetch(fake.recipe)
    shutil.rmtree(server.root / "debian" / "dists")
    sign_sources_index(server, fake, dsc, archive_key[0], dsc_sha="e" * 64)
    with pytest.raises(KernError, match="sha256 mismatch for foo_1.0-1.dsc") as caught:
        SourceCache(tmp_path / "cache3", mirror=f"{server.url}/debian",
                    keyring=keyring).fetch(fake.recipe)
    assert "e" * 64 in caught.value.message and str(fake.recipe.path) in caught.value.message
    assert trees(tmp_path / "cache3") == []


def test_debian_tampered_orig_is_refused(tmp_path: Path, server: Served) -> None:
    fake = publish_debian_source(tmp_path, server)
    name = "foo_1.0.orig.tar.gz"
    tampered = make_tar({"foo-1.0/src/main.c": b"evil"})
    (fake.pool / name).write_bytes(tampered)
    cache = SourceCache(tmp_path / "cache", mirror=f"{server.url}/debian")

    with pytest.raises(KernError) as caught:
        cache.fetch(fake.recipe)

    message = caught.value.message
    assert sha256(fake.files[name]) in message and sha256(tampered) in message
    assert f"{server.url}/debian/pool/main/f/foo/{name}" in message
    assert str(fake.recipe.path) in message
    assert sha256(tampered) not in [p.name for p in (tmp_path / "cache" / "blobs").iterdir()]
    assert trees(tmp_path / "cache") == []
    assert leftovers(tmp_path / "cache") == []


def test_debian_tampered_dsc_is_refused(tmp_path: Path, server: Served) -> None:
    fake = publish_debian_source(tmp_path, server)
    dsc = fake.pool / "foo_1.0-1.dsc"
    dsc.write_bytes(dsc.read_bytes() + b"Extra: field\n")
    with pytest.raises(KernError, match="sha256 mismatch") as caught:
        SourceCache(tmp_path / "cache", mirror=f"{server.url}/debian").fetch(fake.recipe)
    assert f"update sha256 in {fake.recipe.path}" in caught.value.hint


def test_debian_malformed_dsc_is_refused(tmp_path: Path, server: Served) -> None:
    dsc = b"Format: 3.0 (quilt)\nSource: foo\nChecksums-Sha256: abc 12\n"
    server.put("debian/pool/main/f/foo/foo_1.0-1.dsc", dsc)
    recipe = write_recipe(tmp_path, {"debian": "foo", "version": "1.0-1",
                                     "sha256": sha256(dsc)}, name="foo")
    with pytest.raises(KernError, match="foo_1.0-1.dsc .*Checksums-Sha256"):
        SourceCache(tmp_path / "cache", mirror=f"{server.url}/debian").fetch(recipe)


def test_debian_source_outside_main_is_found(tmp_path: Path, server: Served) -> None:
    fake = publish_debian_source(tmp_path, server, "cudastuff", area="non-free")
    fetched = SourceCache(tmp_path / "cache", mirror=f"{server.url}/debian").fetch(fake.recipe)
    assert (fetched.tree / "src" / "main.c").is_file()


def test_debian_version_not_on_mirror(tmp_path: Path, server: Served) -> None:
    recipe = write_recipe(tmp_path, {"debian": "gone", "version": "2.0-1",
                                     "sha256": "b" * 64}, name="gone")
    with pytest.raises(KernError, match="gone_2.0-1.dsc is not on the mirror") as caught:
        SourceCache(tmp_path / "cache", mirror=f"{server.url}/debian").fetch(recipe)
    assert "snapshot.debian.org" in caught.value.hint


# --- pypi --------------------------------------------------------------------------------


def publish_pypi(server: Served, project: str, version: str, sdist: bytes | None,
                 digest: str | None = None) -> None:
    urls = [{"packagetype": "bdist_wheel", "filename": f"{project}-{version}-py3-none-any.whl",
             "url": f"{server.url}/packages/{project}-{version}-py3-none-any.whl",
             "digests": {"sha256": "c" * 64}}]
    if sdist is not None:
        name = f"{project}-{version}.tar.gz"
        server.put(f"packages/{name}", sdist)
        # Relative to the JSON document's URL, as PyPI's answers sometimes are.
        urls.append({"packagetype": "sdist", "filename": name, "url": f"../../packages/{name}",
                     "digests": {"sha256": digest or sha256(sdist)}})
    server.put(f"pypi/{project}/json", json.dumps(
        {"info": {"name": project}, "releases": {version: urls, "0.1": []}}).encode())


def test_pypi_sdist(tmp_path: Path, server: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    sdist = make_tar({"losoto-2.7.1/setup.py": b"", "losoto-2.7.1/PKG-INFO": b""})
    publish_pypi(server, "losoto", "2.7.1", sdist)
    recipe = write_recipe(tmp_path, {"pypi": "losoto", "sha256": sha256(sdist)},
                          name="losoto", version="2.7.1")
    cache = SourceCache(tmp_path / "cache", pypi=server.url)

    fetched = cache.fetch(recipe)

    assert [path for path, _ in server.requests] == ["/pypi/losoto/json",
                                                    "/packages/losoto-2.7.1.tar.gz"]
    assert fetched.sha256 == sha256(sdist) and (fetched.tree / "PKG-INFO").is_file()
    offline(monkeypatch)
    assert SourceCache(tmp_path / "cache", pypi=server.url).fetch(recipe) == fetched


def test_pypi_without_sdist(tmp_path: Path, server: Served) -> None:
    publish_pypi(server, "wheelonly", "1.0", None)
    recipe = write_recipe(tmp_path, {"pypi": "wheelonly", "sha256": "d" * 64},
                          name="wheelonly")
    with pytest.raises(KernError) as caught:
        SourceCache(tmp_path / "cache", pypi=server.url).fetch(recipe)
    assert "wheelonly 1.0 has no sdist" in caught.value.message
    assert "url:" in caught.value.hint


def test_pypi_unknown_project(tmp_path: Path, server: Served) -> None:
    recipe = write_recipe(tmp_path, {"pypi": "nosuch", "sha256": "d" * 64}, name="nosuch")
    with pytest.raises(KernError, match="PyPI has no project 'nosuch'"):
        SourceCache(tmp_path / "cache", pypi=server.url).fetch(recipe)


def test_pypi_unknown_release(tmp_path: Path, server: Served) -> None:
    publish_pypi(server, "known", "2.0", make_tar({"known-2.0/setup.py": b""}))
    recipe = write_recipe(tmp_path, {"pypi": "known", "sha256": "d" * 64}, name="known")
    with pytest.raises(KernError, match="PyPI has no release 1.0 of 'known'"):
        SourceCache(tmp_path / "cache", pypi=server.url).fetch(recipe)


def test_pypi_mismatch_mentions_pypi_digest(tmp_path: Path, server: Served) -> None:
    sdist = make_tar({"pp-1.0/setup.py": b""})
    publish_pypi(server, "pp", "1.0", sdist)
    recipe = write_recipe(tmp_path, {"pypi": "pp", "sha256": "e" * 64}, name="pp")
    with pytest.raises(KernError, match="sha256 mismatch") as caught:
        SourceCache(tmp_path / "cache", pypi=server.url).fetch(recipe)
    assert "e" * 64 in caught.value.message
    assert f"PyPI publishes sha256 {sha256(sdist)}" in caught.value.message


# --- network failures ----------------------------------------------------------------------


def test_http_404_is_a_kern_error(tmp_path: Path, server: Served) -> None:
    url = f"{server.url}/missing-1.0.tar.gz"
    recipe = write_recipe(tmp_path, {"url": url, "sha256": "f" * 64})
    with pytest.raises(KernError) as caught:
        SourceCache(tmp_path / "cache").fetch(recipe)
    assert url in caught.value.message and "404" in caught.value.message
    assert caught.value.hint
    assert leftovers(tmp_path / "cache") == []


def test_connection_refused_is_a_kern_error(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.tar.gz"
    recipe = write_recipe(tmp_path, {"url": url, "sha256": "f" * 64})
    with pytest.raises(KernError, match="cannot download") as caught:
        SourceCache(tmp_path / "cache").fetch(recipe)
    assert url in caught.value.message and "network" in caught.value.hint


def test_timeout_is_a_kern_error(tmp_path: Path) -> None:
    with socket.socket() as sock:  # accepts connections (backlog), never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/slow.tar.gz"
        recipe = write_recipe(tmp_path, {"url": url, "sha256": "f" * 64})
        with pytest.raises(KernError, match="stalled: no answer in 0.3 s") as caught:
            SourceCache(tmp_path / "cache", timeout=0.3).fetch(recipe)
    assert url in caught.value.message and "gave up after 3 attempts" in caught.value.message


# --- concurrency ---------------------------------------------------------------------------


def test_concurrent_fetches_of_one_source(tmp_path: Path, server: Served) -> None:
    archive = make_tar(RELEASE)
    recipe = write_recipe(tmp_path, {"url": server.put("demo-1.0.tar.gz", archive),
                                     "sha256": sha256(archive)})
    barrier = threading.Barrier(6)
    results: list[FetchedSource | Exception] = []

    def fetch() -> None:
        barrier.wait()
        try:
            results.append(SourceCache(tmp_path / "cache").fetch(recipe))
        except (KernError, OSError) as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(isinstance(r, FetchedSource) for r in results), results
    assert len({r.tree for r in results}) == 1  # type: ignore[union-attr]
    assert (results[0].tree / "setup.py").is_file()  # type: ignore[union-attr]
    assert leftovers(tmp_path / "cache") == []


def test_tree_finished_meanwhile_by_another_process_wins(tmp_path: Path,
                                                         server: Served) -> None:
    archive = make_tar(RELEASE)
    recipe = write_recipe(tmp_path, {"url": server.put("demo-1.0.tar.gz", archive),
                                     "sha256": sha256(archive)})
    final = tmp_path / "cache" / "trees" / sha256(archive)

    def other_process_finishes(label: str, done: int, total: int | None) -> None:
        # While we download, "another process" puts the finished tree in place.
        if done == total and not final.exists():
            final.mkdir(parents=True)
            (final / "theirs").write_text("")
            # As the cache does: the tree's hash is recorded before it is in place.
            record = tmp_path / "cache" / "tree-hashes" / sha256(archive)
            record.parent.mkdir(parents=True)
            record.write_text(tree_hash(final))

    fetched = SourceCache(tmp_path / "cache", progress=other_process_finishes).fetch(recipe)

    assert fetched.tree == final and (final / "theirs").exists()
    assert not (final / "setup.py").exists()  # ours was discarded, not merged
    assert leftovers(tmp_path / "cache") == []


# --- the registry of kinds -----------------------------------------------------------------


def test_every_kind_the_schema_allows_is_registered() -> None:
    assert set(KINDS) == {*SOURCE_KINDS, "none"}


def test_an_unregistered_kind_is_refused(tmp_path: Path) -> None:
    url = write_recipe(tmp_path, {"url": "https://example.invalid/x.tar.gz", "sha256": "0" * 64})
    recipe = replace(url, source=replace(url.source, kind="svn"))
    cache = SourceCache(tmp_path / "cache")

    for operation in (cache.key, cache.fetch):
        with pytest.raises(KernError, match="unknown source kind 'svn'") as exc:
            operation(recipe)
        assert exc.value.hint == "use one of " + ", ".join(SOURCE_KINDS)
    location = cache.locate(recipe)
    assert location.where == "missing" and "unknown source kind 'svn'" in location.detail


def test_a_new_kind_is_a_class_and_a_registry_line(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    class Svn(SourceKind):
        def key(self, recipe: Recipe) -> str:
            return "svn-key"

        def probe(self, recipe: Recipe) -> str:
            return f"svn://{recipe.source.ref}"

        def fetch(self, recipe: Recipe) -> tuple[str, Path, tuple[Path, ...]]:
            def checkout(tmp: Path) -> Path:
                (tmp / "src" / "sub").mkdir(parents=True)
                return tmp / "src"

            return "svn-key", self.cache._tree("svn-key", checkout), ()

    monkeypatch.setitem(KINDS, "svn", Svn)
    url = write_recipe(tmp_path, {"url": "https://example.invalid/x.tar.gz", "sha256": "0" * 64})
    recipe = replace(url, source=replace(url.source, kind="svn", ref="host/repo", sha256=None,
                                         subdir="sub"))
    cache = SourceCache(tmp_path / "cache")

    assert cache.key(recipe) == "svn-key"
    assert cache.locate(recipe) == SourceLocation("network", "svn://host/repo")
    fetched = cache.fetch(recipe)
    assert fetched == FetchedSource("svn-key", tmp_path / "cache" / "trees" / "svn-key" / "sub",
                                    ())  # the cache applied the recipe's subdir
    assert leftovers(tmp_path / "cache") == []

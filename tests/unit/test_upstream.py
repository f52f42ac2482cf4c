"""Upstream updates: kernbuild outdated and kernbuild bump (kernbuild.upstream).

No test touches the real network: PyPI's JSON API and a Debian mirror are served
by a local HTTP server, git repositories and source mirrors are made in tmp_path.
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from kernbuild.errors import KernError
from kernbuild.recipe import load_recipe, load_suite
from kernbuild.sources import SourceCache
from kernbuild.upstream import (NOT_TRACKED, OUTDATED, UNKNOWN, UP_TO_DATE, Upstreams, bump,
                                edit_recipe_text, outdated)
from kernbuild.workspace import Workspace
from tests.localhttp import serving

# --- fixtures -------------------------------------------------------------------------


class FakeWeb:
    """A local HTTP server of fixed files: {path: bytes}; ``requests`` lists paths asked."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.url = ""

    def release(self, project: str, version: str, data: bytes | None, *, yanked=False,
                packagetype: str = "sdist", digest: str | None = None) -> None:
        """Publish one file of ``project`` ``version`` in the project's JSON document."""
        path = f"/pypi/{project}/json"
        doc = json.loads(self.files.get(path, b'{"releases": {}}'))
        files = doc["releases"].setdefault(version, [])
        if data is not None:
            suffix = ".tar.gz" if packagetype == "sdist" else "-py3-none-any.whl"
            name = f"{project}-{version}{suffix}"
            self.files[f"/files/{name}"] = data
            files.append({"packagetype": packagetype, "filename": name, "yanked": yanked,
                          "url": f"{self.url}/files/{name}",
                          "digests": {"sha256": sha256(data) if digest is None else digest}})
        self.files[path] = json.dumps(doc).encode()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy from the environment would swallow requests meant for 127.0.0.1.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def web() -> Iterator[FakeWeb]:
    served = FakeWeb()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests.append(self.path)
            body = served.files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args) -> None:
            pass

    with serving(Handler) as served.url:
        yield served


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sdist(name: str, version: str) -> bytes:
    return make_tar({f"{name}-{version}/setup.py": f"# {name} {version}\n".encode()})


def make_tar(entries: dict[str, bytes]) -> bytes:
    """A .tar.gz of ``entries``; the same bytes every time (gzip's time stamp is 0)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as packed, \
            tarfile.open(fileobj=packed, mode="w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def pypi_recipe(name: str, version: str, sha: str, *, extra: str = "") -> str:
    """A recipe with comments in the places a bump must leave alone."""
    return textwrap.dedent(f"""\
        name: {name}
        # The release upstream tagged; see the changelog.
        version: "{version}"EXTRA
        summary: {name} for tests
        description: |
          A recipe made by the tests.
        license: MIT
        source:
          pypi: {name}   # the PyPI project
          # The sdist's sum, from PyPI.
          sha256: {sha}
        build:
          system: none
        packages:
          {name}: {{}}
        """).replace("EXTRA", extra)


def suite_of(tmp_path: Path, recipes: dict[str, str], mirrors: tuple[Path, ...] = ()
             ) -> Workspace:
    directory = tmp_path / "recipes"
    directory.mkdir(exist_ok=True)
    (directory / "suite.yaml").write_text("name: kern\nrelease: 1\ndate: 2026-05-01\n")
    for name, text in recipes.items():
        (directory / f"{name}.yaml").write_text(text)
    return Workspace(directory, tmp_path / "state", mirrors)


def upstreams(ws: Workspace, web: FakeWeb) -> Upstreams:
    return Upstreams.for_workspace(ws, load_suite(ws.recipes), pypi=web.url, timeout=5)


def changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    """(old line, new line) of each line that differs; both files have the same lines."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    assert len(old_lines) == len(new_lines), "\n".join(difflib.ndiff(old_lines, new_lines))
    return [(a, b) for a, b in zip(old_lines, new_lines) if a != b]


def kernbuild(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "kernbuild.cli", *args], cwd=cwd,
                          capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


# --- outdated: pypi ---------------------------------------------------------------------


def test_newest_is_by_pep440_without_prereleases_yanked_or_wheel_only(tmp_path, web):
    for version in ("1.9", "1.10"):
        web.release("demo", version, sdist("demo", version))
    web.release("demo", "1.11rc1", sdist("demo", "1.11rc1"))  # a prerelease
    web.release("demo", "1.12", sdist("demo", "1.12"), yanked=True)
    web.release("demo", "1.13.dev0", sdist("demo", "1.13.dev0"))
    web.release("demo", "not-a-version", sdist("demo", "x"))  # PEP 440 cannot order it
    ws = suite_of(tmp_path, {"demo": pypi_recipe("demo", "1.9", sha256(sdist("demo", "1.9")))})

    [row] = outdated(upstreams(ws, web), load_suite(ws.recipes))

    # As strings "1.9" > "1.10"; as versions 1.10 is newer.
    assert (row.current, row.newest, row.status, row.reason) == ("1.9", "1.10", OUTDATED, "")

    web.release("demo", "2.0", b"wheel", packagetype="bdist_wheel")
    [row] = outdated(upstreams(ws, web), load_suite(ws.recipes))
    assert (row.newest, row.status) == ("1.10", OUTDATED)
    assert row.reason == "2.0 is newer but has no sdist (wheels only)"


def test_outdated_statuses_and_one_failure_does_not_stop_the_table(tmp_path, web):
    for version in ("1.0", "1.1"):
        web.release("fresh", version, sdist("fresh", version))
        web.release("stale", version, sdist("stale", version))
    ws = suite_of(tmp_path, {
        "fresh": pypi_recipe("fresh", "1.1", "a" * 64),
        "stale": pypi_recipe("stale", "1.0", "a" * 64),
        "gone": pypi_recipe("gone", "1.0", "a" * 64),  # PyPI answers 404
        "local": pypi_recipe("local", "1.0", "a" * 64).replace(
            "  pypi: local   # the PyPI project\n  # The sdist's sum, from PyPI.\n"
            "  sha256: " + "a" * 64, "  path: tree"),
    })
    (ws.recipes / "tree").mkdir()

    rows = {r.name: r for r in outdated(upstreams(ws, web), load_suite(ws.recipes))}

    assert list(rows) == ["fresh", "gone", "local", "stale"]  # sorted by name
    assert rows["fresh"].status == UP_TO_DATE and rows["fresh"].newest == "1.1"
    assert rows["stale"].status == OUTDATED and rows["stale"].newest == "1.1"
    assert rows["gone"].status == UNKNOWN and rows["gone"].newest is None
    assert "PyPI has no project 'gone'" in rows["gone"].reason
    assert rows["local"].status == NOT_TRACKED and rows["local"].kind == "path"


def test_cli_outdated_json_exits_0_when_outdated_and_1_for_an_unknown_name(tmp_path, web):
    for version in ("1.0", "1.2"):
        web.release("demo", version, sdist("demo", version))
    ws = suite_of(tmp_path, {"demo": pypi_recipe("demo", "1.0", "a" * 64)})
    env = {"KERNBUILD_PYPI": web.url}

    result = kernbuild("outdated", "--json", cwd=ws.recipes.parent, env=env)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"name": "demo", "kind": "pypi", "current": "1.0",
                                          "newest": "1.2", "status": "outdated",
                                          "reason": ""}]
    table = kernbuild("outdated", cwd=ws.recipes.parent, env=env)
    assert table.returncode == 0 and "outdated" in table.stdout and "1.2" in table.stdout
    assert "1 recipes: 1 outdated" in table.stdout
    bad = kernbuild("outdated", "demi", cwd=ws.recipes.parent, env=env)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "no recipe named 'demi'" in bad.stderr and "did you mean 'demo'?" in bad.stderr


# --- bump: pypi -------------------------------------------------------------------------


def test_bump_rewrites_exactly_the_version_and_sha256_lines(tmp_path, web):
    old, new = sdist("demo", "1.9"), sdist("demo", "1.10")
    web.release("demo", "1.9", old)
    web.release("demo", "1.10", new)
    web.release("demo", "2.0b1", sdist("demo", "2.0b1"))
    ws = suite_of(tmp_path, {"demo": pypi_recipe("demo", "1.9", sha256(old))})
    path = ws.recipes / "demo.yaml"
    before = path.read_text()

    result = kernbuild("--state", str(ws.state), "bump", "demo", cwd=ws.recipes.parent,
                       env={"KERNBUILD_PYPI": web.url})

    assert result.returncode == 0, result.stderr
    after = path.read_text()
    assert changed_lines(before, after) == [
        ('version: "1.9"', 'version: "1.10"'),
        (f"  sha256: {sha256(old)}", f"  sha256: {sha256(new)}")]
    assert "# The sdist's sum, from PyPI." in after  # comments stay where they were
    recipe = load_recipe(path)
    assert (recipe.version, recipe.source.sha256) == ("1.10", sha256(new))
    assert "demo: 1.9 -> 1.10" in result.stdout
    assert f"+  sha256: {sha256(new)}" in result.stdout  # the diff is shown
    # Verified by the build's own fetch: the sdist is in the cache under its sum.
    assert (ws.state / "sources" / "blobs" / sha256(new)).read_bytes() == new


def test_bump_to_a_named_version_resets_a_written_revision(tmp_path, web):
    for version in ("1.0", "1.1", "1.2"):
        web.release("demo", version, sdist("demo", version))
    text = pypi_recipe("demo", "1.0", sha256(sdist("demo", "1.0")), extra="\nrevision: 3")
    ws = suite_of(tmp_path, {"demo": text})
    suite = load_suite(ws.recipes)

    done = bump(upstreams(ws, web), suite, "demo", "1.1")

    assert (done.changed, done.old, done.new) == (True, "1.0", "1.1")
    assert changed_lines(text, done.path.read_text()) == [
        ('version: "1.0"', 'version: "1.1"'), ("revision: 3", "revision: 1"),
        (f"  sha256: {sha256(sdist('demo', '1.0'))}", f"  sha256: {sha256(sdist('demo', '1.1'))}")]
    assert load_recipe(done.path).revision == 1


def test_bump_with_a_bad_digest_refuses_and_leaves_the_recipe_alone(tmp_path, web):
    web.release("demo", "1.0", sdist("demo", "1.0"))
    web.release("demo", "1.1", sdist("demo", "1.1"), digest="e" * 64)  # not the file's sum
    ws = suite_of(tmp_path, {"demo": pypi_recipe("demo", "1.0", sha256(sdist("demo", "1.0")))})
    path = ws.recipes / "demo.yaml"
    before = path.read_bytes()

    with pytest.raises(KernError, match="sha256 mismatch") as caught:
        bump(upstreams(ws, web), load_suite(ws.recipes), "demo")

    assert "e" * 64 in caught.value.message
    assert sha256(sdist("demo", "1.1")) in caught.value.message
    assert path.read_bytes() == before
    assert sorted(p.name for p in ws.recipes.iterdir()) == ["demo.yaml", "suite.yaml"]
    result = kernbuild("bump", "demo", cwd=ws.recipes.parent, env={"KERNBUILD_PYPI": web.url})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "sha256 mismatch" in result.stderr and path.read_bytes() == before


def test_bump_without_a_published_digest_refuses(tmp_path, web):
    web.release("demo", "1.0", sdist("demo", "1.0"))
    web.release("demo", "1.1", sdist("demo", "1.1"), digest="")
    ws = suite_of(tmp_path, {"demo": pypi_recipe("demo", "1.0", sha256(sdist("demo", "1.0")))})
    before = (ws.recipes / "demo.yaml").read_bytes()

    with pytest.raises(KernError, match="publishes no sha256"):
        bump(upstreams(ws, web), load_suite(ws.recipes), "demo")
    assert (ws.recipes / "demo.yaml").read_bytes() == before


def test_bump_to_the_current_version_is_a_no_op(tmp_path, web):
    data = sdist("demo", "1.1")
    web.release("demo", "1.0", sdist("demo", "1.0"))
    web.release("demo", "1.1", data)
    ws = suite_of(tmp_path, {"demo": pypi_recipe("demo", "1.1", sha256(data))})
    before = (ws.recipes / "demo.yaml").read_bytes()

    result = kernbuild("bump", "demo", cwd=ws.recipes.parent, env={"KERNBUILD_PYPI": web.url})
    named = bump(upstreams(ws, web), load_suite(ws.recipes), "demo", "1.1")

    assert result.returncode == 0, result.stderr
    assert "demo: nothing to do: already at 1.1, upstream's newest" in result.stdout
    assert not named.changed and named.verified == "already at 1.1"
    assert (ws.recipes / "demo.yaml").read_bytes() == before
    assert not any("/files/" in r for r in web.requests)  # nothing downloaded


def test_bump_unknown_version_or_name_is_an_error_with_a_hint(tmp_path, web):
    for version in ("1.0", "1.1"):
        web.release("demo", version, sdist("demo", version))
    ws = suite_of(tmp_path, {"demo": pypi_recipe("demo", "1.0", "a" * 64)})
    suite = load_suite(ws.recipes)

    with pytest.raises(KernError, match="demo has no release 7.0") as caught:
        bump(upstreams(ws, web), suite, "demo", "7.0")
    assert caught.value.hint == "releases there: 1.1, 1.0"
    with pytest.raises(KernError, match="no recipe named 'dmeo'") as caught:
        bump(upstreams(ws, web), suite, "dmeo")
    assert "did you mean 'demo'?" in caught.value.hint


# --- git and url: source mirrors and tags -------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
                          ).stdout.strip()


def git_recipe(name: str, ref: str, version: str, commit: str, sha: str | None) -> str:
    pin = f"\n  # the mirror's tarball\n  sha256: {sha}" if sha else ""
    return textwrap.dedent(f"""\
        name: {name}
        version: "{version}"
        summary: {name} for tests
        description: A recipe made by the tests.
        license: MIT
        source:
          git: {ref}
          commit: {commit}""") + pin + textwrap.dedent(f"""
        build:
          system: none
        packages:
          {name}: {{}}
        """)


@pytest.fixture
def tagged(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A repository (as a file:// URL) with tags v1.0, v1.1, v2.0rc1 and "latest"."""
    repo = tmp_path / "upstream" / "demo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    commits = {}
    for tag in ("v1.0", "v1.1", "v2.0rc1", "latest"):
        (repo / "VERSION").write_text(tag)
        git(repo, "add", "VERSION")
        git(repo, "commit", "-qm", tag)
        git(repo, "tag", tag)
        commits[tag] = git(repo, "rev-parse", "HEAD")
    return repo.as_uri(), commits


def test_git_outdated_from_tags_and_bumped_from_a_source_mirror(tmp_path, web, tagged):
    ref, commits = tagged
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    tarball = make_tar({"demo-1.1/VERSION": b"v1.1"})
    (mirror / f"demo-{commits['v1.1']}.tar.gz").write_bytes(tarball)
    (mirror / "SHA256SUMS").write_text(f"{sha256(tarball)}  demo-{commits['v1.1']}.tar.gz\n")
    old = git_recipe("demo", ref, "1.0", commits["v1.0"], "b" * 64)
    ws = suite_of(tmp_path, {"demo": old}, (mirror,))

    [row] = outdated(upstreams(ws, web), load_suite(ws.recipes))
    assert (row.current, row.newest, row.status) == ("1.0", "1.1", OUTDATED)  # not 2.0rc1

    done = bump(upstreams(ws, web), load_suite(ws.recipes), "demo")

    assert done.changed and "SHA256SUMS" in done.verified
    assert changed_lines(old, done.path.read_text()) == [
        ('version: "1.0"', 'version: "1.1"'),
        (f"  commit: {commits['v1.0']}", f"  commit: {commits['v1.1']}"),
        (f"  sha256: {'b' * 64}", f"  sha256: {sha256(tarball)}")]
    assert load_recipe(done.path).source.commit == commits["v1.1"]


def test_git_tag_newer_than_any_mirror_tarball_is_outdated_but_not_bumpable(tmp_path, web,
                                                                             tagged):
    ref, commits = tagged
    old = git_recipe("demo", ref, "1.0", commits["v1.0"], None)
    ws = suite_of(tmp_path, {"demo": old})

    [row] = outdated(upstreams(ws, web), load_suite(ws.recipes))
    assert (row.newest, row.status) == ("1.1", OUTDATED)
    assert "tag 1.1 is newer than any tarball in a source mirror" in row.reason
    with pytest.raises(KernError, match="no release of demo to bump to"):
        bump(upstreams(ws, web), load_suite(ws.recipes), "demo")
    assert (ws.recipes / "demo.yaml").read_text() == old


def test_unreachable_git_upstream_is_unknown_and_says_what_the_mirror_has(tmp_path, web):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    commit = "c" * 40
    (mirror / f"demo-{commit}.tar.gz").write_bytes(make_tar({"demo-1.0/x": b""}))
    ref = (tmp_path / "nowhere" / "demo").as_uri()
    ws = suite_of(tmp_path, {"demo": git_recipe("demo", ref, "1.0", commit, None)}, (mirror,))

    [row] = outdated(upstreams(ws, web), load_suite(ws.recipes))

    assert (row.newest, row.status) == ("1.0", UNKNOWN)
    assert row.reason.startswith(f"{ref} unreachable ("), row.reason
    assert row.reason.endswith("does not appear to be a git repository); "
                               "a source mirror has only 1.0"), row.reason


def test_a_mirror_tarball_that_does_not_match_its_sha256sums_is_refused(tmp_path, web):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    old_commit, new_commit = "c" * 40, "d" * 40
    (mirror / f"demo-{new_commit}.tar.gz").write_bytes(make_tar({"demo-1.1/x": b"evil"}))
    (mirror / "SHA256SUMS").write_text(f"{'f' * 64}  demo-{new_commit}.tar.gz\n")
    ref = (tmp_path / "nowhere" / "demo").as_uri()
    old = git_recipe("demo", ref, "1.0", old_commit, "b" * 64)
    ws = suite_of(tmp_path, {"demo": old}, (mirror,))

    with pytest.raises(KernError, match="sha256 mismatch for .*demo-d+\\.tar\\.gz"):
        bump(upstreams(ws, web), load_suite(ws.recipes), "demo")
    assert (ws.recipes / "demo.yaml").read_text() == old


def test_url_source_bumped_from_a_mirror_file_of_a_newer_version(tmp_path, web):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    new = make_tar({"tool-2.10/x": b"2.10"})
    (mirror / "tool-2.10.tar.gz").write_bytes(new)
    (mirror / "tool-2.9.tar.gz").write_bytes(make_tar({"tool-2.9/x": b"2.9"}))
    (mirror / "other-9.0.tar.gz").write_bytes(b"not ours")
    old = pypi_recipe("tool", "2.8", "b" * 64).replace(
        "  pypi: tool   # the PyPI project", "  url: https://example.invalid/dl/tool-2.8.tar.gz")
    ws = suite_of(tmp_path, {"tool": old}, (mirror,))

    [row] = outdated(upstreams(ws, web), load_suite(ws.recipes))
    assert (row.newest, row.status) == ("2.10", OUTDATED)
    done = bump(upstreams(ws, web), load_suite(ws.recipes), "tool")

    assert changed_lines(old, done.path.read_text()) == [
        ('version: "2.8"', 'version: "2.10"'),
        ("  url: https://example.invalid/dl/tool-2.8.tar.gz",
         "  url: https://example.invalid/dl/tool-2.10.tar.gz"),
        (f"  sha256: {'b' * 64}", f"  sha256: {sha256(new)}")]
    assert "no SHA256SUMS" in done.verified


# --- debian: the signed Sources index --------------------------------------------------------


@pytest.fixture(scope="module")
def archive_key(tmp_path_factory: pytest.TempPathFactory):
    """A key that plays Debian's archive key."""
    from kernbuild.repo import SigningKey

    if not shutil.which("gpg") or not shutil.which("gpgv"):
        pytest.skip("needs gpg and gpgv")
    key = SigningKey.ensure(tmp_path_factory.mktemp("gnupg"), uid="archive <a@localhost>")
    yield key
    subprocess.run(["gpgconf", "--homedir", str(key.gnupg_home), "--kill", "all"],
                   capture_output=True)


def publish_sources(web: FakeWeb, key, tmp_path: Path, versions: list[str]) -> dict[str, str]:
    """dists/trixie/InRelease, signed by ``key``, over a Sources.xz listing source package
    foo at ``versions``; {version: the .dsc's sha256}."""
    dsc_sums, entries = {}, ["Package: other\nVersion: 1\n"]
    for version in versions:
        dsc_sums[version] = sha256(f"dsc of {version}".encode())
        plain = version.split(":", 1)[-1]
        entries.append(f"Package: foo\nVersion: {version}\nChecksums-Sha256:\n"
                       f" {dsc_sums[version]} 10 foo_{plain}.dsc\n"
                       f" {'0' * 64} 10 foo_{plain.rsplit('-', 1)[0]}.orig.tar.gz\n")
    index = lzma.compress("\n".join(entries).encode())
    release = tmp_path / "dists" / "Release"
    release.parent.mkdir(parents=True, exist_ok=True)
    release.write_text(f"Suite: trixie\nSHA256:\n {sha256(index)} {len(index)} "
                       "main/source/Sources.xz\n")
    key.sign(release)
    web.files["/debian/dists/trixie/InRelease"] = (release.parent / "InRelease").read_bytes()
    web.files["/debian/dists/trixie/main/source/Sources.xz"] = index
    return dsc_sums


def debian_recipe(version: str, source_version: str, sha: str) -> str:
    return textwrap.dedent(f"""\
        name: foo
        # as Debian's repack
        version: "{version}"
        summary: foo for tests
        description: A recipe made by the tests.
        license: MIT
        source:
          debian: foo
          version: "{source_version}"   # Debian's
          sha256: {sha}
        build:
          system: none
        packages:
          foo: {{}}
        """)


def debian_upstreams(tmp_path: Path, web: FakeWeb, key) -> Upstreams:
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(key.export_public(binary=True))
    cache = SourceCache(tmp_path / "cache", mirror=f"{web.url}/debian", keyring=keyring,
                        timeout=5)
    return Upstreams(cache, "trixie")


def test_debian_newest_and_bump_from_the_signed_index(tmp_path, web, archive_key):
    sums = publish_sources(web, archive_key, tmp_path, ["1.2+ds-1", "1.10+ds-1", "1.9+ds-3"])
    old = debian_recipe("1.2+ds", "1.2+ds-1", sums["1.2+ds-1"])
    ws = suite_of(tmp_path, {"foo": old})
    ups = debian_upstreams(tmp_path, web, archive_key)

    [row] = outdated(ups, load_suite(ws.recipes))
    assert (row.current, row.newest, row.status) == ("1.2+ds-1", "1.10+ds-1", OUTDATED)

    done = bump(ups, load_suite(ws.recipes), "foo")

    assert "signed index" in done.verified
    assert changed_lines(old, done.path.read_text()) == [
        ('version: "1.2+ds"', 'version: "1.10+ds"'),
        ('  version: "1.2+ds-1"   # Debian\'s', '  version: "1.10+ds-1"   # Debian\'s'),
        (f"  sha256: {sums['1.2+ds-1']}", f"  sha256: {sums['1.10+ds-1']}")]
    # Nothing but the signed indexes was downloaded: the sum comes from them.
    assert sorted(set(web.requests)) == ["/debian/dists/trixie/InRelease",
                                         "/debian/dists/trixie/main/source/Sources.xz"]


def test_debian_revision_of_the_same_upstream_raises_the_recipe_revision(tmp_path, web,
                                                                         archive_key):
    sums = publish_sources(web, archive_key, tmp_path, ["1.2+ds-1", "1.2+ds-2"])
    old = debian_recipe("1.2+ds", "1.2+ds-1", sums["1.2+ds-1"])
    ws = suite_of(tmp_path, {"foo": old})

    done = bump(debian_upstreams(tmp_path, web, archive_key), load_suite(ws.recipes), "foo")

    new = done.path.read_text()
    diff = [line for line in difflib.ndiff(old.splitlines(), new.splitlines())
            if line[:1] in "+-"]
    assert diff == ["+ revision: 2",
                    '-   version: "1.2+ds-1"   # Debian\'s',
                    '+   version: "1.2+ds-2"   # Debian\'s',
                    f"-   sha256: {sums['1.2+ds-1']}", f"+   sha256: {sums['1.2+ds-2']}"]
    assert new.index("revision: 2") > new.index('version: "1.2+ds"')  # after the version
    recipe = load_recipe(done.path)
    assert (recipe.version, recipe.revision) == ("1.2+ds", 2)


def test_debian_index_signed_by_another_key_is_unknown(tmp_path, web, archive_key):
    publish_sources(web, archive_key, tmp_path, ["1.2+ds-1"])
    ws = suite_of(tmp_path, {"foo": debian_recipe("1.2+ds", "1.2+ds-1", "a" * 64)})
    empty = tmp_path / "empty.gpg"
    empty.write_bytes(b"")
    ups = Upstreams(SourceCache(tmp_path / "cache", mirror=f"{web.url}/debian",
                                keyring=empty, timeout=5), "trixie")

    [row] = outdated(ups, load_suite(ws.recipes))

    assert row.status == UNKNOWN and "is not signed by a key in" in row.reason


# --- editing the text in place -----------------------------------------------------------


@pytest.mark.parametrize(("written", "value", "expected"), [
    ('"1.0"', "1.1", '"1.1"'),
    ("'1.0'", "1.1", "'1.1'"),
    ("v1.0", "v1.1", "v1.1"),
    ("v1.0", "1.10", '"1.10"'),  # plain 1.10 would read back as the float 1.1
])
def test_a_value_keeps_its_quoting_where_it_reads_back_the_same(tmp_path, written, value,
                                                                expected):
    text = f"name: x\nversion: {written}  # kept\nother: 1\n"
    new = edit_recipe_text(text, [(("version",), value, ("version",))], tmp_path / "x.yaml")
    assert new == f"name: x\nversion: {expected}  # kept\nother: 1\n"


def test_flow_mappings_are_edited_in_place_too(tmp_path):
    text = "source: {pypi: x, sha256: aaaa}  # flow\n"
    new = edit_recipe_text(text, [(("source", "sha256"), "bbbb", ("source", "sha256"))],
                           tmp_path / "x.yaml")
    assert new == "source: {pypi: x, sha256: bbbb}  # flow\n"

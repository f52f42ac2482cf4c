"""Fetch, verify and cache the upstream source of a recipe.

A recipe names its source in one of five ways (``recipe.source.kind``):

``pypi``
    The sdist of ``recipe.version`` of a PyPI project, found through PyPI's
    JSON API and verified against the recipe's ``sha256``.
``debian``
    A Debian source package: the ``.dsc`` of ``source.version`` is verified
    against the recipe's ``sha256``; every file it lists is then verified
    against the ``.dsc``'s own Checksums-Sha256. The tree is the upstream
    (orig) tarball; kernbuild renders its own ``debian/``.
``url``
    An archive (tar, tar.gz/tgz, tar.xz, tar.bz2, zip) verified against ``sha256``.
``git``
    A repository at a full commit id: the tarball ``<name>-<commit>.tar.gz`` from
    a source mirror, verified against the recipe's ``sha256``, or else a clone
    checked out at the commit, with ``.git`` removed.
``path``
    A local directory (copied) or archive file (unpacked).

The recipe's ``sha256`` is the authority for every remote source: a download
that does not match it is deleted and refused with both sums, never used.

Source mirrors are local directories of upstream files for hosts that cannot
reach an upstream (GitHub, from these build machines). They are searched, by
file name, before the network, as Yocto's premirrors are: the tarball of a
``git`` source as ``<name>-<commit>.tar.gz`` (``git archive`` output; ``name``
is the repository's or the recipe's), the file of a ``url`` source by its
name. A mirror's file is verified against the recipe's ``sha256`` like a
download, so a tampered one is refused, never used.

Cache layout under ``root`` (``Workspace.sources``)::

    blobs/<sha256>   verified downloads, content-addressed
    trees/<key>/     unpacked trees, keyed by :meth:`SourceCache.key`

Every write is atomic: a download goes to a temporary file beside its final
name and is renamed once verified; a tree is built in a temporary directory
and renamed into place. Two processes fetching the same source at once
(``--jobs``) both succeed: whoever renames second discards its own copy and
uses the first one's, which is identical by construction. What is in the
cache is reused without touching the network.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import lzma
import os
import posixpath
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kernbuild import __version__
from kernbuild.errors import KernError
from kernbuild.recipe.model import Recipe, SuiteSettings
from kernbuild.workspace import Workspace

#: ``progress(label, bytes_done, bytes_total_or_None)``, called while downloading.
Progress = Callable[[str, int, int | None], None]

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_PYPI = "https://pypi.org"
DEFAULT_TIMEOUT = 60.0  # seconds without progress on one socket operation
USER_AGENT = f"kernbuild/{__version__}"
# What vouches for Debian's indexes, as for apt (Debian's debian-archive-keyring).
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
_MAX_INDEX = 16 << 20  # bytes of an InRelease file: Debian's are about 150 kB

# Archive areas of a Debian mirror, in the order they are tried: almost every
# source is in main, and a 404 there is cheap; nvidia-cuda-toolkit is in non-free.
_DEBIAN_AREAS = ("main", "contrib", "non-free", "non-free-firmware")
_CHUNK = 1 << 18
_COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")  # SHA-1 or SHA-256 repositories
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DSC_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+~_-]*$")
_TREE_HASH_VERSION = b"kernbuild-tree-hash-v1\n"
_EMPTY_TREE_KEY = hashlib.sha256(_TREE_HASH_VERSION).hexdigest()


def _empty_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


@dataclass(frozen=True)
class FetchedSource:
    """A verified source in the cache.

    Attributes:
        sha256: the verified sha256 of the primary artifact (sdist, archive or
            ``.dsc``); for ``path`` directories and ``git`` sources the
            :func:`tree_hash` of the tree; for a ``path`` archive file, the
            sha256 of that file.
        tree: the unpacked upstream tree, with the archive's single top-level
            directory stripped and the recipe's ``subdir`` applied. It lives
            in the cache and is shared: treat it as read-only.
        files: the verified downloaded files, in the cache (``.dsc`` first for
            ``debian``); empty for ``path`` and ``git``. Their names are their
            sha256, not their upstream names.
    """

    sha256: str
    tree: Path
    files: tuple[Path, ...]


@dataclass(frozen=True)
class SourceLocation:
    """Where a recipe's source would come from now (:meth:`SourceCache.locate`).

    Attributes:
        where: ``cache``, ``mirror`` (a source mirror), ``network``, ``local``
            (a ``path`` source), ``none`` (a metapackage) or ``missing``.
        detail: the file, URL or, when missing, why.
    """

    where: str
    detail: str

    @property
    def available(self) -> bool:
        return self.where != "missing"


class SourceCache:
    """Fetches recipes' sources into a content-addressed cache under ``root``.

    Args:
        root: the cache directory (created on demand), normally ``Workspace.sources``.
        mirror: the Debian mirror for ``debian`` sources (``SuiteSettings.mirror``).
        progress: optional ``progress(label, bytes_done, total_or_None)`` callback,
            called while downloading so that the CLI can draw progress bars.
        pypi: the base URL of PyPI's JSON API (tests point it at a local server).
        timeout: seconds a network operation may stall before it fails.

    The object holds configuration only; every piece of state is on disk, so
    several instances (or processes) may share one ``root``.
    """

    def __init__(self, root: Path, mirror: str = DEFAULT_MIRROR,
                 progress: Progress | None = None, *, pypi: str = DEFAULT_PYPI,
                 timeout: float = DEFAULT_TIMEOUT,
                 source_mirrors: tuple[Path, ...] = (), distribution: str = "trixie",
                 keyring: Path = DEBIAN_KEYRING) -> None:
        self.root = Path(root)
        self.mirror = mirror.rstrip("/")
        self.progress = progress
        self.pypi = pypi.rstrip("/")
        self.timeout = timeout
        self.source_mirrors = tuple(Path(m) for m in source_mirrors)
        self.distribution = distribution
        self.keyring = Path(keyring)

    @classmethod
    def for_workspace(cls, workspace: Workspace, settings: SuiteSettings,
                      progress: Progress | None = None) -> SourceCache:
        """The cache of ``workspace`` with the suite's Debian mirror and every source mirror.

        Source mirrors given on the command line or in ``KERNBUILD_SOURCE_MIRROR``
        (``workspace.source_mirrors``) come first, then the suite's
        ``source_mirrors`` (relative to the recipe directory).
        """
        suite_mirrors = tuple(workspace.recipes / Path(m).expanduser()
                              for m in settings.source_mirrors)
        return cls(workspace.sources, mirror=settings.mirror, progress=progress,
                   source_mirrors=workspace.source_mirrors + suite_mirrors,
                   distribution=settings.distribution)

    @property
    def blobs(self) -> Path:
        """Verified downloads, each named by its sha256."""
        return self.root / "blobs"

    @property
    def trees(self) -> Path:
        """Unpacked trees, each named by the key of its source."""
        return self.root / "trees"

    # --- public API -----------------------------------------------------------------

    def key(self, recipe: Recipe) -> str:
        """The id of ``recipe``'s source, computed without any download.

        The recipe's declared ``sha256`` for ``pypi``, ``debian`` and ``url``;
        the commit for ``git``; for ``path``, the :func:`tree_hash` of the
        directory or the sha256 of the archive file (local, so computed). The
        build cache compares keys to detect builds with nothing to do.

        Raises:
            KernError: the recipe lacks its pin, or a ``path`` source is missing.
        """
        kind = recipe.source.kind
        if kind == "none":
            return _EMPTY_TREE_KEY
        if kind == "git":  # a pinned tarball names its bytes; else the commit does
            commit = _commit(recipe)
            return recipe.source.sha256 or commit
        if kind == "path":
            path = _local_path(recipe)
            return file_sha256(path) if path.is_file() else self._path_tree_hash(path)
        if kind in ("pypi", "debian", "url"):
            return _pinned_sha256(recipe)
        raise _unknown_kind(recipe)

    def locate(self, recipe: Recipe) -> SourceLocation:
        """Where :meth:`fetch` would get ``recipe``'s source now, without fetching it.

        The cache and the source mirrors are looked at first, as fetch does; the
        network is only asked whether it has the file (PyPI's JSON, an HTTP HEAD,
        ``git ls-remote``), so this answers in about a second per recipe. The one
        download: a ``debian`` source whose ``.dsc`` the mirror lacks is looked up
        in the signed Sources index, which is cached like any download.
        """
        kind, sha = recipe.source.kind, recipe.source.sha256
        if kind == "none":
            return SourceLocation("none", "a metapackage has no source")
        if kind == "path":
            path = Path(recipe.source.ref)
            return SourceLocation("local" if path.exists() else "missing", str(path))
        if sha and self._cached_blob(sha):
            return SourceLocation("cache", str(self.blobs / sha))
        if sha and (self.trees / sha).is_dir():  # a debian source fetched without its .dsc
            return SourceLocation("cache", str(self.trees / sha))
        if kind == "git" and (self.trees / _commit(recipe)).is_dir():
            return SourceLocation("cache", str(self.trees / _commit(recipe)))
        names = (_mirror_names(recipe, _commit(recipe)) if kind == "git"
                 else [_url_name(recipe.source.ref)] if kind == "url" else [])
        for directory in self.source_mirrors if sha else ():
            for name in names:
                if (directory / name).is_file():
                    return SourceLocation("mirror", str(directory / name))
        try:
            return SourceLocation("network", self._probe(recipe))
        except KernError as exc:
            return SourceLocation("missing", exc.message)

    def _probe(self, recipe: Recipe) -> str:
        """The URL the network has ``recipe``'s source at; KernError if it has not."""
        kind, ref = recipe.source.kind, recipe.source.ref
        if kind == "pypi":
            return self._pypi_sdist(recipe, _pinned_sha256(recipe))[0]
        if kind == "url":
            self._open(ref, recipe, method="HEAD").close()
            return ref
        if kind == "debian":
            name = f"{ref}_{(recipe.source.version or '').split(':', 1)[-1]}.dsc"
            try:
                return self._pool_url(recipe, name)
            except _NotFound as missing:  # as fetch does: the signed index, then the tarball
                listed = self._signed_index_files(recipe, name, _pinned_sha256(recipe), missing)
                upstream, _ = _debian_upstream_tarballs(ref, list(listed), name)
                return self._pool_url(recipe, upstream)
        if kind == "git":
            self._git(recipe, ["git", "ls-remote", "--exit-code", "--", ref, "HEAD"],
                      f"cannot reach {ref}", "", timeout=self.timeout)
            return ref
        raise _unknown_kind(recipe)

    def fetch(self, recipe: Recipe) -> FetchedSource:
        """Make ``recipe``'s source available in the cache, verified and unpacked.

        Uses the network only for what the cache lacks.

        Raises:
            KernError: a checksum mismatch, a network failure, an unsafe or
                unreadable archive, a missing commit, path or ``subdir``.
        """
        fetchers = {"pypi": self._fetch_pypi, "debian": self._fetch_debian,
                    "url": self._fetch_url, "git": self._fetch_git, "path": self._fetch_path,
                    "none": self._fetch_none}
        fetcher = fetchers.get(recipe.source.kind)
        if fetcher is None:
            raise _unknown_kind(recipe)
        sha256, tree, files = fetcher(recipe)
        return FetchedSource(sha256, _apply_subdir(recipe, tree), files)

    # --- the kinds ---------------------------------------------------------------------

    def _fetch_none(self, recipe: Recipe) -> tuple[str, Path, tuple[Path, ...]]:
        """A metapackage has no upstream source: an empty tree."""
        return _EMPTY_TREE_KEY, self._tree(_EMPTY_TREE_KEY, lambda tmp: _empty_dir(tmp / "x")), ()

    def _fetch_url(self, recipe: Recipe) -> tuple[str, Path, tuple[Path, ...]]:
        sha = _pinned_sha256(recipe)
        url = recipe.source.ref
        name = _url_name(url)
        blob = self._cached_blob(sha) or self._from_source_mirrors(recipe, [name], sha)
        if blob is None:
            try:
                blob = self._download(url, sha, recipe, label=name,
                                      expected_from=str(recipe.path),
                                      hint=_recipe_mismatch_hint(recipe))
            except _Unreachable as exc:
                raise self._missing_everywhere(recipe, exc, [name],
                                               f"having fetched {url} where it is reachable"
                                               ) from None
        tree = self._tree(sha, lambda tmp: extract_archive(blob, tmp / "x", label=url))
        return sha, tree, (blob,)

    def _fetch_pypi(self, recipe: Recipe) -> tuple[str, Path, tuple[Path, ...]]:
        sha = _pinned_sha256(recipe)
        blob = self._cached_blob(sha)
        label = f"{recipe.source.ref} {recipe.version} sdist"
        if blob is None:
            url, filename, published = self._pypi_sdist(recipe, sha)
            label = filename
            note = (f"PyPI publishes sha256 {published} for {filename}"
                    if published and published != sha else "")
            blob = self._download(url, sha, recipe, label=filename,
                                  expected_from=str(recipe.path),
                                  hint=_recipe_mismatch_hint(recipe), note=note)
        tree = self._tree(sha, lambda tmp: extract_archive(blob, tmp / "x", label=label))
        return sha, tree, (blob,)

    def _pypi_sdist(self, recipe: Recipe, sha: str) -> tuple[str, str, str | None]:
        """(url, filename, PyPI's sha256) of the sdist of the recipe's version."""
        project, version = recipe.source.ref, recipe.version
        # The project-wide document, not /pypi/NAME/VERSION/json: some mirrors and proxies
        # in front of PyPI serve only the former.
        url = f"{self.pypi}/pypi/{urllib.parse.quote(project)}/json"
        try:
            with self._open(url, recipe) as response:
                data = json.loads(response.read())
        except _NotFound:
            raise KernError(f"PyPI has no project {project!r} ({url})",
                            f"check 'source: pypi:' in {recipe.path}") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise KernError(f"cannot read PyPI's answer for {project} from {url}: "
                            f"{exc}", "try again later; is PyPI reachable?") from None
        releases = data.get("releases") if isinstance(data, dict) else None
        if not isinstance(releases, dict) or version not in releases:
            raise KernError(f"PyPI has no release {version} of {project!r} ({url})",
                            f"check the project name and 'version' in {recipe.path}")
        urls = releases[version]
        sdists = [u for u in urls or () if isinstance(u, dict) and u.get("packagetype") == "sdist"]
        if not sdists:
            raise KernError(
                f"{project} {version} has no sdist on PyPI (only built wheels)",
                f"kernbuild builds from source: pick a version with an sdist, or use a 'url:' "
                f"source pointing at the upstream release tarball in {recipe.path}")
        # The recipe's sum is the authority; PyPI's digest only picks among several
        # sdists (old releases have both .zip and .tar.gz) and explains a mismatch.
        chosen = next((u for u in sdists if (u.get("digests") or {}).get("sha256") == sha),
                      sdists[0])
        if not isinstance(chosen.get("url"), str):
            raise KernError(f"PyPI's answer for {project} {version} has no sdist URL ({url})",
                            "try again later")
        # Some answers carry file URLs relative to the JSON document's own URL.
        file_url = urllib.parse.urljoin(url, chosen["url"])
        filename = chosen.get("filename") or _url_name(file_url)
        return file_url, filename, (chosen.get("digests") or {}).get("sha256")

    def _fetch_debian(self, recipe: Recipe) -> tuple[str, Path, tuple[Path, ...]]:
        src = recipe.source.ref
        version = recipe.source.version
        if not version:
            raise KernError(f"{recipe.path}: a debian source needs 'version'",
                            "the Debian source version, such as version: 8.4+ds-1")
        sha = _pinned_sha256(recipe)
        if self._cached_blob(sha) is None and (self.trees / sha).is_dir():
            return sha, self.trees / sha, ()  # fetched through the signed index before
        # File names in the pool never carry the epoch: 1:2.3-1 -> foo_2.3-1.dsc.
        dsc_name = f"{src}_{version.split(':', 1)[-1]}.dsc"
        try:
            dsc = self._cached_blob(sha) or self._download_pool(
                recipe, dsc_name, sha, expected_from=str(recipe.path),
                hint=_recipe_mismatch_hint(recipe))
            listed, verified_by = _dsc_files(dsc, dsc_name, recipe), dsc_name
            files: tuple[Path, ...] = (dsc,)
        except _NotFound as missing:
            # Some mirrors and proxies serve the tarballs but not the .dsc: the archive's
            # signed index lists the same files with their sums, as apt trusts it.
            listed = self._signed_index_files(recipe, dsc_name, sha, missing)
            verified_by, files = f"the signed Sources index of {self._suite(recipe)}", ()
        upstream, components = _debian_upstream_tarballs(src, list(listed), dsc_name)
        # Only the upstream tarballs: kernbuild renders its own debian/.
        blobs = {name: self._cached_blob(listed[name]) or self._download_pool(
            recipe, name, listed[name],
            expected_from=f"{verified_by}, which matches the sha256 in {recipe.path}",
            hint=(f"{verified_by} is genuine, so the mirror served a corrupt or tampered "
                  f"{name}; try again or use another mirror"))
            for name in [upstream, *(n for _, n in components)]}

        def unpack(tmp: Path) -> Path:
            tree = extract_archive(blobs[upstream], tmp / "orig", label=upstream)
            for component, name in components:  # dpkg-source puts orig-<c> into <c>/
                part = extract_archive(blobs[name], tmp / f"component-{component}", label=name)
                target = tree / component
                if target.is_symlink() or (target.exists() and any(target.iterdir())):
                    raise KernError(f"{name} would replace {component}/ of {upstream}",
                                    "this is not a well-formed Debian source package")
                if target.exists():
                    target.rmdir()  # an empty placeholder, as upstreams leave for submodules
                os.rename(part, target)
            return tree

        tree = self._tree(sha, unpack)
        return sha, tree, (*files, *blobs.values())

    def _suite(self, recipe: Recipe) -> str:
        return recipe.source.suite or self.distribution

    def _signed_index_files(self, recipe: Recipe, dsc_name: str, sha: str,
                            missing: KernError) -> dict[str, str]:
        """The files of the recipe's source package, {name: sha256}, from the Sources
        index of its suite, which InRelease (checked with gpgv against Debian's archive
        keyring, as apt does) vouches for. The recipe's pin must be the .dsc's sum there.
        """
        from debian.deb822 import Release, Sources

        suite, src, version = self._suite(recipe), recipe.source.ref, recipe.source.version
        url = f"{self.mirror}/dists/{suite}/InRelease"
        try:
            with self._open(url, recipe) as response:
                signed = response.read(_MAX_INDEX)
        except _Unreachable as exc:
            raise KernError(f"{missing.message}; nor can its suite's signed index be read: "
                            f"{exc.message}", missing.hint) from None
        release = Release(self._gpgv(signed, url))
        hashes = {entry["name"]: entry["sha256"] for entry in release.get("SHA256") or ()}
        for area in _DEBIAN_AREAS:
            name = f"{area}/source/Sources.xz"
            if name not in hashes:
                continue
            index = self._cached_blob(hashes[name]) or self._download(
                f"{self.mirror}/dists/{suite}/{name}", hashes[name], recipe,
                label=f"{suite} {name}", expected_from=f"{url} (signed)",
                hint="the mirror served a Sources index that its signed InRelease does "
                     "not list; try again or use another mirror")
            with lzma.open(index, "rt", encoding="utf-8", errors="replace") as handle:
                text = handle.read()
            # Find the package's paragraphs with one search over the text: parsing all
            # 40,000 paragraphs of main with python-debian takes seconds.
            for match in re.finditer(rf"^Package: {re.escape(src)}\n", text, re.M):
                end = text.find("\n\n", match.start())
                for entry in Sources.iter_paragraphs(
                        text[match.start():end if end >= 0 else len(text)], use_apt_pkg=False):
                    if entry.get("Package") == src and entry.get("Version") == version:
                        files = _checked_file_list(entry.get("Checksums-Sha256"),
                                                   f"{suite}'s Sources entry of {src}")
                        if files.get(dsc_name) != sha:
                            raise KernError(
                                f"sha256 mismatch for {dsc_name}\n"
                                f"  expected: {sha} (from {recipe.path})\n"
                                f"  signed:   {files.get(dsc_name)} (from {url})",
                                _recipe_mismatch_hint(recipe))
                        return files
        raise KernError(f"{src} {version} is not in {suite}'s signed source index ({url})",
                        f"check 'debian', 'version' and 'suite' in {recipe.path} "
                        f"(https://tracker.debian.org/pkg/{src})")

    def _gpgv(self, signed: bytes, url: str) -> str:
        """The text ``signed`` vouches for, if Debian's archive key signed it."""
        try:
            result = subprocess.run(["gpgv", "--keyring", str(self.keyring), "--output", "-",
                                     "-"], input=signed, capture_output=True, check=False,
                                    timeout=60)
        except FileNotFoundError:
            raise KernError("verifying Debian's signed index needs gpgv",
                            "apt-get install gpgv debian-archive-keyring") from None
        if result.returncode != 0:
            detail = (result.stderr.decode(errors="replace").strip().splitlines()
                      or ["gpgv failed"])[-1]
            raise KernError(f"{url} is not signed by a key in {self.keyring}: {detail}",
                            "the mirror is not Debian's, or the keyring is out of date "
                            "(apt-get install debian-archive-keyring)")
        return result.stdout.decode("utf-8", errors="replace")

    def _pool_url(self, recipe: Recipe, name: str) -> str:
        """The URL the mirror's pool has ``name`` of the recipe's source package at."""
        src = recipe.source.ref
        prefix = src[:4] if src.startswith("lib") else src[0]
        for area in _DEBIAN_AREAS:
            url = f"{self.mirror}/pool/{area}/{prefix}/{src}/{name}"
            try:
                self._open(url, recipe, method="HEAD").close()
                return url
            except _NotFound:
                continue
        raise _NotFound(f"{name} is not on the mirror {self.mirror}")

    def _download_pool(self, recipe: Recipe, name: str, sha: str, *,
                       expected_from: str, hint: str) -> Path:
        """Download ``name`` of the recipe's source package from the mirror's pool."""
        src = recipe.source.ref
        prefix = src[:4] if src.startswith("lib") else src[0]
        tried = []
        for area in _DEBIAN_AREAS:
            url = f"{self.mirror}/pool/{area}/{prefix}/{src}/{name}"
            tried.append(url)
            try:
                return self._download(url, sha, recipe, label=name,
                                      expected_from=expected_from, hint=hint)
            except _NotFound:
                continue
        raise _NotFound(
            f"{name} is not on the mirror {self.mirror} (tried {', '.join(tried)})",
            f"mirrors keep only current versions: check 'debian' and 'version' in "
            f"{recipe.path} (https://tracker.debian.org/pkg/{src}), or use "
            f"https://snapshot.debian.org/archive/debian/<date>/ as the suite's mirror")

    def _fetch_git(self, recipe: Recipe) -> tuple[str, Path, tuple[Path, ...]]:
        commit = _commit(recipe)
        repo = recipe.source.ref
        sha = recipe.source.sha256
        names = _mirror_names(recipe, commit)
        blob = sha and (self._cached_blob(sha)
                        or self._from_source_mirrors(recipe, names, sha))
        if blob:
            tree = self._tree(sha, lambda tmp: extract_archive(blob, tmp / "x", label=names[0]))
            return sha, tree, (blob,)

        def checkout(tmp: Path) -> Path:
            work = tmp / "src"
            # "--" keeps a repository URL that starts with "-" from being read as an option.
            try:
                self._git(recipe, ["git", "clone", "--quiet", "--no-checkout", "--", repo,
                                   str(work)], f"cannot clone {repo}",
                          f"check 'git' in {recipe.path}; the repository must be reachable")
            except KernError as exc:
                version = recipe.version
                raise self._missing_everywhere(
                    recipe, exc, names,
                    f"having made it where {repo} is reachable (git archive --format=tar "
                    f"--prefix={names[0].rsplit('-', 1)[0]}-{version}/ {commit} "
                    f"| gzip -n -9 > {names[0]})") from None
            self._git(recipe, ["git", "-c", "advice.detachedHead=false", "-c",
                               "core.autocrlf=false", "checkout", "--quiet", commit],
                      f"commit {commit} is not in {repo}",
                      f"check 'commit' in {recipe.path}: it must be a full commit id "
                      f"reachable from a branch or tag of the repository", cwd=work)
            _rmtree(work / ".git")
            return work

        tree = self._tree(commit, checkout)
        return tree_hash(tree), tree, ()

    def _from_source_mirrors(self, recipe: Recipe, names: list[str], sha: str) -> Path | None:
        """The first of ``names`` found in a source mirror, verified into the cache, or None.

        A file that is there but does not match ``sha`` is refused, not skipped:
        a mirror that serves a different file is broken or tampered with.
        """
        for directory in self.source_mirrors:
            for name in names:
                path = directory / name
                if path.is_file():
                    return self._download(
                        path.resolve().as_uri(), sha, recipe, label=name,
                        expected_from=str(recipe.path),
                        hint=f"the source mirror's {path} is not the file {recipe.path} "
                             "pins: replace it with upstream's, or, if upstream re-released "
                             "it on purpose, update sha256 in the recipe")
        return None

    def _missing_everywhere(self, recipe: Recipe, failure: KernError, names: list[str],
                            how: str) -> KernError:
        """Neither the network nor a source mirror has the source: say how to supply it."""
        looked = (f"looked in {', '.join(str(d) for d in self.source_mirrors)}"
                  if self.source_mirrors else "none is configured")
        return KernError(
            f"{recipe.path}: the source of {recipe.name} cannot be fetched: "
            f"{failure.message}; and no source mirror has {names[0]} ({looked})",
            f"{failure.hint}; or, {how}, put it in a directory given by --source-mirror DIR, "
            f"KERNBUILD_SOURCE_MIRROR or 'source_mirrors:' in suite.yaml")

    def _git(self, recipe: Recipe, args: list[str], message: str, hint: str,
             cwd: Path | None = None, timeout: float | None = None) -> None:
        # Never prompt for credentials: a build must fail, not hang.
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
        try:
            result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                                    check=False, timeout=timeout)
        except FileNotFoundError:
            raise KernError(f"{recipe.path}: a git source needs the 'git' program",
                            "install git (apt-get install git)") from None
        except subprocess.TimeoutExpired:
            raise KernError(f"{message}: no answer in {timeout:g} s", hint) from None
        if result.returncode != 0:
            detail = (result.stderr.strip().splitlines() or ["git failed"])[-1]
            raise KernError(f"{message}: {detail}", hint)

    def _fetch_path(self, recipe: Recipe) -> tuple[str, Path, tuple[Path, ...]]:
        path = _local_path(recipe)
        if path.is_file():
            sha = file_sha256(path)
            tree = self._tree(sha, lambda tmp: extract_archive(path, tmp / "x", label=str(path)))
            return sha, tree, ()
        key = self._path_tree_hash(path)

        def copy(tmp: Path) -> Path:
            work = tmp / "src"
            shutil.copytree(path, work, symlinks=True, ignore=self._path_ignore(path))
            # Hash the copy too: the cache must hold exactly what its name says.
            if self._path_tree_hash(work) != key:
                raise KernError(f"{path} changed while kernbuild was copying it",
                                "run the command again once the files stop changing")
            return work

        return key, self._tree(key, copy), ()

    def _path_tree_hash(self, path: Path) -> str:
        return tree_hash(path, skip=self._path_ignore(path))

    def _path_ignore(self, path: Path) -> Callable[[str, list[str]], list[str]]:
        """What a ``path`` source leaves out: ``.git`` and, if inside it, this cache.

        ``.git`` changes on every commit (and on ``git status``) without the
        source changing; the cache would otherwise copy itself into itself.
        """
        cache = os.path.realpath(self.root)
        cache_name = os.path.basename(cache)

        def ignore(directory: str, names: list[str]) -> list[str]:
            return [n for n in names if n == ".git" or (
                n == cache_name and os.path.realpath(os.path.join(directory, n)) == cache)]

        return ignore

    # --- the cache --------------------------------------------------------------------

    def _cached_blob(self, sha: str) -> Path | None:
        blob = self.blobs / sha
        return blob if blob.is_file() else None

    def _tree(self, key: str, build: Callable[[Path], Path]) -> Path:
        """``trees/<key>``, made by ``build(tmp)`` if missing; never partial.

        ``build`` fills a fresh temporary directory and returns the directory
        inside it to keep; that one is renamed into place, the rest removed,
        also when ``build`` fails.
        """
        final = self.trees / key
        if final.is_dir():
            return final
        self.trees.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:16]}-", dir=self.trees))
        try:
            content = build(tmp)
            try:
                os.rename(content, final)
            except OSError:
                if not final.is_dir():
                    raise
                # Another process finished the same tree first; its copy is identical.
        finally:
            _rmtree(tmp)
        return final

    def _download(self, url: str, expected: str, recipe: Recipe, *, label: str,
                  expected_from: str, hint: str, note: str = "") -> Path:
        """Download ``url`` into ``blobs/<expected>``, or raise if its sha256 differs.

        The file is written to a temporary name beside the blob and renamed only
        once verified, so the cache never holds an unverified or partial file.
        """
        self.blobs.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=self.blobs)
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, self._open(url, recipe) as response:
                total = _content_length(response)
                done = 0
                self._report(label, done, total)
                try:
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        self._report(label, done, total)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Unreachable(f"download of {url} failed: {self._reason(exc)}",
                                    "try again; check the network connection") from None
            actual = digest.hexdigest()
            if actual != expected:
                raise KernError(
                    f"sha256 mismatch for {url}\n"
                    f"  expected: {expected} (from {expected_from})\n"
                    f"  actual:   {actual}" + (f"\n  note: {note}" if note else "")
                    + "\n  the download was deleted", hint)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache may be shared
            final = self.blobs / expected
            os.replace(tmp, final)  # a concurrent writer wrote the same bytes: harmless
            return final
        except BaseException:  # KeyboardInterrupt too: never leave a partial download
            tmp.unlink(missing_ok=True)
            raise

    def _open(self, url: str, recipe: Recipe, method: str = "GET") -> http.client.HTTPResponse:
        """Open ``url`` for reading: the only place that touches the network.

        Raises:
            _NotFound: HTTP 404 (callers turn it into a message of their own).
            _Unreachable: any other failure, with the URL and a hint.
        """
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT}, method=method)
        hint = (f"check the network connection and the source in {recipe.path} "
                "(proxies are read from http_proxy/https_proxy)")
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 404:
                raise _NotFound(f"not found (HTTP 404): {url}",
                                f"check the source in {recipe.path}") from None
            raise _Unreachable(f"cannot download {url}: HTTP {exc.code} {exc.reason}",
                               hint) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, FileNotFoundError):  # file:// mirrors
                raise _NotFound(f"not found: {url}", f"check the source in {recipe.path}") \
                    from None
            raise _Unreachable(f"cannot download {url}: {self._reason(exc.reason)}", hint) \
                from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise _Unreachable(f"cannot download {url}: {self._reason(exc)}", hint) from None

    def _reason(self, exc: object) -> str:
        if isinstance(exc, TimeoutError):
            return f"timed out after {self.timeout:g} s"
        return str(exc) or type(exc).__name__

    def _report(self, label: str, done: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress(label, done, total)


class _Unreachable(KernError):
    """The network did not deliver a file (any failure but a checksum mismatch)."""


class _NotFound(_Unreachable):
    """HTTP 404: lets callers try elsewhere or explain what is missing."""


# --- tree hashes --------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    """The sha256 of one file's content, as hex."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def tree_hash(root: Path, skip: Callable[[str, list[str]], list[str]] | None = None) -> str:
    """A sha256 over the content of the tree ``root``, as hex.

    Covers every regular file and symlink: its path relative to ``root``,
    whether it is executable (files) and its content sha256 or link target.
    Directories count only through what they hold; mtimes, owners and other
    mode bits are ignored, so the hash is the same wherever and whenever the
    tree was unpacked. Symlinks are not followed.

    Args:
        skip: like :func:`shutil.copytree`'s ``ignore``: ``skip(dir, names)``
            returns the names in ``dir`` to leave out.

    Raises:
        KernError: the tree holds a device file, FIFO or socket.
    """
    entries: list[tuple[bytes, bytes, bytes]] = []
    pending: list[tuple[str, bytes]] = [(str(root), b"")]  # (directory, its relative path/)
    while pending:
        directory, prefix = pending.pop()
        with os.scandir(directory) as scan:
            found = list(scan)
        skipped = set(skip(directory, [e.name for e in found])) if skip else set()
        for entry in found:
            if entry.name in skipped:
                continue
            relative = prefix + os.fsencode(entry.name)
            if entry.is_symlink():
                entries.append((relative, b"l", os.fsencode(os.readlink(entry.path))))
            elif entry.is_dir():
                pending.append((entry.path, relative + b"/"))
            elif entry.is_file():
                mode = entry.stat().st_mode
                with open(entry.path, "rb") as handle:
                    content = hashlib.file_digest(handle, "sha256").digest()
                entries.append((relative, b"x" if mode & 0o111 else b"-", content))
            else:
                raise KernError(f"{entry.path} is a device file, FIFO or socket",
                                "a source tree holds only files, directories and symlinks")
    digest = hashlib.sha256(_TREE_HASH_VERSION)
    for relative, kind, value in sorted(entries):
        # Length-prefixed fields: no file name can make two trees hash alike.
        for field in (relative, kind, value):
            digest.update(len(field).to_bytes(8, "big"))
            digest.update(field)
    return digest.hexdigest()


# --- safe extraction ------------------------------------------------------------------


def extract_archive(archive: Path, dest: Path, label: str | None = None) -> Path:
    """Unpack ``archive`` into the new directory ``dest``, refusing anything unsafe.

    Tar (plain, gzip, xz, bzip2) and zip are recognised by content, not by name.
    Refused: absolute member paths, ``..`` components, links whose target
    leaves the tree, device files and FIFOs. Tar is unpacked with the ``data``
    extraction filter on top of these checks; zip is unpacked member by member.

    Args:
        label: how messages name the archive (its URL, say); defaults to its path.

    Returns:
        The unpacked tree: ``dest``, or its only entry when that is a directory
        (the usual ``name-version/`` top level of a release tarball).

    Raises:
        KernError: naming the archive and the offending member. ``dest`` may
            then hold a partial tree: unpack into a temporary directory.
    """
    label = label or str(archive)
    dest.mkdir(parents=True)
    with open(archive, "rb") as handle:
        magic = handle.read(4)
    # By content: a plain tar that ends with a zip member also "looks like" a zip.
    if magic in (b"PK\x03\x04", b"PK\x05\x06"):
        _extract_zip(archive, dest, label)
    else:
        _extract_tar(archive, dest, label)
    entries = list(dest.iterdir())
    tree = entries[0] if (len(entries) == 1 and entries[0].is_dir()
                          and not entries[0].is_symlink()) else dest
    # Per-member checks see the archive's root; a link may still leave the stripped tree.
    _check_links(tree, label)
    return tree


def _extract_tar(archive: Path, dest: Path, label: str) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                problem = _tar_member_problem(member)
                if problem:
                    raise _refused(label, member.name, problem)
            tar.extractall(dest, filter="data")
    except tarfile.FilterError as exc:
        raise _refused(label, exc.tarinfo.name, str(exc)) from None
    except tarfile.ReadError:
        raise KernError(f"{label} is not an archive kernbuild can unpack",
                        "supported: .tar, .tar.gz/.tgz, .tar.xz, .tar.bz2 and .zip") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise KernError(f"cannot unpack {label}: {exc}",
                        "the archive is damaged; delete it from the cache and fetch again") \
            from None


def _tar_member_problem(member: tarfile.TarInfo) -> str:
    """Why ``member`` must not be unpacked, or ""."""
    problem = _name_problem(member.name)
    if problem:
        return problem
    if member.ischr() or member.isblk() or member.isfifo():
        return "is a device file or FIFO"
    if member.issym():
        return _link_problem(posixpath.dirname(member.name), member.linkname, "symlink")
    if member.islnk():  # hard link targets are relative to the archive root
        return _link_problem("", member.linkname, "hard link")
    return ""


def _extract_zip(archive: Path, dest: Path, label: str) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:  # check everything before writing anything
                problem = _name_problem(info.filename) or _zip_type_problem(info)
                if problem:
                    raise _refused(label, info.filename, problem)
            root = os.path.realpath(dest)
            for info in infos:
                _extract_zip_member(zf, info, dest, root, label)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, NotImplementedError,
            EOFError, OSError, zlib.error, lzma.LZMAError, UnicodeDecodeError) as exc:
        raise KernError(f"cannot unpack {label}: {exc}",
                        "the archive is damaged, encrypted or uses an unsupported "
                        "compression") from None


def _extract_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, root: str,
                        label: str) -> None:
    target = dest / info.filename
    # zipfile.extract() would silently rename bad members; we refuse instead, and
    # check through real paths so that no earlier symlink can redirect a write.
    if not _inside(os.path.realpath(target.parent), root) or target.is_symlink():
        raise _refused(label, info.filename, "would be written through a symlink")
    if info.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = _zip_mode(info)
    if mode is not None and stat.S_ISLNK(mode):
        link = zf.read(info).decode("utf-8")
        problem = _link_problem(posixpath.dirname(info.filename), link, "symlink")
        if problem or not _inside(os.path.realpath(target.parent / link), root):
            raise _refused(label, info.filename, problem or "is a symlink leaving the tree")
        os.symlink(link, target)
        return
    with zf.open(info) as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out, _CHUNK)
    if mode is not None:  # zip keeps Unix modes only when made on Unix; keep the x bit
        os.chmod(target, 0o755 if mode & 0o100 else 0o644)


def _zip_mode(info: zipfile.ZipInfo) -> int | None:
    """The Unix mode stored in a zip member, or None if it was made elsewhere."""
    mode = info.external_attr >> 16
    return mode if info.create_system == 3 and mode else None


def _zip_type_problem(info: zipfile.ZipInfo) -> str:
    mode = _zip_mode(info)
    if mode is not None and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR,
                                                       stat.S_IFLNK):
        return "is a device file, FIFO or socket"
    return ""


def _name_problem(name: str) -> str:
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "has a '..' path component"
    return ""


def _link_problem(directory: str, target: str, what: str) -> str:
    """Why a link in ``directory`` (relative to the archive root) to ``target`` is unsafe."""
    if target.startswith("/") or re.match(r"^[A-Za-z]:", target):
        return f"is a {what} to the absolute path {target}"
    resolved = posixpath.normpath(posixpath.join(directory, target))
    if resolved == ".." or resolved.startswith("../"):
        return f"is a {what} to {target}, outside the tree"
    return ""


def _check_links(tree: Path, label: str) -> None:
    """Refuse any symlink in ``tree`` that, fully resolved, points outside it."""
    root = os.path.realpath(tree)
    for directory, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            path = os.path.join(directory, name)
            if os.path.islink(path) and not _inside(os.path.realpath(path), root):
                raise _refused(label, os.path.relpath(path, tree),
                               f"is a symlink to {os.readlink(path)}, outside the tree")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _refused(label: str, member: str, problem: str) -> KernError:
    return KernError(f"refusing to unpack {label}: member {member!r} {problem}",
                     "the archive is unsafe to unpack; check the source's URL and sha256 "
                     "and ask upstream")


# --- helpers ------------------------------------------------------------------------------


def _dsc_files(dsc: Path, dsc_name: str, recipe: Recipe) -> dict[str, str]:
    """{name: sha256} of the files a verified .dsc lists."""
    from debian.deb822 import Dsc

    # python-debian parses leniently: junk gives None, a dict or short entries.
    entries = Dsc(dsc.read_text(encoding="utf-8", errors="replace")).get("Checksums-Sha256")
    if not isinstance(entries, list) or not entries:
        raise KernError(f"{dsc_name} lists no files in Checksums-Sha256",
                        f"check 'debian' and 'version' in {recipe.path}")
    return _checked_file_list(entries, dsc_name)


def _checked_file_list(entries: object, where: str) -> dict[str, str]:
    """Checksums-Sha256 entries as {name: sha256}; verified, but their names still
    become URL paths, so they must be plain file names."""
    files: dict[str, str] = {}
    for entry in entries if isinstance(entries, list) else ():
        name, file_sha = entry.get("name") or "", (entry.get("sha256") or "").lower()
        if not _DSC_FILE_NAME.match(name) or ".." in name or not _SHA256.match(file_sha):
            raise KernError(f"{where} has a malformed Checksums-Sha256 entry "
                            f"{' '.join(entry.values())!r}",
                            "this is not a well-formed Debian source package")
        files[name] = file_sha
    if not files:
        raise KernError(f"{where} lists no files in Checksums-Sha256",
                        "this is not a well-formed Debian source package")
    return files


def _debian_upstream_tarballs(src: str, names: list[str], dsc_name: str
                              ) -> tuple[str, list[tuple[str, str]]]:
    """The upstream tarball of a .dsc's files, and its (component, name) tarballs."""
    prefix = re.escape(src) + r"_[^_/]+"
    orig = [n for n in names if re.fullmatch(prefix + r"\.orig\.tar\.[A-Za-z0-9]+", n)]
    components = [(m.group(1), n) for n in names if (m := re.fullmatch(
        prefix + r"\.orig-([A-Za-z0-9][A-Za-z0-9-]*)\.tar\.[A-Za-z0-9]+", n))]
    # A native package ("3.0 (native)") has one tarball and no orig.
    native = [n for n in names if re.fullmatch(prefix + r"\.tar\.[A-Za-z0-9]+", n)
              and ".debian.tar." not in n]
    upstream = orig or native
    if not upstream:
        raise KernError(f"{dsc_name} lists no upstream tarball",
                        "expected <source>_<version>.orig.tar.* among its files")
    return upstream[0], sorted(components)


def _apply_subdir(recipe: Recipe, tree: Path) -> Path:
    subdir = recipe.source.subdir
    if not subdir:
        return tree
    target = tree / subdir
    if not _inside(os.path.realpath(target), os.path.realpath(tree)) or not target.is_dir():
        present = sorted(p.name for p in tree.iterdir() if p.is_dir())
        raise KernError(f"{recipe.path}: subdir {subdir!r} is not a directory of the source",
                        "directories at the top of the source: " + (", ".join(present)
                                                                    or "none"))
    return target


def _pinned_sha256(recipe: Recipe) -> str:
    sha = recipe.source.sha256
    if not sha:
        raise KernError(f"{recipe.path}: a {recipe.source.kind} source needs 'sha256'",
                        "download it once and add: sha256: <output of sha256sum>")
    return sha.lower()


def _commit(recipe: Recipe) -> str:
    commit = (recipe.source.commit or "").lower()
    if not _COMMIT.match(commit):
        raise KernError(f"{recipe.path}: a git source needs 'commit', a full commit id",
                        "pin the exact commit (git rev-parse HEAD): branches and tags move")
    return commit


def _local_path(recipe: Recipe) -> Path:
    path = Path(recipe.source.ref)
    if not path.is_absolute():  # the model resolves it; be safe with hand-made recipes
        path = (recipe.path.parent / path).resolve()
    if not path.exists():
        raise KernError(f"{recipe.path}: source path {path} does not exist",
                        "'path:' is relative to the recipe file")
    return path


def _unknown_kind(recipe: Recipe) -> KernError:
    return KernError(f"{recipe.path}: unknown source kind {recipe.source.kind!r}",
                     "use one of pypi, debian, url, git, path")


def _recipe_mismatch_hint(recipe: Recipe) -> str:
    return (f"if upstream re-released the file on purpose, update sha256 in {recipe.path}; "
            "otherwise the download was tampered with")


def _mirror_names(recipe: Recipe, commit: str) -> list[str]:
    """File names a source mirror may hold a git source's tarball under.

    ``<repository>-<commit>.tar.gz`` (the repository's name as upstream spells
    it and in lower case), then ``<recipe>-<commit>.tar.gz``.
    """
    repository = posixpath.basename(recipe.source.ref.rstrip("/"))
    repository = repository.removesuffix(".git")
    names = [f"{n}-{commit}.tar.gz" for n in (repository, repository.lower(), recipe.name) if n]
    return list(dict.fromkeys(names))


def _url_name(url: str) -> str:
    return urllib.parse.unquote(posixpath.basename(urllib.parse.urlsplit(url).path)) or url


def _content_length(response: http.client.HTTPResponse) -> int | None:
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, TypeError, ValueError):
        return None


def _rmtree(path: Path) -> None:
    """Remove a temporary tree, even one an archive left without write permission."""

    def retry(function: Callable[[str], object], name: str, _exc: object) -> None:
        try:
            os.chmod(os.path.dirname(name), stat.S_IRWXU)
            function(name)
        except FileNotFoundError:
            pass

    if not os.path.lexists(path):
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:
        shutil.rmtree(path, onerror=retry)

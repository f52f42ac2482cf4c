"""Upstream releases: which recipes upstream has moved past, and moving a recipe to one.

``kernbuild outdated`` (:func:`outdated`) asks each recipe's upstream what it has
now, and ``kernbuild bump`` (:func:`bump`) moves one recipe to a release, verified,
so that the change is one recipe file. Each source kind has its own upstream:

- ``pypi``: PyPI's JSON API; the newest final (not pre-) release with an sdist that
  is not yanked, ordered by PEP 440 (``packaging.version``);
- ``debian``: the recipe's suite in Debian's archive, read from its Sources index,
  which the suite's InRelease (checked with gpgv against Debian's keyring) vouches
  for; ordered as dpkg orders versions (python-debian);
- ``git``: the tarballs of source mirrors (``<repository>-<commit>.tar.gz``, whose
  top directory carries the version), and the repository's tags through ``git
  ls-remote`` where the network reaches it;
- ``url``: files in source mirrors named like the URL's, with another version.

Lookups wait on the network, so the suite's run concurrently with short timeouts;
one recipe's failure is that recipe's ``unknown`` row, never the end of the table.

A bump edits the text of the recipe at the YAML nodes' own positions (never a
re-dump: comments and layout stay), loads the result with the normal loader and
writes it atomically. The Debian revision rule: a new upstream version starts
again at revision 1; a new Debian source version of the same upstream version (a
``debian`` source whose packaging changed) raises the revision by one, so the
rebuilt package's version sorts above the one already published.
"""

from __future__ import annotations

import difflib
import hashlib
import http.client
import json
import lzma
import os
import re
import subprocess
import tarfile
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from debian.debian_support import Version as DebianVersion
from packaging.version import InvalidVersion
from packaging.version import Version as PythonVersion

from kernbuild.errors import KernError
from kernbuild.fsutil import atomic_write
from kernbuild.recipe import load_recipe
from kernbuild.recipe.document import read_text
from kernbuild.recipe.model import Recipe, Suite
from kernbuild.sources import DEFAULT_PYPI, SourceCache
from kernbuild.sources.http import open_url, url_name
from kernbuild.workspace import Workspace

UP_TO_DATE = "up-to-date"
OUTDATED = "outdated"
UNKNOWN = "unknown"
NOT_TRACKED = "n/a"  # a path source or a metapackage: the suite is its own upstream

#: Seconds one network operation (or one ``git ls-remote``) may stall: an upstream that
#: answers at all answers in well under a second, and the report should take seconds.
TIMEOUT = 10.0
_LOOKUPS_AT_ONCE = 16
_GIT_COMMIT_FILE = re.compile(r"^(?P<name>.+)-(?P<commit>[0-9a-f]{40})\.tar\.gz$")
_DEBIAN_AREAS = ("main", "contrib", "non-free", "non-free-firmware")
_MAX_INDEX = 16 << 20  # bytes of an InRelease file: Debian's are about 150 kB

YamlPath = tuple[str, ...]

_MIRROR_HINT = ("a git or url source moves to a tarball in a source mirror (--source-mirror "
                "DIR, KERNBUILD_SOURCE_MIRROR or source_mirrors: in suite.yaml): put "
                "upstream's there (git: <repository>-<commit>.tar.gz, made by git archive)")


@dataclass(frozen=True)
class Release:
    """One upstream release a recipe could move to.

    Attributes:
        version: the version compared and shown: the upstream version, or for a
            ``debian`` source the Debian source version (``8.4+ds-1``).
        edits: the recipe's values at this release, by YAML path, such as
            ``(("version",), "2.7.2")`` and ``(("source", "sha256"), "...")``.
        origin: where it was found (a URL, a mirror file).
        prerelease: an alpha, beta, rc or dev release: never picked by default.
        file: the source mirror's file of a ``git`` or ``url`` release.
    """

    version: str
    edits: tuple[tuple[YamlPath, str], ...]
    origin: str
    prerelease: bool = False
    file: Path | None = None

    def value(self, path: YamlPath) -> str | None:
        return dict(self.edits).get(path)


@dataclass(frozen=True)
class Lookup:
    """What one recipe's upstream has.

    Attributes:
        current: the recipe's version in the terms of :attr:`Release.version`.
        releases: the releases a bump can move to.
        order: the sort key of a version (PEP 440 or Debian's ordering).
        newest_heard: a newer version upstream names that is no release here (a
            git tag whose tarball no mirror has).
        complete: False when part of upstream could not be asked, so that
            "nothing newer" is not known.
        reason: one line on how the answer was found, or what is missing.
    """

    current: str
    releases: tuple[Release, ...]
    order: Callable[[str], Any]
    newest_heard: str | None = None
    complete: bool = True
    reason: str = ""

    def newest(self) -> Release | None:
        """The newest final release, or None."""
        finals = [r for r in self.releases if not r.prerelease]
        return max(finals, key=lambda r: self.order(r.version)) if finals else None


@dataclass(frozen=True)
class UpstreamStatus:
    """One row of ``kernbuild outdated``."""

    name: str
    kind: str
    current: str
    newest: str | None
    status: str  # UP_TO_DATE, OUTDATED, UNKNOWN or NOT_TRACKED
    reason: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "current": self.current,
                "newest": self.newest, "status": self.status, "reason": self.reason}


@dataclass(frozen=True)
class Bump:
    """What ``kernbuild bump`` did: ``changed`` is False for a no-op."""

    name: str
    path: Path
    old: str
    new: str
    changed: bool
    verified: str  # how the new sum was checked, or why nothing changed
    diff: tuple[str, ...] = ()


class Upstreams:
    """Asks recipes' upstreams what they have, through one source cache.

    The cache gives the network settings (PyPI's URL, Debian's mirror and keyring,
    the source mirrors) and keeps the Sources indexes it downloads, so a second
    report reads them from disk. One instance may be used from several threads.
    """

    def __init__(self, cache: SourceCache, distribution: str, *,
                 git_timeout: float = TIMEOUT) -> None:
        self.cache = cache
        self.distribution = distribution
        self.git_timeout = git_timeout
        self._signed: dict[str, dict[str, str]] = {}  # suite -> its InRelease's sums
        self._indexes: dict[tuple[str, str], bytes] = {}  # (suite, area) -> Sources
        self._index_lock = threading.Lock()
        self._ls_remote: dict[str, tuple[list[str] | None, str]] = {}

    @classmethod
    def for_workspace(cls, workspace: Workspace, suite: Suite, *, pypi: str = DEFAULT_PYPI,
                      timeout: float = TIMEOUT) -> Upstreams:
        """The upstreams as the suite's fetches see them, with short timeouts."""
        base = SourceCache.for_workspace(workspace, suite.settings)
        cache = SourceCache(base.root, base.mirror, pypi=pypi, timeout=timeout,
                            source_mirrors=base.source_mirrors, distribution=base.distribution,
                            keyring=base.keyring)
        return cls(cache, suite.settings.distribution, git_timeout=timeout)

    # --- one recipe -----------------------------------------------------------------

    def lookup(self, recipe: Recipe) -> Lookup:
        """What ``recipe``'s upstream has; KernError when it cannot be asked at all."""
        finder = {"pypi": self._pypi, "debian": self._debian, "git": self._git,
                  "url": self._url}.get(recipe.source.kind)
        if finder is None:
            raise KernError(f"{recipe.name} has no upstream: its source is "
                            f"{_describe_kind(recipe)}",
                            f"its version is the suite's own: edit {recipe.path} by hand")
        return finder(recipe)

    def status(self, recipe: Recipe) -> UpstreamStatus:
        """``recipe``'s row of the report; a failure is an ``unknown`` row, never raised."""
        kind = recipe.source.kind
        if kind in ("path", "none"):
            return UpstreamStatus(recipe.name, kind, recipe.version, None, NOT_TRACKED,
                                  f"no upstream: {_describe_kind(recipe)}")
        current = (recipe.source.version or "") if kind == "debian" else recipe.version
        try:
            lookup = self.lookup(recipe)
        except KernError as exc:
            return UpstreamStatus(recipe.name, kind, current, None, UNKNOWN,
                                  _one_line(exc.message))
        return status_of(recipe, lookup)

    # --- pypi -----------------------------------------------------------------------

    def _pypi(self, recipe: Recipe) -> Lookup:
        project = recipe.source.ref
        url = f"{self.cache.pypi}/pypi/{urllib.parse.quote(project)}/json"
        data = _read_json(url, recipe, self.cache.timeout, f"PyPI has no project {project!r}")
        releases = data.get("releases") if isinstance(data, dict) else None
        if not isinstance(releases, dict):
            raise KernError(f"PyPI's answer for {project} lists no releases ({url})",
                            "try again later; is PyPI reachable?")
        found: list[Release] = []
        final_without_sdist: list[str] = []
        for version, files in releases.items():
            parsed = _python_version(version)
            if parsed is None:  # a legacy version PEP 440 cannot order: not a candidate
                continue
            files = [f for f in files or () if isinstance(f, dict) and not f.get("yanked")]
            sdist = _best_sdist(files)
            if sdist is None:
                if files and not parsed.is_prerelease:
                    final_without_sdist.append(version)
                continue
            sha = str((sdist.get("digests") or {}).get("sha256") or "")
            found.append(Release(
                version, ((("version",), version), (("source", "sha256"), sha)),
                urllib.parse.urljoin(url, str(sdist.get("url"))), parsed.is_prerelease))
        lookup = Lookup(recipe.version, tuple(found), _python_order)
        newest = lookup.newest()
        wheel_only = [v for v in final_without_sdist
                      if newest is None or _python_order(v) > _python_order(newest.version)]
        if wheel_only:
            top = max(wheel_only, key=_python_order)
            lookup = replace(lookup, reason=f"{top} is newer but has no sdist (wheels only)")
        elif newest is None:
            lookup = replace(lookup, reason="no release with an sdist on PyPI")
        return lookup

    # --- debian ---------------------------------------------------------------------

    def _debian(self, recipe: Recipe) -> Lookup:
        src, suite = recipe.source.ref, recipe.source.suite or self.distribution
        found: list[Release] = []
        for area in _DEBIAN_AREAS:
            index = self._sources_index(recipe, suite, area)
            for entry in _paragraphs(index or b"", src):
                version = entry.get("Version", "")
                dsc = f"{src}_{version.split(':', 1)[-1]}.dsc"
                # python-debian: a list of mappings {sha256, size, name}
                listed = entry.get("Checksums-Sha256")
                sums = {str(f.get("name")): str(f.get("sha256") or "").lower()
                        for f in listed if isinstance(f, Mapping)} \
                    if isinstance(listed, list) else {}
                if version and dsc in sums:
                    found.append(Release(version, (
                        (("version",), DebianVersion(version).upstream_version or version),
                        (("source", "version"), version), (("source", "sha256"), sums[dsc])),
                        f"{self.cache.mirror}/dists/{suite}/{area}/source/Sources.xz"))
            if found:
                break
        reason = "" if found else f"{src} is not in {suite}'s source index"
        return Lookup(recipe.source.version or "", tuple(found), _debian_order,
                      complete=bool(found), reason=reason)

    def _sources_index(self, recipe: Recipe, suite: str, area: str) -> bytes | None:
        """The text of ``suite``'s ``area``/source/Sources.xz, verified through the signed
        InRelease; None for an area the suite lacks. Read once per run, suite and area."""
        with self._index_lock:  # one download of each index, however many recipes ask
            if suite not in self._signed:
                self._signed[suite] = self._signed_hashes(recipe, suite)
            name = f"{area}/source/Sources.xz"
            if name not in self._signed[suite]:
                return None
            if (suite, area) not in self._indexes:
                self._indexes[(suite, area)] = self._read_area(
                    recipe, suite, name, self._signed[suite][name])
            return self._indexes[(suite, area)]

    def _signed_hashes(self, recipe: Recipe, suite: str) -> dict[str, str]:
        """{index file: sha256} of the suite's InRelease, once gpgv has checked it."""
        from debian.deb822 import Release as ReleaseFile

        url = f"{self.cache.mirror}/dists/{suite}/InRelease"
        try:
            with open_url(url, recipe, "GET", self.cache.timeout) as response:
                signed = response.read(_MAX_INDEX)
        except (OSError, http.client.HTTPException) as exc:
            raise KernError(f"cannot read {url}: {exc}", "try again later") from None
        release = ReleaseFile(self._gpgv(signed, url))
        return {e["name"]: e["sha256"] for e in release.get("SHA256") or ()}

    def _read_area(self, recipe: Recipe, suite: str, name: str, sha: str) -> bytes:
        cache = self.cache
        # The cache's own download: verified against InRelease's sum and kept, shared
        # with the debian kind's fetch (which reads the same index the same way).
        index = cache._cached_blob(sha) or cache._download(
            f"{cache.mirror}/dists/{suite}/{name}", sha, recipe, label=f"{suite} {name}",
            expected_from=f"{cache.mirror}/dists/{suite}/InRelease (signed)",
            hint="the mirror served a Sources index that its signed InRelease does not "
                 "list; try again or use another mirror")
        try:
            return lzma.decompress(index.read_bytes())
        except lzma.LZMAError as exc:  # verified, so damaged in the cache since
            raise KernError(f"{suite} {name} in the cache is damaged: {exc}",
                            f"delete {index} and try again") from None

    def _gpgv(self, signed: bytes, url: str) -> str:
        # The debian kind's check, so that one place decides what Debian's signature is.
        from kernbuild.sources.debian import Debian

        return Debian(self.cache)._gpgv(signed, url)

    # --- git ------------------------------------------------------------------------

    def _git(self, recipe: Recipe) -> Lookup:
        found = self._mirror_tarballs(recipe)
        tags, failure = self._tags(recipe)
        mirrored = max((r.version for r in found), key=_debian_order, default=None)
        where = (f"a source mirror has {mirrored}" if mirrored
                 else "no source mirror has a tarball" if self.cache.source_mirrors
                 else "no source mirror is configured")
        if tags is None:
            only = f"a source mirror has only {mirrored}" if mirrored and \
                _debian_order(mirrored) <= _debian_order(recipe.version) else where
            return Lookup(recipe.version, tuple(found), _debian_order, complete=False,
                          reason=f"{failure}; {only}")
        finals = [t for t in tags if not _is_prerelease(t)]
        heard = max(finals, key=_debian_order, default=None)
        newer_tag = heard and _debian_order(heard) > _debian_order(mirrored or recipe.version)
        reason = (f"tag {heard} is newer than any tarball in a source mirror ({where}): "
                  f"make one to bump" if newer_tag else "")
        return Lookup(recipe.version, tuple(found), _debian_order, newest_heard=heard,
                      reason=reason)

    def _mirror_tarballs(self, recipe: Recipe) -> list[Release]:
        """The ``<repository>-<commit>.tar.gz`` files of the source mirrors for ``recipe``,
        each with the version its top directory (``<name>-<version>/``) carries."""
        repository = os.path.basename(recipe.source.ref.rstrip("/")).removesuffix(".git")
        names = {repository, repository.lower(), recipe.name}
        found: dict[str, Release] = {}
        for directory in self.cache.source_mirrors:
            for path in sorted(directory.glob("*.tar.gz")) if directory.is_dir() else ():
                match = _GIT_COMMIT_FILE.match(path.name)
                if not match or match.group("name") not in names:
                    continue
                commit = match.group("commit")
                version = _tarball_version(path, match.group("name"))
                if version is None or commit in found:
                    continue
                found[commit] = Release(version, (
                    (("version",), version), (("source", "commit"), commit),
                    (("source", "sha256"), _file_sha256(path))),
                    str(path), _is_prerelease(version), path)
        return list(found.values())

    def _tags(self, recipe: Recipe) -> tuple[list[str] | None, str]:
        """The versions the repository's tags name, or (None, why it could not be asked)."""
        ref = recipe.source.ref
        if ref not in self._ls_remote:  # variants of a recipe share one repository
            self._ls_remote[ref] = _ls_remote_tags(ref, self.git_timeout)
        return self._ls_remote[ref]

    # --- url ------------------------------------------------------------------------

    def _url(self, recipe: Recipe) -> Lookup:
        url, name = recipe.source.ref, url_name(recipe.source.ref)
        if recipe.version not in name:
            return Lookup(recipe.version, (), _debian_order, complete=False,
                          reason=f"the file name {name} does not carry the version, so no "
                                 "other release's name is known")
        before, _, after = name.rpartition(recipe.version)
        pattern = re.compile(re.escape(before) + r"(?P<v>[0-9][A-Za-z0-9.+~]*?)"
                             + re.escape(after) + "$")
        found: list[Release] = []
        for directory in self.cache.source_mirrors:
            for path in sorted(directory.iterdir()) if directory.is_dir() else ():
                match = pattern.match(path.name)
                if match and path.is_file():
                    version = match.group("v")
                    found.append(Release(version, (
                        (("version",), version),
                        (("source", "url"), url[:len(url) - len(name)] + path.name),
                        (("source", "sha256"), _file_sha256(path))),
                        str(path), _is_prerelease(version), path))
        mirrored = max((r.version for r in found), key=_debian_order, default=None)
        # A URL names one file: the network cannot be asked which others there are.
        return Lookup(recipe.version, tuple(found), _debian_order, complete=False,
                      reason="url sources are looked up in source mirrors only; "
                             + (f"they have {mirrored}" if mirrored
                                else f"none has another {before}*{after}"))


def status_of(recipe: Recipe, lookup: Lookup) -> UpstreamStatus:
    """The report's row for ``recipe``, from what its upstream has."""
    newest_release = lookup.newest()
    known = [v for v in (newest_release and newest_release.version, lookup.newest_heard) if v]
    kind = recipe.source.kind
    if not known:
        return UpstreamStatus(recipe.name, kind, lookup.current, None, UNKNOWN,
                              lookup.reason or "upstream lists no release")
    newest = max(known, key=lookup.order)
    if lookup.order(newest) > lookup.order(lookup.current):
        return UpstreamStatus(recipe.name, kind, lookup.current, newest, OUTDATED,
                              lookup.reason)
    if not lookup.complete:
        return UpstreamStatus(recipe.name, kind, lookup.current, newest, UNKNOWN,
                              lookup.reason)
    reason = lookup.reason
    if lookup.order(newest) < lookup.order(lookup.current):
        reason = f"newer than upstream's newest final release ({newest})"
    return UpstreamStatus(recipe.name, kind, lookup.current, newest, UP_TO_DATE, reason)


def outdated(upstreams: Upstreams, suite: Suite, names: Iterable[str] = ()
             ) -> list[UpstreamStatus]:
    """The report: each recipe of ``suite`` (or of ``names``), by name, with its upstream's
    newest version. Unknown names raise KernError before anything is asked."""
    wanted = [suite.get(n) for n in names] or list(suite.recipes)
    recipes = sorted({r.name: r for r in wanted}.values(), key=lambda r: r.name)
    with ThreadPoolExecutor(max_workers=_LOOKUPS_AT_ONCE) as pool:
        return list(pool.map(upstreams.status, recipes))


# --- bump --------------------------------------------------------------------------------


def bump(upstreams: Upstreams, suite: Suite, name: str, version: str | None = None) -> Bump:
    """Move recipe ``name`` to upstream's ``version`` (default: the newest final release).

    The new sum is verified before the file changes: a PyPI sdist is downloaded
    through the source cache and checked against PyPI's published sha256; a Debian
    source's .dsc sum comes from the signed Sources index; a mirror's tarball is
    checked against the mirror's SHA256SUMS where it has one, and unpacked. Then
    the recipe's values are rewritten in place, the result loaded with the normal
    loader and written atomically.

    Raises:
        KernError: an unknown recipe or version, an upstream that cannot be asked,
            a sum that does not verify (the recipe is left unchanged).
    """
    recipe = suite.get(name)
    lookup = upstreams.lookup(recipe)
    target = _target(recipe, lookup, version)
    current = lookup.current
    if target is None:
        return Bump(recipe.name, recipe.path, current, current, False,
                    f"{current} is newer than upstream's newest final release")
    if lookup.order(target.version) == lookup.order(current):
        why = f"already at {current}" + ("" if version else ", upstream's newest" if
                                         lookup.complete else f", the newest known here "
                                         f"({lookup.reason})")
        sha = target.value(("source", "sha256"))
        if sha and recipe.source.sha256 and sha != recipe.source.sha256.lower():
            why += (f"; but upstream's sha256 of it is {sha}, not the recipe's "
                    f"{recipe.source.sha256}: find out which is right")
        return Bump(recipe.name, recipe.path, current, current, False, why)
    verified = _verify(upstreams.cache, recipe, target)
    text = read_text(recipe.path)  # bounded, as the loader reads it
    new_text = edit_recipe_text(text, _edits(recipe, target), recipe.path)
    _check_and_write(recipe, new_text, target)
    diff = tuple(difflib.unified_diff(text.splitlines(), new_text.splitlines(),
                                      str(recipe.path), str(recipe.path), lineterm=""))
    return Bump(recipe.name, recipe.path, lookup.current, target.version, True, verified, diff)


def _target(recipe: Recipe, lookup: Lookup, version: str | None) -> Release | None:
    """The release to move to; None when there is nothing newer than the recipe."""
    if version is None:
        newest = lookup.newest()
        if newest is None:
            raise KernError(f"no release of {recipe.name} to bump to: "
                            f"{lookup.reason or 'upstream lists none'}",
                            _MIRROR_HINT if recipe.source.kind in ("git", "url")
                            else f"see kernbuild outdated {recipe.name}")
        if lookup.order(newest.version) < lookup.order(lookup.current):
            return None  # the recipe is ahead of upstream's newest final release
        return newest
    for release in lookup.releases:
        if release.version == version:
            return release
    for release in lookup.releases:  # "2.7.01" is PyPI's "2.7.1"
        if lookup.order(release.version) == lookup.order(version):
            return release
    names = sorted({r.version for r in lookup.releases}, key=lookup.order, reverse=True)
    heard = (f"; upstream's tag {version} has no tarball in a source mirror"
             if lookup.newest_heard == version else "")
    raise KernError(f"{recipe.name} has no release {version} to bump to "
                    f"({recipe.source.kind} source){heard}",
                    f"releases there: {', '.join(names[:8])}" if names
                    else lookup.reason or "upstream lists none")


def _verify(cache: SourceCache, recipe: Recipe, target: Release) -> str:
    """Check the release's sum before the recipe takes it; how it was checked."""
    sha = target.value(("source", "sha256")) or ""
    if recipe.source.kind == "debian":
        return f"the .dsc's sha256 from the signed index {target.origin}"
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise KernError(f"{recipe.source.kind} {recipe.name} {target.version}: upstream "
                        f"publishes no sha256 to verify it by ({target.origin})",
                        f"download it, check it and edit {recipe.path} by hand")
    how = "PyPI's published sha256"
    if target.file is not None:
        listed = _listed_sum(target.file)
        if listed is not None and listed != sha:
            raise KernError(f"sha256 mismatch for {target.file}\n"
                            f"  SHA256SUMS: {listed}\n  actual:     {sha}",
                            "the source mirror's file is damaged or tampered with: replace "
                            "it with upstream's")
        how = ("the source mirror's SHA256SUMS" if listed
               else "the source mirror's file (it has no SHA256SUMS)")
    # Fetching the would-be recipe is the build's own fetch: download (or mirror) to
    # the cache, check against the sum, unpack. A mismatch raises; the file stays as is.
    source = replace(recipe.source, sha256=sha, commit=target.value(("source", "commit"))
                     or recipe.source.commit, ref=target.value(("source", "url"))
                     or recipe.source.ref)
    cache.fetch(replace(recipe, version=target.value(("version",)) or recipe.version,
                        source=source))
    return f"{how}; fetched and unpacked"


def _edits(recipe: Recipe, target: Release) -> list[tuple[YamlPath, str | int, YamlPath]]:
    """(path, value, insert-after path) of each change; the revision rule is here."""
    # A git source's sha256 is optional: where it is missing it goes after the commit.
    edits: list[tuple[YamlPath, str | int, YamlPath]] = [
        (path, value, ("source", "commit") if path == ("source", "sha256") else path)
        for path, value in target.edits if value != _current_value(recipe, path)]
    if (target.value(("version",)) or recipe.version) != recipe.version:
        if recipe.revision != 1:  # only a written revision can differ from the default 1
            edits.append((("revision",), 1, ("version",)))
    else:  # the same upstream code, other Debian packaging: the package must sort above
        edits.append((("revision",), recipe.revision + 1, ("version",)))
    return edits


def _current_value(recipe: Recipe, path: YamlPath) -> str | None:
    source = recipe.source
    return {("version",): recipe.version, ("source", "sha256"): source.sha256,
            ("source", "version"): source.version, ("source", "commit"): source.commit,
            ("source", "url"): source.ref if source.kind == "url" else None}.get(path)


def _check_and_write(recipe: Recipe, text: str, target: Release) -> None:
    """Load ``text`` as the recipe with the normal loader (beside the real file, so its
    patches resolve), check it says what was meant, then replace the file atomically."""
    probe = recipe.path.with_name(f".{recipe.path.name}.bump-{os.getpid()}")
    try:
        atomic_write(probe, text)
        loaded = load_recipe(probe)
    finally:
        probe.unlink(missing_ok=True)
    wanted = {"version": target.value(("version",)) or recipe.version,
              "sha256": target.value(("source", "sha256")),
              "source version": target.value(("source", "version")) or recipe.source.version,
              "commit": target.value(("source", "commit")) or recipe.source.commit}
    got = {"version": loaded.version, "sha256": loaded.source.sha256,
           "source version": loaded.source.version, "commit": loaded.source.commit}
    if wanted != got:  # an edit landed elsewhere than meant: a bug, never a silent write
        raise KernError(f"{recipe.path}: the edited recipe does not say what was meant "
                        f"({got} instead of {wanted}); the file is unchanged",
                        "edit the recipe by hand, and report this")
    atomic_write(recipe.path, text, mode=recipe.path.stat().st_mode & 0o777)


# --- editing YAML text in place ------------------------------------------------------


def edit_recipe_text(text: str, edits: Iterable[tuple[YamlPath, str | int, YamlPath]],
                     path: Path) -> str:
    """``text`` with the scalars at each YAML path replaced, written in the style the old
    value had (plain, "double" or 'single' quoted); comments and layout stay.

    A key that is not written is inserted on the line after the value at the edit's
    third element (its sibling), at that key's indentation.
    """
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    spans: list[tuple[int, int, str]] = []
    for key_path, value, after in edits:
        node = _node(root, key_path)
        if node is not None:
            if not isinstance(node, yaml.ScalarNode):
                raise KernError(f"{path}: {'.'.join(key_path)} is not a plain value",
                                "edit the recipe by hand")
            spans.append((node.start_mark.index, node.end_mark.index,
                          _scalar(value, node.style)))
            continue
        sibling, key = _key_node(root, after), key_path[-1]
        parent = _node(root, key_path[:-1])
        if sibling is None or not isinstance(parent, yaml.MappingNode) or parent.flow_style:
            raise KernError(f"{path}: cannot add {'.'.join(key_path)}: the recipe is not "
                            "laid out as kernbuild expects", "edit the recipe by hand")
        end = text.find("\n", _node(root, after).end_mark.index)
        end = len(text) if end < 0 else end
        line = f"\n{' ' * sibling.start_mark.column}{key}: {_scalar(value, None)}"
        spans.append((end, end, line))
    for start, end, new in sorted(spans, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def _key_node(root: yaml.Node, path: YamlPath) -> yaml.Node | None:
    parent = _node(root, path[:-1])
    if isinstance(parent, yaml.MappingNode):
        for key, _ in parent.value:
            if isinstance(key, yaml.ScalarNode) and key.value == path[-1]:
                return key
    return None


def _node(root: yaml.Node, path: YamlPath) -> yaml.Node | None:
    node: yaml.Node | None = root
    for part in path:
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next((v for k, v in node.value
                     if isinstance(k, yaml.ScalarNode) and k.value == part), None)
    return node


def _scalar(value: str | int, style: str | None) -> str:
    """``value`` as YAML in the old value's quoting; plain only where it reads back as is."""
    if isinstance(value, int):
        return str(value)
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style is None and value and _reads_back(value):
        return value
    return json.dumps(value)  # a double-quoted YAML scalar, for what JSON can escape


def _reads_back(value: str) -> bool:
    try:
        return yaml.safe_load(f"k: {value}") == {"k": value}
    except yaml.YAMLError:
        return False


# --- helpers --------------------------------------------------------------------------


def _read_json(url: str, recipe: Recipe, timeout: float, missing: str) -> Any:
    from kernbuild.sources.http import NotFound

    try:
        with open_url(url, recipe, "GET", timeout) as response:
            return json.loads(response.read())
    except NotFound:
        raise KernError(f"{missing} ({url})", f"check 'source:' in {recipe.path}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise KernError(f"cannot read {url}: {exc}", "try again later") from None


def _best_sdist(files: list[dict]) -> dict | None:
    """The sdist the recipe would pin: a .tar.gz before a .zip (old releases have both)."""
    sdists = [f for f in files if f.get("packagetype") == "sdist"
              and isinstance(f.get("url"), str)]
    sdists.sort(key=lambda f: not str(f.get("filename", "")).endswith(".tar.gz"))
    return sdists[0] if sdists else None


def _python_version(text: str) -> PythonVersion | None:
    try:
        return PythonVersion(text)
    except InvalidVersion:
        return None


# Sort keys: (True, version) for a version the ordering reads; (False, text) below every
# such one for what it cannot read, so a bad version sorts first and equals only itself.
def _python_order(text: str) -> tuple[bool, Any]:
    parsed = _python_version(text)
    return (True, parsed) if parsed is not None else (False, text)


def _debian_order(text: str) -> tuple[bool, Any]:
    try:
        return True, DebianVersion(text)
    except ValueError:
        return False, text


def _is_prerelease(version: str) -> bool:
    """alpha, beta, rc, dev (PEP 440's reading where it can read the version, else ~)."""
    parsed = _python_version(version)
    return parsed.is_prerelease if parsed is not None else "~" in version


def _paragraphs(index: bytes, src: str) -> list[Mapping[str, Any]]:
    """The Sources paragraphs of ``src``: found by a plain search of the bytes, since
    parsing all 40,000 paragraphs of main with python-debian (or a regular expression
    over its 57 MB) takes seconds."""
    from debian.deb822 import Sources

    found = []
    needle = b"\nPackage: " + src.encode() + b"\n"
    start = 0 if index.startswith(needle[1:]) else index.find(needle)
    while start >= 0:
        end = index.find(b"\n\n", start + 1)
        paragraph = index[start:end if end >= 0 else None].decode("utf-8", "replace")
        found += [e for e in Sources.iter_paragraphs(paragraph, use_apt_pkg=False)
                  if e.get("Package") == src]
        start = index.find(needle, start + 1)
    return found


def _tarball_version(path: Path, name: str) -> str | None:
    """The version in a ``git archive --prefix=<name>-<version>/`` tarball's top directory."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            first = tar.next()
    except (OSError, tarfile.TarError, EOFError):
        return None
    top = (first.name if first else "").lstrip("./").split("/", 1)[0]
    match = re.match(rf"^(?:{re.escape(name)}-|.*?-)(?=\d)(?P<v>.+)$", top, re.I)
    return match.group("v") if match else None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _listed_sum(path: Path) -> str | None:
    """The sum a ``SHA256SUMS`` beside ``path`` lists for it, if there is one."""
    sums = path.parent / "SHA256SUMS"
    if not sums.is_file():
        return None
    for line in sums.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == path.name:
            return parts[0].lower()
    return None


def _ls_remote_tags(ref: str, timeout: float) -> tuple[list[str] | None, str]:
    """The versions the tags of repository ``ref`` name (``v6.0.1`` -> ``6.0.1``), or
    (None, one line on why the repository could not be asked)."""
    host = urllib.parse.urlsplit(ref).hostname or ref
    # Never prompt for credentials: a report must fail, not hang.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        result = subprocess.run(["git", "ls-remote", "--tags", "--", ref], env=env,
                                capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return None, "git is not installed (apt-get install git)"
    except subprocess.TimeoutExpired:
        return None, f"{host} unreachable (no answer in {timeout:g} s)"
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        # The first "fatal:" says why; what follows is advice ("make sure ... exists").
        detail = next((line for line in lines if line.startswith("fatal: ")),
                      lines[-1] if lines else "git ls-remote failed")
        detail = detail.rsplit("': ", 1)[-1].removeprefix("fatal: ").removesuffix(f": {host}")
        return None, f"{host} unreachable ({detail.lower()})"
    versions = []
    for line in result.stdout.splitlines():
        tag = line.rpartition("refs/tags/")[2].removesuffix("^{}")
        # "v6.0.1", "V3.2", "release-1.2", "dysco-1.3": the version starts at the first
        # digit after a word prefix; other tags ("latest", "paper-2019") are no versions.
        match = re.fullmatch(r"(?:[A-Za-z]+[-_]?)?(\d[0-9A-Za-z.+~-]*)", tag)
        if match and _python_version(match.group(1)) is not None:
            versions.append(match.group(1))
    return sorted(set(versions), key=_debian_order), ""


def _describe_kind(recipe: Recipe) -> str:
    return ("a path in the suite" if recipe.source.kind == "path"
            else "none (a metapackage or pipeline)")


def _one_line(message: str) -> str:
    return " ".join(message.split())

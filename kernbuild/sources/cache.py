"""The content-addressed source cache, and its dispatch to the source kinds.

The recipe's ``sha256`` is the authority for every remote source: a download
that does not match it is deleted and refused with both sums, never used.

Source mirrors are local directories of upstream files for hosts that cannot
reach an upstream (GitHub, from these build machines). They are searched, by
file name, before the network, as Yocto's premirrors are (each kind says which
names: :meth:`SourceKind.mirror_names`). A mirror's file is verified against
the recipe's ``sha256`` like a download, so a tampered one is refused, never used.

Cache layout under ``root`` (``Workspace.sources``)::

    blobs/<sha256>        verified downloads, content-addressed
    trees/<key>/          unpacked trees, keyed by :meth:`SourceCache.key`
    tree-hashes/<key>     the :func:`tree_hash` of trees/<key>, recorded when it was made

Every write is atomic: a download goes to a temporary file beside its final
name and is renamed once verified; a tree is built in a temporary directory
and renamed into place (its tree hash recorded first). Two processes fetching
the same source at once (``--jobs``) both succeed: whoever renames second
discards its own copy and uses the first one's, which is identical by
construction. A process killed mid-download leaves only a ``.tmp-*`` name,
which no lookup sees and a later run removes once it is older than
:data:`STALE_TEMPORARY` seconds.

What is in the cache is reused without touching the network, but only once
it is verified again: a blob must still hash to its name and a tree to its
recorded tree hash. An entry that does not (a flipped bit on disk, a build
that wrote into a shared tree) is removed and made again, from its blob or
the network, never used.

Network faults are handled in :mod:`.http`: stalls, resets and 5xx answers
are retried within :class:`~.http.NetLimits`, then refused with the URL and
the reason.
"""

from __future__ import annotations

import http.client
import io
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kernbuild.errors import KernError
from kernbuild.recipe.model import Recipe, SuiteSettings
from kernbuild.sources.debian import DEBIAN_KEYRING, DEFAULT_MIRROR, Debian
from kernbuild.failpoints import boundary
from kernbuild.fsutil import atomic_write, remove_tree
from kernbuild.sources.extract import inside
from kernbuild.sources.git import Git
from kernbuild.sources.http import (
    DEFAULT_TIMEOUT, NetLimits, Unreachable, network_hint, open_url, retrying, stream,
)
from kernbuild.sources.kind import SourceKind, SourceLocation
from kernbuild.sources.none import NoSource
from kernbuild.sources.path import LocalPath
from kernbuild.sources.pypi import DEFAULT_PYPI, PyPI
from kernbuild.sources.treehash import file_sha256, tree_hash
from kernbuild.sources.url import Url
from kernbuild.workspace import Workspace

#: The source kinds by the name a recipe gives them (``recipe.source.kind``;
#: ``none`` is a metapackage's). A new kind is a module and a line here.
KINDS: dict[str, type[SourceKind]] = {
    "pypi": PyPI,
    "debian": Debian,
    "url": Url,
    "git": Git,
    "path": LocalPath,
    "none": NoSource,
}

#: ``progress(label, bytes_done, bytes_total_or_None)``, called while downloading.
Progress = Callable[[str, int, int | None], None]

#: Seconds after which a ``.tmp-*`` entry of the cache is a dead process's leftover. No
#: live writer leaves one untouched that long: a download writes at least every
#: ``NetLimits.timeout`` seconds and ends within ``attempts * deadline``.
STALE_TEMPORARY = 24 * 3600.0


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


class SourceCache:
    """Fetches recipes' sources into a content-addressed cache under ``root``.

    Args:
        root: the cache directory (created on demand), normally ``Workspace.sources``.
        mirror: the Debian mirror for ``debian`` sources (``SuiteSettings.mirror``).
        progress: optional ``progress(label, bytes_done, total_or_None)`` callback,
            called while downloading so that the CLI can draw progress bars.
        pypi: the base URL of PyPI's JSON API (tests point it at a local server).
        timeout: seconds a network operation may stall before it fails.
        limits: every network limit (:class:`~.http.NetLimits`); when given,
            its ``timeout`` is used and ``timeout`` is ignored.

    The object holds configuration only; every piece of state is on disk, so
    several instances (or processes) may share one ``root``. Its underscored
    methods are what the kinds (:data:`KINDS`) build on, not an API for callers.
    """

    def __init__(self, root: Path, mirror: str = DEFAULT_MIRROR,
                 progress: Progress | None = None, *, pypi: str = DEFAULT_PYPI,
                 timeout: float = DEFAULT_TIMEOUT,
                 source_mirrors: tuple[Path, ...] = (), distribution: str = "trixie",
                 keyring: Path = DEBIAN_KEYRING, limits: NetLimits | None = None) -> None:
        self.root = Path(root)
        self.mirror = mirror.rstrip("/")
        self.progress = progress
        self.pypi = pypi.rstrip("/")
        self.limits = limits or NetLimits(timeout=timeout)
        self.timeout = self.limits.timeout
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

    @property
    def tree_hashes(self) -> Path:
        """The recorded :func:`tree_hash` of each tree, named like the tree."""
        return self.root / "tree-hashes"

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
        return self._kind(recipe).key(recipe)

    def locate(self, recipe: Recipe) -> SourceLocation:
        """Where :meth:`fetch` would get ``recipe``'s source now, without fetching it.

        The cache and the source mirrors are looked at first, as fetch does; the
        network is only asked whether it has the file (PyPI's JSON, an HTTP HEAD,
        ``git ls-remote``), so this answers in about a second per recipe. The one
        download: a ``debian`` source whose ``.dsc`` the mirror lacks is looked up
        in the signed Sources index, which is cached like any download.
        """
        kind, sha = self._kind(recipe), recipe.source.sha256
        known = kind.known_location(recipe)
        if known is not None:
            return known
        if sha and self._cached_blob(sha):
            return SourceLocation("cache", str(self.blobs / sha))
        if sha and self._cached_tree(sha):  # a debian source fetched without its .dsc
            return SourceLocation("cache", str(self.trees / sha))
        tree = kind.cached_tree(recipe)
        if tree is not None:
            return SourceLocation("cache", str(tree))
        names = kind.mirror_names(recipe)
        for directory in self.source_mirrors if sha else ():
            for name in names:
                if (directory / name).is_file():
                    return SourceLocation("mirror", str(directory / name))
        try:
            return SourceLocation("network", kind.probe(recipe))
        except KernError as exc:
            return SourceLocation("missing", exc.message)

    def fetch(self, recipe: Recipe) -> FetchedSource:
        """Make ``recipe``'s source available in the cache, verified and unpacked.

        Uses the network only for what the cache lacks.

        Raises:
            KernError: a checksum mismatch, a network failure, an unsafe or
                unreadable archive, a missing commit, path or ``subdir``.
        """
        sha256, tree, files = self._kind(recipe).fetch(recipe)
        return FetchedSource(sha256, _apply_subdir(recipe, tree), files)

    def _kind(self, recipe: Recipe) -> SourceKind:
        return KINDS.get(recipe.source.kind, SourceKind)(self)

    # --- what the kinds build on -------------------------------------------------------

    def _cached_blob(self, sha: str) -> Path | None:
        """``blobs/<sha>`` if it is there and still hashes to ``sha``, else None.

        A blob that no longer matches (the disk flipped a bit, someone edited it)
        is removed, so that the caller fetches it again instead of using it.
        """
        blob = self.blobs / sha
        if not blob.is_file():
            return None
        if file_sha256(blob) == sha:
            return blob
        blob.unlink(missing_ok=True)
        return None

    def _cached_tree(self, key: str) -> Path | None:
        """``trees/<key>`` if it is there and still matches its recorded tree hash, else None.

        A tree that does not match, or has no record (a crash, or an older
        kernbuild, made it), is removed: the caller builds it again.
        """
        final = self.trees / key
        if not final.is_dir():
            return None
        recorded = self._recorded_tree_hash(key)
        if recorded and tree_hash(final) == recorded:
            return final
        self._discard_tree(final)
        return None

    def _recorded_tree_hash(self, key: str) -> str | None:
        try:
            return (self.tree_hashes / key).read_text().strip() or None
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _discard_tree(self, final: Path) -> None:
        # Renamed away first, so that no reader sees a half-deleted tree under its name.
        doomed = final.with_name(f".tmp-discard-{final.name[:16]}-{os.getpid()}")
        try:
            os.rename(final, doomed)
        except FileNotFoundError:
            return  # another process discarded it first
        remove_tree(doomed)

    def _tree(self, key: str, build: Callable[[Path], Path]) -> Path:
        """``trees/<key>``, made by ``build(tmp)`` if missing or damaged; never partial.

        ``build`` fills a fresh temporary directory and returns the directory
        inside it to keep; its tree hash is recorded, then it is renamed into
        place and the rest removed, also when ``build`` fails.
        """
        final = self._cached_tree(key)
        if final is not None:
            return final
        final = self.trees / key
        self.trees.mkdir(parents=True, exist_ok=True)
        _sweep(self.trees)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key[:16]}-", dir=self.trees))
        try:
            content = build(tmp)
            # Recorded before the rename: a tree under its final name always has a record.
            # A concurrent builder of the same key writes the same hash.
            atomic_write(self.tree_hashes / key, tree_hash(content) + "\n")
            boundary("commit:source-tree")
            try:
                os.rename(content, final)
            except OSError:
                if not final.is_dir():
                    raise
                # Another process finished the same tree first; its copy is identical.
        finally:
            remove_tree(tmp)
        return final

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

    def _download(self, url: str, expected: str, recipe: Recipe, *, label: str,
                  expected_from: str, hint: str, note: str = "") -> Path:
        """Download ``url`` into ``blobs/<expected>``, or raise if its sha256 differs.

        The file is written to a temporary name beside the blob and renamed only
        once verified, so the cache never holds an unverified or partial file.
        Transient failures are retried within ``self.limits``; so is a wrong
        sha256, ``limits.mismatch_retries`` times (a mirror mid-sync serves the
        old file for a while), except from a local source mirror.

        Raises:
            NotFound: HTTP 404.
            Unreachable: the network failed, after the retries; the URL and why.
            KernError: the file's sha256 is not ``expected``, with both sums.
        """
        self.blobs.mkdir(parents=True, exist_ok=True)
        _sweep(self.blobs)
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=self.blobs)
        tmp = Path(tmp_name)
        mismatches = 0
        try:
            with os.fdopen(fd, "wb") as out:
                def attempt(number: int) -> str:
                    nonlocal mismatches
                    out.seek(0)
                    out.truncate()  # a retry starts over: nothing of a failed try is kept
                    with self._open(url, recipe) as response:
                        actual = stream(response, url, out, self.limits,
                                        lambda done, total: self._report(label, done, total),
                                        hint=network_hint(recipe))
                    if actual != expected and not url.startswith("file:") \
                            and mismatches < self.limits.mismatch_retries \
                            and number < self.limits.attempts:
                        mismatches += 1
                        raise Unreachable(f"sha256 mismatch for {url}", transient=True)
                    return actual

                actual = retrying(self.limits, attempt)
            if actual != expected:
                tried = f" (fetched {mismatches + 1} times)" if mismatches else ""
                raise KernError(
                    f"sha256 mismatch for {url}{tried}\n"
                    f"  expected: {expected} (from {expected_from})\n"
                    f"  actual:   {actual}" + (f"\n  note: {note}" if note else "")
                    + "\n  the download was deleted", hint)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache may be shared
            final = self.blobs / expected
            boundary("commit:source-blob")
            os.replace(tmp, final)  # a concurrent writer wrote the same bytes: harmless
            return final
        except BaseException:  # KeyboardInterrupt too: never leave a partial download
            tmp.unlink(missing_ok=True)
            raise

    def _read(self, url: str, recipe: Recipe, max_bytes: int | None = None) -> bytes:
        """The body of ``url`` (an index, an API answer), retried like a download.

        At most ``max_bytes`` (default ``limits.max_document``) are held in memory.
        """
        def attempt(number: int) -> bytes:
            buffer = io.BytesIO()
            with self._open(url, recipe) as response:
                stream(response, url, buffer, self.limits, lambda done, total: None,
                       max_bytes=max_bytes or self.limits.max_document,
                       hint=network_hint(recipe))
            return buffer.getvalue()

        return retrying(self.limits, attempt)

    def _head(self, url: str, recipe: Recipe) -> None:
        """Whether the network has ``url`` (an HTTP HEAD), retried like a download.

        Raises:
            NotFound, Unreachable: as :meth:`_open`.
        """
        retrying(self.limits, lambda number: self._open(url, recipe, method="HEAD").close())

    def _open(self, url: str, recipe: Recipe, method: str = "GET") -> http.client.HTTPResponse:
        """Open ``url`` for reading, once: the only place that touches the network.

        Raises:
            NotFound: HTTP 404 (callers turn it into a message of their own).
            Unreachable: any other failure, with the URL and a hint.
        """
        return open_url(url, recipe, method, self.timeout)

    def _report(self, label: str, done: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress(label, done, total)


def _sweep(directory: Path) -> None:
    """Remove the ``.tmp-*`` leftovers of dead processes from ``directory``.

    Only those untouched for :data:`STALE_TEMPORARY` seconds: a younger one may
    belong to a live process writing it now.
    """
    cutoff = time.time() - STALE_TEMPORARY
    for entry in directory.glob(".tmp-*"):
        try:
            if entry.lstat().st_mtime < cutoff:
                if entry.is_dir() and not entry.is_symlink():
                    remove_tree(entry)
                else:
                    entry.unlink()
        except OSError:
            pass  # gone meanwhile, or not ours to remove: lookups never see it anyway


def _apply_subdir(recipe: Recipe, tree: Path) -> Path:
    subdir = recipe.source.subdir
    if not subdir:
        return tree
    target = tree / subdir
    if not inside(os.path.realpath(target), os.path.realpath(tree)) or not target.is_dir():
        present = sorted(p.name for p in tree.iterdir() if p.is_dir())
        raise KernError(f"{recipe.path}: subdir {subdir!r} is not a directory of the source",
                        "directories at the top of the source: " + (", ".join(present)
                                                                    or "none"))
    return target

"""``path``: a local directory (copied) or archive file (unpacked), relative to the recipe."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from kernbuild.errors import KernError
from kernbuild.recipe.model import Recipe
from kernbuild.sources.extract import extract_archive
from kernbuild.sources.kind import Fetched, SourceKind, SourceLocation
from kernbuild.sources.treehash import file_sha256, tree_hash


class LocalPath(SourceKind):
    """A directory or archive on this machine: keyed by its content, never downloaded."""

    def key(self, recipe: Recipe) -> str:
        path = _local_path(recipe)
        return file_sha256(path) if path.is_file() else self._tree_hash(path)

    def known_location(self, recipe: Recipe) -> SourceLocation:
        path = Path(recipe.source.ref)
        return SourceLocation("local" if path.exists() else "missing", str(path))

    def fetch(self, recipe: Recipe) -> Fetched:
        path = _local_path(recipe)
        if path.is_file():
            sha = file_sha256(path)
            tree = self.cache._tree(
                sha, lambda tmp: extract_archive(path, tmp / "x", label=str(path)))
            return sha, tree, ()
        key = self._tree_hash(path)

        def copy(tmp: Path) -> Path:
            work = tmp / "src"
            shutil.copytree(path, work, symlinks=True, ignore=self._ignore(path))
            # Hash the copy too: the cache must hold exactly what its name says.
            if self._tree_hash(work) != key:
                raise KernError(f"{path} changed while kernbuild was copying it",
                                "run the command again once the files stop changing")
            return work

        return key, self.cache._tree(key, copy), ()

    def _tree_hash(self, path: Path) -> str:
        return tree_hash(path, skip=self._ignore(path))

    def _ignore(self, path: Path) -> Callable[[str, list[str]], list[str]]:
        """What a ``path`` source leaves out: ``.git`` and, if inside it, this cache.

        ``.git`` changes on every commit (and on ``git status``) without the
        source changing; the cache would otherwise copy itself into itself.
        """
        cache = os.path.realpath(self.cache.root)
        cache_name = os.path.basename(cache)

        def ignore(directory: str, names: list[str]) -> list[str]:
            return [n for n in names if n == ".git" or (
                n == cache_name and os.path.realpath(os.path.join(directory, n)) == cache)]

        return ignore


def _local_path(recipe: Recipe) -> Path:
    path = Path(recipe.source.ref)
    if not path.is_absolute():  # the model resolves it; be safe with hand-made recipes
        path = (recipe.path.parent / path).resolve()
    if not path.exists():
        raise KernError(f"{recipe.path}: source path {path} does not exist",
                        "'path:' is relative to the recipe file")
    return path

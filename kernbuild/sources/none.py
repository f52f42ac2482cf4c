"""``none``: a metapackage has no upstream source, so its tree is empty."""

from __future__ import annotations

from pathlib import Path

from kernbuild.recipe.model import Recipe
from kernbuild.sources.kind import Fetched, SourceKind, SourceLocation
from kernbuild.sources.treehash import EMPTY_TREE_KEY


class NoSource(SourceKind):
    """The source of a metapackage (``build: {system: none}``): nothing to fetch."""

    def key(self, recipe: Recipe) -> str:
        return EMPTY_TREE_KEY

    def known_location(self, recipe: Recipe) -> SourceLocation:
        return SourceLocation("none", "a metapackage has no source")

    def fetch(self, recipe: Recipe) -> Fetched:
        return EMPTY_TREE_KEY, self.cache._tree(EMPTY_TREE_KEY, _empty_tree), ()


def _empty_tree(tmp: Path) -> Path:
    path = tmp / "x"
    path.mkdir(parents=True)
    return path

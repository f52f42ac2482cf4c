"""What a source kind is: the interface each kind's module implements, and rules they share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kernbuild.errors import KernError
from kernbuild.recipe.model import Recipe
from kernbuild.recipe.schema import SOURCE_KINDS

if TYPE_CHECKING:
    from kernbuild.sources.cache import SourceCache

#: What :meth:`SourceKind.fetch` returns: (sha256, tree, files) of :class:`FetchedSource`,
#: before the recipe's ``subdir`` is applied.
Fetched = tuple[str, Path, tuple[Path, ...]]


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


class SourceKind:
    """One way a recipe may name its source, registered in ``cache.KINDS`` by its name.

    A kind is made for one :class:`SourceCache` (``self.cache``) and gets
    everything through it: the cache's blobs and trees, its source mirrors and
    its one way onto the network. :meth:`SourceCache.locate` asks the kind only
    what differs between kinds; looking in the cache and the mirrors is common.

    This base class is also what a kind that is not registered gets: every
    operation refuses it, naming the kinds there are.
    """

    def __init__(self, cache: SourceCache) -> None:
        self.cache = cache

    def key(self, recipe: Recipe) -> str:
        """:meth:`SourceCache.key`, for this kind."""
        raise unknown_kind(recipe)

    def fetch(self, recipe: Recipe) -> Fetched:
        """:meth:`SourceCache.fetch`, for this kind, before ``subdir`` is applied."""
        raise unknown_kind(recipe)

    def probe(self, recipe: Recipe) -> str:
        """The URL the network has ``recipe``'s source at; KernError if it has not."""
        raise unknown_kind(recipe)

    def known_location(self, recipe: Recipe) -> SourceLocation | None:
        """Where the source is when neither the cache nor the network matters, else None."""
        return None

    def cached_tree(self, recipe: Recipe) -> Path | None:
        """The source's tree in the cache under a key other than its sha256, or None."""
        return None

    def mirror_names(self, recipe: Recipe) -> list[str]:
        """The file names a source mirror may hold the source under, best first."""
        return []


def pinned_sha256(recipe: Recipe) -> str:
    sha = recipe.source.sha256
    if not sha:
        raise KernError(f"{recipe.path}: a {recipe.source.kind} source needs 'sha256'",
                        "download it once and add: sha256: <output of sha256sum>")
    return sha.lower()


def recipe_mismatch_hint(recipe: Recipe) -> str:
    return (f"if upstream re-released the file on purpose, update sha256 in {recipe.path}; "
            "otherwise the download was tampered with")


def unknown_kind(recipe: Recipe) -> KernError:
    return KernError(f"{recipe.path}: unknown source kind {recipe.source.kind!r}",
                     f"use one of {', '.join(SOURCE_KINDS)}")

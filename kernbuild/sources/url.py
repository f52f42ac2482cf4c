"""``url``: an archive (tar, tar.gz/tgz, tar.xz, tar.bz2, zip) verified against ``sha256``.

A source mirror may hold the archive under its file name, the last part of the URL.
"""

from __future__ import annotations

from kernbuild.recipe.model import Recipe
from kernbuild.sources.extract import extract_archive
from kernbuild.sources.http import Unreachable, url_name
from kernbuild.sources.kind import Fetched, SourceKind, pinned_sha256, recipe_mismatch_hint


class Url(SourceKind):
    """An archive at a URL."""

    def key(self, recipe: Recipe) -> str:
        return pinned_sha256(recipe)

    def mirror_names(self, recipe: Recipe) -> list[str]:
        return [url_name(recipe.source.ref)]

    def probe(self, recipe: Recipe) -> str:
        self.cache._head(recipe.source.ref, recipe)
        return recipe.source.ref

    def fetch(self, recipe: Recipe) -> Fetched:
        cache, sha = self.cache, pinned_sha256(recipe)
        url = recipe.source.ref
        name = url_name(url)
        blob = cache._cached_blob(sha) or cache._from_source_mirrors(recipe, [name], sha)
        if blob is None:
            try:
                blob = cache._download(url, sha, recipe, label=name,
                                       expected_from=str(recipe.path),
                                       hint=recipe_mismatch_hint(recipe))
            except Unreachable as exc:
                raise cache._missing_everywhere(recipe, exc, [name],
                                                f"having fetched {url} where it is reachable"
                                                ) from None
        tree = cache._tree(sha, lambda tmp: extract_archive(blob, tmp / "x", label=url))
        return sha, tree, (blob,)

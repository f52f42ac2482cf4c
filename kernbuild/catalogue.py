"""The suite as a catalogue: every recipe, where its source comes from here, what is built.

``kernbuild suite`` answers the questions a suite maintainer asks before a
release (KERN's users asked them after: "where did package X go?"): which
recipes there are, at which version, whether each one's source can be had on
this host (from the cache, a source mirror or the network, or not at all),
whether the repository already serves its current version, what it makes and
what needs it. Nothing is downloaded or built. :func:`describe` is ``kernbuild
show``: one recipe as kernbuild understands it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from kernbuild.recipe.graph import dependencies, reverse_dependencies
from kernbuild.recipe.model import Suite
from kernbuild.sources import SourceCache, SourceLocation
from kernbuild.workspace import Workspace

# Source lookups wait on the network, not the CPU: ask for several at once.
_LOOKUPS_AT_ONCE = 8


@dataclass(frozen=True)
class CatalogueEntry:
    """One recipe of the suite as this host sees it.

    Attributes:
        published: the version the repository serves of the recipe's current
            build (its first package's), or None if it serves none.
    """

    name: str
    version: str
    source_kind: str
    source_ref: str
    source: SourceLocation
    build_system: str
    packages: tuple[str, ...]
    depends_on: tuple[str, ...]
    needed_by: tuple[str, ...]
    published: str | None

    def to_json(self) -> dict:
        return {"name": self.name, "version": self.version,
                "source": {"kind": self.source_kind, "ref": self.source_ref,
                           "where": self.source.where, "detail": self.source.detail},
                "build_system": self.build_system, "packages": list(self.packages),
                "depends_on": list(self.depends_on), "needed_by": list(self.needed_by),
                "published": self.published}


def catalogue(workspace: Workspace, suite: Suite) -> list[CatalogueEntry]:
    """Every recipe of ``suite``, sorted by name, with its source located and build state."""
    sources = SourceCache.for_workspace(workspace, suite.settings)
    recipes = sorted(suite.recipes, key=lambda r: r.name)
    with ThreadPoolExecutor(max_workers=_LOOKUPS_AT_ONCE) as pool:
        located = list(pool.map(sources.locate, recipes))
    served = _published(workspace, suite)
    return [CatalogueEntry(
        name=recipe.name, version=recipe.debian_version(suite.settings),
        source_kind=recipe.source.kind, source_ref=recipe.source.ref, source=where,
        build_system=recipe.build.system, packages=tuple(recipe.binary_names),
        depends_on=tuple(sorted(dependencies(suite, recipe))),
        needed_by=tuple(sorted(reverse_dependencies(suite, recipe.name))),
        published=next((served[p] for p in recipe.binary_names if p in served), None))
        for recipe, where in zip(recipes, located)]


def _published(workspace: Workspace, suite: Suite) -> dict[str, str]:
    """The repository's versions of the suite's packages; none before the first publish."""
    if not workspace.repo.is_dir():  # opening it would make a signing key: not for a listing
        return {}
    from kernbuild.build import open_repository
    from kernbuild.build.package import published_versions

    return published_versions(open_repository(workspace, suite), suite)


def describe(suite: Suite, name: str) -> dict:
    """``kernbuild show NAME``: the recipe as kernbuild understands it, as plain data (its
    Debian version for this suite, its source, packages, relations and variants)."""
    recipe = suite.get(name)
    return {
        "name": recipe.name,
        "version": recipe.debian_version(suite.settings),
        "upstream_version": recipe.version,
        "summary": recipe.summary,
        "file": str(recipe.path),
        "source": {"kind": recipe.source.kind, "ref": recipe.source.ref,
                   "sha256": recipe.source.sha256, "commit": recipe.source.commit},
        "build_system": recipe.build.system,
        "build_depends": list(recipe.build.depends),
        "packages": {p.name: {"architecture": p.architecture,
                              "depends": list(p.relations.get("depends", ()))}
                     for p in recipe.packages},
        "depends_on": sorted(dependencies(suite, recipe)),
        "needed_by": sorted(reverse_dependencies(suite, recipe.name)),
        "variants": {name: {"packages": [v.suffixed(p) for p in recipe.binary_names],
                            "build_depends": list(v.build_depends),
                            "configure": list(v.configure), "env": dict(v.env),
                            "cuda": v.cuda}
                     for name, v in sorted(recipe.variants.items())},
        "smoke": [s.run for s in recipe.smoke],
    }

"""Upstream requirements as Debian relations, the way dh-python names them.

A Python requirement becomes the suite's own recipe first, then the package that
dh-python's table of PyPI names gives, then dh-python's rule, ``python3-<name>``;
a name counts only if the suite's distribution has it (see :mod:`.archive`). A
Debian relation is kept when the distribution, the suite or the recipe itself
provides it. What nothing provides is returned as missing, with a comment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from debian.debian_support import Version as DebianVersion
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion
from packaging.version import Version as PythonVersion

from kernbuild.debian import SYSTEM_BUILD_DEPENDS
from kernbuild.recipe.model import Suite
from kernbuild.recipe.new.archive import Archive
from kernbuild.recipe.schema import relation_names

# PyPI backports of what Python 3.13's standard library has (dh-python's table
# knows only argparse): nothing to depend on.
_STANDARD_LIBRARY = frozenset({"argparse", "asyncio", "dataclasses", "enum34", "futures",
                               "importlib", "ordereddict", "pathlib", "typing", "uuid"})
# Build-Depends kernbuild adds for every recipe (see kernbuild.debian): not repeated.
_ALWAYS_BUILD_DEPENDS = frozenset({"debhelper", "debhelper-compat", "dh-python",
                                   "dh-sequence-python3"})


@dataclass(frozen=True)
class Dependency:
    upstream: str  # the requirement as upstream wrote it, without its marker
    relation: str | None  # the Debian relation; None when nothing provides it
    note: str = ""  # what to check, or why it is missing


class Resolver:
    """Debian relations for upstream requirements: the suite's recipes first, then
    the suite's distribution."""

    def __init__(self, suite: Suite, archive: Archive) -> None:
        self.suite = suite
        self.archive = archive

    @property
    def where(self) -> str:
        return self.archive.distribution

    def python_all(self, requirements: list[Requirement], own: str, notes: list[str]
                   ) -> tuple[list[str], list[str]]:
        """(relations, missing requirements) for Python requirements, each Debian package
        once; the project's own name (from its extras) is left out. What is missing, or
        needs checking, is added to ``notes`` (comments)."""
        relations, missing = [], []
        for requirement in requirements:
            if canonicalize_name(requirement.name) == canonicalize_name(own):
                continue
            dependency = self.python(requirement)
            if dependency is None:
                continue
            if dependency.relation is None:
                missing.append(dependency.upstream)
                notes.append(f"missing: {dependency.upstream} ({dependency.note})")
                continue
            if dependency.note:
                notes.append(f"TODO: {dependency.upstream}: {dependency.note}")
            if not set(relation_names(dependency.relation)) & {
                    n for r in relations for n in relation_names(r)}:
                relations.append(dependency.relation)
        return relations, missing

    def python(self, requirement: Requirement) -> Dependency | None:
        """The Debian relation for one Python requirement; None when Python 3.13 itself
        provides it. A lower bound (>=, ~=, ==, >) is kept, with the Debian package's
        epoch, or ``python3-numpy (>= 1.24)`` would hold for numpy 1:1.21."""
        name = canonicalize_name(requirement.name)
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        upstream = f"{requirement.name}{extras}{requirement.specifier}"
        if name in _STANDARD_LIBRARY:
            return None
        found = self._suite_package(requirement.name)
        if found is None:
            table = self.archive.python_names.get(name, "")
            if table == "python3" or table.startswith("python3 "):  # dh-python: the stdlib
                return None
            candidates = [table.split()[0]] if table else []
            candidates.append(python3_name(requirement.name))
            package = next((c for c in candidates if c in self.archive.packages), None)
            if package is None:
                return Dependency(upstream, None, "no Debian package, no suite recipe")
            found = package, self.archive.packages[package]
        package, have = found
        note = (f"it asks for the extras {extras}: check what they need"
                if requirement.extras else "")
        bound = lower_bound(requirement.specifier)
        if bound is None or have is None:  # a virtual package has no version to compare
            return Dependency(upstream, package, note)
        operator, version = bound
        epoch = have.split(":", 1)[0] + ":" if ":" in have else ""
        wanted = DebianVersion(epoch + version)
        if not (DebianVersion(have) > wanted if operator == ">>"
                else DebianVersion(have) >= wanted):
            note = f"{self.where} has {package} {have} only"
        return Dependency(upstream, f"{package} ({operator} {epoch}{version})", note)

    def _suite_package(self, name: str) -> tuple[str, str] | None:
        """(binary package, Debian version) of the suite's recipe for PyPI project ``name``:
        the one making python3-<name>, or the one built from that PyPI project."""
        guess = python3_name(name)
        recipe = self.suite.maker.get(guess)
        if recipe is None:
            recipe = next((r for r in self.suite.recipes if r.source.kind == "pypi"
                           and canonicalize_name(r.source.ref) == canonicalize_name(name)),
                          None)
            if recipe is None:
                return None
            guess = next((b for b in recipe.binary_names if b.startswith("python3-")),
                         recipe.binary_names[0])
        return guess, recipe.debian_version(self.suite.settings)

    def debian_all(self, relations: list[str], own: set[str], notes: list[str]
                   ) -> tuple[list[str], list[str]]:
        """(relations kept, relations missing): missing, with a comment in ``notes``, when
        no alternative is a package of the distribution, the suite or the recipe (``own``)."""
        kept, missing = [], []
        for relation in relations:
            names = relation_names(relation)
            if any(n in own or n in self.suite.maker or n in self.archive.packages
                   for n in names):
                kept.append(relation)
            else:
                missing.append(relation)
                notes.append(f"missing: {relation} (not in {self.where}, no suite recipe)")
        return kept, missing


def python3_name(name: str) -> str:
    """dh-python's name for the package of a PyPI project (its ``sensible_pname``)."""
    name = re.sub(r"[^A-Za-z0-9.]+", "_", name).lower().replace("_", "-")
    return "python3-" + name.removeprefix("python-")


def lower_bound(specifier: SpecifierSet) -> tuple[str, str] | None:
    """The tightest lower bound of a version specifier as (Debian operator, version).

    Upper bounds and exclusions are left out: Debian has one version of each
    package, and a bound it cannot meet only makes the package uninstallable.
    """
    best: tuple[str, PythonVersion] | None = None
    for spec in specifier:
        operator = {">=": ">=", "~=": ">=", "==": ">=", ">": ">>"}.get(spec.operator)
        version = python_version(spec.version) if "*" not in spec.version else None
        if operator is None or version is None or version.epoch or version.local:
            continue
        if best is None or version > best[1] or (version == best[1] and operator == ">>"):
            best = (operator, version)
    if best is None:
        return None
    version = best[1]
    text = version.base_version
    if version.pre:  # Debian sorts ~ before anything: 1.0~rc1 < 1.0
        text += f"~{version.pre[0]}{version.pre[1]}"
    if version.post is not None:
        text += f".post{version.post}"
    if version.dev is not None:
        text += f"~dev{version.dev}"
    return best[0], text


def python_version(text: str) -> PythonVersion | None:
    try:
        return PythonVersion(text)
    except InvalidVersion:
        return None


def explicit_build_depends(relations: list[str], system: str) -> list[str]:
    """The relations kernbuild does not add by itself for ``system``."""
    implicit = _ALWAYS_BUILD_DEPENDS | set(SYSTEM_BUILD_DEPENDS[system])
    return [r for r in relations if not set(relation_names(r)) <= implicit]

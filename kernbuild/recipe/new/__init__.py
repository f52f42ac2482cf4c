"""Write a new recipe from upstream metadata: ``kernbuild new``.

Most of a recipe is already written down upstream. For a Python project, PyPI's
JSON and the sdist's PKG-INFO, pyproject.toml and egg-info give the version,
summary, homepage, license, requirements and module names; for anything Debian
packages, the Sources entry and the debian/ directory of the source package give
the same. :func:`new_recipe` reads them and writes a recipe in the suite's style
that ``kernbuild lint`` accepts, with a ``# TODO:`` comment wherever it had to
guess and a ``# missing:`` comment for each dependency that neither Debian nor
the suite provides: a person reviews the recipe instead of writing it. The sdist
and the .dsc are only hashed: ``kernbuild package`` fetches them again and checks
them against the sha256 written into the recipe.

This module checks the name and the suite, picks where the recipe comes from and
checks that what was written loads. The rest, by what each reads or writes:

- :mod:`.pypi` drafts a recipe from PyPI's JSON and the sdist, which :mod:`.sdist`
  reads without unpacking it;
- :mod:`.debian` drafts one from a Debian source package's Sources entry and debian/;
- :mod:`.resolve` turns upstream requirements into Debian relations;
- :mod:`.archive` reads the Debian mirror's indexes (cached) and dh-python's table;
- :mod:`.web` is the HTTP client, the only code that touches the network;
- :mod:`.licenses` recognises licence names and texts as SPDX ids;
- :mod:`.draft` is what a recipe says, and its YAML.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kernbuild.errors import KernError, RecipeError
from kernbuild.recipe.load import load_recipe, load_settings, load_suite, recipe_files
from kernbuild.recipe.model import Suite
from kernbuild.recipe.new.archive import Archive
from kernbuild.recipe.new.debian import from_debian
from kernbuild.recipe.new.draft import render
from kernbuild.recipe.new.pypi import from_pypi
from kernbuild.recipe.new.resolve import Resolver
from kernbuild.recipe.new.web import Web
from kernbuild.recipe.schema import PACKAGE_NAME
from kernbuild.sources import DEFAULT_PYPI, DEFAULT_TIMEOUT
from kernbuild.workspace import Workspace

__all__ = ["NewRecipe", "new_recipe"]


@dataclass(frozen=True)
class NewRecipe:
    """A recipe written from upstream metadata, not yet on disk.

    Attributes:
        path: where :meth:`write` puts it, ``<recipes>/<name>.yaml``.
        text: the recipe; it passes kernbuild's loader.
        missing: upstream requirements (or Debian relations) that neither the
            distribution nor the suite provides; each is a ``# missing:`` comment.
        todo: what kernbuild could not decide and a person should check; each is
            also a ``# TODO:`` comment in ``text``.
        overwrite: :meth:`write` may replace an existing file (``force``).
    """

    path: Path
    text: str
    missing: tuple[str, ...] = ()
    todo: tuple[str, ...] = ()
    overwrite: bool = False

    def write(self) -> Path:
        """Write ``text`` to ``path`` atomically; an existing file only with ``overwrite``.

        The file appears whole or not at all, and a file that appeared since
        :func:`new_recipe` looked is still not replaced (a hard link, unlike a
        rename, fails when its name exists).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                        dir=self.path.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(self.text)
            os.chmod(tmp, 0o644)
            if self.overwrite:
                os.replace(tmp, self.path)
            else:
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    raise _exists(self.path) from None
        finally:
            tmp.unlink(missing_ok=True)
        return self.path


def new_recipe(ws: Workspace, name: str, *, pypi: bool = False, debian: str | None = None,
               version: str | None = None, distribution: str | None = None,
               mirror: str | None = None, pypi_url: str = DEFAULT_PYPI, force: bool = False,
               timeout: float = DEFAULT_TIMEOUT) -> NewRecipe:
    """A recipe for ``name``, from PyPI (``pypi=True``) or a Debian source package.

    Args:
        ws: the suite's recipe directory (for its settings and recipes, and where
            the recipe goes) and the state directory (for the index cache).
        name: with ``pypi``, the PyPI project (the recipe is named after it);
            with ``debian``, the recipe's name.
        debian: the Debian source package to take.
        version: the PyPI release (default: the newest final release with an
            sdist) or the Debian source version (default: the newest in
            ``distribution``).
        distribution: where a Debian source comes from, such as ``sid`` for a
            backport (default: the suite's distribution). Dependencies are always
            looked up in the suite's distribution, which the packages are built for.
        mirror: the Debian mirror (default: the suite's).
        pypi_url: PyPI's base URL (tests point it at a local server).
        force: replace an existing recipe file of the same name.

    Raises:
        KernError: the project, release, sdist or source package does not exist,
            the recipe file exists (without ``force``), the network failed, or the
            suite's recipes do not load.
    """
    if pypi == (debian is not None):
        raise KernError("a new recipe comes from PyPI or from Debian, one of them",
                        "kernbuild new NAME --pypi [VERSION], or "
                        "kernbuild new NAME --debian SOURCE [VERSION]")
    if not ws.recipes.is_dir():
        raise KernError(f"no recipe directory at {ws.recipes}",
                        "run kernbuild in a suite checkout, or pass --recipes DIR")
    recipe_name = _source_name(name) if pypi else name
    if not PACKAGE_NAME.match(recipe_name):
        raise KernError(f"{recipe_name!r} is not a Debian source package name",
                        "lower-case letters, digits, '+', '-' and '.', at least two")
    path = ws.recipes / f"{recipe_name}.yaml"
    if path.exists() and not force:
        raise _exists(path)
    suite = _suite_without(ws.recipes, path)
    if recipe_name in suite.by_name:
        raise KernError(f"the suite already has a recipe {recipe_name} "
                        f"({suite.by_name[recipe_name].path})",
                        "edit that one, or name the new recipe differently")
    web = Web(timeout)
    mirror = (mirror or suite.settings.mirror).rstrip("/")
    home = Archive(web, mirror, suite.settings.distribution, ws.state / "index")
    resolver = Resolver(suite, home)
    if pypi:
        draft = from_pypi(web, pypi_url.rstrip("/"), name, recipe_name, version, resolver)
    else:
        origin = distribution or suite.settings.distribution
        archive = home if origin == home.distribution else Archive(
            web, mirror, origin, ws.state / "index")
        draft = from_debian(archive, recipe_name, debian or "", version, resolver)
    for package in draft.packages:
        maker = suite.maker.get(package.name)
        if maker is not None:
            raise KernError(f"the suite's recipe {maker.name} ({maker.path}) already makes "
                            f"{package.name}", "edit that recipe instead")
    text = render(draft)
    _check(text, recipe_name)
    todo = tuple(c.removeprefix("TODO: ") for cs in draft.comments.values() for c in cs
                 if c.startswith("TODO: "))
    return NewRecipe(path, text, draft.missing, todo, force)


def _suite_without(recipes: Path, path: Path) -> Suite:
    """The suite, less the recipe file ``path`` that --force replaces (and which may be
    why the suite does not load)."""
    others = [p for p in recipe_files([recipes]) if p.resolve() != path.resolve()]
    return load_suite(recipes, others) if others else Suite(load_settings(recipes), [])


def _exists(path: Path) -> KernError:
    return KernError(f"{path} exists; kernbuild new does not replace a recipe",
                     "remove it first, or pass --force to replace it")


def _check(text: str, name: str) -> None:
    """Load the text as kernbuild will: what does not load is a bug here, not the user's."""
    with tempfile.TemporaryDirectory(prefix="kernbuild-new-") as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_recipe(path)
        except RecipeError as exc:
            raise RuntimeError(f"kernbuild new wrote a recipe that does not load:\n{exc}\n"
                               f"---\n{text}") from None


def _source_name(project: str) -> str:
    """The Debian source package name of a PyPI project: lower-case, '-' for '_'."""
    return re.sub(r"[^a-z0-9.+]+", "-", project.lower()).strip("-")

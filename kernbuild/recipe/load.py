"""Load recipe files, in stages: YAML -> checked document -> typed model -> checked suite.

Stage 0 (:mod:`kernbuild.recipe.document`) reads each file into plain values and
a source map, and checks them against the schema; stage 1
(:mod:`kernbuild.recipe.model`) builds the typed recipe, which keeps only the
source map; last, :mod:`kernbuild.recipe.checks` looks at all recipes together.
Every stage reports all it finds, so one lint run shows every problem of the suite.
"""

from __future__ import annotations

import os
from pathlib import Path

from kernbuild.errors import Diagnostic, RecipeError
from kernbuild.recipe.checks import suite_problems
from kernbuild.recipe.document import cap, check_recipe, check_settings, read_document
from kernbuild.recipe.model import Recipe, Suite
from kernbuild.recipe.settings import SuiteSettings

SUITE_FILE = "suite.yaml"


def load_recipe(path: Path) -> Recipe:
    """Load and check one recipe file, or raise :class:`RecipeError` with every problem."""
    doc = read_document(path)
    problems = check_recipe(doc)
    if problems:
        raise RecipeError(cap(problems))
    return Recipe.from_checked(doc.data, doc.source_map)


def load_settings(directory: Path) -> SuiteSettings:
    """The suite settings in ``directory/suite.yaml``, or the defaults if there is none."""
    path = directory / SUITE_FILE
    # lexists: a suite.yaml that is a dangling link or a link loop is a suite.yaml that
    # cannot be read (a diagnostic), not a suite without settings.
    if not os.path.lexists(path):
        return SuiteSettings()
    doc = read_document(path)
    problems = check_settings(doc)
    if problems:
        raise RecipeError(cap(problems))
    return SuiteSettings.from_dict(doc.data)


def recipe_files(paths: list[Path]) -> list[Path]:
    """The recipe files named by ``paths``: files as given, directories' *.yaml."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.glob("*.yaml") if p.name != SUITE_FILE)
        else:
            files.append(path)
    return files


def load_suite(recipes_dir: Path, paths: list[Path] | None = None) -> Suite:
    """Load the suite's settings and recipes, check them together, raise every problem at once.

    ``paths`` (files or directories) replaces the recipes of ``recipes_dir``; the
    settings still come from ``recipes_dir/suite.yaml``.
    """
    diagnostics: list[Diagnostic] = []
    settings = SuiteSettings()
    try:
        settings = load_settings(recipes_dir)
    except RecipeError as exc:
        diagnostics += exc.diagnostics
    recipes: list[Recipe] = []
    for path in recipe_files(paths if paths else [recipes_dir]):
        try:
            recipes.append(load_recipe(path))
        except RecipeError as exc:
            diagnostics += exc.diagnostics
    suite = Suite(settings, recipes)
    diagnostics += suite_problems(suite)
    if diagnostics:
        raise RecipeError(diagnostics)
    return suite

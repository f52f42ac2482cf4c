"""Load recipe files: YAML text -> plain values with marks -> checked -> typed model.

Stage one keeps, for every value, the line and column it came from, so that
every later complaint (schema, graph, build) can point at the YAML line that
caused it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kernbuild.errors import Diagnostic, RecipeError
from kernbuild.recipe import schema
from kernbuild.recipe.model import Recipe, Suite, SuiteSettings

SUITE_FILE = "suite.yaml"


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps dates as text: '2026-05-01' is a changelog date string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class Document:
    """A YAML file as plain Python values plus where each value was written."""

    path: Path
    data: Any
    marks: dict[tuple, tuple[int, int]] = field(default_factory=dict)  # value positions
    key_marks: dict[tuple, tuple[int, int]] = field(default_factory=dict)  # key positions

    def where(self, path: tuple, at_key: bool = False) -> tuple[int, int]:
        """The (line, column) of ``path``, or of its nearest written ancestor."""
        while True:
            if at_key and path in self.key_marks:
                return self.key_marks[path]
            if path in self.marks:
                return self.marks[path]
            if not path:
                return (1, 1)
            path = path[:-1]

    def diagnostic(self, path: tuple, message: str, hint: str = "",
                   at_key: bool = False) -> Diagnostic:
        line, column = self.where(path, at_key)
        return Diagnostic(self.path, line, column, message, hint)


def read_document(path: Path) -> Document:
    """Parse one YAML file, keeping marks; syntax errors become diagnostics."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError([Diagnostic(path, 1, 1, f"cannot read: {exc}")]) from None
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError([Diagnostic(path, line, column, f"invalid YAML: {problem}",
                                      "check the indentation and quoting on this line")]) from None
    finally:
        loader.dispose()
    doc = Document(path, None)
    problems: list[Diagnostic] = []
    doc.data = _to_python(loader, root, (), doc, problems) if root is not None else None
    if problems:
        raise RecipeError(problems)
    return doc


def _to_python(loader: _Loader, node: yaml.Node, path: tuple, doc: Document,
               problems: list[Diagnostic]) -> Any:
    doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            if not isinstance(key, (str, int)):
                problems.append(Diagnostic(doc.path, key_node.start_mark.line + 1,
                                           key_node.start_mark.column + 1,
                                           "a key must be a plain name"))
                continue
            key = str(key)
            key_path = path + (key,)
            doc.key_marks[key_path] = (key_node.start_mark.line + 1,
                                       key_node.start_mark.column + 1)
            if key in result:
                problems.append(Diagnostic(doc.path, *doc.key_marks[key_path],
                                           f"duplicate key {key!r}",
                                           "YAML keeps only the last one; remove the other"))
            result[key] = _to_python(loader, value_node, key_path, doc, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(loader, item, path + (index,), doc, problems)
                for index, item in enumerate(node.value)]
    return loader.construct_object(node)


def check_document(doc: Document) -> list[Diagnostic]:
    """Schema problems of one recipe document, and files it names that are missing."""
    problems = [doc.diagnostic(p.path, p.message, p.hint, p.at_key)
                for p in schema.validate(doc.data)]
    if not problems:
        for index, patch in enumerate(doc.data.get("patches", ())):
            if not (doc.path.parent / patch).is_file():
                problems.append(doc.diagnostic(("patches", index), f"no patch file {patch!r}",
                                               f"paths are relative to {doc.path.parent}"))
    return problems


def load_recipe(path: Path) -> Recipe:
    """Load and check one recipe file, or raise :class:`RecipeError` with every problem."""
    doc = read_document(path)
    problems = check_document(doc)
    if problems:
        raise RecipeError(problems)
    return Recipe.from_document(doc)


def load_settings(directory: Path) -> SuiteSettings:
    """The suite settings in ``directory/suite.yaml``, or the defaults if there is none."""
    path = directory / SUITE_FILE
    if not path.exists():
        return SuiteSettings()
    doc = read_document(path)
    problems = [doc.diagnostic(p.path, p.message, p.hint, p.at_key)
                for p in SuiteSettings.SCHEMA.check(doc.data, ())]
    if problems:
        raise RecipeError(problems)
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
    diagnostics += suite.problems()
    if diagnostics:
        raise RecipeError(diagnostics)
    return suite

"""Stage 0 of loading: a YAML file as plain values and a source map, checked by the schema.

Reading keeps the line and column of every value and key in a
:class:`~kernbuild.recipe.source_map.SourceMap`, so that every complaint, here
and in later stages (checks across recipes, builds), points at the YAML line
that caused it. The document itself is dropped once the typed model is built
from it; only the source map is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kernbuild.errors import Diagnostic, RecipeError
from kernbuild.recipe import schema
from kernbuild.recipe.source_map import Position, SourceMap, YamlPath


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps dates as text: '2026-05-01' is a changelog date string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Document:
    """A YAML file as plain Python values, and where each was written."""

    data: Any
    source_map: SourceMap

    @property
    def path(self) -> Path:
        return self.source_map.path


def read_document(path: Path) -> Document:
    """Parse one YAML file, keeping positions; syntax errors become diagnostics."""
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
    reader = _Reader(loader, path)
    data = reader.value(root, ()) if root is not None else None
    if reader.problems:
        raise RecipeError(reader.problems)
    return Document(data, SourceMap(path, reader.values, reader.keys))


class _Reader:
    """Turns YAML nodes into plain values, noting each one's position on the way."""

    def __init__(self, loader: _Loader, path: Path) -> None:
        self.loader = loader
        self.path = path
        self.values: dict[YamlPath, Position] = {}
        self.keys: dict[YamlPath, Position] = {}
        self.problems: list[Diagnostic] = []

    def value(self, node: yaml.Node, path: YamlPath) -> Any:
        self.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            result: dict = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node)
                if not isinstance(key, (str, int)):
                    self.problems.append(Diagnostic(self.path, key_node.start_mark.line + 1,
                                                    key_node.start_mark.column + 1,
                                                    "a key must be a plain name"))
                    continue
                key = str(key)
                key_path = path + (key,)
                self.keys[key_path] = (key_node.start_mark.line + 1,
                                       key_node.start_mark.column + 1)
                if key in result:
                    self.problems.append(Diagnostic(
                        self.path, *self.keys[key_path], f"duplicate key {key!r}",
                        "YAML keeps only the last one; remove the other"))
                result[key] = self.value(value_node, key_path)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, path + (index,)) for index, item in enumerate(node.value)]
        return self.loader.construct_object(node)


def check_recipe(doc: Document) -> list[Diagnostic]:
    """Schema problems of one recipe document, and files it names that are missing."""
    where = doc.source_map
    problems = [where.diagnostic(p.path, p.message, p.hint, p.at_key)
                for p in schema.validate(doc.data)]
    if not problems:
        for index, patch in enumerate(doc.data.get("patches", ())):
            if not (doc.path.parent / patch).is_file():
                problems.append(where.diagnostic(("patches", index), f"no patch file {patch!r}",
                                                 f"paths are relative to {doc.path.parent}"))
        for key, name in ((doc.data.get("pipeline") or {}).get("cwl") or {}).items():
            if not (doc.path.parent / name).is_file():
                problems.append(where.diagnostic(("pipeline", "cwl", key),
                                                 f"no CWL {key} file {name!r}",
                                                 f"paths are relative to {doc.path.parent}"))
    return problems


def check_settings(doc: Document) -> list[Diagnostic]:
    """Schema problems of the suite's settings (``suite.yaml``)."""
    return [doc.source_map.diagnostic(p.path, p.message, p.hint, p.at_key)
            for p in schema.SUITE.check(doc.data, ())]

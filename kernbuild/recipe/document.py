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

from kernbuild import limits
from kernbuild.errors import Diagnostic, RecipeError
from kernbuild.recipe import schema
from kernbuild.recipe.source_map import Position, SourceMap, YamlPath


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps dates as text ('2026-05-01' is a changelog date string), and
    composes no more than :data:`~kernbuild.limits.MAX_YAML_NODES` nodes, nested no
    deeper than :data:`~kernbuild.limits.MAX_YAML_DEPTH`, so that a hostile file stops
    early: at the node that crosses a limit, before the rest of it is even scanned."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.nodes = 0
        self.depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        self.nodes += 1
        if self.nodes > limits.MAX_YAML_NODES:
            raise _TooBig(event.start_mark, f"too large: more than {limits.MAX_YAML_NODES} "
                          "keys and values", "a recipe has a few hundred at most")
        if self.depth >= limits.MAX_YAML_DEPTH:
            raise _TooBig(event.start_mark, f"nested too deeply: more than {limits.MAX_YAML_DEPTH} "
                          "levels", "no recipe key nests more than a few levels")
        if isinstance(event, yaml.ScalarEvent) and len(event.value) > limits.MAX_SCALAR_CHARS:
            raise _TooBig(event.start_mark, f"a value too long: {len(event.value)} characters, "
                          f"more than the {limits.MAX_SCALAR_CHARS} allowed",
                          "keep long scripts and texts in files beside the recipe")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_CORE = "tag:yaml.org,2002:"
# The tags a node may carry, by kind: what plain YAML resolves to. Anything else (a
# !!python/object, !!binary, !!set, a !custom tag, a << merge key) means nothing in a
# recipe, and SafeLoader would fail on some of them with its own exception.
_TAGS = {
    yaml.ScalarNode: {_CORE + t for t in ("str", "int", "float", "bool", "null")},
    yaml.SequenceNode: {_CORE + "seq"},
    yaml.MappingNode: {_CORE + "map"},
}
_NUMBERS = {_CORE + "int", _CORE + "float"}
_INVALID = object()  # a scalar that could not be read; its problem is already noted


class _TooBig(Exception):
    """A limit crossed at ``mark``: the one diagnostic of its file."""

    def __init__(self, mark: yaml.Mark, message: str, hint: str) -> None:
        super().__init__(message)
        self.mark, self.message, self.hint = mark, message, hint


@dataclass(frozen=True)
class Document:
    """A YAML file as plain Python values, and where each was written."""

    data: Any
    source_map: SourceMap

    @property
    def path(self) -> Path:
        return self.source_map.path


def read_text(path: Path, max_bytes: int = limits.MAX_YAML_BYTES) -> str:
    """The text of a user's file, or a :class:`RecipeError` with one diagnostic.

    Bounded (:func:`kernbuild.limits.read_bytes`), UTF-8, line ends as Python's
    text mode gives them (CRLF and CR become LF).
    """
    try:
        text = limits.decode_utf8(limits.read_bytes(path, max_bytes))
    except limits.InputRefused as exc:
        raise RecipeError([Diagnostic(path, exc.line, exc.column, exc.message, exc.hint)]
                          ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_document(path: Path) -> Document:
    """Parse one YAML file, keeping positions; syntax errors and limits become diagnostics."""
    text = read_text(path)
    loader = None
    try:
        loader = _Loader(text)  # checks the text for unprintable characters
        root = loader.get_single_node()
        reader = _Reader(loader, path)
        data = reader.value(root, ()) if root is not None else None
    except _TooBig as exc:
        raise RecipeError([Diagnostic(path, exc.mark.line + 1, exc.mark.column + 1,
                                      exc.message, exc.hint)]
                          ) from None
    except yaml.YAMLError as exc:
        raise RecipeError([_syntax_error(path, text, exc)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if reader.problems:
        raise RecipeError(cap(reader.problems))
    return Document(data, SourceMap(path, reader.values, reader.keys))


def _syntax_error(path: Path, text: str, exc: yaml.YAMLError) -> Diagnostic:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = getattr(exc, "problem", None) or str(exc)
    if isinstance(exc, yaml.reader.ReaderError):  # an unprintable character; no mark
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        problem = f"the character {chr(exc.character)!r} (U+{exc.character:04X}) is not allowed"
        return Diagnostic(path, line, column, f"invalid YAML: {problem}",
                          "YAML allows no control characters: write it as an escape "
                          "in a double-quoted string, or remove it")
    return Diagnostic(path, line, column, f"invalid YAML: {problem}",
                      "check the indentation and quoting on this line")


def cap(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """The first :data:`~kernbuild.limits.MAX_DIAGNOSTICS_PER_FILE` of one file's
    diagnostics, in file order, and one saying how many more there are."""
    diagnostics = sorted(diagnostics, key=lambda d: (d.line, d.column))
    if len(diagnostics) <= limits.MAX_DIAGNOSTICS_PER_FILE:
        return diagnostics
    first_left_out = diagnostics[limits.MAX_DIAGNOSTICS_PER_FILE]
    left_out = len(diagnostics) - limits.MAX_DIAGNOSTICS_PER_FILE
    return diagnostics[:limits.MAX_DIAGNOSTICS_PER_FILE] + [Diagnostic(
        first_left_out.path, first_left_out.line, first_left_out.column,
        f"{left_out} more problem(s) in this file, not shown", "fix these, then lint again")]


def _position(node: yaml.Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


class _Reader:
    """Turns YAML nodes into plain values, noting each one's position on the way.

    Aliases are expanded here (a node shared through ``&anchor`` / ``*alias`` is read
    once per use), so this walk counts values and depth again: composing bounded the
    nodes, this bounds what they expand to (a billion laughs has a few dozen nodes).
    """

    def __init__(self, loader: _Loader, path: Path) -> None:
        self.loader = loader
        self.path = path
        self.values: dict[YamlPath, Position] = {}
        self.keys: dict[YamlPath, Position] = {}
        self.problems: list[Diagnostic] = []
        self.read = 0

    def value(self, node: yaml.Node, path: YamlPath) -> Any:
        self.read += 1
        if self.read > limits.MAX_YAML_NODES:
            raise _TooBig(node.start_mark, f"too large: more than {limits.MAX_YAML_NODES} "
                          "keys and values once aliases (*name) are expanded",
                          "an alias repeats its whole anchor (&name); write values out")
        if len(path) >= limits.MAX_YAML_DEPTH:  # also an alias inside its own anchor
            raise _TooBig(node.start_mark, f"nested too deeply: more than {limits.MAX_YAML_DEPTH} "
                          "levels", "no recipe key nests more than a few levels; an alias "
                          "(*name) inside its own anchor (&name) nests forever")
        self.values[path] = _position(node)
        if not self._tag_allowed(node):
            return None
        if isinstance(node, yaml.MappingNode):
            result: dict = {}
            for key_node, value_node in node.value:
                key = self._key(key_node)
                if key is None:
                    continue
                key_path = path + (key,)
                self.keys[key_path] = _position(key_node)
                if key in result:
                    self.problems.append(Diagnostic(
                        self.path, *self.keys[key_path], f"duplicate key {limits.quoted(key)}",
                        "YAML keeps only the last one; remove the other"))
                result[key] = self.value(value_node, key_path)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.value(item, path + (index,)) for index, item in enumerate(node.value)]
        return self._scalar(node)

    def _key(self, node: yaml.Node) -> str | None:
        """A mapping key as text, or None (and a problem) if it is no plain name."""
        self.read += 1
        if node.tag == _CORE + "merge":
            self._problem(node, "merge keys (<<) are not supported",
                          "write the keys out in this mapping")
            return None
        if isinstance(node, yaml.ScalarNode) and not self._tag_allowed(node):
            return None
        key = self._scalar(node) if isinstance(node, yaml.ScalarNode) else None
        if key is _INVALID:
            return None
        if not isinstance(key, (str, int)):
            self._problem(node, "a key must be a plain name")
            return None
        return str(key)

    def _tag_allowed(self, node: yaml.Node) -> bool:
        if node.tag in _TAGS[type(node)]:
            return True
        self._problem(node, f"the YAML tag {_tag_name(node.tag)} is not allowed here",
                      "recipes hold plain strings, numbers, true/false, lists and mappings: "
                      "remove the tag")
        return False

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag in _NUMBERS and len(node.value) > limits.MAX_NUMBER_CHARS:
            self._problem(node, f"a number too long: {len(node.value)} characters, more "
                          f"than the {limits.MAX_NUMBER_CHARS} allowed", "quote it if it is text")
            return _INVALID
        try:
            return self.loader.construct_object(node)
        # A scalar that does not read as its tag says, such as '!!int abc' or
        # '!!bool maybe': SafeConstructor fails on those with a bare ValueError or KeyError.
        except (yaml.YAMLError, ValueError, KeyError, TypeError, ArithmeticError):
            self._problem(node, f"{limits.quoted(node.value)} is not a valid "
                          f"{_tag_name(node.tag)[2:]}", "remove the tag, or fix the value")
            return _INVALID

    def _problem(self, node: yaml.Node, message: str, hint: str = "") -> None:
        self.problems.append(Diagnostic(self.path, *_position(node), message, hint))


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
                continue
            try:
                read_patch(doc.path.parent / patch)
            except limits.InputRefused as exc:
                problems.append(where.diagnostic(("patches", index),
                                                 f"patch {patch!r}: {exc.message}", exc.hint))
        for key, name in ((doc.data.get("pipeline") or {}).get("cwl") or {}).items():
            if not (doc.path.parent / name).is_file():
                problems.append(where.diagnostic(("pipeline", "cwl", key),
                                                 f"no CWL {key} file {name!r}",
                                                 f"paths are relative to {doc.path.parent}"))
    return problems


def read_patch(path: Path) -> str:
    """A patch's text, bounded by :data:`~kernbuild.limits.MAX_PATCH_BYTES`; raises
    :class:`~kernbuild.limits.InputRefused`.

    Line ends are kept as they are: a patch to a file with CRLF line endings keeps
    its CRs, or it would no longer apply.
    """
    return limits.decode_utf8(limits.read_bytes(path, limits.MAX_PATCH_BYTES))


def check_settings(doc: Document) -> list[Diagnostic]:
    """Schema problems of the suite's settings (``suite.yaml``)."""
    return [doc.source_map.diagnostic(p.path, p.message, p.hint, p.at_key)
            for p in schema.SUITE.check(doc.data, ())]

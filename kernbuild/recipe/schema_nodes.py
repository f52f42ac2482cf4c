"""The schema language: node types that check raw YAML values and say what is wrong.

Each node's ``check`` walks a plain value (as read from YAML) and returns every
:class:`Problem` at once, each at the YAML path it was found at, so one lint run
shows them all. Nothing here knows about Debian or recipes; the recipe's and the
suite's schemas, written in these nodes, are in :mod:`kernbuild.recipe.schema`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable

from kernbuild.limits import quoted
from kernbuild.recipe.source_map import YamlPath


@dataclass(frozen=True)
class Problem:
    """A schema violation at a YAML path; the loader turns it into a Diagnostic."""

    path: YamlPath
    message: str
    hint: str = ""
    at_key: bool = False  # point at the key rather than the value


class Node:
    """A schema node: ``check`` yields problems for the raw value at ``path``."""

    type_name = "value"

    def check(self, value: Any, path: YamlPath) -> list[Problem]:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class Str(Node):
    pattern: re.Pattern | None = None
    hint: str = ""
    choices: tuple[str, ...] = ()
    single_line: bool = False
    type_name = "string"

    def check(self, value: Any, path: YamlPath) -> list[Problem]:
        # YAML reads 2.7 as a float and 3 as an int: a version must be quoted.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return [Problem(path, f"expected a string, got the number {quoted(value)}",
                            "put it in quotes, as written, so YAML keeps it as text "
                            '(unquoted, 1.10 reads as 1.1 and 0x1F as 31)')]
        if not isinstance(value, str):
            return [Problem(path, f"expected a string, got {kind(value)}")]
        if self.choices and value not in self.choices:
            return [Problem(path, f"{quoted(value)} is not one of {', '.join(self.choices)}",
                            _did_you_mean(value, self.choices))]
        if self.pattern and not self.pattern.match(value):
            return [Problem(path, f"invalid value {quoted(value)}", self.hint)]
        if self.single_line and "\n" in value.strip():
            return [Problem(path, "must be a single line", "put longer text in 'description'")]
        return []


@dataclass(frozen=True)
class Int(Node):
    minimum: int = 0
    type_name = "integer"

    def check(self, value: Any, path: YamlPath) -> list[Problem]:
        if isinstance(value, bool) or not isinstance(value, int):
            return [Problem(path, f"expected an integer, got {kind(value)}")]
        if value < self.minimum:
            return [Problem(path, f"must be at least {self.minimum}, got {quoted(value)}")]
        return []


@dataclass(frozen=True)
class Bool(Node):
    type_name = "boolean"

    def check(self, value: Any, path: YamlPath) -> list[Problem]:
        if not isinstance(value, bool):
            return [Problem(path, f"expected true or false, got {kind(value)}")]
        return []


@dataclass(frozen=True)
class List(Node):
    item: Node
    type_name = "list"

    def check(self, value: Any, path: YamlPath) -> list[Problem]:
        if not isinstance(value, list):
            hint = f"write it as a list: [{value}]" if isinstance(value, str) else ""
            return [Problem(path, f"expected a list, got {kind(value)}", hint)]
        problems: list[Problem] = []
        for index, item in enumerate(value):
            problems += self.item.check(item, path + (index,))
        return problems


@dataclass(frozen=True)
class Key:
    node: Node
    required: bool = False
    doc: str = ""


# A check over several keys of one mapping, run once each key passed on its own.
Rule = Callable[[dict, YamlPath], list[Problem]]


@dataclass(frozen=True)
class Map(Node):
    """A mapping with a fixed set of keys."""

    keys: dict[str, Key]
    # At most (and, if ``one_of_required``, exactly) one of these keys.
    one_of: tuple[str, ...] = ()
    one_of_required: bool = False
    rules: tuple[Rule, ...] = ()
    type_name = "mapping"

    def check(self, value: Any, path: YamlPath) -> list[Problem]:
        if not isinstance(value, dict):
            return [Problem(path, f"expected a mapping, got {kind(value)}")]
        problems: list[Problem] = []
        where = f" in {_dotted(path)}" if path else ""
        for key, item in value.items():
            if key not in self.keys:
                problems.append(Problem(path + (key,), f"unknown key {quoted(key)}{where}",
                                        _did_you_mean(str(key), self.keys), at_key=True))
            else:
                problems += self.keys[key].node.check(item, path + (key,))
        for key, spec in self.keys.items():
            if spec.required and key not in value:
                problems.append(Problem(path, f"missing required key {key!r}{where}", spec.doc))
        if self.one_of:
            present = [k for k in self.one_of if k in value]
            if len(present) > 1:
                problems.append(Problem(path, f"{' and '.join(present)} are exclusive{where}",
                                        "a source has exactly one origin"))
            elif not present and self.one_of_required:
                problems.append(Problem(path, f"needs one of {', '.join(self.one_of)}{where}"))
        if not problems:
            for rule in self.rules:
                problems += rule(value, path)
        return problems


@dataclass(frozen=True)
class Dict(Node):
    """A mapping from names (checked by ``key``) to values of one schema."""

    key: Str
    value: Node
    min_items: int = 0
    rules: tuple[Rule, ...] = ()
    type_name = "mapping"

    def check(self, value: Any, path: YamlPath) -> list[Problem]:
        if not isinstance(value, dict):
            return [Problem(path, f"expected a mapping, got {kind(value)}")]
        if len(value) < self.min_items:
            return [Problem(path, f"needs at least {self.min_items} entry")]
        problems: list[Problem] = []
        for key, item in value.items():
            key_problems = self.key.check(str(key), path + (key,))
            problems += [Problem(p.path, p.message, p.hint, at_key=True) for p in key_problems]
            problems += self.value.check(item, path + (key,))
        if not problems:
            for rule in self.rules:
                problems += rule(value, path)
        return problems


def kind(value: Any) -> str:
    """What a raw YAML value is, in words, for "expected X, got Y"."""
    if value is None:
        return "nothing (null)"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _dotted(path: YamlPath) -> str:
    return ".".join(str(p) for p in path)


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "allowed: " + ", ".join(sorted(choices))

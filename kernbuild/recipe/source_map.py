"""Where each key and value of a YAML file was written, kept after the YAML itself is gone.

Reading a file (stage 0, :mod:`kernbuild.recipe.document`) builds one
:class:`SourceMap`; the typed :class:`~kernbuild.recipe.model.Recipe` keeps it
instead of the parsed document, so that checks across recipes and builds much
later can still point at the line to fix. It sits below both stages so each can
import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from kernbuild.errors import Diagnostic

# A path into the YAML, such as ("packages", "python3-losoto", "depends", 0).
YamlPath = tuple
Position = tuple[int, int]  # (line, column), both 1-based


@dataclass(frozen=True)
class SourceMap:
    """The (line, column) of every value, and of every mapping key, of one file."""

    path: Path
    values: Mapping[YamlPath, Position] = field(default_factory=dict)
    keys: Mapping[YamlPath, Position] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Read-only views of private copies: a map is shared by every recipe derived
        # from one file (variants), so nobody may move a position under another.
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))

    def where(self, path: YamlPath, at_key: bool = False) -> Position:
        """The (line, column) of ``path``, or of its nearest written ancestor.

        With ``at_key``, that of the key naming the value where there is one: an
        unknown or duplicate key is best shown at the key, not at its value.
        """
        while True:
            if at_key and path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
            if not path:
                return (1, 1)
            path = path[:-1]

    def diagnostic(self, path: YamlPath, message: str, hint: str = "",
                   at_key: bool = False) -> Diagnostic:
        """A diagnostic at ``path`` of this file."""
        line, column = self.where(path, at_key)
        return Diagnostic(self.path, line, column, message, hint)

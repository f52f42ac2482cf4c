"""Errors a user can cause, and the diagnostics that point at their cause.

Every failure a user can provoke (a bad recipe, a tampered source, no Docker
engine) is raised as a :class:`KernError`. The CLI catches exactly this class
and prints it as one message with a hint, exiting non-zero; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Diagnostic:
    """One problem in one file, at a line and column (1-based)."""

    path: Path
    line: int
    column: int
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.path}:{self.line}:{self.column}: error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def as_dict(self) -> dict:
        return {
            "path": str(self.path),
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "hint": self.hint,
        }


class KernError(Exception):
    """A failure the user can fix; ``hint`` says how."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message + (f"\n  hint: {self.hint}" if self.hint else "")


class RecipeError(KernError):
    """One or more recipes are invalid; carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: (str(d.path), d.line, d.column))
        super().__init__("\n".join(str(d) for d in self.diagnostics))

    def __str__(self) -> str:
        return self.message

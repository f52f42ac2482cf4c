"""Matrix state in SQLite: one row per finished cell, written in one transaction.

A cell's key is a sha256 of what decides its result: the workflow, the image
(Docker image id or SIF sha256) and the target. A result is written only when
its cell has finished, so killing ``kernbuild test`` (even with SIGKILL) loses
the cells in flight and nothing else, and ``--resume`` skips every cell whose
key already passed.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from kernbuild.results import StepResult, from_json, to_json

SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    image TEXT NOT NULL,
    form TEXT NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,          -- pass, fail, skip
    reason TEXT NOT NULL,
    seconds REAL NOT NULL,
    steps TEXT NOT NULL,           -- JSON: [StepResult]: phase, name, exit_code, output...
    finished TEXT NOT NULL DEFAULT (datetime('now'))
);
"""


@dataclass
class CellResult:
    key: str
    pipeline: str
    image: str
    form: str
    target: str
    status: str  # pass, fail or skip
    reason: str = ""
    seconds: float = 0.0
    steps: list[StepResult] = field(default_factory=list)
    resumed: bool = False
    #: Seconds from the cell's start (a local worker taking it up; in a Slurm job, the
    #: job's submission for its first cell, the previous cell's end for the others) to
    #: its first step: what running it costs beyond its steps. Not stored.
    overhead: float = 0.0
    started: float = 0.0  # Unix time the cell's turn began (0: not run here). Not stored.

    @property
    def log(self) -> str:
        """The cell's log: every step's command result and output."""
        lines = [f"# {self.pipeline} in {self.image} ({self.form}) on {self.target}: "
                 f"{self.status}{' - ' + self.reason if self.reason else ''}"]
        for step in self.steps:
            how = "timed out" if step.timed_out else f"exit {step.exit_code}"
            lines += [f"## {step.phase} {step.name}: {how}, {step.seconds:.2f} s", step.output]
        return "\n".join(lines) + "\n"


class MatrixState:
    """The results database; safe to open from several threads (one connection each)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        return db

    def record(self, result: CellResult) -> None:
        with self._connect() as db:  # one transaction: the row is there whole or not at all
            db.execute(
                "INSERT OR REPLACE INTO cells (key, pipeline, image, form, target, status, "
                "reason, seconds, steps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (result.key, result.pipeline, result.image, result.form, result.target,
                 result.status, result.reason, result.seconds,
                 json.dumps(to_json(result.steps))))

    def passed(self, key: str) -> CellResult | None:
        """The stored result of ``key`` if it passed."""
        with self._connect() as db:
            row = db.execute("SELECT key, pipeline, image, form, target, status, reason, "
                             "seconds, steps FROM cells WHERE key = ? AND status = 'pass'",
                             (key,)).fetchone()
        if row is None:
            return None
        steps = [from_json(StepResult, s) for s in json.loads(row[8])]
        return CellResult(*row[:8], steps=steps, resumed=True)

    def durations(self) -> tuple[dict[str, float], dict[str, float]]:
        """What cells took when they last ran: seconds by cell key, and the mean by
        target (for a cell not measured yet, such as one of a rebuilt image)."""
        with self._connect() as db:
            rows = db.execute("SELECT key, target, seconds FROM cells WHERE status != 'skip'"
                              ).fetchall()
        by_key = {key: seconds for key, _, seconds in rows}
        per_target: dict[str, list[float]] = {}
        for _, target, seconds in rows:
            per_target.setdefault(target, []).append(seconds)
        return by_key, {t: sum(s) / len(s) for t, s in per_target.items()}

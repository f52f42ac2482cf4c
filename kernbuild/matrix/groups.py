"""Packing matrix cells into Slurm jobs: fewer, longer jobs, balanced by measured time.

A matrix cell takes seconds; a Slurm job costs seconds too (``sbatch``, the queue, the
worker's Python start, the last poll that sees it end). One job per cell spends more on
the jobs than on the cells (the LOFAR pilot: "our jobs are quite small ... the job
scheduler should become smarter, group together tiny tasks"). So the executor packs the
cells into at most ``slots`` groups, one job each, whose cells run one after another:

- each cell's expected time is what it took last time (the results database), else the
  mean of the cells measured on its target, else :data:`DEFAULT_CELL_S`;
- no more groups than the work fills: each should hold :data:`GROUP_MIN_S` of work;
- longest cells first, each to the group with the least work so far (LPT, within 4/3
  of the best balance), unless a group already running the same image on the same
  target still has room within an even share: what a target keeps per process
  (udocker's containers) is then reused.

Pure: no Slurm, no files; :mod:`kernbuild.matrix.slurm` submits what it plans.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from kernbuild.matrix import Cell

#: What a never-measured cell is expected to take, in seconds.
DEFAULT_CELL_S = 10.0
#: The least work, in expected seconds, worth a Slurm job of its own: several times
#: what a job costs here (about 2 s from sbatch to the worker's first cell).
GROUP_MIN_S = 10.0


@dataclass(frozen=True)
class CellGroup:
    """Cells that run one after another in one Slurm job; ``expected``: their
    expected seconds, summed."""

    cells: tuple[Cell, ...]
    expected: float


def expected_seconds(cells: Sequence[Cell], measured: dict[str, float],
                     by_target: dict[str, float]) -> dict[str, float]:
    """Each cell's expected seconds (by key): its own last time, else its target's mean
    (``by_target``), else :data:`DEFAULT_CELL_S`."""
    return {c.key: measured.get(c.key, by_target.get(c.target.name, DEFAULT_CELL_S))
            for c in cells}


def plan_groups(cells: Sequence[Cell], expected: dict[str, float], slots: int,
                min_seconds: float = GROUP_MIN_S) -> list[CellGroup]:
    """``cells`` packed into at most ``slots`` groups of balanced expected time (see the
    module's docstring); every cell in exactly one group; no group empty."""
    if not cells:
        return []
    total = sum(expected[c.key] for c in cells)
    count = max(1, min(slots, len(cells), math.ceil(total / min_seconds) if min_seconds
                       else len(cells)))
    share = total / count  # an even split
    loads = [0.0] * count
    members: list[list[Cell]] = [[] for _ in range(count)]
    for cell in sorted(cells, key=lambda c: (-expected[c.key], c.target.name, c.digest)):
        seconds = expected[cell.key]
        same = [i for i in range(count) if loads[i] + seconds <= share
                and any((m.target.name, m.digest) == (cell.target.name, cell.digest)
                        for m in members[i])]
        chosen = same[0] if same else loads.index(min(loads))
        members[chosen].append(cell)
        loads[chosen] += seconds
    return [CellGroup(tuple(m), load) for m, load in zip(members, loads) if m]

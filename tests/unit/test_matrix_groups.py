"""Packing matrix cells into Slurm jobs (kernbuild.matrix.groups): pure, no Slurm."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernbuild.matrix import Cell
from kernbuild.matrix.groups import DEFAULT_CELL_S, expected_seconds, plan_groups
from kernbuild.recipe import load_suite
from kernbuild.runtime import Runner

ROOT = Path(__file__).resolve().parents[2]


class Target(Runner):
    form = "docker"

    def __init__(self, name: str) -> None:
        self.name = name


@pytest.fixture(scope="module")
def pipeline():
    return load_suite(ROOT / "recipes").get("wcs-roundtrip")


def cells_of(pipeline, count: int, targets=("docker", "udocker")) -> list[Cell]:
    return [Cell(pipeline, f"image{i}", "docker", Target(targets[i % len(targets)]),
                 f"sha256:{i}", f"sha256:{i}") for i in range(count)]


def test_every_cell_in_exactly_one_group_balanced_by_expected_time(pipeline):
    cells = cells_of(pipeline, 7)
    expected = {c.key: s for c, s in zip(cells, (9.0, 8.0, 6.0, 5.0, 4.0, 4.0, 2.0))}
    groups = plan_groups(cells, expected, slots=2, min_seconds=0)
    assert len(groups) == 2
    assert sorted(c.key for g in groups for c in g.cells) == sorted(c.key for c in cells)
    # 38 s of work: LPT is within 4/3 of an even split (here 18 s and 20 s), where one
    # job per image or target would be 15 s against 23 s
    assert sum(g.expected for g in groups) == 38.0
    assert max(g.expected for g in groups) <= 4 / 3 * 19.0
    assert sorted(g.expected for g in groups) == [18.0, 20.0]
    for group in groups:  # the longest cells first in each job
        times = [expected[c.key] for c in group.cells]
        assert times == sorted(times, reverse=True)


def test_tiny_cells_are_not_spread_thinner_than_a_job_is_worth(pipeline):
    cells = cells_of(pipeline, 12)
    expected = {c.key: 1.5 for c in cells}  # 18 s of work in all
    assert len(plan_groups(cells, expected, slots=12, min_seconds=10)) == 2
    assert len(plan_groups(cells, expected, slots=12, min_seconds=100)) == 1
    assert len(plan_groups(cells, expected, slots=1, min_seconds=0)) == 1
    # never more jobs than cells, nor an empty one
    groups = plan_groups(cells[:3], expected, slots=8, min_seconds=0)
    assert len(groups) == 3 and all(g.cells for g in groups)
    assert plan_groups([], {}, slots=4) == []


def test_cells_of_one_image_and_target_share_a_job_where_it_keeps_the_balance(pipeline):
    katpoint = load_suite(ROOT / "recipes").get("katpoint")
    cells = [Cell(p, "wcslib", "docker", Target(t), "sha256:a", "sha256:a")
             for t in ("udocker", "sif-bwrap") for p in (pipeline, katpoint)]
    expected = {c.key: 5.0 for c in cells}
    groups = plan_groups(cells, expected, slots=2, min_seconds=0)
    assert sorted(sorted(c.target.name for c in g.cells) for g in groups) == [
        ["sif-bwrap", "sif-bwrap"], ["udocker", "udocker"]]
    # not at the balance's cost: a longer cell goes where there is room
    expected[cells[0].key] = 15.0
    groups = plan_groups(cells, expected, slots=2, min_seconds=0)
    assert sorted(g.expected for g in groups) == [15.0, 15.0]


def test_expected_time_is_the_last_measured_else_the_targets_mean_else_a_default(pipeline):
    cells = cells_of(pipeline, 3, targets=("docker", "udocker", "native"))
    measured = {cells[0].key: 3.0}
    expected = expected_seconds(cells, measured, {"udocker": 7.5})
    assert [expected[c.key] for c in cells] == [3.0, 7.5, DEFAULT_CELL_S]


# --- the local executor: preparations and cells side by side (run_side_by_side) -------


def test_a_cell_runs_while_another_target_still_prepares(pipeline):
    """Two workers: the slow target's preparation holds up its own cells only; the other
    target's cells run meanwhile, and a preparation that fails fails its cells with why."""
    import threading

    from kernbuild.matrix import run_side_by_side

    slow, fast, broken = Target("slow"), Target("fast"), Target("broken")
    cells = [Cell(pipeline, name, "docker", target, "ref", f"sha256:{name}")
             for name, target in (("a", slow), ("b", fast), ("c", fast), ("d", broken))]
    released = threading.Event()
    order: list[str] = []

    def prepare(cell: Cell) -> str:
        if cell.target is slow:
            assert released.wait(10), "the fast target's cells never ran"
        order.append(f"prepared {cell.image}")
        return "no such SIF" if cell.target is broken else ""

    def run(cell: Cell, unready: str):
        order.append(f"ran {cell.image}" + (f" ({unready})" if unready else ""))
        if cell.image == "c":
            released.set()  # the slow preparation ends only after the fast cells ran
        return cell.result("fail" if unready else "pass", unready)

    preparations = [[cells[0]], [cells[1]], [cells[3]]]  # c's image is in none: ready at once
    ready, results = run_side_by_side(preparations, cells, 2, prepare, run)
    assert set(results) == {c.key for c in cells}
    assert results[cells[3].key].reason == "no such SIF"
    assert ready[("slow", "sha256:a")] == "" and ready[("broken", "sha256:d")] == "no such SIF"
    assert order.index("ran c") < order.index("prepared a") < order.index("ran a")


def test_one_worker_prepares_everything_before_the_first_cell(pipeline):
    from kernbuild.matrix import run_side_by_side

    one, two = Target("one"), Target("two")
    cells = [Cell(pipeline, name, "docker", target, "ref", f"sha256:{name}")
             for name, target in (("a", one), ("b", two))]
    order: list[str] = []
    run_side_by_side([[cells[0]], [cells[1]]], cells, 1,
                     lambda c: order.append(f"prepared {c.image}") or "",
                     lambda c, _why: order.append(f"ran {c.image}") or c.result("pass"))
    assert order == ["prepared a", "prepared b", "ran a", "ran b"]


def test_a_worker_that_fails_stops_the_others_and_its_error_is_raised(pipeline):
    from kernbuild.errors import KernError
    from kernbuild.matrix import run_side_by_side

    target = Target("t")
    cells = [Cell(pipeline, name, "docker", target, "ref", f"sha256:{name}") for name in "ab"]

    def prepare(cell: Cell) -> str:
        raise KernError("kernbuild is stopping: no new container is started")

    with pytest.raises(KernError, match="stopping"):
        run_side_by_side([cells], cells, 2, prepare, lambda c, _w: c.result("pass"))

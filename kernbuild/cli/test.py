"""``kernbuild test``: the matrix of pipelines, images and targets."""

from __future__ import annotations

import shlex
import threading
from pathlib import Path
from typing import Optional

import typer
from rich.live import Live
from rich.table import Table

from kernbuild.cli import JSON, _print_json, _suite, app, err, out
from kernbuild.runtime import RUNNERS, engine_and_runner
from kernbuild.workspace import Workspace

CELL_STYLE = {"pass": "green", "fail": "bold red", "skip": "dim", "running": "yellow",
              "queued": "dim"}


@app.command("test")
def matrix_test(ctx: typer.Context,
                pipeline: list[str] = typer.Option([], "--pipeline", "-p",
                                                   help="Only this pipeline (repeatable)."),
                image_name: list[str] = typer.Option([], "--image", "-i",
                                                     help="Only this image (repeatable)."),
                target: list[str] = typer.Option([], "--target", "-t",
                                                 help=f"{', '.join(RUNNERS)} (repeatable)."),
                jobs: int = typer.Option(1, "--jobs", "-j", min=1,
                                         help="Cells at once; with --executor slurm, Slurm "
                                              "jobs at once, each running its share of the "
                                              "cells one after another."),
                executor: str = typer.Option("local", "--executor",
                                             help="local, or slurm: the cells packed into "
                                                  "Slurm jobs (up to --jobs), balanced by "
                                                  "what each took last time."),
                slurm_args: str = typer.Option("", "--slurm-args",
                                               help="Extra sbatch arguments, such as "
                                                    "'--partition=debug --time=10'."),
                toil_batch_system: str = typer.Option(
                    "single_machine", "--toil-batch-system",
                    help="Where Toil's cells run their CWL steps: single_machine (in the "
                         "cell's own process or Slurm job), or slurm (Toil submits each "
                         "step as a Slurm job, the way large workflows run)."),
                resume: bool = typer.Option(False, "--resume",
                                            help="Rerun only cells that failed, never ran, or "
                                                 "whose inputs changed."),
                junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML."),
                html_dir: Optional[Path] = typer.Option(None, "--html",
                                                        help="Write a static HTML report."),
                gpu: bool = typer.Option(False, "--gpu",
                                         help="Add the GPU images (<name>-gpu) of images with a "
                                              "gpu variant; kern-gpu-check runs before each of "
                                              "their cells, which it skips with its reason."),
                as_json: bool = JSON) -> None:
    """Run every pipeline's smoke workflow in every image form on every target."""
    from kernbuild.matrix import Cell, run_matrix
    from kernbuild.matrix.report import grid, write_html, write_junit
    from kernbuild.results import to_json

    ws: Workspace = ctx.obj
    suite = _suite(ws)
    live_rows: dict[tuple, tuple[str, str]] = {}
    lock = threading.Lock()

    def table() -> Table:
        grid_table = Table("pipeline", "image", "form", "target", "state", "detail")
        for (p, i, f, t), (state, detail) in sorted(live_rows.items()):
            grid_table.add_row(p, i, f, t, f"[{CELL_STYLE.get(state, '')}]{state}[/]", detail)
        return grid_table

    with Live(table(), console=err, refresh_per_second=4, transient=not err.is_terminal) as live:
        def report(item, state: str) -> None:
            with lock:
                if isinstance(item, Cell):
                    key = (item.pipeline.name, item.image, item.form, item.target.name)
                    live_rows[key] = (state, "")
                else:
                    key = (item.pipeline, item.image, item.form, item.target)
                    detail = item.reason or f"{item.seconds:.1f} s"
                    live_rows[key] = (item.status, detail + (" (resumed)" if item.resumed else ""))
                live.update(table())

        run = run_matrix(ws, suite, pipelines=pipeline or None, images=image_name or None,
                         targets=target or None, jobs=jobs, resume=resume,
                         executor=executor, slurm_args=shlex.split(slurm_args),
                         gpu=gpu, toil_batch_system=toil_batch_system, report=report,
                         say=lambda text: live.console.print(text, markup=False,
                                                             highlight=False))
    results = run.cells
    if junit:
        write_junit(results, junit)
    if html_dir:
        index = write_html(run, html_dir)
        err.print(f"report: {index}", markup=False, highlight=False)
    if as_json:
        _print_json([{"pipeline": r.pipeline, "image": r.image, "form": r.form,
                      "target": r.target, **dict(zip(("engine", "runner"),
                                                     engine_and_runner(r.target))),
                      "status": r.status, "reason": r.reason,
                      "seconds": round(r.seconds, 3), "overhead": round(r.overhead, 3),
                      "started": round(r.started, 3),
                      "resumed": r.resumed, "key": r.key,
                      "steps": to_json(r.steps)} for r in results])
    else:
        rows, targets, cells = grid(results)
        summary = Table("pipeline", "image", "form", *targets)
        for row in rows:
            marks = []
            for t in targets:
                r = cells.get((row, t))
                marks.append(f"[{CELL_STYLE[r.status]}]{r.status}[/]" if r else "")
            summary.add_row(*row, *marks)
        out.print(summary)
        skipped: dict[str, list[str]] = {}  # one line per reason: it is often shared
        for r in results:
            if r.status == "skip":
                skipped.setdefault(r.reason, []).append(f"{r.image} ({r.form}) on {r.target}")
        for reason, cells_ in skipped.items():
            out.print(f"skipped {', '.join(cells_)}: {reason}", style="dim", markup=False,
                      highlight=False)
    failed = [r for r in results if r.status == "fail"]
    for r in failed:
        err.print(f"error: {r.pipeline} in {r.image} ({r.form}) on {r.target}: {r.reason}\n"
                  + "\n".join(r.log.splitlines()[-15:]), markup=False, highlight=False)
    if failed:
        raise typer.Exit(1)

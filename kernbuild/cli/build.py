"""``kernbuild package | image | smoke | repo``: packages, images and the repository."""

from __future__ import annotations

import shlex
import threading
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from kernbuild.cli import (JSON, RECIPE, _print_json, _recipe_names, _suite, app, err, out,
                           repo_app)
from kernbuild.errors import KernError
from kernbuild.workspace import Workspace

NO_WAIT = typer.Option(False, "--no-wait",
                       help="Refuse at once, instead of waiting, when another kernbuild "
                            "command holds what this one needs of the state directory "
                            "(KERNBUILD_LOCK_WAIT=SECONDS waits at most that long).")


def _workspace(ctx: typer.Context, no_wait: bool) -> Workspace:
    """The command's workspace; with --no-wait, one whose locks refuse instead of waiting."""
    return replace(ctx.obj, lock_wait=0) if no_wait else ctx.obj


STATE_STYLE = {"queued": "dim", "building": "yellow", "publishing": "cyan", "built": "green",
               "cached": "green", "failed": "bold red", "skipped": "red"}


@app.command()
def package(ctx: typer.Context,
            names: list[str] = typer.Argument(None, autocompletion=_recipe_names,
                                              help="Recipes to build (with what they "
                                                   "need) [default: the whole suite, or "
                                                   "every recipe with --variant]."),
            jobs: int = typer.Option(1, "--jobs", "-j", min=1,
                                     help="Build up to N independent recipes at once."),
            force: bool = typer.Option(False, "--force", help="Rebuild even if cached."),
            variant: str = typer.Option(None, "--variant", metavar="NAME",
                                        help="Build the recipes' variant NAME (such as gpu) "
                                             "into its own packages, <package>-NAME."),
            no_snapshots: bool = typer.Option(
                False, "--no-snapshots",
                help="Install the build dependencies anew in each build: use no "
                     "build-dependency snapshot (kern/build-deps images) and make none."),
            executor: str = typer.Option(
                "local", "--executor",
                help="local, or slurm: each build a Slurm job (on a node with a Docker "
                     "engine that sees the state directory), up to --jobs at once."),
            slurm_args: str = typer.Option("", "--slurm-args",
                                           help="Extra sbatch arguments, such as "
                                                "'--partition=build --time=60'."),
            no_wait: bool = NO_WAIT,
            as_json: bool = JSON) -> None:
    """Build recipes into .debs in clean containers and publish them to the signed repository."""
    from kernbuild.build import open_builder, with_variant
    from kernbuild.recipe.graph import build_order

    if executor not in ("local", "slurm"):
        raise KernError(f"--executor {executor}: no such executor", "choose local or slurm")
    ws = _workspace(ctx, no_wait)
    suite = _suite(ws)
    requested = names or suite.names_with_variant(variant)
    suite, names = with_variant(suite, requested, variant)
    order = build_order(suite, names)
    status = {r.name: ("queued", "") for r in order}
    lock = threading.Lock()

    def table() -> Table:
        grid = Table("recipe", "version", "state", "detail")
        for recipe in order:
            state, detail = status[recipe.name]
            grid.add_row(recipe.name, recipe.debian_version(suite.settings),
                         f"[{STATE_STYLE.get(state, '')}]{state}[/]", detail.splitlines()[0]
                         if detail else "")
        return grid

    with Live(table(), console=err, refresh_per_second=4, transient=not err.is_terminal) as live:
        def report(recipe: str, state: str, detail: str) -> None:
            with lock:
                status[recipe] = (state, detail)
                live.update(table())

        builder = open_builder(ws, suite, jobs=jobs, report=report,
                               say=lambda text: live.console.print(text))
        builder.snapshots = not no_snapshots
        if executor == "slurm":
            from kernbuild.build.slurm import use_slurm

            use_slurm(builder, requested, variant, shlex.split(slurm_args),
                      say=lambda text: live.console.print(text))
        results = builder.run(names, force=force)
    if as_json:
        _print_json([{"recipe": r.recipe, "version": r.version, "state": r.state, "key": r.key,
                      "seconds": round(r.seconds, 3), "debs": [str(d) for d in r.debs],
                      "lintian": list(r.lintian), "error": r.error,
                      **({"job": r.job} if r.job else {})} for r in results])
    else:
        summary = Table("recipe", "version", "state", "time", "packages", "lintian")
        for r in results:
            errors = sum(1 for line in r.lintian if line.startswith("E:"))
            summary.add_row(r.recipe, r.version, f"[{STATE_STYLE[r.state]}]{r.state}[/]",
                            (f"{r.seconds:.1f} s" if r.state == "built" else "-")
                            + (f", job {r.job}" if r.job else ""),
                            "\n".join(d.name for d in r.debs) or "-",
                            f"{errors} E, {len(r.lintian) - errors} W" if r.lintian else "clean"
                            if r.state == "built" else "-")
        out.print(summary)
        for r in results:
            for line in r.lintian:
                if line.startswith("E:"):
                    err.print(f"lintian {line}", markup=False, highlight=False)
        if all(r.state == "cached" for r in results):
            out.print("nothing to build: every package is up to date", style="green")
    failed = [r for r in results if r.state in ("failed", "skipped")]
    for r in failed:
        err.print(f"error: {r.error}", markup=False, highlight=False)
    if failed:
        raise typer.Exit(1)


@app.command()
def image(ctx: typer.Context,
          names: list[str] = typer.Argument(None, autocompletion=_recipe_names,
                                            help="Recipes to make images of "
                                                 "[default: every image of the suite, "
                                                 "or every GPU image with --gpu]."),
          formats: list[str] = typer.Option(["docker"], "--format", "-f",
                                            help="docker, sif (a SIF beside the Docker image) "
                                                 "or sandbox (an unpacked tree for CVMFS); "
                                                 "repeat for several."),
          output: Optional[Path] = typer.Option(None, "-o", "--output",
                                                help="Where SIFs go [default: the state's "
                                                     "images/sif]."),
          cvmfs: Optional[Path] = typer.Option(None, "--cvmfs",
                                               help="The CVMFS repository directory that "
                                                    "sandboxes are published in."),
          jobs: int = typer.Option(1, "--jobs", "-j", min=1,
                                   help="Build up to N independent packages at once."),
          gpu: bool = typer.Option(False, "--gpu",
                                   help="Build GPU images: the gpu variants on the CUDA "
                                        "runtime, named kern/<name>-gpu."),
          no_wait: bool = NO_WAIT,
          as_json: bool = JSON) -> None:
    """Build images of recipes from the signed repository and smoke-test inside each form.

    Packages not built yet are built first. Each image is recorded in kern.lock. A GPU
    image (--gpu) never holds the NVIDIA driver's libraries, and kern-gpu-check in it
    says whether this host's GPU can run it.
    """
    from kernbuild.images.build import FORMATS, build_images
    from kernbuild.images.plan import image_names
    from kernbuild.results import to_json

    ws = _workspace(ctx, no_wait)
    for form in formats:
        if form not in FORMATS:
            raise KernError(f"unknown image format {form!r}", f"use one of {', '.join(FORMATS)}")
    if "sandbox" in formats and cvmfs is None:
        raise KernError("--format sandbox needs --cvmfs DIR", "the CVMFS repository directory")
    suite = _suite(ws)
    with err.status("building images") as status:
        def report(recipe: str, state: str, detail: str) -> None:
            status.update(f"{recipe}: {state} {detail}".strip())

        builds = build_images(ws, suite, names or image_names(suite, gpu=gpu),
                              formats=tuple(formats), output=output,
                              cvmfs=cvmfs, jobs=jobs, gpu=gpu, report=report,
                              say=lambda text: err.print(text))
    if as_json:
        _print_json(to_json(builds))
    else:
        table = Table("image", "id", "size", "forms", "smoke")
        for build in builds:
            lock, failed = build.lock, len(build.failures())
            forms = ["docker"] + [f"{form}: {record.path}" for form, record in
                                  (("sif", lock.sif), ("sandbox", lock.sandbox)) if record]
            table.add_row(lock.tag, lock.short_id, f"{lock.size / 1e6:.0f} MB",
                          "\n".join(forms), "[green]passed[/]" if not failed
                          else f"[bold red]{failed} failed[/]")
        out.print(table)
        for build in builds:
            if check := build.gpu_check:  # exit 2 (no GPU here) is an answer, not a failure
                style = "green" if check.exit_code == 0 else "yellow"
                out.print(f"{build.lock.tag}: kern-gpu-check (GPUs passed: {check.gpus}): "
                          f"[{style}]{escape(check.output)}[/] (exit {check.exit_code})")
    failures = [(build.lock.tag, form, result) for build in builds
                for form, result in build.failures()]
    for tag, form, result in failures:
        err.print(f"error: {tag} ({form}): smoke step failed (exit {result.exit_code}): "
                  f"{result.command}\n{result.output.rstrip()}", markup=False,
                  highlight=False)
    if failures:
        raise typer.Exit(1)


@app.command()
def smoke(ctx: typer.Context, name: str = RECIPE, as_json: bool = JSON) -> None:
    """Install a recipe's packages from the repository in a clean container; run its smoke steps."""
    from kernbuild import engine
    from kernbuild.build import claim_containers
    from kernbuild.smoke import smoke_recipe

    suite = _suite(ctx.obj)
    suite.get(name)  # an unknown recipe is its own error, engine or not
    claim_containers(ctx.obj, engine.connect(), say=lambda text: err.print(text))
    results = smoke_recipe(ctx.obj, suite, name)
    if as_json:
        _print_json([{"command": r.command, "exit_code": r.exit_code, "seconds": r.seconds,
                      "output": r.output} for r in results])
    else:
        for r in results:
            mark = "[green]ok[/]" if r.ok else f"[bold red]exit {r.exit_code}[/]"
            out.print(f"{mark} {escape(r.command)} ({r.seconds:.1f} s)", highlight=False)
            if not r.ok or len(results) > 1 and r is not results[0]:
                out.print(r.output.rstrip(), markup=False, highlight=False)
    if not all(r.ok for r in results):
        raise typer.Exit(1)



@repo_app.command("list")
def repo_list(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Every package version the repository serves."""
    from kernbuild.build import open_repository

    refs = open_repository(ctx.obj, _suite(ctx.obj)).packages()
    if as_json:
        _print_json([{"name": r.name, "version": r.version, "architecture": r.architecture,
                      "filename": r.filename} for r in refs])
        return
    table = Table("package", "version", "arch", "file")
    for r in refs:
        table.add_row(r.name, r.version, r.architecture, r.filename)
    out.print(table)


@repo_app.command("info")
def repo_info(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Where the repository is, its key, and the line a client adds to its sources."""
    from kernbuild.build import open_repository

    repo = open_repository(ctx.obj, _suite(ctx.obj))
    keyring = repo.root / "kern-archive-keyring.gpg"
    data = {"path": str(repo.current), "url": f"file:{repo.current}",
            "distribution": repo.distribution, "key": str(keyring),
            "fingerprint": repo.key.fingerprint,
            "sources_line": repo.sources_line(f"file:{repo.current}",
                                              "/etc/apt/keyrings/kern-archive-keyring.gpg")}
    if as_json:
        _print_json(data)
        return
    for key, value in data.items():
        out.print(f"[bold]{key}[/]: {value}", highlight=False)


@repo_app.command("verify")
def repo_verify(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Check the served repository as apt would; name each wrong file, exit 1 if any.

    The signatures of InRelease and Release.gpg (gpgv, with the repository's key), each
    index against the SHA256 and size Release lists, each pool file against its index's.
    """
    from kernbuild.build import open_repository

    if not (ctx.obj.repo / "current").is_symlink():  # before open_repository makes a key
        raise KernError(f"nothing has been published in {ctx.obj.repo}: nothing to verify",
                        "publish packages first: kernbuild package")
    result = open_repository(ctx.obj, _suite(ctx.obj)).verify()
    if as_json:
        _print_json(result.as_dict())
    else:
        for problem in result.problems:
            out.print(str(problem), markup=False, highlight=False)
        (out if result.ok else err).print(result.summary(), markup=False, highlight=False)
    if not result.ok:
        raise typer.Exit(1)

"""The ``kernbuild`` command line: parse, call a service, show the result. No logic lives here.

Every user-caused failure arrives as a :class:`~kernbuild.errors.KernError` and is
printed as one message with a hint and exit status 1; listing commands take
``--json`` for machines.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import threading
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.console import Console
from rich.live import Live
from rich.table import Table

from kernbuild.errors import KernError, RecipeError
from kernbuild.workspace import Workspace

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Package, containerise and test radio-astronomy software, KERN-style.")
repo_app = typer.Typer(no_args_is_help=True, help="The suite's signed apt repository.")
app.add_typer(repo_app, name="repo")

# Off a terminal (a CI log, a pipe) rich would assume 80 columns and cut names short
# ("katpoi…"): give tables the room to show them whole.
_LOG_WIDTH = 240
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else _LOG_WIDTH)
err = Console(stderr=True, soft_wrap=True,  # one diagnostic, one line: greppable
              width=None if sys.stderr.isatty() else _LOG_WIDTH)

JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


@app.callback()
def _options(
    ctx: typer.Context,
    recipes: Path = typer.Option(Path("recipes"), "--recipes", envvar="KERNBUILD_RECIPES",
                                 help="The suite's recipe directory."),
    state: Optional[Path] = typer.Option(None, "--state", envvar="KERNBUILD_STATE",
                                         help="Where kernbuild keeps caches, builds and the "
                                              "repository (default: .kernbuild beside the "
                                              "recipe directory)."),
    source_mirrors: list[Path] = typer.Option(
        [], "--source-mirror", metavar="DIR",
        help="A directory of upstream files (such as git archive tarballs named "
             "<name>-<commit>.tar.gz), searched before the network; repeatable. "
             "KERNBUILD_SOURCE_MIRROR holds more, separated by ':'."),
) -> None:
    recipes = recipes.resolve()
    from_env = [Path(p) for p in os.environ.get("KERNBUILD_SOURCE_MIRROR", "").split(os.pathsep)
                if p]
    ctx.obj = Workspace(recipes, (state or recipes.parent / ".kernbuild").resolve(),
                        tuple(p.resolve() for p in [*source_mirrors, *from_env]))


def _suite(ws: Workspace, paths: list[Path] | None = None):
    from kernbuild.recipe import load_suite

    if not ws.recipes.is_dir() and not paths:
        raise KernError(f"no recipe directory at {ws.recipes}",
                        "run kernbuild in a suite checkout, or pass --recipes DIR")
    return load_suite(ws.recipes, paths)


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


# --- recipes ----------------------------------------------------------------------


@app.command()
def lint(ctx: typer.Context,
         paths: list[Path] = typer.Argument(None, help="Recipe files or directories "
                                                      "[default: the suite]."),
         as_json: bool = JSON) -> None:
    """Check recipes: schema, Debian names, versions and relations, sources, cycles."""
    try:
        suite = _suite(ctx.obj, paths or None)
    except RecipeError as exc:
        if as_json:
            _print_json([d.as_dict() for d in exc.diagnostics])
        else:
            for diagnostic in exc.diagnostics:
                err.print(str(diagnostic), markup=False, highlight=False)
            err.print(f"{len(exc.diagnostics)} problem(s)", style="bold red")
        raise typer.Exit(1)
    if as_json:
        _print_json([])
    else:
        out.print(f"{len(suite.recipes)} recipe(s) OK", style="green")


@app.command()
def show(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """Show one recipe as kernbuild understands it."""
    from kernbuild.recipe.graph import dependencies, reverse_dependencies

    suite = _suite(ctx.obj)
    recipe = suite.get(name)
    data = {
        "name": recipe.name,
        "version": recipe.debian_version(suite.settings),
        "upstream_version": recipe.version,
        "summary": recipe.summary,
        "file": str(recipe.path),
        "source": {"kind": recipe.source.kind, "ref": recipe.source.ref,
                   "sha256": recipe.source.sha256, "commit": recipe.source.commit},
        "build_system": recipe.build.system,
        "build_depends": list(recipe.build.depends),
        "packages": {p.name: {"architecture": p.architecture,
                              "depends": list(p.relations.get("depends", ()))}
                     for p in recipe.packages},
        "depends_on": sorted(dependencies(suite, recipe)),
        "needed_by": sorted(reverse_dependencies(suite, recipe.name)),
        "variants": {name: {"packages": [v.suffixed(p) for p in recipe.binary_names],
                            "build_depends": list(v.build_depends),
                            "configure": list(v.configure), "env": dict(v.env),
                            "cuda": v.cuda}
                     for name, v in sorted(recipe.variants.items())},
        "smoke": [s.run for s in recipe.smoke],
    }
    if as_json:
        _print_json(data)
        return
    table = Table(show_header=False, box=None)
    for key, value in data.items():
        if isinstance(value, dict):
            value = "\n".join(f"{k}: {v}" for k, v in value.items()) or "-"
        elif isinstance(value, list):
            value = ", ".join(value) or "-"
        table.add_row(f"[bold]{key}[/]", str(value))
    out.print(table)


@app.command()
def graph(ctx: typer.Context,
          names: list[str] = typer.Argument(None,
                                            help="Only these recipes and their dependencies."),
          as_json: bool = JSON) -> None:
    """The build order: each recipe after the recipes it depends on."""
    from kernbuild.recipe.graph import build_order, dependencies, levels

    suite = _suite(ctx.obj)
    order = build_order(suite, names or None)
    waves = levels(suite, order)
    wave_of = {r.name: i for i, wave in enumerate(waves) for r in wave}
    rows = [{"name": r.name, "version": r.debian_version(suite.settings), "wave": wave_of[r.name],
             "depends_on": sorted(dependencies(suite, r))} for r in order]
    if as_json:
        _print_json(rows)
        return
    table = Table("#", "recipe", "version", "wave", "depends on")
    for index, row in enumerate(rows, 1):
        table.add_row(str(index), row["name"], row["version"], str(row["wave"]),
                      ", ".join(row["depends_on"]) or "-")
    out.print(table)


SOURCE_STYLE = {"cache": "green", "mirror": "green", "network": "green", "local": "green",
                "none": "dim", "missing": "bold red"}


@app.command("suite")
def suite_catalogue(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Every recipe: version, where its source comes from here, what is built, what needs it.

    Exit status 1 when a recipe's source can be had neither from the cache, a source
    mirror nor the network.
    """
    from kernbuild.catalogue import catalogue

    entries = catalogue(ctx.obj, _suite(ctx.obj))
    if as_json:
        _print_json([e.to_json() for e in entries])
    else:
        table = Table("recipe", "version", "source", "from here", "build", "published",
                      "packages", "needed by")
        for e in entries:
            table.add_row(e.name, e.version, e.source_kind,
                          f"[{SOURCE_STYLE[e.source.where]}]{e.source.where}[/]",
                          e.build_system, e.published or "[dim]-[/]", "\n".join(e.packages),
                          ", ".join(e.needed_by) or "-")
        out.print(table)
        published = sum(1 for e in entries if e.published)
        out.print(f"{len(entries)} recipes, {published} published")
    missing = [e for e in entries if not e.source.available]
    for e in missing:
        err.print(f"error: {e.name}: source missing: {e.source.detail}", markup=False,
                  highlight=False)
    if missing:
        raise typer.Exit(1)


@app.command()
def new(ctx: typer.Context,
        name: str = typer.Argument(..., help="The PyPI project (with --pypi), or the new "
                                             "recipe's name (with --debian)."),
        version: Optional[str] = typer.Argument(None, help="The PyPI release or Debian "
                                                          "source version [default: newest]."),
        pypi: bool = typer.Option(False, "--pypi", help="From PyPI: the sdist's metadata."),
        debian: Optional[str] = typer.Option(None, "--debian", metavar="SOURCE",
                                             help="From a Debian source package."),
        distribution: Optional[str] = typer.Option(None, "--distribution", "-d",
                                                   help="Where the Debian source comes "
                                                        "from, such as sid for a backport "
                                                        "[default: the suite's]."),
        force: bool = typer.Option(False, "--force", help="Replace an existing recipe."),
        stdout: bool = typer.Option(False, "--stdout", help="Print the recipe, write "
                                                            "nothing.")) -> None:
    """Write a recipe from upstream's metadata: version, sha256, licence, dependencies.

    Python requirements become Debian packages: the suite's own where it has a recipe,
    Debian's where the suite's distribution has them; the rest are listed as missing.
    What needs judgement is marked TODO in the file.
    """
    from kernbuild.recipe.new import new_recipe

    with err.status(f"reading {name}'s metadata"):
        made = new_recipe(ctx.obj, name, pypi=pypi, debian=debian, version=version,
                          distribution=distribution, force=force)
    if stdout:
        sys.stdout.write(made.text)
    else:
        out.print(f"wrote {made.write()}", highlight=False)
    for item in made.missing:
        err.print(f"missing: {item}", markup=False, highlight=False)
    for item in made.todo:
        err.print(f"TODO: {item}", markup=False, highlight=False)
    if not stdout:
        out.print(f"next: edit what needs judgement, then kernbuild lint and "
                  f"kernbuild package {made.path.stem}", highlight=False)


@app.command()
def debianize(ctx: typer.Context, name: str,
              output: Path = typer.Option(..., "-o", "--output", help="Directory to write."),
              debian_only: bool = typer.Option(False, "--debian-only",
                                               help="Write only debian/, without fetching "
                                                    "the source.")) -> None:
    """Write a recipe's source tree with its rendered debian/ directory, for inspection."""
    import shutil

    from kernbuild import debian
    from kernbuild.sources import SourceCache

    ws: Workspace = ctx.obj
    suite = _suite(ws)
    recipe = suite.get(name)
    if output.exists() and any(output.iterdir()):
        raise KernError(f"{output} exists and is not empty", "choose a new directory")
    tree = None
    if not debian_only:
        tree = SourceCache.for_workspace(ws, suite.settings).fetch(recipe).tree
        shutil.copytree(tree, output, symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(output / "debian", ignore_errors=True)
    debian.write(debian.render(recipe, suite.settings, tree), output)
    out.print(f"wrote {output}" + ("/debian" if debian_only else ""))


@app.command()
def render(ctx: typer.Context,
           output: Optional[Path] = typer.Option(None, "-o", "--output",
                                                 help="Directory [default: dockerfiles/ "
                                                      "beside the recipes]."),
           check: bool = typer.Option(False, "--check",
                                      help="Write nothing; exit 1 if the directory is out "
                                           "of date.")) -> None:
    """Write every image's Dockerfile and Singularity definition, from one plan each."""
    from kernbuild.images import drift, render_suite, write_tree

    ws: Workspace = ctx.obj
    files = render_suite(_suite(ws))
    directory = output or ws.recipes.parent / "dockerfiles"
    stale = drift(files, directory)
    if check:
        for path in stale:
            err.print(f"{directory / path}: out of date", markup=False, highlight=False)
        if stale:
            err.print("run 'kernbuild render' and commit the result", style="bold red")
            raise typer.Exit(1)
        out.print(f"{directory} is up to date ({len(files)} files)")
        return
    write_tree(files, directory)
    out.print(f"wrote {len(stale)} of {len(files)} files in {directory}")


# --- building ---------------------------------------------------------------------

STATE_STYLE = {"queued": "dim", "building": "yellow", "publishing": "cyan", "built": "green",
               "cached": "green", "failed": "bold red", "skipped": "red"}


@app.command()
def package(ctx: typer.Context,
            names: list[str] = typer.Argument(None, help="Recipes to build (with what they "
                                                         "need) [default: the whole suite, or "
                                                         "every recipe with --variant]."),
            jobs: int = typer.Option(1, "--jobs", "-j", min=1,
                                     help="Build up to N independent recipes at once."),
            force: bool = typer.Option(False, "--force", help="Rebuild even if cached."),
            variant: str = typer.Option(None, "--variant", metavar="NAME",
                                        help="Build the recipes' variant NAME (such as gpu) "
                                             "into its own packages, <package>-NAME."),
            as_json: bool = JSON) -> None:
    """Build recipes into .debs in clean containers and publish them to the signed repository."""
    from kernbuild.build import open_builder
    from kernbuild.recipe.graph import build_order

    ws: Workspace = ctx.obj
    suite = _suite(ws)
    names = list(names or suite.names_with_variant(variant))
    if variant:
        for index, name in enumerate(names):
            suite, derived = suite.with_variant(name, variant)
            names[index] = derived.name
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
        results = builder.run(names, force=force)
    if as_json:
        _print_json([{"recipe": r.recipe, "version": r.version, "state": r.state, "key": r.key,
                      "seconds": round(r.seconds, 3), "debs": [str(d) for d in r.debs],
                      "lintian": list(r.lintian), "error": r.error} for r in results])
    else:
        summary = Table("recipe", "version", "state", "time", "packages", "lintian")
        for r in results:
            errors = sum(1 for line in r.lintian if line.startswith("E:"))
            summary.add_row(r.recipe, r.version, f"[{STATE_STYLE[r.state]}]{r.state}[/]",
                            f"{r.seconds:.1f} s" if r.state == "built" else "-",
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
          names: list[str] = typer.Argument(None, help="Recipes to make images of "
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
          as_json: bool = JSON) -> None:
    """Build images of recipes from the signed repository and smoke-test inside each form.

    Packages not built yet are built first. Each image is recorded in kern.lock. A GPU
    image (--gpu) never holds the NVIDIA driver's libraries, and kern-gpu-check in it
    says whether this host's GPU can run it.
    """
    from kernbuild.images import FORMATS, build_images, image_names, smoke_failures

    ws: Workspace = ctx.obj
    for form in formats:
        if form not in FORMATS:
            raise KernError(f"unknown image format {form!r}", f"use one of {', '.join(FORMATS)}")
    if "sandbox" in formats and cvmfs is None:
        raise KernError("--format sandbox needs --cvmfs DIR", "the CVMFS repository directory")
    suite = _suite(ws)
    with err.status("building images") as status:
        def report(recipe: str, state: str, detail: str) -> None:
            status.update(f"{recipe}: {state} {detail}".strip())

        entries = build_images(ws, suite, names or image_names(suite, gpu=gpu),
                               formats=tuple(formats), output=output,
                               cvmfs=cvmfs, jobs=jobs, gpu=gpu, report=report,
                               say=lambda text: err.print(text))
    failures = [(entry["tag"], form, result) for entry in entries
                for form, result in smoke_failures(entry)]
    if as_json:
        _print_json(entries)
    else:
        table = Table("image", "id", "size", "forms", "smoke")
        for entry in entries:
            failed = sum(1 for tag, _, _ in failures if tag == entry["tag"])
            forms = ["docker"] + [f"{form}: {entry[form]['path']}" for form in ("sif", "sandbox")
                                  if form in entry]
            table.add_row(entry["tag"], entry["image"][7:19], f"{entry['size'] / 1e6:.0f} MB",
                          "\n".join(forms), "[green]passed[/]" if not failed
                          else f"[bold red]{failed} failed[/]")
        out.print(table)
        for entry in entries:
            if "gpu_check" in entry:  # exit 2 (no GPU here) is an answer, not a failure
                check = entry["gpu_check"]
                style = "green" if check["exit_code"] == 0 else "yellow"
                out.print(f"{entry['tag']}: kern-gpu-check (GPUs passed: {check['gpus']}): "
                          f"[{style}]{escape(check['output'])}[/] (exit {check['exit_code']})")
    for tag, form, result in failures:
        err.print(f"error: {tag} ({form}): smoke step failed (exit {result['exit_code']}): "
                  f"{result['command']}\n{result['output'].rstrip()}", markup=False,
                  highlight=False)
    if failures:
        raise typer.Exit(1)


@app.command()
def smoke(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """Install a recipe's packages from the repository in a clean container; run its smoke steps."""
    from kernbuild import engine
    from kernbuild.build import open_repository
    from kernbuild.build.environment import base_tag
    from kernbuild.build.package import published_versions
    from kernbuild.smoke import run_smoke

    ws: Workspace = ctx.obj
    suite = _suite(ws)
    recipe = suite.get(name)
    client = engine.connect()
    base = base_tag(suite.settings)
    if engine.image_id(client, base) is None:
        raise KernError(f"the base image {base} is missing", f"run 'kernbuild package {name}'")
    repo = open_repository(ws, suite)
    components = suite.components(recipe)
    areas = (f"deb {suite.settings.mirror} {suite.settings.distribution} {' '.join(components)}"
             if components else None)
    results = run_smoke(client, base, repo, recipe, published_versions(repo, suite), areas)
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


CELL_STYLE = {"pass": "green", "fail": "bold red", "skip": "dim", "running": "yellow",
              "queued": "dim"}


@app.command("test")
def matrix_test(ctx: typer.Context,
                pipeline: list[str] = typer.Option([], "--pipeline", "-p",
                                                   help="Only this pipeline (repeatable)."),
                image_name: list[str] = typer.Option([], "--image", "-i",
                                                     help="Only this image (repeatable)."),
                target: list[str] = typer.Option([], "--target", "-t",
                                                 help="docker, udocker, apptainer, sif-bwrap "
                                                      "or native (repeatable)."),
                jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Cells at once."),
                executor: str = typer.Option("local", "--executor",
                                             help="local, or slurm: each cell a Slurm job."),
                slurm_args: str = typer.Option("", "--slurm-args",
                                               help="Extra sbatch arguments, such as "
                                                    "'--partition=debug --time=10'."),
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

        results = run_matrix(ws, suite, pipelines=pipeline or None, images=image_name or None,
                             targets=target or None, jobs=jobs, resume=resume,
                             executor=executor, slurm_args=shlex.split(slurm_args),
                             gpu=gpu, report=report,
                             say=lambda text: live.console.print(text, markup=False,
                                                                 highlight=False))
    if junit:
        write_junit(results, junit)
    if html_dir:
        index = write_html(results, html_dir)
        err.print(f"report: {index}", markup=False, highlight=False)
    if as_json:
        _print_json([{"pipeline": r.pipeline, "image": r.image, "form": r.form,
                      "target": r.target, "status": r.status, "reason": r.reason,
                      "seconds": round(r.seconds, 3), "resumed": r.resumed, "key": r.key,
                      "steps": [vars(s) for s in r.steps]} for r in results])
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


# --- the repository ---------------------------------------------------------------


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


# --- the host ---------------------------------------------------------------------

DOCTOR_MARK = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "skip": "[dim]-[/]",
               "fail": "[bold red]FAIL[/]"}


@app.command()
def doctor(ctx: typer.Context,
           gpu: bool = typer.Option(False, "--gpu",
                                    help="Also check the NVIDIA driver, the runtimes' GPU "
                                         "support, the GPUs, and which GPU images can run."),
           as_json: bool = JSON) -> None:
    """Check this host: the Docker engine and the tools kernbuild runs (exit 1 if one fails)."""
    from kernbuild.doctor import diagnose
    from kernbuild.images import LOCKFILE

    report = diagnose(ctx.obj.recipes.parent / LOCKFILE, with_gpu=gpu)
    if as_json:
        _print_json(report.as_dict())
    else:
        table = Table("", "check", "detail", box=None, show_header=False)
        for index, check in enumerate(report.checks):
            if index == 0 or check.section != report.checks[index - 1].section:
                table.add_row("", f"[bold]{check.section}[/]", "")
            hint = f"\n[dim]hint: {escape(check.hint)}[/]" if check.hint else ""
            table.add_row(DOCTOR_MARK[check.status], escape(check.name),
                          escape(check.detail) + hint)
        out.print(table)
        failed = sum(check.status == "fail" for check in report.checks)
        warned = sum(check.status == "warn" for check in report.checks)
        out.print(f"{failed} check(s) failed" if failed else
                  f"no check failed, {warned} warning(s)" if warned else "no problems found",
                  style="bold red" if failed else "yellow" if warned else "green")
    if not report.ok:
        raise typer.Exit(1)


def main() -> None:
    """Console entry point: user errors print one message and exit 1, without a traceback."""
    try:
        app()
    except RecipeError as exc:
        for diagnostic in exc.diagnostics:
            err.print(str(diagnostic), markup=False, highlight=False)
        sys.exit(1)
    except KernError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()

"""``kernbuild lint | show | graph | suite | new | debianize | render``: the recipes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from kernbuild.cli import (JSON, RECIPE, _field, _print_json, _recipe_names, _suite, app, err,
                           out)
from kernbuild.errors import RecipeError
from kernbuild.workspace import Workspace

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
def show(ctx: typer.Context, name: str = RECIPE, as_json: bool = JSON) -> None:
    """Show one recipe as kernbuild understands it."""
    from kernbuild.catalogue import describe

    data = describe(_suite(ctx.obj), name)
    if as_json:
        _print_json(data)
        return
    table = Table(show_header=False, box=None)
    for key, value in data.items():
        table.add_row(f"[bold]{key}[/]", escape(_field(value)))
    out.print(table)


@app.command()
def graph(ctx: typer.Context,
          names: list[str] = typer.Argument(None, autocompletion=_recipe_names,
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
def debianize(ctx: typer.Context, name: str = RECIPE,
              output: Path = typer.Option(..., "-o", "--output", help="Directory to write."),
              debian_only: bool = typer.Option(False, "--debian-only",
                                               help="Write only debian/, without fetching "
                                                    "the source.")) -> None:
    """Write a recipe's source tree with its rendered debian/ directory, for inspection."""
    from kernbuild.build import debianize as write_tree

    ws: Workspace = ctx.obj
    out.print(f"wrote {write_tree(ws, _suite(ws), name, output, debian_only)}")


@app.command()
def render(ctx: typer.Context,
           output: Optional[Path] = typer.Option(None, "-o", "--output",
                                                 help="Directory [default: dockerfiles/ "
                                                      "beside the recipes]."),
           check: bool = typer.Option(False, "--check",
                                      help="Write nothing; exit 1 if the directory is out "
                                           "of date.")) -> None:
    """Write every image's Dockerfile and Singularity definition, from one plan each."""
    from kernbuild.images.build import render_suite
    from kernbuild.images.writers import drift, write_tree

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

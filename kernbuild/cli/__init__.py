"""The ``kernbuild`` command line: parse, call a service, show the result. No logic lives here.

The commands are in this package's modules by what they work on (recipes, build,
test, host); each calls one service function and formats its typed result.

Every user-caused failure arrives as a :class:`~kernbuild.errors.KernError` and is
printed as one message with a hint and exit status 1; listing commands take
``--json`` for machines.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from kernbuild.errors import KernError, RecipeError
from kernbuild.workspace import Workspace

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
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


def _recipe_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of a recipe name: the recipe files of --recipes (or ./recipes)."""
    directory = Path(ctx.find_root().params.get("recipes")
                     or os.environ.get("KERNBUILD_RECIPES") or "recipes")
    return sorted(p.stem for p in directory.glob("*.yaml")
                  if p.stem != "suite" and p.stem.startswith(incomplete))


RECIPE = typer.Argument(..., help="A recipe of the suite.", autocompletion=_recipe_names)


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


def _field(value, indent: str = "") -> str:
    """A value as a person reads it: a list joined by commas, a mapping one "key: value"
    line per entry (nested ones indented), nothing as "-"; never a Python repr."""
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, dict) and item:
                lines += [f"{indent}{key}:", _field(item, indent + "  ")]
            else:
                lines.append(f"{indent}{key}: {_field(item)}")
        return "\n".join(lines) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(_field(item) for item in value) or "-"
    return "-" if value is None or value == "" else str(value)


def _print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


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


# The commands register themselves on app when imported, in the order --help lists them.
import kernbuild.cli.recipes  # noqa: E402,F401,I001
import kernbuild.cli.build  # noqa: E402,F401
import kernbuild.cli.test  # noqa: E402,F401
import kernbuild.cli.host  # noqa: E402,F401
import kernbuild.cli.release  # noqa: E402,F401

"""``kernbuild outdated | bump | release``: upstream's news, moving a recipe, cutting KERN-N.

The six-monthly release opens with ``kernbuild outdated``; each ``kernbuild bump``
then changes one recipe file, which review and ``kernbuild package`` take from there;
``kernbuild release`` closes it (:mod:`kernbuild.release.cut`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from kernbuild.cli import JSON, RECIPE, _print_json, _recipe_names, _suite, app, err, out
from kernbuild.sources import DEFAULT_PYPI
from kernbuild.upstream import NOT_TRACKED, OUTDATED, UNKNOWN, UP_TO_DATE

STATUS_STYLE = {UP_TO_DATE: "green", OUTDATED: "bold yellow", UNKNOWN: "red",
                NOT_TRACKED: "dim"}

PYPI = typer.Option(DEFAULT_PYPI, "--pypi", envvar="KERNBUILD_PYPI", metavar="URL",
                    help="PyPI's base URL, or a mirror's that serves its JSON API.")


@app.command()
def outdated(ctx: typer.Context,
             names: list[str] = typer.Argument(None, autocompletion=_recipe_names,
                                               help="Only these recipes [default: all]."),
             pypi: str = PYPI, as_json: bool = JSON) -> None:
    """Each recipe's version beside upstream's newest: PyPI, Debian's archive, git, mirrors.

    Exit status 0 even when recipes are outdated (as apt list --upgradable); 1 only
    for a name that is no recipe. A recipe whose upstream cannot be asked is
    'unknown', with the reason.
    """
    from kernbuild.upstream import Upstreams
    from kernbuild.upstream import outdated as report

    suite = _suite(ctx.obj)
    started = time.monotonic()
    with err.status("asking upstreams"):
        rows = report(Upstreams.for_workspace(ctx.obj, suite, pypi=pypi), suite, names or ())
    if as_json:
        _print_json([row.to_json() for row in rows])
        return
    table = Table("recipe", "kind", "current", "newest", "status", "reason")
    for row in rows:
        style = STATUS_STYLE[row.status]
        table.add_row(row.name, row.kind, escape(row.current or "-"),
                      escape(row.newest or "-"), f"[{style}]{row.status}[/]",
                      escape(row.reason) or "")
    out.print(table)
    counts = {status: sum(1 for r in rows if r.status == status) for status in STATUS_STYLE}
    out.print(f"{len(rows)} recipes: {counts[OUTDATED]} outdated, {counts[UP_TO_DATE]} up to "
              f"date, {counts[UNKNOWN]} unknown, {counts[NOT_TRACKED]} without an upstream "
              f"({time.monotonic() - started:.1f} s)", highlight=False)


@app.command()
def bump(ctx: typer.Context, name: str = RECIPE,
         version: Optional[str] = typer.Argument(None, help="Upstream's version "
                                                            "[default: its newest final "
                                                            "release]."),
         pypi: str = PYPI) -> None:
    """Move a recipe to an upstream release: its version and verified sha256, in place.

    Only the recipe's version lines (version, the source's sha256, a debian source's
    version, a git source's commit, and revision) change; comments and layout stay.
    A new upstream version starts again at revision 1.
    """
    from kernbuild.upstream import Upstreams
    from kernbuild.upstream import bump as move

    suite = _suite(ctx.obj)
    with err.status(f"bumping {name}"):
        done = move(Upstreams.for_workspace(ctx.obj, suite, pypi=pypi), suite, name, version)
    if not done.changed:
        out.print(f"{done.name}: nothing to do: {done.verified}", highlight=False)
        return
    for line in done.diff:
        out.print(line, markup=False, highlight=False)
    out.print(f"{done.name}: {done.old} -> {done.new} in {done.path} (verified by "
              f"{done.verified})", highlight=False)
    out.print(f"next: kernbuild package {done.name}", highlight=False)


@app.command()
def release(ctx: typer.Context,
            dry_run: bool = typer.Option(False, "--dry-run",
                                         help="Show the notes from the recipes alone: no "
                                              "build, no matrix, nothing written."),
            target: list[str] = typer.Option([], "--target", "-t",
                                              help="Run the matrix on these targets only "
                                                   "(repeatable) [default: all]."),
            jobs: int = typer.Option(1, "--jobs", "-j", min=1,
                                     help="Builds and matrix cells at once."),
            cvmfs: Optional[Path] = typer.Option(None, "--cvmfs",
                                                 help="Also publish each image's sandbox "
                                                      "there by digest, named "
                                                      "<release>/<image>."),
            as_json: bool = JSON) -> None:
    """Cut KERN-N (suite.yaml release: N): build, run the matrix, freeze kern-N, write notes.

    Refused, with nothing frozen, while a recipe fails to build, a matrix cell fails
    that accepted_failures: does not name, or a recipe of the previous release is
    gone without a reason under dropped:. The record (notes.md, notes.json,
    release.json, kern.lock, junit.xml, report/) is kept in the state's
    releases/kern-N; suite.yaml then says release: N+1.
    """
    from kernbuild.release.cut import cut_release
    from kernbuild.results import to_json

    suite = _suite(ctx.obj)
    with err.status("releasing") as status:
        done = cut_release(ctx.obj, suite, dry_run=dry_run, targets=target or None,
                           jobs=jobs, cvmfs=cvmfs,
                           say=lambda text: (status.update(escape(text)),
                                             err.print(text, markup=False, highlight=False)))
    if as_json:
        _print_json({"dry_run": dry_run, "directory": str(done.directory or ""),
                     "generation": done.generation, "next_release": done.next_release,
                     "notes": to_json(done.notes), "record": to_json(done.record)})
        return
    out.print(done.markdown, markup=False, highlight=False)
    if done.directory is not None:
        err.print(f"{done.notes.release}: {done.record.distribution} frozen (generation "
                  f"{done.generation}); record in {done.directory}; suite.yaml: release: "
                  f"{done.next_release}", markup=False, highlight=False)


REPRODUCE_STYLE = {"identical": "green", "differs": "bold red", "missing": "red",
                   "extra": "red", "failed": "red", "skipped": "dim"}


@app.command()
def reproduce(ctx: typer.Context,
              release_name: str = typer.Argument(..., metavar="RELEASE",
                                                 help="A release kept in the state: kern-N "
                                                      "(or N)."),
              vary: str = typer.Option("", "--vary", metavar="LIST",
                                       help="reprotest's spelling: build_path, time, "
                                            "timezone, umask, hostname, locales; -NAME "
                                            "leaves one out (default: all)."),
              sif: bool = typer.Option(False, "--sif",
                                       help="Also make each image's SIF again and compare "
                                            "its squashfs payload."),
              keep: Optional[Path] = typer.Option(None, "--keep", metavar="DIR",
                                                  help="Keep the rebuilt .debs and their "
                                                       "logs there (new or empty)."),
              recipes_from: Optional[Path] = typer.Option(
                  None, "--recipes-from", metavar="DIR",
                  help="The recipes as released, for a release that kept none."),
              jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Rebuilds at once."),
              as_json: bool = JSON) -> None:
    """Rebuild a release's packages, varied as reprotest varies a build, and compare bytes.

    Each .deb of the release is built again from the recipes it kept, in a scratch
    directory (never the build cache, the repository or kern.lock), with another
    build path, a clock 398 days ahead (faketime), TZ=UTC-14, umask 0002, another
    hostname and LC_ALL=fr_CH.UTF-8, then compared byte for byte with the frozen one
    in the pool; where they differ, the differing files are named (diffoscope on
    the two files, kept with --keep, shows the bytes). Exit status 1 unless every
    .deb (and, with --sif, every SIF payload) is identical.
    """
    from kernbuild.release.reproduce import reproduce_release
    from kernbuild.release.variations import VARIATIONS, choose
    from kernbuild.results import to_json

    chosen = choose(vary)
    if release_name.isdigit():
        release_name = f"{_suite(ctx.obj).settings.name}-{release_name}"
    with err.status(f"reproducing {release_name}") as status:
        done = reproduce_release(
            ctx.obj, release_name, variations=chosen,
            recipes=recipes_from.resolve() if recipes_from else None,
            keep=keep.resolve() if keep else None, jobs=jobs, sif=sif,
            say=lambda text: (status.update(escape(text)),
                              err.print(text, markup=False, highlight=False)))
    if as_json:
        _print_json({**to_json(done), "ok": done.ok})
    else:
        table = Table("recipe", ".deb", "result", "sha256 (frozen)", "sha256 (rebuilt)")
        for deb in done.debs:
            style = REPRODUCE_STYLE[deb.status]
            table.add_row(deb.recipe, deb.file, f"[{style}]{deb.status}[/]",
                          deb.frozen_sha256[:12] or "-", deb.rebuilt_sha256[:12] or "-")
        out.print(table)
        for deb in done.debs:
            for difference in deb.differences:
                out.print(f"{deb.file}: {difference}", markup=False, highlight=False)
            if deb.error:
                out.print(f"{deb.recipe}: {deb.error.splitlines()[0]}", markup=False,
                          highlight=False)
        for check in done.sifs:
            style = REPRODUCE_STYLE[check.status]
            out.print(f"SIF of {escape(check.image)}: [{style}]{check.status}[/] "
                      f"{escape(check.detail or 'against ' + check.against)}")
            for line in check.differences:
                out.print(f"  {line}", markup=False, highlight=False)
        if not done.released_build_image:
            out.print(f"built in {done.build_image[:19]}: the release recorded no build image",
                      markup=False, highlight=False)
        elif done.same_build_image:
            out.print(f"built in {done.build_image[:19]}, the release's own build image",
                      markup=False, highlight=False)
        else:
            out.print(f"built in {done.build_image[:19]}, not the release's "
                      f"{done.released_build_image[:19]} (gone from the engine); "
                      f"{len(done.build_image_changes)} package(s) differ:", markup=False,
                      highlight=False)
            for change in done.build_image_changes:
                out.print(f"  {change}", markup=False, highlight=False)
        for name in done.variations:
            out.print(f"varied {name}: {VARIATIONS[name].description}", markup=False,
                      highlight=False)
        same = sum(1 for d in done.debs if d.status == "identical")
        out.print(f"{release_name}: {same}/{len(done.debs)} .debs identical, varying "
                  f"{', '.join(done.variations) or 'nothing'} ({done.seconds:.1f} s)",
                  highlight=False)
    if not done.ok:
        differing = [d for d in done.debs if d.status == "differs"]
        if differing and not keep and not as_json:
            err.print(f"to see the bytes: kernbuild reproduce {release_name} --keep DIR, then "
                      f"diffoscope {differing[0].frozen} DIR/{differing[0].file}",
                      markup=False, highlight=False)
        raise typer.Exit(1)

"""Cutting KERN-N: build what is not built, run the matrix, freeze, record, move on.

:func:`cut_release` holds the state's ``release`` lock (the top of the lock order:
nothing else of the state changes underneath a release's freeze) and goes:

1. refuse, before anything is built, what can be known from the recipes alone: a
   release number already released, a recipe of the previous release dropped
   without a reason (:func:`kernbuild.release.notes.compare`);
2. build every recipe of the suite (cached builds cost nothing) and publish them;
3. run the matrix (``targets``, default all) and refuse a failing cell that
   ``accepted_failures:`` does not name;
4. write the release record aside (``releases/.kern-N.partial-*``): release.json,
   notes.md, notes.json, the kern.lock of its images, the matrix's JUnit and HTML,
   and ``recipes/``, the suite's recipes as this release built them (suite.yaml
   still saying ``release: N``), from which ``kernbuild reproduce`` rebuilds it;
5. freeze ``kern-N`` in the repository (:meth:`AptRepository.freeze`) as exactly the
   packages of its recipes at their current builds; rename the record into place
   (``releases/kern-N``); and write ``release: N+1`` into suite.yaml, so that the
   next build is already KERN-N+1's and nothing can be published into a frozen
   distribution by a suite that forgot to move on.

A release killed at any point is finished by the next ``kernbuild release``: before
the freeze it writes a journal, ``releases/.kern-N.pending``, removed only once
suite.yaml says N+1. While the journal is there, kern-N frozen in the repository or
its record kept is the interrupted release's own work: the freeze is not repeated
(:meth:`AptRepository.freeze` of the same packages changes nothing), the record is
read back, and the release goes on from there to the same outcome.

A dry run does step 1, computes the versions from the recipes (no Docker, no
build) and returns the notes, with images as kern.lock last recorded them and no
matrix grid: it writes nothing.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from kernbuild.errors import KernError
from kernbuild.failpoints import boundary
from kernbuild.fsutil import atomic_write, atomic_write_json, partial_dir
from kernbuild.recipe.model import Suite
from kernbuild.release.notes import (ReleasedBuildImage, ReleasedCell, ReleasedImage,
                                     ReleasedRecipe, ReleaseNotes, ReleaseRecord, cell_key,
                                     due_date, make_notes, refuse_failures, render_markdown,
                                     with_accepted)
from kernbuild.results import LockEntry, from_json, to_json
from kernbuild.workspace import Workspace

RECORD = "release.json"
RECIPES = "recipes"  # the recipes as released, in the record's directory


@dataclass(frozen=True)
class ReleaseOutcome:
    """What :func:`cut_release` did (or, in a dry run, would do)."""

    record: ReleaseRecord
    notes: ReleaseNotes
    markdown: str
    directory: Path | None  # the release record; None in a dry run
    generation: int | None  # the repository generation first serving it
    next_release: int | None  # what suite.yaml's release: now says


def releases_dir(workspace: Workspace) -> Path:
    """``<state>/releases``: one directory per release, ``kern-N``."""
    return workspace.state / "releases"


def read_record(directory: Path) -> ReleaseRecord:
    """A release's record, or one KernError naming the file."""
    path = directory / RECORD
    try:
        return from_json(ReleaseRecord, json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise KernError(f"{path}: cannot be read as a release record ({exc})",
                        "restore it from CI's artifacts of that release") from None


def previous_record(workspace: Workspace, suite_name: str, number: int) -> ReleaseRecord | None:
    """The newest release before ``number`` kept in the state, if any."""
    root = releases_dir(workspace)
    numbers = sorted(int(m.group(1)) for p in root.glob(f"{suite_name}-*")
                     if (m := re.fullmatch(rf"{re.escape(suite_name)}-(\d+)", p.name))
                     and int(m.group(1)) < number) if root.is_dir() else []
    return read_record(root / f"{suite_name}-{numbers[-1]}") if numbers else None


def _where(workspace: Workspace, key: str) -> str:
    """``path:line:column`` of ``key`` in suite.yaml (its first line if not written)."""
    from kernbuild.recipe.document import read_document
    from kernbuild.recipe.load import SUITE_FILE

    path = workspace.recipes / SUITE_FILE
    if not path.is_file():
        return str(path)
    line, column = read_document(path).source_map.where((key,), at_key=True)
    return f"{path}:{line}:{column}"


def planned_recipes(suite: Suite, versions: dict[str, str] | None = None,
                    sha256: dict[str, str] | None = None,
                    files: dict[str, str] | None = None) -> tuple[ReleasedRecipe, ...]:
    """The suite's recipes as the release holds them: with ``versions`` (package ->
    exact published version), as published; without, as the recipes give them."""
    out = []
    for recipe in sorted(suite.recipes, key=lambda r: r.name):
        version = recipe.debian_version(suite.settings)
        packages = {p: (versions or {}).get(p, version) for p in recipe.binary_names}
        pool = {files[p]: (sha256 or {})[files[p]] for p in packages if files and p in files}
        out.append(ReleasedRecipe(recipe.name, recipe.version, version, packages, pool))
    return tuple(out)


def _image(lock: LockEntry, sandbox: str = "") -> ReleasedImage:
    return ReleasedImage(lock.tag, lock.recipe, lock.image, lock.size, lock.base_digest,
                         dict(lock.packages), lock.sif.sha256 if lock.sif else "", sandbox)


def cut_release(workspace: Workspace, suite: Suite, *, dry_run: bool = False,
                targets: list[str] | None = None, jobs: int = 1, cvmfs: Path | None = None,
                say: Callable[[str], None] = lambda _: None) -> ReleaseOutcome:
    """Cut the suite's release N (suite.yaml ``release:``); see the module's docstring."""
    if dry_run:  # reads only (records appear by rename, whole): no lock, nothing written
        return _dry_run(workspace, suite, *_planned(workspace, suite))
    with workspace.locks(say).hold("release"):
        settings = suite.settings
        before = f"{settings.name}-{settings.release - 1}"
        if journal_path(workspace, before).exists():
            # killed once suite.yaml said release: N+1, before the journal went: done
            say(f"{before}: finishing a release that was interrupted at its end")
            record, notes, markdown = _kept(releases_dir(workspace) / before)
            journal_path(workspace, before).unlink()
            return ReleaseOutcome(record, notes, markdown, releases_dir(workspace) / before,
                                  record.generation, settings.release)
        previous, planned, where = _planned(workspace, suite)
        return _cut(workspace, suite, previous, planned, where, targets, jobs, cvmfs, say)


def journal_path(workspace: Workspace, distribution: str) -> Path:
    """Present while the release of ``distribution`` is under way (see the module)."""
    return releases_dir(workspace) / f".{distribution}.pending"


def _kept(directory: Path) -> tuple[ReleaseRecord, ReleaseNotes, str]:
    """A kept release's record, notes and Markdown notes."""
    try:
        notes = from_json(ReleaseNotes, json.loads((directory / "notes.json").read_text()))
        markdown = (directory / "notes.md").read_text()
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise KernError(f"{directory}: cannot read the release's notes ({exc})",
                        "restore them from CI's artifacts of that release") from None
    return read_record(directory), notes, markdown


def _planned(workspace: Workspace, suite: Suite) -> tuple[ReleaseRecord | None,
                                                          ReleaseRecord, str]:
    """(the previous release, this one as its recipes plan it, where in suite.yaml a
    drop's reason goes); refused (KernError) where the recipes alone say so."""
    settings = suite.settings
    number, dist = settings.release, settings.repo_distribution
    done = releases_dir(workspace) / dist
    resuming = journal_path(workspace, dist).exists()
    if not resuming and (done.exists() or (workspace.repo / "frozen" / dist).exists()):
        raise KernError(f"{_where(workspace, 'release')}: {dist} is released already "
                        f"({done if done.exists() else 'frozen in the repository'})",
                        f"a release never changes: cut the next one with release: "
                        f"{number + 1} in suite.yaml")
    previous = previous_record(workspace, settings.name, number)
    where = _where(workspace, "dropped" if settings.dropped else "release")
    planned = ReleaseRecord(settings.name, number, dist,
                            due_date(settings.calendar, number).isoformat(),
                            planned_recipes(suite))
    make_notes(previous, planned, settings.dropped, settings.calendar, where)  # refusals
    return previous, planned, where


def _dry_run(workspace: Workspace, suite: Suite, previous: ReleaseRecord | None,
             planned: ReleaseRecord, where: str) -> ReleaseOutcome:
    from kernbuild.lockfile import lockfile_path, read_lock

    images = tuple(_image(lock) for lock in read_lock(lockfile_path(workspace.recipes)).values()
                   if lock.recipe in suite.by_name)
    record = ReleaseRecord(planned.suite, planned.number, planned.distribution, planned.due,
                           planned.recipes, images, (), matrix_run=False)
    notes = make_notes(previous, record, suite.settings.dropped, suite.settings.calendar,
                       where, dry_run=True)
    return ReleaseOutcome(record, notes, render_markdown(notes), None, None, None)


def _cut(workspace: Workspace, suite: Suite, previous: ReleaseRecord | None,
         planned: ReleaseRecord, where: str, targets: list[str] | None, jobs: int,
         cvmfs: Path | None, say: Callable[[str], None]) -> ReleaseOutcome:
    from kernbuild.build import open_builder, open_repository
    from kernbuild.build.package import published_versions
    from kernbuild.lockfile import lockfile_path
    from kernbuild.matrix import run_matrix
    from kernbuild.matrix.report import write_html, write_junit
    from kernbuild.matrix.state import CellResult
    from kernbuild.repo.verify import sha256_and_size

    settings = suite.settings
    done = itertools.count(1)

    def built(recipe: str, state: str, detail: str) -> None:
        """One line per recipe as it finishes: a release's build is long, and its log is
        what a scheduled job leaves."""
        if state in ("built", "cached", "failed", "skipped"):
            first = detail.splitlines()[0] if detail else ""
            say(f"{planned.title}: {recipe} {state}{f' ({first})' if first else ''}, "
                f"{next(done)} of {len(suite.recipes)}")

    def ran(cell, state: str) -> None:
        """One line per matrix cell as it finishes (a :class:`CellResult`; a planned
        :class:`~kernbuild.matrix.Cell` is only starting)."""
        if not isinstance(cell, CellResult):
            return
        detail = cell.reason or f"{cell.seconds:.1f} s"
        say(f"{planned.title}: {cell_key(cell.pipeline, cell.image, cell.target)} "
            f"{cell.status} ({detail})")

    say(f"{planned.title}: building the suite")
    builder = open_builder(workspace, suite, jobs=jobs, report=built, say=say)
    failed = [r for r in builder.run([r.name for r in suite.recipes])
              if r.state in ("failed", "skipped")]
    if failed:
        raise KernError(f"{planned.title} is refused: {len(failed)} recipe(s) did not build:\n"
                        + "\n".join(f"  {r.recipe}: {r.error.splitlines()[0] if r.error else ''}"
                                    for r in failed),
                        "kernbuild package shows each log; fix them, or drop a recipe "
                        "(dropped: {name: reason} in suite.yaml)")
    say(f"{planned.title}: running the matrix")
    run = run_matrix(workspace, suite, targets=targets, jobs=jobs, report=ran, say=say)
    cells = with_accepted(tuple(
        ReleasedCell(c.pipeline, c.image, c.form, c.target, c.status, c.reason)
        for c in sorted(run.cells, key=lambda c: (c.pipeline, c.image, c.form, c.target))),
        settings.accepted_failures)
    refuse_failures(cells, planned.title, _where(workspace, "accepted_failures"))
    build_image = keep_build_image(builder, planned.distribution)

    repo = open_repository(workspace, suite)
    locks = sorted(run.images, key=lambda lock: lock.tag)
    chosen: list = []

    def choose() -> list:
        """The packages to freeze: each recipe's current build, as the matrix's images
        hold it (called holding the repository lock, so nothing is published meanwhile)."""
        versions = published_versions(repo, suite)
        missing = [p for r in suite.recipes for p in r.binary_names if p not in versions]
        if missing:
            raise KernError(f"{planned.title}: not in the repository: {', '.join(missing)}",
                            "kernbuild package builds and publishes them")
        moved = [f"{p} {v} (tested) -> {versions[p]}" for lock in locks
                 for p, v in lock.packages.items() if versions.get(p, v) != v]
        if moved:
            raise KernError(f"{planned.title}: published since the matrix ran: "
                            f"{', '.join(moved)}", "run kernbuild release again: nothing "
                            "was frozen, and the matrix reruns only what changed")
        refs = {(r.name, r.version): r for r in repo.packages()}
        chosen[:] = [refs[(p, versions[p])] for r in suite.recipes for p in r.binary_names]
        return chosen

    links: dict[str, str] = {}
    if cvmfs is not None:
        links = _publish_sandboxes(workspace, suite, cvmfs, planned.distribution, locks, say)
    images = [_image(lock, links.get(lock.tag, "")) for lock in locks]

    final = releases_dir(workspace) / planned.distribution
    journal = journal_path(workspace, planned.distribution)
    if final.exists():  # kept by this release, killed after that: read back, go on
        record, notes, markdown = _kept(final)
        generation = record.generation
    else:
        atomic_write(journal, f"{planned.title}: under way; the next kernbuild release "
                              "finishes it\n")
        try:
            with partial_dir(final) as work:
                # Everything but what the freeze decides is written first. Killed between
                # the freeze and the rename, kern-N is frozen without its record: the
                # journal says whose that is, and the next run writes the record.
                lockfile = lockfile_path(workspace.recipes)
                if lockfile.is_file():
                    shutil.copyfile(lockfile, work / "kern.lock")
                snapshot_recipes(workspace.recipes, work / RECIPES)
                write_junit(run.cells, work / "junit.xml")
                write_html(run, work / "report")
                say(f"{planned.title}: freezing {planned.distribution}")
                generation = repo.freeze(choose)
                versions = {r.name: r.version for r in chosen}
                files = {r.name: r.filename for r in chosen}
                sums = {r.filename: sha256_and_size(repo.root / r.filename)[0] for r in chosen}
                record = ReleaseRecord(settings.name, planned.number, planned.distribution,
                                       planned.due, planned_recipes(suite, versions, sums, files),
                                       tuple(images), cells, generation,
                                       build_image=build_image)
                notes = make_notes(previous, record, settings.dropped, settings.calendar, where)
                markdown = render_markdown(notes)
                (work / "notes.md").write_text(markdown)
                atomic_write_json(work / "notes.json", to_json(notes))
                atomic_write_json(work / RECORD, to_json(record))
                boundary("commit:release-record")
                work.rename(final)
        except BaseException:
            if not repo.is_frozen(planned.distribution):  # refused before the freeze
                journal.unlink(missing_ok=True)
            raise
    following = planned.number + 1
    # The next release's distribution is served at once (rolling, the whole pool), so
    # that the next build's containers find it; then suite.yaml moves on, last: the
    # journal goes only once it has.
    open_repository(workspace, Suite(replace(settings, release=following), suite.recipes)
                    ).publish([])
    bump_release(workspace, planned.number,
                 due_date(settings.calendar, following).isoformat())
    journal.unlink(missing_ok=True)
    say(f"{planned.title}: released; suite.yaml now says release: {following}")
    return ReleaseOutcome(record, notes, markdown, final, generation, following)


def keep_build_image(builder, distribution: str) -> ReleasedBuildImage:
    """The build image ``builder``'s packages were built in, tagged
    ``kern/build:<distribution>`` so that the engine keeps it after the suite's build
    image moves on (a new base, a changed toolchain), with every package in it."""
    from docker.errors import DockerException

    from kernbuild.build.environment import installed_packages

    client, environment = builder.connect(), builder.environment
    repository = environment.image.partition(":")[0]
    try:
        client.images.get(environment.image_id).tag(repository, distribution)
    except DockerException as exc:
        raise KernError(f"could not tag the build image {environment.image_id} as "
                        f"{repository}:{distribution}: {exc}",
                        "run kernbuild release again: nothing was frozen") from exc
    return ReleasedBuildImage(f"{repository}:{distribution}", environment.image_id,
                              installed_packages(client, environment.image_id))


def snapshot_recipes(recipes: Path, dest: Path) -> Path:
    """A copy of the recipe directory ``recipes`` at ``dest`` (new): the recipe files,
    suite.yaml and what they read (patches, ``path:`` sources), symlinks as links;
    not version control or Python caches."""
    shutil.copytree(recipes, dest, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", "__pycache__", "*.pyc"))
    return dest


def _publish_sandboxes(workspace: Workspace, suite: Suite, cvmfs: Path, release: str,
                       locks: list[LockEntry], say: Callable[[str], None]) -> dict[str, str]:
    """Each image's sandbox published to CVMFS by digest (``kernbuild image -f sandbox``)
    and named ``<release>/<image>`` too; {tag: that path}. An image whose digest is not
    the one the matrix tested is refused: the release ships what it tested."""
    from kernbuild.images.build import build_images
    from kernbuild.images.cvmfs import link_release

    built = build_images(workspace, suite, [lock.recipe for lock in locks],
                         formats=("docker", "sandbox"), cvmfs=cvmfs, say=say)
    tested = {lock.tag: lock.image for lock in locks}
    links = {}
    for build in built:
        if tested.get(build.lock.tag) != build.lock.image:
            raise KernError(f"{build.lock.tag} is {build.lock.image} now, not the "
                            f"{tested.get(build.lock.tag)} the matrix tested",
                            "run kernbuild release again: nothing was frozen")
        links[build.lock.tag] = str(link_release(cvmfs, release, build.lock.recipe,
                                                 build.lock.image))
    return links


def bump_release(workspace: Workspace, number: int, due: str | None = None) -> int:
    """Write ``release: number+1`` into suite.yaml in place (its comment's ``kernN``
    and ``KERN-N`` moved on too), and ``date:`` (the changelog date of recipes that
    give none) to ``due``, the next release's date, so that its packages are dated
    from their release, never the clock; the new number. Without a ``release:`` line
    one is added; comments and every other line stay."""
    from kernbuild.recipe.load import SUITE_FILE

    path = workspace.recipes / SUITE_FILE
    following = number + 1
    text = path.read_text() if path.is_file() else ""
    pattern = re.compile(rf"^release:[ \t]*{number}\b(.*)$", re.MULTILINE)
    match = pattern.search(text)
    if match:
        comment = match.group(1).replace(f"KERN-{number}", f"KERN-{following}") \
            .replace(f"kern{number}", f"kern{following}")
        text = text[:match.start()] + f"release: {following}{comment}" + text[match.end():]
    else:
        text += ("" if text.endswith("\n") or not text else "\n") + f"release: {following}\n"
    if due is not None:
        text = re.sub(r"^date:[ \t]*\d{4}-\d{2}-\d{2}", f"date: {due}", text, count=1,
                      flags=re.MULTILINE)
    atomic_write(path, text)
    return following

"""``kernbuild reproduce kern-N``: rebuild a release's packages, varied, and compare bytes.

What reprotest does for one package, for a whole release, from what the release
kept (:mod:`kernbuild.release.cut`): its record (each recipe's exact package
versions and the sha256 of each pool file) and its recipes as released
(``releases/kern-N/recipes``, suite.yaml still saying ``release: N``). Each
recipe is built again in a fresh container of the suite's build image, its
build dependencies from Debian's archive and from the repository's frozen
``kern-N`` (exactly the release's own packages), under the chosen variations
(:mod:`kernbuild.release.variations`); each rebuilt .deb is compared byte for
byte with the frozen one in the pool, and where they differ the differing
member files are named (:mod:`kernbuild.release.debdiff`).

Nothing of the state changes: the rebuilds go to a scratch directory of this
run (``reproduce/.<pid>-kern-N-*``, removed at the end, or left by a SIGKILL
and removed by the next run once its process is gone), never to the build
cache; nothing is published and kern.lock is not touched. The record is read
holding the ``release`` lock, so a release being cut is finished first; one
that was interrupted (its journal is there) is refused until it is finished.
With ``sif``, each image of the release still in the engine has its SIF
payload made twice and compared (:mod:`kernbuild.release.sifcheck`).

The rebuilds run in the release's own build image (``kern/build:kern-N``, kept by
the release) while the engine has it; once it is gone, in the suite's build image
as it is now, and the result names every package of that image that differs from
the release's (a .deb that differs may owe it to a newer debhelper, not to the
package).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from kernbuild.errors import KernError
from kernbuild.fsutil import check_empty_destination, remove_dead_scratch, remove_tree
from kernbuild.release.cut import RECIPES, journal_path, read_record, releases_dir
from kernbuild.release.debdiff import Difference, deb_differences
from kernbuild.release.notes import ReleaseRecord, ReleasedRecipe, build_image_changes
from kernbuild.release.sifcheck import SKIPPED, SifCheck
from kernbuild.release.variations import VARIATIONS, conditions
from kernbuild.workspace import Workspace

SCRATCH = "reproduce"  # in the state directory
_LEFTOVER = re.compile(r"^\.(\d+)-")

IDENTICAL, DIFFERS, MISSING, EXTRA, FAILED = "identical", "differs", "missing", "extra", "failed"


@dataclass(frozen=True)
class DebCheck:
    """One .deb of the release against its rebuild: ``identical``, ``differs``,
    ``missing`` (the rebuild made no such file), ``extra`` (the rebuild made a file the
    release lacks) or ``failed`` (the recipe did not build; ``error`` says why)."""

    recipe: str
    file: str  # the .deb's name
    status: str
    frozen_sha256: str = ""
    rebuilt_sha256: str = ""
    differences: tuple[Difference, ...] = ()
    frozen: str = ""  # the pool file
    rebuilt: str = ""  # the rebuilt file, where kept (--keep)
    error: str = ""


@dataclass(frozen=True)
class Reproduction:
    """What ``kernbuild reproduce`` found for one release."""

    distribution: str
    variations: tuple[str, ...]
    build_image: str  # the id of the image the rebuilds ran in
    debs: tuple[DebCheck, ...]
    released_build_image: str = ""  # the release's build image id ("": not recorded)
    #: The packages of ``build_image`` that differ from the release's build image
    #: (:func:`kernbuild.release.notes.build_image_changes`); none when it is the same.
    build_image_changes: tuple[str, ...] = ()
    sifs: tuple[SifCheck, ...] = ()
    kept: str = ""  # where the rebuilt .debs and logs were kept
    seconds: float = 0.0

    @property
    def same_build_image(self) -> bool:
        """The rebuilds ran in the image the release was built in."""
        return self.build_image == self.released_build_image

    @property
    def ok(self) -> bool:
        """Every .deb identical and every SIF payload checked identical (a skipped one,
        whose image is gone from the engine, says why and fails nothing)."""
        return all(d.status == IDENTICAL for d in self.debs) and \
            all(s.status in (IDENTICAL, SKIPPED) for s in self.sifs)


def reproduce_release(workspace: Workspace, distribution: str, *,
                      variations: tuple[str, ...] = tuple(VARIATIONS),
                      recipes: Path | None = None, keep: Path | None = None, jobs: int = 1,
                      sif: bool = False, say: Callable[[str], None] = lambda _: None,
                      report=lambda *_: None) -> Reproduction:
    """Rebuild ``distribution``'s packages under ``variations`` and compare them with the
    frozen ones (see the module); ``recipes`` replaces the recipes the release kept (for
    a release cut before kernbuild kept them), ``keep`` (new or empty) receives the
    rebuilt .debs and their logs."""
    from kernbuild.recipe import load_suite

    started = time.monotonic()
    record, kept_recipes = _read_release(workspace, distribution, say)
    if recipes is None and not kept_recipes.is_dir():
        raise KernError(f"{kept_recipes.parent} keeps no recipes: {distribution} was released "
                        "before kernbuild kept them with a release",
                        f"give them as released: kernbuild reproduce {distribution} "
                        "--recipes-from DIR (a checkout of the suite at the release)")
    suite = load_suite(recipes or kept_recipes)
    if suite.settings.repo_distribution != distribution:
        raise KernError(f"{recipes or kept_recipes}/suite.yaml is the suite of "
                        f"{suite.settings.repo_distribution}, not of {distribution}",
                        f"give the recipes as {distribution} was released (release: "
                        f"{record.number} in suite.yaml)")
    if keep is not None:
        check_empty_destination(keep)
    scratch_root = workspace.state / SCRATCH
    remove_leftovers(scratch_root)
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{os.getpid()}-{distribution}-", dir=scratch_root))
    try:
        debs, image, changes = _rebuild(workspace, suite, record, scratch, variations,
                                        jobs, say, report, keep)
    finally:
        remove_tree(scratch)
    sifs: tuple[SifCheck, ...] = ()
    if sif:
        from kernbuild.release.sifcheck import check_sifs

        sifs = check_sifs(workspace, suite, record, say)
    released_image = record.build_image.image if record.build_image else ""
    return Reproduction(distribution, variations, image, debs, released_image, changes,
                        sifs, str(keep) if keep else "", time.monotonic() - started)


def _read_release(workspace: Workspace, distribution: str,
                  say: Callable[[str], None]) -> tuple[ReleaseRecord, Path]:
    """The release's record and the directory of its recipes, read holding ``release``."""
    root = releases_dir(workspace)
    directory = root / distribution
    with workspace.locks(say).hold("release"):
        if journal_path(workspace, distribution).exists():
            raise KernError(f"{distribution} is not finished: its release was interrupted",
                            "run kernbuild release to finish it, then reproduce it")
        if not directory.is_dir():
            kept = sorted(p.name for p in root.glob("*-*")
                          if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
            raise KernError(f"no release {distribution} is kept in {root}",
                            f"releases kept: {', '.join(kept)}" if kept else
                            "kernbuild release cuts one")
        return read_record(directory), directory / RECIPES


def remove_leftovers(root: Path) -> list[Path]:
    """Remove the scratch directories of runs whose process is gone (SIGKILLed)."""
    return remove_dead_scratch(root, _LEFTOVER)


def released_version(released: ReleasedRecipe) -> str:
    """The one exact version of a recipe's packages in the release."""
    versions = set(released.packages.values())
    if len(versions) != 1:
        raise KernError(f"{released.name}: the release holds its packages at "
                        f"{len(versions)} versions ({', '.join(sorted(versions)) or 'none'})",
                        "a recipe's packages share one version: the record is damaged")
    return versions.pop()


def _rebuild(workspace: Workspace, suite, record: ReleaseRecord, scratch: Path,
             variations: tuple[str, ...], jobs: int, say, report,
             keep: Path | None) -> tuple[tuple[DebCheck, ...], str, tuple[str, ...]]:
    from kernbuild.build import open_builder
    from kernbuild.recipe.graph import build_order

    released = [r for r in record.recipes if r.files]
    missing = sorted(r.name for r in released if r.name not in suite.by_name)
    if missing:
        raise KernError(f"the recipes of {record.distribution} lack {', '.join(missing)}",
                        "give the recipes as it was released")
    builder = open_builder(workspace, suite, jobs=jobs, report=report, say=say)
    builder.cache = scratch / "builds"  # never the build cache
    builder.conditions = conditions(variations)
    builder.snapshots = False  # every dependency installed anew, as a rebuilder would
    builder.environment, changes = _release_environment(builder, record, say)
    by_name = {r.name: r for r in released}
    order = [r for r in build_order(suite, list(by_name)) if r.name in by_name]
    say(f"{record.title}: rebuilding {len(order)} recipe(s), varying "
        f"{', '.join(variations) or 'nothing'}")

    def rebuild(recipe) -> tuple[tuple[Path, ...], str]:
        try:
            debs, _ = builder.build(recipe, released_version(by_name[recipe.name]))
        except KernError as exc:
            return (), str(exc)
        return debs, ""

    with builder.fetching(), ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        done = list(pool.map(rebuild, order))
    checks: list[DebCheck] = []
    for recipe, (debs, error) in zip(order, done):
        frozen = {Path(name).name: builder.repo.root / name for name in by_name[recipe.name].files}
        if error:
            checks += [DebCheck(recipe.name, name, FAILED, error=error) for name in sorted(frozen)]
            continue
        if keep is not None:
            debs = _keep(debs, keep, builder.builds / "logs")
        checks += compare_debs(recipe.name, frozen, by_name[recipe.name].files,
                               {deb.name: deb for deb in debs}, kept=keep is not None)
    return tuple(checks), builder.environment.image_id, changes


def _release_environment(builder, record: ReleaseRecord, say) -> tuple[object, tuple[str, ...]]:
    """The build environment to rebuild in: the release's own build image while the
    engine has it; else the suite's current one, with how its packages differ."""
    from kernbuild.build.environment import installed_packages
    from kernbuild.engine import image_id

    current, kept = builder.environment, record.build_image
    if kept is None:
        say(f"{record.title} did not record its build image: rebuilding in {current.image}")
        return current, ()
    client = builder.connect()
    if image_id(client, kept.image) == kept.image:
        return replace(current, image=kept.tag, image_id=kept.image), ()
    changes = build_image_changes(kept.packages, installed_packages(client, current.image_id))
    say(f"{record.title}'s build image {kept.image[:19]} is gone from the engine: rebuilding "
        f"in {current.image}, {len(changes)} package(s) differ from the release's")
    return current, changes


def compare_debs(recipe: str, frozen: dict[str, Path], sums: dict[str, str],
                 rebuilt: dict[str, Path], kept: bool = False) -> list[DebCheck]:
    """Each of a recipe's frozen .debs (name -> pool file; ``sums``: pool file's path in
    the repository -> the sha256 the release recorded) against its rebuild (name ->
    file), and each rebuilt .deb the release lacks."""
    recorded = {Path(path).name: digest for path, digest in sums.items()}
    checks = []
    for name in sorted(frozen.keys() | rebuilt.keys()):
        if name not in rebuilt:
            checks.append(DebCheck(recipe, name, MISSING, recorded.get(name, ""),
                                   frozen=str(frozen[name])))
            continue
        new = rebuilt[name].read_bytes()
        new_sum = hashlib.sha256(new).hexdigest()
        where = str(rebuilt[name]) if kept else ""
        if name not in frozen:
            checks.append(DebCheck(recipe, name, EXTRA, "", new_sum, rebuilt=where))
            continue
        old = frozen[name].read_bytes()
        old_sum = hashlib.sha256(old).hexdigest()
        if old_sum != recorded.get(name, old_sum):  # the pool is not what was released
            raise KernError(f"{frozen[name]}: sha256 {old_sum[:12]}, the release recorded "
                            f"{recorded[name][:12]}",
                            "kernbuild repo verify names every changed file; restore the pool")
        status = IDENTICAL if old == new else DIFFERS
        checks.append(DebCheck(recipe, name, status, old_sum, new_sum,
                               deb_differences(old, new), str(frozen[name]), where))
    return checks


def _keep(debs: tuple[Path, ...], keep: Path, logs: Path) -> tuple[Path, ...]:
    """The rebuilt .debs (and the build logs) copied into ``keep``; the copies."""
    keep.mkdir(parents=True, exist_ok=True)
    for log in logs.glob("*.log") if logs.is_dir() else ():
        shutil.copyfile(log, keep / log.name)
    return tuple(Path(shutil.copyfile(deb, keep / deb.name)) for deb in debs)

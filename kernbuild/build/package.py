"""Package builds: recipes to .debs in fresh containers, keyed by content, published as they finish.

A build's key is a sha256 over everything that can change its output
(:meth:`PackageBuilder.key_inputs`): the recipe, its source, the suite
settings, the rendered debian/ tree and the renderer, the build image and its
definition, the build steps, and the keys of the recipes it depends on. A key
already in the build cache is not built again, so a second run with nothing
changed does no work, and a change to one recipe rebuilds it and exactly its
reverse dependencies.

Each build runs in a new container of the build image: build dependencies come
from Debian's archive (through the download cache, :mod:`kernbuild.build.downloads`,
so the next build reuses what this one fetched) and from kernbuild's own signed
repository; a build whose build dependencies resolve to the same files as an
earlier one's starts from that build's snapshot instead (:mod:`.snapshots`). Then the
container is cut off the network and dpkg-buildpackage runs offline, then
lintian. Results are written to the cache atomically and published at once, so
the next recipe in the order can build-depend on them.

Two commands on one state may want the same recipe at once: each build holds
the recipe's lock (``build:<recipe>``, :mod:`kernbuild.locks`) from choosing its
version to publishing it, so the second waits, then finds the first one's
cache entry (a forced rebuild included: the entry it waited for is newer than
its request) instead of building it again. A cache entry is only ever renamed
into place whole, and an entry equal to the one there is not replaced at all,
so a reader of an entry never sees it vanish.

A rebuild that must leave all of that alone (``kernbuild reproduce``,
:mod:`kernbuild.release.reproduce`) gives the builder a scratch ``cache`` and
varied :class:`BuildConditions`, and calls :meth:`PackageBuilder.build` itself:
nothing is looked up, cached or published.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from kernbuild import cuda, debian
from kernbuild.build import snapshots
from kernbuild.build.downloads import DownloadProxy, ProxyOnDemand, download_cache
from kernbuild.build.environment import BuildEnvironment, build_dockerfile
from kernbuild.engine import APT_UPDATE_RETRIED, disk_full
from kernbuild.cuda import driver_packages
from kernbuild.errors import KernError
from kernbuild.failpoints import boundary
from kernbuild.fsutil import remove_dead_scratch, remove_tree
from kernbuild.locks import StateLocks
from kernbuild.recipe.graph import build_order, dependencies
from kernbuild.recipe.model import Recipe, Suite
from kernbuild.recipe.schema import relation_names
from kernbuild.runtime.docker import DockerSession
from kernbuild.runtime.tools import require, run_tool
from kernbuild.sources import file_sha256

if TYPE_CHECKING:
    import docker

    from kernbuild.build.slurm import SlurmBuilds
    from kernbuild.repo import AptRepository
    from kernbuild.sources import SourceCache
    from kernbuild.workspace import Workspace

# Bump when kernbuild changes how it builds in a way the key does not otherwise see.
# 2: the key hashes the rendered debian/ tree, the build image's definition, the build
# steps and the archive areas too (every key changed once).
BUILD_FORMAT = "2"
#: How a package is built in its container, and the DEB_BUILD_OPTIONS that change its
#: output (``parallel=N`` is added per run: it changes none), both in the key.
BUILD_COMMAND = ("dpkg-buildpackage", "-b", "-us", "-uc")
BUILD_OPTIONS = "noautodbgsym nocheck"
REPO_MOUNT = "/kern-repo"  # where the signed repository is mounted in build containers
LOG_TAIL = 30
# Scratch directories in the build cache: .build-<pid>-<recipe>-<random> while a build
# runs, .old-<pid>-<key> while an entry is replaced. A SIGKILL leaves them behind; the
# pid says whether their maker is gone.
_LEFTOVER = re.compile(r"^\.(?:build|old)-(\d+)-")

Report = Callable[[str, str, str], None]  # (recipe, state, detail) for progress displays


@dataclass(frozen=True)
class BuildResult:
    """What happened to one recipe in a ``kernbuild package`` run."""

    recipe: str
    version: str
    key: str
    state: str  # "built", "cached", "failed" or "skipped"
    debs: tuple[Path, ...] = ()
    seconds: float = 0.0
    lintian: tuple[str, ...] = ()  # lintian's E: and W: lines
    error: str = ""
    job: str = ""  # the Slurm job that built it (--executor slurm)


@dataclass(frozen=True)
class BuildConditions:
    """How a build container runs dpkg-buildpackage. The defaults are every build's;
    :mod:`kernbuild.release.variations` varies them, as reprotest does, to show that
    none of it reaches the .debs. None of it is in the build key: it must change nothing."""

    root: str = "/build"  # where the build directory is mounted (the tree is below it)
    hostname: str = ""  # the container's; "" leaves Docker's (its id)
    environment: tuple[tuple[str, str], ...] = ()  # added to dpkg-buildpackage's
    packages: tuple[str, ...] = ()  # installed with the build dependencies, online
    setup: tuple[tuple[str, ...], ...] = ()  # commands run next, still online
    prefix: tuple[str, ...] = ()  # dpkg-buildpackage runs under it (umask, faketime)


@dataclass
class PackageBuilder:
    """Builds recipes of a suite into the build cache and publishes them to the repository."""

    suite: Suite
    workspace: "Workspace"
    environment: BuildEnvironment
    sources: "SourceCache"
    repo: "AptRepository"
    connect: Callable[[], "docker.DockerClient"]
    jobs: int = 1
    report: Report = lambda recipe, state, detail: None
    locks: StateLocks | None = None  # default: the workspace's, waiting as it says
    cache: Path | None = None  # the build cache; default: the workspace's
    conditions: BuildConditions = field(default_factory=BuildConditions)
    #: Start builds from build-dependency snapshots (:mod:`kernbuild.build.snapshots`)
    #: and make them. Never under varied conditions, whose tools are installed after.
    snapshots: bool = True
    #: Where builds run: here, or as Slurm jobs (:class:`kernbuild.build.slurm.SlurmBuilds`).
    slurm: "SlurmBuilds | None" = None
    _keys: dict[str, str] = field(default_factory=dict)
    _downloads: ProxyOnDemand | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.locks is None:
            self.locks = self.workspace.locks()

    @property
    def builds(self) -> Path:
        """Where build entries are kept (:attr:`cache`, else the workspace's build cache)."""
        return self.cache if self.cache is not None else self.workspace.builds

    # --- keys ---------------------------------------------------------------------

    def key(self, recipe: Recipe) -> str:
        """The build key of ``recipe`` (computes its dependencies' keys first): a sha256
        over :meth:`key_inputs`, by name."""
        if recipe.name not in self._keys:
            digest = hashlib.sha256()
            for name, value in self.key_inputs(recipe).items():
                digest.update(name.encode() + b"\0" + value.encode() + b"\0")
            self._keys[recipe.name] = digest.hexdigest()
        return self._keys[recipe.name]

    def key_inputs(self, recipe: Recipe) -> dict[str, str]:
        """Everything that decides ``recipe``'s rendered debian/ tree and its build, by
        name, each as text: what :meth:`key` hashes.

        Contents only, never a path, a mirror or an mtime, so moving a source mirror or
        touching a file rebuilds nothing. The debian/ tree is rendered here (about a
        millisecond) rather than described, so that whatever decides it (the recipe,
        the suite settings, the renderer's templates and tables, a table of another
        module such as :data:`kernbuild.cuda.DRIVER_PACKAGES`) is seen through the very
        text it produces, for exactly the recipes whose tree it changes.
        """
        settings = self.suite.settings
        # Without the source tree, which the source's own key stands for.
        tree = json.dumps(debian.render(recipe, settings), sort_keys=True)
        chosen = settings.build_inputs()
        chosen.pop("signing_key", None)  # which key signs the repository changes no package
        if recipe.variant is None or recipe.variant.cuda is None:
            chosen.pop("gpu", None)  # only a CUDA build reads them (its archive areas)
        inputs = {
            "format": BUILD_FORMAT,
            "recipe": recipe.fingerprint(),
            "settings": json.dumps(chosen, sort_keys=True, default=str),
            "debian": hashlib.sha256(tree.encode()).hexdigest(),
            "renderer": debian.renderer_digest(),
            "source": self.sources.key(recipe),
            "build-image": self.environment.image_id,
            # The image id stands for its definition; the definition itself too, so that
            # a key never depends on how an image was tagged, and tests can see it.
            "build-image-definition": hashlib.sha256(
                build_dockerfile(self.environment.base).encode()).hexdigest(),
            "build-steps": json.dumps([BUILD_COMMAND, BUILD_OPTIONS]),
            "archive-areas": " ".join(self._archive_areas(recipe)),
            # What a build is refused for: a cached entry must have passed today's rule.
            "driver-rule": cuda.DRIVER_PACKAGE.pattern,
        }
        for dep in sorted(dependencies(self.suite, recipe)):
            inputs[f"depends:{dep}"] = self.key(self.suite.by_name[dep])
        return inputs

    def _archive_areas(self, recipe: Recipe) -> list[str]:
        """Debian's archive areas beyond main that the build container gets."""
        components = set(self.suite.components(recipe))
        if recipe.variant is not None and recipe.variant.cuda is not None:
            components |= set(self.suite.settings.gpu.components)  # CUDA is in non-free
        return sorted(components)

    def cached(self, recipe: Recipe) -> tuple[str, tuple[Path, ...]] | None:
        """The version and .debs cached under ``recipe``'s current key, or None.

        An entry counts only whole: each .deb must still have the sha256 its manifest
        recorded when it was built. A corrupt one (a disk error, a truncated copy, an
        edit) is None here, so the recipe is built again (:meth:`_discard_corrupt`
        removes it first) and its .debs are never published or used.
        """
        found = self._read_entry(recipe)
        return None if found is None or found[2] else found[:2]

    def _read_entry(self, recipe: Recipe) -> tuple[str, tuple[Path, ...], str] | None:
        """The entry under ``recipe``'s key: its version, .debs and what is wrong with
        it ("" when nothing is); None when there is no readable entry at all."""
        entry = self.builds / self.key(recipe)
        try:
            data = json.loads((entry / "manifest.json").read_text())
            version, names = data["version"], data["debs"]
            sums = data.get("sha256")
        except (OSError, ValueError, KeyError, TypeError):
            return None
        debs = tuple(entry / name for name in names)
        missing = [d.name for d in debs if not d.is_file()]
        if missing:
            return version, debs, f"{', '.join(missing)} missing"
        # build() records every .deb's sum; an entry without them (made by hand, or by a
        # test's stand-in builder) can only be checked for presence.
        for deb in debs if isinstance(sums, dict) else ():
            found = file_sha256(deb)
            if found != sums.get(deb.name):
                return version, debs, (f"{deb.name}: sha256 {found[:12]}, manifest says "
                                       f"{str(sums.get(deb.name))[:12]}")
        return version, debs, ""

    def _discard_corrupt(self, recipe: Recipe) -> None:
        """Remove ``recipe``'s cache entry if it is corrupt, saying so. Called with the
        recipe's build lock held (no build replaces the entry meanwhile), before
        building: :meth:`_install_entry` would otherwise keep the corrupt .debs as "the
        same packages" as the rebuild's, by their recorded sums."""
        found = self._read_entry(recipe)
        if found is None or not found[2]:
            return
        entry = self.builds / self.key(recipe)
        self.locks.say(f"{recipe.name}: cache entry {entry.name[:12]} is corrupt "
                       f"({found[2]}): removed, building it again")
        aside = entry.with_name(f".old-{os.getpid()}-{entry.name}")
        os.replace(entry, aside)  # gone from its key at once, whole; then deleted
        remove_tree(aside)

    def _entry_stamp(self, recipe: Recipe) -> tuple[int, int] | None:
        """Which cache entry of ``recipe`` is there now (its manifest's inode and mtime):
        a different stamp later means another build replaced it meanwhile."""
        try:
            found = (self.builds / self.key(recipe) / "manifest.json").stat()
        except OSError:
            return None
        return found.st_ino, found.st_mtime_ns

    def remove_leftovers(self) -> list[Path]:
        """Remove the scratch directories of builds whose process is gone (SIGKILLed)."""
        return remove_dead_scratch(self.builds, _LEFTOVER)

    def version_for(self, recipe: Recipe) -> str:
        """The version a new build of ``recipe`` gets.

        The recipe's version, unless the repository already has it from another
        build (a dependency, the build image or the recipe changed, the recipe's
        version and revision did not): then,
        as Debian does for a binary-only rebuild (binNMU), ``<version>+b<N>`` with
        the next N, so a published version never changes its bytes.
        """
        base = recipe.debian_version(self.suite.settings)
        taken = {ref.version for ref in self.repo.packages() if ref.name in recipe.binary_names}
        rebuilds = [int(match.group(1)) for v in taken
                    if (match := re.fullmatch(re.escape(base) + r"\+b(\d+)", v))]
        if base not in taken and not rebuilds:
            return base
        return f"{base}+b{max(rebuilds, default=0) + 1}"

    # --- the run ------------------------------------------------------------------

    def run(self, names: list[str], force: bool = False) -> list[BuildResult]:
        """Build ``names`` and what they depend on, in order, ``jobs`` at a time."""
        order = build_order(self.suite, names)
        wanted = {r.name for r in order}
        deps = {r.name: set(dependencies(self.suite, r)) & wanted for r in order}
        results: dict[str, BuildResult] = {}
        published = {(ref.name, ref.version) for ref in self.repo.packages()}
        base_version = {r.name: r.debian_version(self.suite.settings) for r in order}
        self.remove_leftovers()

        def finish(result: BuildResult) -> None:
            results[result.recipe] = result
            # A build published its own result; a cached one may not be published yet.
            if result.state == "cached" and result.debs and not all(
                    (deb.name.split("_")[0], result.version) in published
                    for deb in result.debs):
                self.report(result.recipe, "publishing", "")
                self.repo.publish(list(result.debs))
            self.report(result.recipe, result.state, result.error or f"{result.seconds:.1f} s")

        with self.fetching(), ThreadPoolExecutor(max_workers=max(1, self.jobs)) as pool:
            running: dict[Future, str] = {}
            while len(results) < len(order):
                for recipe in order:
                    if recipe.name in results or recipe.name in running.values():
                        continue
                    if not deps[recipe.name] <= results.keys():
                        continue
                    failed = sorted(d for d in deps[recipe.name]
                                    if results[d].state in ("failed", "skipped"))
                    if failed:
                        finish(BuildResult(recipe.name, base_version[recipe.name],
                                           self.key(recipe), "skipped",
                                           error=f"{recipe.name}: needs {', '.join(failed)}, "
                                                 "which failed"))
                        continue
                    cached = self.cached(recipe)
                    if cached is not None and not force:
                        version, debs = cached
                        finish(BuildResult(recipe.name, version, self.key(recipe), "cached", debs))
                        continue
                    seen = self._entry_stamp(recipe)
                    if self.slurm is not None:
                        self.report(recipe.name, "building", "as a Slurm job")
                        running[pool.submit(self.slurm.build, recipe, force, seen,
                                            base_version[recipe.name],
                                            self.key(recipe))] = recipe.name
                    else:
                        self.report(recipe.name, "building", "")
                        running[pool.submit(self.build_one, recipe, force, seen)] = recipe.name
                if not running:
                    continue
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    running.pop(future)
                    finish(future.result())
        return [results[r.name] for r in order]

    @contextmanager
    def fetching(self) -> Iterator[None]:
        """Builds inside the block fetch their build dependencies through the download
        cache (:mod:`kernbuild.build.downloads`); its proxy is stopped at the end, once
        every build has finished."""
        self._downloads = ProxyOnDemand(download_cache(self.workspace.state))
        with closing(self._downloads):
            yield

    def build_one(self, recipe: Recipe, force: bool,
                       seen: tuple[int, int] | None) -> BuildResult:
        """Build and publish ``recipe`` under its lock, unless, once the lock is ours, the
        cache has its entry: one that another command made while this one waited (the
        stamp is no longer ``seen``), or any at all without ``force``."""
        started = time.monotonic()
        version = recipe.debian_version(self.suite.settings)
        try:
            with self.locks.hold(f"build:{recipe.name}"):
                self._discard_corrupt(recipe)
                cached = self.cached(recipe)
                if cached is not None and (not force or self._entry_stamp(recipe) != seen):
                    return BuildResult(recipe.name, cached[0], self.key(recipe), "cached",
                                       cached[1])
                # A forced rebuild keeps its version: it must give the same bytes.
                version = cached[0] if cached else self.version_for(recipe)
                self.report(recipe.name, "building", version)
                debs, lintian = self.build(recipe, version)
                # Published before the lock is let go: the next build of this recipe
                # chooses its version (+bN) from what the repository holds.
                self.report(recipe.name, "publishing", "")
                self.repo.publish(list(debs))
        except KernError as exc:
            return BuildResult(recipe.name, version, self.key(recipe), "failed",
                               seconds=time.monotonic() - started, error=str(exc))
        return BuildResult(recipe.name, version, self.key(recipe), "built", debs,
                           time.monotonic() - started, lintian)

    # --- one build ----------------------------------------------------------------

    def build(self, recipe: Recipe, version: str) -> tuple[tuple[Path, ...], tuple[str, ...]]:
        """Build one recipe as ``version`` in a fresh container.

        Returns its cached .debs and lintian's findings.
        """
        key = self.key(recipe)
        self.report(recipe.name, "building", "fetching the source")
        source = self.sources.fetch(recipe)
        self.builds.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".build-{os.getpid()}-{recipe.name}-",
                                        dir=self.builds))
        try:
            tree_name = f"{recipe.name}-{recipe.version}"
            tree = scratch / tree_name
            shutil.copytree(source.tree, tree, symlinks=True)
            shutil.rmtree(tree / "debian", ignore_errors=True)  # kernbuild's debian/ replaces any
            binnmu = version != recipe.debian_version(self.suite.settings)
            debian.write(debian.render(recipe, self.suite.settings, source.tree,
                                       binary_version=version if binnmu else None), tree)
            # The log lives outside the scratch directory so that it outlives a failure.
            log_path = self.builds / "logs" / f"{recipe.name}-{key[:12]}.log"
            log_path.parent.mkdir(exist_ok=True)
            with log_path.open("w", encoding="utf-8") as log:
                lintian = self._run_container(recipe, scratch, tree_name, log)
            shutil.copy2(log_path, scratch / "build.log")
            debs = sorted(scratch.glob("*.deb"))
            if not debs:
                raise KernError(f"{recipe.name}: dpkg-buildpackage made no .deb",
                                f"see the log: {log_path}")
            _refuse_driver_dependencies(recipe, debs)
            (scratch / "lintian.log").write_text("\n".join(lintian) + "\n")
            (scratch / "manifest.json").write_text(json.dumps({
                "recipe": recipe.name,
                "version": version,
                "key": key,
                "source_sha256": source.sha256,
                "build_image": self.environment.image_id,
                "debs": [d.name for d in debs],
                "sha256": {d.name: file_sha256(d) for d in debs},
            }, indent=2) + "\n")
            shutil.rmtree(tree)
            for leftover in scratch.iterdir():  # .buildinfo, .changes: keep only what we use
                if leftover.suffix in (".buildinfo", ".changes"):
                    leftover.unlink()
            final = self.builds / key
            self._install_entry(scratch, final)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return tuple(final / d.name for d in debs), lintian

    @staticmethod
    def _install_entry(scratch: Path, final: Path) -> None:
        """Make the finished ``scratch`` the cache entry ``final``, whole, by renames only.

        Called with the recipe's build lock held, so no other build writes ``final``
        meanwhile. An entry with the same .debs (a forced rebuild is reproducible) is
        kept as it is: whoever reads it is never disturbed. A different one is moved
        aside first, then removed."""
        try:
            old = json.loads((final / "manifest.json").read_text())["sha256"]
            new = json.loads((scratch / "manifest.json").read_text())["sha256"]
        except (OSError, ValueError, KeyError):
            old, new = None, {}
        if old == new:
            # The very same packages are in the cache already: keep them, but mark the
            # entry as just made, so a forced build that waited for this one sees it.
            os.utime(final / "manifest.json")
            return
        aside = final.with_name(f".old-{os.getpid()}-{final.name}")
        boundary("commit:build-entry")
        if final.exists():
            os.replace(final, aside)
        try:
            os.replace(scratch, final)  # the cache entry appears whole or not at all
        finally:
            remove_tree(aside)

    def _run_container(self, recipe: Recipe, scratch: Path, tree_name: str, log) -> tuple[str, ...]:
        from docker.types import Mount

        client = self.connect()
        varied = self.conditions
        root = varied.root
        mounts = {str(scratch): {"bind": root, "mode": "rw"}}
        generation = self.repo.current_generation()
        if generation is not None:
            # One generation, not "current": a publish by another command switches
            # current, and apt must not read a Release of one and Packages of the next.
            mounts[str(self.repo.root.resolve())] = {"bind": REPO_MOUNT, "mode": "ro"}
            served = f"{REPO_MOUNT}/generations/{generation}"
            (scratch / "kern.list").write_text(self.repo.sources_line(
                f"file:{served}", f"{served}/kern-archive-keyring.gpg") + "\n")
            mounts[str(scratch / "kern.list")] = {
                "bind": "/etc/apt/sources.list.d/kern.list", "mode": "ro"}
        settings = self.suite.settings
        components = self._archive_areas(recipe)
        if components:  # areas beyond main, which the base's sources leave out
            (scratch / "areas.list").write_text(
                f"deb {settings.mirror} {settings.distribution} {' '.join(components)}\n")
            mounts[str(scratch / "areas.list")] = {
                "bind": "/etc/apt/sources.list.d/debian-areas.list", "mode": "ro"}
        where = f"{root}/{tree_name}"
        proxy = self._downloads.get(client) if self._downloads is not None else None
        apt_env = {"http_proxy": proxy.url} if proxy is not None else None

        # Bind mounts given as Mounts, not ``volumes=``: the SDK also declares each
        # ``volumes`` target as a VOLUME in the container's config, which a snapshot's
        # commit would carry, and the engine refuses to make a VOLUME over a file the
        # image has (the committed mount point of kern.list).
        binds = [Mount(target=spec["bind"], source=source, type="bind",
                       read_only=spec["mode"] == "ro") for source, spec in mounts.items()]

        def session_of(image: str) -> DockerSession:
            return DockerSession(
                client, image, mounts=binds,
                labels={"kernbuild": "build", "kernbuild.recipe": recipe.name},
                state=self.workspace.state,
                environment={"DEBIAN_FRONTEND": "noninteractive"},
                **({"hostname": varied.hostname} if varied.hostname else {}))

        with ExitStack() as stack:
            session = stack.enter_context(session_of(self.environment.image_id))
            self.report(recipe.name, "building", "installing build dependencies")
            # A mirror's hiccup ("Some index files failed to download") is not the recipe's
            # fault: try three times before failing the build.
            self._exec(session, ["sh", "-c", APT_UPDATE_RETRIED], log, recipe,
                       "apt-get update failed",
                       "is Debian's archive reachable from containers?", workdir=root,
                       environment=apt_env, refused=proxy)
            session = self._install_build_dependencies(
                client, stack, session, session_of, recipe, where, log, apt_env, proxy)
            # Build offline: a build that fetches from the network is not reproducible.
            self._disconnect(client, session.container)
            self.report(recipe.name, "building", "dpkg-buildpackage (offline)")
            jobs = max(1, (os.cpu_count() or 1) // max(1, self.jobs))
            self._exec(session, [*varied.prefix, *BUILD_COMMAND], log, recipe,
                       "dpkg-buildpackage failed", f"the recipe is {recipe.path}",
                       workdir=where,
                       environment={"DEB_BUILD_OPTIONS": f"{BUILD_OPTIONS} parallel={jobs}",
                                    **dict(varied.environment)})
            self.report(recipe.name, "building", "lintian")
            # The .debs, not the .changes: lintian checks nothing of a binary-only
            # (+bN) upload's .changes, and nothing is ever uploaded from it.
            output = self._exec(session, ["sh", "-c", "lintian --fail-on none *.deb"],
                                log, recipe, "lintian could not run", "", workdir=root)
            return tuple(line for line in output.splitlines() if line[:2] in ("E:", "W:"))

    def _install_build_dependencies(self, client, stack: ExitStack, session: DockerSession,
                                    session_of, recipe: Recipe, where: str, log,
                                    apt_env: dict | None,
                                    proxy: DownloadProxy | None) -> DockerSession:
        """The recipe's build dependencies installed, and the session the build goes on
        in: ``session`` after ``apt-get build-dep`` (then committed as a snapshot keyed
        by the exact packages apt resolved), or, when a snapshot of those same packages
        exists, a session of that snapshot in its place. A varied build (reprotest's
        extra tools and setup) is never snapshotted nor started from one."""
        varied, root = self.conditions, self.conditions.root
        # A variant's build dependencies are most likely the ones that went wrong.
        line, _ = recipe.where(("variants", recipe.variant.name, "build", "depends")
                               if recipe.variant else ("build", "depends"))
        hint = f"check build.depends in {recipe.path}:{line}"
        key = snapshot = None
        if self.snapshots and not varied.packages and not varied.setup:
            resolved = snapshots.Resolution.parse(self._exec(
                session, [*snapshots.RESOLVE, where], log, recipe,
                "its build dependencies could not be resolved", hint, workdir=root,
                environment=apt_env))
            if resolved.files:  # else the build image has them all: nothing to keep
                key = snapshots.snapshot_key(self.environment.image_id, resolved)
                snapshot = snapshots.find(client, key)
        if snapshot is not None:
            log.write(f"# build dependencies ({len(resolved.files)} packages) "
                      f"installed already in {snapshot}\n")
            if proxy is not None:
                log.write(f"# {proxy.counts(_address(session.container))}\n")
            stack.close()  # this container's work is done: the snapshot's takes over
            return stack.enter_context(session_of(snapshot))
        self._exec(session, ["apt-get", "build-dep", "-y", where], log, recipe,
                   "its build dependencies could not be installed", hint,
                   workdir=root, environment=apt_env, refused=proxy)
        if key is not None:
            started = time.monotonic()
            # What only apt itself reads goes first: no step after this one runs apt.
            self._exec(session, ["sh", "-c", snapshots.TRIM], log, recipe,
                       "could not clean apt's files before the snapshot", "", workdir=root)
            made = snapshots.commit(client, session.container, key,
                                    self.environment.image_id, recipe.name)
            log.write(f"# snapshot {made} took {time.monotonic() - started:.2f} s\n")
        if varied.packages:
            self._exec(session, ["apt-get", "install", "-y", "--no-install-recommends",
                                 *varied.packages], log, recipe,
                       "the tools of the varied build could not be installed", "",
                       workdir=root, environment=apt_env, refused=proxy)
        for command in varied.setup:
            self._exec(session, list(command), log, recipe,
                       "the varied build could not be set up", "", workdir=root)
        if proxy is not None:  # this container's share of what the cache did
            log.write(f"# {proxy.counts(_address(session.container))}\n")
        return session

    @staticmethod
    def _disconnect(client, container) -> None:
        """Cut the running container off every network it is on, and check that it is."""
        container.reload()
        for name in container.attrs["NetworkSettings"]["Networks"]:
            client.networks.get(name).disconnect(container, force=True)
        container.reload()
        if container.attrs["NetworkSettings"]["Networks"]:
            raise KernError("could not take the build container off the network",
                            "builds run offline; check 'docker network ls'")

    def _exec(self, session: DockerSession, command: list[str], log, recipe: Recipe,
              failure: str, hint: str, workdir: str = "/build",
              environment: dict | None = None,
              refused: DownloadProxy | None = None) -> str:
        """Run one step; with ``refused``, an apt step whose cached downloads apt refused
        drops them from the cache and runs once more (fetching them anew)."""
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        result = session.exec(command, workdir=workdir, environment=environment, log=log)
        # One line per step, so a slow build can be read off its log.
        step = command[2].split()[0] if command[0] == "sh" else command[0]
        log.write(f"# {step} took {result.seconds:.2f} s, exit {result.exit_code}\n")
        if not result.ok and refused is not None:
            dropped = refused.drop(result.output)
            if dropped:
                log.write(f"# apt refused {len(dropped)} file(s) from the download cache "
                          "(dropped there): once more\n")
                return self._exec(session, command, log, recipe, failure, hint, workdir,
                                  environment)
        if not result.ok:
            full = disk_full(session.client, result.output, f"building {recipe.name}")
            if full is not None:
                raise full
            tail = "\n".join(result.output.splitlines()[-LOG_TAIL:])
            raise KernError(f"{recipe.name}: {failure} (exit {result.exit_code}):\n{tail}",
                            f"{hint}; the whole log is kept in {log.name}".lstrip("; "))
        return result.output


def _address(container) -> str:
    """The container's IP address on its (first) network."""
    container.reload()
    networks = container.attrs["NetworkSettings"]["Networks"].values()
    return next((n["IPAddress"] for n in networks if n.get("IPAddress")), "")


def _refuse_driver_dependencies(recipe: Recipe, debs: list[Path]) -> None:
    """Fail the build of a package that depends on the NVIDIA driver's libraries: it would
    install only beside that one driver, never on a CPU host or in a container whose
    runtime injects the host's driver."""
    from debian.deb822 import Deb822

    for deb in debs:
        control = Deb822(run_tool([require("dpkg-deb"), "--field", str(deb)],
                                  what=f"reading {deb.name}").decode())
        found = driver_dependencies(", ".join(filter(None, (control.get("Pre-Depends"),
                                                            control.get("Depends")))))
        if found:
            raise KernError(
                f"{recipe.name}: {control['Package']} depends on the NVIDIA driver's "
                f"libraries ({', '.join(found)}): it would install only beside that driver",
                f"drop them from the depends of {recipe.path}; a CUDA variant (variants: gpu: "
                "cuda:) leaves the driver to the host, whose libcuda its objects load at run time")


def driver_dependencies(depends: str) -> list[str]:
    """The driver packages a Depends field names, alternatives included."""
    return driver_packages(relation_names(depends)) if depends.strip() else []


def published_versions(repo: "AptRepository", suite: Suite) -> dict[str, str]:
    """For each of the suite's binary packages in ``repo``, its newest build of the
    recipe's current version (the version itself or its latest ``+bN`` rebuild)."""
    from debian.debian_support import Version

    newest: dict[str, str] = {}
    for ref in repo.packages():
        maker = suite.maker.get(ref.name)
        if maker is None:
            continue
        base = maker.debian_version(suite.settings)
        if ref.version == base or ref.version.startswith(base + "+b"):
            if ref.name not in newest or Version(ref.version) > Version(newest[ref.name]):
                newest[ref.name] = ref.version
    return newest

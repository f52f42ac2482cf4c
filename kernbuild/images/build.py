"""``kernbuild image``: images of recipes, built, checked, smoke-tested in every form.

:func:`build_images` builds a recipe's packages and publishes them first, then
builds the Docker image of its plan, smoke-tests it, and, as asked, makes a SIF
(:func:`make_sif`) or a CVMFS sandbox (:func:`make_sandbox`) of it and
smoke-tests each in its own root filesystem. Every image is recorded in
kern.lock (:mod:`kernbuild.lockfile`); the result is one
:class:`~kernbuild.results.ImageBuild` per image.

Each image is made holding its lock (``image:<tag>``, :mod:`kernbuild.locks`), so
two commands never build, squash or record one image at once; kern.lock is
rewritten holding ``lockfile``, so neither loses the other's entry.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from kernbuild.engine import image_id
from kernbuild.errors import KernError
from kernbuild.failpoints import boundary
from kernbuild.images.plan import (GPU_CHECK, GPU_VARIANT, ImagePlan, image_packages,
                                   plan_gpu_image, plan_image, suite_plans)
from kernbuild.images.writers import WRITERS, render_context
from kernbuild.lockfile import lockfile_path, record
from kernbuild.recipe.model import Suite
from kernbuild.results import (ImageBuild, LockEntry, SandboxRecord, SifRecord,
                               StepResult)
from kernbuild.runtime import ImageRef, RuntimeContext
from kernbuild.runtime.apptainer import ApptainerRunner
from kernbuild.runtime.bwrap import RootfsRunner
from kernbuild.runtime.docker import DockerRunner

FORMATS = ("docker", "sif", "sandbox")


def render_suite(suite: Suite) -> dict[str, str]:
    """``dockerfiles/`` as {relative path: text}: every image's Dockerfile and
    Singularity definition, and the files they share."""
    return render_context(suite_plans(suite, suite.settings.base_tag))


def build_images(workspace, suite: Suite, names: list[str], *,
                 formats: tuple[str, ...] = ("docker",),
                 output: Path | None = None, cvmfs: Path | None = None, jobs: int = 1,
                 gpu: bool = False, smoke: bool = True, report=lambda *_: None,
                 say=lambda _: None) -> list[ImageBuild]:
    """Images of ``names``: their packages built and published first, then each Docker
    image built from its plan and smoke-tested inside, then, as asked, a SIF (in
    ``output``) or an unpacked sandbox (under ``cvmfs``) made from it and smoke-tested
    in its own root filesystem. Every image is recorded in the lockfile.

    With ``gpu``, the GPU images (:func:`plan_gpu_image`): the recipes' gpu variants
    on the CUDA runtime layer. Such an image is refused if it holds a driver library,
    and ``kern-gpu-check`` runs in it, with the host's GPUs where the engine can pass
    them, to say whether this host can run it.

    Without ``smoke`` (the matrix, whose cells test every image on every target, each
    target checking a SIF's signature before it runs it): the images and SIFs are made
    and recorded, and neither the recipes' smoke steps nor kern-gpu-check run here.
    """
    from kernbuild.build import open_builder
    from kernbuild.build.downloads import download_cache
    from kernbuild.build.package import published_versions
    from kernbuild.images.docker import (build_image, build_inputs, built_already,
                                         serve_repository)
    from kernbuild.images.gpu import check_gpu, refuse_driver_libraries

    recipes = [suite.get(name) for name in names]
    for recipe in recipes:
        if not image_packages(recipe):
            raise KernError(f"{recipe.name} has no package to put in an image",
                            "its packages are all -dev, -dbg or -doc")
    wanted = [r.name for r in recipes]
    if gpu:
        if GPU_CHECK not in suite.by_name:
            raise KernError(f"GPU images hold {GPU_CHECK}, and the suite has no recipe of it",
                            f"copy recipes/{GPU_CHECK}.yaml and recipes/{GPU_CHECK}/ from "
                            "kernbuild's suite")
        for index, recipe in enumerate(recipes):
            suite, derived = suite.with_variant(recipe.name, GPU_VARIANT)
            wanted[index] = derived.name
        wanted.append(GPU_CHECK)
    builder = open_builder(workspace, suite, jobs=jobs, report=report, say=say)
    failed = [r for r in builder.run(wanted) if r.state in ("failed", "skipped")]
    if failed:
        raise KernError("\n".join(r.error for r in failed), "no image without its packages")
    client = builder.connect()
    env = builder.environment
    versions = published_versions(builder.repo, suite)
    keyring_sha256 = hashlib.sha256(
        (builder.repo.root / "kern-archive-keyring.gpg").read_bytes()).hexdigest()
    docker = DockerRunner(lambda: client, labels={"kernbuild": "smoke"}, state=workspace.state)
    # made ready once for all the SIFs of this command, not once per image
    apptainer = _apptainer(workspace, suite, builder.repo.key, say) if "sif" in formats else None
    locks = workspace.locks(say)
    builds = []
    for recipe in recipes:
        plan = (plan_gpu_image if gpu else plan_image)(suite, recipe, env.base)
        with locks.hold(f"image:{plan.tag}"):
            # Suite packages are pinned to the exact build; Debian's (CUDA's) come as apt
            # has them.
            pins = [" ".join(f"{p}={versions[p]}" if p in suite.maker else p
                             for p in layer.packages) for layer in plan.layers]
            entry = lock_entry(suite, builder, plan, versions)
            labels = {**plan.labels, **build_labels(suite, entry)}
            inputs = build_inputs(plan, pins, keyring_sha256, labels,
                                  image_id(client, plan.base) or plan.base)
            built = built_already(client, plan, inputs)
            if built is None:
                report(recipe.name, "image", f"docker build {plan.tag}")
                with serve_repository(client, builder.repo, env.image) as network:
                    built = build_image(client, plan, pins, keyring_sha256, labels, network,
                                        workspace.images, download_cache(workspace.state),
                                        inputs=inputs)
            if built.downloads:
                report(recipe.name, "image", built.downloads)
            entry = replace(entry, image=built.id, size=built.size)
            if plan.cuda:
                report(recipe.name, "image", "checking for driver libraries")
                entry = replace(entry, cuda_runtime=refuse_driver_libraries(client, built.tag,
                                                                            plan))
            result = ImageBuild(entry)
            if smoke:
                report(recipe.name, "image", "smoke tests in the image")
                result = replace(result, smoke=tuple(
                    docker.run(ImageRef(built.tag, built.id), command)
                    for command in plan.smoke))
                if plan.cuda:
                    result = replace(result, gpu_check=check_gpu(client, built.tag))
            if "sif" in formats:
                report(recipe.name, "image", "SIF")
                sif, steps = make_sif(client, plan, built, output or workspace.images / "sif",
                                      workspace.images, apptainer, smoke=smoke)
                result = replace(result, lock=replace(result.lock, sif=sif), sif_smoke=steps)
            if "sandbox" in formats:
                report(recipe.name, "image", f"sandbox in {cvmfs}")
                sandbox, steps = make_sandbox(client, plan, built, cvmfs, workspace.images,
                                              smoke=smoke)
                result = replace(result, lock=replace(result.lock, sandbox=sandbox),
                                 sandbox_smoke=steps)
            with locks.hold("lockfile"):  # kern.lock holds every image's entry
                record(lockfile_path(workspace.recipes), result.lock)
        builds.append(result)
    return builds


@contextmanager
def _sif_space(work: Path, tag: str, size: int) -> Iterator[None]:
    """A full disk while making ``tag``'s SIF: one message saying what it needs."""
    from kernbuild.fsutil import DiskFull, disk_space, human_size

    try:
        with disk_space(work):
            yield
    except DiskFull as full:
        raise DiskFull(f"{full.message} while making the SIF of {tag}: its {human_size(size)} "
                       "image is saved, then squashed, beside it (about twice that is needed;"
                       " what it had written is removed)", full.hint, full.where) from None


def make_sif(client, plan: ImagePlan, built, directory: Path, work: Path,
             apptainer: ApptainerRunner | None = None, smoke: bool = True
             ) -> tuple[SifRecord, tuple[StepResult, ...]]:
    """A SIF of the built Docker image, verified, then smoke-tested.

    With ``apptainer`` (the host's, or Debian's in a container): built by ``apptainer
    build`` from the image's ``docker save`` archive, signed with the suite's key,
    refused unless ``apptainer verify`` passes, its labels read back with ``apptainer
    inspect``, each smoke step run by ``apptainer exec``, then ``apptainer test``.
    Without one: assembled from the image's root filesystem with mksquashfs and
    siftool (unsigned: nothing here can sign it), each step run in its unpacked root
    filesystem (sif-bwrap). Either way the SIF is kept by the image's id and how it
    was made: an unchanged image is not squashed again. Without ``smoke``, only made
    and checked by kernbuild's own reader: whoever runs it verifies it first.
    """
    from kernbuild.fsutil import atomic_copy
    from kernbuild.images import sif
    from kernbuild.sources import file_sha256

    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{plan.name}_{plan.tag.rsplit(':', 1)[1]}.sif"
    definition = WRITERS["singularity"].render(plan)
    work.mkdir(parents=True, exist_ok=True)
    maker = "apptainer" if apptainer is not None else "assembled"
    cached = work / "sif-cache" / f"{built.id.removeprefix('sha256:')}-{maker}.sif"
    cached.parent.mkdir(parents=True, exist_ok=True)
    # A full disk anywhere below (docker save, the SIF, its unpacked tree) is one message
    # naming the state's image directory; the scratch directory is gone by then.
    with _sif_space(work, plan.tag, built.size), tempfile.TemporaryDirectory(dir=work) as scratch:
        how = "cache"
        if not cached.exists():
            made = Path(scratch, "image.sif")
            if apptainer is not None:
                archive = Path(scratch, "image.tar")
                with open(archive, "wb") as out:
                    for chunk in client.images.get(built.id).save(named=True):
                        out.write(chunk)
                apptainer.build(archive, made)
                archive.unlink()
                apptainer.sign(made)
                how = "apptainer build"
            else:
                assemble_from_image(client, built.id, definition, built.labels, made,
                                    Path(scratch))
                how = "mksquashfs+siftool"
            boundary("commit:sif-cache")
            os.replace(made, cached)  # the cache holds whole, signed SIFs only
        if target.resolve() != cached.resolve():
            atomic_copy(cached, target)  # readers see the old SIF or the new one, whole
        info = sif.verify_sif(target)
        steps, tested = (), ""
        if smoke and apptainer is not None:
            try:  # a SIF changed since it was signed goes no further
                apptainer.verify(target)
            except KernError as exc:
                cached.unlink(missing_ok=True)  # so that the next run makes it anew
                target.unlink(missing_ok=True)
                raise KernError(exc.message, "the cached copy is removed: run the command "
                                             "again to build and sign it anew") from None
            seen = apptainer.inspect_labels(target)
            if seen.get("org.kernsuite.packages") != built.labels.get("org.kernsuite.packages"):
                raise KernError(f"apptainer reads other labels from {target} than the image's",
                                "build it again: the SIF is not what was made")
            runner, ref, tested = apptainer, ImageRef(str(target)), apptainer.describe()
            steps = tuple(runner.run(ref, command) for command in plan.smoke) + (
                runner.test(target),)
        elif smoke:
            unpacked = sif.unpack_sif(target, Path(scratch, "unpacked"))
            steps, tested = _rootfs_smoke(unpacked, plan), "sif-bwrap"
    return SifRecord(str(target), file_sha256(target), target.stat().st_size, info["arch"],
                     how, tested), steps


def assemble_from_image(client, image: str, definition: str, labels: dict[str, str],
                        output: Path, scratch: Path) -> Path:
    """kernbuild's own SIF of the Docker image ``image`` at ``output`` (as apptainer
    would make it: :func:`kernbuild.images.sif.assemble_sif`), its root filesystem
    unpacked in ``scratch`` meanwhile.

    Reproducible: the squashfs is dated from the image's creation (SOURCE_DATE_EPOCH),
    which also clamps the times of the files written now (``/.singularity.d``, the root
    directory), so one image always gives the same squashfs payload.
    """
    from datetime import datetime

    from kernbuild.images import sif
    from kernbuild.images.rootfs import export_rootfs
    from kernbuild.images.singularity import write_singularity_dir

    attrs = client.images.get(image).attrs
    created = datetime.fromisoformat(re.sub(r"\.(\d{6})\d*", r".\1",
                                            attrs["Created"].replace("Z", "+00:00")))
    rootfs = export_rootfs(client, image, scratch / "rootfs")
    write_singularity_dir(rootfs, definition, labels, _image_env(client, image))
    sif.assemble_sif(rootfs, definition, labels, output, epoch=int(created.timestamp()))
    shutil.rmtree(rootfs)
    return output


def make_sandbox(client, plan: ImagePlan, built, cvmfs: Path, work: Path,
                 smoke: bool = True) -> tuple[SandboxRecord, tuple[StepResult, ...]]:
    """An unpacked root filesystem under ``cvmfs``, stored by digest: republishing an
    unchanged image does nothing."""
    from kernbuild.images.cvmfs import export_sandbox
    from kernbuild.images.rootfs import export_rootfs
    from kernbuild.images.singularity import write_singularity_dir

    digest = built.id.removeprefix("sha256:")
    stored = cvmfs / ".images" / digest
    if stored.is_dir():  # published before: only the name may need pointing at it
        path, changed = export_sandbox(stored, cvmfs, plan.tag, built.id)
    else:
        work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=work) as scratch:
            rootfs = export_rootfs(client, built.id, Path(scratch, "rootfs"))
            write_singularity_dir(rootfs, WRITERS["singularity"].render(plan), built.labels,
                                  _image_env(client, built.id))
            path, changed = export_sandbox(rootfs, cvmfs, plan.tag, built.id)
    return (SandboxRecord(str(path), str(cvmfs / plan.tag), changed),
            _rootfs_smoke(path, plan) if smoke else ())


def _apptainer(workspace, suite: Suite, key, say) -> ApptainerRunner | None:
    """The real apptainer to build, sign and test SIFs with, made ready and holding the
    suite's ``key``; None (kernbuild's own assembly and sif-bwrap then) where neither
    the host's nor Debian's in a container can run."""
    runner = ApptainerRunner.from_context(RuntimeContext.for_workspace(workspace, suite.settings))
    try:
        runner.prepare(ImageRef(""))
        runner.use_key(key)
    except KernError as exc:
        say(f"no apptainer to build the SIF with ({exc.message}): kernbuild assembles it "
            "and sif-bwrap runs its steps")
        return None
    return runner


def _rootfs_smoke(rootfs: Path, plan: ImagePlan) -> tuple[StepResult, ...]:
    runner = RootfsRunner()
    return tuple(runner.run(ImageRef(str(rootfs)), command) for command in plan.smoke)


def _image_env(client, image: str) -> dict[str, str]:
    """The image's ENV, which apptainer carries into 10-docker2singularity.sh."""
    env = client.images.get(image).attrs["Config"].get("Env") or []
    return dict(item.split("=", 1) for item in env if "=" in item)


def lock_entry(suite: Suite, builder, plan: ImagePlan, versions: dict[str, str]) -> LockEntry:
    """What the lockfile records of an image, but for its id (known once built)."""
    packages = {p: versions[p] for p in plan.packages if p in suite.maker}
    makers = sorted({suite.maker[p].name for p in packages})
    return LockEntry(
        tag=plan.tag, recipe=plan.name, recipe_hash=suite.by_name[plan.name].fingerprint(),
        base=plan.base, base_digest=builder.environment.base_id, packages=packages,
        sources={name: builder.sources.key(suite.by_name[name]) for name in makers},
        gpu=bool(plan.cuda), cuda=plan.cuda.version if plan.cuda else None)


def build_labels(suite: Suite, entry: LockEntry) -> dict[str, str]:
    """The labels a build adds to the plan's: what exactly went into this image."""
    return {
        "org.opencontainers.image.version": entry.packages[
            next(p.name for p in suite.by_name[entry.recipe].packages
                 if p.name in entry.packages)],
        "org.opencontainers.image.base.digest": entry.base_digest,
        "org.kernsuite.packages": " ".join(f"{p}={v}" for p, v in entry.packages.items()),
        "org.kernsuite.recipe-hash": entry.recipe_hash,
        "org.kernsuite.source-sha256": " ".join(f"{n}={s}" for n, s in entry.sources.items()),
    }

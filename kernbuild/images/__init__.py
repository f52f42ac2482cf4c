"""Images: plans of layered images, the writers that render them, and the rendered suite.

``dockerfiles/`` in the repository holds :func:`render_suite`'s output, so the
Dockerfiles and Singularity definitions can be read, reviewed and built with
plain ``docker build``; :func:`drift` says where it is out of date.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from kernbuild.build.environment import base_tag
from kernbuild.images.plan import (GPU_CHECK, GPU_VARIANT, ImagePlan, image_packages,
                                   plan_gpu_image, plan_image)
from kernbuild.images.writers import WRITERS, render_context
from kernbuild.recipe.model import Suite


def image_names(suite: Suite, gpu: bool = False) -> list[str]:
    """The recipes the suite has images of: each with something to put in an image
    (with ``gpu``, each of those with a gpu variant), by name."""
    return [r.name for r in sorted(suite.recipes, key=lambda r: r.name)
            if image_packages(r) and (not gpu or GPU_VARIANT in r.variants)]


def suite_plans(suite: Suite) -> list[ImagePlan]:
    """A plan for every recipe that has something to put in an image, and a GPU plan
    for every recipe with a gpu variant."""
    base = base_tag(suite.settings)
    return [plan_image(suite, suite.get(name), base) for name in image_names(suite)] + [
        plan_gpu_image(suite, suite.get(name), base) for name in image_names(suite, gpu=True)]


def render_suite(suite: Suite) -> dict[str, str]:
    """``dockerfiles/`` as {relative path: text}."""
    return render_context(suite_plans(suite))


def drift(files: dict[str, str], directory: Path) -> list[str]:
    """Paths under ``directory`` that differ from ``files``: changed, missing or extra."""
    on_disk = {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()} \
        if directory.is_dir() else set()
    changed = [path for path, text in files.items()
               if path not in on_disk or (directory / path).read_text() != text]
    return sorted(changed + list(on_disk - set(files)))


def write_tree(files: dict[str, str], directory: Path) -> None:
    """Make ``directory`` hold exactly ``files`` (stale images' directories go)."""
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.is_dir() and not any(path.startswith(entry.name + "/") for path in files):
                shutil.rmtree(entry)
    for path in drift(files, directory):
        target = directory / path
        if path in files:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(files[path])
            if path == "kern-apt-install":
                target.chmod(0o755)
        else:
            target.unlink()




# --- building images ------------------------------------------------------------------

LOCKFILE = "kern.lock"


FORMATS = ("docker", "sif", "sandbox")


def build_images(workspace, suite: Suite, names: list[str], *,
                 formats: tuple[str, ...] = ("docker",),
                 output: Path | None = None, cvmfs: Path | None = None, jobs: int = 1,
                 gpu: bool = False, report=lambda *_: None, say=lambda _: None) -> list[dict]:
    """Images of ``names``: their packages built and published first, then each Docker
    image built from its plan and smoke-tested inside, then, as asked, a SIF (in
    ``output``) or an unpacked sandbox (under ``cvmfs``) made from it and smoke-tested
    in its own root filesystem. Every image is recorded in the lockfile.

    With ``gpu``, the GPU images (:func:`plan_gpu_image`): the recipes' gpu variants
    on the CUDA runtime layer. Such an image is refused if it holds a driver library,
    and ``kern-gpu-check`` runs in it, with the host's GPUs where the engine can pass
    them, to say whether this host can run it.

    Returns one lock entry per image (see :func:`lock_entry`), with smoke results.
    """
    from kernbuild.build import open_builder
    from kernbuild.build.package import published_versions
    from kernbuild.errors import KernError
    from kernbuild.images.docker import build_image, serve_repository, smoke_image
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
    entries = []
    for recipe in recipes:
        plan = (plan_gpu_image if gpu else plan_image)(suite, recipe, env.base)
        # Suite packages are pinned to the exact build; Debian's (CUDA's) come as apt has them.
        pins = [" ".join(f"{p}={versions[p]}" if p in suite.maker else p
                         for p in layer.packages) for layer in plan.layers]
        entry = lock_entry(suite, builder, plan, versions)
        labels = {**plan.labels, **build_labels(suite, entry)}
        report(recipe.name, "image", f"docker build {plan.tag}")
        with serve_repository(client, builder.repo, env.image) as network:
            built = build_image(client, plan, pins, keyring_sha256, labels, network,
                                workspace.images)
        if plan.cuda:
            report(recipe.name, "image", "checking for driver libraries")
            entry["cuda_runtime"] = refuse_driver_libraries(client, built.tag, plan)
        report(recipe.name, "image", "smoke tests in the image")
        entry.update(image=built.id, size=built.size,
                     smoke=[vars(r) for r in smoke_image(client, built.tag, plan.smoke)])
        if plan.cuda:
            entry["gpu_check"] = check_gpu(client, built.tag)
        if "sif" in formats:
            report(recipe.name, "image", "SIF")
            entry["sif"] = make_sif(client, plan, built, output or workspace.images / "sif",
                                    workspace.images)
        if "sandbox" in formats:
            report(recipe.name, "image", f"sandbox in {cvmfs}")
            entry["sandbox"] = make_sandbox(client, plan, built, cvmfs, workspace.images)
        write_lock(workspace.recipes.parent / LOCKFILE, plan.tag,
                   _without_smoke({k: v for k, v in entry.items() if k != "gpu_check"}))
        entries.append(entry)
    return entries


def make_sif(client, plan: ImagePlan, built, directory: Path, work: Path) -> dict:
    """A SIF of the built Docker image, verified, then unpacked to run the smoke steps.

    Through apptainer (or singularity) where one is installed; otherwise assembled
    from the image's root filesystem with mksquashfs and siftool.
    """
    import os
    import shutil
    import tempfile

    from kernbuild.images import sif
    from kernbuild.sources import file_sha256

    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{plan.name}_{plan.tag.rsplit(':', 1)[1]}.sif"
    definition = WRITERS["singularity"].render(plan)
    work.mkdir(parents=True, exist_ok=True)
    # SIFs are kept by the id of the image they come from: an unchanged image is not
    # squashed again.
    cached = work / "sif-cache" / f"{built.id.removeprefix('sha256:')}.sif"
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        how = "cache"
        if not cached.exists():
            if shutil.which("apptainer") or shutil.which("singularity"):
                from spython.main import Client  # drives whichever of the two is installed

                Client.build(recipe=f"docker-daemon://{built.tag}", image=str(cached),
                             sudo=False, force=True, build_folder=scratch)
                how = "apptainer"
            else:
                rootfs = sif.export_rootfs(client, built.id, Path(scratch, "rootfs"))
                sif.write_singularity_dir(rootfs, definition, built.labels,
                                          _image_env(client, built))
                sif.assemble_sif(rootfs, definition, built.labels, cached)
                shutil.rmtree(rootfs)
                how = "mksquashfs+siftool"
        if target.resolve() != cached.resolve():
            staged = target.with_name(f".{target.name}.tmp")
            shutil.copyfile(cached, staged)
            os.replace(staged, target)  # readers see the old SIF or the new one, whole
        info = sif.verify_sif(target)
        unpacked = sif.unpack_sif(target, Path(scratch, "unpacked"))
        smoke = [_rootfs_smoke(sif, unpacked, command) for command in plan.smoke]
    return {"path": str(target), "sha256": file_sha256(target), "size": target.stat().st_size,
            "arch": info["arch"], "built_with": how, "smoke": smoke}


def make_sandbox(client, plan: ImagePlan, built, cvmfs: Path, work: Path) -> dict:
    """An unpacked root filesystem under ``cvmfs``, stored by digest: republishing an
    unchanged image does nothing."""
    import tempfile

    from kernbuild.images import sif

    digest = built.id.removeprefix("sha256:")
    stored = cvmfs / ".images" / digest
    if stored.is_dir():  # published before: only the name may need pointing at it
        path, changed = sif.export_sandbox(stored, cvmfs, plan.tag, built.id)
    else:
        work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=work) as scratch:
            rootfs = sif.export_rootfs(client, built.id, Path(scratch, "rootfs"))
            sif.write_singularity_dir(rootfs, WRITERS["singularity"].render(plan), built.labels,
                                      _image_env(client, built))
            path, changed = sif.export_sandbox(rootfs, cvmfs, plan.tag, built.id)
    smoke = [_rootfs_smoke(sif, path, command) for command in plan.smoke]
    return {"path": str(path), "name": str(cvmfs / plan.tag), "published": changed,
            "smoke": smoke}


def _without_smoke(entry: dict) -> dict:
    """A lock record: what an image is, not how its last smoke test went."""
    return {key: _without_smoke(value) if isinstance(value, dict) else value
            for key, value in entry.items() if key != "smoke"}


def smoke_failures(entry: dict) -> list[tuple[str, dict]]:
    """(form, result) of every failed smoke step of an image entry, in every form."""
    forms = [("docker", entry["smoke"])] + [(form, entry[form]["smoke"])
                                            for form in ("sif", "sandbox") if form in entry]
    return [(form, r) for form, results in forms for r in results if r["exit_code"] != 0]


def _rootfs_smoke(sif, rootfs: Path, command: str) -> dict:
    import time

    started = time.monotonic()
    code, output = sif.run_in_rootfs(rootfs, command)
    return {"command": command, "exit_code": code, "output": output,
            "seconds": time.monotonic() - started}


def _image_env(client, built) -> dict[str, str]:
    """The image's ENV, which apptainer carries into 10-docker2singularity.sh."""
    env = client.images.get(built.id).attrs["Config"].get("Env") or []
    return dict(item.split("=", 1) for item in env if "=" in item)


def lock_entry(suite: Suite, builder, plan: ImagePlan, versions: dict[str, str]) -> dict:
    """What the lockfile records of an image, but for its id (known once built)."""
    packages = {p: versions[p] for p in plan.packages if p in suite.maker}
    makers = sorted({suite.maker[p].name for p in packages})
    sources = {name: builder.sources.key(suite.by_name[name]) for name in makers}
    entry = {
        "tag": plan.tag,
        "recipe": plan.name,
        "recipe_hash": suite.by_name[plan.name].fingerprint(),
        "base": plan.base,
        "base_digest": builder.environment.base_id,
        "packages": packages,
        "sources": sources,
    }
    if plan.cuda:
        entry.update(gpu=True, cuda=plan.cuda.version)
    return entry


def build_labels(suite: Suite, entry: dict) -> dict[str, str]:
    """The labels a build adds to the plan's: what exactly went into this image."""
    return {
        "org.opencontainers.image.version": entry["packages"][
            next(p.name for p in suite.by_name[entry["recipe"]].packages
                 if p.name in entry["packages"])],
        "org.opencontainers.image.base.digest": entry["base_digest"],
        "org.kernsuite.packages": " ".join(f"{p}={v}" for p, v in entry["packages"].items()),
        "org.kernsuite.recipe-hash": entry["recipe_hash"],
        "org.kernsuite.source-sha256": " ".join(f"{n}={s}" for n, s in entry["sources"].items()),
    }


def write_lock(path: Path, tag: str, entry: dict) -> None:
    """Record ``entry`` for ``tag`` in the lockfile, atomically: readers never see half of it."""
    import json
    import os

    try:
        lock = json.loads(path.read_text())
    except (OSError, ValueError):
        lock = {}
    lock.setdefault("images", {})[tag] = entry
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)

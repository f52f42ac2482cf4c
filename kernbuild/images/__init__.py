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
from kernbuild.images.plan import ImagePlan, image_packages, plan_image
from kernbuild.images.writers import WRITERS, render_context
from kernbuild.recipe.model import Suite


def suite_plans(suite: Suite) -> list[ImagePlan]:
    """A plan for every recipe that has something to put in an image."""
    base = base_tag(suite.settings)
    return [plan_image(suite, recipe, base) for recipe in sorted(suite.recipes, key=lambda r: r.name)
            if image_packages(recipe)]


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


def build_images(workspace, suite: Suite, names: list[str], *, jobs: int = 1,
                 report=lambda *_: None, say=lambda _: None) -> list[dict]:
    """Docker images of ``names``: their packages built and published first, then each
    image built from its plan, smoke-tested inside, and recorded in the lockfile.

    Returns one lock entry per image (see :func:`lock_entry`), with smoke results.
    """
    from kernbuild.build import open_builder
    from kernbuild.build.package import published_versions
    from kernbuild.errors import KernError
    from kernbuild.images.docker import build_image, serve_repository, smoke_image
    from kernbuild.images.plan import image_packages

    recipes = [suite.get(name) for name in names]
    for recipe in recipes:
        if not image_packages(recipe):
            raise KernError(f"{recipe.name} has no package to put in an image",
                            "its packages are all -dev, -dbg or -doc")
    builder = open_builder(workspace, suite, jobs=jobs, report=report, say=say)
    failed = [r for r in builder.run([r.name for r in recipes]) if r.state in ("failed", "skipped")]
    if failed:
        raise KernError("\n".join(r.error for r in failed), "no image without its packages")
    client = builder.connect()
    env = builder.environment
    versions = published_versions(builder.repo, suite)
    keyring_sha256 = hashlib.sha256(
        (builder.repo.root / "kern-archive-keyring.gpg").read_bytes()).hexdigest()
    entries = []
    for recipe in recipes:
        plan = plan_image(suite, recipe, env.base)
        pins = [" ".join(f"{p}={versions[p]}" for p in layer.packages) for layer in plan.layers]
        entry = lock_entry(suite, builder, plan, versions)
        labels = {**plan.labels, **build_labels(suite, entry)}
        report(recipe.name, "image", f"docker build {plan.tag}")
        with serve_repository(client, builder.repo, env.image) as network:
            built = build_image(client, plan, pins, keyring_sha256, labels, network,
                                workspace.images)
        report(recipe.name, "image", "smoke tests in the image")
        entry.update(image=built.id, size=built.size,
                     smoke=[vars(r) for r in smoke_image(client, built.tag, plan.smoke)])
        write_lock(workspace.recipes.parent / LOCKFILE, plan.tag,
                   {k: v for k, v in entry.items() if k != "smoke"})
        entries.append(entry)
    return entries


def lock_entry(suite: Suite, builder, plan: ImagePlan, versions: dict[str, str]) -> dict:
    """What the lockfile records of an image, but for its id (known once built)."""
    packages = {p: versions[p] for p in plan.packages}
    makers = sorted({suite.maker[p].name for p in packages})
    sources = {name: builder.sources.key(suite.by_name[name]) for name in makers}
    return {
        "tag": plan.tag,
        "recipe": plan.name,
        "recipe_hash": suite.by_name[plan.name].fingerprint(),
        "base": plan.base,
        "base_digest": builder.environment.base_id,
        "packages": packages,
        "sources": sources,
    }


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

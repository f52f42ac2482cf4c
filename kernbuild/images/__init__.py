"""Images: plans of layered images, the writers that render them, and the rendered suite.

``dockerfiles/`` in the repository holds :func:`render_suite`'s output, so the
Dockerfiles and Singularity definitions can be read, reviewed and built with
plain ``docker build``; :func:`drift` says where it is out of date.
"""

from __future__ import annotations

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


__all__ = ["ImagePlan", "WRITERS", "drift", "plan_image", "render_suite", "suite_plans",
           "write_tree"]

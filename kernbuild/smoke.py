"""Smoke tests: install a recipe's packages from the signed repository and run its smoke steps.

The container is a fresh one of the plain base image that knows only the
repository's URL and its public key, as a user's machine would: if the
packages install and run there, the repository, its signature and the
packages' dependencies are all right.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernbuild.engine import APT_UPDATE_RETRIED
from kernbuild.errors import KernError
from kernbuild.recipe.model import Recipe
from kernbuild.results import StepResult
from kernbuild.runtime.docker import DockerSession

if TYPE_CHECKING:
    import docker

    from kernbuild.repo import AptRepository

REPO_MOUNT = "/srv/kern-repo"
KEYRING = "/etc/apt/keyrings/kern-archive-keyring.gpg"


def run_smoke(client: "docker.DockerClient", base_image: str, repo: "AptRepository",
              recipe: Recipe, versions: dict[str, str],
              areas: str | None = None) -> list[StepResult]:
    """Install ``recipe``'s packages at ``versions`` in a clean container and run its steps.

    ``areas`` is a sources.list line for the Debian archive areas beyond main that
    the packages need (non-free, say), which the base image's sources leave out.
    The first result is the installation itself; a failed installation stops there.
    """
    missing = [p.name for p in recipe.packages if p.name not in versions]
    if missing:
        raise KernError(f"{', '.join(missing)} of {recipe.name} not in the repository",
                        f"run 'kernbuild package {recipe.name}' first")
    apt_files = {
        KEYRING: (repo.root / "kern-archive-keyring.gpg").read_bytes(),
        "/etc/apt/sources.list.d/kern.list":
            (repo.sources_line(f"file:{REPO_MOUNT}/current", KEYRING) + "\n").encode(),
    }
    if areas:
        apt_files["/etc/apt/sources.list.d/debian-areas.list"] = (areas + "\n").encode()
    packages = [f"{p.name}={versions[p.name]}" for p in recipe.packages]
    with DockerSession(client, base_image,
                       volumes={str(repo.root.resolve()): {"bind": REPO_MOUNT, "mode": "ro"}},
                       labels={"kernbuild": "smoke", "kernbuild.recipe": recipe.name}) as session:
        session.put_files(apt_files)
        install = ["sh", "-c", f"({APT_UPDATE_RETRIED}) && apt-get install -y -q "
                   '--no-install-recommends "$@"', "install", *packages]
        results = [session.exec(install, "apt-get install " + " ".join(packages),
                                environment={"DEBIAN_FRONTEND": "noninteractive"})]
        if results[0].ok:
            results += [session.exec(["sh", "-c", step.run], step.run) for step in recipe.smoke]
        return results


def smoke_recipe(workspace, suite, name: str) -> list[StepResult]:
    """``kernbuild smoke NAME``: the recipe's published packages installed in a clean
    container of the suite's base image, and its smoke steps (see :func:`run_smoke`)."""
    from kernbuild import engine
    from kernbuild.build import open_repository
    from kernbuild.build.package import published_versions

    recipe = suite.get(name)
    client = engine.connect()
    base = suite.settings.base_tag
    if engine.image_id(client, base) is None:
        raise KernError(f"the base image {base} is missing", f"run 'kernbuild package {name}'")
    repo = open_repository(workspace, suite)
    components = suite.components(recipe)
    areas = (f"deb {suite.settings.mirror} {suite.settings.distribution} {' '.join(components)}"
             if components else None)
    return run_smoke(client, base, repo, recipe, published_versions(repo, suite), areas)

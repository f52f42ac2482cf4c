"""Smoke tests: install a recipe's packages from the signed repository and run its smoke steps.

The container is a fresh one of the plain base image that knows only the
repository's URL and its public key, as a user's machine would: if the
packages install and run there, the repository, its signature and the
packages' dependencies are all right.
"""

from __future__ import annotations

import io
import tarfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kernbuild.engine import APT_UPDATE_RETRIED
from kernbuild.errors import KernError
from kernbuild.recipe.model import Recipe

if TYPE_CHECKING:
    import docker

    from kernbuild.repo import AptRepository

REPO_MOUNT = "/srv/kern-repo"
KEYRING = "/etc/apt/keyrings/kern-archive-keyring.gpg"


@dataclass(frozen=True)
class StepResult:
    command: str
    exit_code: int
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


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
    container = client.containers.run(
        base_image, ["sleep", "infinity"], detach=True,
        volumes={str(repo.root.resolve()): {"bind": REPO_MOUNT, "mode": "ro"}},
        labels={"kernbuild": "smoke", "kernbuild.recipe": recipe.name})
    try:
        container.put_archive("/", _tar(apt_files))
        install = ["sh", "-c", f"({APT_UPDATE_RETRIED}) && apt-get install -y -q "
                   '--no-install-recommends "$@"', "install", *packages]
        results = [_exec(container, install, "apt-get install " + " ".join(packages),
                         {"DEBIAN_FRONTEND": "noninteractive"})]
        if results[0].ok:
            results += [_exec(container, ["sh", "-c", step.run], step.run) for step in recipe.smoke]
        return results
    finally:
        container.remove(force=True)


def _exec(container, command: list[str], label: str, environment: dict | None = None) -> StepResult:
    started = time.monotonic()
    code, output = container.exec_run(command, environment=environment or {})
    return StepResult(label, code, output.decode("utf-8", "replace"), time.monotonic() - started)


def _tar(files: dict[str, bytes]) -> bytes:
    """An in-memory tar of absolute paths (and their parent directories) for put_archive."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, content in files.items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()

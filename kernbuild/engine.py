"""The Docker engine adapter: connect once, fail with one clear message.

Everything that talks to Docker goes through :func:`connect`, so "no engine"
is reported the same way by every command.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from kernbuild.errors import KernError
from kernbuild.fsutil import DiskFull, free_space, human_size

if TYPE_CHECKING:
    import docker


def connect() -> "docker.DockerClient":
    """A client for the engine at DOCKER_HOST (or the default socket), checked with a ping."""
    import docker  # imported here: commands that need no engine start faster without it
    from docker.errors import DockerException

    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except DockerException as exc:
        raise KernError(
            f"no Docker engine answers at {where}",
            "start one (as root: dockerd >/var/log/dockerd.log 2>&1 &, or "
            "'bash ci/setup-host.sh' to install and start it), or set DOCKER_HOST",
        ) from exc
    return client


def image_id(client: "docker.DockerClient", reference: str) -> str | None:
    """The id of a local image, or None if it is not there."""
    from docker.errors import ImageNotFound

    try:
        return client.images.get(reference).id
    except ImageNotFound:
        return None


def build(client: "docker.DockerClient", context: str, tag: str, hint: str,
          retry: Callable[[str], bool] = lambda _log: False, **options):
    """``docker build`` of a context directory; a failure is one KernError with the log's
    tail (a :class:`DiskFull` when the engine's disk filled up).

    ``retry`` sees a failed build's whole log and says whether to build once more (it
    dropped download cache entries that apt refused, say). ``options`` go to the SDK's
    ``images.build`` (dockerfile, buildargs, labels, ...).
    """
    from docker.errors import APIError, BuildError

    try:
        image, _ = client.images.build(path=context, tag=tag, rm=True, forcerm=True, **options)
    except BuildError as exc:
        log = "".join(chunk.get("stream", "") + chunk.get("error", "")
                      for chunk in exc.build_log)
        full = disk_full(client, log, f"building the image {tag}")
        if full is not None:
            raise full from None
        if retry(log):
            return build(client, context, tag, hint, **options)
        raise KernError(f"building the image {tag} failed: {exc.msg}\n"
                        + "\n".join(log.splitlines()[-25:]), hint) from None
    except APIError as exc:
        full = disk_full(client, str(exc.explanation), f"building the image {tag}")
        if full is not None:
            raise full from None
        raise KernError(f"the Docker engine refused to build {tag}: {exc.explanation}",
                        "is there room left on its disk (docker system df)?") from None
    return image


#: What a full disk says inside a container or the engine (ENOSPC's strerror; apt's and
#: dpkg's own words for it).
_NO_SPACE = re.compile(r"no space left on device|You don't have enough free space",
                       re.IGNORECASE)


def disk_full(client: "docker.DockerClient", output: str, what: str) -> DiskFull | None:
    """The error for ``output`` of a build (``what``) that ran out of space, or None if
    it did not: one message with the space left on the engine's disk and what to do.

    Docker leaves no half-made image or layer behind a failed step, and kernbuild writes
    its caches only after a build succeeds, so freeing space and running the command
    again is all it takes."""
    if not _NO_SPACE.search(output):
        return None
    where = Path(_docker_root(client))
    free = free_space(where) if where.is_dir() else None
    left = f", {human_size(free)} free there" if free is not None else ""
    return DiskFull(
        f"{what} stopped: no space left on the Docker engine's disk ({where}{left})",
        "free space there ('docker system df' shows what takes it; 'docker builder prune' "
        "and 'docker image prune' reclaim unused layers), then run the command again: "
        "nothing half-made was kept", where)


def _docker_root(client: "docker.DockerClient") -> str:
    try:
        return client.info().get("DockerRootDir") or "/var/lib/docker"
    except Exception:  # noqa: BLE001 - a full disk may stop the engine answering too
        return "/var/lib/docker"


#: Shell for containers: apt-get update, up to three times, 5 s apart. A mirror's
#: hiccup ("Some index files failed to download") fails one try, not the command.
APT_UPDATE_RETRIED = ("for try in 1 2 3; do apt-get update -q && exit 0; "
                      "[ $try = 3 ] || sleep 5; done; exit 1")

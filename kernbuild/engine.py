"""The Docker engine adapter: connect once, fail with one clear message.

Everything that talks to Docker goes through :func:`connect`, so "no engine"
is reported the same way by every command.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from kernbuild.errors import KernError

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


def build(client: "docker.DockerClient", context: str, tag: str, hint: str, **options):
    """``docker build`` of a context directory; a failure is one KernError with the log's tail.

    ``options`` go to the SDK's ``images.build`` (dockerfile, buildargs, labels, ...).
    """
    from docker.errors import APIError, BuildError

    try:
        image, _ = client.images.build(path=context, tag=tag, rm=True, forcerm=True, **options)
    except BuildError as exc:
        log = "".join(chunk.get("stream", "") for chunk in exc.build_log)
        raise KernError(f"building the image {tag} failed: {exc.msg}\n"
                        + "\n".join(log.splitlines()[-25:]), hint) from None
    except APIError as exc:
        raise KernError(f"the Docker engine refused to build {tag}: {exc.explanation}",
                        "is there room left on its disk (docker system df)?") from None
    return image


#: Shell for containers: apt-get update, up to three times, 5 s apart. A mirror's
#: hiccup ("Some index files failed to download") fails one try, not the command.
APT_UPDATE_RETRIED = ("for try in 1 2 3; do apt-get update -q && exit 0; "
                      "[ $try = 3 ] || sleep 5; done; exit 1")

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

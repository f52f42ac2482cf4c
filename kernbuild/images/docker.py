"""Build an image plan into a Docker image.

The build is a plain ``docker build`` of the rendered Dockerfile. The suite's
repository reaches it over a private Docker network: a small web server
container answers there as ``kern-repo``, the name the rendered files use, so
the URL, and with it Docker's layer cache, is the same on every build.
Exact package versions come in as build arguments, one per layer: a new
version rebuilds its layer and the ones above it, nothing else. Debian's
packages come through the download cache (:mod:`kernbuild.build.downloads`), so
a rebuild fetches none of them again.

An image records what it was built from (:data:`INPUTS`: its rendered files, build
arguments, labels and base image id): when the tag already names an image of the
same inputs, nothing is built and no repository is served (:func:`built_already`),
which is what every ``kernbuild test`` finds for every image it checks.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import tempfile
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from kernbuild import engine
from kernbuild.build.downloads import bridge_gateway, open_proxy
from kernbuild.failpoints import boundary
from kernbuild.images.plan import DEFAULT_REPO_URL, ImagePlan
from kernbuild.images.writers import render_context

if TYPE_CHECKING:
    import docker

    from kernbuild.repo import AptRepository

REPO_ALIAS = DEFAULT_REPO_URL.removeprefix("http://")
#: The label holding the sha256 of what an image was built from (:func:`build_inputs`).
INPUTS = "org.kernsuite.build-inputs"


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    id: str
    size: int
    labels: dict[str, str]
    downloads: str = ""  # what the download cache did for this build, when it was used


@contextmanager
def serve_repository(client: "docker.DockerClient", repo: "AptRepository",
                     server_image: str) -> Iterator[str]:
    """A private network on which ``repo`` answers at http://kern-repo; yields its name."""
    from kernbuild.runtime.docker import GUARD, container_labels

    name = f"kernbuild-{secrets.token_hex(4)}"
    # Labelled as this process's own, like every container it starts: stopped with it,
    # or reaped with its network by the next command if it was SIGKILLed.
    labels = container_labels({"kernbuild": "repo"})
    network = client.networks.create(name, driver="bridge", labels=labels)
    server = None
    try:
        server = client.containers.create(
            server_image, ["python3", "-m", "http.server", "80", "--directory", "/srv/current"],
            name=name, detach=True, labels=labels,
            volumes={str(repo.root.resolve()): {"bind": "/srv", "mode": "ro"}},
            network=name,
            networking_config={name: client.api.create_endpoint_config(aliases=[REPO_ALIAS])})
        GUARD.started(server)
        server.start()
        boundary("container:repo")
        yield name
    finally:
        if server is not None:
            server.remove(force=True)
            GUARD.finished(server)
        network.remove()


def build_inputs(plan: ImagePlan, pins: list[str], keyring_sha256: str,
                 labels: dict[str, str], base_id: str) -> str:
    """sha256 of all that a ``docker build`` of ``plan`` reads but the archive: the
    rendered context, the pinned layers, the keyring's sha256, the labels and
    ``base_id``, the id the base's tag names now (a tag can move)."""
    digest = hashlib.sha256()
    for path, text in sorted(render_context([plan]).items()):
        digest.update(f"{path}\0{text}\0".encode())
    digest.update(json.dumps({"base": base_id, "pins": pins, "keyring": keyring_sha256,
                              "labels": labels}, sort_keys=True).encode())
    return digest.hexdigest()


def built_already(client: "docker.DockerClient", plan: ImagePlan,
                  inputs: str) -> BuiltImage | None:
    """The image ``plan.tag`` names, if it was built from exactly ``inputs``."""
    from docker.errors import ImageNotFound

    try:
        image = client.images.get(plan.tag)
    except ImageNotFound:
        return None
    found = image.labels or {}
    return BuiltImage(plan.tag, image.id, image.attrs["Size"], found) \
        if found.get(INPUTS) == inputs else None


def build_image(client: "docker.DockerClient", plan: ImagePlan, pins: list[str],
                keyring_sha256: str, labels: dict[str, str], network: str,
                work: Path, downloads: Path | None = None,
                nocache: bool = False, inputs: str | None = None) -> BuiltImage:
    """``docker build`` of ``plan``; ``pins`` are the layers' packages as name=version,
    ``keyring_sha256`` the sha256 of the repository's keyring file.

    With ``downloads`` (a download cache, :mod:`kernbuild.build.downloads`), Debian's
    packages come through a caching proxy on ``network``'s gateway, named by the
    predefined ``http_proxy`` build argument: Docker keeps it out of the layer cache and
    the image, and the rendered Dockerfiles never name it. The suite's repository is
    reached directly (``no_proxy``): only this network resolves its name. ``nocache``
    builds every layer anew (tests/bench/bench_package.py's cold image rebuild).
    ``inputs`` (:func:`build_inputs`, computed if not given) is kept as a label."""
    work.mkdir(parents=True, exist_ok=True)
    if inputs is None:
        inputs = build_inputs(plan, pins, keyring_sha256, labels,
                              engine.image_id(client, plan.base) or plan.base)
    labels = {**labels, INPUTS: inputs}
    buildargs = {"KERN_REPO": DEFAULT_REPO_URL, "KERN_KEYRING_SHA256": keyring_sha256}
    buildargs.update({f"KERN_LAYER_{i}": layer for i, layer in enumerate(pins, 1)})
    proxy = open_proxy(downloads, bridge_gateway(client, network)) if downloads else None
    with tempfile.TemporaryDirectory(dir=work) as context, \
            proxy if proxy is not None else nullcontext():
        if proxy is not None:
            buildargs.update(http_proxy=proxy.url, no_proxy=REPO_ALIAS)
        for path, text in render_context([plan]).items():
            target = Path(context, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            target.chmod(0o755 if path == "kern-apt-install" else 0o644)
        image = engine.build(client, context, plan.tag,
                             "a package that does not install is worth a 'kernbuild smoke' "
                             "of its recipe", dockerfile=f"{plan.name}/Dockerfile",
                             buildargs=buildargs, labels=labels, network_mode=network,
                             nocache=nocache,
                             retry=lambda log: bool(proxy and proxy.drop(log)))
        downloaded = str(proxy.counts()) if proxy is not None else ""
    return BuiltImage(plan.tag, image.id, image.attrs["Size"], image.labels or {}, downloaded)

"""Build environments: the base image and the build image every package builds in.

The base is made from scratch with mmdebstrap and ``docker import`` (no registry
is needed), or pulled from a registry when the suite names one such as
``ubuntu:24.04``. The build image adds the packaging toolchain on top, from a
Dockerfile rendered here; its tag carries a hash of that Dockerfile and of the
base, so a change to either makes a new build image and, through the build
keys, rebuilds the packages.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from kernbuild import engine
from kernbuild.build.downloads import bridge_gateway, open_proxy
from kernbuild.engine import image_id
from kernbuild.errors import KernError
from kernbuild.recipe.model import SuiteSettings
from kernbuild.runtime.tools import locate, require, run_tool

if TYPE_CHECKING:
    import docker

BUILD_TOOLCHAIN = (
    "build-essential", "debhelper", "dh-python", "python3-all", "python3-setuptools",
    "pybuild-plugin-pyproject", "lintian", "ca-certificates",
)

Say = Callable[[str], None]


@dataclass(frozen=True)
class BuildEnvironment:
    """The images a package build runs in, by tag and by id."""

    base: str
    base_id: str
    image: str
    image_id: str


def build_dockerfile(base: str) -> str:
    """The build image's Dockerfile (rendered on every run: its hash names the image)."""
    import jinja2

    templates = jinja2.Environment(
        loader=jinja2.PackageLoader("kernbuild.build", "templates"),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    return templates.get_template("build.Dockerfile.j2").render(
        base=base, packages=BUILD_TOOLCHAIN)


def ensure(client: "docker.DockerClient", settings: SuiteSettings, work: Path,
           say: Say = lambda _: None, downloads: Path | None = None) -> BuildEnvironment:
    """The suite's base and build images, made if missing (minutes), looked up if present;
    the build image's packages through the download cache ``downloads``, if given."""
    base, base_id = ensure_base(client, settings, work, say)
    dockerfile = build_dockerfile(base)
    digest = hashlib.sha256((dockerfile + base_id).encode()).hexdigest()[:12]
    tag = f"kern/build:{settings.distribution}-{digest}"
    build_id = image_id(client, tag)
    if build_id is None:
        say(f"making the build image {tag}")
        build_id = build_image(client, dockerfile, tag, work, downloads=downloads)
    return BuildEnvironment(base, base_id, tag, build_id)


def installed_packages(client: "docker.DockerClient", image: str) -> dict[str, str]:
    """Every Debian package installed in ``image``: name (``name:arch`` where dpkg
    says so) -> version, read by dpkg-query in a throwaway labelled container."""
    from kernbuild.runtime import ImageRef
    from kernbuild.runtime.docker import DockerRunner

    result = DockerRunner(lambda: client, labels={"kernbuild": "check"}).run(
        ImageRef(image), "dpkg-query -W -f '${binary:Package}\\t${Version}\\n'", timeout=300)
    if result.exit_code != 0:
        raise KernError(f"could not list the packages of {image}: {result.output[-500:]}",
                        "is the image there? 'docker image ls' lists them")
    return dict(line.split("\t", 1) for line in result.output.splitlines() if "\t" in line)


def ensure_base(client: "docker.DockerClient", settings: SuiteSettings, work: Path,
                say: Say = lambda _: None) -> tuple[str, str]:
    """The suite's base image (tag, id), made if missing (about a minute)."""
    base = settings.base_tag
    return base, image_id(client, base) or _make_base(client, settings, work, say)


def build_image(client: "docker.DockerClient", dockerfile: str, tag: str, work: Path,
                files: dict[str, bytes] | None = None, downloads: Path | None = None) -> str:
    """``docker build`` of a Dockerfile text (and context files); returns the image id.
    With ``downloads``, apt in its RUN steps fetches through that download cache (on the
    default bridge, by the ``http_proxy`` build argument, which no layer depends on)."""
    work.mkdir(parents=True, exist_ok=True)
    proxy = open_proxy(downloads, bridge_gateway(client)) if downloads else None
    with tempfile.TemporaryDirectory(dir=work) as context, \
            proxy if proxy is not None else nullcontext():
        Path(context, "Dockerfile").write_text(dockerfile)
        for name, content in (files or {}).items():
            Path(context, name).write_bytes(content)
        image = engine.build(client, context, tag, "read the lines above; a network failure "
                                                   "to Debian's archive is worth one retry",
                             buildargs={"http_proxy": proxy.url} if proxy else None,
                             retry=lambda log: bool(proxy and proxy.drop(log)))
    return image.id


def _make_base(client: "docker.DockerClient", settings: SuiteSettings, work: Path,
               say: Say) -> str:
    if settings.base_is_registry_image:
        return _pull(client, settings.base, say)
    if locate("mmdebstrap") is None:
        raise KernError("mmdebstrap is needed to make the base image from scratch",
                        "apt-get install mmdebstrap, or set base: to a registry image "
                        "such as ubuntu:24.04 in recipes/suite.yaml")
    tag = settings.base_tag
    say(f"making the base image {tag} with mmdebstrap (about a minute)")
    work.mkdir(parents=True, exist_ok=True)
    # Dated like the release, so two bases made from one archive state are the same.
    epoch = int(datetime.fromisoformat(settings.date).replace(tzinfo=timezone.utc).timestamp())
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        tarball = Path(scratch, "base.tar")
        run_tool([require("mmdebstrap"), "--variant=minbase", "--format=tar", "--quiet",
                  settings.base, str(tarball), settings.mirror],
                 what=f"mmdebstrap of a {settings.base} base", where=work,
                 env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)},
                 hint=f"is {settings.mirror} reachable, and is {settings.base!r} "
                      "a Debian codename?")
        repository, _, version = tag.partition(":")
        from docker.errors import APIError

        try:
            client.api.import_image_from_file(
                str(tarball), repository=repository, tag=version,
                changes=["ENV LANG=C.UTF-8", 'CMD ["/bin/bash"]'])
        except APIError as exc:
            raise KernError(f"docker import of the base {tag} failed: {exc.explanation}",
                            "is there room left on the engine's disk (docker system df)?") from None
    found = image_id(client, tag)
    if found is None:
        raise KernError(f"docker import of the base {tag} failed")
    return found


def _pull(client: "docker.DockerClient", reference: str, say: Say) -> str:
    from docker.errors import APIError

    say(f"pulling {reference}")
    try:
        return client.images.pull(reference).id
    except APIError as exc:
        raise KernError(f"cannot pull the base image {reference}: {exc.explanation}",
                        "no registry reachable? 'docker load' the image first, or set "
                        "base: to a Debian codename (such as trixie) in recipes/suite.yaml "
                        "to make one from scratch") from None

"""Build-dependency snapshots: build dependencies installed once, reused by the next build.

With the download cache warm (:mod:`kernbuild.build.downloads`), most of a build's
dependency step is no longer fetching but dpkg unpacking and configuring tens or
hundreds of packages, again for every build. So once a build container has installed its build
dependencies, and before it goes offline, it is committed as an image,
``kern/build-deps:<key>``; the next build whose dependencies resolve to the same files
starts its container from that image and installs nothing.

The key (:func:`snapshot_key`) is a sha256 over the build image's id and the exact
files apt would install, each as ``name size checksum``, read from ``apt-get
--print-uris build-dep`` after ``apt-get update``: apt takes sizes and sums from the
signed indexes it just verified (apt 3 prints the MD5Sum there; with the size and the
versioned file name, whose bytes an archive never changes, that names one file). A
new upload to Debian, a rebuild in kernbuild's own repository, a changed
Build-Depends or a new build image each make a new key; two recipes whose build
dependencies are the same files share one snapshot. The URIs are left out:
kernbuild's repository is mounted at a path that names its current generation.
Since a snapshot holds exactly what installing those files gives, it is not in the
build key, as the download cache is not: it changes no build's output, only its time
(dysco, 37 build dependencies: 21 s of dependency steps, commit included, then 2 s).

A snapshot is one image, committed whole by the engine or not at all. They are
bounded: committing one removes the older snapshots its recipe made, every snapshot
of another build image, and any left untagged by two builds that committed the same
key at once. An image a running container still uses is left for the next time.
``docker image prune -a --filter label=kernbuild=build-deps`` removes them all.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kernbuild.runtime.docker import HOST, OWNER, PID, STARTED

if TYPE_CHECKING:
    import docker

REPOSITORY = "kern/build-deps"
LABEL = "kernbuild"
KIND = "build-deps"
BUILD_IMAGE = "org.kernbuild.build-image"
RECIPE = "org.kernbuild.recipe"
#: The command whose output names the files a build-dep would install (``-qq``: only
#: those lines). Run after ``apt-get update``, in the build's own container.
RESOLVE = ("apt-get", "--print-uris", "-qq", "build-dep", "-y")
#: Run before the commit: apt's indexes and downloaded .debs, which no step after the
#: build-dep reads, would only make each snapshot some hundreds of MB larger.
TRIM = "apt-get clean && rm -rf /var/lib/apt/lists/*"
#: Bumped when what a snapshot holds changes for the same files: 2, since snapshots stopped
#: declaring their build's bind mounts as VOLUMEs.
FORMAT = 2
# 'URI' name size hash, the hash as apt prints it (MD5Sum:<hex> in apt 3).
_URI_LINE = re.compile(r"^'[^']*' (\S+) (\d+) (\S+)$")


@dataclass(frozen=True)
class Resolution:
    """The files a build-dep would install, read off :data:`RESOLVE`'s output."""

    files: tuple[tuple[str, int, str], ...]  # (name, size, hash), sorted

    @classmethod
    def parse(cls, output: str) -> "Resolution":
        """Every ``'URI' name size hash`` line of ``output``; other lines (apt's notes
        on stderr, which the exec mixes in) are not files and are left out."""
        files = {(m[1], int(m[2]), m[3]) for line in output.splitlines()
                 if (m := _URI_LINE.match(line.strip()))}
        return cls(tuple(sorted(files)))


def snapshot_key(build_image: str, resolved: Resolution) -> str:
    """The key of the snapshot that holds ``resolved`` installed in ``build_image``."""
    digest = hashlib.sha256(f"snapshot {FORMAT}\nbuild-image {build_image}\n".encode())
    for name, size, checksum in resolved.files:
        digest.update(f"{name} {size} {checksum}\n".encode())
    return digest.hexdigest()


def tag_of(key: str) -> str:
    return f"{REPOSITORY}:{key[:32]}"


def find(client: "docker.DockerClient", key: str) -> str | None:
    """The tag of the snapshot under ``key``, if the engine has it."""
    import docker

    try:
        client.images.get(tag_of(key))
    except docker.errors.ImageNotFound:
        return None
    return tag_of(key)


def commit(client: "docker.DockerClient", container, key: str, build_image: str,
           recipe: str) -> str:
    """Commit ``container`` (its build dependencies just installed) as the snapshot under
    ``key``, then remove the snapshots that it makes stale. Returns its tag."""
    # An image keeps the labels of the container it was committed from, and a container
    # started from it keeps those it is not given: blank the ones that make a container
    # some process's own, so that no later container inherits this one's owner.
    labels = {LABEL: KIND, BUILD_IMAGE: build_image, RECIPE: recipe,
              PID: "", HOST: "", STARTED: "", OWNER: ""}
    repository, tag = tag_of(key).split(":")
    image = container.commit(repository=repository, tag=tag, conf={"Labels": labels})
    prune(client, build_image, recipe, keep=image.id)
    return tag_of(key)


def prune(client: "docker.DockerClient", build_image: str, recipe: str, keep: str) -> list[str]:
    """Remove the snapshots that are of no more use: those of another build image, those
    left untagged, and ``recipe``'s others. Returns the removed image ids."""
    import docker

    removed = []
    for image in client.images.list(filters={"label": f"{LABEL}={KIND}"}):
        labels = image.labels or {}
        stale = (labels.get(BUILD_IMAGE) != build_image or not image.tags
                 or labels.get(RECIPE) == recipe)
        if image.id == keep or not stale:
            continue
        try:
            client.images.remove(image.id, force=False, noprune=False)
        except docker.errors.APIError:  # a running build still uses it, or it is gone
            continue
        removed.append(image.id)
    return removed

"""Writers: one per output format, each rendering an :class:`ImagePlan` with its own template.

Both formats are written from the same plan and the same install primitive
(``kern-apt-install``); neither is converted from the other. New formats
register themselves in :data:`WRITERS`.

``dockerfiles/`` in the repository holds :func:`render_context` of every plan
of the suite, so the Dockerfiles and Singularity definitions can be read,
reviewed and built with plain ``docker build``; :func:`drift` says where it is
out of date and :func:`write_tree` brings it up to date.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import ClassVar

import jinja2

from kernbuild.images.plan import ImagePlan

TEMPLATES = Path(__file__).parent / "templates"
# Files every image's build context holds, beside the per-image directories.
SHARED_FILES = ("kern-apt-install", "dpkg-nodoc")

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
    trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
_environment.filters["shell_quote"] = shlex.quote


def docker_quote(value: str) -> str:
    """A double-quoted Dockerfile word: backslash, quote and '$' (substitution) escaped."""
    return '"' + "".join("\\" + c if c in '\\"$' else c for c in value) + '"'


_environment.filters["docker_quote"] = docker_quote


class Writer:
    """Renders a plan into one file of one format."""

    format: ClassVar[str]
    template: ClassVar[str]
    filename: ClassVar[str]

    def render(self, plan: ImagePlan) -> str:
        return _environment.get_template(self.template).render(plan=plan)


class DockerWriter(Writer):
    format = "docker"
    template = "Dockerfile.j2"
    filename = "Dockerfile"


class SingularityWriter(Writer):
    format = "singularity"
    template = "Singularity.def.j2"
    filename = "Singularity.def"


WRITERS: dict[str, Writer] = {w.format: w for w in (DockerWriter(), SingularityWriter())}


def render_context(plans: list[ImagePlan]) -> dict[str, str]:
    """The build context of ``plans`` as {relative path: text}: shared files and one
    directory per image with a file per writer."""
    files = {name: (TEMPLATES / name).read_text() for name in SHARED_FILES}
    for plan in plans:
        for writer in WRITERS.values():
            files[f"{plan.name}/{writer.filename}"] = writer.render(plan)
    return files


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

"""Write a new recipe from upstream metadata: ``kernbuild new``.

Most of a recipe is already written down upstream. For a Python project, PyPI's
JSON and the sdist's PKG-INFO, pyproject.toml and egg-info give the version,
summary, homepage, license, requirements and module names; for anything Debian
packages, the Sources entry and the debian/ directory of the source package give
the same. :func:`new_recipe` reads them and writes a recipe in the suite's style
that ``kernbuild lint`` accepts, with a ``# TODO:`` comment wherever it had to
guess and a ``# missing:`` comment for each dependency that neither Debian nor
the suite provides: a person reviews the recipe instead of writing it.

Python requirements become Debian packages the way dh-python names them: the
suite's own recipe first, then dh-python's table of PyPI names
(``/usr/share/dh-python/dist/cpython3_fallback``, read from the dh-python
package of the suite's distribution), then dh-python's rule, ``python3-<name>``.
A name counts only if the distribution's Packages index has it. Those indexes
are cached under ``<state>/index`` for a day, written atomically. The sdist and
the .dsc are only hashed: ``kernbuild package`` fetches them again and checks
them against the sha256 written into the recipe.
"""

from __future__ import annotations

import email
import email.message
import email.utils
import functools
import hashlib
import http.client
import io
import json
import lzma
import os
import re
import tarfile
import tempfile
import textwrap
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml
from debian.deb822 import Deb822
from debian.debian_support import Version as DebianVersion
from packaging.markers import UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion
from packaging.version import Version as PythonVersion

from kernbuild.debian import DEP5_LICENSES, SYSTEM_BUILD_DEPENDS
from kernbuild.errors import KernError, RecipeError
from kernbuild.recipe.load import load_recipe, load_settings, load_suite, recipe_files
from kernbuild.recipe.model import Suite
from kernbuild.recipe.schema import PACKAGE_NAME, UPSTREAM_VERSION, relation_names
from kernbuild.sources import DEFAULT_PYPI, DEFAULT_TIMEOUT, USER_AGENT
from kernbuild.workspace import Workspace

# PEP 508 markers are evaluated for the python3 of Debian trixie on amd64: a
# requirement such as `tomli; python_version < "3.11"` is not one there.
TRIXIE_PYTHON = {
    "python_version": "3.13", "python_full_version": "3.13.5",
    "implementation_name": "cpython", "implementation_version": "3.13.5",
    "platform_python_implementation": "CPython", "os_name": "posix",
    "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
    "extra": "",  # so that every `extra == "..."` requirement is left out
}
# A placeholder SPDX allows (a LicenseRef-), so that the recipe lints; a TODO says why.
UNKNOWN_LICENSE = "LicenseRef-unknown"

_AREAS = ("main", "contrib", "non-free")
_ARCHITECTURE = "amd64"
_INDEX_MAX_AGE = 24 * 3600  # seconds: the archive changes daily, a recipe is written once
_WIDTH = 100
_CHUNK = 1 << 18
_MAX_TEXT = 1 << 20  # bytes read of any one metadata file of an sdist

# PyPI backports of what Python 3.13's standard library has (dh-python's table
# knows only argparse): nothing to depend on.
_STANDARD_LIBRARY = frozenset({"argparse", "asyncio", "dataclasses", "enum34", "futures",
                               "importlib", "ordereddict", "pathlib", "typing", "uuid"})
# Build requirements kernbuild's pybuild covers: it adds python3-setuptools, and
# trixie's setuptools builds wheels itself.
_PYBUILD_COVERS = frozenset({"setuptools", "wheel"})
# Build-Depends kernbuild adds for every recipe (see kernbuild.debian): not repeated.
_ALWAYS_BUILD_DEPENDS = frozenset({"debhelper", "debhelper-compat", "dh-python",
                                   "dh-sequence-python3"})
# Build backends that compile: such an sdist builds architecture-dependent packages.
_COMPILING_BACKENDS = ("mesonpy", "scikit_build_core", "maturin", "setuptools_rust")
_COMPILED_SOURCE = re.compile(r"\.(c|cc|cpp|cxx|pyx|f|f90|rs)$", re.IGNORECASE)
_NOT_INSTALLED = frozenset({"test", "tests", "doc", "docs", "example", "examples",
                            "benchmark", "benchmarks", "bench"})
_NOT_MODULES = _NOT_INSTALLED | {"setup", "conftest", "noxfile", "fabfile", "versioneer",
                                 "build", "dist", "src", "scripts", "bin"}
_LICENSE_FILE = re.compile(r"(licen[cs]e|copying|copyright|notice)[^/]*", re.IGNORECASE)
_SDIST_METADATA = re.compile(r"PKG-INFO|pyproject\.toml|setup\.py"
                             r"|(src/)?[^/]+\.egg-info/(top_level|requires)\.txt")


# --- the result --------------------------------------------------------------------


@dataclass(frozen=True)
class NewRecipe:
    """A recipe written from upstream metadata, not yet on disk.

    Attributes:
        path: where :meth:`write` puts it, ``<recipes>/<name>.yaml``.
        text: the recipe; it passes kernbuild's loader.
        missing: upstream requirements (or Debian relations) that neither the
            distribution nor the suite provides; each is a ``# missing:`` comment.
        todo: what kernbuild could not decide and a person should check; each is
            also a ``# TODO:`` comment in ``text``.
        overwrite: :meth:`write` may replace an existing file (``force``).
    """

    path: Path
    text: str
    missing: tuple[str, ...] = ()
    todo: tuple[str, ...] = ()
    overwrite: bool = False

    def write(self) -> Path:
        """Write ``text`` to ``path`` atomically; an existing file only with ``overwrite``.

        The file appears whole or not at all, and a file that appeared since
        :func:`new_recipe` looked is still not replaced (a hard link, unlike a
        rename, fails when its name exists).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                        dir=self.path.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(self.text)
            os.chmod(tmp, 0o644)
            if self.overwrite:
                os.replace(tmp, self.path)
            else:
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    raise _exists(self.path) from None
        finally:
            tmp.unlink(missing_ok=True)
        return self.path


def new_recipe(ws: Workspace, name: str, *, pypi: bool = False, debian: str | None = None,
               version: str | None = None, distribution: str | None = None,
               mirror: str | None = None, pypi_url: str = DEFAULT_PYPI, force: bool = False,
               timeout: float = DEFAULT_TIMEOUT) -> NewRecipe:
    """A recipe for ``name``, from PyPI (``pypi=True``) or a Debian source package.

    Args:
        ws: the suite's recipe directory (for its settings and recipes, and where
            the recipe goes) and the state directory (for the index cache).
        name: with ``pypi``, the PyPI project (the recipe is named after it);
            with ``debian``, the recipe's name.
        debian: the Debian source package to take.
        version: the PyPI release (default: the newest final release with an
            sdist) or the Debian source version (default: the newest in
            ``distribution``).
        distribution: where a Debian source comes from, such as ``sid`` for a
            backport (default: the suite's distribution). Dependencies are always
            looked up in the suite's distribution, which the packages are built for.
        mirror: the Debian mirror (default: the suite's).
        pypi_url: PyPI's base URL (tests point it at a local server).
        force: replace an existing recipe file of the same name.

    Raises:
        KernError: the project, release, sdist or source package does not exist,
            the recipe file exists (without ``force``), the network failed, or the
            suite's recipes do not load.
    """
    if pypi == (debian is not None):
        raise KernError("a new recipe comes from PyPI or from Debian, one of them",
                        "kernbuild new NAME --pypi [VERSION], or "
                        "kernbuild new NAME --debian SOURCE [VERSION]")
    if not ws.recipes.is_dir():
        raise KernError(f"no recipe directory at {ws.recipes}",
                        "run kernbuild in a suite checkout, or pass --recipes DIR")
    recipe_name = _source_name(name) if pypi else name
    if not PACKAGE_NAME.match(recipe_name):
        raise KernError(f"{recipe_name!r} is not a Debian source package name",
                        "lower-case letters, digits, '+', '-' and '.', at least two")
    path = ws.recipes / f"{recipe_name}.yaml"
    if path.exists() and not force:
        raise _exists(path)
    suite = _suite_without(ws.recipes, path)
    if recipe_name in suite.by_name:
        raise KernError(f"the suite already has a recipe {recipe_name} "
                        f"({suite.by_name[recipe_name].path})",
                        "edit that one, or name the new recipe differently")
    web = _Web(timeout)
    mirror = (mirror or suite.settings.mirror).rstrip("/")
    home = _Archive(web, mirror, suite.settings.distribution, ws.state / "index")
    resolver = _Resolver(suite, home)
    if pypi:
        draft = _from_pypi(web, pypi_url.rstrip("/"), name, recipe_name, version, resolver)
    else:
        origin = distribution or suite.settings.distribution
        archive = home if origin == home.distribution else _Archive(
            web, mirror, origin, ws.state / "index")
        draft = _from_debian(archive, recipe_name, debian or "", version, resolver)
    for package in draft.packages:
        maker = suite.maker.get(package.name)
        if maker is not None:
            raise KernError(f"the suite's recipe {maker.name} ({maker.path}) already makes "
                            f"{package.name}", "edit that recipe instead")
    text = _render(draft)
    _check(text, recipe_name)
    todo = tuple(c.removeprefix("TODO: ") for cs in draft.comments.values() for c in cs
                 if c.startswith("TODO: "))
    return NewRecipe(path, text, draft.missing, todo, force)


def _suite_without(recipes: Path, path: Path) -> Suite:
    """The suite, less the recipe file ``path`` that --force replaces (and which may be
    why the suite does not load)."""
    others = [p for p in recipe_files([recipes]) if p.resolve() != path.resolve()]
    return load_suite(recipes, others) if others else Suite(load_settings(recipes), [])


def _exists(path: Path) -> KernError:
    return KernError(f"{path} exists; kernbuild new does not replace a recipe",
                     "remove it first, or pass --force to replace it")


def _check(text: str, name: str) -> None:
    """Load the text as kernbuild will: what does not load is a bug here, not the user's."""
    with tempfile.TemporaryDirectory(prefix="kernbuild-new-") as tmp:
        path = Path(tmp) / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_recipe(path)
        except RecipeError as exc:
            raise RuntimeError(f"kernbuild new wrote a recipe that does not load:\n{exc}\n"
                               f"---\n{text}") from None


# --- from PyPI -----------------------------------------------------------------------


def _from_pypi(web: "_Web", pypi: str, project: str, name: str, version: str | None,
               resolver: "_Resolver") -> "_Draft":
    url = f"{pypi}/pypi/{urllib.parse.quote(project)}/json"
    try:
        data = json.loads(web.read(url))
    except _NotFound:
        raise KernError(f"PyPI has no project {project!r} ({url})",
                        "check the spelling: the name is the one in "
                        "https://pypi.org/project/<name>/") from None
    except ValueError as exc:
        raise KernError(f"cannot read PyPI's answer for {project} from {url}: {exc}",
                        "try again later; is PyPI reachable?") from None
    comments: dict[str, list[str]] = defaultdict(list)
    version, release = _pick_sdist(project, data, version, url)
    if not UPSTREAM_VERSION.match(version):
        raise KernError(f"{project} {version} has a version Debian cannot carry as it is",
                        "package another release, or write the recipe by hand with a url: "
                        "source")
    if release.get("yanked"):
        comments["version"].append(f"TODO: PyPI marks {version} as yanked"
                                   + (f": {release['yanked_reason']}"
                                      if release.get("yanked_reason") else ""))
    sha, sdist = _fetch_sdist(web, urllib.parse.urljoin(url, release["url"]), release)
    meta = email.message_from_string(sdist.texts.get("PKG-INFO", ""))
    pyproject, backend = _build_system(sdist, comments)
    requires_python = meta.get("Requires-Python")
    if requires_python and not _allows_python(requires_python):
        comments["version"].append(f"TODO: {version} requires Python {requires_python}; "
                                   f"trixie has {TRIXIE_PYTHON['python_version']}")
    compiled = _compiled(sdist, backend)
    if compiled:
        comments["build.system"].append(f"compiled code ({compiled}): architecture any, "
                                        "python3-all-dev")
    package = _python3_name(project)
    notes = comments[f"packages.{package}.depends"]
    depends, missing = resolver.python_all(_requirements(meta, sdist, pyproject, notes),
                                           own=project, notes=notes)
    build_notes = comments["build.depends"]
    build_requires = (pyproject.get("build-system") or {}).get("requires") or ()
    build_depends, build_missing = resolver.python_all(
        [r for r in _parse_requirements(build_requires, build_notes)
         if canonicalize_name(r.name) not in _PYBUILD_COVERS], own=project, notes=build_notes)
    if compiled:
        build_depends.append("python3-all-dev")
    license_, why = _pypi_license(meta, sdist)
    if why:
        comments["license"].append(f"TODO: {why}")
    summary = " ".join((meta.get("Summary") or "").split()).rstrip(".")
    description = _first_paragraph(_long_description(meta))
    if not description:
        comments["description"].append("TODO: describe what it is for; upstream's "
                                       "metadata says no more than the summary")
        description = f"{summary or project}."
    modules = _import_names(sdist, project)
    return _Draft(
        name=name, version=version, summary=summary or f"{project} Python package",
        description=description, homepage=_homepage(meta, project), license=license_,
        copyright=_pypi_copyright(meta, sdist),
        source=(("pypi", str((data.get("info") or {}).get("name") or project)),
                ("sha256", sha)),
        build_system="pybuild",
        build_depends=tuple(_explicit_build_depends(build_depends, "pybuild")),
        packages=(_Package(package, "any" if compiled else "all", "python",
                           depends=tuple(depends)),),
        smoke=(f'python3 -c "import {", ".join(modules)}"',),
        comments=comments, missing=tuple(missing + build_missing))


def _pick_sdist(project: str, data: Any, version: str | None, url: str
                ) -> tuple[str, dict[str, Any]]:
    """(version, its sdist's entry in PyPI's JSON): the one asked for, or the newest
    final release that has an sdist (kernbuild builds from source, never wheels)."""
    releases = data.get("releases") if isinstance(data, dict) else None
    if not isinstance(releases, dict):
        raise KernError(f"PyPI's answer for {project} lists no releases ({url})",
                        "try again later; is PyPI reachable?")

    def sdists(v: str) -> list[dict[str, Any]]:
        return [f for f in releases.get(v) or () if isinstance(f, dict)
                and f.get("packagetype") == "sdist" and isinstance(f.get("url"), str)]

    parsed = {v: _python_version(v) for v in releases}
    with_sdist = sorted(((p, v) for v, p in parsed.items()
                         if p and any(not f.get("yanked") for f in sdists(v))), reverse=True)
    newest = ", ".join(v for _, v in with_sdist[:5]) or "none"
    if version is None:
        final = [v for parsed, v in with_sdist if not parsed.is_prerelease]
        if not final:
            raise KernError(f"{project} has no final release with an sdist on PyPI ({url})",
                            f"name a version; releases with an sdist: {newest}")
        version = final[0]
    elif version not in releases:
        raise KernError(f"PyPI has no release {version} of {project} ({url})",
                        f"its newest releases with an sdist: {newest}")
    files = sdists(version)
    if not files:
        raise KernError(f"{project} {version} has no sdist on PyPI (only built wheels)",
                        f"kernbuild builds from source: pick a release with an sdist "
                        f"({newest}), or write a recipe with a url: source")
    # Not yanked first, then .tar.gz: what sources.py will pick by the sha256.
    files.sort(key=lambda f: (bool(f.get("yanked")),
                              not str(f.get("filename", "")).endswith(".tar.gz")))
    return version, files[0]


def _python_version(text: str) -> PythonVersion | None:
    try:
        return PythonVersion(text)
    except InvalidVersion:
        return None


def _fetch_sdist(web: "_Web", url: str, release: dict[str, Any]) -> tuple[str, "_Sdist"]:
    """Download the sdist into a temporary file: its sha256 and the files that describe it."""
    label = str(release.get("filename") or url)
    with tempfile.TemporaryFile() as archive:
        sha = web.download(url, archive)
        published = (release.get("digests") or {}).get("sha256")
        if published and published != sha:
            raise KernError(f"sha256 mismatch for {url}\n  PyPI publishes: {published}\n"
                            f"  downloaded:     {sha}",
                            "try again; if it persists, something between here and PyPI "
                            "changes the file")
        archive.seek(0)
        return sha, _Sdist.read(archive, label)


@dataclass(frozen=True)
class _Sdist:
    """What an sdist holds, read without unpacking it.

    Attributes:
        names: every file's path below the archive's top directory.
        texts: the files that describe the project (PKG-INFO, pyproject.toml,
            setup.py, egg-info, license files), by the same paths.
    """

    names: tuple[str, ...]
    texts: dict[str, str]

    @classmethod
    def read(cls, archive: IO[bytes], label: str) -> "_Sdist":
        try:
            if zipfile.is_zipfile(archive):
                archive.seek(0)
                with zipfile.ZipFile(archive) as zf:
                    return cls._of({i.filename: (i.file_size, functools.partial(zf.read, i))
                                    for i in zf.infolist() if not i.is_dir()})
            archive.seek(0)
            with tarfile.open(fileobj=archive, mode="r:*") as tar:
                return cls._of({m.name: (m.size, functools.partial(_tar_read, tar, m))
                                for m in tar.getmembers() if m.isfile()})
        except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, lzma.LZMAError,
                zlib.error) as exc:
            raise KernError(f"cannot read the sdist {label}: {exc}",
                            "it is not an archive kernbuild can read (tar or zip)") from None

    @classmethod
    def _of(cls, files: dict[str, tuple[int, Any]]) -> "_Sdist":
        paths = {name.removeprefix("./"): name for name in files}
        tops = {p.split("/", 1)[0] for p in paths}
        if len(tops) == 1 and all("/" in p for p in paths):  # the usual name-version/
            paths = {p.split("/", 1)[1]: full for p, full in paths.items()}
        texts = {}
        for path, full in paths.items():
            size, read = files[full]
            if size <= _MAX_TEXT and (_SDIST_METADATA.fullmatch(path)
                                      or _LICENSE_FILE.fullmatch(path)):
                texts[path] = read().decode("utf-8", "replace")
        return cls(tuple(sorted(paths)), texts)

    def egg_info(self, name: str) -> str:
        """``<project>.egg-info/<name>`` (top level or under src/), or ""."""
        found = sorted((p for p in self.texts if p.endswith(f".egg-info/{name}")), key=len)
        return self.texts[found[0]] if found else ""

    @property
    def license_texts(self) -> list[tuple[str, str]]:
        """(path, text) of the license files at the top."""
        return [(p, t) for p, t in sorted(self.texts.items()) if _LICENSE_FILE.fullmatch(p)]


def _tar_read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    return handle.read() if handle else b""


def _build_system(sdist: _Sdist, comments: dict[str, list[str]]) -> tuple[dict, str]:
    """pyproject.toml as data and the PEP 517 backend; says in a comment how it builds."""
    text = sdist.texts.get("pyproject.toml")
    pyproject: dict = {}
    if text is not None:
        try:
            pyproject = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            comments["build.system"].append(f"TODO: pyproject.toml does not parse ({exc})")
    backend = str((pyproject.get("build-system") or {}).get("build-backend") or "")
    has_setup = "setup.py" in sdist.texts
    if text is None:
        how = "setup.py, no pyproject.toml: a setuptools build"
    elif not has_setup:
        how = (f"pyproject.toml, no setup.py: a PEP 517 build with "
               f"{backend or 'setuptools'} (pybuild-plugin-pyproject)")
    else:
        how = f"setup.py and pyproject.toml ({backend or 'setuptools'})"
    comments["build.system"].append(how)
    return pyproject, backend


def _compiled(sdist: _Sdist, backend: str) -> str:
    """What says the sdist compiles code (an extension module), or ""."""
    sources = [n for n in sdist.names if _COMPILED_SOURCE.search(n)
               and not _NOT_INSTALLED & set(n.lower().split("/")[:-1])]
    if sources:
        return ", ".join(sources[:3]) + (", ..." if len(sources) > 3 else "")
    if backend.startswith(_COMPILING_BACKENDS):
        return f"built with {backend}"
    # Not setup.py's ext_modules: many build an extension only if its sources are there.
    return ""


def _allows_python(specifier: str) -> bool:
    try:
        return SpecifierSet(specifier).contains(TRIXIE_PYTHON["python_full_version"],
                                                prereleases=True)
    except InvalidSpecifier:
        return True


def _requirements(meta: email.message.Message, sdist: _Sdist, pyproject: dict,
                  notes: list[str]) -> list[Requirement]:
    """The run-time requirements that hold on trixie's Python, from the first place
    that lists any: PKG-INFO, egg-info's requires.txt (older setuptools wrote them only
    there), pyproject.toml's static [project] dependencies."""
    listed = (meta.get_all("Requires-Dist") or _requires_txt(sdist.egg_info("requires.txt"))
              or (pyproject.get("project") or {}).get("dependencies") or [])
    return [r for r in _parse_requirements(listed, notes)
            if r.marker is None or _marker_holds(r)]


def _marker_holds(requirement: Requirement) -> bool:
    try:
        return bool(requirement.marker and requirement.marker.evaluate(TRIXIE_PYTHON))
    except (UndefinedComparison, UndefinedEnvironmentName):  # unsure: keep it, reviewed
        return True


def _parse_requirements(lines: Any, notes: list[str]) -> list[Requirement]:
    """PEP 508 requirements; one that does not parse becomes a TODO in ``notes``."""
    found = []
    for line in lines:
        try:
            found.append(Requirement(str(line)))
        except InvalidRequirement as exc:
            notes.append(f"TODO: cannot read the requirement {line!r}: {exc}")
    return found


def _requires_txt(text: str) -> list[str]:
    """egg-info's requires.txt as requirement strings: sections ``[extra]`` and
    ``[extra:marker]`` are extras (left out), ``[:marker]`` a marker for its lines."""
    found, marker, extra = [], "", ""
    for line in (line.strip() for line in text.splitlines()):
        if line.startswith("[") and line.endswith("]"):
            extra, _, marker = line[1:-1].partition(":")
        elif line and not line.startswith("#") and not extra:
            found.append(f"{line}; {marker}" if marker else line)
    return found


def _import_names(sdist: _Sdist, project: str) -> list[str]:
    """The modules the package installs, for the smoke step: egg-info's top_level.txt,
    else the packages (directories with __init__.py) and modules at the top or in src/."""
    names = sdist.egg_info("top_level.txt").split()
    if not names:
        for path in sdist.names:
            parts = path.split("/")[1:] if path.startswith("src/") else path.split("/")
            if len(parts) == 2 and parts[1] == "__init__.py":
                names.append(parts[0])
            elif len(parts) == 1 and parts[0].endswith(".py"):
                names.append(parts[0][:-3])
    names = sorted({n for n in names if n.isidentifier() and not n.startswith("_")
                    and n.lower() not in _NOT_MODULES})
    guess = re.sub(r"[^A-Za-z0-9]+", "_", project).lower()
    # The project's own name first: the one a reader expects.
    return sorted(names, key=lambda n: n.lower() != guess) or [guess]


def _homepage(meta: email.message.Message, project: str) -> str:
    """The project's page: its Homepage or Source URL, its Home-page, else PyPI's page."""
    urls: dict[str, str] = {}
    for entry in meta.get_all("Project-URL") or []:
        label, _, url = str(entry).partition(",")
        # PEP 753: labels compare without case, punctuation and spaces.
        urls.setdefault(re.sub(r"[^a-z0-9]", "", label.lower()), url.strip())
    labels = ("homepage", "home", "source", "sourcecode", "repository", "code", "github")
    for url in [urls.get(label, "") for label in labels] + [str(meta.get("Home-page") or "")]:
        if re.match(r"^https?://\S+$", url):
            return url.removesuffix(".git")
    return f"https://pypi.org/project/{project}/"


def _long_description(meta: email.message.Message) -> str:
    body = meta.get_payload()
    if isinstance(body, str) and body.strip():
        return body
    # Metadata 1.x folds the description into a header, continuation lines indented.
    return re.sub(r"\n {8}\|?", "\n", str(meta.get("Description") or ""))


def _first_paragraph(text: str) -> str:
    """The README's first paragraph of prose, without markup, at most about 500 characters:
    headings, badges, links, lists, code and directives are skipped."""
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in paragraph.strip().splitlines()]
        if not lines or any(re.match(r"([#=*|<>:`+~^-]|\.\.|!?\[|\d+\.\s)", line)
                            or re.fullmatch(r"(.)\1+", line) for line in lines):
            continue
        prose = " ".join(lines)
        prose = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", prose)  # markdown links
        prose = re.sub(r"`([^`<]*?)\s*<[^>]*>`_+", r"\1", prose)  # rst links
        prose = re.sub(r"(\*\*|__|``|\*|`)(.+?)\1", r"\2", prose)  # emphasis, literals
        if prose.endswith(":"):  # "Typical usage is:" introduces an example
            prose = prose.rpartition(". ")[0] + "." if ". " in prose else ""
        if len(prose.split()) < 5:
            continue
        if len(prose) > 500:
            prose = prose[:500].rsplit(". ", 1)[0].rstrip(".") + "."
        return prose
    return ""


def _pypi_copyright(meta: email.message.Message, sdist: _Sdist) -> str | None:
    """The license file's copyright line (years and holders), else the authors."""
    for _, text in sdist.license_texts:
        for match in re.finditer(r"^\W*copyright\s*(?:\(c\)|©)?\s*(.+?)\s*$", text,
                                 re.IGNORECASE | re.MULTILINE):
            holder = match.group(1).strip(" .,")
            # Templates (<year> <name>, [yyyy]) and the FSF's notice on the GPL's text.
            if re.search(r"\d{4}", holder) and not re.search(r"[<\[{]|Free Software", holder):
                return holder
    # Author is names; Author-email is "Name <address>, ..." (with or without the names).
    authors = [str(meta.get("Author") or "").strip()] + [
        name for name, _ in email.utils.getaddresses([str(meta.get("Author-email") or "")])]
    authors = [a for a in dict.fromkeys(authors) if a and a.upper() != "UNKNOWN"]
    return ", ".join(authors) or None


# --- licenses -------------------------------------------------------------------------

# License names as PyPI metadata writes them (free text and classifiers, lower-case,
# runs of punctuation as one space) -> (SPDX id, why it needs checking or "").
_ONLY_OR_LATER = ("which does not say 'only' or 'or later': check the source files' "
                  "headers for 'or (at your option) any later version'")
_LICENSE_NAMES: dict[str, tuple[str, str]] = {
    **dict.fromkeys(("mit", "mit license", "the mit license", "expat"), ("MIT", "")),
    **dict.fromkeys(("apache 2 0", "apache 2", "apache2", "apache license 2 0",
                     "apache license version 2 0", "apache software license 2 0"),
                    ("Apache-2.0", "")),
    **dict.fromkeys(("apache", "apache license", "apache software license"),
                    ("Apache-2.0", "which names no version of the Apache license")),
    **dict.fromkeys(("bsd 3 clause", "3 clause bsd", "bsd 3 clause license", "new bsd",
                     "new bsd license", "modified bsd", "modified bsd license", "bsd 3"),
                    ("BSD-3-Clause", "")),
    **dict.fromkeys(("bsd 2 clause", "2 clause bsd", "bsd 2 clause license", "simplified bsd",
                     "freebsd", "bsd 2"), ("BSD-2-Clause", "")),
    **dict.fromkeys(("bsd", "bsd license"),
                    ("BSD-3-Clause", "which does not say which BSD license: check the "
                                     "license file")),
    **dict.fromkeys(("gplv3+", "gpl 3+", "gpl 3 0+", "gpl v3+", "gpl 3 0 or later",
                     "gnu general public license v3 or later gplv3+"),
                    ("GPL-3.0-or-later", "")),
    **dict.fromkeys(("gplv3", "gpl 3", "gpl v3", "gpl3", "gpl 3 0", "gpl 3 0 only",
                     "gnu general public license v3 gplv3"),
                    ("GPL-3.0-only", _ONLY_OR_LATER)),
    **dict.fromkeys(("gplv2+", "gpl 2+", "gpl 2 0+", "gpl v2+", "gpl 2 0 or later",
                     "gnu general public license v2 or later gplv2+"),
                    ("GPL-2.0-or-later", "")),
    **dict.fromkeys(("gplv2", "gpl 2", "gpl v2", "gpl2", "gpl 2 0",
                     "gnu general public license v2 gplv2"), ("GPL-2.0-only", _ONLY_OR_LATER)),
    **dict.fromkeys(("lgplv3+", "lgpl 3+", "lgpl 3 0+", "lgpl 3 0 or later",
                     "gnu lesser general public license v3 or later lgplv3+"),
                    ("LGPL-3.0-or-later", "")),
    **dict.fromkeys(("lgplv3", "lgpl 3", "lgpl 3 0", "gnu lesser general public license v3 "
                     "lgplv3"), ("LGPL-3.0-only", _ONLY_OR_LATER)),
    **dict.fromkeys(("lgpl 2 1+", "lgpl 2 1 or later"), ("LGPL-2.1-or-later", "")),
    **dict.fromkeys(("lgplv2+", "gnu lesser general public license v2 or later lgplv2+"),
                    ("LGPL-2.0-or-later", "")),
    **dict.fromkeys(("lgpl 2 1", "lgplv2 1", "gnu lesser general public license v2 lgplv2"),
                    ("LGPL-2.1-only", _ONLY_OR_LATER)),
    "gnu affero general public license v3 or later agplv3+": ("AGPL-3.0-or-later", ""),
    "gnu affero general public license v3": ("AGPL-3.0-only", _ONLY_OR_LATER),
    **dict.fromkeys(("mpl 2 0", "mpl2", "mozilla public license 2 0 mpl 2 0"), ("MPL-2.0", "")),
    **dict.fromkeys(("isc", "isc license", "isc license iscl"), ("ISC", "")),
    **dict.fromkeys(("unlicense", "the unlicense unlicense"), ("Unlicense", "")),
    **dict.fromkeys(("psf", "python software foundation license"), ("PSF-2.0", "")),
    "boost software license 1 0 bsl 1 0": ("BSL-1.0", ""),
    "zlib libpng license": ("Zlib", ""),
    "cc0 1 0 universal cc0 1 0 public domain dedication": ("CC0-1.0", ""),
}
# SPDX ids as they are, any case: the common ones, and those DEP-5 names map to.
_SPDX = {spdx.lower(): spdx for spdx, _ in _LICENSE_NAMES.values()}
# debian/copyright's DEP-5 names -> SPDX (the reverse of what kernbuild renders).
_FROM_DEP5 = {dep5.lower(): spdx for spdx, dep5 in DEP5_LICENSES.items()}


def _license_named(name: str) -> tuple[str, str] | None:
    """(SPDX id, why it needs checking) for a license's name or classifier, or None."""
    name = re.sub(r"^license\s*::\s*(osi approved\s*::\s*)?", "", name.strip(), flags=re.I)
    if name.lower() in _SPDX:
        return _SPDX[name.lower()], ""
    return _LICENSE_NAMES.get(re.sub(r"[^a-z0-9+]+", " ", name.lower()).strip())


def _license_in_text(text: str) -> tuple[str, str] | None:
    """(SPDX id, why it needs checking) for a license's full text, or None."""
    head = " ".join(text.split()[:200]).lower()
    for title, spdx in (("gnu affero general public license", "AGPL"),
                        ("gnu lesser general public license", "LGPL"),
                        ("gnu general public license", "GPL")):
        if title in head:
            number = re.search(r"version (\d(?:\.\d)?)", head)
            if number is None:
                return None
            version = {"2": "2.0", "3": "3.0"}.get(number.group(1), number.group(1))
            return f"{spdx}-{version}-only", _ONLY_OR_LATER
    if "apache license" in head and "version 2.0" in head:
        return "Apache-2.0", ""
    if "mozilla public license" in head and "2.0" in head:
        return "MPL-2.0", ""
    if "permission is hereby granted, free of charge" in head:
        return "MIT", ""
    if "redistribution and use in source and binary forms" in head:
        three = "neither the name" in head or "endorse or promote" in head
        return ("BSD-3-Clause" if three else "BSD-2-Clause"), ""
    if "permission to use, copy, modify, and/or distribute this software" in head:
        return "ISC", ""
    return None


def _pypi_license(meta: email.message.Message, sdist: _Sdist) -> tuple[str, str]:
    """(SPDX expression, why it needs checking or ""): License-Expression as it is; else
    the first certain answer of the License field, the classifiers and the license
    files (a 'BSD License' classifier is settled by the file); else the first guess."""
    expression = " ".join(str(meta.get("License-Expression") or "").split())
    if expression:
        return expression, ""
    field_ = str(meta.get("License") or "").strip()
    answers: list[tuple[str, tuple[str, str] | None]] = []  # (where, what it says)
    if field_ and field_.upper() != "UNKNOWN":
        short = len(field_) < 80 and "\n" not in field_
        answers.append((f"License: {field_}" if short else "the License field's text",
                        _license_named(field_) if short else _license_in_text(field_)))
    answers += [(str(c), _license_named(str(c))) for c in meta.get_all("Classifier") or []
                if str(c).startswith("License ::")]
    answers += [(path, _license_in_text(text)) for path, text in sdist.license_texts]
    found = sorted(((where, a) for where, a in answers if a), key=lambda f: bool(f[1][1]))
    if found:  # certain answers first, each kind in the order above
        where, (spdx, why) = found[0]
        return spdx, f"{spdx} from {where!r}, {why}" if why else ""
    return UNKNOWN_LICENSE, ("no license kernbuild recognises in the metadata or the sdist"
                             + (f" (License: {field_[:60]!r})" if field_ else "")
                             + ": set the SPDX id")


# --- from Debian -----------------------------------------------------------------------


def _from_debian(archive: "_Archive", name: str, source: str, version: str | None,
                 resolver: "_Resolver") -> "_Draft":
    entries = archive.sources(source)
    if not entries:
        raise KernError(f"{archive.distribution} has no source package {source!r} "
                        f"({archive.mirror})",
                        f"check the name at https://tracker.debian.org/pkg/{source}; for a "
                        "backport, name the distribution that has it (sid)")
    if version is None:
        entry = max(entries, key=lambda e: DebianVersion(e["Version"]))
    else:
        entry = next((e for e in entries if e["Version"] == version), None)
        if entry is None:
            raise KernError(f"{archive.distribution} has {source} "
                            f"{', '.join(e['Version'] for e in entries)}, not {version}",
                            "mirrors keep only current versions; older ones are on "
                            "https://snapshot.debian.org")
    version = entry["Version"]
    directory = entry.get("Directory", "")
    # The index gives every file's sha256, the .dsc's too: what the recipe pins.
    files = {line.split()[2]: line.split()[0] for line in
             entry.get("Checksums-Sha256", "").splitlines() if len(line.split()) == 3}
    dsc_sha = next((sha for file, sha in files.items() if file.endswith(".dsc")), "")
    if not dsc_sha or not directory:
        raise KernError(f"the Sources entry of {source} {version} names no .dsc",
                        "the mirror's index is damaged; try again or use another mirror")
    comments: dict[str, list[str]] = defaultdict(list)
    debian_dir = _debian_dir(archive, directory, files, comments)
    control = {p.get("Package", ""): p for p in Deb822.iter_paragraphs(
        debian_dir.get("control", ""))}
    epoch, _, rest = version.rpartition(":")
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    system = _guess_build_system(entry)
    if system == "make":
        comments["build.system"].append("TODO: Build-Depends name no build system: check it "
                                        "(autotools if the source has a configure script)")
    listed = _package_list(entry)
    own = {package for package, _, _ in listed}
    build_depends, missing = resolver.debian_all(
        _explicit_build_depends(_build_depends(entry), system), own, comments["build.depends"])
    packages = _debian_packages(listed, control, debian_dir, resolver, missing, comments)
    main = next((control[p] for p, _, _ in listed if p in control and (
        p == source or p.startswith("python3-"))), control.get(listed[0][0], {}))
    summary, description = _synopsis(main), _extended_description(main)
    if debian_dir and not summary:
        comments["summary"].append(f"TODO: say what it is; debian/control has no "
                                   f"description of {listed[0][0]}")
    license_, copyright_, why = (_debian_license(debian_dir.get("copyright", ""))
                                 if debian_dir else (UNKNOWN_LICENSE, None, "set the SPDX id"))
    if why:
        comments["license"].append(f"TODO: {why}")
    smoke = tuple(f'python3 -c "import {p.removeprefix("python3-").replace("-", "_")}"'
                  for p, _, _ in listed if p.startswith("python3-"))
    comments["smoke"].append("TODO: the import name is guessed from the package name; "
                             "check a step shows it works" if smoke else
                             "TODO: add a step that shows the packages work")
    source_keys: tuple[tuple[str, str], ...] = (("debian", source), ("version", version),
                                                ("sha256", dsc_sha))
    if archive.distribution != resolver.where:
        source_keys += (("suite", archive.distribution),)
    return _Draft(
        name=name, version=upstream, summary=summary or f"{source} from Debian",
        description=description or f"{summary or source}.",
        homepage=entry.get("Homepage") or None, license=license_, copyright=copyright_,
        source=source_keys, build_system=system, build_depends=tuple(build_depends),
        packages=tuple(packages), smoke=smoke, comments=comments, missing=tuple(missing),
        epoch=int(epoch) if epoch else None, revision=_revision(revision))


def _debian_packages(listed: list[tuple[str, str, str]], control: dict[str, Any],
                     debian_dir: dict[str, str], resolver: "_Resolver", missing: list[str],
                     comments: dict[str, list[str]]) -> list["_Package"]:
    """The recipe's packages: the Package-List's, with debian/control's relations and
    summaries and, when there are several, the files of their debian/*.install."""
    own = {package for package, _, _ in listed}
    packages = []
    for package, architecture, section in listed:
        paragraph = control.get(package, {})
        relations = {}
        for key in ("depends", "recommends", "suggests"):
            kept, gone = resolver.debian_all(_relations(paragraph.get(key.capitalize(), "")),
                                             own, comments[f"packages.{package}.{key}"])
            relations[key] = tuple(kept)
            missing += gone
        files = None
        if len(listed) > 1:
            files = _install_files(debian_dir.get(f"{package}.install", ""))
            if not files:
                comments[f"packages.{package}.files"].append(
                    f"TODO: list the files {package} takes" + (
                        f" (Debian's packaging has no debian/{package}.install kernbuild "
                        "can read)" if debian_dir else ""))
        summary = _synopsis(paragraph) if len(listed) > 1 else None
        packages.append(_Package(package, architecture, section, summary=summary,
                                 files=files, **relations))
    return packages


def _revision(debian_revision: str) -> int | None:
    """The recipe's revision for Debian's, so that ours sorts above it: Debian's
    3.7.1-2 gives revision 2, version 3.7.1-2kern1 (None: the default, 1)."""
    number = re.match(r"\d+", debian_revision)
    return int(number.group(0)) if number and int(number.group(0)) > 1 else None


def _debian_dir(archive: "_Archive", directory: str, files: dict[str, str],
                comments: dict[str, list[str]]) -> dict[str, str]:
    """control, copyright and the *.install files of the source package's debian/, by
    name, from its .debian.tar (verified against the index); empty, with a TODO, if it
    has none (a native or 1.0 package) or the mirror does not serve it."""
    tarball = next((f for f in files if re.search(r"\.debian\.tar\.[a-z0-9]+$", f)), None)
    try:
        data = archive.pool_file(directory, tarball, files[tarball]) if tarball else None
    except _NotFound:
        data = None
    if data is None:
        comments["summary"].append(
            f"TODO: Debian's packaging ({tarball or 'a .debian.tar'}) was not read: "
            + ("the mirror does not serve it" if tarball else "the source package has none")
            + "; check the summary, description, license and the packages' relations")
        return {}
    found = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("./").removeprefix("debian/")
            if member.isfile() and member.size <= _MAX_TEXT and (
                    name in ("control", "copyright") or re.fullmatch(r"[^/]+\.install", name)):
                found[name] = _tar_read(tar, member).decode("utf-8", "replace")
    return found


def _build_depends(entry: Deb822) -> list[str]:
    """Every build relation of a Sources entry: kernbuild builds arch and indep at once."""
    return [r for key in ("Build-Depends", "Build-Depends-Arch", "Build-Depends-Indep")
            for r in _relations(entry.get(key, ""), build=True)]


def _guess_build_system(entry: Deb822) -> str:
    """pybuild for a PEP 517 build, cmake, pybuild for any other Python build (a C++
    library with Python bindings, such as casacore, uses dh-python beside cmake),
    autotools, else make."""
    names = {n for r in _build_depends(entry) for n in relation_names(r)}
    for system, needs in (("pybuild", {"pybuild-plugin-pyproject"}), ("cmake", {"cmake"}),
                          ("pybuild", {"dh-python", "dh-sequence-python3"}),
                          ("autotools", {"autotools-dev", "dh-autoreconf", "autoconf"})):
        if names & needs:
            return system
    return "make"


def _relations(text: str, build: bool = False) -> list[str]:
    """A relation field's comma-separated relations. Of Build-Depends, those only the
    tests or documentation need (``<!nocheck>``, ``<!nodoc>``) are left out: kernbuild
    runs neither, its smoke steps test the installed packages. Entries that are only a
    substitution variable (``${misc:Depends}``) are left out: kernbuild adds its own."""
    found = []
    for relation in (" ".join(r.split()) for r in text.split(",")):
        if not relation or re.fullmatch(r"\$\{[^}]+\}", relation):
            continue
        if build and re.search(r"<[^>]*!no(check|doc)[^>]*>", relation):
            continue
        found.append(relation)
    return found


def _explicit_build_depends(relations: list[str], system: str) -> list[str]:
    """The relations kernbuild does not add by itself for ``system``."""
    implicit = _ALWAYS_BUILD_DEPENDS | set(SYSTEM_BUILD_DEPENDS[system])
    return [r for r in relations if not set(relation_names(r)) <= implicit]


def _package_list(entry: Deb822) -> list[tuple[str, str, str]]:
    """(package, architecture, section) of the Sources entry's Package-List (no udebs)."""
    found = []
    for line in entry.get("Package-List", "").splitlines():
        fields = line.split()
        if len(fields) < 4 or fields[1] != "deb":
            continue
        options = dict(f.partition("=")[::2] for f in fields[4:])
        architecture = options.get("arch", "any").replace(",", " ")
        found.append((fields[0], architecture, fields[2].rpartition("/")[2]))
    if not found:
        raise KernError(f"the Sources entry of {entry.get('Package')} lists no binary packages",
                        "the mirror's index is damaged; try again or use another mirror")
    return found


def _install_files(text: str) -> tuple[str, ...]:
    """A debian/<package>.install as kernbuild's ``files``; dh-exec's multiarch variable
    becomes a wildcard, lines needing other dh-exec features are left out."""
    found = []
    for line in text.splitlines():
        line = line.strip().replace("${DEB_HOST_MULTIARCH}", "*")
        if line and not line.startswith("#") and "${" not in line and "=>" not in line:
            found.append(line.removeprefix("debian/tmp/").lstrip("/"))
    return tuple(found)


def _synopsis(paragraph: Any) -> str:
    return " ".join(str(paragraph.get("Description", "")).split("\n", 1)[0].split())


def _extended_description(paragraph: Any) -> str:
    """A Debian extended description as plain text: ' .' lines are paragraph breaks."""
    lines = str(paragraph.get("Description", "")).split("\n")[1:]
    text = "\n".join("" if line.strip() == "." else line.strip() for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _debian_license(text: str) -> tuple[str, str | None, str]:
    """(SPDX id, copyright, why to check) from a DEP-5 debian/copyright's ``Files: *``."""
    paragraph = next((p for p in Deb822.iter_paragraphs(text)
                      if p.get("Files", "").split() == ["*"]), None)
    if paragraph is None:
        return UNKNOWN_LICENSE, None, ("debian/copyright is missing or not machine-readable "
                                       "(DEP-5): set the SPDX id")
    name = paragraph.get("License", "").split("\n", 1)[0].strip()
    holder = " ".join(paragraph.get("Copyright", "").split("\n", 1)[0].split()) or None
    holder = re.sub(r"^(copyright\s*)?(\(c\)|©)?\s*", "", holder or "", flags=re.I) or None
    spdx = _FROM_DEP5.get(name.lower()) or (_license_named(name) or ("", ""))[0]
    if spdx:
        return spdx, holder, ""
    return (name or UNKNOWN_LICENSE), holder, (f"Debian's license {name!r} is no SPDX id "
                                               "kernbuild knows: check it" if name else
                                               "debian/copyright names no license for *")


# --- dependencies ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dependency:
    upstream: str  # the requirement as upstream wrote it, without its marker
    relation: str | None  # the Debian relation; None when nothing provides it
    note: str = ""  # what to check, or why it is missing


class _Resolver:
    """Debian relations for upstream requirements: the suite's recipes first, then
    the suite's distribution."""

    def __init__(self, suite: Suite, archive: "_Archive") -> None:
        self.suite = suite
        self.archive = archive

    @property
    def where(self) -> str:
        return self.archive.distribution

    def python_all(self, requirements: list[Requirement], own: str, notes: list[str]
                   ) -> tuple[list[str], list[str]]:
        """(relations, missing requirements) for Python requirements, each Debian package
        once; the project's own name (from its extras) is left out. What is missing, or
        needs checking, is added to ``notes`` (comments)."""
        relations, missing = [], []
        for requirement in requirements:
            if canonicalize_name(requirement.name) == canonicalize_name(own):
                continue
            dependency = self.python(requirement)
            if dependency is None:
                continue
            if dependency.relation is None:
                missing.append(dependency.upstream)
                notes.append(f"missing: {dependency.upstream} ({dependency.note})")
                continue
            if dependency.note:
                notes.append(f"TODO: {dependency.upstream}: {dependency.note}")
            if not set(relation_names(dependency.relation)) & {
                    n for r in relations for n in relation_names(r)}:
                relations.append(dependency.relation)
        return relations, missing

    def python(self, requirement: Requirement) -> _Dependency | None:
        """The Debian relation for one Python requirement; None when Python 3.13 itself
        provides it. A lower bound (>=, ~=, ==, >) is kept, with the Debian package's
        epoch, or ``python3-numpy (>= 1.24)`` would hold for numpy 1:1.21."""
        name = canonicalize_name(requirement.name)
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        upstream = f"{requirement.name}{extras}{requirement.specifier}"
        if name in _STANDARD_LIBRARY:
            return None
        found = self._suite_package(requirement.name)
        if found is None:
            table = self.archive.python_names.get(name, "")
            if table == "python3" or table.startswith("python3 "):  # dh-python: the stdlib
                return None
            candidates = [table.split()[0]] if table else []
            candidates.append(_python3_name(requirement.name))
            package = next((c for c in candidates if c in self.archive.packages), None)
            if package is None:
                return _Dependency(upstream, None, "no Debian package, no suite recipe")
            found = package, self.archive.packages[package]
        package, have = found
        note = (f"it asks for the extras {extras}: check what they need"
                if requirement.extras else "")
        bound = _lower_bound(requirement.specifier)
        if bound is None or have is None:  # a virtual package has no version to compare
            return _Dependency(upstream, package, note)
        operator, version = bound
        epoch = have.split(":", 1)[0] + ":" if ":" in have else ""
        wanted = DebianVersion(epoch + version)
        if not (DebianVersion(have) > wanted if operator == ">>"
                else DebianVersion(have) >= wanted):
            note = f"{self.where} has {package} {have} only"
        return _Dependency(upstream, f"{package} ({operator} {epoch}{version})", note)

    def _suite_package(self, name: str) -> tuple[str, str] | None:
        """(binary package, Debian version) of the suite's recipe for PyPI project ``name``:
        the one making python3-<name>, or the one built from that PyPI project."""
        guess = _python3_name(name)
        recipe = self.suite.maker.get(guess)
        if recipe is None:
            recipe = next((r for r in self.suite.recipes if r.source.kind == "pypi"
                           and canonicalize_name(r.source.ref) == canonicalize_name(name)),
                          None)
            if recipe is None:
                return None
            guess = next((b for b in recipe.binary_names if b.startswith("python3-")),
                         recipe.binary_names[0])
        return guess, recipe.debian_version(self.suite.settings)

    def debian_all(self, relations: list[str], own: set[str], notes: list[str]
                   ) -> tuple[list[str], list[str]]:
        """(relations kept, relations missing): missing, with a comment in ``notes``, when
        no alternative is a package of the distribution, the suite or the recipe (``own``)."""
        kept, missing = [], []
        for relation in relations:
            names = relation_names(relation)
            if any(n in own or n in self.suite.maker or n in self.archive.packages
                   for n in names):
                kept.append(relation)
            else:
                missing.append(relation)
                notes.append(f"missing: {relation} (not in {self.where}, no suite recipe)")
        return kept, missing


def _python3_name(name: str) -> str:
    """dh-python's name for the package of a PyPI project (its ``sensible_pname``)."""
    name = re.sub(r"[^A-Za-z0-9.]+", "_", name).lower().replace("_", "-")
    return "python3-" + name.removeprefix("python-")


def _source_name(project: str) -> str:
    """The Debian source package name of a PyPI project: lower-case, '-' for '_'."""
    return re.sub(r"[^a-z0-9.+]+", "-", project.lower()).strip("-")


def _lower_bound(specifier: SpecifierSet) -> tuple[str, str] | None:
    """The tightest lower bound of a version specifier as (Debian operator, version).

    Upper bounds and exclusions are left out: Debian has one version of each
    package, and a bound it cannot meet only makes the package uninstallable.
    """
    best: tuple[str, PythonVersion] | None = None
    for spec in specifier:
        operator = {">=": ">=", "~=": ">=", "==": ">=", ">": ">>"}.get(spec.operator)
        version = _python_version(spec.version) if "*" not in spec.version else None
        if operator is None or version is None or version.epoch or version.local:
            continue
        if best is None or version > best[1] or (version == best[1] and operator == ">>"):
            best = (operator, version)
    if best is None:
        return None
    version = best[1]
    text = version.base_version
    if version.pre:  # Debian sorts ~ before anything: 1.0~rc1 < 1.0
        text += f"~{version.pre[0]}{version.pre[1]}"
    if version.post is not None:
        text += f".post{version.post}"
    if version.dev is not None:
        text += f"~dev{version.dev}"
    return best[0], text


# --- the mirror ---------------------------------------------------------------------------


class _NotFound(KernError):
    """HTTP 404 (or a missing file:// path): callers say what is missing."""


class _Web:
    """HTTP GETs with kernbuild's User-Agent: the only place here that touches the network."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def _open(self, url: str) -> http.client.HTTPResponse:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        hint = "check the network connection (proxies are read from http_proxy/https_proxy)"
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 404:
                raise _NotFound(f"not found (HTTP 404): {url}") from None
            raise KernError(f"cannot download {url}: HTTP {exc.code} {exc.reason}",
                            hint) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, FileNotFoundError):
                raise _NotFound(f"not found: {url}") from None
            raise KernError(f"cannot download {url}: {exc.reason}", hint) from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise KernError(f"cannot download {url}: {exc}", hint) from None

    def read(self, url: str) -> bytes:
        out = io.BytesIO()
        self.download(url, out)
        return out.getvalue()

    def download(self, url: str, out: IO[bytes]) -> str:
        """Stream ``url`` into ``out``; its sha256, as hex."""
        digest = hashlib.sha256()
        with self._open(url) as response:
            try:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            except (OSError, http.client.HTTPException) as exc:
                raise KernError(f"download of {url} failed: {exc}",
                                "try again; check the network connection") from None
        return digest.hexdigest()


class _Archive:
    """One distribution of a Debian mirror: its indexes, cached under
    ``<cache>/<mirror>/<distribution>/`` and fetched again when a day old."""

    def __init__(self, web: _Web, mirror: str, distribution: str, cache: Path) -> None:
        self.web = web
        self.mirror = mirror
        self.distribution = distribution
        slug = re.sub(r"[^A-Za-z0-9.-]+", "_", mirror.split("://", 1)[-1]).strip("_")
        self.cache = cache / slug / distribution

    def _index(self, relative: str, required: bool) -> bytes | None:
        """The decompressed ``dists/<distribution>/<relative>`` (an .xz index); None
        when an optional one (contrib, non-free) is not on the mirror."""
        path = self.cache / relative
        if path.is_file() and time.time() - path.stat().st_mtime < _INDEX_MAX_AGE:
            return lzma.decompress(path.read_bytes())
        url = f"{self.mirror}/dists/{self.distribution}/{relative}"
        try:
            data = self.web.read(url)
        except _NotFound:
            if required:
                raise KernError(f"{self.mirror} has no distribution {self.distribution!r} "
                                f"({url} not found)",
                                "name a Debian codename or suite: trixie, sid, unstable, "
                                "...") from None
            return None
        try:
            text = lzma.decompress(data)  # a damaged download is not kept for a day
        except lzma.LZMAError as exc:
            raise KernError(f"{url} is damaged: {exc}", "try again, or use another mirror") \
                from None
        _write_atomic(path, data)
        return text

    def _areas(self, index: str) -> list[bytes]:
        found = [self._index(f"{area}/{index}", required=area == "main") for area in _AREAS]
        return [text for text in found if text is not None]

    @functools.cached_property
    def _binaries(self) -> tuple[dict[str, str | None], dict[str, str]]:
        """({package: version, or None for a name only provided}, dh-python's stanza)."""
        packages: dict[str, str | None] = {}
        dh_python: dict[str, str] = {}
        for text in self._areas(f"binary-{_ARCHITECTURE}/Packages.xz"):
            current = ""
            for match in re.finditer(rb"^(Package|Version|Provides|Filename|SHA256): (.*)$",
                                     text, re.MULTILINE):
                key, value = match.group(1).decode(), match.group(2).decode("utf-8", "replace")
                if key == "Package":
                    current = value
                    packages.setdefault(current, None)
                elif key == "Version":
                    packages[current] = value
                elif key == "Provides":
                    for provided in value.split(","):
                        if provided.split():
                            packages.setdefault(provided.split()[0], None)
                if current == "dh-python":
                    dh_python[key] = value
        return packages, dh_python

    @property
    def packages(self) -> dict[str, str | None]:
        """Every binary package name of the distribution (amd64 and all), provided ones too."""
        return self._binaries[0]

    @functools.cached_property
    def python_names(self) -> dict[str, str]:
        """dh-python's table of PyPI names (canonical) to Debian dependencies, from the
        distribution's own dh-python: the names dh_python3 itself would write."""
        stanza = self._binaries[1]
        if "Filename" not in stanza or "SHA256" not in stanza:
            raise KernError(f"{self.distribution} on {self.mirror} has no dh-python package",
                            "kernbuild reads dh-python's table of PyPI names from it; "
                            "check the suite's distribution and mirror")
        path = self.cache / f"cpython3_fallback-{stanza['SHA256'][:16]}"
        if not path.is_file():
            deb = self.web.read(f"{self.mirror}/{stanza['Filename']}")
            if hashlib.sha256(deb).hexdigest() != stanza["SHA256"]:
                raise KernError(f"{self.mirror}/{stanza['Filename']} does not match the "
                                "sha256 in the Packages index", "try again, or use another "
                                                                "mirror")
            _write_atomic(path, _deb_file(deb, "usr/share/dh-python/dist/cpython3_fallback"))
        table: dict[str, str] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            name, _, dependency = line.strip().partition(" ")
            if name and not name.startswith("#"):
                table.setdefault(canonicalize_name(name), dependency.strip())
        return table

    def sources(self, name: str) -> list[Deb822]:
        """Every entry of source package ``name`` in the distribution's Sources indexes."""
        pattern = rb"^Package: " + re.escape(name.encode()) + rb"\n.*?(?=\n\n|\Z)"
        for text in self._areas("source/Sources.xz"):
            found = [Deb822(m.group(0).decode("utf-8", "replace"))
                     for m in re.finditer(pattern, text, re.MULTILINE | re.DOTALL)]
            if found:
                return found
        return []

    def pool_file(self, directory: str, name: str, sha256: str) -> bytes:
        """A file of the pool, checked against the sha256 its index gives.

        Raises:
            _NotFound: the mirror does not serve it (a mirror being updated, or one
                that keeps only some files).
        """
        url = f"{self.mirror}/{directory}/{name}"
        data = self.web.read(url)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise KernError(f"sha256 mismatch for {url}\n  the index says: {sha256}\n"
                            f"  downloaded:     {hashlib.sha256(data).hexdigest()}",
                            "try again, or use another mirror")
        return data


def _deb_file(deb: bytes, path: str) -> bytes:
    """One file of a .deb's data tarball. A .deb is an ar archive: "!<arch>\\n", then
    members, each a 60-byte header (name, ..., size at 48:58) and data padded to even."""
    offset = 8 if deb.startswith(b"!<arch>\n") else len(deb)
    while offset + 60 <= len(deb):
        name = deb[offset:offset + 16].decode("ascii", "replace").strip().rstrip("/")
        size = int(deb[offset + 48:offset + 58].decode("ascii", "replace").strip() or 0)
        body = deb[offset + 60:offset + 60 + size]
        if name.startswith("data.tar"):
            try:
                with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
                    for member in tar.getmembers():
                        if member.isfile() and member.name.removeprefix("./") == path:
                            return _tar_read(tar, member)
            except (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError) as exc:
                raise KernError(f"cannot read dh-python's package: {exc}",
                                "try again, or use another mirror") from None
            break
        offset += 60 + size + size % 2
    raise KernError(f"dh-python's package has no /{path}",
                    "kernbuild reads dh-python's table of PyPI names from it")


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- writing the recipe ---------------------------------------------------------------


@dataclass(frozen=True)
class _Package:
    name: str
    architecture: str
    section: str
    summary: str | None = None  # for one of several packages
    depends: tuple[str, ...] = ()
    recommends: tuple[str, ...] = ()
    suggests: tuple[str, ...] = ()
    files: tuple[str, ...] | None = None  # when there are several packages


@dataclass(frozen=True)
class _Draft:
    """Everything a recipe says, and the comments that go above its keys.

    ``comments`` is keyed by the dotted YAML path of the key a comment belongs to
    ("license", "build.depends", "packages.python3-x.depends"); a comment on a list
    that ends up empty stays, above where the list would be.
    """

    name: str
    version: str
    summary: str
    description: str
    homepage: str | None
    license: str
    copyright: str | None
    source: tuple[tuple[str, str], ...]
    build_system: str
    build_depends: tuple[str, ...]
    packages: tuple[_Package, ...]
    smoke: tuple[str, ...]
    comments: dict[str, list[str]] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    epoch: int | None = None
    revision: int | None = None


def _render(draft: _Draft) -> str:
    """The recipe's YAML, in the style of the suite's hand-written recipes."""
    lines: list[str] = []

    def put(path: str, text: str | None, indent: int = 0) -> None:
        pad = " " * indent
        for comment in draft.comments.get(path, ()):
            lines.extend(pad + "# " + part for part in
                         _wrap(comment, _WIDTH - indent - 2))
        if text is not None:
            lines.append(pad + text)

    put("name", f"name: {draft.name}")
    put("version", f"version: {json.dumps(draft.version)}")
    if draft.epoch:
        put("epoch", f"epoch: {draft.epoch}")
    if draft.revision:
        put("revision", f"revision: {draft.revision}")
    put("summary", f"summary: {_scalar(draft.summary)}")
    put("description", "description: |")
    for paragraph in draft.description.split("\n"):
        lines.extend("  " + part for part in _wrap(paragraph, 78) or [""])
    if draft.homepage:
        put("homepage", f"homepage: {_scalar(draft.homepage)}")
    put("license", f"license: {_scalar(draft.license)}")
    if draft.copyright:
        put("copyright", f"copyright: {_scalar(draft.copyright)}")
    put("source", "source:")
    for key, value in draft.source:
        value = json.dumps(value) if key == "version" else _scalar(value)  # quoted, as above
        put(f"source.{key}", f"{key}: {value}", 2)
    put("build", "build:")
    put("build.system", f"system: {draft.build_system}", 2)
    put("build.depends", None, 2)
    if draft.build_depends:
        lines.extend(_flow("depends", draft.build_depends, 2))
    put("packages", "packages:")
    for package in draft.packages:
        at = f"packages.{package.name}"
        put(at, f"{package.name}:", 2)
        put(f"{at}.architecture", f"architecture: {package.architecture}", 4)
        put(f"{at}.section", f"section: {package.section}", 4)
        if package.summary:
            put(f"{at}.summary", f"summary: {_scalar(package.summary)}", 4)
        for key in ("depends", "recommends", "suggests"):
            put(f"{at}.{key}", None, 4)
            if getattr(package, key):
                lines.extend(_flow(key, getattr(package, key), 4))
        if package.files is not None:
            put(f"{at}.files", None, 4)
            lines.extend(_flow("files", package.files, 4))
    put("smoke", "smoke:" if draft.smoke else None)
    lines.extend(f"  - run: {_scalar(step)}" for step in draft.smoke)
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _wrap(text: str, width: int) -> list[str]:
    """Lines of at most ``width`` where words allow: a URL or a path is never split."""
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)


def _flow(key: str, items: tuple[str, ...], indent: int) -> list[str]:
    """``key: [a, b, ...]``, wrapped under its first item as the suite's recipes are."""
    head = " " * indent + f"{key}: ["
    lines, line = [], head
    for index, item in enumerate(items):
        piece = _scalar(item, flow=True) + ("]" if index == len(items) - 1 else ",")
        if line != head and len(line) + 1 + len(piece) > _WIDTH:
            lines.append(line)
            line = " " * len(head) + piece
        else:
            line += ("" if line == head else " ") + piece
    lines.append(line if items else head + "]")
    return lines


def _scalar(value: str, flow: bool = False) -> str:
    """``value`` as a YAML scalar: plain where YAML reads it back as the same string
    (``${binary:Version}`` does not survive a flow list, "1.10" is a number, " #"
    starts a comment), double-quoted otherwise."""
    try:
        plain = yaml.safe_load(f"[{value}]" if flow else value) == ([value] if flow else value)
    except yaml.YAMLError:
        plain = False
    return value if plain and value == value.strip() else json.dumps(value, ensure_ascii=False)

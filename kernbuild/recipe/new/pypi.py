"""A recipe drafted from PyPI: ``kernbuild new NAME --pypi [VERSION]``.

PyPI's JSON picks the release and its sdist; the sdist's PKG-INFO (and, where
it says nothing, egg-info and pyproject.toml) gives the summary, description,
homepage, licence, copyright and requirements. Requirements are read as they
hold for Debian trixie's python3, then resolved to Debian packages (see
:mod:`.resolve`); what needs a person's judgement becomes a TODO comment.
"""

from __future__ import annotations

import email
import email.message
import email.utils
import json
import re
import urllib.parse
from collections import defaultdict
from typing import Any

from packaging.markers import UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from kernbuild.errors import KernError
from kernbuild.recipe.new.draft import Draft, Package
from kernbuild.recipe.new.licenses import UNKNOWN_LICENSE, license_in_text, license_named
from kernbuild.recipe.new.resolve import Resolver, explicit_build_depends, python3_name
from kernbuild.recipe.new.resolve import python_version
from kernbuild.recipe.new.sdist import Sdist, compiled_code, fetch_sdist, import_names
from kernbuild.recipe.new.sdist import read_pyproject
from kernbuild.recipe.new.web import NotFound, Web
from kernbuild.recipe.schema import UPSTREAM_VERSION

# PEP 508 markers are evaluated for the python3 of Debian trixie on amd64: a
# requirement such as `tomli; python_version < "3.11"` is not one there.
TRIXIE_PYTHON = {
    "python_version": "3.13", "python_full_version": "3.13.5",
    "implementation_name": "cpython", "implementation_version": "3.13.5",
    "platform_python_implementation": "CPython", "os_name": "posix",
    "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
    "extra": "",  # so that every `extra == "..."` requirement is left out
}
# Build requirements kernbuild's pybuild covers: it adds python3-setuptools, and
# trixie's setuptools builds wheels itself.
_PYBUILD_COVERS = frozenset({"setuptools", "wheel"})


def from_pypi(web: Web, pypi: str, project: str, name: str, version: str | None,
              resolver: Resolver) -> Draft:
    url = f"{pypi}/pypi/{urllib.parse.quote(project)}/json"
    try:
        data = json.loads(web.read(url))
    except NotFound:
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
    sha, sdist = fetch_sdist(web, urllib.parse.urljoin(url, release["url"]), release)
    meta = email.message_from_string(sdist.texts.get("PKG-INFO", ""))
    pyproject, backend = read_pyproject(sdist, comments)
    requires_python = meta.get("Requires-Python")
    if requires_python and not _allows_python(requires_python):
        comments["version"].append(f"TODO: {version} requires Python {requires_python}; "
                                   f"trixie has {TRIXIE_PYTHON['python_version']}")
    compiled = compiled_code(sdist, backend)
    if compiled:
        comments["build.system"].append(f"compiled code ({compiled}): architecture any, "
                                        "python3-all-dev")
    package = python3_name(project)
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
    modules = import_names(sdist, project)
    return Draft(
        name=name, version=version, summary=summary or f"{project} Python package",
        description=description, homepage=_homepage(meta, project), license=license_,
        copyright=_pypi_copyright(meta, sdist),
        source=(("pypi", str((data.get("info") or {}).get("name") or project)),
                ("sha256", sha)),
        build_system="pybuild",
        build_depends=tuple(explicit_build_depends(build_depends, "pybuild")),
        packages=(Package(package, "any" if compiled else "all", "python",
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

    parsed = {v: python_version(v) for v in releases}
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


def _allows_python(specifier: str) -> bool:
    try:
        return SpecifierSet(specifier).contains(TRIXIE_PYTHON["python_full_version"],
                                                prereleases=True)
    except InvalidSpecifier:
        return True


def _requirements(meta: email.message.Message, sdist: Sdist, pyproject: dict,
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


def _pypi_copyright(meta: email.message.Message, sdist: Sdist) -> str | None:
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


def _pypi_license(meta: email.message.Message, sdist: Sdist) -> tuple[str, str]:
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
                        license_named(field_) if short else license_in_text(field_)))
    answers += [(str(c), license_named(str(c))) for c in meta.get_all("Classifier") or []
                if str(c).startswith("License ::")]
    answers += [(path, license_in_text(text)) for path, text in sdist.license_texts]
    found = sorted(((where, a) for where, a in answers if a), key=lambda f: bool(f[1][1]))
    if found:  # certain answers first, each kind in the order above
        where, (spdx, why) = found[0]
        return spdx, f"{spdx} from {where!r}, {why}" if why else ""
    return UNKNOWN_LICENSE, ("no license kernbuild recognises in the metadata or the sdist"
                             + (f" (License: {field_[:60]!r})" if field_ else "")
                             + ": set the SPDX id")

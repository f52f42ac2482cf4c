"""Render a recipe's debian/ tree: control and changelog with python-debian, the rest with jinja2.

Rendering is pure: :func:`render` returns the files as text, given the recipe,
the suite settings and (optionally) the unpacked source tree, which it only
looks at (for example to see whether upstream ships a ``configure`` script).
:func:`write` puts them on disk. Nothing here reads the clock: the changelog
date comes from the recipe or the suite release, so SOURCE_DATE_EPOCH, which
dpkg-buildpackage takes from the changelog, is the same on every build.
"""

from __future__ import annotations

import email.utils
import hashlib
import importlib.metadata
import shlex
from datetime import datetime, timezone
from pathlib import Path

import jinja2

from kernbuild.recipe.model import Recipe, SuiteSettings

STANDARDS_VERSION = "4.7.0"
DEBHELPER_COMPAT = "13"

# Build-Depends every recipe of a build system needs, so recipes list only their own.
SYSTEM_BUILD_DEPENDS = {
    "pybuild": ("dh-sequence-python3", "python3-all", "python3-setuptools",
                "pybuild-plugin-pyproject"),
    "cmake": ("cmake",),
    "meson": ("meson", "ninja-build"),
    "autotools": (),
    "make": (),
    "none": (),
}

# DEP-5 names for the SPDX identifiers recipes use; others pass through unchanged.
DEP5_LICENSES = {
    "GPL-2.0-only": "GPL-2", "GPL-2.0-or-later": "GPL-2+",
    "GPL-3.0-only": "GPL-3", "GPL-3.0-or-later": "GPL-3+",
    "LGPL-2.1-only": "LGPL-2.1", "LGPL-2.1-or-later": "LGPL-2.1+",
    "LGPL-3.0-only": "LGPL-3", "LGPL-3.0-or-later": "LGPL-3+",
    "BSD-2-Clause": "BSD-2-clause", "BSD-3-Clause": "BSD-3-clause",
    "MIT": "Expat", "Apache-2.0": "Apache-2.0",
}

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("kernbuild.debian", "templates"),
    trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined, autoescape=False,
)


#: The templates the renderer loads (the loader above reads this same directory).
TEMPLATES = Path(__file__).parent / "templates"
#: The libraries whose code formats the rendered files (control, changelog; templates).
FORMATTING_LIBRARIES = ("python-debian", "jinja2")


def renderer_digest() -> str:
    """A sha256 of the renderer itself: its code (with the tables it holds), every file
    of its templates, and the versions of the libraries that format its output.

    Build keys hash this and the rendered tree itself (:func:`render`, cheap): the
    tree shows what a table elsewhere (``kernbuild.cuda``'s driver packages) or the
    recipe model's methods put in it, for exactly the recipes it changes; this digest
    covers what the tree rendered without the source cannot show (how the source is
    looked at) and a template's branch no recipe takes yet. Content only, never a
    path or an mtime."""
    digest = hashlib.sha256(b"renderer\0" + Path(__file__).read_bytes())
    for template in sorted(p for p in TEMPLATES.rglob("*") if p.is_file()):
        name = template.relative_to(TEMPLATES).as_posix()
        digest.update(b"\0" + name.encode() + b"\0" + template.read_bytes())
    for library in FORMATTING_LIBRARIES:
        digest.update(f"\0{library}=={importlib.metadata.version(library)}".encode())
    return digest.hexdigest()


def render(recipe: Recipe, settings: SuiteSettings, tree: Path | None = None,
           binary_version: str | None = None) -> dict[str, str]:
    """The debian/ tree of ``recipe`` as {relative path: content}, paths under ``debian/``.

    ``binary_version`` (such as ``1.0-1kern1+b1``) makes it a binary-only rebuild.
    """
    files = {
        "debian/control": control(recipe, settings),
        "debian/changelog": changelog(recipe, settings, binary_version),
        "debian/rules": rules(recipe, tree),
        "debian/copyright": _templates.get_template("copyright.j2").render(
            recipe=recipe, settings=settings,
            license=DEP5_LICENSES.get(recipe.license, recipe.license)),
        "debian/source/format": "3.0 (quilt)\n",
    }
    if recipe.patches:  # applied by dpkg-source --before-build, as for any 3.0 (quilt) package
        for patch in recipe.patches:
            files[f"debian/patches/{patch.name}"] = patch.text
        files["debian/patches/series"] = "".join(p.name + "\n" for p in recipe.patches)
    if len(recipe.packages) > 1:
        for package in recipe.packages:
            files[f"debian/{package.name}.install"] = "".join(f + "\n" for f in package.files)
    for package in recipe.packages:
        if package.readme_debian:
            files[f"debian/{package.name}.README.Debian"] = package.readme_debian.rstrip() + "\n"
        if package.lintian_overrides:
            files[f"debian/{package.name}.lintian-overrides"] = "".join(
                f"{package.name}: {line}\n" for line in package.lintian_overrides)
    return files


def write(files: dict[str, str], destination: Path) -> None:
    """Write rendered files under ``destination``; debian/rules is made executable."""
    for relative, content in files.items():
        path = destination / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        path.chmod(0o755 if relative == "debian/rules" else 0o644)


def control(recipe: Recipe, settings: SuiteSettings) -> str:
    """debian/control: the source paragraph and one paragraph per binary package."""
    from debian.deb822 import Deb822

    source = Deb822()
    source["Source"] = recipe.name
    source["Section"] = recipe.packages[0].section
    source["Priority"] = "optional"
    source["Maintainer"] = settings.maintainer
    system_depends = SYSTEM_BUILD_DEPENDS[recipe.build.system]
    if recipe.build.system == "pybuild" and any(p.architecture != "all"
                                                 for p in recipe.packages):
        system_depends += ("python3-all-dev",)  # an extension module needs Python.h
    source["Build-Depends"] = _relations(
        (f"debhelper-compat (= {DEBHELPER_COMPAT})",) + system_depends
        + tuple(d for d in recipe.build.depends if d not in system_depends))
    source["Standards-Version"] = STANDARDS_VERSION
    if recipe.homepage:
        source["Homepage"] = recipe.homepage
    source["Rules-Requires-Root"] = "no"
    paragraphs = [source]
    for package in recipe.packages:
        binary = Deb822()
        binary["Package"] = package.name
        binary["Architecture"] = package.architecture
        binary["Section"] = package.section
        substvars = ["${misc:Depends}"]
        if package.architecture != "all":
            substvars.insert(0, "${shlibs:Depends}")
        if recipe.build.system == "pybuild":
            substvars.insert(0, "${python3:Depends}")
        binary["Depends"] = _relations(tuple(substvars) + package.relations.get("depends", ()))
        for field in ("recommends", "suggests", "provides", "conflicts", "replaces"):
            if package.relations.get(field):
                binary[field.capitalize()] = _relations(package.relations[field])
        binary["Description"] = _description(package.summary, package.description)
        paragraphs.append(binary)
    return "\n".join(p.dump() for p in paragraphs)


def changelog(recipe: Recipe, settings: SuiteSettings, binary_version: str | None = None) -> str:
    """debian/changelog, dated from the recipe or the release.

    With ``binary_version``, a binary-only entry on top, as Debian writes for a binNMU:
    dpkg then gives the binary packages that version, the source keeps its own.
    """
    from debian.changelog import Changelog  # compiles many regexes: only when rendering

    log = Changelog()
    date = _rfc2822(recipe.changelog_date(settings))
    origin = {"pypi": "PyPI", "debian": "Debian", "url": "upstream", "git": "git",
              "path": "a local tree", "none": "no upstream source (a metapackage)"}[
        recipe.source.kind]
    log.new_block(
        package=recipe.name,
        version=recipe.debian_version(settings),
        distributions=settings.repo_distribution,
        urgency="medium",
        author=settings.maintainer,
        date=date,
    )
    log.add_change("")
    log.add_change(f"  * {settings.name.upper()}-{settings.release}: {recipe.name} "
                   f"{recipe.version} from {origin}, packaged by kernbuild.")
    log.add_change("")
    if binary_version:
        log.new_block(package=recipe.name, version=binary_version,
                      distributions=settings.repo_distribution, urgency="low",
                      author=settings.maintainer, date=date,
                      other_pairs={"binary-only": "yes"})
        log.add_change("")
        log.add_change("  * Binary-only rebuild of a published version: a build dependency, the")
        log.add_change("    build image or the recipe changed without a new revision.")
        log.add_change("")
    return str(log)


def rules(recipe: Recipe, tree: Path | None = None) -> str:
    """debian/rules for the recipe's build system; configure flags are shell- and make-quoted."""
    system = recipe.build.system
    dh_options = {
        "pybuild": ["--buildsystem=pybuild"],
        "cmake": ["--buildsystem=cmake"],
        # debhelper runs meson with --wrap-mode=nodownload: subprojects never download.
        "meson": ["--buildsystem=meson"],
        "autotools": [],
        "make": ["--buildsystem=makefile"],
        "none": [],
    }[system]
    if system == "autotools" and tree is not None and (tree / "configure").exists():
        dh_options.append("--without autoreconf")  # upstream's configure is used as shipped
    # Recipe text becomes make + shell text here: quote for the shell, then escape '$' for make.
    configure = [shlex.quote(flag).replace("$", "$$") for flag in recipe.build.configure]
    # Exported make variables are not shell text; only '$' needs escaping.
    env = [(name, value.replace("$", "$$")) for name, value in recipe.build.env]
    from kernbuild.cuda import DRIVER_PACKAGES

    cuda = recipe.variant is not None and recipe.variant.cuda is not None
    return _templates.get_template("rules.j2").render(
        recipe=recipe, system=system, dh=" ".join(["dh $@", *dh_options]), configure=configure,
        env=env, driver_packages=DRIVER_PACKAGES if cuda else ())


def _relations(relations: tuple[str, ...]) -> str:
    return ",\n ".join(relations)


def _description(summary: str, description: str) -> str:
    """A Description field: the synopsis, then the long text with '.' for blank lines."""
    lines = [line.rstrip() for line in description.strip().splitlines()]
    body = "\n".join((" " + line) if line else " ." for line in lines)
    return summary.strip() + ("\n" + body if body else "")


def _rfc2822(date: str) -> str:
    """'2026-11-01' or '2026-11-01 12:00' as a changelog date, in UTC."""
    when = datetime.fromisoformat(date.replace(" ", "T"))
    return email.utils.format_datetime(when.replace(tzinfo=timezone.utc))

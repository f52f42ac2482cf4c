"""The recipe's and the suite's schemas: which keys they may have, their types and rules.

The schemas are data, written in the node types of
:mod:`kernbuild.recipe.schema_nodes` and kept apart from the model and the loader
so that they can be read in one place. :func:`validate` walks a raw recipe and
reports every problem at once, each with a hint; the loader places them on their
lines. Only after a recipe passes does :mod:`kernbuild.recipe.model` build the typed
model from it, so the model never sees malformed input. The patterns of Debian
names, versions and checksums are public: the source fetchers and ``kernbuild new``
check the same things.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from debian.debian_support import Version

from kernbuild import cuda
from kernbuild.limits import quoted
from kernbuild.recipe.schema_nodes import Bool, Dict, Int, Key, List, Map, Node, Problem, Str
from kernbuild.recipe.schema_nodes import kind
from kernbuild.recipe.source_map import YamlPath

# Debian policy 5.6.1 (source) and 5.6.7 (binary package names).
PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
# Debian policy 5.6.12: upstream_version starts with a digit; we always add a
# revision, so hyphens are allowed, colons only through ``epoch``.
UPSTREAM_VERSION = re.compile(r"^[0-9][A-Za-z0-9.+~-]*$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A substitution variable such as ${binary:Version}, filled in by dpkg at build time.
SUBSTVAR = re.compile(r"\$\{[A-Za-z0-9:._-]+\}")
GIT_COMMIT = re.compile(r"^[0-9a-f]{40}$")
ARCHITECTURE = re.compile(r"^(any|all|[a-z0-9-]+( [a-z0-9-]+)*)$")
BUILD_SYSTEMS = ("pybuild", "cmake", "meson", "autotools", "make", "none")
# Debian archive areas beyond main (which every build and image has).
COMPONENTS = ("contrib", "non-free", "non-free-firmware")
SOURCE_KINDS = ("pypi", "debian", "url", "git", "path")
# A range of CUDA releases such as ">=11.8, <13"; a bare version means at least it.
CUDA_RANGE = cuda.RANGE


# --- Debian relations -------------------------------------------------------------

logging.getLogger("debian.deb822").setLevel(logging.ERROR)  # we report bad relations ourselves


def relation_error(text: str) -> str:
    """Return why ``text`` is not a valid Debian relation, or "" if it is."""
    from debian.deb822 import PkgRelation

    if not text.strip():
        return "empty dependency relation"
    for alternatives in PkgRelation.parse_relations(SUBSTVAR.sub("0", text)):
        for alt in alternatives:
            name = alt["name"]
            if not PACKAGE_NAME.match(name) or alt["name"] != name.strip():
                return f"malformed dependency relation {quoted(text)}"
            if alt["version"]:
                op, version = alt["version"]
                try:
                    Version(version)
                except ValueError:
                    return f"invalid version {quoted(version)} in relation {quoted(text)}"
    return ""


def relation_names(text: str) -> list[str]:
    """Every package name a (valid) relation mentions, alternatives included."""
    from debian.deb822 import PkgRelation

    return [alt["name"] for group in PkgRelation.parse_relations(SUBSTVAR.sub("0", text))
            for alt in group]


@dataclass(frozen=True)
class Relation(Node):
    """A Debian dependency relation, such as ``python3-numpy (>= 1:1.24) | python3-legacy``.

    Parsed with python-debian; because its parser returns what it cannot parse
    as a raw package "name", every name and version is checked again here.
    """

    type_name = "Debian dependency relation"

    def check(self, value: Any, path: YamlPath) -> list[Problem]:
        if not isinstance(value, str):
            return [Problem(path, f"expected a dependency relation string, got {kind(value)}")]
        error = relation_error(value)
        return [Problem(path, error, "write it as Debian does: 'name', 'name (>= 1.0)', "
                                     "'a | b'; one relation per list item")] if error else []


# --- rules that span several keys ---------------------------------------------------


def _remote_source_is_pinned(source: dict, path: YamlPath) -> list[Problem]:
    if "path" in source:
        return []
    if "git" in source:
        if "commit" not in source:
            return [Problem(path, "a git source needs 'commit' (a full 40-character id)",
                            "pin the exact commit: branches and tags move")]
        return []
    if "sha256" not in source:
        return [Problem(path, "a remote source needs 'sha256'",
                        "download it once and add: sha256: <output of sha256sum>")]
    return []


def _debian_source_has_version(source: dict, path: YamlPath) -> list[Problem]:
    if "debian" in source and "version" not in source:
        return [Problem(path, "a debian source needs 'version', the Debian source version",
                        "for example version: 8.4+ds-1 (see the .dsc's Version field)")]
    if "debian" not in source and "version" in source:
        return [Problem(path + ("version",), "'version' only applies to a debian source",
                        "the upstream version is the recipe's top-level 'version'", at_key=True)]
    return []


def _source_unless_metapackage(recipe: dict, path: YamlPath) -> list[Problem]:
    if "source" not in recipe and (recipe.get("build") or {}).get("system") != "none":
        return [Problem(path, "missing required key 'source'",
                        "only a metapackage (build: {system: none}) has no source")]
    return []


def _several_packages_name_their_files(packages: dict, path: YamlPath) -> list[Problem]:
    if len(packages) < 2:
        return []
    return [Problem(path + (name,), f"package {quoted(name)} needs 'files' when a recipe makes "
                    "several packages", "list the installed paths it takes, e.g. "
                    "files: [usr/lib/*/lib*.so.*]", at_key=True)
            for name, spec in packages.items() if "files" not in (spec or {})]


def _repository_has_keyring(gpu: dict, path: YamlPath) -> list[Problem]:
    if "repository" in gpu and "keyring" not in gpu:
        return [Problem(path, "gpu.repository needs gpu.keyring",
                        "give the URL of the keyring that signs NVIDIA's repository")]
    return []


# --- the recipe ---------------------------------------------------------------------

DEPENDS = List(Relation())
NAME_HINT = "lower-case letters, digits, '+', '-' and '.', starting with a letter or digit"
ENV = Dict(Str(re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$"), "an environment variable name"), Str())

SOURCE = Map(
    keys={
        "pypi": Key(Str(re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$"), "a PyPI project name"),
                    doc="the project's name on PyPI; its sdist of the recipe's version is used"),
        "debian": Key(Str(PACKAGE_NAME, NAME_HINT), doc="a source package in Debian's archive"),
        "url": Key(Str(re.compile(r"^(https?|ftp)://\S+$"), "an http(s) or ftp URL")),
        "git": Key(Str(re.compile(r"^\S+$"), "a git URL")),
        "path": Key(Str(re.compile(r"^\S"), "a directory or archive, relative to the recipe")),
        "sha256": Key(Str(SHA256, "64 lower-case hex digits, as printed by sha256sum")),
        "commit": Key(Str(GIT_COMMIT, "the full 40-character commit id")),
        "version": Key(Str(re.compile(r"^([0-9]+:)?[0-9][A-Za-z0-9.+~-]*$"),
                           "a Debian source version such as 8.4+ds-1")),
        "suite": Key(Str(re.compile(r"^[a-z-]+$"), "a Debian suite such as trixie")),
        "subdir": Key(Str(re.compile(r"^[^/].*$"), "a relative directory inside the source")),
    },
    one_of=SOURCE_KINDS,
    one_of_required=True,
    rules=(_remote_source_is_pinned, _debian_source_has_version),
)

BUILD = Map(keys={
    "system": Key(Str(choices=BUILD_SYSTEMS), required=True),
    "depends": Key(DEPENDS, doc="Build-Depends, as Debian relations"),
    "configure": Key(List(Str()), doc="extra arguments for the configure step"),
    "env": Key(ENV, doc="variables exported to every build step"),
})

PACKAGE = Map(keys={
    "architecture": Key(Str(ARCHITECTURE, "any, all, or a list of architectures")),
    "section": Key(Str(re.compile(r"^[a-z0-9/-]+$"), "a Debian section such as science")),
    "summary": Key(Str(single_line=True)),
    "description": Key(Str()),
    "depends": Key(DEPENDS),
    "recommends": Key(DEPENDS),
    "suggests": Key(DEPENDS),
    "provides": Key(DEPENDS),
    "conflicts": Key(DEPENDS),
    "replaces": Key(DEPENDS),
    "files": Key(List(Str(re.compile(r"^[^/]"), "a path relative to the install root"))),
    "readme_debian": Key(Str(), doc="installed as /usr/share/doc/<package>/README.Debian: "
                                    "what this packaging changes or leaves out, and why"),
    "lintian_overrides": Key(List(Str(re.compile(r"^[a-z0-9][a-z0-9-]+( .*)?$"),
                                      "a lintian tag, then what it is about, such as "
                                      "'privacy-breach-generic [usr/share/x/index.html]'")),
                             doc="lintian tags this package carries on purpose; say why in "
                                 "a comment"),
})

SMOKE_STEP = Map(keys={"run": Key(Str(), required=True, doc="a command run with sh -c")})

WORKFLOW_STEP = Map(keys={
    "name": Key(Str(re.compile(r"^[a-z0-9][a-z0-9-]*$"), "lower-case words joined by '-'"),
                required=True),
    "run": Key(Str(), required=True, doc="a command run with sh -c in the scratch directory"),
    "timeout": Key(Int(minimum=1), doc="seconds before the step is killed (default 300)"),
})

def _steps_or_cwl(pipeline: dict, path: YamlPath) -> list[Problem]:
    if "cwl" in pipeline:
        extra = [key for key in ("data", "steps", "assert") if key in pipeline]
        return [Problem(path + (key,), f"a CWL pipeline has no {key!r}: its workflow holds its "
                        "steps and asserts", "drop it, or drop cwl", at_key=True)
                for key in extra]
    return [Problem(path, f"missing required key {key!r}", "a pipeline has steps and assert, "
                    "or a cwl workflow") for key in ("steps", "assert") if key not in pipeline]


# A path inside the recipe's directory: relative, no '..'.
RELATIVE_PATH = re.compile(r"^(?!/)(?!.*(^|/)\.\.(/|$))[A-Za-z0-9._/+-]+$")
CWL = Map(keys={
    "workflow": Key(Str(RELATIVE_PATH, "a path beside the recipe, such as "
                                       "pipeline-imaging/imaging.cwl"), required=True,
                    doc="the CWL v1.2 Workflow, relative to the recipes directory"),
    "job": Key(Str(RELATIVE_PATH, "a path beside the recipe, such as "
                                  "pipeline-imaging/imaging-job.yml"), required=True,
               doc="its job (inputs) file"),
})

PIPELINE = Map(keys={
    "images": Key(List(Str(PACKAGE_NAME, NAME_HINT)),
                  doc="recipes whose images the workflow runs in (default: this recipe's)"),
    "data": Key(List(WORKFLOW_STEP), doc="steps that make the tiny input data"),
    "steps": Key(List(WORKFLOW_STEP), doc="the workflow"),
    "assert": Key(List(WORKFLOW_STEP),
                  doc="what the result must satisfy: a scientific check, not an exit code"),
    "cwl": Key(CWL, doc="instead of steps: a CWL workflow, run by cwltool and Toil, whose "
                        "asserts are steps of its own"),
}, rules=(_steps_or_cwl,))

VARIANT = Map(keys={
    "build": Key(Map(keys={
        "depends": Key(DEPENDS, doc="Build-Depends added to the recipe's"),
        "configure": Key(List(Str()), doc="configure arguments added to the recipe's"),
        "env": Key(ENV, doc="build variables added to (or replacing) the recipe's"),
    })),
    "cuda": Key(Str(CUDA_RANGE, "a version range such as '>=12.0' or '>=11.8, <13'"),
                doc="the CUDA releases the variant builds and runs with"),
    "smoke": Key(List(SMOKE_STEP), doc="smoke steps run after the recipe's, in the "
                                       "variant's image only"),
})  # a variant builds separate binary packages, named <package>-<variant>

RECIPE = Map(keys={
    "name": Key(Str(PACKAGE_NAME, NAME_HINT), required=True, doc="the Debian source package name"),
    "version": Key(Str(UPSTREAM_VERSION, "an upstream version starting with a digit"),
                   required=True),
    "revision": Key(Int(minimum=1), doc="the Debian revision, starting at 1"),
    "epoch": Key(Int(minimum=0)),
    "summary": Key(Str(single_line=True), required=True),
    "description": Key(Str(), required=True),
    "homepage": Key(Str(re.compile(r"^https?://\S+$"), "an http(s) URL")),
    "license": Key(Str(re.compile(r"^\S.*$"), "an SPDX identifier such as GPL-3.0-or-later"),
                   required=True),
    "copyright": Key(Str(), doc="the upstream copyright line for debian/copyright"),
    "date": Key(Str(re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?$"),
                    "YYYY-MM-DD, the changelog date of this revision")),
    "source": Key(SOURCE, doc="where the upstream source comes from; a metapackage "
                              "(build: {system: none}) has none"),
    "build": Key(BUILD, required=True),
    "packages": Key(Dict(Str(PACKAGE_NAME, NAME_HINT), PACKAGE, min_items=1,
                         rules=(_several_packages_name_their_files,)), required=True),
    "patches": Key(List(Str(re.compile(r"^[^/].*\.(patch|diff)$"),
                            "a .patch file, relative to the recipe")),
                   doc="applied in order on top of the upstream source"),
    "smoke": Key(List(SMOKE_STEP)),
    "pipeline": Key(PIPELINE, doc="a smoke workflow run in every image on every target"),
    "components": Key(List(Str(choices=COMPONENTS)),
                      doc="Debian archive areas beyond main that the recipe's build or run-time "
                          "dependencies come from, such as non-free for PGPLOT"),
    "image": Key(Map(keys={"docs": Key(Bool(), doc="keep documentation, man pages and "
                                                    "translations in the image")})),
    "variants": Key(Dict(Str(re.compile(r"^[a-z][a-z0-9-]*$"), "lower-case, such as gpu"),
                         VARIANT)),
}, rules=(_source_unless_metapackage,))


def validate(raw: Any) -> list[Problem]:
    """Every problem in one raw recipe document, checked against :data:`RECIPE`."""
    return RECIPE.check(raw, ())


# --- the suite settings (recipes/suite.yaml) ----------------------------------------

SUITE = Map(keys={
    "name": Key(Str(PACKAGE_NAME, NAME_HINT), doc="the suite's name, such as kern"),
    "release": Key(Int(minimum=1), doc="the release number N: versions end in kernN"),
    "date": Key(Str(re.compile(r"^\d{4}-\d{2}-\d{2}$"), "YYYY-MM-DD"),
                doc="the changelog date of recipes that give none"),
    "maintainer": Key(Str(re.compile(r"^[^<>]+ <[^<>@\s]+@[^<>\s]+>$"),
                          "Full Name <email@example.org>")),
    "distribution": Key(Str(re.compile(r"^[a-z]+$"), "a Debian codename such as trixie"),
                        doc="the Debian release packages are built for"),
    "mirror": Key(Str(re.compile(r"^(https?|file)://\S+$"), "an http(s) Debian mirror URL")),
    "base": Key(Str(re.compile(r"^\S+$"), "a Debian codename (built with mmdebstrap) or a "
                                          "registry image such as ubuntu:24.04")),
    "signing_key": Key(Str(re.compile(r"^(0x)?[0-9A-Fa-f ]{16,}$"), "a GPG key fingerprint"),
                       doc="the repository's signing key, imported into the state's gnupg "
                           "home; without it kernbuild makes one on first use"),
    "source_mirrors": Key(List(Str(re.compile(r"^\S"), "a directory")),
                          doc="directories of upstream files (git archive tarballs named "
                              "<name>-<commit>.tar.gz, url sources by file name), searched "
                              "before the network; relative to the recipe directory"),
    "calendar": Key(Map(keys={
        "first": Key(Str(re.compile(r"^\d{4}-\d{2}-\d{2}$"), "YYYY-MM-DD"),
                     doc="the date KERN-1 is due"),
        "months": Key(Int(minimum=1), doc="months between releases (KERN: 6)"),
    }), doc="the release cadence: KERN-N is due first + (N-1) * months"),
    "dropped": Key(Dict(Str(PACKAGE_NAME, NAME_HINT), Str(re.compile(r"\S"), "a reason")),
                   doc="recipes of an earlier release left out since, each with the reason "
                       "the release notes give"),
    "accepted_failures": Key(Dict(Str(re.compile(r"^[^/\s]+/[^/\s]+/[^/\s]+$"),
                                      "pipeline/image/target, such as "
                                      "wcs-roundtrip/wcslib/udocker"),
                                  Str(re.compile(r"\S"), "a reason")),
                             doc="matrix cells a release may ship failing, each with why"),
    "gpu": Key(Map(keys={
        "cuda": Key(Str(re.compile(r"^[0-9]+\.[0-9]+$"), "a CUDA release such as 12.4"),
                    doc="the CUDA release of GPU images' runtime layer"),
        "runtime": Key(List(Str(PACKAGE_NAME, NAME_HINT)),
                       doc="the CUDA runtime layer's packages (default: libcudart12)"),
        "components": Key(List(Str(re.compile(r"^[a-z-]+$"), "an archive component")),
                          doc="archive components the CUDA packages come from "
                              "(default: contrib non-free)"),
        "repository": Key(Str(re.compile(r"^(https?|file)://\S+$"), "an http(s) URL"),
                          doc="NVIDIA's CUDA repository, instead of Debian's non-free"),
        "keyring": Key(Str(re.compile(r"^(https?|file)://\S+$"), "an http(s) URL"),
                       doc="the keyring that signs 'repository'"),
    }, rules=(_repository_has_keyring,)), doc="GPU images and variants"),
})

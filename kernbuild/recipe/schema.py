"""The recipe schema: which keys a recipe may have, their types and rules.

The schema is data, kept apart from the model and the loader so that it can be
read in one place and checked by :func:`validate`, which walks the raw YAML
and reports every problem at once, each with the line it was found on and a
hint. Only after a recipe passes does :mod:`kernbuild.recipe.model` build the
typed model from it, so the model never sees malformed input.
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass
from typing import Any, Callable

from debian.debian_support import Version

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

# A path into the YAML document, such as ("packages", "python3-losoto", "depends", 0).
Path_ = tuple


@dataclass(frozen=True)
class Problem:
    """A schema violation at a YAML path; the loader turns it into a Diagnostic."""

    path: Path_
    message: str
    hint: str = ""
    at_key: bool = False  # point at the key rather than the value


# --- the node types -----------------------------------------------------------------


class Node:
    """A schema node: ``check`` yields problems for the raw value at ``path``."""

    type_name = "value"

    def check(self, value: Any, path: Path_) -> list[Problem]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Str(Node):
    pattern: re.Pattern | None = None
    hint: str = ""
    choices: tuple[str, ...] = ()
    single_line: bool = False
    type_name = "string"

    def check(self, value: Any, path: Path_) -> list[Problem]:
        # YAML reads 2.7 as a float and 3 as an int: a version must be quoted.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return [Problem(path, f"expected a string, got the number {value!r}",
                            "put it in quotes, as written, so YAML keeps it as text "
                            '(unquoted, 1.10 reads as 1.1 and 0x1F as 31)')]
        if not isinstance(value, str):
            return [Problem(path, f"expected a string, got {_kind(value)}")]
        if self.choices and value not in self.choices:
            return [Problem(path, f"{value!r} is not one of {', '.join(self.choices)}",
                            _did_you_mean(value, self.choices))]
        if self.pattern and not self.pattern.match(value):
            return [Problem(path, f"invalid value {value!r}", self.hint)]
        if self.single_line and "\n" in value.strip():
            return [Problem(path, "must be a single line", "put longer text in 'description'")]
        return []


@dataclass(frozen=True)
class Int(Node):
    minimum: int = 0
    type_name = "integer"

    def check(self, value: Any, path: Path_) -> list[Problem]:
        if isinstance(value, bool) or not isinstance(value, int):
            return [Problem(path, f"expected an integer, got {_kind(value)}")]
        if value < self.minimum:
            return [Problem(path, f"must be at least {self.minimum}, got {value}")]
        return []


@dataclass(frozen=True)
class Bool(Node):
    type_name = "boolean"

    def check(self, value: Any, path: Path_) -> list[Problem]:
        if not isinstance(value, bool):
            return [Problem(path, f"expected true or false, got {_kind(value)}")]
        return []


@dataclass(frozen=True)
class Relation(Node):
    """A Debian dependency relation, such as ``python3-numpy (>= 1:1.24) | python3-legacy``.

    Parsed with python-debian; because its parser returns what it cannot parse
    as a raw package "name", every name and version is checked again here.
    """

    type_name = "Debian dependency relation"

    def check(self, value: Any, path: Path_) -> list[Problem]:
        if not isinstance(value, str):
            return [Problem(path, f"expected a dependency relation string, got {_kind(value)}")]
        error = relation_error(value)
        return [Problem(path, error, "write it as Debian does: 'name', 'name (>= 1.0)', "
                                     "'a | b'; one relation per list item")] if error else []


@dataclass(frozen=True)
class List(Node):
    item: Node
    type_name = "list"

    def check(self, value: Any, path: Path_) -> list[Problem]:
        if not isinstance(value, list):
            hint = f"write it as a list: [{value}]" if isinstance(value, str) else ""
            return [Problem(path, f"expected a list, got {_kind(value)}", hint)]
        problems: list[Problem] = []
        for index, item in enumerate(value):
            problems += self.item.check(item, path + (index,))
        return problems


@dataclass(frozen=True)
class Key:
    node: Node
    required: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Map(Node):
    """A mapping with a fixed set of keys."""

    keys: dict[str, Key]
    # At most (and, if ``one_of_required``, exactly) one of these keys.
    one_of: tuple[str, ...] = ()
    one_of_required: bool = False
    rules: tuple[Callable[[dict, Path_], list[Problem]], ...] = ()
    type_name = "mapping"

    def check(self, value: Any, path: Path_) -> list[Problem]:
        if not isinstance(value, dict):
            return [Problem(path, f"expected a mapping, got {_kind(value)}")]
        problems: list[Problem] = []
        where = f" in {_dotted(path)}" if path else ""
        for key, item in value.items():
            if key not in self.keys:
                problems.append(Problem(path + (key,), f"unknown key {key!r}{where}",
                                        _did_you_mean(str(key), self.keys), at_key=True))
            else:
                problems += self.keys[key].node.check(item, path + (key,))
        for key, spec in self.keys.items():
            if spec.required and key not in value:
                problems.append(Problem(path, f"missing required key {key!r}{where}", spec.doc))
        if self.one_of:
            present = [k for k in self.one_of if k in value]
            if len(present) > 1:
                problems.append(Problem(path, f"{' and '.join(present)} are exclusive{where}",
                                        "a source has exactly one origin"))
            elif not present and self.one_of_required:
                problems.append(Problem(path, f"needs one of {', '.join(self.one_of)}{where}"))
        if not problems:
            for rule in self.rules:
                problems += rule(value, path)
        return problems


@dataclass(frozen=True)
class Dict(Node):
    """A mapping from names (checked by ``key``) to values of one schema."""

    key: Str
    value: Node
    min_items: int = 0
    rules: tuple[Callable[[dict, Path_], list[Problem]], ...] = ()
    type_name = "mapping"

    def check(self, value: Any, path: Path_) -> list[Problem]:
        if not isinstance(value, dict):
            return [Problem(path, f"expected a mapping, got {_kind(value)}")]
        if len(value) < self.min_items:
            return [Problem(path, f"needs at least {self.min_items} entry")]
        problems: list[Problem] = []
        for key, item in value.items():
            key_problems = self.key.check(str(key), path + (key,))
            problems += [Problem(p.path, p.message, p.hint, at_key=True) for p in key_problems]
            problems += self.value.check(item, path + (key,))
        if not problems:
            for rule in self.rules:
                problems += rule(value, path)
        return problems


# --- rules that span several keys ---------------------------------------------------


def _remote_source_is_pinned(source: dict, path: Path_) -> list[Problem]:
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


def _debian_source_has_version(source: dict, path: Path_) -> list[Problem]:
    if "debian" in source and "version" not in source:
        return [Problem(path, "a debian source needs 'version', the Debian source version",
                        "for example version: 8.4+ds-1 (see the .dsc's Version field)")]
    if "debian" not in source and "version" in source:
        return [Problem(path + ("version",), "'version' only applies to a debian source",
                        "the upstream version is the recipe's top-level 'version'", at_key=True)]
    return []


def _source_unless_metapackage(recipe: dict, path: Path_) -> list[Problem]:
    if "source" not in recipe and (recipe.get("build") or {}).get("system") != "none":
        return [Problem(path, "missing required key 'source'",
                        "only a metapackage (build: {system: none}) has no source")]
    return []


def _several_packages_name_their_files(packages: dict, path: Path_) -> list[Problem]:
    if len(packages) < 2:
        return []
    return [Problem(path + (name,), f"package {name!r} needs 'files' when a recipe makes "
                    "several packages", "list the installed paths it takes, e.g. "
                    "files: [usr/lib/*/lib*.so.*]", at_key=True)
            for name, spec in packages.items() if "files" not in (spec or {})]


def _repository_has_keyring(gpu: dict, path: Path_) -> list[Problem]:
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

PIPELINE = Map(keys={
    "images": Key(List(Str(PACKAGE_NAME, NAME_HINT)),
                  doc="recipes whose images the workflow runs in (default: this recipe's)"),
    "data": Key(List(WORKFLOW_STEP), doc="steps that make the tiny input data"),
    "steps": Key(List(WORKFLOW_STEP), required=True, doc="the workflow"),
    "assert": Key(List(WORKFLOW_STEP), required=True,
                  doc="what the result must satisfy: a scientific check, not an exit code"),
})

CUDA_RANGE = re.compile(r"^\s*(>=|<=|==|>|<)?\s*[0-9]+(\.[0-9]+)*"
                        r"(\s*,\s*(>=|<=|==|>|<)\s*[0-9]+(\.[0-9]+)*)*\s*$")

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

# --- helpers ------------------------------------------------------------------------

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
                return f"malformed dependency relation {text!r}"
            if alt["version"]:
                op, version = alt["version"]
                try:
                    Version(version)
                except ValueError:
                    return f"invalid version {version!r} in relation {text!r}"
    return ""


def relation_names(text: str) -> list[str]:
    """Every package name a (valid) relation mentions, alternatives included."""
    from debian.deb822 import PkgRelation

    return [alt["name"] for group in PkgRelation.parse_relations(SUBSTVAR.sub("0", text))
            for alt in group]


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "allowed: " + ", ".join(sorted(choices))


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

"""Stage 1 of loading: the typed recipe model, built only from documents that passed the schema.

A :class:`Recipe` is one source package: where its source comes from, how it
builds, which binary packages it makes and how to smoke-test them. It keeps the
:class:`~kernbuild.recipe.source_map.SourceMap` of its file, not the file's YAML,
to point at lines later. A :class:`Suite` is the set of recipes plus the suite's
settings (release number, target distribution, base image), and answers questions
that need all recipes at once: which recipe makes a binary package, which recipes
one depends on. Ordering them is :mod:`kernbuild.recipe.graph`'s; problems that
only show across recipes are :mod:`kernbuild.recipe.checks`'.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from kernbuild.errors import KernError
from kernbuild.limits import InputRefused
from kernbuild.recipe import schema
from kernbuild.recipe.document import read_patch
from kernbuild.recipe.settings import SuiteSettings
from kernbuild.recipe.source_map import SourceMap, YamlPath


@dataclass(frozen=True)
class Source:
    kind: str  # one of schema.SOURCE_KINDS, or "none" for a metapackage
    ref: str  # the PyPI name, Debian source package, URL, git URL or path
    sha256: str | None = None
    commit: str | None = None
    version: str | None = None  # Debian source version, for kind == "debian"
    suite: str | None = None
    subdir: str | None = None


@dataclass(frozen=True)
class Build:
    system: str
    depends: tuple[str, ...] = ()
    configure: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Patch:
    """A patch applied on top of upstream, carried by content so it counts in the build key."""

    name: str
    text: str


@dataclass(frozen=True)
class BinaryPackage:
    name: str
    architecture: str = "any"
    section: str = "science"
    summary: str = ""
    description: str = ""
    relations: dict[str, tuple[str, ...]] = field(default_factory=dict)  # Depends, Provides...
    files: tuple[str, ...] = ()
    readme_debian: str = ""  # debian/<name>.README.Debian, which dh_installdocs installs
    lintian_overrides: tuple[str, ...] = ()  # debian/<name>.lintian-overrides (dh_lintian)


@dataclass(frozen=True)
class Variant:
    """A second build of a recipe (such as ``gpu``) into packages of its own."""

    name: str
    build_depends: tuple[str, ...] = ()
    configure: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cuda: str | None = None  # a range such as ">=12.0": the variant needs CUDA
    smoke: tuple["SmokeStep", ...] = ()

    def suffixed(self, package: str) -> str:
        """The variant's name for one of the recipe's packages: ``python3-x-gpu``."""
        return f"{package}-{self.name}"


@dataclass(frozen=True)
class SmokeStep:
    run: str


@dataclass(frozen=True)
class WorkflowStep:
    name: str
    run: str
    timeout: int = 300


@dataclass(frozen=True)
class CwlWorkflow:
    """A pipeline's CWL workflow and job file, relative to the recipes directory."""

    workflow: str
    job: str


@dataclass(frozen=True)
class Pipeline:
    """A smoke workflow: make tiny data, run the steps, check the result, in each image.
    Either kernbuild's own steps, or a CWL workflow (``cwl``) whose steps include its
    asserts, run by cwltool and Toil."""

    images: tuple[str, ...]
    data: tuple[WorkflowStep, ...]
    steps: tuple[WorkflowStep, ...]
    asserts: tuple[WorkflowStep, ...]
    cwl: CwlWorkflow | None = None

    def digest(self) -> str:
        """A sha256 of the workflow: a matrix cell reruns when it changes."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    @property
    def all_steps(self) -> tuple[tuple[str, WorkflowStep], ...]:
        """(phase, step) in the order they run: data, steps, assert."""
        return tuple([("data", s) for s in self.data] + [("step", s) for s in self.steps]
                     + [("assert", s) for s in self.asserts])


RELATION_FIELDS = ("depends", "recommends", "suggests", "provides", "conflicts", "replaces")


@dataclass(frozen=True)
class Recipe:
    """One source package of the suite."""

    name: str
    version: str
    revision: int
    epoch: int | None
    summary: str
    description: str
    homepage: str | None
    license: str
    copyright: str
    date: str | None
    source: Source
    build: Build
    packages: tuple[BinaryPackage, ...]
    patches: tuple[Patch, ...]
    smoke: tuple[SmokeStep, ...]
    variants: dict[str, Variant]
    image_docs: bool
    pipeline: Pipeline | None
    path: Path = field(compare=False)
    components: tuple[str, ...] = ()  # Debian archive areas beyond main (non-free, ...)
    variant: Variant | None = None  # set on the recipe as_variant() derives
    source_map: SourceMap | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_checked(cls, raw: dict[str, Any], source_map: SourceMap) -> "Recipe":
        """The recipe of a document that passed :func:`kernbuild.recipe.schema.validate`."""
        path = source_map.path
        src = raw.get("source") or {"none": ""}  # a metapackage
        kind = next(k for k in (*schema.SOURCE_KINDS, "none") if k in src)
        ref = src[kind]
        if kind == "path":  # relative to the recipe file, so recipes move with their data
            ref = str((path.parent / ref).resolve())
        packages = tuple(
            BinaryPackage(
                name=name,
                architecture=spec.get("architecture", "any"),
                section=spec.get("section", "science"),
                summary=spec.get("summary", raw["summary"]),
                description=spec.get("description", raw["description"]),
                relations={k: tuple(spec[k]) for k in RELATION_FIELDS if k in spec},
                files=tuple(spec.get("files", ())),
                readme_debian=spec.get("readme_debian", ""),
                lintian_overrides=tuple(spec.get("lintian_overrides", ())),
            )
            for name, spec in ((n, s or {}) for n, s in raw["packages"].items())
        )
        variants = {
            name: Variant(name, tuple((spec.get("build") or {}).get("depends", ())),
                          tuple((spec.get("build") or {}).get("configure", ())),
                          tuple(((spec.get("build") or {}).get("env") or {}).items()),
                          spec.get("cuda"), tuple(SmokeStep(step["run"])
                                                  for step in spec.get("smoke", ())))
            for name, spec in ((n, s or {}) for n, s in (raw.get("variants") or {}).items())
        }
        return cls(
            name=raw["name"], version=raw["version"], revision=raw.get("revision", 1),
            epoch=raw.get("epoch"), summary=raw["summary"].strip(),
            description=raw["description"], homepage=raw.get("homepage"),
            license=raw["license"], copyright=raw.get("copyright", "the upstream authors"),
            date=raw.get("date"),
            source=Source(kind, ref, src.get("sha256"), src.get("commit"), src.get("version"),
                          src.get("suite"), src.get("subdir")),
            build=Build(raw["build"]["system"], tuple(raw["build"].get("depends", ())),
                        tuple(raw["build"].get("configure", ())),
                        tuple((raw["build"].get("env") or {}).items())),
            packages=packages,
            patches=tuple(Patch(Path(p).name, _read_patch(path.parent / p))
                          for p in raw.get("patches", ())),
            smoke=tuple(SmokeStep(step["run"]) for step in raw.get("smoke", ())),
            variants=variants, image_docs=(raw.get("image") or {}).get("docs", False),
            components=tuple(raw.get("components", ())),
            pipeline=_pipeline(raw["pipeline"], raw["name"]) if "pipeline" in raw else None,
            path=path, source_map=source_map,
        )

    # --- variants ---------------------------------------------------------------

    def as_variant(self, name: str) -> "Recipe":
        """This recipe built as its variant ``name``: a source package of its own
        (``pyvkfft-gpu``) whose binary packages carry the variant's suffix and stand in
        for the plain ones (Provides with the exact version, Conflicts, Replaces), so
        either installs and what depends on the plain package accepts the variant's.
        """
        variant = self.variants[name]
        plain = set(self.binary_names)

        def rename(relation: str) -> str:
            # The recipe's own packages become the variant's: -gpu depends on -gpu.
            return re.sub(r"(?<![a-z0-9+.-])([a-z0-9][a-z0-9+.-]+)(?![a-z0-9+.-])",
                          lambda m: variant.suffixed(m.group(1)) if m.group(1) in plain
                          else m.group(1), relation)

        packages = tuple(
            replace(package, name=variant.suffixed(package.name), relations={
                **{field_: tuple(rename(r) for r in rels)
                   for field_, rels in package.relations.items()},
                "provides": package.relations.get("provides", ())
                + (f"{package.name} (= ${{binary:Version}})",),
                "conflicts": package.relations.get("conflicts", ()) + (package.name,),
                "replaces": package.relations.get("replaces", ()) + (package.name,),
            })
            for package in self.packages)
        build = replace(self.build, depends=self.build.depends + variant.build_depends,
                        configure=self.build.configure + variant.configure,
                        env=tuple({**dict(self.build.env), **dict(variant.env)}.items()))
        return replace(self, name=variant.suffixed(self.name), build=build, packages=packages,
                       smoke=self.smoke + variant.smoke, variants={}, variant=variant,
                       pipeline=None)

    # --- versions ---------------------------------------------------------------

    def debian_version(self, settings: SuiteSettings) -> str:
        """``[epoch:]<upstream>-<revision>kern<N>``, such as ``2.7.1-1kern1``."""
        epoch = f"{self.epoch}:" if self.epoch else ""
        return f"{epoch}{self.version}-{self.revision}{settings.name}{settings.release}"

    def changelog_date(self, settings: SuiteSettings) -> str:
        """The recipe's date, else the suite release's: never the clock."""
        return self.date or settings.date

    # --- relations --------------------------------------------------------------

    @property
    def binary_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.packages)

    def dependency_relations(self) -> list[tuple[YamlPath, str]]:
        """Every (YAML path, relation) this recipe needs at build or run time."""
        found = [(("build", "depends", i), rel) for i, rel in enumerate(self.build.depends)]
        for package in self.packages:
            for i, rel in enumerate(package.relations.get("depends", ())):
                found.append((("packages", package.name, "depends", i), rel))
        return found

    def where(self, path: YamlPath) -> tuple[int, int]:
        """The (line, column) of a YAML path of this recipe."""
        return self.source_map.where(path) if self.source_map else (1, 1)

    def fingerprint(self) -> str:
        """A sha256 over everything that affects the built packages (not the file's layout)."""
        source = self.source
        if source.kind == "path":  # as written, relative: a moved checkout keeps its keys
            source = replace(source, ref=os.path.relpath(source.ref, self.path.parent))
        data = asdict(replace(self, path=Path(self.path.name), source=source,
                              source_map=None))
        # Fingerprints key the build cache. Before the source map, a "document" field stood
        # in its place and was hashed as null; hash that still, not the map, so no key moves.
        del data["source_map"]
        data["document"] = None
        # Smoke tests and pipelines run against packages; they do not change them. Nor do
        # variants: each builds as a recipe of its own (as_variant), keyed by its own.
        data.pop("smoke")
        data.pop("pipeline")
        data.pop("variants")
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()


def _read_patch(path: Path) -> str:
    """The patch's text; the loader checked it could be read (size, UTF-8) in stage 0."""
    try:
        return read_patch(path)
    except InputRefused as exc:  # changed since it was checked
        raise KernError(f"{path}: {exc.message}", exc.hint) from None


def _pipeline(raw: dict, name: str) -> Pipeline:
    def steps(key: str) -> tuple[WorkflowStep, ...]:
        return tuple(WorkflowStep(s["name"], s["run"], s.get("timeout", 300))
                     for s in raw.get(key, ()))

    cwl = raw.get("cwl")
    return Pipeline(tuple(raw.get("images", (name,))), steps("data"), steps("steps"),
                    steps("assert"), CwlWorkflow(cwl["workflow"], cwl["job"]) if cwl else None)


@dataclass
class Suite:
    """Every recipe of the suite, with its settings."""

    settings: SuiteSettings
    recipes: list[Recipe]

    def __post_init__(self) -> None:
        self.by_name = {r.name: r for r in self.recipes}
        self.maker = {b: r for r in self.recipes for b in r.binary_names}

    def get(self, name: str) -> Recipe:
        """A recipe by source or binary package name."""
        recipe = self.by_name.get(name) or self.maker.get(name)
        base, _, variant = name.rpartition("-")
        if recipe is None and variant in getattr(self.by_name.get(base), "variants", {}):
            raise KernError(f"{name} is the {variant} variant of {base}, not a recipe",
                            f"name {base}, with --variant {variant} (kernbuild package)"
                            + (" or --gpu (kernbuild image, kernbuild test)"
                               if variant == "gpu" else ""))
        if recipe is None:
            close = difflib.get_close_matches(name, list(self.by_name), n=1)
            raise KernError(f"no recipe named {name!r}",
                            f"did you mean {close[0]!r}?" if close
                            else "run 'kernbuild graph' to list the suite's recipes")
        return recipe

    def components(self, recipe: Recipe) -> tuple[str, ...]:
        """The Debian archive areas beyond main that installing ``recipe`` needs: its own
        and those of every suite recipe it depends on, in the schema's order."""
        # By the recipe's relations, not its name: a variant's recipe is not in the suite.
        wanted = {c for name in closure(self, list(dependencies(self, recipe)))
                  for c in self.by_name[name].components} | set(recipe.components)
        return tuple(c for c in schema.COMPONENTS if c in wanted)

    def names_with_variant(self, variant: str | None = None) -> list[str]:
        """Every recipe's name, or with ``variant`` those of the recipes that have it."""
        return [r.name for r in self.recipes if variant is None or variant in r.variants]

    def with_variant(self, name: str, variant: str) -> tuple["Suite", Recipe]:
        """This suite plus recipe ``name`` built as its ``variant``, and that recipe."""
        recipe = self.get(name)
        if variant not in recipe.variants:
            having = sorted(r.name for r in self.recipes if variant in r.variants)
            line, _ = recipe.where(("variants",))
            raise KernError(f"{recipe.name} has no {variant!r} variant ({recipe.path}:{line})",
                            f"recipes with one: {', '.join(having)}" if having else
                            f"declare one under variants: in {recipe.path}")
        derived = recipe.as_variant(variant)
        if derived.name in self.by_name:
            return self, self.by_name[derived.name]
        return Suite(self.settings, [*self.recipes, derived]), derived

    @property
    def pipelines(self) -> list[Recipe]:
        return [r for r in self.recipes if r.pipeline is not None]


# --- the edges between recipes ---------------------------------------------------------
#
# Recipe A depends on recipe B when one of A's build or runtime relations names a
# binary package that B makes: B must be built (and published) first, both because
# A's build may need it and because A's packages are not installable without it.
# The edges live here, with the Suite that needs them (components), so that the
# graph algorithms (kernbuild.recipe.graph) import the model and not the reverse.


def dependencies(suite: Suite, recipe: Recipe) -> dict[str, YamlPath]:
    """The recipes ``recipe`` depends on, each with the YAML path of the first relation."""
    found: dict[str, YamlPath] = {}
    for path, relation in recipe.dependency_relations():
        for name in schema.relation_names(relation):
            maker = suite.maker.get(name)
            if maker is not None and maker.name != recipe.name and maker.name not in found:
                found[maker.name] = path
    return found


def closure(suite: Suite, names: list[str]) -> set[str]:
    """``names`` and every recipe they depend on, transitively."""
    seen: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(dependencies(suite, suite.by_name[name]))
    return seen

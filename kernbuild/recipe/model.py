"""The typed recipe model, built only from documents that passed the schema.

A :class:`Recipe` is one source package: where its source comes from, how it
builds, which binary packages it makes and how to smoke-test them. A
:class:`Suite` is the set of recipes plus the suite's settings (release number,
target distribution, base image), and answers questions that need all recipes
at once: which recipe makes a binary package, in which order to build.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernbuild.recipe import schema

if TYPE_CHECKING:
    from kernbuild.errors import Diagnostic
    from kernbuild.recipe.load import Document


@dataclass(frozen=True)
class GpuSettings:
    """Where GPU images' CUDA runtime comes from (``gpu:`` in ``recipes/suite.yaml``).

    By default Debian's own CUDA from its non-free archive; with ``repository`` and
    ``keyring``, NVIDIA's repository instead (whose package names differ: set
    ``runtime`` to them, such as ``cuda-cudart-12-4``).
    """

    cuda: str = "12.4"  # Debian trixie's nvidia-cuda-toolkit
    runtime: tuple[str, ...] = ("libcudart12",)
    components: tuple[str, ...] = ("contrib", "non-free")
    repository: str | None = None
    keyring: str | None = None

    @classmethod
    def from_dict(cls, data: dict | None) -> "GpuSettings":
        data = dict(data or {})
        for key in ("runtime", "components"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


@dataclass(frozen=True)
class SuiteSettings:
    """Settings shared by every recipe of a suite (``recipes/suite.yaml``)."""

    SCHEMA = schema.SUITE

    name: str = "kern"
    release: int = 1
    date: str = "2026-11-01"
    maintainer: str = "KERN packaging team <kern@kernsuite.invalid>"
    distribution: str = "trixie"
    mirror: str = "http://deb.debian.org/debian"
    base: str = "trixie"
    signing_key: str | None = None
    gpu: GpuSettings = field(default_factory=GpuSettings)
    # Where sources unreachable from here are found; not a build input (see build_inputs).
    source_mirrors: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict | None) -> "SuiteSettings":
        data = dict(data or {})
        data["gpu"] = GpuSettings.from_dict(data.get("gpu"))
        if "source_mirrors" in data:
            data["source_mirrors"] = tuple(data["source_mirrors"])
        return cls(**data)

    def build_inputs(self) -> dict[str, Any]:
        """The settings that decide what a build produces, for build keys.

        Source mirrors only say where verified sources are found, so moving one
        rebuilds nothing.
        """
        inputs = asdict(self)
        del inputs["source_mirrors"]
        return inputs

    @property
    def repo_distribution(self) -> str:
        """The apt distribution the suite publishes to, such as ``kern-1``."""
        return f"{self.name}-{self.release}"

    @property
    def base_is_registry_image(self) -> bool:
        """``ubuntu:24.04`` is pulled from a registry; ``trixie`` is made with mmdebstrap."""
        return ":" in self.base or "/" in self.base


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


def cuda_satisfies(version: str, wanted: str) -> bool:
    """Whether CUDA ``version`` (such as "12.4") is in the range ``wanted``
    (such as ">=12.0" or ">=11.8, <13"; a bare version means at least that one)."""
    def numbers(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.strip().split("."))

    have = numbers(version)
    for clause in wanted.split(","):
        match = re.match(r"\s*(>=|<=|==|>|<)?\s*([0-9.]+)\s*$", clause)
        op, bound = match.group(1) or ">=", numbers(match.group(2))
        width = max(len(have), len(bound))  # 12 == 12.0, and 12.4 < 13
        a, b = have + (0,) * (width - len(have)), bound + (0,) * (width - len(bound))
        if not {"<": a < b, "<=": a <= b, "==": a == b, ">": a > b, ">=": a >= b}[op]:
            return False
    return True


@dataclass(frozen=True)
class SmokeStep:
    run: str


@dataclass(frozen=True)
class WorkflowStep:
    name: str
    run: str
    timeout: int = 300


@dataclass(frozen=True)
class Pipeline:
    """A smoke workflow: make tiny data, run the steps, check the result, in each image."""

    images: tuple[str, ...]
    data: tuple[WorkflowStep, ...]
    steps: tuple[WorkflowStep, ...]
    asserts: tuple[WorkflowStep, ...]

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
    document: "Document | None" = field(default=None, compare=False, repr=False)

    @classmethod
    def from_document(cls, doc: "Document") -> "Recipe":
        raw: dict[str, Any] = doc.data
        src = raw.get("source") or {"none": ""}  # a metapackage
        kind = next(k for k in (*schema.SOURCE_KINDS, "none") if k in src)
        ref = src[kind]
        if kind == "path":  # relative to the recipe file, so recipes move with their data
            ref = str((doc.path.parent / ref).resolve())
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
            # newline="": a patch to a file with CRLF line endings keeps its CRs, or it
            # would no longer apply.
            patches=tuple(Patch(Path(p).name, _read_patch(doc.path.parent / p))
                          for p in raw.get("patches", ())),
            smoke=tuple(SmokeStep(step["run"]) for step in raw.get("smoke", ())),
            variants=variants, image_docs=(raw.get("image") or {}).get("docs", False),
            components=tuple(raw.get("components", ())),
            pipeline=_pipeline(raw["pipeline"], raw["name"]) if "pipeline" in raw else None,
            path=doc.path, document=doc,
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

    def dependency_relations(self) -> list[tuple[tuple, str]]:
        """Every (YAML path, relation) this recipe needs at build or run time."""
        found = [(("build", "depends", i), rel) for i, rel in enumerate(self.build.depends)]
        for package in self.packages:
            for i, rel in enumerate(package.relations.get("depends", ())):
                found.append((("packages", package.name, "depends", i), rel))
        return found

    def where(self, path: tuple) -> tuple[int, int]:
        """The (line, column) of a YAML path of this recipe."""
        return self.document.where(path) if self.document else (1, 1)

    def fingerprint(self) -> str:
        """A sha256 over everything that affects the built packages (not the file's layout)."""
        data = asdict(replace(self, path=Path(self.path.name), document=None))
        # Smoke tests and pipelines run against packages; they do not change them. Nor do
        # variants: each builds as a recipe of its own (as_variant), keyed by its own.
        data.pop("smoke")
        data.pop("pipeline")
        data.pop("variants")
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()


def _read_patch(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as handle:
        return handle.read()


def _pipeline(raw: dict, name: str) -> Pipeline:
    def steps(key: str) -> tuple[WorkflowStep, ...]:
        return tuple(WorkflowStep(s["name"], s["run"], s.get("timeout", 300))
                     for s in raw.get(key, ()))

    return Pipeline(tuple(raw.get("images", (name,))), steps("data"), steps("steps"),
                    steps("assert"))


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
        from kernbuild.errors import KernError

        recipe = self.by_name.get(name) or self.maker.get(name)
        base, _, variant = name.rpartition("-")
        if recipe is None and variant in getattr(self.by_name.get(base), "variants", {}):
            raise KernError(f"{name} is the {variant} variant of {base}, not a recipe",
                            f"name {base}, with --variant {variant} (kernbuild package)"
                            + (" or --gpu (kernbuild image, kernbuild test)"
                               if variant == "gpu" else ""))
        if recipe is None:
            import difflib

            close = difflib.get_close_matches(name, list(self.by_name), n=1)
            raise KernError(f"no recipe named {name!r}",
                            f"did you mean {close[0]!r}?" if close
                            else "run 'kernbuild graph' to list the suite's recipes")
        return recipe

    def components(self, recipe: Recipe) -> tuple[str, ...]:
        """The Debian archive areas beyond main that installing ``recipe`` needs: its own
        and those of every suite recipe it depends on, in the schema's order."""
        from kernbuild.recipe.graph import closure, dependencies

        # By the recipe's relations, not its name: a variant's recipe is not in the suite.
        wanted = {c for name in closure(self, list(dependencies(self, recipe)))
                  for c in self.by_name[name].components} | set(recipe.components)
        return tuple(c for c in schema.COMPONENTS if c in wanted)

    def names_with_variant(self, variant: str | None = None) -> list[str]:
        """Every recipe's name, or with ``variant`` those of the recipes that have it."""
        return [r.name for r in self.recipes if variant is None or variant in r.variants]

    def with_variant(self, name: str, variant: str) -> tuple["Suite", Recipe]:
        """This suite plus recipe ``name`` built as its ``variant``, and that recipe."""
        from kernbuild.errors import KernError

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

    def problems(self) -> list["Diagnostic"]:
        """Problems that only show with all recipes: clashing names, dependency cycles,
        pipelines naming images the suite does not make."""
        from kernbuild.errors import Diagnostic
        from kernbuild.recipe.graph import cycle_problems, name_clashes

        unknown = []
        for recipe in self.pipelines:
            for index, image in enumerate(recipe.pipeline.images):
                if image not in self.by_name:
                    line, column = recipe.where(("pipeline", "images", index))
                    unknown.append(Diagnostic(recipe.path, line, column,
                                              f"pipeline image {image!r} is no recipe of the suite",
                                              "name a recipe: its image is kern/<name>"))
        cuda = self.settings.gpu.cuda
        for recipe in self.recipes:
            for name, variant in recipe.variants.items():
                if variant.cuda and not cuda_satisfies(cuda, variant.cuda):
                    line, column = recipe.where(("variants", name, "cuda"))
                    unknown.append(Diagnostic(
                        recipe.path, line, column,
                        f"the {name} variant needs CUDA {variant.cuda.strip()}, but the "
                        f"suite's GPU images have CUDA {cuda}",
                        "widen the range, or set gpu.cuda (and the runtime packages) in "
                        "recipes/suite.yaml"))
        return name_clashes(self.recipes) + cycle_problems(self) + unknown

"""Image plans: what an image of a recipe holds, layer by layer.

A plan is rendered by every writer (:mod:`kernbuild.images.writers`) from the
same primitives, so the Dockerfile and the Singularity definition of an image
say the same thing. Plans are pure: they depend on the recipes and the suite
settings only, so the rendered files under ``dockerfiles/`` change only when a
recipe does. What a particular build adds (exact package versions, the base
digest, source checksums) goes into labels at build time and the lockfile.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from kernbuild.recipe.model import BinaryPackage, Recipe, Suite

# Packages an image leaves out unless asked for: they serve builds, not runs.
NOT_IN_IMAGES = ("-dev", "-dbg", "-dbgsym", "-doc")
DEFAULT_REPO_URL = "http://kern-repo"  # the repository as the image build network serves it
GPU_CHECK = "kern-gpu-check"  # the suite recipe every GPU image holds


@dataclass(frozen=True)
class Layer:
    """One install step: these packages, in one layer (one RUN, one %post block)."""

    packages: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class CudaRuntime:
    """Where a GPU image's CUDA runtime comes from: ``kern-apt-install --cuda`` arguments
    (``debian COMPONENTS`` or ``nvidia URL KEYRING_URL``), its CUDA release and packages."""

    source: tuple[str, ...]
    version: str
    packages: tuple[str, ...]


@dataclass(frozen=True)
class ImagePlan:
    """Everything a writer needs to render one image."""

    name: str
    tag: str
    base: str
    distribution: str
    repo_url: str
    layers: tuple[Layer, ...]
    labels: dict[str, str] = field(default_factory=dict)
    smoke: tuple[str, ...] = ()
    docs: bool = False
    cuda: CudaRuntime | None = None  # a GPU image
    env: dict[str, str] = field(default_factory=dict)
    components: tuple[str, ...] = ()  # Debian archive areas beyond main its packages need

    @property
    def packages(self) -> tuple[str, ...]:
        return tuple(p for layer in self.layers for p in layer.packages)


def image_packages(recipe: Recipe) -> tuple[BinaryPackage, ...]:
    """The binary packages of ``recipe`` that go into its image."""
    return tuple(p for p in recipe.packages if not p.name.endswith(NOT_IN_IMAGES))


def is_library(package: BinaryPackage) -> bool:
    return package.name.startswith("lib") or package.section in ("libs", "oldlibs")


GPU_VARIANT = "gpu"


def plan_gpu_image(suite: Suite, recipe: Recipe, base: str) -> ImagePlan:
    """The plan of ``recipe``'s GPU image: its gpu variant's packages on a CUDA runtime
    layer, which every GPU image of the suite shares and which holds ``kern-gpu-check``.

    The image sets what the NVIDIA container toolkit reads (NVIDIA_VISIBLE_DEVICES,
    NVIDIA_DRIVER_CAPABILITIES, NVIDIA_REQUIRE_CUDA) and what kern-gpu-check does
    (KERN_CUDA_VERSION); it never holds the driver's libraries, which the runtime
    injects from the host.
    """
    gpu = suite.settings.gpu
    plan = plan_image(suite, recipe.as_variant(GPU_VARIANT), base)
    source = ("nvidia", gpu.repository, gpu.keyring) if gpu.repository else (
        "debian", " ".join(gpu.components))
    runtime = Layer(tuple(gpu.runtime) + (GPU_CHECK,),
                    f"the CUDA {gpu.cuda} runtime and {GPU_CHECK}, shared by every GPU image")
    if source[0] == "debian":  # --cuda debian adds these areas itself
        plan = replace(plan, components=tuple(c for c in plan.components
                                              if c not in gpu.components))
    return replace(
        plan, layers=(runtime, *plan.layers), cuda=CudaRuntime(source, gpu.cuda, gpu.runtime),
        labels={**plan.labels, "org.kernsuite.gpu": "true", "org.kernsuite.cuda": gpu.cuda},
        env={"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
             "NVIDIA_REQUIRE_CUDA": f"cuda>={gpu.cuda}", "KERN_CUDA_VERSION": gpu.cuda})


def plan_image(suite: Suite, recipe: Recipe, base: str) -> ImagePlan:
    """The plan of ``recipe``'s image on ``base``.

    Layers, lowest first, so that images of several tools share bytes:

    1. the suite's libraries this image shares with another image of the suite:
       shared libraries of this recipe and packages of the suite recipes it needs
       at run time, where another recipe's image holds them too;
    2. the rest: the tool itself and what only it needs.

    A lower layer costs a copy of dpkg's and debconf's state (about a megabyte), so
    there is one only where another image shares it. Debian packages the layers
    depend on come with the first layer that needs them.
    """
    own = image_packages(recipe)
    elsewhere = set().union(*(_libraries(suite, other) | {p.name for p in image_packages(other)}
                              for other in suite.recipes if other.name != recipe.name))
    shared = _libraries(suite, recipe) & elsewhere
    libraries = tuple(sorted(shared))
    tools = tuple(sorted(set(_libraries(suite, recipe)) - shared)) + tuple(
        p.name for p in own if not is_library(p))
    layers = []
    if libraries:
        layers.append(Layer(libraries, "the suite's libraries other images share, below the tool"))
    if tools:
        layers.append(Layer(tools, f"{recipe.name} and what only it needs"))
    settings = suite.settings
    labels = {
        "org.opencontainers.image.title": recipe.name,
        "org.opencontainers.image.description": recipe.summary,
        "org.opencontainers.image.licenses": recipe.license,
        "org.opencontainers.image.version": recipe.debian_version(settings),
        "org.opencontainers.image.base.name": base,
        "org.kernsuite.release": f"{settings.name}-{settings.release}",
    }
    if recipe.homepage:
        labels["org.opencontainers.image.url"] = recipe.homepage
    return ImagePlan(
        name=recipe.name, tag=image_tag(suite, recipe.name), base=base,
        distribution=settings.repo_distribution, repo_url=DEFAULT_REPO_URL,
        layers=tuple(layers), labels=labels, smoke=tuple(s.run for s in recipe.smoke),
        docs=recipe.image_docs, components=suite.components(recipe))


def image_tag(suite: Suite, name: str) -> str:
    """``kern/<name>:<release>``."""
    return f"{suite.settings.name}/{name}:{suite.settings.release}"


def _libraries(suite: Suite, recipe: Recipe) -> set[str]:
    """What could go in ``recipe``'s library layer: its own shared libraries and the
    packages of other suite recipes its image needs."""
    return _suite_dependencies(suite, recipe) | {
        p.name for p in image_packages(recipe) if is_library(p)}


def _suite_dependencies(suite: Suite, recipe: Recipe) -> set[str]:
    """Packages of other suite recipes that ``recipe``'s image needs, transitively."""
    needed: set[str] = set()
    stack = list(image_packages(recipe))
    while stack:
        package = stack.pop()
        for relation in package.relations.get("depends", ()):
            for name in _names(relation):
                maker = suite.maker.get(name)
                if maker and maker.name != recipe.name and name not in needed:
                    needed.add(name)
                    stack.append(next(p for p in maker.packages if p.name == name))
    return needed


def _names(relation: str) -> list[str]:
    from kernbuild.recipe.schema import relation_names

    return relation_names(relation)


def image_names(suite: Suite, gpu: bool = False) -> list[str]:
    """The recipes the suite has images of: each with something to put in an image
    (with ``gpu``, each of those with a gpu variant), by name."""
    return [r.name for r in sorted(suite.recipes, key=lambda r: r.name)
            if image_packages(r) and (not gpu or GPU_VARIANT in r.variants)]


def suite_plans(suite: Suite, base: str) -> list[ImagePlan]:
    """A plan for every recipe that has something to put in an image on ``base``, and a
    GPU plan for every recipe with a gpu variant."""
    return [plan_image(suite, suite.get(name), base) for name in image_names(suite)] + [
        plan_gpu_image(suite, suite.get(name), base) for name in image_names(suite, gpu=True)]

"""Checks across recipes: problems no single recipe shows, found when a suite loads.

Each recipe passed the schema on its own (stage 0) and became a typed
:class:`~kernbuild.recipe.model.Recipe` (stage 1); only with all of them, and the
suite's settings, can two recipes clash, depend on each other in a cycle, or a
recipe ask for an image or a CUDA release the suite does not have. Every problem
is a diagnostic at the recipe line that causes it, through the recipe's source map.
"""

from __future__ import annotations

from kernbuild.cuda import satisfies as cuda_satisfies
from kernbuild.errors import Diagnostic
from kernbuild.limits import quoted
from kernbuild.recipe.model import Recipe, Suite, dependencies


def suite_problems(suite: Suite) -> list[Diagnostic]:
    """Every problem that only shows with all recipes of ``suite`` together."""
    return (name_clashes(suite.recipes) + cycle_problems(suite)
            + unknown_pipeline_images(suite) + unmet_cuda(suite))


def name_clashes(recipes: list[Recipe]) -> list[Diagnostic]:
    """Two recipes with one name, or two recipes making the same binary package."""
    problems: list[Diagnostic] = []
    sources: dict[str, Recipe] = {}
    binaries: dict[str, Recipe] = {}
    for recipe in recipes:
        if recipe.name in sources:
            line, column = recipe.where(("name",))
            problems.append(Diagnostic(recipe.path, line, column,
                                       f"recipe {quoted(recipe.name)} is also defined in "
                                       f"{sources[recipe.name].path}", "rename or remove one"))
        sources.setdefault(recipe.name, recipe)
        for package in recipe.packages:
            if package.name in binaries and binaries[package.name] is not recipe:
                line, column = recipe.where(("packages", package.name))
                problems.append(Diagnostic(recipe.path, line, column,
                                           f"package {quoted(package.name)} is also made by "
                                           f"{binaries[package.name].path}",
                                           "each binary package comes from one recipe"))
            binaries.setdefault(package.name, recipe)
    return problems


def cycle_problems(suite: Suite) -> list[Diagnostic]:
    """One diagnostic per dependency cycle, at the relation that closes it."""
    problems: list[Diagnostic] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    reported: set[frozenset] = set()

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        recipe = suite.by_name[name]
        for dep, path in sorted(dependencies(suite, recipe).items()):
            if state.get(dep) == 1:
                cycle = trail[trail.index(dep):] + [name]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    line, column = recipe.where(path)
                    problems.append(Diagnostic(
                        recipe.path, line, column,
                        "dependency cycle: " + " -> ".join(cycle + [dep]),
                        "a recipe cannot need itself; drop or split one of these dependencies"))
            elif dep not in state:
                visit(dep, trail + [name])
        state[name] = 2

    for name in sorted(suite.by_name):
        if name not in state:
            visit(name, [])
    return problems


def unknown_pipeline_images(suite: Suite) -> list[Diagnostic]:
    """Pipelines naming images the suite does not make."""
    problems: list[Diagnostic] = []
    for recipe in suite.pipelines:
        for index, image in enumerate(recipe.pipeline.images):
            if image not in suite.by_name:
                line, column = recipe.where(("pipeline", "images", index))
                problems.append(Diagnostic(recipe.path, line, column,
                                           f"pipeline image {quoted(image)} is no recipe of "
                                           "the suite",
                                           "name a recipe: its image is kern/<name>"))
    return problems


def unmet_cuda(suite: Suite) -> list[Diagnostic]:
    """Variants whose CUDA range the suite's GPU images are outside of."""
    problems: list[Diagnostic] = []
    cuda = suite.settings.gpu.cuda
    for recipe in suite.recipes:
        for name, variant in recipe.variants.items():
            if variant.cuda and not cuda_satisfies(cuda, variant.cuda):
                line, column = recipe.where(("variants", name, "cuda"))
                problems.append(Diagnostic(
                    recipe.path, line, column,
                    f"the {name} variant needs CUDA {variant.cuda.strip()}, but the "
                    f"suite's GPU images have CUDA {cuda}",
                    "widen the range, or set gpu.cuda (and the runtime packages) in "
                    "recipes/suite.yaml"))
    return problems

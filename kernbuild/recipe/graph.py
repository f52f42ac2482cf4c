"""The dependency graph between recipes: build order, cycles, name clashes.

Recipe A depends on recipe B when one of A's build or runtime relations names
a binary package that B makes: B must be built (and published) first, both
because A's build may need it and because A's packages are not installable
without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kernbuild.errors import Diagnostic, KernError
from kernbuild.recipe.schema import relation_names

if TYPE_CHECKING:
    from kernbuild.recipe.model import Recipe, Suite


def dependencies(suite: "Suite", recipe: "Recipe") -> dict[str, tuple]:
    """The recipes ``recipe`` depends on, each with the YAML path of the first relation."""
    found: dict[str, tuple] = {}
    for path, relation in recipe.dependency_relations():
        for name in relation_names(relation):
            maker = suite.maker.get(name)
            if maker is not None and maker.name != recipe.name and maker.name not in found:
                found[maker.name] = path
    return found


def build_order(suite: "Suite", names: list[str] | None = None) -> list["Recipe"]:
    """Recipes in an order where each comes after everything it depends on.

    With ``names``, only those recipes and what they depend on, transitively.
    Ties are broken by name so the order is the same on every run.
    """
    wanted = closure(suite, [suite.get(n).name for n in names]) if names else set(suite.by_name)
    deps = {n: set(dependencies(suite, suite.by_name[n])) & wanted for n in wanted}
    order: list[str] = []
    ready = sorted(n for n, d in deps.items() if not d)
    while ready:
        name = ready.pop(0)
        order.append(name)
        for other in sorted(wanted - set(order) - set(ready)):
            if deps[other] <= set(order):
                ready.append(other)
        ready.sort()
    if len(order) != len(wanted):  # load_suite already refused cycles; be safe anyway
        raise KernError("dependency cycle between recipes: "
                        + ", ".join(sorted(wanted - set(order))),
                        "run 'kernbuild lint' to see where")
    return [suite.by_name[n] for n in order]


def levels(suite: "Suite", recipes: list["Recipe"]) -> list[list["Recipe"]]:
    """``recipes`` grouped in waves: each wave depends only on earlier waves.

    Recipes in one wave are independent and can be built in parallel.
    """
    names = {r.name for r in recipes}
    depth: dict[str, int] = {}
    for recipe in build_order(suite, sorted(names)):
        if recipe.name in names:
            depth[recipe.name] = 1 + max((depth[d] for d in dependencies(suite, recipe)
                                          if d in depth), default=-1)
    waves: list[list] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for recipe in recipes:
        waves[depth[recipe.name]].append(recipe)
    return waves


def reverse_dependencies(suite: "Suite", name: str) -> set[str]:
    """Every recipe that depends on ``name``, directly or through others."""
    users = {r.name: set(dependencies(suite, r)) for r in suite.recipes}
    found: set[str] = set()
    frontier = {name}
    while frontier:
        frontier = {r for r, deps in users.items() if deps & frontier} - found
        found |= frontier
    return found


def closure(suite: "Suite", names: list[str]) -> set[str]:
    """``names`` and every recipe they depend on, transitively."""
    seen: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(dependencies(suite, suite.by_name[name]))
    return seen


def cycle_problems(suite: "Suite") -> list[Diagnostic]:
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


def name_clashes(recipes: list["Recipe"]) -> list[Diagnostic]:
    """Two recipes with one name, or two recipes making the same binary package."""
    problems: list[Diagnostic] = []
    sources: dict[str, "Recipe"] = {}
    binaries: dict[str, "Recipe"] = {}
    for recipe in recipes:
        if recipe.name in sources:
            line, column = recipe.where(("name",))
            problems.append(Diagnostic(recipe.path, line, column,
                                       f"recipe {recipe.name!r} is also defined in "
                                       f"{sources[recipe.name].path}", "rename or remove one"))
        sources.setdefault(recipe.name, recipe)
        for package in recipe.packages:
            if package.name in binaries and binaries[package.name] is not recipe:
                line, column = recipe.where(("packages", package.name))
                problems.append(Diagnostic(recipe.path, line, column,
                                           f"package {package.name!r} is also made by "
                                           f"{binaries[package.name].path}",
                                           "each binary package comes from one recipe"))
            binaries.setdefault(package.name, recipe)
    return problems

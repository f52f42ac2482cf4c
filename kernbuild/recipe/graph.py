"""The dependency graph between recipes: build order, waves, reverse dependencies.

Its edges, :func:`dependencies` and their :func:`closure`, are defined with the
:class:`~kernbuild.recipe.model.Suite` (which needs them itself) and offered here
with the orders built on them. Refusing a suite whose graph has a cycle is
:mod:`kernbuild.recipe.checks`' job, done when the suite loads.
"""

from __future__ import annotations

from kernbuild.errors import KernError
from kernbuild.recipe.model import Recipe, Suite, closure, dependencies

__all__ = ["build_order", "closure", "dependencies", "levels", "reverse_dependencies"]


def build_order(suite: Suite, names: list[str] | None = None) -> list[Recipe]:
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


def levels(suite: Suite, recipes: list[Recipe]) -> list[list[Recipe]]:
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


def reverse_dependencies(suite: Suite, name: str) -> set[str]:
    """Every recipe that depends on ``name``, directly or through others."""
    users = {r.name: set(dependencies(suite, r)) for r in suite.recipes}
    found: set[str] = set()
    frontier = {name}
    while frontier:
        frontier = {r for r, deps in users.items() if deps & frontier} - found
        found |= frontier
    return found

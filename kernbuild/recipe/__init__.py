"""Recipes, loaded in stages: YAML with positions and the schema, the model, the suite's checks.

:mod:`~kernbuild.recipe.load` runs the stages; :mod:`~kernbuild.recipe.graph`
orders the loaded recipes.
"""

from kernbuild.recipe.load import load_recipe, load_suite
from kernbuild.recipe.model import Recipe, Suite
from kernbuild.recipe.settings import SuiteSettings

__all__ = ["load_recipe", "load_suite", "Recipe", "Suite", "SuiteSettings"]

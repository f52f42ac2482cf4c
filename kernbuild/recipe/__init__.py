"""Recipes: the schema, the loader (YAML with line marks) and the dependency graph."""

from kernbuild.recipe.load import load_recipe, load_suite
from kernbuild.recipe.model import Recipe, Suite, SuiteSettings

__all__ = ["load_recipe", "load_suite", "Recipe", "Suite", "SuiteSettings"]

"""The import layering: model -> pure renderers -> effects -> services -> CLI.

A module may import modules of its own layer or of layers below it, never above: the
model knows nothing of Docker, a renderer runs nothing, an effect never calls a service.
Every import counts, at the top of a file, under TYPE_CHECKING or inside a function.
A module no layer names fails the test, so a new module is placed on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Each layer by the modules (or packages: every module below them) it holds; the most
# specific name decides (kernbuild.recipe.new is a service inside the model's package).
LAYERS: dict[str, tuple[str, ...]] = {
    "model": ("kernbuild", "kernbuild.errors", "kernbuild.results", "kernbuild.cuda",
              "kernbuild.fsutil", "kernbuild.failpoints", "kernbuild.locks", "kernbuild.limits",
              "kernbuild.workspace", "kernbuild.recipe"),
    "render": ("kernbuild.debian", "kernbuild.images", "kernbuild.images.plan",
               "kernbuild.images.writers", "kernbuild.release.notes"),
    "effects": ("kernbuild.runtime", "kernbuild.engine", "kernbuild.sources", "kernbuild.repo",
                "kernbuild.build", "kernbuild.gpu", "kernbuild.nvml", "kernbuild.lockfile",
                "kernbuild.images.docker", "kernbuild.images.rootfs",
                "kernbuild.images.singularity", "kernbuild.images.sif",
                "kernbuild.images.cvmfs", "kernbuild.images.gpu"),
    "services": ("kernbuild.images.build", "kernbuild.matrix", "kernbuild.smoke",
                 "kernbuild.catalogue", "kernbuild.doctor", "kernbuild.recipe.new",
                 "kernbuild.upstream", "kernbuild.release"),
    "cli": ("kernbuild.cli",),
}
ORDER = list(LAYERS)


def layer_of(module: str) -> str | None:
    best, found = -1, None
    for layer, names in LAYERS.items():
        for name in names:
            exact = module == name
            below = module.startswith(name + ".") and name != "kernbuild"
            if (exact or below) and len(name) > best:
                best, found = len(name), layer
    return found


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, module: str) -> set[str]:
    """Every kernbuild module ``path`` imports (``from kernbuild.x import y`` counts as
    kernbuild.x.y where that is a module, else kernbuild.x)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                is_module = (ROOT / Path(*candidate.split("."))).with_suffix(".py").is_file() \
                    or (ROOT / Path(*candidate.split(".")) / "__init__.py").is_file()
                found.add(candidate if is_module else base)
    return {name for name in found if name == "kernbuild" or name.startswith("kernbuild.")}


def test_every_module_has_a_layer():
    unplaced = [module_name(p) for p in sorted((ROOT / "kernbuild").rglob("*.py"))
                if layer_of(module_name(p)) is None]
    assert unplaced == [], "name their layer in LAYERS"


def test_imports_point_down_the_layers():
    upward = []
    for path in sorted((ROOT / "kernbuild").rglob("*.py")):
        module = module_name(path)
        mine = ORDER.index(layer_of(module))
        for imported in sorted(imports_of(path, module)):
            theirs = layer_of(imported)
            if theirs is not None and ORDER.index(theirs) > mine:
                upward.append(f"{module} ({ORDER[mine]}) imports {imported} ({theirs})")
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path):
    """The checker itself: an effect importing a service is found."""
    path = ROOT / "kernbuild" / "runtime" / "__init__.py"
    assert "kernbuild.results" in imports_of(path, "kernbuild.runtime")
    assert layer_of("kernbuild.recipe.new.pypi") == "services"
    assert layer_of("kernbuild.recipe.model") == "model"
    assert layer_of("kernbuild.images.build") == "services"
    assert layer_of("kernbuild.kernbuild_unknown") is None

"""GPU variants and GPU images, without Docker: the derived recipe, its debian/ tree, the
GPU image plan as both writers render it, and the rules that keep the NVIDIA driver's
libraries out of packages' dependencies and out of images."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from kernbuild import debian
from kernbuild.build.package import _refuse_driver_dependencies, driver_dependencies
from kernbuild.cuda import baked_in
from kernbuild.cuda import satisfies as cuda_satisfies
from kernbuild.errors import KernError, RecipeError
from kernbuild.gpu import host_driver_libraries
from kernbuild.images.plan import GPU_CHECK, plan_gpu_image, suite_plans
from kernbuild.images.writers import WRITERS
from kernbuild.matrix import Cell, run_cell
from kernbuild.recipe import load_suite
from kernbuild.results import StepResult
from kernbuild.runtime import Runner
from tests.conftest import recipe_text
from tests.unit.test_cli import kernbuild

ROOT = Path(__file__).resolve().parents[2]

GPU_VARIANT = """\
variants:
  gpu:
    build:
      depends: [nvidia-cuda-toolkit]
      configure: [-DWITH_CUDA=ON]
      env: {BACKEND: cuda}
    cuda: ">=12.0"
    smoke:
      - run: kern-gpu-check || true
"""


@pytest.fixture
def gpu_suite(suite_dir: Path):
    """aa, bb, cc (cc needs bb) with a gpu variant on bb and kern-gpu-check."""
    (suite_dir / "bb.yaml").write_text(
        recipe_text("bb", build_depends=["python3-aa"], extra=GPU_VARIANT).replace(
            "    depends: []", "    depends: [python3-aa]"))
    (suite_dir / "kern-gpu-check.yaml").write_text(recipe_text("kern-gpu-check").replace(
        "python3-kern-gpu-check", "kern-gpu-check"))
    return load_suite(suite_dir)


def test_a_variant_makes_its_own_source_and_binary_packages(gpu_suite):
    gpu_suite_, bb_gpu = gpu_suite.with_variant("bb", "gpu")
    assert bb_gpu.name == "bb-gpu" and bb_gpu.version == "1.0"
    [package] = bb_gpu.packages
    assert package.name == "python3-bb-gpu"
    # It stands in for the plain package, whose dependants accept it...
    assert package.relations["provides"] == ("python3-bb (= ${binary:Version})",)
    assert package.relations["conflicts"] == ("python3-bb",)
    assert package.relations["replaces"] == ("python3-bb",)
    # ...and needs the same other packages.
    assert package.relations["depends"] == ("python3-aa",)
    assert bb_gpu.build.depends == ("python3-aa", "nvidia-cuda-toolkit")
    assert bb_gpu.build.configure == ("-DWITH_CUDA=ON",)
    assert dict(bb_gpu.build.env) == {"BACKEND": "cuda"}
    assert [s.run for s in bb_gpu.smoke] == ['python3 -c "import bb"', "kern-gpu-check || true"]
    assert bb_gpu.fingerprint() != gpu_suite.get("bb").fingerprint()
    # A change to the variant rebuilds the variant, not the plain packages.
    plain = gpu_suite.get("bb")
    other = replace(plain, variants={"gpu": replace(plain.variants["gpu"], cuda=">=12.2")})
    assert other.fingerprint() == plain.fingerprint()
    assert other.as_variant("gpu").fingerprint() != bb_gpu.fingerprint()
    # The plain recipe is untouched and both are in the extended suite.
    assert gpu_suite_.maker["python3-bb"].name == "bb"
    assert gpu_suite_.maker["python3-bb-gpu"].name == "bb-gpu"


def test_sibling_packages_of_a_variant_depend_on_each_others_variants(suite_dir):
    (suite_dir / "lib.yaml").write_text(recipe_text("lib", extra=GPU_VARIANT).replace(
        "  python3-lib:\n    architecture: all\n    depends: []\n",
        "  libfoo1:\n    architecture: any\n    files: [usr/lib]\n"
        "  foo-tools:\n    architecture: any\n    files: [usr/bin]\n"
        "    depends: [\"libfoo1 (= ${binary:Version})\", libfoo1-extra]\n"))
    _, variant = load_suite(suite_dir).with_variant("lib", "gpu")
    tools = {p.name: p for p in variant.packages}["foo-tools-gpu"]
    # libfoo1 is renamed; libfoo1-extra, another package whose name starts alike, is not.
    assert tools.relations["depends"] == ("libfoo1-gpu (= ${binary:Version})", "libfoo1-extra")


def test_asking_for_a_variant_a_recipe_lacks_names_those_that_have_it(gpu_suite):
    with pytest.raises(KernError) as error:
        gpu_suite.with_variant("aa", "gpu")
    assert "aa has no 'gpu' variant" in str(error.value)
    assert "aa.yaml" in str(error.value)
    assert error.value.hint == "recipes with one: bb"


def test_naming_a_variant_as_a_recipe_says_how_to_ask_for_it(gpu_suite):
    with pytest.raises(KernError) as error:
        gpu_suite.get("bb-gpu")
    assert error.value.message == "bb-gpu is the gpu variant of bb, not a recipe"
    assert "--variant gpu" in error.value.hint and "--gpu" in error.value.hint


@pytest.mark.parametrize("version, wanted, ok", [
    ("12.4", ">=12.0", True), ("12.4", ">=11.8, <13", True), ("12.4", "12", True),
    ("12.4", ">=13", False), ("12.4", "<12.4", False), ("13.0", "==13", True),
    ("11.8", ">11.8", False),
])
def test_cuda_ranges(version, wanted, ok):
    assert cuda_satisfies(version, wanted) is ok


def test_a_variant_needing_another_cuda_than_the_suite_has_is_a_lint_error(suite_dir):
    (suite_dir / "bb.yaml").write_text(recipe_text("bb", extra=GPU_VARIANT.replace(
        '">=12.0"', '">=13.0"')))
    with pytest.raises(RecipeError) as error:
        load_suite(suite_dir)
    [problem] = error.value.diagnostics
    line = next(i for i, text in enumerate((suite_dir / "bb.yaml").read_text().splitlines(), 1)
                if text.strip().startswith("cuda:"))
    assert problem.path.name == "bb.yaml" and problem.line == line
    assert "needs CUDA >=13.0, but the suite's GPU images have CUDA 12.4" in problem.message


@pytest.mark.parametrize("gpu, message", [
    ("  cuda: twelve\n", "invalid value 'twelve'"),
    ("  repository: https://nvidia.invalid/cuda\n", "gpu.repository needs gpu.keyring"),
])
def test_suite_gpu_settings_are_checked(suite_dir, gpu, message):
    (suite_dir / "suite.yaml").write_text("name: kern\ngpu:\n" + gpu)
    with pytest.raises(RecipeError) as error:
        load_suite(suite_dir)
    [problem] = error.value.diagnostics
    assert problem.path.name == "suite.yaml" and problem.line in (2, 3)
    assert message in problem.message


def test_a_cuda_variant_leaves_the_driver_packages_out_of_its_dependencies(gpu_suite):
    _, bb_gpu = gpu_suite.with_variant("bb", "gpu")
    rules = debian.rules(bb_gpu)
    assert "override_dh_shlibdeps:" in rules
    assert "-xlibcuda1 -xlibnvidia-ml1" in rules
    assert "override_dh_shlibdeps" not in debian.rules(gpu_suite.get("bb"))
    control = debian.control(bb_gpu, gpu_suite.settings)
    assert "Source: bb-gpu" in control and "Package: python3-bb-gpu" in control
    assert "Provides: python3-bb (= ${binary:Version})" in control


def test_driver_dependencies_are_found_in_alternatives_and_virtual_packages():
    assert driver_dependencies(
        "libc6 (>= 2.34), libcuda1 (>= 396) | libcuda.so.1 (>= 396), libnvrtc12") == [
        "libcuda.so.1", "libcuda1"]
    assert driver_dependencies("libnvidia-tesla-535-ml1 | libnvidia-ml1") == [
        "libnvidia-ml1", "libnvidia-tesla-535-ml1"]
    # The CUDA toolkit's runtime libraries are not the driver's; nor is a -dev package.
    assert driver_dependencies("libcudart12, libnvrtc12, libcublas12, libnvidia-ml-dev") == []
    assert driver_dependencies("") == []


def test_driver_libraries_are_found_by_file_name_but_not_link_stubs():
    paths = ["/usr/lib/x86_64-linux-gnu/libcuda.so.1",
             "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15",
             "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1",
             "/usr/lib/x86_64-linux-gnu/libnvidia-ptxjitcompiler.so.1",
             "/usr/lib/x86_64-linux-gnu/libEGL_nvidia.so.0",
             "/usr/lib/x86_64-linux-gnu/stubs/libcuda.so",
             "/usr/lib/x86_64-linux-gnu/libcudart.so.12",
             "/usr/lib/x86_64-linux-gnu/libnvrtc.so.12",
             "/usr/lib/x86_64-linux-gnu/libnvrtc-builtins.so.12.4"]
    assert baked_in(paths) == sorted(paths[:5])


def test_host_driver_libraries_of_a_fake_root(tmp_path):
    lib = tmp_path / "usr/lib/x86_64-linux-gnu"
    lib.mkdir(parents=True)
    for name in ("libcuda.so.1", "libnvidia-ml.so.1", "libcudart.so.12", "libc.so.6"):
        (lib / name).write_text("")
    assert [p.name for p in host_driver_libraries(tmp_path)] == [
        "libcuda.so.1", "libnvidia-ml.so.1"]


def _deb(tmp_path: Path, name: str, depends: str) -> Path:
    tree = tmp_path / name
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0-1kern1\nArchitecture: all\nMaintainer: t <t@t.t>\n"
        f"Depends: {depends}\nDescription: test\n")
    deb = tmp_path / f"{name}_1.0-1kern1_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(deb)],
                   check=True, capture_output=True)
    return deb


def test_a_package_depending_on_the_driver_is_refused(tmp_path, gpu_suite):
    good = _deb(tmp_path, "good", "libc6, libcudart12")
    bad = _deb(tmp_path, "bad", "libc6,\n libcuda1 (>= 396) | libcuda.so.1 (>= 396)")
    recipe = gpu_suite.get("bb")
    _refuse_driver_dependencies(recipe, [good])
    with pytest.raises(KernError) as error:
        _refuse_driver_dependencies(recipe, [good, bad])
    assert "bad depends on the NVIDIA driver's libraries (libcuda.so.1, libcuda1)" in str(
        error.value)
    assert "bb.yaml" in error.value.hint


def test_a_gpu_image_sits_on_the_shared_cuda_runtime_layer(gpu_suite):
    plan = plan_gpu_image(gpu_suite, gpu_suite.get("bb"), "kern/base:trixie")
    assert plan.name == "bb-gpu" and plan.tag == "kern/bb-gpu:9"
    # python3-aa is in aa's image too: a layer of its own, as in any image.
    assert [layer.packages for layer in plan.layers] == [
        ("libcudart12", GPU_CHECK), ("python3-aa",), ("python3-bb-gpu",)]
    assert plan.env == {"NVIDIA_VISIBLE_DEVICES": "all",
                        "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
                        "NVIDIA_REQUIRE_CUDA": "cuda>=12.4", "KERN_CUDA_VERSION": "12.4"}
    assert plan.labels["org.kernsuite.cuda"] == "12.4"
    assert plan.cuda.source == ("debian", "contrib non-free")
    dockerfile = WRITERS["docker"].render(plan)
    assert "RUN kern-apt-install --cuda debian 'contrib non-free'\n" in dockerfile
    # Dockerfile quoting: no JSON escapes, which Docker would not undo.
    assert 'ENV NVIDIA_REQUIRE_CUDA="cuda>=12.4"\n' in dockerfile
    assert dockerfile.index("--cuda") < dockerfile.index("KERN_LAYER_1")
    definition = WRITERS["singularity"].render(plan)
    assert "    kern-apt-install --cuda debian 'contrib non-free'\n" in definition
    assert "    export NVIDIA_REQUIRE_CUDA='cuda>=12.4'\n" in definition


def test_nvidias_repository_replaces_debians_where_configured(gpu_suite, suite_dir):
    (suite_dir / "suite.yaml").write_text(
        "name: kern\nrelease: 9\ngpu:\n  cuda: '12.6'\n  runtime: [cuda-cudart-12-6]\n"
        "  repository: https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64\n"
        "  keyring: https://developer.download.nvidia.com/keyring.gpg\n")
    suite = load_suite(suite_dir)
    plan = plan_gpu_image(suite, suite.get("bb"), "kern/base:trixie")
    assert plan.layers[0].packages == ("cuda-cudart-12-6", GPU_CHECK)
    assert plan.cuda.source[0] == "nvidia"
    assert "--cuda nvidia https://developer.download.nvidia.com/compute/cuda/repos/debian12/" \
           "x86_64 https://developer.download.nvidia.com/keyring.gpg" in WRITERS["docker"].render(
               plan)


def test_the_suite_renders_a_gpu_image_for_each_gpu_variant():
    names = [plan.name for plan in suite_plans(load_suite(ROOT / "recipes"), "kern/base:x")]
    assert "pyvkfft" in names and "pyvkfft-gpu" in names
    assert not any(n.endswith("-gpu") and n != "pyvkfft-gpu" for n in names)


# --- the matrix: kern-gpu-check before every GPU cell -----------------------------------

class ScriptedTarget(Runner):
    """Answers kern-gpu-check as told, and passes every workflow step."""

    name, form = "scripted", "docker"

    def __init__(self, check_exit: int, check_output: str) -> None:
        self.check = (check_exit, check_output)
        self.commands: list[str] = []

    def run(self, image, command, cwd=None, timeout=60):
        self.commands.append(command)
        if command == GPU_CHECK:
            return StepResult(command, self.check[0], self.check[1], 0.1)
        return StepResult(command, 0, "ok\n", 0.1)


@pytest.fixture(scope="module")
def pyvkfft_pipeline():
    return load_suite(ROOT / "recipes").get("pyvkfft")


@pytest.mark.parametrize("exit_code, output, reason", [
    (2, "no GPU visible: no NVIDIA kernel module (/proc/driver/nvidia/version not found)\n",
     "kern-gpu-check: no GPU visible: no NVIDIA kernel module (/proc/driver/nvidia/version "
     "not found)"),
    # its note on stderr may come after its verdict: the verdict is the reason
    (3, "driver/library version mismatch: kernel module 535.104.05, user-space library "
        "550.54.15\nkern-gpu-check: see nvidia-smi\n",
     "kern-gpu-check: driver/library version mismatch: kernel module 535.104.05, user-space "
     "library 550.54.15"),
    (4, "driver too old: 520.61.05 < 550.54.14 needed by CUDA 12.4\n",
     "kern-gpu-check: driver too old: 520.61.05 < 550.54.14 needed by CUDA 12.4"),
    (127, "", "kern-gpu-check: exit 127"),
])
def test_a_gpu_cell_whose_check_fails_is_skipped_with_its_line(pyvkfft_pipeline, tmp_path,
                                                               exit_code, output, reason):
    target = ScriptedTarget(exit_code, output).with_gpu()
    cell = Cell(pyvkfft_pipeline, "pyvkfft-gpu", "docker", target, "sha256:g", "sha256:g")
    result = run_cell(cell, tmp_path)
    assert (result.status, result.reason) == ("skip", reason)
    assert target.commands == [GPU_CHECK]  # no workflow step ran
    assert [(s.phase, s.name) for s in result.steps] == [("gpu", GPU_CHECK)]


def test_a_gpu_cell_runs_its_workflow_after_a_passing_check(pyvkfft_pipeline, tmp_path):
    target = ScriptedTarget(0, "OK: driver 550.54.15 (CUDA 12.4 needs >= 550.54.14): 1 GPU: "
                               "NVIDIA H100 80GB HBM3, 81559 MiB\n").with_gpu()
    cell = Cell(pyvkfft_pipeline, "pyvkfft-gpu", "docker", target, "sha256:g", "sha256:g")
    result = run_cell(cell, tmp_path)
    assert result.status == "pass"
    assert [s.phase for s in result.steps] == ["gpu", "data", "step", "assert"]
    # A CPU image's cell never runs the check.
    plain = ScriptedTarget(2, "no GPU visible\n")
    assert run_cell(Cell(pyvkfft_pipeline, "pyvkfft", "docker", plain, "sha256:c",
                         "sha256:c"), tmp_path).status == "pass"
    assert GPU_CHECK not in plain.commands


def test_show_lists_each_variant_with_its_packages(suite_dir):
    (suite_dir / "bb.yaml").write_text(recipe_text("bb", extra=GPU_VARIANT))
    shown = json.loads(kernbuild("show", "bb", "--json", cwd=suite_dir.parent).stdout)
    assert shown["variants"] == {"gpu": {
        "packages": ["python3-bb-gpu"], "build_depends": ["nvidia-cuda-toolkit"],
        "configure": ["-DWITH_CUDA=ON"], "env": {"BACKEND": "cuda"}, "cuda": ">=12.0"}}
    wrong = kernbuild("package", "aa", "--variant", "gpu", cwd=suite_dir.parent)
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert "aa has no 'gpu' variant" in wrong.stderr and "recipes with one: bb" in wrong.stderr

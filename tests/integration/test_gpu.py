"""GPU variants and images on a real engine: pyvkfft's CUDA build, its GPU image, and GPU
matrix cells on a CPU host and against a stand-in driver root.

No GPU here: the host driver that apptainer --nv would bind in is a fake root
(proc/driver/nvidia/version and stub libcuda/libnvidia-ml built from
tests/unit/test_gpu_check.py's sources), bound into the GPU image's root filesystem by
the sif-bwrap target exactly as the real host's libraries would be.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.integration.conftest import Suite, require_tools
from tests.unit.test_gpu_check import STUB_CUDA, STUB_NVML, compile_stub, module_line

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def gpu_image(suite: Suite) -> dict:
    """The suite's gpu variants built, then its GPU images, as typed without names:
    pyvkfft is the one recipe with a gpu variant."""
    built = suite.package("--variant", "gpu")
    assert built["pyvkfft-gpu"]["state"] == "built", built
    [entry] = json.loads(suite.run("image", "--gpu", "--json").stdout)
    assert entry["lock"]["tag"] == "kern/pyvkfft-gpu:1"
    return {"package": built["pyvkfft-gpu"], "image": entry}


def deb_field(deb: str, name: str) -> str:
    return subprocess.run(["dpkg-deb", "--field", deb, name], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_the_gpu_variant_is_a_package_of_its_own_without_the_driver(gpu_image):
    [deb] = gpu_image["package"]["debs"]
    assert Path(deb).name.startswith("python3-pyvkfft-gpu_2025.1.1-1kern1_")
    depends = deb_field(deb, "Depends")
    # Built against CUDA (its runtime compiler is a dependency, from non-free)...
    assert "libnvrtc12" in depends
    # ...linked against libcuda.so.1, which only the host's driver provides...
    files = subprocess.run(["dpkg-deb", "--contents", deb], capture_output=True, text=True,
                           check=True).stdout
    assert "_vkfft_cuda.cpython" in files
    # ...and yet no driver package: it installs anywhere, as Debian's own pyvkfft-cuda
    # (Depends: libcuda1 | libcuda.so.1) does not.
    assert "libcuda" not in depends and "libnvidia" not in depends, depends
    assert deb_field(deb, "Provides") == "python3-pyvkfft (= 2025.1.1-1kern1)"
    assert deb_field(deb, "Conflicts") == "python3-pyvkfft"


def test_the_gpu_image_says_no_gpu_on_a_cpu_host(gpu_image, suite, docker_engine):
    build = gpu_image["image"]
    entry = build["lock"]
    assert entry["tag"] == "kern/pyvkfft-gpu:1" and entry["gpu"] is True
    assert entry["cuda"] == "12.4" and entry["cuda_runtime"].startswith("12.4.")
    assert build["gpu_check"]["exit_code"] == 2
    assert build["gpu_check"]["output"].startswith("no GPU visible: no NVIDIA kernel module")
    # The recipe's smoke step (an FFT on PoCL) and the variant's (its CUDA backend) passed.
    assert [r["exit_code"] for r in build["smoke"]] == [0, 0]
    assert "CUDA backend present" in build["smoke"][1]["output"]
    image = docker_engine.images.get(entry["tag"])
    env = dict(item.split("=", 1) for item in image.attrs["Config"]["Env"])
    assert env["NVIDIA_REQUIRE_CUDA"] == "cuda>=12.4"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert image.labels["org.kernsuite.cuda"] == "12.4"
    # No driver library anywhere in the image (the build checked; look again).
    found = docker_engine.containers.run(
        entry["tag"], ["sh", "-c", "find / -xdev -name 'libcuda.so*' -o -name 'libnvidia-ml*'"],
        remove=True).decode()
    assert found.strip() == ""
    # kern.lock records it as a GPU image, which is what 'kernbuild doctor --gpu' reads.
    locked = json.loads((suite.recipes.parent / "kern.lock").read_text())["images"][entry["tag"]]
    assert (locked["gpu"], locked["cuda"]) == (True, "12.4")
    doctor = json.loads(suite.run("doctor", "--gpu", "--json", check=False).stdout)
    [verdict] = [i for i in doctor["gpu"]["images"] if i["tag"] == entry["tag"]]
    assert verdict["runnable"] is False


def stand_in_driver(root: Path, module: str, nvml: str) -> Path:
    """A fake driver root: the kernel module's version file and stub driver libraries,
    whose NVML reports ``nvml`` as its version."""
    require_tools(("gcc", "gcc"))
    lib = root / "usr/lib/x86_64-linux-gnu"
    lib.mkdir(parents=True)
    (root / "proc/driver/nvidia").mkdir(parents=True)
    (root / "proc/driver/nvidia/version").write_text(module_line(module))
    compile_stub(STUB_CUDA, lib / "libcuda.so.1", "libcuda.so.1")
    compile_stub(STUB_NVML.replace('"550.54.15"', f'"{nvml}"'), lib / "libnvidia-ml.so.1",
                 "libnvidia-ml.so.1")
    return root


def gpu_cells(suite: Suite, **env: str) -> dict[tuple, dict]:
    result = suite.run("test", "--pipeline", "pyvkfft", "--gpu", "--target", "docker",
                       "--target", "sif-bwrap", "--json", env=env)
    return {(c["image"], c["target"]): c for c in json.loads(result.stdout)}


def test_gpu_cells_are_skipped_with_the_checks_reason_on_a_cpu_host(gpu_image, suite):
    require_tools(("bwrap", "bubblewrap"))
    cells = gpu_cells(suite)
    assert cells[("pyvkfft", "docker")]["status"] == "pass"
    assert cells[("pyvkfft", "sif-bwrap")]["status"] == "pass"
    for target in ("docker", "sif-bwrap"):
        cell = cells[("pyvkfft-gpu", target)]
        assert cell["status"] == "skip", cell
        assert cell["reason"] == ("kern-gpu-check: no GPU visible: no NVIDIA kernel module "
                                  "(/proc/driver/nvidia/version not found)"), cell


@pytest.mark.parametrize("module, nvml, status, reason", [
    ("550.54.15", "550.54.15", "pass", ""),
    ("535.104.05", "550.54.15", "skip", "kern-gpu-check: driver/library version mismatch"),
    ("520.61.05", "520.61.05", "skip", "kern-gpu-check: driver too old"),
])
def test_gpu_cells_run_where_the_hosts_driver_passes_the_check(gpu_image, suite, tmp_path,
                                                                module, nvml, status, reason):
    """The driver bound into the GPU image's root filesystem as apptainer --nv binds it."""
    require_tools(("bwrap", "bubblewrap"))
    root = stand_in_driver(tmp_path / "driver", module, nvml)
    cell = gpu_cells(suite, KERN_GPU_ROOT=str(root))[("pyvkfft-gpu", "sif-bwrap")]
    assert cell["status"] == status, cell
    assert cell["reason"].lower().startswith(reason.lower()), cell
    check = cell["steps"][0]
    assert (check["phase"], check["name"]) == ("gpu", "kern-gpu-check")
    if status == "pass":
        assert "OK: driver 550.54.15" in check["output"]
        assert "1 GPU: NVIDIA H100 80GB HBM3, 81559 MiB" in check["output"]
        assert [s["exit_code"] for s in cell["steps"]] == [0, 0, 0, 0]


def test_a_driver_library_baked_into_an_image_fails_its_build(suite, docker_engine, tmp_path):
    """A package that ships libcuda.so.1 itself: the GPU image build refuses it, names the
    file and its package, and leaves no image behind."""
    recipes = tmp_path / "recipes"
    shutil.copytree(suite.recipes, recipes)
    source = recipes / "bundled-driver"
    source.mkdir()
    (source / "libcuda.so.1").write_text("not a real library\n")
    (source / "Makefile").write_text(
        "install:\n\tinstall -D -m644 libcuda.so.1 "
        "$(DESTDIR)/usr/lib/x86_64-linux-gnu/libcuda.so.1\n")
    (recipes / "bundled-driver.yaml").write_text(textwrap.dedent("""\
        name: bundled-driver
        version: "1.0"
        summary: a tool that ships its own copy of the driver's libcuda
        description: |
          What the build must refuse.
        license: MIT
        source:
          path: bundled-driver
        build:
          system: make
        packages:
          bundled-driver:
            architecture: all
        variants:
          gpu: {}
        """))
    other = Suite(recipes, suite.state)
    result = other.run("image", "bundled-driver", "--gpu", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "kern/bundled-driver-gpu:1 holds the NVIDIA driver's libraries" in result.stderr
    assert "bundled-driver-gpu: /usr/lib/x86_64-linux-gnu/libcuda.so.1" in result.stderr
    assert "Traceback" not in result.stderr
    from docker.errors import ImageNotFound

    with pytest.raises(ImageNotFound):
        docker_engine.images.get("kern/bundled-driver-gpu:1")

"""``kernbuild doctor [--gpu] [--json]`` against a fake root, stub driver libraries and a
stub nvidia-smi: every way a host's GPU can be unusable, without a GPU or a Docker engine.

The fake root holds proc/driver/nvidia/version ($KERN_GPU_ROOT); libnvidia-ml.so.1 and
libcuda.so.1 are the stubs of test_gpu_check.py, compiled here and found through
LD_LIBRARY_PATH by the NVML probe (a subprocess, so the variable applies); nvidia-smi is a
script on PATH that prints $STUB_SMI_OUTPUT and exits $STUB_SMI_EXIT. The command runs in
this process through typer's CliRunner with the Docker engine replaced by a fake one (or
pointed at a socket where none answers), and once as a user runs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kernbuild import cuda as cuda_
from kernbuild import engine, gpu, lockfile
from kernbuild.cli import app
from kernbuild.runtime.tools import TOOLS
from kernbuild.errors import KernError
from tests.unit.test_gpu_check import (NVML_FILE, STUB_CUDA, STUB_NVML, compile_stub,
                                      loadable_on_this_host, module_line)

ROOT = Path(__file__).resolve().parents[2]
GPU_CHECK_SOURCE = ROOT / "recipes" / "kern-gpu-check"

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None,
                               reason="gcc is needed to build the stub driver libraries")

# A stub NVML that kills whatever loads it, as a broken driver library can.
CRASHING_NVML = STUB_NVML + """
#include <signal.h>
__attribute__((constructor)) static void crash(void) { raise(SIGSEGV); }
"""

SMI_STUB = '#!/bin/sh\nprintf "%s\\n" "$STUB_SMI_OUTPUT"\nexit "${STUB_SMI_EXIT:-0}"\n'
H100 = "550.54.15, NVIDIA H100 80GB HBM3, 81559"
ENGINE = {"ServerVersion": "26.1.5", "Driver": "overlay2",
          "Runtimes": {"runc": {"path": "runc"}, "nvidia": {"path": "nvidia-container-runtime"}}}
IMAGES = {"kern/wsclean-gpu:1": {"gpu": True, "cuda": "12.4"},
          "kern/losoto:1": {"recipe": "losoto"}}  # no "gpu": a CPU image, not judged


@pytest.fixture(scope="module")
def stubs(tmp_path_factory) -> dict[str, Path]:
    """Directories of stub driver libraries: ok (libcuda + NVML), nvml-only, crash (an NVML
    that segfaults when loaded); and kern-gpu-check built from its source."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the stub driver libraries")
    base = tmp_path_factory.mktemp("doctor-stubs")
    dirs = {name: base / name for name in ("ok", "nvml-only", "crash")}
    for directory in dirs.values():
        directory.mkdir()
    compile_stub(STUB_CUDA, dirs["ok"] / "libcuda.so.1", "libcuda.so.1")
    # The real file name carries the driver version, as on a host.
    for directory in (dirs["ok"], dirs["nvml-only"]):
        compile_stub(STUB_NVML, directory / NVML_FILE, "libnvidia-ml.so.1")
        (directory / "libnvidia-ml.so.1").symlink_to(NVML_FILE)
    compile_stub(CRASHING_NVML, dirs["crash"] / "libnvidia-ml.so.1", "libnvidia-ml.so.1")
    source = base / "kern-gpu-check"  # built as its package is: make, from a copy
    shutil.copytree(GPU_CHECK_SOURCE, source)
    subprocess.run(["make", "-C", str(source)], check=True, capture_output=True)
    return {**dirs, "program": source / "kern-gpu-check"}


class FakeEngine:
    """A Docker client whose engine answers ``info()`` with fixed facts."""

    def __init__(self, info: dict) -> None:
        self._info = info

    def info(self) -> dict:
        return self._info


@pytest.fixture
def host(request, tmp_path, monkeypatch):
    """Run ``kernbuild doctor ARGS`` on a fake host; return (exit status, JSON or text).

    module: the kernel module's version (None: no module); libs: which stub libraries
    ("none": no driver library; the others need gcc, so only these tests skip without it);
    smi: nvidia-smi's (output, exit status), None for no nvidia-smi; docker: the engine's
    info (None: no engine answers); tools: which of kernbuild's tools are installed;
    images: kern.lock's images (a string: its whole text); stub: STUB_* variables for the stub NVML.
    """
    def run(*args: str, module: str | None = "550.54.15", open_module: bool = False,
            libs: str = "ok", smi: tuple[str, int] | None = (H100, 0),
            docker: dict | None = ENGINE, tools: tuple[str, ...] | None = None,
            images: dict | str | None = None, **stub: str):
        root = tmp_path / "root"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        if module is not None:
            (root / "proc/driver/nvidia").mkdir(parents=True)
            (root / "proc/driver/nvidia/version").write_text(module_line(module, open_module))
        bin_dir = tmp_path / "bin"
        shutil.rmtree(bin_dir, ignore_errors=True)
        bin_dir.mkdir()
        installed = tools if tools is not None else [t.programs[0] for t in TOOLS.values()]
        for program in installed:
            (bin_dir / program).write_text("#!/bin/sh\nexit 0\n")
            (bin_dir / program).chmod(0o755)
        if smi is not None:
            (bin_dir / "nvidia-smi").write_text(SMI_STUB)
            (bin_dir / "nvidia-smi").chmod(0o755)
            monkeypatch.setenv("STUB_SMI_OUTPUT", smi[0])
            monkeypatch.setenv("STUB_SMI_EXIT", str(smi[1]))
        (tmp_path / "kern.lock").unlink(missing_ok=True)
        if images is not None:
            (tmp_path / "kern.lock").write_text(
                images if isinstance(images, str) else json.dumps({"images": images}))
        monkeypatch.setenv("PATH", str(bin_dir))
        libraries = tmp_path / "no-libraries"
        libraries.mkdir(exist_ok=True)
        if libs != "none" and "--gpu" in args:  # without --gpu no library is loaded
            libraries = request.getfixturevalue("stubs")[libs]
        monkeypatch.setenv("LD_LIBRARY_PATH", str(libraries))
        monkeypatch.setenv("KERN_GPU_ROOT", str(root))
        for name, value in stub.items():
            monkeypatch.setenv(name, value)
        if docker is None:
            monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
        else:
            monkeypatch.setattr(engine, "connect", lambda: FakeEngine(docker))
        result = CliRunner().invoke(app, ["--recipes", str(tmp_path / "recipes"), "doctor",
                                          *args])
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            result.exception
        if "--json" in args:
            return result.exit_code, json.loads(result.stdout)
        return result.exit_code, " ".join(result.stdout.split())  # cells wrap: unwrap them

    return run


def checks(report: dict) -> dict[tuple[str, str], tuple[str, str]]:
    """(section, name) -> (status, detail) of a --json report."""
    return {(c["section"], c["name"]): (c["status"], c["detail"]) for c in report["checks"]}


# --- the table of minimum drivers -------------------------------------------------------


@pytest.mark.parametrize(("cuda", "driver"), [
    ("12.4", "550.54.14"), ("12.4.1", "550.54.14"), ("12.0", "525.60.13"),
    ("13.0", "580.65.06"), ("12.7", "525.60.13"), ("13.1", "580.65.06"), ("12", "525.60.13"),
    ("11.0", "450.80.02"),  # 11.0's own row (450.51.05) is below the 11.x floor
    ("11.8", "520.61.05"), ("14.0", None), ("10.2", None), ("twelve", None), ("12.", None),
])
def test_minimum_driver(cuda, driver):
    assert cuda_.minimum_driver(cuda) == driver


@needs_gcc
def test_minimum_driver_answers_as_kern_gpu_check(stubs, tmp_path):
    """The C program, with a driver new enough for everything, says what it needs."""
    (tmp_path / "proc/driver/nvidia").mkdir(parents=True)
    (tmp_path / "proc/driver/nvidia/version").write_text(module_line("999.1"))
    env = {"KERN_GPU_ROOT": str(tmp_path), "LD_LIBRARY_PATH": str(stubs["ok"]),
           "STUB_NVML_DRIVER": "999.1", "PATH": "/usr/bin:/bin"}
    versions = [f"{major}.{minor}" for major, minor in cuda_.driver_table()[0]]
    for cuda in [*versions, "11", "12.7", "12.4.1", "13.4", "14.0"]:
        done = subprocess.run([str(stubs["program"]), cuda], env=env, capture_output=True,
                              text=True, check=False)
        said = re.search(r"needs >= ([\d.]+)\)", done.stdout)
        assert (said.group(1) if said else None) == cuda_.minimum_driver(cuda), (cuda, done)


# --- reading the driver -------------------------------------------------------------------


@pytest.mark.parametrize("open_module", [False, True])
def test_module_version_from_proc(tmp_path, open_module):
    (tmp_path / "proc/driver/nvidia").mkdir(parents=True)
    (tmp_path / "proc/driver/nvidia/version").write_text(module_line("570.86.15", open_module))
    assert gpu.module_version(tmp_path) == gpu.Reading("kernel module", "570.86.15")


def test_module_version_missing_or_unparsable(tmp_path):
    path = tmp_path / "proc/driver/nvidia/version"
    assert gpu.module_version(tmp_path).error == (
        f"no NVIDIA kernel module loaded ({path} not found)")
    path.parent.mkdir(parents=True)
    path.write_text("NVRM version: something else\n")
    assert gpu.module_version(tmp_path).error == f"no kernel module version in {path}"
    assert gpu.module_version(tmp_path).version is None


def test_gpu_root_defaults_to_slash():
    assert gpu.gpu_root({}) == Path("/") and gpu.gpu_root({"KERN_GPU_ROOT": "/x"}) == Path("/x")


@needs_gcc
def test_a_crashing_nvml_is_a_reading_not_a_crash(stubs):
    reading = gpu.nvml_report({**os.environ, "LD_LIBRARY_PATH": str(stubs["crash"])})
    assert reading.version is None
    assert reading.error == "loading libnvidia-ml.so.1 killed the process (SIGSEGV)"


def test_nvidia_smi_memory_not_available(tmp_path, monkeypatch):
    (tmp_path / "nvidia-smi").write_text(SMI_STUB)
    (tmp_path / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("STUB_SMI_OUTPUT", "550.54.15, NVIDIA GH200 480GB, [N/A]")
    monkeypatch.setenv("STUB_SMI_EXIT", "0")
    assert gpu.nvidia_smi_report() == gpu.Reading(
        "nvidia-smi", "550.54.15", (gpu.Gpu(0, "NVIDIA GH200 480GB", None),))


# --- runtimes and images ------------------------------------------------------------------


def test_docker_gpu_support_ways(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    plain = {"Runtimes": {"runc": {"path": "runc"}}}
    assert gpu.docker_runtime(None, "no Docker engine answers", tmp_path) == gpu.Runtime(
        "docker", False, False, "not running: no Docker engine answers")
    assert not gpu.docker_runtime(plain, "", tmp_path).gpu
    assert gpu.docker_runtime(ENGINE, "", tmp_path).detail == (
        "the nvidia runtime (--runtime=nvidia)")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/nvidia-ctk").write_text("#!/bin/sh\n")
    (tmp_path / "bin/nvidia-ctk").chmod(0o755)
    assert gpu.docker_runtime(plain, "", tmp_path).detail == "--gpus (nvidia-ctk)"
    (tmp_path / "bin/nvidia-ctk").unlink()
    spec = tmp_path / "var/run/cdi/nvidia.yaml"
    spec.parent.mkdir(parents=True)
    spec.write_text("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices: []\n")
    (spec.parent / "other.yaml").write_text("kind: vendor.com/device\n")
    support = gpu.docker_runtime(plain, "", tmp_path)
    assert support.gpu and support.detail == f"--device nvidia.com/gpu=all (CDI: {spec})"


def test_gpu_images_from_the_lockfile(tmp_path):
    lock = tmp_path / "kern.lock"
    assert lockfile.gpu_images(lock) == {}
    lock.write_text(json.dumps({"images": {**IMAGES, "kern/x-gpu:1": {"gpu": True},
                                           "kern/y:1": {"gpu": False, "cuda": "12.4"}}}))
    assert lockfile.gpu_images(lock) == {"kern/wsclean-gpu:1": "12.4", "kern/x-gpu:1": None}
    lock.write_text("{")
    with pytest.raises(KernError, match="cannot be read"):
        lockfile.gpu_images(lock)


# --- kernbuild doctor ---------------------------------------------------------------------


def test_doctor_without_gpu_checks_engine_and_tools(host):
    status, report = host("--json")
    assert status == 0 and report["ok"] and report["gpu"] is None
    assert {c["section"] for c in report["checks"]} == {"host", "tools"}
    assert set(report["checks"][0]) == {"section", "name", "status", "detail", "hint"}
    assert checks(report)["host", "docker engine"] == (
        "ok", "Docker 26.1.5, storage driver overlay2")


def test_no_engine_and_a_missing_tool_fail(host, tmp_path):
    status, report = host("--json", docker=None, tools=("apt-ftparchive", "gpg", "dpkg-deb"))
    found = checks(report)
    assert status == 1 and not report["ok"]
    assert found["host", "docker engine"] == (
        "fail", f"no Docker engine answers at unix://{tmp_path}/no-engine.sock")
    assert found["tools", "mmdebstrap"][0] == "fail"
    assert found["tools", "apptainer/singularity"] == (
        "warn", ("none on this host; the apptainer target runs Debian's 1.4.5-2 in a trixie "
                 "container, made on first use, which needs the Docker engine"))
    status, text = host(docker=None)
    assert status == 1 and "FAIL docker engine no Docker engine answers" in text
    assert "hint: start one" in text and "check(s) failed" in text


@pytest.mark.skipif(loadable_on_this_host("libnvidia-ml.so.1"),
                    reason="this host has a real libnvidia-ml.so.1, so it cannot be absent")
def test_no_gpu_at_all(host, tmp_path):
    status, report = host("--gpu", "--json", module=None, libs="none", smi=None,
                          images=IMAGES)
    found, facts = checks(report), report["gpu"]
    path = tmp_path / "root/proc/driver/nvidia/version"
    assert status == 1
    assert found["driver", "kernel module"] == (
        "fail", f"no NVIDIA kernel module loaded ({path} not found)")
    assert found["driver", "NVML"][0] == "fail"
    assert "libnvidia-ml.so.1 is not loadable" in found["driver", "NVML"][1]
    assert found["driver", "nvidia-smi"] == ("warn", "nvidia-smi is not on PATH")
    assert found["driver", "versions agree"][0] == "skip"
    assert found["gpus", "usable"] == (
        "fail", f"no usable GPU: no NVIDIA kernel module loaded ({path} not found)")
    assert facts["gpus"] == [] and not facts["usable"]
    assert facts["images"] == [{"tag": "kern/wsclean-gpu:1", "cuda": "12.4",
                                "minimum_driver": "550.54.14", "runnable": False,
                                "reason": f"no usable GPU: no NVIDIA kernel module loaded "
                                          f"({path} not found)"}]
    runtimes = {r["name"]: r for r in facts["runtimes"]}
    assert not any(r["gpu"] for name, r in runtimes.items() if name != "docker")
    assert runtimes["udocker"]["detail"] == (
        "--nvidia: libcuda.so.1 and libnvidia-ml.so.1 not found on this host")


@pytest.mark.skipif(loadable_on_this_host("libnvidia-ml.so.1"),
                    reason="this host has a real libnvidia-ml.so.1, so it cannot be absent")
def test_no_gpu_as_a_user_sees_it(tmp_path):
    """The real entry point: a readable report, exit 1, no traceback."""
    env = {**os.environ, "KERN_GPU_ROOT": str(tmp_path), "COLUMNS": "200",
           "LD_LIBRARY_PATH": str(tmp_path), "PATH": str(tmp_path),
           "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    done = subprocess.run([sys.executable, "-m", "kernbuild.cli", "doctor", "--gpu"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    lines = [" ".join(line.split()) for line in done.stdout.splitlines()]
    assert "FAIL kernel module no NVIDIA kernel module loaded " \
           f"({tmp_path}/proc/driver/nvidia/version not found)" in lines
    assert "warn nvidia-smi nvidia-smi is not on PATH" in lines
    assert f"- kern.lock no GPU images in {tmp_path}/kern.lock" in lines


@needs_gcc
def test_nvml_version_mismatch_error_18(host):
    status, report = host("--gpu", "--json", images=IMAGES, STUB_NVML_INIT="18",
                          smi=(("Failed to initialize NVML: Driver/library version mismatch\n"
                                "NVML library version: 550.90"), 18))
    found, facts = checks(report), report["gpu"]
    assert status == 1
    assert found["driver", "kernel module"] == ("ok", "550.54.15")
    # NVML says nothing once its init failed: the library's file name gives its version.
    assert found["driver", "NVML"] == (
        "fail", "Driver/library version mismatch (library version 550.90.07)")
    assert facts["driver"]["NVML"]["mismatch"] and facts["driver"]["nvidia-smi"]["mismatch"]
    assert found["driver", "nvidia-smi"] == (
        "fail", ("Failed to initialize NVML: Driver/library version mismatch; "
                 "NVML library version: 550.90"))
    assert found["driver", "versions agree"] == (
        "fail", ("550.54.15 (kernel module) vs 550.90.07 (NVML); "
                 "NVML: Driver/library version mismatch; nvidia-smi: Failed to initialize "
                 "NVML: Driver/library version mismatch; NVML library version: 550.90"))
    assert not facts["versions_agree"] and not facts["usable"]
    assert [c["hint"] for c in report["checks"] if c["name"] == "versions agree"] == [
        gpu.RELOAD_HINT]
    assert not facts["images"][0]["runnable"]
    _, text = host("--gpu", images=IMAGES, STUB_NVML_INIT="18",
                   smi=("Failed to initialize NVML: Driver/library version mismatch", 18))
    assert "reboot, or reload the nvidia module after a driver upgrade" in text


@needs_gcc
def test_module_and_nvml_versions_differ(host):
    newer = "550.90.07, NVIDIA H100 80GB HBM3, 81559"
    status, report = host("--gpu", "--json", images=IMAGES, STUB_NVML_DRIVER="550.90.07",
                          smi=(newer, 0))
    found, facts = checks(report), report["gpu"]
    assert status == 1
    assert found["driver", "NVML"][0] == "ok" and found["driver", "NVML"][1].startswith(
        "550.90.07 (") and found["driver", "NVML"][1].endswith(f"/{NVML_FILE})")
    assert found["driver", "versions agree"] == (
        "fail", "550.54.15 (kernel module) vs 550.90.07 (NVML, nvidia-smi)")
    assert found["gpus", "GPU 0"] == ("ok", "NVIDIA H100 80GB HBM3, 81559 MiB")
    assert found["gpus", "usable"] == (
        "fail", ("no usable GPU: driver versions disagree: "
                 "550.54.15 (kernel module) vs 550.90.07 (NVML, nvidia-smi)"))
    assert facts["images"][0]["reason"].startswith("no usable GPU: driver versions disagree")


@needs_gcc
def test_nvidia_smi_disagreeing(host):
    status, report = host("--gpu", "--json",
                          smi=("535.104.05, NVIDIA H100 80GB HBM3, 81559", 0))
    assert status == 1
    assert checks(report)["driver", "versions agree"] == (
        "fail", "550.54.15 (kernel module, NVML) vs 535.104.05 (nvidia-smi)")


@needs_gcc
def test_nvidia_smi_failing_alone_is_a_warning(host):
    message = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
               "driver. Make sure that the latest NVIDIA driver is installed and running.")
    status, report = host("--gpu", "--json", images=IMAGES, smi=(message, 9))
    found = checks(report)
    assert found["driver", "nvidia-smi"] == ("warn", message)
    assert found["driver", "versions agree"] == ("ok", "550.54.15 (kernel module, NVML)")
    assert status == 0 and report["gpu"]["usable"] and report["gpu"]["images"][0]["runnable"]


@needs_gcc
def test_driver_too_old_for_an_images_cuda(host):
    old = "535.104.05"
    images = {**IMAGES, "kern/old-gpu:1": {"gpu": True, "cuda": "12.2"},
              "kern/unknown-gpu:1": {"gpu": True}}
    status, report = host("--gpu", "--json", module=old, images=images, STUB_NVML_DRIVER=old,
                          smi=(f"{old}, NVIDIA A100-SXM4-40GB, 40960", 0))
    found = checks(report)
    assert status == 1 and report["gpu"]["usable"]
    assert found["images", "kern/wsclean-gpu:1"] == (
        "fail", "driver too old: 535.104.05 < 550.54.14 needed by CUDA 12.4")
    assert found["images", "kern/old-gpu:1"] == (
        "ok", "driver 535.104.05 >= 535.54.03 needed by CUDA 12.2")
    assert found["images", "kern/unknown-gpu:1"] == (
        "fail", "kern.lock records no CUDA release for it")
    assert ("images", "kern/losoto:1") not in found


@needs_gcc
def test_all_ok_with_two_gpus(host):
    two = {"STUB_GPU_COUNT": "2", "STUB_GPU_NAME": "NVIDIA H100 80GB HBM3;NVIDIA A100-SXM4-40GB",
           "STUB_GPU_MEMORY_MIB": "81559;40960"}
    smi = (f"{H100}\n550.54.15, NVIDIA A100-SXM4-40GB, 40960", 0)
    status, report = host("--gpu", "--json", images=IMAGES, smi=smi, **two)
    facts = report["gpu"]
    assert status == 0 and report["ok"], [c for c in report["checks"] if c["status"] != "ok"]
    assert facts["gpus"] == [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559},
        {"index": 1, "name": "NVIDIA A100-SXM4-40GB", "memory_mib": 40960}]
    assert facts["driver"]["nvidia-smi"]["gpus"] == facts["gpus"]
    assert facts["usable"] and facts["versions_agree"] and facts["problem"] == ""
    assert {r["name"]: r["gpu"] for r in facts["runtimes"]} == {
        "docker": True, "apptainer": True, "udocker": True, "sif-bwrap": True}
    assert facts["images"] == [{"tag": "kern/wsclean-gpu:1", "cuda": "12.4",
                                "minimum_driver": "550.54.14", "runnable": True,
                                "reason": "driver 550.54.15 >= 550.54.14 needed by CUDA 12.4"}]
    assert set(report) == {"ok", "checks", "gpu"}
    assert set(facts) == {"root", "driver", "versions_agree", "usable", "problem", "gpus",
                          "runtimes", "images"}
    assert set(facts["driver"]) == {"kernel module", "NVML", "nvidia-smi"}
    status, text = host("--gpu", images=IMAGES, smi=smi, **two)
    assert status == 0 and text.endswith("no problems found")
    assert "ok GPU 0 NVIDIA H100 80GB HBM3, 81559 MiB" in text
    assert "ok GPU 1 NVIDIA A100-SXM4-40GB, 40960 MiB" in text
    assert "ok docker the nvidia runtime (--runtime=nvidia)" in text
    assert "ok versions agree 550.54.15 (kernel module, NVML, nvidia-smi)" in text


@needs_gcc
def test_open_kernel_module_is_read_too(host):
    status, report = host("--gpu", "--json", open_module=True)
    assert status == 0 and checks(report)["driver", "kernel module"] == ("ok", "550.54.15")


@needs_gcc
def test_a_crashing_nvml_does_not_take_doctor_down(host):
    status, report = host("--gpu", "--json", libs="crash", smi=None)
    assert status == 1
    assert checks(report)["driver", "NVML"] == (
        "fail", "loading libnvidia-ml.so.1 killed the process (SIGSEGV)")


@needs_gcc
def test_no_gpu_images_and_a_broken_lockfile(host, tmp_path):
    status, report = host("--gpu", "--json", images={})
    assert status == 0 and checks(report)["images", "kern.lock"] == (
        "skip", f"no GPU images in {tmp_path}/kern.lock")
    status, report = host("--gpu", "--json", images="[]")
    assert status == 1 and checks(report)["images", "kern.lock"] == (
        "fail", f"{tmp_path}/kern.lock has no images table")


@needs_gcc
def test_a_driver_listing_no_gpus(host):
    status, report = host("--gpu", "--json", STUB_GPU_COUNT="0", smi=("No devices were found", 6))
    found = checks(report)
    assert status == 1 and report["gpu"]["gpus"] == []
    assert found["driver", "nvidia-smi"] == ("warn", "No devices were found")
    assert found["gpus", "usable"] == ("fail", "no usable GPU: the driver lists no GPUs")


@pytest.mark.skipif(loadable_on_this_host("libcuda.so.1"),
                    reason="this host has a real libcuda.so.1, so it cannot be absent")
@needs_gcc
def test_nvml_without_libcuda(host):
    status, report = host("--gpu", "--json", libs="nvml-only")
    found = checks(report)
    assert status == 1 and found["driver", "NVML"][0] == "ok"
    assert found["gpus", "usable"] == (
        "fail", "no usable GPU: libcuda.so.1, the driver's CUDA library, is not loadable")
    assert found["runtimes", "sif-bwrap"] == ("warn", "libcuda.so.1 not found on this host")

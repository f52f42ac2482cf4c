"""kern-gpu-check (recipes/kern-gpu-check) against a fake root and stub driver libraries.

The program is built with its own Makefile; libcuda.so.1 and libnvidia-ml.so.1 are small
stubs compiled here, whose answers come from environment variables; the fake root holds
proc/driver/nvidia/version. No GPU, driver or nvidia-smi is needed: the program never runs
nvidia-smi (a stub on PATH records any call, and the tests check that none came).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "recipes" / "kern-gpu-check"

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None or shutil.which("make") is None,
    reason="gcc and make are needed to build kern-gpu-check and its stub libraries")

STUB_CUDA = r"""
#include <stdlib.h>
int cuInit(unsigned flags) {
    const char *rc = getenv("STUB_CUDA_INIT");
    (void)flags;
    return rc ? atoi(rc) : 0;
}
int cuDriverGetVersion(int *version) { *version = 12040; return 0; }
"""

# STUB_GPU_NAME and STUB_GPU_MEMORY_MIB hold one entry per GPU, separated by ';'
# (the last entry serves for the GPUs after it).
STUB_NVML = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
static int initialised;
static const char *env(const char *name, const char *fallback) {
    const char *value = getenv(name);
    return value ? value : fallback;
}
static void entry(const char *list, unsigned index, char *out, unsigned size) {
    const char *start = list, *end;
    for (; index > 0 && (end = strchr(start, ';')); index--)
        start = end + 1;
    end = strchr(start, ';');
    unsigned n = end ? (unsigned)(end - start) : (unsigned)strlen(start);
    snprintf(out, size, "%.*s", (int)n, start);
}
int nvmlInit_v2(void) {
    int rc = atoi(env("STUB_NVML_INIT", "0"));
    initialised = rc == 0;
    return rc;
}
int nvmlShutdown(void) { initialised = 0; return 0; }
const char *nvmlErrorString(int rc) { return rc == 18 ? "Driver/library version mismatch" : "Unknown Error"; }
int nvmlSystemGetDriverVersion(char *out, unsigned size) {
    if (!initialised) return 1;  /* NVML_ERROR_UNINITIALIZED, as the real library */
    snprintf(out, size, "%s", env("STUB_NVML_DRIVER", "550.54.15"));
    return 0;
}
int nvmlDeviceGetCount_v2(unsigned *count) { *count = (unsigned)atoi(env("STUB_GPU_COUNT", "1")); return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned index, void **device) { *device = (void *)(size_t)(index + 1); return 0; }
int nvmlDeviceGetName(void *device, char *out, unsigned size) {
    entry(env("STUB_GPU_NAME", "NVIDIA H100 80GB HBM3"), (unsigned)(size_t)device - 1, out, size);
    return 0;
}
int nvmlDeviceGetMemoryInfo(void *device, nvmlMemory_t *memory) {
    char mib[32];
    entry(env("STUB_GPU_MEMORY_MIB", "81559"), (unsigned)(size_t)device - 1, mib, sizeof mib);
    memory->total = strtoull(mib, NULL, 10) * 1024ULL * 1024ULL;
    memory->used = 0;
    memory->free = memory->total;
    return 0;
}
"""

# The user-space library's real file name carries the driver version, as on a host.
NVML_FILE = "libnvidia-ml.so.550.90.07"


# Shared with test_doctor and the GPU integration tests: one fake driver for all of them.

def module_line(version: str, open_module: bool = False) -> str:
    """proc/driver/nvidia/version as the kernel module of ``version`` writes it."""
    kind = ("NVIDIA UNIX Open Kernel Module for x86_64" if open_module
            else "NVIDIA UNIX x86_64 Kernel Module")
    return (f"NVRM version: {kind}  {version}  Tue Mar  5 22:23:56 UTC 2024\n"
            "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")


def loadable_on_this_host(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def compile_stub(source: str, out: Path, soname: str) -> None:
    """A stub driver library from C ``source`` (such as STUB_CUDA), with its soname."""
    c_file = out.with_name(out.name + ".c")
    c_file.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(out),
                    str(c_file)], check=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The program built with its Makefile, and a directory per set of stub libraries."""
    base = tmp_path_factory.mktemp("gpu-check")
    source = base / "src"
    shutil.copytree(SOURCE, source)
    subprocess.run(["make", "-C", str(source)], check=True, capture_output=True)
    stage = base / "stage"
    subprocess.run(["make", "-C", str(source), "install", f"DESTDIR={stage}", "prefix=/usr"],
                   check=True, capture_output=True)
    both, cuda_only, nvml_only = base / "both", base / "cuda-only", base / "nvml-only"
    for d in (both, cuda_only, nvml_only):
        d.mkdir()
    for d in (both, cuda_only):
        compile_stub(STUB_CUDA, d / "libcuda.so.1", "libcuda.so.1")
    for d in (both, nvml_only):
        compile_stub(STUB_NVML, d / NVML_FILE, "libnvidia-ml.so.1")
        (d / "libnvidia-ml.so.1").symlink_to(NVML_FILE)
    bin_dir = base / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text('#!/bin/sh\ntouch "$STUB_SMI_CALLED"\nexit 1\n')
    smi.chmod(0o755)
    return {"program": stage / "usr" / "bin" / "kern-gpu-check", "both": both,
            "cuda-only": cuda_only, "nvml-only": nvml_only, "bin": bin_dir}


def check(built, tmp_path, *, module: str | None = "550.54.15", cuda: str | None = "12.4",
          libs: str = "both", **stub: str) -> tuple[int, str]:
    """Run kern-gpu-check on a fake root; return (exit status, stdout)."""
    root = tmp_path / "root"
    if module is not None:
        (root / "proc" / "driver" / "nvidia").mkdir(parents=True)
        (root / "proc" / "driver" / "nvidia" / "version").write_text(module_line(module))
    else:
        root.mkdir()
    called = tmp_path / "nvidia-smi-called"
    env = {"PATH": f"{built['bin']}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "LD_LIBRARY_PATH": str(built[libs]), "KERN_GPU_ROOT": str(root),
           "STUB_SMI_CALLED": str(called), **stub}
    args = [str(built["program"])] + ([cuda] if cuda is not None else [])
    result = subprocess.run(args, check=False, env=env, capture_output=True, text=True, timeout=30)
    assert not called.exists(), "kern-gpu-check must not run nvidia-smi"
    assert result.stdout.count("\n") == 1 or result.returncode == 64, result.stdout
    return result.returncode, result.stdout.rstrip("\n")


def test_ok_with_one_gpu(built, tmp_path):
    assert check(built, tmp_path) == (
        0, ("OK: driver 550.54.15 (CUDA 12.4 needs >= 550.54.14): 1 GPU: "
            "NVIDIA H100 80GB HBM3, 81559 MiB"))


def test_ok_with_two_gpus_names_each(built, tmp_path):
    assert check(built, tmp_path, STUB_GPU_COUNT="2",
                 STUB_GPU_NAME="NVIDIA H100 80GB HBM3;NVIDIA A100-SXM4-40GB",
                 STUB_GPU_MEMORY_MIB="81559;40960") == (
        0, ("OK: driver 550.54.15 (CUDA 12.4 needs >= 550.54.14): 2 GPUs: "
            "NVIDIA H100 80GB HBM3, 81559 MiB; NVIDIA A100-SXM4-40GB, 40960 MiB"))


def test_cuda_version_from_the_environment(built, tmp_path):
    status, line = check(built, tmp_path, cuda=None, KERN_CUDA_VERSION="12.0")
    assert (status, line.split(":")[1]) == (0, " driver 550.54.15 (CUDA 12.0 needs >= 525.60.13)")


def test_no_kernel_module_is_no_gpu(built, tmp_path):
    path = tmp_path / "root" / "proc" / "driver" / "nvidia" / "version"
    assert check(built, tmp_path, module=None) == (
        2, f"no GPU visible: no NVIDIA kernel module ({path} not found)")


@pytest.mark.skipif(loadable_on_this_host("libcuda.so.1"),
                    reason="this host has a real libcuda.so.1, so it cannot be absent")
def test_no_libcuda_is_no_gpu(built, tmp_path):
    assert check(built, tmp_path, libs="nvml-only") == (
        2, "no GPU visible: libcuda.so.1 not loadable (driver libraries not injected)")


@pytest.mark.skipif(loadable_on_this_host("libnvidia-ml.so.1"),
                    reason="this host has a real libnvidia-ml.so.1, so it cannot be absent")
def test_no_nvml_is_no_gpu(built, tmp_path):
    assert check(built, tmp_path, libs="cuda-only") == (
        2, "no GPU visible: libnvidia-ml.so.1 not loadable (driver libraries not injected)")


def test_zero_devices_is_no_gpu(built, tmp_path):
    assert check(built, tmp_path, STUB_GPU_COUNT="0") == (
        2, "no GPU visible: the driver sees no devices")


def test_cuda_seeing_no_device_is_no_gpu(built, tmp_path):
    assert check(built, tmp_path, STUB_CUDA_INIT="100") == (
        2, "no GPU visible: CUDA sees no devices (cuInit: CUDA_ERROR_NO_DEVICE)")


def test_nvml_init_mismatch_names_both_versions(built, tmp_path):
    # NVML says nothing once its init failed: the library's file name gives its version.
    assert check(built, tmp_path, STUB_NVML_INIT="18") == (
        3, ("driver/library version mismatch: kernel module 550.54.15, "
            "user-space library 550.90.07"))


def test_nvml_version_differing_from_the_module_is_a_mismatch(built, tmp_path):
    assert check(built, tmp_path, STUB_NVML_DRIVER="550.90.07") == (
        3, ("driver/library version mismatch: kernel module 550.54.15, "
            "user-space library 550.90.07"))


def test_driver_470_is_too_old_for_cuda_12_0(built, tmp_path):
    assert check(built, tmp_path, module="470.82.01", cuda="12.0",
                 STUB_NVML_DRIVER="470.82.01") == (
        4, "driver too old: 470.82.01 < 525.60.13 needed by CUDA 12.0")


def test_the_exact_minimum_is_ok(built, tmp_path):
    assert check(built, tmp_path, module="525.60.13", cuda="12.0",
                 STUB_NVML_DRIVER="525.60.13") == (
        0, ("OK: driver 525.60.13 (CUDA 12.0 needs >= 525.60.13): 1 GPU: "
            "NVIDIA H100 80GB HBM3, 81559 MiB"))


def test_driver_575_is_too_old_for_cuda_13_0(built, tmp_path):
    assert check(built, tmp_path, module="575.57.08", cuda="13.0",
                 STUB_NVML_DRIVER="575.57.08") == (
        4, "driver too old: 575.57.08 < 580.65.06 needed by CUDA 13.0")


def test_versions_compare_numerically_field_by_field(built, tmp_path):
    # "550.9" < "550.54.14" as text would be the other way round.
    assert check(built, tmp_path, module="550.9", STUB_NVML_DRIVER="550.9") == (
        4, "driver too old: 550.9 < 550.54.14 needed by CUDA 12.4")


def test_unknown_minor_falls_back_to_the_major_floor(built, tmp_path):
    # There was no CUDA 12.7: its major's floor, 525.60.13, applies.
    assert check(built, tmp_path, module="530.30.02", cuda="12.7",
                 STUB_NVML_DRIVER="530.30.02") == (
        0, ("OK: driver 530.30.02 (CUDA 12.7 needs >= 525.60.13): 1 GPU: "
            "NVIDIA H100 80GB HBM3, 81559 MiB"))


def test_cuda_11_needs_the_minor_compatibility_floor(built, tmp_path):
    # 11.0's own GA driver (450.51.05) is below the 11.x floor the issue sets.
    assert check(built, tmp_path, module="450.51.06", cuda="11.0",
                 STUB_NVML_DRIVER="450.51.06") == (
        4, "driver too old: 450.51.06 < 450.80.02 needed by CUDA 11.0")


@pytest.mark.parametrize("args", [[], ["not-a-version"], ["14.0"], ["12.4", "extra"]])
def test_usage_errors_exit_64(built, tmp_path, args):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KERN_GPU_ROOT": str(tmp_path)}
    result = subprocess.run([str(built["program"]), *args], check=False, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 64 and result.stdout == "" and "usage:" in result.stderr

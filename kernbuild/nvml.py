"""The NVML probe: the driver version and GPUs, as NVML itself reports them.

``python -m kernbuild.nvml`` prints one JSON object: ``version``, ``gpus``,
``libraries`` (where the loader found libnvidia-ml.so.1 and libcuda.so.1),
``error`` and ``mismatch``. It runs in a process of its own
(:func:`kernbuild.gpu.nvml_report`), because a broken driver library can crash the
process that loads it, and ``LD_LIBRARY_PATH`` takes effect only at a start.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import sys

NVML_LIB, CUDA_LIB = "libnvidia-ml.so.1", "libcuda.so.1"
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18


class _Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                ("used", ctypes.c_ulonglong)]


_NVML_FUNCTIONS = ("nvmlInit_v2", "nvmlShutdown", "nvmlErrorString", "nvmlSystemGetDriverVersion",
                   "nvmlDeviceGetCount_v2", "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetName",
                   "nvmlDeviceGetMemoryInfo")


def _loaded_file(name: str) -> str | None:
    """The real file of the loaded library ``name`` ("libnvidia-ml.so.1"), from this
    process's memory map: what the dynamic loader picked, which ctypes does not say."""
    stem = name.split(".so")[0] + ".so"
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and os.path.basename(fields[5].strip()).startswith(stem):
                return os.path.realpath(fields[5].strip())
    return None


def _file_version(path: str | None) -> str | None:
    """The driver release in a library's real file name, as in libnvidia-ml.so.550.90.07."""
    match = re.search(r"\.so\.(\d+(?:\.\d+)+)$", path or "")
    return match.group(1) if match else None


def probe() -> dict:
    """Ask NVML for the driver version and the GPUs (in the subprocess nvml_report runs)."""
    try:
        nvml = ctypes.CDLL(NVML_LIB)
    except OSError as exc:
        return {"error": f"{NVML_LIB} is not loadable: {exc}"}
    libraries = {NVML_LIB: _loaded_file(NVML_LIB), CUDA_LIB: None}
    try:
        ctypes.CDLL(CUDA_LIB)  # only located: runtimes bind it into containers
        libraries[CUDA_LIB] = _loaded_file(CUDA_LIB)
    except OSError:
        pass  # reported as missing by the runtimes that need it
    missing = [name for name in _NVML_FUNCTIONS if not hasattr(nvml, name)]
    if missing:
        return {"error": f"{NVML_LIB} has no {', '.join(missing)}", "libraries": libraries}
    nvml.nvmlErrorString.restype = ctypes.c_char_p
    nvml.nvmlErrorString.argtypes = [ctypes.c_int]
    nvml.nvmlDeviceGetHandleByIndex_v2.argtypes = [ctypes.c_uint,
                                                   ctypes.POINTER(ctypes.c_void_p)]
    nvml.nvmlDeviceGetName.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint]
    nvml.nvmlDeviceGetMemoryInfo.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Memory)]

    def error(rc: int) -> str:
        return (nvml.nvmlErrorString(rc) or b"unknown error").decode(errors="replace")

    text = ctypes.create_string_buffer(96)
    rc = nvml.nvmlInit_v2()
    if rc == NVML_ERROR_LIB_RM_VERSION_MISMATCH:
        # NVML may still say its own version; if not, its file name does.
        ok = nvml.nvmlSystemGetDriverVersion(text, len(text)) == 0 and text.value
        return {"error": error(rc), "mismatch": True, "libraries": libraries,
                "version": text.value.decode() if ok else _file_version(libraries[NVML_LIB])}
    if rc != 0:
        return {"error": f"NVML initialisation failed: {error(rc)}", "libraries": libraries}
    try:
        if (rc := nvml.nvmlSystemGetDriverVersion(text, len(text))) != 0:
            return {"error": f"NVML has no driver version: {error(rc)}", "libraries": libraries}
        report = {"version": text.value.decode(), "libraries": libraries, "gpus": []}
        count = ctypes.c_uint()
        if (rc := nvml.nvmlDeviceGetCount_v2(ctypes.byref(count))) != 0:
            return {**report, "error": f"NVML cannot count the GPUs: {error(rc)}"}
        for index in range(count.value):
            device, memory = ctypes.c_void_p(), _Memory()
            if ((rc := nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(device))) != 0
                    or (rc := nvml.nvmlDeviceGetName(device, text, len(text))) != 0
                    or (rc := nvml.nvmlDeviceGetMemoryInfo(device, ctypes.byref(memory))) != 0):
                return {**report, "error": f"GPU {index} does not answer: {error(rc)}"}
            report["gpus"].append({"index": index, "name": text.value.decode(errors="replace"),
                                   "memory_mib": memory.total // (1024 * 1024)})
        return report
    finally:
        nvml.nvmlShutdown()


if __name__ == "__main__":
    if sys.argv[1:]:
        sys.exit("usage: python -m kernbuild.nvml")
    print(json.dumps(probe()))

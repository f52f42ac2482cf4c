"""What kernbuild knows of CUDA and the NVIDIA driver: pure facts, no effects.

- CUDA versions and ranges (a variant's ``cuda: ">=11.8, <13"``), compared one
  way: :func:`version_key`, field by field with trailing zeros dropped.
- The minimum driver of each CUDA release (:func:`minimum_driver`), from the one
  table in ``cuda-drivers.tsv`` that kern-gpu-check's build also compiles in.
- The driver's user-space libraries, by Debian package and by file name: they
  must match the host's kernel module, so the container runtime injects the
  host's own (apptainer --nv, the NVIDIA container toolkit, udocker --nvidia)
  and kernbuild keeps them out of packages' dependencies and out of images.

Every other module asks this one; none keeps a table or a pattern of its own.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

#: The table file; in the source tree a link to recipes/kern-gpu-check/cuda-drivers.tsv.
DRIVER_TABLE = Path(__file__).with_name("data") / "cuda-drivers.tsv"

VERSION = re.compile(r"\d+(?:\.\d+)*")
#: A CUDA version range: clauses such as ">=12.0" joined by commas; a bare version is
#: a lower bound. Each space can match one way only: with two adjacent \s* around an
#: optional operator, a value of many spaces tries every split (quadratic: 20 s for
#: 60 000 spaces, which lint must never take).
RANGE = re.compile(r"^\s*((>=|<=|==|>|<)\s*)?[0-9]+(\.[0-9]+)*"
                   r"(\s*,\s*(>=|<=|==|>|<)\s*[0-9]+(\.[0-9]+)*)*\s*$")
_CLAUSE = re.compile(r"\s*(>=|<=|==|>|<)?\s*([0-9.]+)\s*$")


def version_key(version: str) -> tuple[int, ...]:
    """A dotted version as numbers, compared field by field: "550.9" < "550.54.14", and
    "570.26" == "570.26.0", "12" == "12.0" (trailing zero fields are dropped), as
    kern-gpu-check compares."""
    fields = [int(part) for part in version.strip().split(".")]
    while len(fields) > 1 and fields[-1] == 0:
        fields.pop()
    return tuple(fields)


def satisfies(version: str, wanted: str) -> bool:
    """Whether CUDA ``version`` (such as "12.4") is in the range ``wanted`` (such as
    ">=12.0" or ">=11.8, <13"; a bare version means at least that one)."""
    have = version_key(version)
    for clause in wanted.split(","):
        match = _CLAUSE.match(clause)
        op, bound = match.group(1) or ">=", version_key(match.group(2))
        if not {"<": have < bound, "<=": have <= bound, "==": have == bound,
                ">": have > bound, ">=": have >= bound}[op]:
            return False
    return True


@cache
def driver_table() -> tuple[dict[tuple[int, int], str], dict[int, str]]:
    """(minimum driver by (major, minor) CUDA release, floor by major), read once from
    :data:`DRIVER_TABLE`."""
    releases: dict[tuple[int, int], str] = {}
    floors: dict[int, str] = {}
    for number, line in enumerate(DRIVER_TABLE.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cuda, driver = line.split()
        major, minor = cuda.split(".")
        if minor == "x":
            floors[int(major)] = driver
        else:
            releases[(int(major), int(minor))] = driver
    return releases, floors


def minimum_driver(cuda_version: str) -> str | None:
    """The oldest Linux driver that runs programs built with CUDA ``cuda_version``.

    "12.4" and "12.4.1" give 12.4's row; a minor release with no row of its own (12.7, 13.1)
    gets its major's floor; where both exist the higher wins (11.0's own row is below the
    11.x floor). None for a major version kernbuild knows nothing of, or for text that is
    not a version: the same answers as kern-gpu-check.
    """
    if not VERSION.fullmatch(cuda_version):
        return None
    releases, floors = driver_table()
    fields = [int(part) for part in cuda_version.split(".")]
    minor = fields[1] if len(fields) > 1 else None
    known = [v for v in (floors.get(fields[0]), releases.get((fields[0], minor))) if v]
    return max(known, key=version_key, default=None)


# --- the driver's libraries ------------------------------------------------------------

#: Debian's packages of the NVIDIA driver's user-space libraries that a CUDA build's
#: shared objects can link against (dpkg-shlibdeps would otherwise make them Depends).
DRIVER_PACKAGES = ("libcuda1", "libnvidia-ml1", "libnvidia-ptxjitcompiler1", "libcudadebugger1",
                   "libnvcuvid1", "libnvidia-encode1", "libnvidia-opticalflow1",
                   "libnvidia-cfg1", "libnvidia-allocator1", "libnvoptix1")
#: Any package of the driver, by name, including the virtual libcuda.so.1 and the
#: tesla and legacy driver flavours.
DRIVER_PACKAGE = re.compile(r"^(libcuda1|libcuda\.so\.1|libcudadebugger\d*|libnvcuvid\d*"
                            r"|libnvoptix\d*|libnvidia-(?!.*-dev$).+|libgl1-nvidia-.+"
                            r"|nvidia-.*driver.*)$")
#: The driver's libraries by file name: a copy in an image would be the wrong version
#: on every host but the one it came from.
DRIVER_LIBRARY = re.compile(r"^(libcuda|libcudadebugger|libnvcuvid|libnvoptix|libnvidia-[a-z0-9-]+"
                            r"|lib(GLX|EGL|GLESv1_CM|GLESv2)_nvidia)\.so(\.[0-9.]+)?$")
#: A shell command listing every file that could be a driver library; :func:`baked_in`
#: has the last word.
FIND_DRIVER_FILES = (r"find / -xdev \( -type f -o -type l \) \( -name 'libcuda*.so*' "
                     r"-o -name 'libnv*.so*' -o -name 'lib*_nvidia.so*' \)")


def driver_packages(names) -> list[str]:
    """Those of the package ``names`` that are the driver's."""
    return sorted({name for name in names if DRIVER_PACKAGE.match(name)})


def baked_in(paths: list[str]) -> list[str]:
    """Those of ``paths`` (files in an image) that are driver libraries. Link-time stubs
    (``.../stubs/libcuda.so``, from CUDA's -dev packages) are not: nothing loads them."""
    return sorted(p for p in paths if DRIVER_LIBRARY.match(Path(p).name)
                  and "/stubs/" not in p)

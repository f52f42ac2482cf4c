"""Benchmark: a GPU image the kernbuild way against Debian's own CUDA build, side by side.

    python tests/bench/bench_gpu_image.py [--state DIR]

Both images give pyvkfft's CUDA backend on the same base, from the same archive:

  (a) kernbuild's ``kern/pyvkfft-gpu:1`` (``kernbuild image pyvkfft --gpu``): the CUDA
      runtime layer and python3-pyvkfft-gpu, which leaves the driver to the host;
  (b) Debian's python3-pyvkfft-cuda from contrib, installed the hand-tuned way (no
      recommends, lists and caches removed, no docs): it depends on libcuda1, so apt
      brings one driver's user-space libraries, and pycuda brings the CUDA toolkit.

For each: the bytes above the base, and the driver libraries it holds (which would
shadow, and mismatch, the host's). Needs a Docker engine and Debian's archive.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kernbuild import engine  # noqa: E402
from kernbuild.cuda import FIND_DRIVER_FILES, baked_in  # noqa: E402
from kernbuild.images.writers import TEMPLATES  # noqa: E402

DEBIAN_WAY = """FROM {base}
COPY kern-apt-install /usr/local/sbin/kern-apt-install
COPY dpkg-nodoc /etc/dpkg/dpkg.cfg.d/01-nodoc
RUN kern-apt-install --cuda debian 'contrib non-free' && kern-apt-install python3-pyvkfft-cuda
"""


def driver_files(client, tag: str) -> list[str]:
    listing = client.containers.run(tag, ["sh", "-c", f"{FIND_DRIVER_FILES} -print"],
                                    remove=True).decode()
    return baked_in(listing.split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, default=ROOT / ".kernbuild")
    args = parser.parse_args()
    result = subprocess.run([sys.executable, "-m", "kernbuild.cli", "--recipes",
                             str(ROOT / "recipes"), "--state", str(args.state), "image",
                             "pyvkfft", "--gpu", "--json"], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"kernbuild image pyvkfft --gpu failed:\n{result.stderr}")
    [entry] = [build["lock"] for build in json.loads(result.stdout)]
    client = engine.connect()
    base_size = client.images.get(entry["base"]).attrs["Size"]
    with tempfile.TemporaryDirectory() as context:
        for name in ("kern-apt-install", "dpkg-nodoc"):
            target = Path(context, name)
            target.write_bytes((TEMPLATES / name).read_bytes())
            target.chmod(0o755)
        Path(context, "Dockerfile").write_text(DEBIAN_WAY.format(base=entry["base"]))
        debian, _ = client.images.build(path=context, tag="kernbench/pyvkfft-cuda:debian",
                                        rm=True, forcerm=True)
    rows = [("(a) kernbuild", entry["tag"], entry["size"]),
            ("(b) Debian's", "kernbench/pyvkfft-cuda:debian", debian.attrs["Size"])]
    print(f"{'image':16} {'above base':>12}  driver libraries")
    for label, tag, size in rows:
        found = driver_files(client, tag)
        print(f"{label:16} {(size - base_size) / 1e6:9.1f} MB  "
              f"{len(found)}{': ' + ', '.join(Path(p).name for p in found[:4]) if found else ''}"
              f"{' ...' if len(found) > 4 else ''}")
    print(f"\n(a)/(b) = {(rows[0][2] - base_size) / (rows[1][2] - base_size):.2f}")


if __name__ == "__main__":
    os.environ.setdefault("COLUMNS", "200")
    main()

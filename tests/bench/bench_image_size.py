"""Benchmark: image sizes, measured side by side in one run.

    python tests/bench/bench_image_size.py [--state DIR] [NAME ...]

For each image (default: katpoint, losoto, wcslib and radio-imaging, the
metapackage of the trio wsclean + aoflagger + python3-casacore), the bytes
above the base image of:

  (a) kernbuild's image (``kernbuild image NAME``);
  (b) a naive Dockerfile: apt-get install with recommends, no cleanup;
  (c) a hand-tuned Dockerfile: no recommends, lists and caches removed in the
      same RUN, dpkg path-exclude for docs, man pages and locales;
  (d) the lower bound: the summed Installed-Size of the packages apt installs
      beyond the base (without recommends).

(b) and (c) install the same packages from the same signed repository on the
same base. Then the bytes of all these kernbuild images stored together, with
their shared layers counted once, against the sum of their separate sizes.
Needs a Docker engine, and Debian's archive for the packages.
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
from kernbuild.images.docker import serve_repository  # noqa: E402
from kernbuild.images.writers import SHARED_FILES, TEMPLATES  # noqa: E402

SETUP = """FROM {base}
COPY kern-apt-install /usr/local/sbin/kern-apt-install
{nodoc}RUN kern-apt-install --setup http://kern-repo kern-1
"""
NAIVE = "RUN apt-get update && apt-get install -y {packages}\n"
HAND_TUNED = ("RUN apt-get update && apt-get install -y --no-install-recommends {packages} "
              "&& rm -rf /var/lib/apt/lists/* /var/cache/apt/*\n")
# What apt would install beyond the base, and their Installed-Size (KiB) summed, in bytes.
LOWER_BOUND = ("apt-get update -q >/dev/null && "
               "apt-get install -s --no-install-recommends {packages}"
               " | awk '/^Inst /{{print $2\"=\"substr($3, 2)}}'"
               " | xargs apt-cache show --no-all-versions"
               " | awk '/^Installed-Size:/{{s += $2}} END {{print s * 1024}}'")


def kernbuild(state: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "kernbuild.cli", "--recipes",
                             str(ROOT / "recipes"), "--state", str(state), *args],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"kernbuild {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def build(client, dockerfile: str, tag: str, network: str) -> int:
    """Build ``dockerfile`` (with kernbuild's shared files beside it); returns its size."""
    with tempfile.TemporaryDirectory() as context:
        for name in SHARED_FILES:
            target = Path(context, name)
            target.write_bytes((TEMPLATES / name).read_bytes())
            target.chmod(0o755)
        Path(context, "Dockerfile").write_text(dockerfile)
        image, _ = client.images.build(path=context, tag=tag, network_mode=network, rm=True,
                                       forcerm=True)
    return image.attrs["Size"]


def lower_bound(client, base: str, packages: str, network: str) -> int:
    script = ("sh /usr/local/sbin/kern-apt-install --setup http://kern-repo kern-1 >/dev/null && "
              + LOWER_BOUND.format(packages=packages))
    output = client.containers.run(
        base, ["sh", "-c", script], remove=True, network=network,
        volumes={str(TEMPLATES / "kern-apt-install"):
                 {"bind": "/usr/local/sbin/kern-apt-install", "mode": "ro"}})
    return int(float(output.decode().split()[-1]))


def shared_bytes(client, tags: list[str]) -> int:
    """Bytes of ``tags`` stored together: each layer counted once."""
    layers: dict[str, int] = {}
    for tag in tags:
        for entry in client.images.get(tag).history():
            if entry["Id"] != "<missing>":
                layers[entry["Id"]] = entry["Size"]
    return sum(layers.values())


def megabytes(size: int) -> str:
    return f"{size / 1e6:7.1f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*",
                        default=["katpoint", "losoto", "wcslib", "radio-imaging"])
    parser.add_argument("--state", type=Path, default=ROOT / ".kernbuild")
    args = parser.parse_args()
    entries = [build["lock"] for build in
               json.loads(kernbuild(args.state, "image", *args.names, "--json"))]
    client = engine.connect()
    from kernbuild.build import open_repository
    from kernbuild.recipe import load_suite
    from kernbuild.workspace import Workspace

    suite = load_suite(ROOT / "recipes")
    repo = open_repository(Workspace(ROOT / "recipes", args.state), suite)
    build_image = next(t for i in client.images.list("kern/build") for t in i.tags)
    print(f"{'image':16} {'(a) kernbuild':>14} {'(b) naive':>12} {'(c) hand-tuned':>15} "
          f"{'(d) lower bound':>16}  a/b   c/b")
    with serve_repository(client, repo, build_image) as network:
        for entry in entries:
            base = entry["base"]
            base_size = client.images.get(base).attrs["Size"]
            recipe = suite.by_name[entry["recipe"]]
            # The trio's metapackage stands for what it depends on; others for themselves.
            packages = " ".join(
                rel for p in recipe.packages for rel in p.relations.get("depends", ())
            ) if recipe.build.system == "none" else " ".join(entry["packages"])
            ours = entry["size"] - base_size
            naive = build(client, SETUP.format(base=base, nodoc="") + NAIVE.format(
                packages=packages), f"kernbench/{recipe.name}:naive", network) - base_size
            tuned = build(client, SETUP.format(
                base=base, nodoc="COPY dpkg-nodoc /etc/dpkg/dpkg.cfg.d/01-nodoc\n")
                + HAND_TUNED.format(packages=packages),
                f"kernbench/{recipe.name}:tuned", network) - base_size
            bound = lower_bound(client, base, packages, network)
            print(f"{recipe.name:16} {megabytes(ours):>14} {megabytes(naive):>12} "
                  f"{megabytes(tuned):>15} {megabytes(bound):>16}  "
                  f"{ours / naive:4.2f}  {tuned / naive:4.2f}")
    tags = [entry["tag"] for entry in entries]
    together = shared_bytes(client, tags)
    separate = sum(entry["size"] for entry in entries)
    print(f"\nall {len(tags)} kernbuild images: {megabytes(together)} stored together "
          f"(shared layers once) against {megabytes(separate)} separately: "
          f"{together / separate:.2f}")


if __name__ == "__main__":
    os.environ.setdefault("COLUMNS", "200")
    main()

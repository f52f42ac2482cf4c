#!/usr/bin/env bash
# Set up a fresh Debian 12 host (root) and run every test it allows:
# unit tests, then integration tests on a real Docker engine and a one-node Slurm.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup-host.sh
bash ci/setup-slurm.sh
bash ci/setup-python.sh
# Integration tests fail, not skip, without an engine or a cluster.
export KERNBUILD_REQUIRE_DOCKER=1 KERNBUILD_REQUIRE_SLURM=1
# One download cache for both workers: each Debian package is fetched once per run.
export KERNBUILD_DOWNLOAD_CACHE="${KERNBUILD_DOWNLOAD_CACHE:-$(mktemp -d /tmp/kernbuild-downloads.XXXXXX)}"
# The images every state directory shares (the suite's base, the build image, Debian's
# apptainer in its container) made once, here, rather than raced for by the workers:
# a small recipe's image and SIF, in a state thrown away after.
warm=$(mktemp -d /tmp/kernbuild-warm.XXXXXX)
echo "[test] making the shared images (kernbuild image katversion -f sif)"
.venv/bin/kernbuild --recipes recipes --state "$warm" image katversion -f sif >/dev/null
rm -rf "$warm"
# Two workers, one per core: most of a test's time is waiting on a container, apt, a
# Slurm job or a runner, so two at once take about two thirds of the time of one after
# another. Tests that share images or the cluster share a worker (tests/conftest.py).
exec .venv/bin/python -m pytest tests -n 2 --dist loadscope --no-loadscope-reorder \
  --durations=30 "$@"

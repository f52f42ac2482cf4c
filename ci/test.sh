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
exec .venv/bin/python -m pytest tests --durations=30 "$@"

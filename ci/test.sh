#!/usr/bin/env bash
# Set up a fresh Debian 12 host (root) and run every test it allows:
# unit tests, then integration tests on a real Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup-host.sh
bash ci/setup-python.sh
export KERNBUILD_REQUIRE_DOCKER=1  # integration tests fail, not skip, without an engine
exec .venv/bin/python -m pytest tests "$@"

#!/usr/bin/env bash
# The kill trials at every step boundary (tests/integration/test_kill_trials.py), on a
# fresh Debian 12 host (root). CI runs the same test on a random sample of 50 of the
# boundaries; this tries every one (about 110 trials), longer than CI allows.
# KERNBUILD_KILL_SEED=S repeats a CI run's sample instead.
#
#   bash ci/faults.sh            # prints "N/N trials recovered (boundaries tried: ...)"
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup-host.sh
bash ci/setup-python.sh
export KERNBUILD_REQUIRE_DOCKER=1
if [ -z "${KERNBUILD_KILL_SEED:-}" ]; then
  export KERNBUILD_KILL_TRIALS=all
fi
exec .venv/bin/python -m pytest tests/integration/test_kill_trials.py -s "$@"

#!/usr/bin/env bash
# The EOSC LOFAR pilot's three pipelines, as CWL workflows, on a fresh Debian 12 host
# (root): imaging (prefactor-style), time domain (PRESTO) and simulation (Spiel-style),
# each run by cwltool and by Toil, with Docker and with the real apptainer, then the
# grid. Longer than CI allows (the images take ~15 minutes cold), so CI runs the
# simulation pipeline only (tests/integration/test_cwl.py).
#
#   bash ci/pipelines.sh                 # all three, on all four CWL targets
#   bash ci/pipelines.sh --jobs 2        # options go to `kernbuild test`
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup-host.sh
bash ci/setup-python.sh
if [ -z "${KERNBUILD_SOURCE_MIRROR:-}" ] && [ -d ../shared/sources ]; then
  KERNBUILD_SOURCE_MIRROR=$(realpath ../shared/sources)   # PRESTO lives only on GitHub
  export KERNBUILD_SOURCE_MIRROR
fi
exec .venv/bin/kernbuild test --pipeline pipeline-imaging --pipeline pipeline-pulsar \
  --pipeline pipeline-simulation --target cwltool --target cwltool-apptainer \
  --target toil --target toil-apptainer --html .kernbuild/pipelines-report "$@"

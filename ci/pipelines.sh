#!/usr/bin/env bash
# The EOSC LOFAR pilot's three pipelines, as CWL workflows, on a fresh Debian 12 host
# (root): imaging (prefactor-style), time domain (PRESTO) and simulation (Spiel-style),
# each run by cwltool and by Toil, with Docker, with the real apptainer and (cwltool)
# with no container in a chroot of the image's packages; then Toil again with its Slurm
# batch system on a one-node cluster, every CWL step a Slurm job ("Toil + Singularity +
# Slurm"). Longer than CI allows (the images take ~15 minutes cold); CI runs every
# pipeline with cwltool and Toil in Docker, and the simulation on the other targets
# (tests/integration/test_cwl.py, test_slurm.py).
#
#   bash ci/pipelines.sh                 # all three, on all five CWL targets, then Slurm
#   bash ci/pipelines.sh --jobs 2        # options go to `kernbuild test`
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup-host.sh
bash ci/setup-python.sh
if [ -z "${KERNBUILD_SOURCE_MIRROR:-}" ] && [ -d ../shared/sources ]; then
  KERNBUILD_SOURCE_MIRROR=$(realpath ../shared/sources)   # PRESTO lives only on GitHub
  export KERNBUILD_SOURCE_MIRROR
fi
bash ci/setup-slurm.sh
PIPELINES=(--pipeline pipeline-imaging --pipeline pipeline-pulsar --pipeline pipeline-simulation)
.venv/bin/kernbuild test "${PIPELINES[@]}" --target cwltool --target cwltool-apptainer \
  --target toil --target toil-apptainer --target cwltool-native \
  --html .kernbuild/pipelines-report "$@"
exec .venv/bin/kernbuild test "${PIPELINES[@]}" --target toil --target toil-apptainer \
  --executor slurm --toil-batch-system slurm --html .kernbuild/pipelines-report-slurm "$@"

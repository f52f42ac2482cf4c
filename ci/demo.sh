#!/usr/bin/env bash
# Set up a fresh Debian 12 host (root) and run kernbuild's main job on the suite:
# build prefactor and its chain (losoto, lsmtool, RMextract, ...) from the source
# mirror ../shared/sources, install it from the repository in a clean container and
# check that every script starts; build katpoint (and the recipes it needs) into .debs in clean containers, publish
# them to the signed apt repository, install katpoint from it in a clean container
# and smoke-test it, then make its Docker image and SIF and smoke-test inside both,
# then run its pipeline in both forms on every target and write the HTML report; then
# build pyvkfft's GPU variant and GPU image and report this host's GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup-host.sh
bash ci/setup-python.sh
# prefactor lives only on GitHub, which these hosts cannot reach: its tarball comes from
# the source mirror beside the checkout (on the internet no mirror is needed).
if [ -z "${KERNBUILD_SOURCE_MIRROR:-}" ] && [ -d ../shared/sources ]; then
  KERNBUILD_SOURCE_MIRROR=$(realpath ../shared/sources)
  export KERNBUILD_SOURCE_MIRROR
fi
set -x
.venv/bin/kernbuild lint
.venv/bin/kernbuild suite || true   # exit 1 if a recipe's source is missing here
.venv/bin/kernbuild package prefactor -j 2
.venv/bin/kernbuild smoke prefactor
.venv/bin/kernbuild package katpoint
.venv/bin/kernbuild repo list
.venv/bin/kernbuild smoke katpoint
.venv/bin/kernbuild image katpoint --format docker --format sif
.venv/bin/kernbuild test --pipeline katpoint --html .kernbuild/report   # open .kernbuild/report/index.html
# A CWL pipeline (Spiel-style simulation: predict five sources, image them back, check
# each one's position and flux), run by cwltool and Toil, with Docker and apptainer.
.venv/bin/kernbuild test --pipeline pipeline-simulation
# GPU: pyvkfft's CUDA variant (no dependency on any driver), its GPU image, which on a
# host without a GPU says "no GPU visible" (and OK on a GPU host), and the host report.
.venv/bin/kernbuild package pyvkfft --variant gpu
.venv/bin/kernbuild image pyvkfft --gpu
.venv/bin/kernbuild doctor --gpu || true   # exit 1 on a host without a usable GPU

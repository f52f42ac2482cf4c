#!/usr/bin/env bash
# Cut the suite's next release (KERN-N, N = release: in suite.yaml) on a fresh Debian 12
# host (root), as the scheduled pipeline does (.github/workflows/release.yml):
#
#   bash ci/release.sh                          # ./recipes, state in ./.kernbuild
#   bash ci/release.sh --recipes DIR --state DIR --out DIR -- -t docker -j 2
#
# Options after `--` go to `kernbuild release` (targets, jobs, --cvmfs DIR). It sets
# the host up (Docker engine, tools, .venv; skipped where KERNBUILD_SETUP_DONE=1 says
# a caller did), lints the suite, shows the dry run's notes, cuts the release (build,
# matrix, freeze, record; suite.yaml then says release: N+1), verifies the repository
# as apt would, and copies the artifacts into --out (default release-artifacts/):
# notes.md, notes.json, release.json, kern.lock, junit.xml, report/, repo-verify.json.
set -euo pipefail
cd "$(dirname "$0")/.."
recipes=recipes state="" out=release-artifacts
while [ $# -gt 0 ]; do
  case "$1" in
    --recipes) recipes=$2; shift 2 ;;
    --state) state=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "ci/release.sh: unknown option $1 (kernbuild's go after --)" >&2; exit 2 ;;
  esac
done
if [ "${KERNBUILD_SETUP_DONE:-0}" != 1 ]; then
  bash ci/setup-host.sh
  bash ci/setup-python.sh
fi
if [ -z "${KERNBUILD_SOURCE_MIRROR:-}" ] && [ -d ../shared/sources ]; then
  KERNBUILD_SOURCE_MIRROR=$(realpath ../shared/sources)
  export KERNBUILD_SOURCE_MIRROR
fi
kb=(.venv/bin/kernbuild --recipes "$recipes")
[ -n "$state" ] && kb+=(--state "$state")
mkdir -p "$out"

"${kb[@]}" lint
"${kb[@]}" release --dry-run > "$out/notes-dry-run.md"   # refused here, before any build
"${kb[@]}" release "$@" --json > "$out/outcome.json"
record=$(.venv/bin/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["directory"])' \
  "$out/outcome.json")
cp -a "$record/." "$out/"
"${kb[@]}" repo verify --json > "$out/repo-verify.json"
echo "released: $(basename "$record"), artifacts in $out"
sed -n '1,/^## Images/p' "$out/notes.md"

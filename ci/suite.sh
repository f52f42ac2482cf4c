#!/usr/bin/env bash
# Build and smoke-test the whole suite on a fresh Debian 12 host (root), then print
# a table of recipe, state and times. Longer than CI allows (tens of minutes cold),
# so CI builds a representative subset instead (tests/integration/test_suite.py).
#
#   bash ci/suite.sh            # every recipe, with the state in .kernbuild
#   bash ci/suite.sh -j 1       # options go to `kernbuild package`
#
# Sources that live only on GitHub come from the source mirror ../shared/sources
# when it exists (KERNBUILD_SOURCE_MIRROR overrides it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup-host.sh
bash ci/setup-python.sh

if [ -z "${KERNBUILD_SOURCE_MIRROR:-}" ] && [ -d ../shared/sources ]; then
  KERNBUILD_SOURCE_MIRROR=$(realpath ../shared/sources)
  export KERNBUILD_SOURCE_MIRROR
fi
kb=.venv/bin/kernbuild
report=.kernbuild/suite-report
mkdir -p "$report"

"$kb" suite || true   # exit 1 names a missing source; build the rest anyway
"$kb" lint
start=$(date +%s)
# Build everything first (-j 2 by default: two independent recipes at once); a failed
# recipe does not stop the others, so collect the results whatever the exit status.
"$kb" package -j 2 "$@" --json > "$report/package.json" || true
built=$(date +%s)

: > "$report/smoke.tsv"
for name in $("$kb" suite --json | .venv/bin/python -c \
    'import json, sys; print(" ".join(e["name"] for e in json.load(sys.stdin)))'); do
  t0=$(date +%s%N)
  if "$kb" smoke "$name" > "$report/smoke-$name.log" 2>&1; then state=passed; else state=failed; fi
  printf '%s\t%s\t%s\n' "$name" "$state" "$(( ($(date +%s%N) - t0) / 1000000 ))" \
    >> "$report/smoke.tsv"
done

.venv/bin/python - "$report" "$((built - start))" "$(($(date +%s) - start))" <<'EOF'
import json, sys
from pathlib import Path

report, build_s, total_s = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
builds = {r["recipe"]: r for r in json.loads((report / "package.json").read_text() or "[]")}
rows, bad = [], 0
for line in (report / "smoke.tsv").read_text().splitlines():
    name, smoke, smoke_ms = line.split("\t")
    build = builds.get(name, {})
    state = build.get("state", "?")
    green = state in ("built", "cached") and smoke == "passed"
    bad += not green
    errors = sum(1 for w in build.get("lintian", []) if w.startswith("E:"))
    rows.append((name, build.get("version", "?"), "green" if green else "FAILED", state,
                 f"{build.get('seconds', 0):.1f}" if state == "built" else "-",
                 smoke, f"{int(smoke_ms) / 1000:.1f}", str(errors)))
head = ("recipe", "version", "state", "build", "build s", "smoke", "smoke s", "lintian E")
widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
for row in [head] + rows:
    print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
print(f"{len(rows) - bad}/{len(rows)} green; builds {build_s} s, everything {total_s} s "
      f"(logs: {report})")
sys.exit(1 if bad else 0)
EOF

#!/usr/bin/env bash
# One call on a lent GPU box with no network (this workplace's device tool;
# see README "The full profile on a GPU"): install the carried wheels, train
# the full profile's pending runs in priority order within a budget (their
# post-training measurements included), and pack results/ and figures/ into
# $OUT. Carry `.whl` (bash ../shared/tools/offline-wheels.sh .whl) and `.carry`
# (the CIFAR-10 JPEG tarball). Usage: bash scripts/device_run.sh [BUDGET_MIN]
set -uo pipefail
BUDGET="${1:-8}"
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH="/tmp/site:$PWD" CIFAR10_ROOT="${CIFAR10_ROOT:-$PWD/.carry}"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
limit=$(python3 -c "print(int(float('$BUDGET') * 60 + 120))")
timeout "$limit" python3 -m cifar_lib run --profile full --budget-min "$BUDGET" \
  --json "$OUT/run.json" > "$OUT/run.log" 2>&1
echo "run exit code $?"
grep '^\[run\]' "$OUT/run.log" | tail -20
tar czf "$OUT/results.tgz" results figures weights/manifest.json
python3 -m cifar_lib plan --profile full | tail -3

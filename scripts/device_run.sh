#!/usr/bin/env bash
# One call on a lent GPU box with no network (this workplace's device tool;
# see README "The full profile on a GPU"): install the carried wheels,
# optionally run the like-for-like race against airbench94 first (RACE=1,
# at most RACE_S seconds) and the CUDA-graphs benchmark (GRAPHS=1, at most
# GRAPHS_S seconds), then train the full profile's pending runs in
# priority order within what is left of BUDGET_MIN minutes (their
# post-training measurements included), and pack results/ and figures/ into
# $OUT. Carry `.whl` (bash ../shared/tools/offline-wheels.sh .whl) and `.carry`
# (the CIFAR-10 JPEG tarball).
# RUN_GROUPS="core ablations" trains only those groups of the plan.
# Usage: [RACE=1] [GRAPHS=1] [RUN_GROUPS=...] bash scripts/device_run.sh [BUDGET_MIN]
# The whole call takes at most BUDGET_MIN + 1.5 minutes (install, the
# runner's hard stop one minute past its budget, packing).
# Unpack results.tgz into this checkout (tar xzf) before a second call:
# each call sends this checkout, whose results/ replace the machine's, so
# runs of the first call that are not here would be lost there (and from
# the second call's results.tgz).
set -uo pipefail
BUDGET="${1:-8}"
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl >/dev/null 2>&1
export PYTHONPATH="/tmp/site:$PWD" CIFAR10_ROOT="${CIFAR10_ROOT:-$PWD/.carry}"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
if [ "${RACE:-0}" = 1 ]; then
  timeout "${RACE_S:-200}" python3 benchmarks/airbench_race.py --runs 5 > "$OUT/race.log" 2>&1
  echo "race exit code $?"
  grep -v '^{' "$OUT/race.log" | tail -8
fi
if [ "${GRAPHS:-0}" = 1 ]; then  # CUDA graphs: eager, compile, reduce-overhead
  timeout "${GRAPHS_S:-240}" python3 benchmarks/cuda_graphs.py --runs 3 > "$OUT/graphs.log" 2>&1
  echo "cuda graphs exit code $?"
  tail -5 "$OUT/graphs.log"
fi
left=$(python3 -c "import time; print(round(max(0.5, $BUDGET - (time.time() - $t0) / 60), 2))")
echo "training budget: $left min"
timeout "$(python3 -c "print(int($left * 60 + 60))")" python3 -m cifar_lib run --profile full \
  --budget-min "$left" ${RUN_GROUPS:+--groups $RUN_GROUPS} --json "$OUT/run.json" > "$OUT/run.log" 2>&1
echo "run exit code $?"
grep '^\[run\]' "$OUT/run.log" | tail -20
tar czf "$OUT/results.tgz" results figures weights/manifest.json
python3 -m cifar_lib plan --profile full | tail -3
echo "call took $(( $(date +%s) - t0 )) s"

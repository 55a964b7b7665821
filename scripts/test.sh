#!/usr/bin/env bash
# The test command: sets up .venv, then runs the whole pytest suite
# (synthetic data only; notebooks executed in the smoke profile).
source "$(dirname "$0")/env.sh"
set +e
python -m pytest -q "$@" tests
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"

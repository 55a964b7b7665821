# Sourced by run.sh and test.sh: create (once) and activate the project's
# virtual environment in .venv, reinstalling when requirements.txt changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CIFAR_LIB_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
# Paths given relative to the caller's folder stay right after the cd below.
for var in CIFAR10_ROOT CIFAR_LIB_CACHE CIFAR_LIB_SCRATCH; do
  val="${!var:-}"
  if [ -n "$val" ]; then export "$var=$(realpath -m "$val")"; fi
done
if [ ! -x "$VENV/bin/python" ]; then
  echo "[env] creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.requirements.sha256"
WANT="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "[env] installing requirements.txt (first time: a few minutes)" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements.txt"
  echo "$WANT" > "$STAMP"
fi
# Make the package importable from any folder (Jupyter starts in notebooks/).
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$ROOT" > "$SITE/cifar_lib_repo.pth"
# shellcheck disable=SC1091
source "$VENV/bin/activate"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"

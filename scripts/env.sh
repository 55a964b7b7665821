# Sourced by run.sh and test.sh: create (once) and activate the project's
# virtual environment in .venv, reinstalling when requirements.txt changes.
#
# Three ways to get the packages, chosen here:
# - default: a fresh venv with requirements.txt (torch and torchvision pinned);
# - a GPU box whose python3 already imports a CUDA build of torch >= 2.4: the
#   venv sees the system packages (--system-site-packages) and keeps that torch
#   and torchvision, installing the rest of requirements.txt
#   (CIFAR_LIB_SYSTEM_TORCH=0 turns this off, =1 forces it);
# - offline: CIFAR_LIB_WHEELS=<folder of wheels> (made by
#   ../shared/tools/offline-wheels.sh) installs those wheels with no index,
#   on top of the system's torch, numpy, pandas, matplotlib, ...
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CIFAR_LIB_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
# Paths given relative to the caller's folder stay right after the cd below.
for var in CIFAR10_ROOT CIFAR_LIB_CACHE CIFAR_LIB_SCRATCH CIFAR_LIB_WHEELS; do
  val="${!var:-}"
  if [ -n "$val" ]; then export "$var=$(realpath -m "$val")"; fi
done
SYSTEM_TORCH="${CIFAR_LIB_SYSTEM_TORCH:-auto}"
if [ "$SYSTEM_TORCH" = auto ]; then
  SYSTEM_TORCH=0
  if "$PY" - >/dev/null 2>&1 <<'PYEOF'
import sys, torch, torchvision
major, minor = (int(v) for v in torch.__version__.split("+")[0].split(".")[:2])
sys.exit(0 if (major, minor) >= (2, 4) and torch.cuda.is_available() else 1)
PYEOF
  then SYSTEM_TORCH=1; fi
fi
WHEELS="${CIFAR_LIB_WHEELS:-}"
MODE="pinned"
[ "$SYSTEM_TORCH" = 1 ] && MODE="system-torch"
[ -n "$WHEELS" ] && MODE="wheels:$WHEELS"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[env] creating $VENV ($MODE)" >&2
  if [ "$SYSTEM_TORCH" = 1 ] || [ -n "$WHEELS" ]; then
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi
STAMP="$VENV/.requirements.sha256"
WANT="$(cat "$ROOT/requirements.txt" <(echo "$MODE") | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  pip_install() { "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; }
  if [ -n "$WHEELS" ]; then
    echo "[env] installing the wheels in $WHEELS (no index)" >&2
    pip_install --no-index --no-deps "$WHEELS"/*.whl
  elif [ "$SYSTEM_TORCH" = 1 ]; then
    echo "[env] keeping the system's torch; installing the rest of requirements.txt" >&2
    pip_install -r <(grep -vE '^(torch|torchvision)==' "$ROOT/requirements.txt")
  else
    echo "[env] installing requirements.txt (first time: a few minutes)" >&2
    pip_install -r "$ROOT/requirements.txt"
  fi
  echo "$WANT" > "$STAMP"
fi
# Install this checkout as an editable package (importable from any folder,
# as Jupyter starts in notebooks/; the `cifar-lib` command), once per place:
# --no-deps as the packages are in already, and without build isolation
# where the venv has setuptools, so that no index is needed.
installed_here() {
  [ -x "$VENV/bin/cifar-lib" ] && (cd / && PYTHONPATH="" "$VENV/bin/python" - "$ROOT" \
    >/dev/null 2>&1 <<'PYEOF'
import pathlib, sys, cifar_lib
here = pathlib.Path(cifar_lib.__file__).resolve().parent.parent
sys.exit(here != pathlib.Path(sys.argv[1]).resolve())
PYEOF
  )
}
if ! installed_here; then
  echo "[env] installing $ROOT into $VENV (pip install -e . --no-deps)" >&2
  SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  rm -f "$SITE/cifar_lib_repo.pth"  # written by earlier versions of this script
  pip_e() { (cd "$ROOT" && "$VENV/bin/python" -m pip install --quiet \
               --disable-pip-version-check --no-deps "$@" -e .); }
  pip_e --no-build-isolation 2>/dev/null || pip_e
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"

"""Move stored measurements of the earlier layouts into the store.

Runs keep their names and paths (``results/<experiment>/<run>.json``); only
the post-training measurements moved, from three layouts of their own to
:func:`cifar_lib.store.save_measurement` items keyed by name, version, the
runs they came from and their settings:

* BatchNorm surfaces, ``results/batchnorm/surfaces/<run>-<hash>.json``;
* DessiLBI pruning, ``results/dessilbi_measure.json`` (key inside);
* notebook 03's stamp ``results/summaries/vis.json`` with the calibration
  in ``results/summaries/calibration.json`` (the figures stay in figures/).

    python -m cifar_lib.migrate [--results DIR ...]   # default: both profiles'

Each old file is removed once its item is written; running it again finds
nothing to do. A calibration file without a stamp names no runs, so it is
left where it is.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from cifar_lib import store

SURFACE_VERSION = 1   # the versions the earlier layouts stored
PRUNING_VERSION = 1
VIS_VERSION = 1


def _surfaces(results: Path) -> list[Path]:
    moved = []
    for path in sorted((results / "batchnorm" / "surfaces").glob("*.json")):
        rec = json.loads(path.read_text())
        key = store.measurement_key("surface", SURFACE_VERSION, rec["run"], rec["options"])
        store.save_measurement(results, "batchnorm", key, rec)
        path.unlink()
        moved.append(path)
    folder = results / "batchnorm" / "surfaces"
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    return moved


def _pruning(results: Path) -> list[Path]:
    path = results / "dessilbi_measure.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    old = data.pop("key")
    key = store.measurement_key("pruning", old.get("version", PRUNING_VERSION),
                                old["runs"], old["settings"])
    store.save_measurement(results, "dessilbi", key, data)
    path.unlink()
    return [path]


def _vis(results: Path) -> list[Path]:
    stamp, cal = results / "summaries" / "vis.json", results / "summaries" / "calibration.json"
    if not (stamp.is_file() and cal.is_file()):
        return []
    s = json.loads(stamp.read_text())
    key = store.measurement_key("vis", VIS_VERSION, s["runs"], {"figures": s["figures"]})
    store.save_measurement(results, "architectures", key,
                           {"figures": s["figures"], "calibration": json.loads(cal.read_text())})
    stamp.unlink()
    cal.unlink()
    return [stamp, cal]


def migrate(results) -> list[Path]:
    """Move every measurement of the earlier layouts under ``results`` into
    the store; returns the files it replaced."""
    results = Path(results)
    return _surfaces(results) + _pruning(results) + _vis(results)


def main(argv=None) -> int:
    from cifar_lib.profiles import get_profile
    ap = argparse.ArgumentParser(prog="python -m cifar_lib.migrate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", nargs="*", default=None,
                    help="results folders (default: the cpu and full profiles')")
    args = ap.parse_args(argv)
    folders = args.results or [get_profile(p).results for p in ("cpu", "full")]
    for folder in folders:
        moved = migrate(folder)
        print(f"{folder}: {len(moved)} file(s) moved into the store")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

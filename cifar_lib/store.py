"""The one place that names, reads and writes results.

Two kinds of stored item live under a profile's ``results/``:

* a **run**: ``results/<experiment>/<key>.json``, where the key is
  :func:`run_key` (model, seed and a hash of the config, the data
  description and the recording tag); it holds the config, data,
  environment, per-epoch history, status and metrics;
* a **measurement** made after training (surfaces, pruning, the trained
  networks' figures, model costs): ``results/<experiment>/measurements/
  <name>-<hash>.json``, keyed by :func:`measurement_key` from its name, a
  version, the runs it was computed from and its settings, so that a new
  run or a changed measurement is measured again and never mixed up.

:func:`read` is the one reader of result files: a damaged file (not JSON,
or a run record whose metrics are not numbers) is named in a warning,
listed by :func:`damaged` for the report, and left in place; :func:`write`
moves such a file aside (``<name>.damaged``) before writing over it, and
writes atomically through a uniquely named temporary file.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from cifar_lib.fsutil import atomic_write

MEASUREMENTS = "measurements"   # folder of an experiment's measurements
_DAMAGED: dict[str, str] = {}   # path -> what is wrong with it


# ---------------------------------------------------------------- keys


def _hash(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


def run_key(config: dict, data: dict, tag: dict | None = None) -> str:
    """``<model>-s<seed>-<hash of config, data and tag>``: a run's name.

    The hash is of the stored config dict, so a record names itself."""
    ident = {"config": config, "data": data}
    if tag:
        ident["tag"] = tag
    return f"{config['model']}-s{config['seed']}-{_hash(ident)}"


def measurement_key(name: str, version: int, runs, settings=None) -> dict:
    """What a measurement depends on: its name and version, the runs it was
    computed from (run keys, in any JSON shape) and its settings."""
    return {"measurement": name, "version": version, "runs": runs,
            "settings": settings or {}}


def identity(config: dict, tag: dict | None, data: dict) -> str:
    """A run's identity before its data is loaded: config, tag and split
    sizes, any source (what the plan knows; :func:`same_run` with sizes only
    matches the same runs)."""
    sizes = {k: data.get(k) for k in ("train", "val", "test")}
    return json.dumps([config, tag, sizes], sort_keys=True)


def same_run(record: dict, config: dict, tag: dict | None, data: dict | None) -> bool:
    """Whether ``record`` is the run of ``config`` and ``tag`` on ``data``.

    ``data`` None matches any source of the same sizes' split (what a plan
    or a report knows before loading the data); a dict with only sizes
    matches those sizes on any source."""
    if record.get("config") != config or record.get("tag") != tag:
        return False
    return on_data(record, data)


def on_data(record: dict, data: dict | None) -> bool:
    """Whether ``record`` ran on ``data`` (None: any; only the keys given)."""
    have = record.get("data", {})
    return data is None or all(have.get(k) == v for k, v in data.items())


# ---------------------------------------------------------------- paths


def run_path(results: Path, experiment: str, key: str) -> Path:
    """Where run ``key`` of ``experiment`` is stored."""
    return Path(results) / experiment / f"{key}.json"


def measurement_path(results: Path, experiment: str, key: dict) -> Path:
    """Where the measurement with ``key`` (:func:`measurement_key`) is stored."""
    return (Path(results) / experiment / MEASUREMENTS
            / f"{key['measurement']}-{_hash(key)}.json")


# ---------------------------------------------------------------- reading


# Metrics that tables average: a number (or None) in every run record.
NUMERIC_METRICS = ("best_val_acc", "test_acc", "test_loss", "train_time", "wall_time",
                   "images_per_s", "params", "epochs_run")


def _problem(obj) -> str | None:
    """What makes a parsed run record unusable (None: nothing)."""
    if not isinstance(obj, dict) or "config" not in obj or "run" not in obj:
        return None  # not a run record: other checks do not apply
    metrics = obj.get("metrics", {})
    if not isinstance(obj["config"], dict) or not isinstance(metrics, dict):
        return "its config or metrics are not JSON objects"
    for k in NUMERIC_METRICS:
        v = metrics.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            return f"its metric {k!r} is {v!r}, not a number"
    return None


def _damaged(path: Path, why: str) -> None:
    key = str(path)
    if _DAMAGED.get(key) != why:
        _DAMAGED[key] = why
        print(f"warning: cannot read {path}: {why}; it is left out (and moved aside "
              f"to {path.name}.damaged before anything is written there)",
              file=sys.stderr, flush=True)


_CACHE: dict[str, tuple] = {}  # path -> (mtime_ns, size, inode, parsed JSON)


def read(path) -> dict | list | None:
    """The stored JSON in ``path``; None when there is none or it is damaged
    (then named in a warning and in :func:`damaged`). A file unchanged since
    its last read is not parsed again: treat what it returns as read-only."""
    path = Path(path)
    try:
        st = path.stat()
        hit = _CACHE.get(str(path))
        if hit and hit[:3] == (st.st_mtime_ns, st.st_size, st.st_ino):
            return hit[3]
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        _damaged(path, f"{type(e).__name__}: {e}")
        return None
    why = _problem(obj)
    if why:
        _damaged(path, why)
        return None
    _DAMAGED.pop(str(path), None)
    _CACHE[str(path)] = (st.st_mtime_ns, st.st_size, st.st_ino, obj)
    return obj


def damaged(results: Path | None = None) -> dict[str, str]:
    """Damaged files met by :func:`read` (under ``results``): path -> why."""
    if results is None:
        return dict(_DAMAGED)
    root = str(Path(results))
    return {p: w for p, w in _DAMAGED.items() if p.startswith(root)}


def runs(results: Path, experiment: str | None = None) -> list[dict]:
    """Every readable run record of ``experiment`` (None: of every
    experiment), oldest first; measurements and damaged files left out."""
    folder = Path(results)
    paths = (folder / experiment).glob("*.json") if experiment else folder.glob("*/*.json")
    recs = [r for r in map(read, sorted(paths))
            if isinstance(r, dict) and "config" in r and "run" in r]
    return sorted(recs, key=lambda r: (r.get("created", ""), r["run"]))


def find_run(results: Path, config: dict, tag: dict | None, data: dict | None,
             experiment: str | None = None) -> tuple[Path, dict] | None:
    """``(path, record)`` of the newest stored run of ``config`` and ``tag``
    on ``data`` (:func:`same_run`), in ``experiment`` first, else in any."""
    if data is not None and {"source", "split_seed"} <= set(data):
        key = run_key(config, data, tag)
        first = [run_path(results, experiment, key)] if experiment else []
        for path in [*first, *sorted(Path(results).glob(f"*/{key}.json"))]:
            rec = read(path)
            if isinstance(rec, dict) and same_run(rec, config, tag, data):
                return path, rec
        return None
    found = [r for r in runs(results) if same_run(r, config, tag, data)]
    if not found:
        return None
    rec = found[-1]
    return run_path(results, rec["experiment"], rec["run"]), rec


def load_measurement(results: Path, experiment: str, key: dict):
    """The data of the stored measurement with ``key``, else None."""
    item = read(measurement_path(results, experiment, key))
    if isinstance(item, dict) and item.get("key") == key:
        return item.get("data")
    return None


# ---------------------------------------------------------------- one listing

_PINNED: dict | None = None  # while a listing runs: what it derived from results/


@contextmanager
def pinned():
    """Within: results/ is taken as unchanged, so that one listing (a
    plan, a report) derives each thing from it once (:func:`memo`) instead
    of once per experiment that asks. Nested uses share the outer one."""
    global _PINNED
    if _PINNED is not None:
        yield
        return
    _PINNED = {}
    try:
        yield
    finally:
        _PINNED = None


def memo(key, make):
    """``make()``, computed once per ``key`` within :func:`pinned`, and
    every time outside it."""
    if _PINNED is None:
        return make()
    if key not in _PINNED:
        _PINNED[key] = make()
    return _PINNED[key]


# ---------------------------------------------------------------- writing


def _clean(x):
    """JSON-safe copy: non-finite floats become None."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write(obj, path) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (a uniquely named
    temporary file, then a rename). A damaged file already there is moved
    aside to ``<name>.damaged``, never overwritten unseen."""
    path = Path(path)
    text = json.dumps(_clean(obj), indent=1, allow_nan=False)
    if str(path) in _DAMAGED and path.is_file():
        os.replace(path, path.with_name(path.name + ".damaged"))
        print(f"note: moved the damaged {path} aside to {path.name}.damaged",
              file=sys.stderr, flush=True)
        _DAMAGED.pop(str(path), None)
    _CACHE.pop(str(path), None)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def save_measurement(results: Path, experiment: str, key: dict, data) -> Path:
    """Store a measurement's ``data`` under its ``key``."""
    return write({"key": key, "data": data}, measurement_path(results, experiment, key))


def check_writable(folder) -> None:
    """Raise a clear error now when nothing can be written in ``folder``
    (before hours of training whose result could not be saved)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"cannot write results to {folder} ({e.strerror or e}); "
                              "make it writable or choose another output root") from e

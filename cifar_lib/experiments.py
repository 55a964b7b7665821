"""Runs on disk: one JSON per run, cached by config; named experiments; tables.

A run lives at ``<profile root>/results/<experiment>/<run>.json`` with its
best weights at ``<profile root>/weights/<experiment>/<run>.pt``; ``<run>``
is the model, seed and a hash of the config and data. A run whose JSON is
already there is loaded instead of trained (``force=True`` retrains), so
notebooks draw from runs made elsewhere (e.g. on a GPU via the CLI).
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import math
import os
import platform
import sys
from pathlib import Path

import torch

from cifar_lib.data import Split, load_cifar10, split_data, synthetic_cifar
from cifar_lib.fsutil import atomic_write
from cifar_lib.engine import TrainConfig, default_device, fit, load_checkpoint, make_loaders
from cifar_lib.models import create_model
from cifar_lib.profiles import Profile, get_profile
from cifar_lib.registry import (EXPERIMENTS, TRAINERS,  # noqa: F401  (re-exported)
                                STUDIES_HINT, TAGS, register_experiment)


def environment(device=None) -> dict:
    """Versions and device of this process, stored with every run."""
    import torchvision
    dev = torch.device(device) if device else default_device()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"
    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "device": dev.type, "device_name": name,
            "cpu_threads": torch.get_num_threads()}


@functools.lru_cache(maxsize=4)
def _split(profile: Profile, root) -> Split:
    if profile.data == "synthetic":
        data = synthetic_cifar(n_train=profile.train_size + profile.val_size,
                               n_test=profile.test_size)
    else:
        data = load_cifar10(root)
    return split_data(data, profile.val_size, seed=0, train_size=profile.train_size,
                      test_size=profile.test_size)


def profile_split(profile: Profile | str | None = None, root=None) -> Split:
    """The train/val/test split a profile trains on (cached in memory).

    Used by notebooks 00-05 (every report section).
    """
    profile = get_profile(profile)
    root = root or os.environ.get("CIFAR10_ROOT")
    return _split(profile, str(root) if root else None)


def run_name(cfg: TrainConfig, data: dict, tag: dict | None = None) -> str:
    """``<model>-s<seed>-<hash of config, data and tag>``."""
    ident = {"config": cfg.to_dict(), "data": data}
    if tag:
        ident["tag"] = tag
    blob = json.dumps(ident, sort_keys=True)
    return f"{cfg.model}-s{cfg.seed}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"


def _clean(x):
    """JSON-safe copy: non-finite floats become None."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write_json(obj, path: Path) -> None:
    """Write JSON atomically (temp file, then rename)."""
    text = json.dumps(_clean(obj), indent=1, allow_nan=False)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def update_manifest(profile: Profile, record: dict) -> None:
    """List the run's checkpoint in ``weights/manifest.json`` (with sha256)."""
    if not record.get("weights"):
        return
    path = profile.weights / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    ck = profile.root / record["weights"]
    manifest[record["weights"]] = {
        "experiment": record["experiment"], "run": record["run"],
        "model": record["config"]["model"], "model_kw": record["config"]["model_kw"],
        "kept": record["metrics"].get("kept", "best"),
        "val_acc": record["metrics"].get("kept_val_acc", record["metrics"]["best_val_acc"]),
        "test_acc": record["metrics"]["test_acc"],
        "bytes": ck.stat().st_size,
        "sha256": record.get("weights_sha256") or _sha256(ck)}
    write_json(dict(sorted(manifest.items())), path)


def _manifest_sha(profile: Profile, weights: str) -> str | None:
    path = profile.weights / "manifest.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get(weights, {}).get("sha256")


def weights_problem(record: dict, profile: Profile | str | None = None) -> str | None:
    """Why a run's weights cannot be used (None: they can).

    Weights are used only when the record says the run finished (``ok`` or
    ``diverged``) and the checkpoint's sha256 is the one the record (or, for
    older records, ``weights/manifest.json``) wrote down for it.
    """
    profile = get_profile(profile)
    if record.get("status") not in ("ok", "diverged"):
        return f"its record has no final status ({record.get('status')!r})"
    if not record.get("weights"):
        return "the run kept no weights"
    ck = profile.root / record["weights"]
    if not ck.is_file():
        return f"{record['weights']} is not on this machine"
    want = record.get("weights_sha256") or _manifest_sha(profile, record["weights"])
    if want is None:
        return None if ck.stat().st_mtime <= _record_time(record) else \
            f"{record['weights']} is newer than its record and has no hash to check"
    if _sha256(ck) != want:
        return (f"{record['weights']} does not match its record (sha256 differs: "
                "left by an interrupted rebuild?)")
    return None


def _record_time(record: dict) -> float:
    try:
        return _dt.datetime.fromisoformat(record["created"]).timestamp() + 60
    except (KeyError, ValueError):
        return math.inf


def find_record(cfg: TrainConfig, split_or_data, experiment: str,
                profile: Profile | str | None = None, tag: dict | None = None):
    """``(path, record)`` of the run of ``cfg`` on disk (any experiment), else None."""
    profile = get_profile(profile)
    data = split_or_data if isinstance(split_or_data, dict) else split_or_data.describe()
    name = run_name(cfg, data, tag)
    path = profile.results / experiment / f"{name}.json"
    for found in [path, *sorted(profile.results.glob(f"*/{name}.json"))]:
        if found.is_file():
            try:
                rec = json.loads(found.read_text())
            except json.JSONDecodeError:
                continue  # a damaged record is trained again
            if rec.get("config") == cfg.to_dict() and rec.get("tag") == tag:
                return found, rec
    return None


def _say(log, text: str) -> None:
    (log or (lambda t: print(t, file=sys.stderr, flush=True)))(text)


def run(cfg: TrainConfig, split: Split, experiment: str,
        profile: Profile | str | None = None, *, label: str | None = None,
        force: bool = False, need_weights: bool = False, device=None,
        callbacks=(), hooks=(), tag: dict | None = None, log=None,
        save_every: float = 120.0) -> dict:
    """Train ``cfg`` on ``split`` unless its result is on disk; return the record.

    The record holds the config, data description, environment, per-epoch
    history, status (``ok``/``diverged``), final metrics and the sha256 of
    the kept weights. A diverged run is saved like any other and does not
    raise. With ``need_weights`` a result whose checkpoint is missing or
    does not match its record (see :func:`weights_problem`) is trained
    again (resuming from its ``.last.pt`` if an interrupted attempt left
    one), and the reason is printed. ``callbacks`` and ``hooks`` go to
    :func:`engine.fit`; a hook with a ``result()`` method adds its dict to
    the record (e.g. per-step measurements). ``tag`` (JSON-safe) joins the
    config in the run's name, for settings outside the config that change
    what is recorded; ``save_every`` (s) how often the resume state is
    written. Used by every notebook (01-05) through its study.

    Used by notebook 05 (report section 3).
    """
    profile = get_profile(profile)
    data = split.describe()
    name = run_name(cfg, data, tag)
    path = profile.results / experiment / f"{name}.json"
    found = None if force else find_record(cfg, data, experiment, profile, tag)
    if found is not None:
        where, rec = found
        problem = weights_problem(rec, profile) if need_weights else None
        if problem is None:
            if where != path:  # same run made for another experiment
                rec.update(experiment=experiment, label=label or rec.get("label"))
                write_json(rec, path)
            return rec
        _say(log, f"{experiment}/{name}: retraining, {problem}")
    if os.environ.get("CIFAR_LIB_NO_TRAIN", "") not in ("", "0"):
        raise RuntimeError(f"{experiment}/{name} ({cfg.model}) would train, but training "
                           "is off (CIFAR_LIB_NO_TRAIN / notebooks --no-train): its "
                           "record or weights are not here; train it with `python -m "
                           "cifar_lib run` first")
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, num_classes=split.num_classes, **cfg.model_kw)
    ckpt = profile.weights / experiment / f"{name}.pt"
    ckpt.unlink(missing_ok=True)  # weights are written when the run ends
    if force:  # nothing of an earlier run may stand in for this one
        ckpt.with_suffix(".last.pt").unlink(missing_ok=True)
    _say(log, f"training {experiment}/{name} ({cfg.model}, {cfg.epochs} epochs)")
    out = fit(model, make_loaders(split, cfg, device), cfg, ckpt_path=ckpt,
              callbacks=callbacks, hooks=hooks, log=log, save_every=save_every)
    rec = {"experiment": experiment, "run": name, "label": label or name,
           "status": out["status"], "diverged_at": out["diverged_at"],
           "config": cfg.to_dict(), "data": data, "env": environment(device),
           "profile": profile.name,
           "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "weights": str(ckpt.relative_to(profile.root)) if ckpt.is_file() else None,
           "weights_sha256": _sha256(ckpt) if ckpt.is_file() else None,
           "history": out["history"], "metrics": out["metrics"]}
    if tag:
        rec["tag"] = tag
    for h in hooks:
        rec.update(h.result() if hasattr(h, "result") else {})
    write_json(rec, path)
    update_manifest(profile, rec)
    acc = out["metrics"].get("test_acc")
    _say(log, f"done {experiment}/{name}: {out['status']}, test acc "
              f"{'n/a' if acc is None else f'{acc:.4f}'}, "
              f"{out['metrics'].get('wall_time') or 0:.0f} s")
    return json.loads(path.read_text())


def trained_model(cfg: TrainConfig, split: Split, experiment: str,
                  profile: Profile | str | None = None, *, label: str | None = None,
                  force: bool = False, device=None):
    """The model of a run with its kept weights: loaded, or trained when its
    result or checkpoint is not on this machine; on ``device`` (trained and
    loaded there), None meaning :func:`engine.default_device` (CUDA when
    available, else CPU)."""
    rec = run(cfg, split, experiment, profile, label=label, force=force,
              need_weights=True, device=device)
    return load_model(rec, profile, device)


def load_model(record: dict, profile: Profile | str | None = None, device=None):
    """The trained model of a run record, with its kept weights, in eval mode,
    on ``device``: None means :func:`engine.default_device` (CUDA when
    available, else CPU)."""
    profile = get_profile(profile)
    problem = weights_problem(record, profile)
    if problem is not None:
        raise FileNotFoundError(f"the weights of run {record['run']} cannot be used: "
                                f"{problem}; retrain it (trained_model or force=True)")
    dev = torch.device(device) if device else default_device()
    return load_checkpoint(profile.root / record["weights"]).to(dev).eval()


def read_record(path: Path) -> dict | None:
    """The run record in ``path``; None for a damaged file or other JSON
    (such as a stored measurement)."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a damaged record is left out (and its run trained again)
    return rec if isinstance(rec, dict) and "config" in rec and "run" in rec else None


def load_results(experiment: str, profile: Profile | str | None = None) -> list[dict]:
    """Every run record of ``experiment`` under the profile, oldest first
    (damaged files and other JSON, such as stored measurements, left out)."""
    profile = get_profile(profile)
    recs = filter(None, map(read_record, (profile.results / experiment).glob("*.json")))
    return sorted(recs, key=lambda r: (r.get("created", ""), r["run"]))


METRICS = ("best_val_acc", "test_acc", "train_time", "wall_time",
           "images_per_s", "params", "epochs_run")


def results_frame(records: list[dict]):
    """One row per run: label, status, scalar config fields and metrics."""
    import pandas as pd
    rows = []
    for r in records:
        row = {"experiment": r["experiment"], "label": r["label"], "run": r["run"],
               "status": r["status"]}
        row.update({k: v for k, v in r["config"].items() if not isinstance(v, (dict, list))})
        row.update({k: r["metrics"].get(k) for k in METRICS})
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(df, by="label", metrics=("test_acc", "best_val_acc", "train_time")):
    """Mean, std and count over seeds per group, groups in first-seen order."""
    g = df.groupby(by, sort=False)
    out = g[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out["runs"] = g.size()
    out["diverged"] = g["status"].apply(lambda s: int((s == "diverged").sum()))
    return out.reset_index()


# ---------------------------------------------------------------- named experiments
# Experiments register into cifar_lib.registry (``register_experiment`` is
# re-exported here); the study modules hold them.

def experiment_configs(name: str, profile: Profile | str | None = None):
    """The (label, config) pairs of a named experiment for a profile."""
    profile = get_profile(profile)
    if name not in EXPERIMENTS:
        known = ", ".join(sorted(EXPERIMENTS))
        raise ValueError(f"unknown experiment {name!r}; " + (
            f"choose one of {known}" if known else f"none is registered yet: {STUDIES_HINT}"))
    return EXPERIMENTS[name](profile)


def experiment_records(name: str, profile: Profile | str | None = None, *,
                       pairs=None, data: dict | None = None,
                       ok_only: bool = False) -> list[dict]:
    """The records on disk of a named experiment's current configs, in its
    spec order, each with the spec's label: the one record lookup of every
    study.

    A record counts when its config equals a config of the spec (``pairs``:
    these ``(label, config)`` instead) and its tag the one the experiment
    records it with (``register_experiment(..., tag=)``); where a config ran
    twice (e.g. on two data sources) the newest is used, or the one on
    ``data`` when given. Configs without a record are left out, as are
    diverged runs with ``ok_only``.

    Used by notebooks 01-05 through their study's ``records``.
    """
    profile = get_profile(profile)
    pairs = experiment_configs(name, profile) if pairs is None else pairs
    tag_of = TAGS.get(name, lambda P, cfg: None)
    newest: dict[tuple, dict] = {}
    for rec in load_results(name, profile):  # oldest first: the newest wins
        if data is not None and rec.get("data") != data:
            continue
        if ok_only and rec.get("status") != "ok":
            continue
        key = (json.dumps(rec["config"], sort_keys=True),
               json.dumps(rec.get("tag"), sort_keys=True))
        newest[key] = rec
    out = []
    for label, cfg in pairs:
        key = (json.dumps(cfg.to_dict(), sort_keys=True),
               json.dumps(tag_of(profile, cfg), sort_keys=True))
        if key in newest:
            out.append({**newest[key], "label": label})
    return out


def run_experiment(name: str, profile: Profile | str | None = None,
                   split: Split | None = None, force: bool = False,
                   device=None, log=None) -> list[dict]:
    """Run (or load) every config of a named experiment; return the records,
    in spec order (``results_frame`` makes them a table).

    The one way a notebook trains: the notebooks and the CLI's
    ``experiment`` command call it with the experiment's name (notebook 03
    trains only through its study's ``measure``, when its models are missing).

    Used by notebooks 01, 02, 04, 05 (report sections 1.2, 1.3, 2, 3).
    """
    profile = get_profile(profile)
    pairs = experiment_configs(name, profile)
    split = split or profile_split(profile)
    train = experiment_trainer(name)
    return [train(profile, split, label, cfg, force=force, device=device, log=log)
            for label, cfg in pairs]


def experiment_trainer(name: str):
    """``train(profile, split, label, cfg, *, force, device, log) -> record``
    for one config of experiment ``name``: its registered trainer (runs that
    record per step), else :func:`run` into the experiment's folder."""
    if name in TRAINERS:
        return TRAINERS[name]

    def train(profile, split, label, cfg, *, force=False, device=None, log=None):
        return run(cfg, split, name, profile, label=label, force=force,
                   device=device, log=log)
    return train

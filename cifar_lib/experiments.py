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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from cifar_lib.data import Split, load_cifar10, split_data, synthetic_cifar
from cifar_lib import store
from cifar_lib.engine import (TrainConfig, default_device, fit, load_checkpoint, make_loaders,
                              stale)
from cifar_lib.models import create_model
from cifar_lib.profiles import Profile, get_profile


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
def _split(profile: Profile, root, download: bool = True) -> Split:
    if profile.data == "synthetic":
        data = synthetic_cifar(n_train=profile.train_size + profile.val_size,
                               n_test=profile.test_size)
    else:
        data = load_cifar10(root, download=download)
    return split_data(data, profile.val_size, seed=0, train_size=profile.train_size,
                      test_size=profile.test_size)


def profile_split(profile: Profile | str | None = None, root=None,
                  download: bool = True) -> Split:
    """The train/val/test split a profile trains on (cached in memory);
    ``download=False``: a DataError rather than a download when the data
    is not on this machine.

    Used by notebooks 00-05 (every report section).
    """
    profile = get_profile(profile)
    root = root or os.environ.get("CIFAR10_ROOT")
    split = _split(profile, str(root) if root else None, download)
    _LAST_SPLIT[profile] = split
    return split


_LAST_SPLIT: dict[Profile, Split] = {}


def loaded_split(profile: Profile) -> Split | None:
    """The split this process last loaded for ``profile`` (wherever its data
    came from), else the profile's split when its data is on this machine
    (no download), else None: what figures drawn from the data use."""
    from cifar_lib.data import DataError
    if profile in _LAST_SPLIT:
        return _LAST_SPLIT[profile]
    try:
        return profile_split(profile, download=False)
    except DataError:
        return None


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
    if record.get("status") not in ("ok", "diverged", "failed"):
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


write_json = store.write  # the one writer, by the name older code and scripts use


def run_name(cfg: TrainConfig, data: dict, tag: dict | None = None) -> str:
    """The store's key of ``cfg`` on ``data`` (:func:`cifar_lib.store.run_key`)."""
    return store.run_key(cfg.to_dict(), data, tag)


def _say(log, text: str) -> None:
    (log or (lambda t: print(t, file=sys.stderr, flush=True)))(text)


def _reuse(cfg, data, experiment, profile, tag, label, need_weights, log):
    """The stored record of this run when it can stand (None: train it)."""
    found = store.find_run(profile.results, cfg.to_dict(), tag, data, experiment)
    if found is None:
        return None
    where, rec = found
    problem = stale(rec) or (weights_problem(rec, profile) if need_weights else None)
    if problem is not None:
        _say(log, f"{experiment}/{rec['run']}: retraining, {problem}")
        return None
    path = store.run_path(profile.results, experiment, rec["run"])
    if where != path:  # the same run made for another experiment
        rec = {**rec, "experiment": experiment, "label": label or rec.get("label")}
        store.write(rec, path)
    return rec


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
    written. The results folder is checked for writing before training.

    Used by notebook 05 (report section 3).
    """
    profile = get_profile(profile)
    data = split.describe()
    if not force:
        rec = _reuse(cfg, data, experiment, profile, tag, label, need_weights, log)
        if rec is not None:
            return rec
    if os.environ.get("CIFAR_LIB_NO_TRAIN", "") not in ("", "0"):
        raise RuntimeError(f"{experiment}/{run_name(cfg, data, tag)} ({cfg.model}) would "
                           "train, but training is off (CIFAR_LIB_NO_TRAIN / notebooks "
                           "--no-train): its record or weights are not here; train it "
                           "with `python -m cifar_lib run` first")
    store.check_writable(profile.results / experiment)
    store.check_writable(profile.weights / experiment)
    began = time.perf_counter()
    try:
        rec = _train(cfg, split, experiment, profile, label, force, device, callbacks,
                     hooks, tag, log, save_every)
        return _save(rec, profile, log)
    finally:
        _TRAINED_S[0] += time.perf_counter() - began


# Seconds this process has spent training runs in :func:`run` (a measurement
# that retrains runs whose weights are not on the machine counts them
# apart: :func:`trained_seconds`).
_TRAINED_S = [0.0]


def trained_seconds() -> float:
    """Wall seconds spent so far in this process training runs through
    :func:`run` (records written or not): the runner subtracts what a
    measurement spent retraining from the measurement's own time."""
    return _TRAINED_S[0]


def _train(cfg, split, experiment, profile, label, force, device, callbacks, hooks,
           tag, log, save_every) -> dict:
    """Train one run and return its record (not yet written)."""
    data = split.describe()
    name = run_name(cfg, data, tag)
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
           "failure": out.get("failure"),
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
    return rec


def _save(rec: dict, profile: Profile, log) -> dict:
    """Write a trained run's record; when that fails, keep it in a fallback
    file (named in the error) and raise the original error."""
    path = store.run_path(profile.results, rec["experiment"], rec["run"])
    try:
        store.write(rec, path)
        update_manifest(profile, rec)
    except OSError as e:
        import tempfile
        keep = Path(tempfile.gettempdir()) / f"cifar_lib-unsaved-{rec['run']}.json"
        try:
            store.write(rec, keep)
            kept = f"the record is kept in {keep}"
        except OSError:
            kept = "the record could not be kept either"
        weights = f"; its weights are in {profile.root / rec['weights']}" \
            if rec.get("weights") else ""
        raise OSError(e.errno, f"run {rec['run']} trained, but its record could not be "
                      f"written to {path} ({e.strerror or e}); {kept}{weights}") from e
    acc = rec["metrics"].get("test_acc")
    _say(log, f"done {rec['experiment']}/{rec['run']}: {rec['status']}, test acc "
              f"{'n/a' if acc is None else f'{acc:.4f}'}, "
              f"{rec['metrics'].get('wall_time') or 0:.0f} s")
    return store.read(path) or rec


def trained_model(cfg: TrainConfig, split: Split, experiment: str,
                  profile: Profile | str | None = None, *, label: str | None = None,
                  force: bool = False, device=None, tag: dict | None = None, hooks=()):
    """The model of a run with its kept weights: loaded, or trained when its
    result or checkpoint is not on this machine; on ``device`` (trained and
    loaded there), None meaning :func:`engine.default_device` (CUDA when
    available, else CPU)."""
    rec = run(cfg, split, experiment, profile, label=label, force=force,
              need_weights=True, device=device, tag=tag, hooks=hooks)
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


METRICS = ("best_val_acc", "test_acc", "train_time", "wall_time",
           "images_per_s", "params", "epochs_run")


# How often a mechanism acted in a run (engine metrics), where recorded.
ACTED = ("clip_frac", "lr_cuts", "switch_step")


def results_frame(records: list[dict]):
    """One row per run: label, status, scalar config fields and metrics.

    ``status`` is ``failed`` for a run that finished but never learned (at
    chance over its last epochs, :func:`cifar_lib.health.record_failure`),
    judged again from its history, so a record stored under an earlier
    rule (or before the engine marked such runs) reads as the rule says
    now; ``failure`` says why."""
    import pandas as pd
    from cifar_lib.health import record_failure
    rows = []
    for r in records:
        failure = record_failure(r)
        status = (("failed" if failure else "ok") if r["status"] in ("ok", "failed")
                  else r["status"])  # judged again: a record keeps the rule it was stored under
        row = {"experiment": r["experiment"], "label": r["label"], "run": r["run"],
               "status": status, "failure": failure}
        row.update({k: v for k, v in r["config"].items() if not isinstance(v, (dict, list))})
        row.update({k: r["metrics"].get(k) for k in METRICS + ACTED})
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(df, by="label", metrics=("test_acc", "best_val_acc", "train_time")):
    """Mean, std and count over seeds per group, groups in first-seen order.

    The means and spreads are over the runs that learned (status ``ok``);
    ``runs`` counts every run, ``failed`` and ``diverged`` those left out,
    and ``<metric>_seeds`` lists every run's value in seed order."""
    import pandas as pd
    ok = df[df["status"] == "ok"]
    g_all = df.groupby(by, sort=False)
    out = ok.groupby(by, sort=False)[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out = out.reindex(pd.Index(list(g_all.groups), name=by))
    order = [k for k in dict.fromkeys(df[by])]
    out = out.loc[order]
    out["runs"] = g_all.size().loc[order]
    out["diverged"] = g_all["status"].apply(lambda s: int((s == "diverged").sum())).loc[order]
    out["failed"] = g_all["status"].apply(lambda s: int((s == "failed").sum())).loc[order]
    sort = "seed" if "seed" in df else by
    for m in metrics:
        out[f"{m}_seeds"] = [list(zip(d.sort_values(sort)["status"], d.sort_values(sort)[m]))
                             for _, d in ((k, g_all.get_group(k)) for k in order)]
    return out.reset_index()


# ---------------------------------------------------------------- experiments
# Priority groups (the budgeted runner's order) are in cifar_lib.registry.


@dataclass(frozen=True, eq=False)
class Run:
    """One run of an experiment: its label, config, what it records beyond
    the defaults (``tag``, joined to its name) and the fit hooks that record
    it (``hooks()`` makes fresh ones), and its priority group when that is
    not its experiment's. ``waits`` names what the run waits for (a rate
    grid whose choice it takes); its config is provisional until then and
    it is not trained."""

    label: str
    cfg: TrainConfig
    tag: dict | None = None
    hooks: Callable[[], list] | None = None
    group: str | None = None
    waits: str | None = None

    def make_hooks(self) -> list:
        return list(self.hooks()) if self.hooks else []


@dataclass(frozen=True, eq=False)
class Measurement:
    """A measurement made after training that needs weights; it stores what
    the report shows, so rendering needs no weights.

    ``needs(run)`` says which runs of its experiment it needs;
    ``measure(profile, split, *, force, device, log)`` measures (a no-op
    when its stored result matches the current runs)."""

    name: str
    notebook: str
    needs: Callable[[Run], bool]
    measure: Callable


@dataclass(frozen=True, eq=False)
class Experiment:
    """A named set of runs: its notebook and report section, its priority
    group, ``runs(profile)`` and the measurements that follow its runs
    (added by :meth:`measurement`). ``extended``: only in the opt-in
    extended set."""

    name: str
    notebook: str
    section: str
    group: str
    make_runs: Callable[[Profile], list]
    extended: bool = False
    measurements: list = field(default_factory=list)

    def measurement(self, name: str, notebook: str | None = None,
                    needs: Callable[[Run], bool] = lambda r: True):
        """Decorator: ``measure(profile, split, *, force, device, log)``
        follows this experiment's runs (those for which ``needs(run)``)."""
        def deco(fn):
            self.measurements.append(Measurement(name, notebook or self.notebook, needs, fn))
            return fn
        return deco

    def runs(self, profile: Profile) -> list[Run]:
        """The experiment's runs in this profile (pairs become :class:`Run`)."""
        return [r if isinstance(r, Run) else Run(*r) for r in self.make_runs(profile)]

    def group_of(self, r: Run) -> str:
        return r.group or self.group

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}, notebook {self.notebook}, group {self.group!r})"


def train_one(experiment: Experiment, r: Run, profile: Profile, split: Split, *,
              force: bool = False, need_weights: bool = False, device=None,
              log=None) -> dict:
    """Train (or load) one run of ``experiment`` with its recorders."""
    return run(r.cfg, split, experiment.name, profile, label=r.label, force=force,
               need_weights=need_weights, device=device, hooks=r.make_hooks(),
               tag=r.tag, log=log)


def records(experiment: Experiment, profile: Profile, *, ok_only: bool = False,
            data: dict | None = None) -> list[dict]:
    """The stored records of ``experiment``'s current runs, in its order,
    each with its run's label: the one accessor of stored runs.

    A record counts when its config and tag are those of a run: the newest
    in the experiment's folder, else the newest in any folder (a run shared
    with another experiment), or the one on ``data`` when given; runs
    without a record are left out, as are diverged ones with ``ok_only``.

    Used by notebooks 01-05 (every report section).
    """
    def newest(recs) -> dict[tuple, dict]:
        out = {}
        for rec in recs:  # oldest first: the newest wins
            if ok_only and rec.get("status") != "ok":
                continue
            if store.on_data(rec, data):
                out[store.identity(rec["config"], rec.get("tag"), {})] = rec
        return out
    own = newest(store.runs(profile.results, experiment.name))
    anywhere = None
    out = []
    for r in experiment.runs(profile):
        key = store.identity(r.cfg.to_dict(), r.tag, {})
        if key not in own and anywhere is None:
            anywhere = newest(store.runs(profile.results))
        rec = own.get(key) or anywhere.get(key)
        if rec is not None:
            out.append({**rec, "label": r.label})
    return out


def run_experiment(experiment: Experiment, profile: Profile, split: Split | None = None,
                   force: bool = False, device=None, log=None) -> list[dict]:
    """Run (or load) every run of ``experiment``; return the records in its
    order (``results_frame`` makes them a table).

    The one way a notebook trains: the notebooks and the CLI's
    ``experiment`` command call it (notebook 03 trains only through its
    measurement, when its models are missing).

    Used by notebooks 01, 02, 04, 05 (report sections 1.2, 1.3, 2, 3).
    """
    split = split or profile_split(profile)
    done: dict[str, dict] = {}
    while True:  # runs that wait for a rate grid are listed again once it is done
        runs = experiment.runs(profile)
        todo = [r for r in runs if not r.waits and _key(r) not in done]
        if not todo:
            break
        for r in todo:
            done[_key(r)] = train_one(experiment, r, profile, split, force=force,
                                      device=device, log=log)
    waiting = sorted({r.waits for r in runs if r.waits})
    if waiting:
        _say(log, f"{experiment.name}: {sum(bool(r.waits) for r in runs)} run(s) wait for "
                  f"{', '.join(waiting)}; they are not trained")
    return [done[_key(r)] for r in runs if _key(r) in done]


def _key(r: Run) -> str:
    return store.identity(r.cfg.to_dict(), r.tag, {})


def measure(experiment: Experiment, profile: Profile, split: Split | None = None, *,
            force: bool = False, device=None, log=None) -> None:
    """Make (or find stored) every measurement of ``experiment``."""
    for m in experiment.measurements:
        m.measure(profile, split, force=force, device=device, log=log)


def find_experiment(experiments, name: str) -> Experiment:
    """The experiment called ``name`` among ``experiments`` (a clear error,
    with the names there are, for any other)."""
    for e in experiments:
        if e.name == name:
            return e
    import difflib
    names = [e.name for e in experiments]
    near = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise ValueError(f"unknown experiment {name!r}{hint} (choose one of {', '.join(names)})")

"""BatchNorm study (report section 2): VGG-A with and without BatchNorm.

After Santurkar et al. 2018 ("How Does Batch Normalization Help
Optimization?"). Both networks train with the same data, seed and recipe:

* the course's loss landscape: Adam at each of ``COURSE_LRS``, the training
  loss per step, its min-max band across learning rates; the same runs give
  the last layer's gradient per step (kept every ``keep_every`` steps);
* the same band relative to the mean loss over learning rates, and its
  width at matched loss levels, which take out how fast each network
  learns (:func:`relative_band`, :func:`matched_widths`);
* curves at the course's setting (Adam, lr 1e-3) and with SGD with momentum
  at a learning rate at which both networks train;
* the paper's probes (:func:`cifar_lib.landscape.probe`) every
  ``probe_every`` steps of those two settings, along the update the run's
  optimizer takes at that step (for Adam, Adam's step, not lr x gradient);
* filter-normalised 1-D and 2-D loss surfaces around the final weights
  (Li et al. 2018), with BatchNorm on its running statistics (evaluation
  mode), the 1-D one also with batch statistics; :func:`measure` makes
  them after training and keeps them under ``results/``.

Every run is :func:`cifar_lib.experiments.run` with ``keep="last"`` and a
:class:`cifar_lib.landscape.Recorder` hook: cached as
``results/batchnorm/<run>.json``, named by a hash of the config, the data
and the recording options (its ``tag``), with its final weights under
``weights/batchnorm/``. Surfaces are cached as
``results/batchnorm/surfaces/<run>-<hash>.json``. Report tables and values
(``bn_*``) read these files. For a budgeted runner: :func:`train_one` trains
one run given its config, :func:`run_tag` gives its recording tag, and
:func:`measure` makes the post-training measurements (a no-op, needing no
weights, when they are on disk).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from cifar_lib import landscape as L
from cifar_lib.data import Split
from cifar_lib.engine import TrainConfig, default_device
from cifar_lib.experiments import load_model, run, write_json
from cifar_lib.losses import make_loss
from cifar_lib.models import create_model
from cifar_lib.profiles import Profile, get_profile
from cifar_lib.registry import register_experiment, register_table, register_value

EXPERIMENT = "batchnorm"
MODELS = ("vgg_a", "vgg_a_bn")
LABELS = {"vgg_a": "VGG-A", "vgg_a_bn": "VGG-A + BN"}
COLORS = {"vgg_a": "tab:green", "vgg_a_bn": "tab:red"}
COURSE_LRS = (1e-3, 2e-3, 1e-4, 5e-4)  # the course's loss-landscape sweep


# ---------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """Everything the study varies with the profile."""

    width: float                # VGG-A channel multiplier (1: the course's 9.75M net)
    epochs: int                 # epochs of every run
    batch_size: int             # the course's 128 (smoke: the profile's)
    lrs: tuple = COURSE_LRS     # Adam learning rates of the loss landscape
    adam_lr: float = 1e-3       # the course's setting (curves, probes, surfaces)
    sgd_lr: float = 0.1         # SGD learning rate (curves, probes); both nets train
    momentum: float = 0.9       # of SGD
    probe_every: int = 25       # steps between probes
    probe_scales: tuple = (0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4)  # multiples of the update
    keep_every: int = 1         # per-step records kept every this many steps
    surface_images: int = 5120  # training images of the surfaces (full batches only)
    surface_points: int = 41    # points of the 1-D surface over [-span, span]
    surface_grid: int = 21      # points per side of the 2-D surface
    surface_span: float = 1.0   # extent along each filter-normalised direction
    seed: int = 0

    def replace(self, **kw) -> "Sizes":
        """A copy with some sizes changed (tests, one-off smaller runs)."""
        return replace(self, **kw)


def sizes(profile: Profile | str | None = None) -> Sizes:
    """The study's sizes for a profile (smoke: seconds; cpu: minutes; full: H100).

    Used by notebook 04 (report section 2).
    """
    P = get_profile(profile)
    if P.name == "smoke":
        return Sizes(width=1 / 16, epochs=2, batch_size=P.batch_size,
                     probe_every=3, probe_scales=(0.5, 2, 4),
                     surface_images=256, surface_points=9, surface_grid=5)
    if P.name == "cpu":
        # SGD lr 0.02: at 0.1 the plain net barely learns on 5k images in 8
        # epochs (train loss 1.83, val acc 28% in a check run; 0.02: 1.57, 41%;
        # with BN 0.68, 50%). At full scale both nets train at 0.1.
        return Sizes(width=0.25, epochs=8, batch_size=128, probe_every=8, sgd_lr=0.02,
                     probe_scales=(0.5, 1, 2, 3, 4), surface_images=1024,
                     surface_points=21, surface_grid=9)
    # full: 6 epochs of 45k images (351 steps each, 2,106 per run). A probe
    # is 9 float32 forward-backward passes and a trial optimizer step, so
    # probing every 25 steps adds about 36% passes to the four probed runs.
    # SGD lr 0.1 trains both nets here (4-epoch check on an H100: train loss
    # 1.10 without BN, 1.12 with). Sized with `python -m cifar_lib plan` to
    # about 2.5 minutes on an H100 for the ten runs and their probes, plus
    # the surfaces (41 + 41 + 441 points on 5,120 images per model). Keeping
    # every 2nd step's records keeps each run's JSON small (1,053 of 2,106).
    return Sizes(width=1.0, epochs=6, batch_size=128, probe_every=25,
                 keep_every=2)


# ---------------------------------------------------------------- runs


@dataclass(frozen=True)
class Spec:
    """One training run of the study."""

    model: str
    setting: str   # "adam" (the course's optimizer) or "sgd"
    lr: float
    probed: bool   # probes along the optimizer's update

    @property
    def label(self) -> str:
        opt = "Adam" if self.setting == "adam" else "SGD"
        return f"{LABELS[self.model]}, {opt} lr={self.lr:g}"


def specs(S: Sizes) -> list[Spec]:
    """Every run: both models x (Adam at each lr, SGD at the large lr)."""
    lrs = tuple(S.lrs) + ((S.adam_lr,) if S.adam_lr not in S.lrs else ())
    out = []
    for m in MODELS:
        out += [Spec(m, "adam", lr, probed=lr == S.adam_lr) for lr in lrs]
        out.append(Spec(m, "sgd", S.sgd_lr, probed=True))
    return out


def config(spec: Spec, S: Sizes) -> TrainConfig:
    """The recipe: no augmentation, no weight decay, constant lr (the course's);
    the run ends with (and tests) its last weights, which the surfaces use."""
    opt = dict(optimizer="adam") if spec.setting == "adam" else \
        dict(optimizer="sgd", momentum=S.momentum, nesterov=False)
    return TrainConfig(model=spec.model, model_kw={"width": S.width}, lr=spec.lr,
                       weight_decay=0.0, scheduler="constant", epochs=S.epochs,
                       batch_size=S.batch_size, augment="none", seed=S.seed,
                       keep="last", **opt)


PROBE_DIRECTION = "update"  # probes follow the optimizer's own step


def recording(spec: Spec, S: Sizes) -> dict:
    """The run's :class:`~cifar_lib.landscape.Recorder` options (its tag).

    A probed run probes along its optimizer's update, at ``probe_scales``
    times that update (``direction`` in the tag); a run without probes has
    no ``direction``, so its tag and name are those of earlier versions.
    """
    if not spec.probed:
        return {"probe_every": 0, "etas": [], "keep_every": S.keep_every}
    return {"probe_every": S.probe_every, "etas": [float(s) for s in S.probe_scales],
            "keep_every": S.keep_every, "direction": PROBE_DIRECTION}


def run_setting(run: dict) -> str:
    """``adam`` or ``sgd``: the optimizer a run record trained with."""
    return "adam" if run["config"]["optimizer"] == "adam" else "sgd"


def _folder(P: Profile) -> Path:
    return P.results / EXPERIMENT


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _records(P: Profile) -> list[dict]:
    """Every run record in the profile's study folder."""
    recs = (_load(p) for p in sorted(_folder(P).glob("*.json")))
    return [r for r in recs if r and "config" in r]


def find_run(P: Profile, spec: Spec, S: Sizes, data: dict | None = None,
             records: list[dict] | None = None) -> dict | None:
    """The newest record on disk for ``spec`` (and ``data`` when given)."""
    cfg, rec_opts = config(spec, S).to_dict(), recording(spec, S)
    found = [r for r in (_records(P) if records is None else records)
             if r.get("config") == cfg and r.get("tag") == rec_opts
             and (data is None or r.get("data") == data)]
    return max(found, key=lambda r: r.get("created", "")) if found else None


def train_run(P: Profile, split: Split, spec: Spec, S: Sizes, *,
              force: bool = False, need_weights: bool = False, device=None,
              log=None) -> dict:
    """Train one run, recorded step by step, unless it is on disk; return
    its record (with ``steps`` and ``probes``, see
    :meth:`cifar_lib.landscape.Recorder.result`)."""
    cfg, opts = config(spec, S), recording(spec, S)
    recorder = L.Recorder(make_loss(cfg.loss, cfg.label_smoothing, **cfg.loss_kw),
                          **opts)
    assert recorder.options() == opts  # the tag says what is recorded
    return run(cfg, split, EXPERIMENT, P, label=spec.label, force=force,
               need_weights=need_weights, device=device, hooks=[recorder],
               tag=opts, log=log)


def train_all(P: Profile, split: Split, S: Sizes | None = None, *,
              force: bool = False, device=None, log=None) -> list[dict]:
    """Every run of the study (trained or loaded), in :func:`specs` order.

    Used by notebook 04 (report section 2).
    """
    S = S or sizes(P)
    return [train_run(P, split, s, S, force=force, device=device, log=log)
            for s in specs(S)]


def spec_of(P: Profile | str | None, cfg: TrainConfig) -> tuple[Spec, Sizes]:
    """The study's run whose config is ``cfg`` (ValueError if there is none)."""
    S = sizes(P)
    want = cfg.to_dict()
    for spec in specs(S):
        if config(spec, S).to_dict() == want:
            return spec, S
    raise ValueError(f"{cfg.model} with {cfg.optimizer} lr={cfg.lr:g} is not a run "
                     f"of the {EXPERIMENT} study in the {get_profile(P).name} "
                     "profile (see experiment_configs)")


def run_tag(P: Profile | str | None, cfg: TrainConfig) -> dict:
    """The recording tag that run gets (``run(..., tag=...)``)."""
    spec, S = spec_of(P, cfg)
    return recording(spec, S)


def train_one(P: Profile | str | None, split: Split, cfg: TrainConfig, *,
              force: bool = False, device=None, log=None) -> dict:
    """Train (or load) the study's run whose config is ``cfg``, with its
    recorder; ValueError if ``cfg`` is not one of the study's."""
    P = get_profile(P)
    spec, S = spec_of(P, cfg)
    return train_run(P, split, spec, S, force=force, device=device, log=log)


def _runner(P: Profile, split: Split, *, force=False, device=None, log=None):
    return train_all(P, split, force=force, device=device, log=log)


@register_experiment(EXPERIMENT, runner=_runner, tag=run_tag)
def experiment_configs(P: Profile) -> list[tuple[str, TrainConfig]]:
    """The study's (label, config) pairs; ``python -m cifar_lib experiment
    batchnorm`` trains them with their step recorders (:func:`train_all`)."""
    S = sizes(P)
    return [(s.label, config(s, S)) for s in specs(S)]


def load_runs(P: Profile | str | None = None, S: Sizes | None = None) -> list[dict]:
    """The records of the profile's runs found on disk (for tables and values)."""
    P = get_profile(P)
    S = S or sizes(P)
    records = _records(P)
    return [r for r in (find_run(P, s, S, records=records) for s in specs(S)) if r]


def _pick(runs, model, setting, lr=None):
    for r in runs:
        c = r["config"]
        if c["model"] == model and run_setting(r) == setting \
                and (lr is None or math.isclose(c["lr"], lr)):
            return r
    return None


def diverged_step(run: dict) -> int | None:
    """The step at which a diverged run broke down: its first non-finite
    loss, else the step at which its loss passed fit's ``max_loss``."""
    if run["status"] != "diverged":
        return None
    st = run.get("steps", {})
    first = st.get("first_nonfinite")
    return first if first is not None else st.get("last_step")


# ---------------------------------------------------------------- summaries


def _arr(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


class Band(NamedTuple):
    """A min-max band over runs, per kept training step."""

    steps: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    ends: str | None  # why it stops before the longest run (None: it does not)
    mean: np.ndarray | None = None  # mean over the runs at each step


def loss_band(runs: list[dict], model: str, setting: str = "adam",
              key: str = "loss") -> Band | None:
    """Min and max over the learning rates of a per-step quantity.

    The band covers only the steps at which every run of ``model`` has a
    finite value: it ends at the first kept step where one of them has none
    (a diverged run), rather than going on over the runs left, which would
    make it look narrower. ``ends`` names the run(s) that ended it. Leading
    steps where no run has a value (the first step's gradient change) are
    skipped.
    """
    rs = [r for r in runs if r["config"]["model"] == model and run_setting(r) == setting]
    if not rs:
        return None
    steps = np.asarray(max((r["steps"]["step"] for r in rs), key=len))
    vals = np.full((len(rs), len(steps)), np.nan)
    for i, r in enumerate(rs):
        v = _arr(r["steps"][key])
        vals[i, :len(v)] = v
    finite = np.isfinite(vals)
    start = int(np.argmax(finite.any(0))) if finite.any() else len(steps)
    ok = finite[:, start:].all(0)
    end = start + (len(ok) if ok.all() else int(np.argmin(ok)))
    ends = None
    if end < len(steps):
        ends = "; ".join(
            f"lr={r['config']['lr']:g} " + (f"diverged at step {diverged_step(r)}"
                                            if r["status"] == "diverged" else "stopped")
            for r, bad in zip(rs, ~finite[:, end]) if bad)
    v = vals[:, start:end]
    return Band(steps[start:end], v.min(0), v.max(0), ends, v.mean(0))


def relative_band(band: Band) -> np.ndarray:
    """Band width over the mean loss at each step, (max - min) / mean: how
    much the learning rate changes the loss, as a fraction of the loss."""
    return (band.hi - band.lo) / band.mean


MATCHED_BINS = 8  # mean-loss bins of :func:`matched_widths`


def matched_widths(plain: Band, bn: Band, bins: int = MATCHED_BINS):
    """Band widths of the two networks at matched loss levels.

    The steps of each band are grouped by their mean loss over the learning
    rates into ``bins`` geometric bins spanning the loss levels that both
    networks pass through; returns the bin edges and each network's mean
    width per bin (NaN where a network has no step in a bin). Comparing at
    equal loss takes out that one network gets there in fewer steps.
    """
    lo = max(np.nanmin(plain.mean), np.nanmin(bn.mean))
    hi = min(np.nanmax(plain.mean), np.nanmax(bn.mean))
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        return None
    edges = np.geomspace(lo, hi, bins + 1)

    def per_bin(b):
        idx = np.digitize(b.mean, edges[1:-1])
        inside = (b.mean >= lo) & (b.mean <= hi)
        w = b.hi - b.lo
        return np.array([w[inside & (idx == i)].mean() if (inside & (idx == i)).any()
                         else np.nan for i in range(bins)])
    return edges, per_bin(plain), per_bin(bn)


def probe_summary(run: dict) -> dict:
    """Means over a run's probes: loss range, max gradient distance, beta,
    the norms of the update probed along and of the gradient, and the
    update's length over lr x ||g|| (1 for plain SGD)."""
    p = run["probes"]
    n = len(p["step"])
    rng = _arr(p["loss_max"]) - _arr(p["loss_min"])
    gd, beta, g = _arr(p["gdist_max"]), _arr(p["beta"]), _arr(p["grad_norm"])
    u = _arr(p.get("step_norm", [None] * n))
    ok = np.isfinite(rng) & np.isfinite(gd) & np.isfinite(beta)
    if not ok.any():
        return {"probes": 0, "loss_range": None, "grad_dist": None,
                "beta": None, "beta_max": None, "step_norm": None,
                "grad_norm": None, "step_over_lr_grad": None}
    lr = run["config"]["lr"]
    mean = lambda a: float(np.nanmean(a[ok])) if np.isfinite(a[ok]).any() else None  # noqa: E731
    return {"probes": int(ok.sum()), "loss_range": float(rng[ok].mean()),
            "grad_dist": float(gd[ok].mean()), "beta": float(beta[ok].mean()),
            "beta_max": float(beta[ok].max()), "step_norm": mean(u),
            "grad_norm": mean(g), "step_over_lr_grad": mean(u / (lr * g))}


def _setting_lr(setting: str, S: Sizes) -> float:
    return S.adam_lr if setting == "adam" else S.sgd_lr


def _setting_name(setting: str, S: Sizes) -> str:
    return f"Adam lr={S.adam_lr:g}" if setting == "adam" else f"SGD lr={S.sgd_lr:g}"


def _outcome(r: dict | None) -> str:
    if r is None:
        return "not run"
    if r["status"] == "diverged":
        return f"diverged at step {diverged_step(r)}"
    return r["status"]


@register_table("bn_runs")
def runs_table(profile=None):
    """One row per run: model, optimizer, lr, outcome, loss and accuracies.

    "final" is the last finished epoch (of a diverged run: the last before
    it diverged); its weights are the ones kept and tested.

    Used by notebook 04 (report section 2).
    """
    import pandas as pd
    P = get_profile(profile)
    rows = []
    for r in load_runs(P):
        c, m, h = r["config"], r["metrics"], r["history"]
        pct = lambda v: None if v is None else round(100 * v, 2)  # noqa: E731
        rows.append({"model": LABELS[c["model"]], "optimizer": c["optimizer"],
                     "lr": c["lr"], "outcome": _outcome(r),
                     "final train loss": h[-1]["train_loss"] if h else None,
                     "best val acc (%)": pct(m["best_val_acc"]),
                     "final val acc (%)": pct(m["kept_val_acc"]),
                     "final test acc (%)": pct(m["test_acc"]),
                     "params": m["params"]})
    return pd.DataFrame(rows)


@register_table("bn_probes")
def probe_table(profile=None):
    """Per setting and model: mean loss range, gradient distance and beta,
    and the mean lengths of the update probed along and of the gradient.

    Used by notebook 04 (report section 2)."""
    import pandas as pd
    P = get_profile(profile)
    S = sizes(P)
    rows = []
    for r in load_runs(P, S):
        if not r["tag"]["probe_every"]:
            continue
        s = probe_summary(r)
        rows.append({"setting": _setting_name(run_setting(r), S),
                     "model": LABELS[r["config"]["model"]],
                     "outcome": _outcome(r), "probes": s["probes"],
                     "mean loss range": s["loss_range"],
                     "mean max grad distance": s["grad_dist"],
                     "mean beta": s["beta"], "max beta": s["beta_max"],
                     "mean ||update||": s["step_norm"],
                     "mean ||grad||": s["grad_norm"],
                     "||update|| / (lr ||grad||)": s["step_over_lr_grad"]})
    return pd.DataFrame(rows)


def _times(r: float) -> str:
    return f"{r:.0f}" if r >= 10 else f"{r:.2g}"


def _ratio(a, b):
    """``a / b`` as text (None when either is missing)."""
    if a is None or b is None or b == 0 or not math.isfinite(a / b):
        return None
    return _times(a / b)


def _compare(bn, plain, less="smaller", more="larger"):
    """How the BN value compares with the plain one, e.g. '2.5 times smaller than'."""
    if bn is None or plain is None or bn <= 0 or plain <= 0:
        return None
    if math.isclose(bn, plain, rel_tol=0.05):
        return "about the same as"
    r = plain / bn
    return f"{_times(r)} times {less} than" if r > 1 else f"{_times(1 / r)} times {more} than"


def _probe_means(profile, setting, key):
    P = get_profile(profile)
    S = sizes(P)
    runs = load_runs(P, S)
    plain, bn = (_pick(runs, m, setting, _setting_lr(setting, S)) for m in MODELS)
    if plain is None or bn is None:
        return None, None
    return probe_summary(plain)[key], probe_summary(bn)[key]


def _band_pair(profile, key="loss"):
    runs = load_runs(profile)
    return tuple(loss_band(runs, m, key=key) for m in MODELS)


def _bands(profile, key, width=lambda b: b.hi - b.lo):
    """Mean ``width`` of the VGG-A and VGG-A + BN bands over the steps both
    cover (default: max - min)."""
    plain, bn = _band_pair(profile, key)
    if plain is None or bn is None:
        return None, None
    common = np.intersect1d(plain.steps, bn.steps)
    if not len(common):
        return None, None
    return tuple(float(np.mean(width(b)[np.isin(b.steps, common)]))
                 for b in (plain, bn))


def _matched(profile):
    """Mean band widths over the mean-loss bins both networks fill."""
    plain, bn = _band_pair(profile)
    m = None if plain is None or bn is None else matched_widths(plain, bn)
    if m is None:
        return None, None, None
    edges, wp, wb = m
    ok = np.isfinite(wp) & np.isfinite(wb)
    if not ok.any():
        return None, None, None
    return float(wp[ok].mean()), float(wb[ok].mean()), edges[[0, -1]]


@register_value("bn_band_ratio")
def band_ratio(profile=None):
    """Mean width of the loss band across lrs, VGG-A over VGG-A + BN (over
    the steps where every run of both networks has a finite loss)."""
    return _ratio(*_bands(profile, "loss"))


@register_value("bn_band_compare")
def band_compare(profile=None):
    """The BN loss band against the plain one, e.g. '2 times narrower than'."""
    plain, bn = _bands(profile, "loss")
    return _compare(bn, plain, "narrower", "wider")


@register_value("bn_band_rel_compare")
def band_rel_compare(profile=None):
    """The BN band relative to its mean loss, (max - min) / mean, against
    the plain one, over the steps both cover."""
    plain, bn = _bands(profile, "loss", relative_band)
    return _compare(bn, plain, "narrower", "wider")


@register_value("bn_band_matched_compare")
def band_matched_compare(profile=None):
    """The BN band width against the plain one at matched mean loss."""
    plain, bn, _ = _matched(profile)
    return _compare(bn, plain, "narrower", "wider")


@register_value("bn_band_matched_levels")
def band_matched_levels(profile=None):
    """The mean-loss levels both networks pass through, e.g. '2.2 to 1.3'."""
    levels = _matched(profile)[2]
    return None if levels is None else f"{levels[1]:.2g} to {levels[0]:.2g}"


@register_value("bn_last_grad_compare")
def last_grad_compare(profile=None):
    """The BN band of the last layer's gradient norm against the plain one."""
    plain, bn = _bands(profile, "last_grad")
    return _compare(bn, plain, "narrower", "wider")


# Report values of the per-step probes: name -> (setting, probe, kind), the
# ratio of the plain network's mean to the BN one's or the two compared.
PROBE_VALUES = {
    "bn_adam_loss_range_ratio": ("adam", "loss_range", "ratio"),
    "bn_adam_loss_range_compare": ("adam", "loss_range", "compare"),
    "bn_adam_gdist_ratio": ("adam", "grad_dist", "ratio"),
    "bn_adam_gdist_compare": ("adam", "grad_dist", "compare"),
    "bn_adam_beta_ratio": ("adam", "beta", "ratio"),
    "bn_adam_beta_compare": ("adam", "beta", "compare"),
    "bn_sgd_loss_range_ratio": ("sgd", "loss_range", "ratio"),
    "bn_sgd_loss_range_compare": ("sgd", "loss_range", "compare"),
    "bn_sgd_gdist_ratio": ("sgd", "grad_dist", "ratio"),
    "bn_sgd_gdist_compare": ("sgd", "grad_dist", "compare"),
    "bn_sgd_beta_ratio": ("sgd", "beta", "ratio"),
    "bn_sgd_beta_compare": ("sgd", "beta", "compare"),
}


def probe_value(profile, setting: str, key: str, kind: str):
    """One entry of :data:`PROBE_VALUES`: ratio or comparison of the means."""
    means = _probe_means(profile, setting, key)
    return _ratio(*means) if kind == "ratio" else _compare(*reversed(means))


for _name, (_s, _k, _kind) in PROBE_VALUES.items():
    register_value(_name)(lambda profile=None, s=_s, k=_k, kind=_kind:
                          probe_value(profile, s, k, kind))


@register_value("bn_adam_step_ratio")
def adam_step_ratio(profile=None):
    """How many times longer Adam's update is than lr x ||gradient||, the
    step a probe along the raw gradient would take (mean over the probes
    of both Adam runs), e.g. '60'."""
    P = get_profile(profile)
    S = sizes(P)
    vals = [probe_summary(r)["step_over_lr_grad"] for r in
            (_pick(load_runs(P, S), m, "adam", S.adam_lr) for m in MODELS) if r]
    vals = [v for v in vals if v is not None]
    return _times(float(np.mean(vals))) if vals else None


@register_value("bn_probe_direction")
def probe_direction(profile=None):
    """What the probes of the runs on disk step along."""
    P = get_profile(profile)
    dirs = {r["tag"].get("direction", "gradient") for r in load_runs(P)
            if r["tag"]["probe_every"]}
    names = {"update": "the update the run's optimizer takes at that step",
             "gradient": "the negative gradient, by multiples of the learning rate"}
    return " and ".join(names[d] for d in sorted(dirs)) or None

@register_value("bn_probe_every")
def probe_every(profile=None):
    """Steps between two probes."""
    return str(sizes(profile).probe_every)


@register_value("bn_probe_scales")
def probe_scales(profile=None):
    """The probe steps as multiples of the optimizer's update."""
    return ", ".join(f"{s:g}" for s in sizes(profile).probe_scales)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@register_value("bn_kept_steps")
def kept_steps(profile=None):
    """Which steps' per-step records are kept, e.g. 'every 5th step'."""
    k = sizes(profile).keep_every
    return "every step" if k == 1 else f"every {_ordinal(k)} step"


@register_value("bn_epochs")
def epochs(profile=None):
    """Epochs of every run."""
    return str(sizes(profile).epochs)


@register_value("bn_width")
def width(profile=None):
    """The channel width and parameter counts of both networks."""
    P = get_profile(profile)
    S = sizes(P)
    counts = {m: sum(p.numel() for p in create_model(m, width=S.width).parameters())
              for m in MODELS}
    w = "full width" if S.width == 1 else f"width x{S.width:g}"
    return (f"{w}: {counts['vgg_a']:,} parameters without BN, "
            f"{counts['vgg_a_bn']:,} with BN")


@register_value("bn_lrs")
def lrs(profile=None):
    """The Adam learning rates of the loss-landscape sweep."""
    return ", ".join(f"{lr:g}" for lr in sizes(profile).lrs)


@register_value("bn_adam_lr")
def adam_lr(profile=None):
    """The course's Adam learning rate (curves, probes, surfaces)."""
    return f"{sizes(profile).adam_lr:g}"


@register_value("bn_sgd_lr")
def sgd_lr(profile=None):
    """The large SGD learning rate."""
    return f"{sizes(profile).sgd_lr:g}"


@register_value("bn_batch")
def batch(profile=None):
    """Batch size of every run."""
    return str(sizes(profile).batch_size)


def _surface_n(S: Sizes) -> int:
    """Images the surfaces use: full batches only."""
    return S.surface_images // S.batch_size * S.batch_size


@register_value("bn_surface_images")
def surface_images(profile=None):
    """Training images the surfaces are measured on (full batches)."""
    return f"{_surface_n(sizes(profile)):,}"


@register_value("bn_device")
def device_name(profile=None):
    """The device the runs trained on (from their records)."""
    runs = load_runs(profile)
    return runs[0]["env"]["device_name"] if runs else None


@register_value("bn_train_minutes")
def train_minutes(profile=None):
    """Wall time of all the study's training runs, in minutes."""
    runs = load_runs(profile)
    return f"{sum(r['metrics']['wall_time'] for r in runs) / 60:.1f}" if runs else None


@register_value("bn_train_size")
def train_size(profile=None):
    """Training images of the runs (from their records)."""
    runs = load_runs(profile)
    return f"{runs[0]['data']['train']:,}" if runs else None


def _acc(profile, model, setting):
    S = sizes(profile)
    r = _pick(load_runs(profile, S), model, setting, _setting_lr(setting, S))
    if r is None:
        return None
    if r["status"] != "ok":
        return _outcome(r)
    return f"{100 * r['metrics']['best_val_acc']:.1f}%"


LEARNS = 0.2  # best val acc above twice chance (10 classes): the run learns


@register_value("bn_sgd_trains")
def sgd_trains(profile=None):
    """Whether both networks learn with SGD, e.g. 'both networks learn' or
    'VGG-A does not learn (best validation accuracy 11.0%)'."""
    S = sizes(profile)
    runs = load_runs(profile, S)
    found = {m: _pick(runs, m, "sgd", S.sgd_lr) for m in MODELS}
    if any(r is None for r in found.values()):
        return None
    bad = [f"{LABELS[m]} does not learn ({_outcome(r)}, best validation accuracy "
           f"{100 * (r['metrics']['best_val_acc'] or 0):.1f}%)"
           for m, r in found.items()
           if r["status"] != "ok" or (r["metrics"]["best_val_acc"] or 0) < LEARNS]
    return "; ".join(bad) if bad else "both networks learn"


# Report values: best validation accuracy of a model in a setting.
ACC_VALUES = {"bn_adam_val_acc_vgg_a": ("vgg_a", "adam"),
              "bn_adam_val_acc_vgg_a_bn": ("vgg_a_bn", "adam"),
              "bn_sgd_val_acc_vgg_a": ("vgg_a", "sgd"),
              "bn_sgd_val_acc_vgg_a_bn": ("vgg_a_bn", "sgd")}
for _name, (_m, _s) in ACC_VALUES.items():
    register_value(_name)(lambda profile=None, m=_m, s=_s: _acc(profile, m, s))


# ---------------------------------------------------------------- surfaces


def surface_options(S: Sizes) -> dict:
    """What a surface depends on besides the trained weights."""
    return {"images": _surface_n(S), "points": S.surface_points,
            "grid": S.surface_grid, "span": S.surface_span, "seed": S.seed,
            "bn": "running statistics (eval mode); 1-D also batch statistics",
            "batch_size": S.batch_size}


def _surface_path(P: Profile, run: str, S: Sizes) -> Path:
    blob = json.dumps(surface_options(S), sort_keys=True).encode()
    return _folder(P) / "surfaces" / f"{run}-{hashlib.sha1(blob).hexdigest()[:8]}.json"


def _has_weights(P: Profile, run: dict) -> bool:
    return bool(run.get("weights")) and (P.root / run["weights"]).is_file()


def surface(P: Profile, split: Split, run: dict, S: Sizes, *, force: bool = False,
            device=None) -> dict:
    """1-D and 2-D filter-normalised loss surfaces around a run's final
    weights (cached), on the first training images in full batches.

    ``line`` and ``grid`` use BatchNorm's running statistics (evaluation
    mode, as Li et al. 2018 draw them); ``line_batch`` is the 1-D surface
    with the statistics of each batch (training mode). For the network
    without BN the two lines are the same.
    """
    path = _surface_path(P, run["run"], S)
    if not force and path.is_file():
        return _load(path)
    if not _has_weights(P, run):
        raise FileNotFoundError(
            f"the weights of {run['run']} are not on disk; retrain the study's "
            "runs with force=True to rebuild them")
    dev = torch.device(device) if device else default_device()
    model = load_model(run, P, dev)
    n, norm = _surface_n(S), run["config"]["normalize"]
    batches = L.fixed_batches(split.train[0][:n], split.train[1][:n], S.batch_size,
                              split.mean if norm else None,
                              split.std if norm else None, dev)
    d1 = L.filter_normalized_direction(model, seed=S.seed)
    d2 = L.filter_normalized_direction(model, seed=S.seed + 1)
    alphas = np.linspace(-S.surface_span, S.surface_span, S.surface_points)
    line = L.loss_surface(model, batches, [d1], alphas[:, None], bn_train=False)
    line_batch = L.loss_surface(model, batches, [d1], alphas[:, None], bn_train=True)
    xs = np.linspace(-S.surface_span, S.surface_span, S.surface_grid)
    grid = np.stack(np.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    plane = L.loss_surface(model, batches, [d1, d2], grid, bn_train=False)
    rec = {"run": run["run"], "model": run["config"]["model"],
           "options": surface_options(S), "alphas": alphas.tolist(),
           "line": line.tolist(), "line_batch": line_batch.tolist(),
           "xs": xs.tolist(), "grid": plane.reshape(len(xs), len(xs)).tolist()}
    write_json(rec, path)
    return _load(path)


def _surface_runs(P: Profile, S: Sizes) -> dict[str, tuple[Spec, dict]]:
    """The runs whose final weights get surfaces (the course's setting, by
    model), among the finished runs on disk."""
    runs, out = load_runs(P, S), {}
    for spec in specs(S):
        if spec.setting == "adam" and spec.lr == S.adam_lr:
            r = _pick(runs, spec.model, "adam", S.adam_lr)
            if r is not None and r["status"] == "ok":
                out[spec.model] = (spec, r)
    return out


def measure(P: Profile | str | None, split: Split | None = None, *,
            force: bool = False, device=None, log=None,
            S: Sizes | None = None) -> None:
    """Every post-training measurement that needs weights: the surfaces of
    the runs at the course's setting, written under
    ``results/batchnorm/surfaces/``.

    Looks at what is on disk first: when every surface of the current runs
    is there (and not ``force``), it returns without loading weights or
    data (``split`` may then be None). A surface whose run's weights are
    missing or do not match its record retrains that run first.

    Used by notebook 04 (report section 2).
    """
    P = get_profile(P)
    S = S or sizes(P)
    todo = [(spec, r) for spec, r in _surface_runs(P, S).values()
            if force or not _surface_path(P, r["run"], S).is_file()]
    if not todo:
        return
    if split is None:
        raise ValueError(f"surfaces of {', '.join(r['run'] for _, r in todo)} are "
                         "not on disk: pass the data split to measure them")
    for spec, r in todo:
        r = train_run(P, split, spec, S, need_weights=True, device=device, log=log)
        if log:
            log(f"{EXPERIMENT}: loss surfaces of {r['run']}")
        surface(P, split, r, S, force=True, device=device)


def surfaces(P: Profile, split: Split | None, runs: list[dict] | None = None,
             S: Sizes | None = None, *, force: bool = False, device=None) -> dict:
    """The surfaces of both models at the course's setting, by model name,
    measured first where they are not on disk (:func:`measure`); ``runs``
    is not needed (kept for older callers)."""
    P = get_profile(P)
    S = S or sizes(P)
    measure(P, split, force=force, device=device, S=S)
    return load_surfaces(P, S)


def load_surfaces(profile=None, S: Sizes | None = None) -> dict:
    """The surfaces on disk for the profile's runs, by model name.

    Used by notebook 04 (report section 2).
    """
    P = get_profile(profile)
    S = S or sizes(P)
    out = {}
    for m, (_, r) in _surface_runs(P, S).items():
        path = _surface_path(P, r["run"], S)
        if path.is_file():
            out[m] = _load(path)
    return out


def surface_rise(surf: dict, at: float = 0.5, key: str = "line") -> float | None:
    """Mean loss increase from the centre to +-``at`` on the 1-D surface
    (``key``: ``line``, running statistics, or ``line_batch``)."""
    if key not in surf:
        return None
    a, line = np.asarray(surf["alphas"]), _arr(surf[key])
    centre = np.interp(0.0, a, line)
    rise = (np.interp(-at, a, line) + np.interp(at, a, line)) / 2 - centre
    return float(rise) if np.isfinite(rise) else None


def surface_centre(surf: dict, key: str = "line") -> float | None:
    """The loss at the trained weights on the 1-D surface."""
    if key not in surf:
        return None
    v = float(np.interp(0.0, np.asarray(surf["alphas"]), _arr(surf[key])))
    return v if math.isfinite(v) else None


@register_table("bn_surfaces")
def surface_table(profile=None):
    """Loss at the trained weights and its rise along the 1-D direction,
    with running statistics (eval) and with batch statistics.

    Used by notebook 04 (report section 2)."""
    import pandas as pd
    rows = []
    for m, s in load_surfaces(profile).items():
        c, r = surface_centre(s), surface_rise(s, 0.5)
        rows.append({"model": LABELS[m], "loss at trained weights (eval)": c,
                     "rise at +-0.25 (eval)": surface_rise(s, 0.25),
                     "rise at +-0.5 (eval)": r,
                     "rise at +-1 (eval)": surface_rise(s, 1.0),
                     "rise at +-0.5 / loss (eval)": None if r is None or not c else r / c,
                     "loss at trained weights (batch stats)": surface_centre(s, "line_batch"),
                     "rise at +-0.5 (batch stats)": surface_rise(s, 0.5, "line_batch")})
    return pd.DataFrame(rows)


def _rises(profile, key="line", relative=False):
    s = load_surfaces(profile)
    if set(s) != set(MODELS):
        return None, None
    out = []
    for m in MODELS:
        r, c = surface_rise(s[m], 0.5, key), surface_centre(s[m], key)
        out.append(r / c if relative and r is not None and c else
                   None if relative else r)
    return tuple(out)


@register_value("bn_surface_ratio")
def surface_ratio(profile=None):
    """Loss rise at +-0.5 on the 1-D surface (eval mode), VGG-A over VGG-A + BN."""
    return _ratio(*_rises(profile))


@register_value("bn_surface_compare")
def surface_compare(profile=None):
    """The BN loss rise at +-0.5 (eval mode) against the plain one."""
    plain, bn = _rises(profile)
    return _compare(bn, plain)


@register_value("bn_surface_rel_compare")
def surface_rel_compare(profile=None):
    """The BN loss rise at +-0.5 relative to its loss at the trained weights
    (eval mode), against the plain one."""
    plain, bn = _rises(profile, relative=True)
    return _compare(bn, plain)


@register_value("bn_surface_batch_compare")
def surface_batch_compare(profile=None):
    """The BN loss rise at +-0.5 with batch statistics against the plain one."""
    plain, bn = _rises(profile, "line_batch")
    return _compare(bn, plain)


def _surface_loss(profile, model):
    """A model's loss at its trained weights on the surface images (eval)."""
    s = load_surfaces(profile).get(model)
    c = None if s is None else surface_centre(s)
    return None if c is None else f"{c:.3g}"


# Report values: each model's loss at its trained weights.
SURFACE_LOSS_VALUES = {"bn_surface_loss_vgg_a": "vgg_a",
                       "bn_surface_loss_vgg_a_bn": "vgg_a_bn"}
for _name, _m in SURFACE_LOSS_VALUES.items():
    register_value(_name)(lambda profile=None, m=_m: _surface_loss(profile, m))


# ---------------------------------------------------------------- plots


def _plain_log(ax, axis="y"):
    """Log scale with ticks at 1, 2, 5 x 10^k written as plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    getattr(ax, f"set_{axis}scale")("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def _diverged_note(ax, r, x, y):
    ax.plot([x], [y], "x", color=COLORS[r["config"]["model"]], ms=10, mew=2)
    ax.annotate(f"{LABELS[r['config']['model']]} diverged\n"
                f"(step {diverged_step(r)})", (x, y),
                textcoords="offset points", xytext=(6, -22), fontsize=8,
                color=COLORS[r["config"]["model"]])


def plot_curves(runs: list[dict], S: Sizes):
    """Train/val loss and accuracy per epoch, Adam (course) and large-lr SGD.

    Used by notebook 04 (report section 2).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), squeeze=False)
    for row, setting in enumerate(("adam", "sgd")):
        for m in MODELS:
            r = _pick(runs, m, setting, _setting_lr(setting, S))
            if r is None:
                continue
            h, c = r["history"], COLORS[m]
            ep = [e["epoch"] for e in h]
            for col, key in enumerate(("loss", "acc")):
                ax = axes[row, col]
                scale = 100 if key == "acc" else 1
                for split_, ls in (("train", "-"), ("val", "--")):
                    ax.plot(ep, [np.nan if e[f"{split_}_{key}"] is None
                                 else scale * e[f"{split_}_{key}"] for e in h],
                            ls, color=c, marker="o", ms=3,
                            label=f"{LABELS[m]} {split_}")
                if r["status"] == "diverged":
                    x = r["diverged_at"]["epoch"] + 1
                    y = ax.get_ylim()[1] if h else (2.3 if key == "loss" else 10)
                    _diverged_note(ax, r, x, y)
        axes[row, 0].set_ylabel("cross-entropy loss (log scale)")
        _plain_log(axes[row, 0])
        axes[row, 1].set_ylabel("accuracy (%)")
        for ax in axes[row]:
            ax.set_title(_setting_name(setting, S))
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _draw_band(ax, band: Band | None, model: str):
    """A model's min-max band; where it ends early, a dotted line and why."""
    if band is None:
        return
    label = LABELS[model] + (f" (band ends: {band.ends})" if band.ends else "")
    ax.fill_between(band.steps, band.lo, band.hi, color=COLORS[model], alpha=0.45,
                    lw=0, label=label)
    if band.ends and len(band.steps):
        ax.axvline(band.steps[-1], color=COLORS[model], ls=":", lw=1.2)


def plot_loss_landscape(runs: list[dict], S: Sizes):
    """The course's figure: per-step training loss, min-max band across lrs.

    A band stops at the first step where one of its runs has no finite loss
    (see :func:`loss_band`); the legend says which run ended it.

    Used by notebook 04 (report section 2).
    """
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for m in MODELS:
        _draw_band(ax, loss_band(runs, m), m)
    lrs = ", ".join(f"{lr:g}" for lr in S.lrs)
    ax.set(xlabel="training step", ylabel="training loss (cross-entropy)",
           title=f"Loss landscape: min-max over Adam learning rates {lrs}")
    ax.legend()
    fig.tight_layout()
    return fig


def _smooth(v: np.ndarray, n: int) -> np.ndarray:
    """Moving average over ``n`` points (edges averaged over fewer)."""
    if n <= 1 or len(v) < 2:
        return v
    k = np.ones(n)
    return np.convolve(v, k, "same") / np.convolve(np.ones(len(v)), k, "same")


def plot_loss_band_views(runs: list[dict], S: Sizes):
    """The course's band without the training speed in it.

    Left: band width over the mean loss at each step, (max - min) / mean
    over the Adam learning rates (faint: per step; line: moving average).
    Right: band width against the mean loss, so that the networks are
    compared where their loss is the same, not at the same step (faint:
    per step; line: mean per loss bin over the levels both pass through).

    Used by notebook 04 (report section 2).
    """
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    bands = {m: loss_band(runs, m) for m in MODELS}
    for m, b in bands.items():
        if b is None or not len(b.steps):
            continue
        c, rel = COLORS[m], relative_band(b)
        axes[0].plot(b.steps, rel, color=c, alpha=0.2, lw=0.6)
        axes[0].plot(b.steps, _smooth(rel, max(1, len(rel) // 40)), color=c,
                     lw=1.6, label=LABELS[m])
        axes[1].plot(b.mean, b.hi - b.lo, ".", color=c, alpha=0.2, ms=2,
                     label=f"{LABELS[m]} (per step)")
    if all(b is not None and len(b.steps) for b in bands.values()):
        m = matched_widths(bands["vgg_a"], bands["vgg_a_bn"])
        if m is not None:
            edges, wp, wb = m
            mid = np.sqrt(edges[1:] * edges[:-1])
            for model, w in (("vgg_a", wp), ("vgg_a_bn", wb)):
                axes[1].plot(mid, w, "o-", color=COLORS[model], lw=1.6,
                             label=f"{LABELS[model]} (mean per loss bin)")
    axes[0].set(xlabel="training step", ylabel="(max - min) / mean of the loss",
                title="band width relative to the loss")
    axes[1].set(xlabel="mean training loss over the learning rates (log scale; "
                "training goes right to left)", ylabel="max - min of the loss",
                title="band width at matched loss")
    for ax in axes:
        _plain_log(ax)
        ax.legend(fontsize=8)
    _plain_log(axes[1], "x")
    axes[1].invert_xaxis()
    fig.suptitle("Loss landscape without the training speed: Adam learning rates "
                 + ", ".join(f"{lr:g}" for lr in S.lrs))
    fig.tight_layout()
    return fig


def plot_probes(runs: list[dict], S: Sizes):
    """The paper's Fig. 4: loss range, gradient predictiveness and beta per
    probe, along the update each run's optimizer takes.

    Used by notebook 04 (report section 2)."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5), squeeze=False)
    for row, setting in enumerate(("adam", "sgd")):
        for m in MODELS:
            r = _pick(runs, m, setting, _setting_lr(setting, S))
            if r is None or not r["probes"]["step"]:
                continue
            p, c = r["probes"], COLORS[m]
            st = np.asarray(p["step"])
            kw = dict(color=c, alpha=0.45, lw=0, label=LABELS[m])
            axes[row, 0].fill_between(st, _arr(p["loss_min"]), _arr(p["loss_max"]), **kw)
            axes[row, 1].fill_between(st, _arr(p["gdist_min"]), _arr(p["gdist_max"]), **kw)
            axes[row, 2].plot(st, _arr(p["beta"]), color=c, lw=1.2, label=LABELS[m])
            if r["status"] == "diverged":
                for ax in axes[row]:
                    ax.axvline(diverged_step(r), color=c, ls=":",
                               label=f"{LABELS[m]} diverged")
        name = _setting_name(setting, S)
        titles = ("loss landscape", "gradient predictiveness",
                  "effective beta-smoothness")
        ylabels = ("loss at w + eta u (range over eta)",
                   "||grad(w + eta u) - grad(w)|| (range)",
                   "max ||grad difference|| / (eta ||u||)")
        for ax, t, yl in zip(axes[row], titles, ylabels):
            ax.set(title=f"{t} ({name})", xlabel="training step", ylabel=yl)
            ax.legend(fontsize=8)
        for ax in axes[row, 1:]:
            _plain_log(ax)
    fig.suptitle("Probes along the optimizer's update u (Adam's step, SGD's "
                 "momentum step), eta = "
                 f"[{min(S.probe_scales):g}, {max(S.probe_scales):g}], "
                 f"every {S.probe_every} steps", y=1.0)
    fig.tight_layout()
    return fig


def plot_last_grad(runs: list[dict], S: Sizes):
    """Last layer's gradient per step: min-max band across the Adam lrs.

    Used by notebook 04 (report section 2).
    """
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for m in MODELS:
        for ax, key in zip(axes, ("last_grad", "last_grad_change")):
            _draw_band(ax, loss_band(runs, m, key=key), m)
    axes[0].set(ylabel="||grad of last-layer weights|| (l2)",
                title="last-layer gradient norm")
    axes[1].set(ylabel="||g_t - g_(t-1)|| of last-layer weights (l2)",
                title="last-layer gradient change between steps")
    for ax in axes:
        ax.set_xlabel("training step")
        _plain_log(ax)
        ax.legend()
    fig.suptitle("min-max over Adam learning rates "
                 + ", ".join(f"{lr:g}" for lr in S.lrs))
    fig.tight_layout()
    return fig


def plot_surface_1d(surfs: dict):
    """Loss along one filter-normalised direction, both models; BN with its
    running statistics (solid) and with batch statistics (dashed).

    Used by notebook 04 (report section 2)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for m, s in surfs.items():
        ax.plot(s["alphas"], _arr(s["line"]), "o-", ms=3, color=COLORS[m],
                label=f"{LABELS[m]} (eval: running statistics)")
        if "line_batch" in s and m != "vgg_a":  # without BN both lines are one
            ax.plot(s["alphas"], _arr(s["line_batch"]), "s--", ms=3, color=COLORS[m],
                    alpha=0.7, label=f"{LABELS[m]} (batch statistics)")
    ax.set(xlabel="step along the filter-normalised direction (alpha)",
           ylabel="training loss (cross-entropy, log scale)",
           title="1-D loss surface around the trained weights")
    _plain_log(ax)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_surface_2d(surfs: dict):
    """Contours of the loss on a filter-normalised plane, one colour scale
    (BN on its running statistics, evaluation mode).

    Used by notebook 04 (report section 2)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    grids = {m: np.ma.masked_invalid(_arr(np.ravel(s["grid"])).reshape(
        len(s["xs"]), len(s["xs"]))) for m, s in surfs.items()}
    lo = min(float(g.min()) for g in grids.values())
    hi = max(float(g.max()) for g in grids.values())
    lo = max(lo, 1e-4)
    levels = np.geomspace(lo, max(hi, lo * 1.01), 16)
    fig, axes = plt.subplots(1, len(grids), figsize=(5 * len(grids) + 1.5, 4.6),
                             squeeze=False, layout="constrained")
    cs = None
    for ax, (m, g) in zip(axes[0], grids.items()):
        xs = surfs[m]["xs"]
        cs = ax.contourf(xs, xs, g.T, levels=levels, norm=LogNorm(lo, levels[-1]),
                         cmap="viridis", extend="both")
        ax.contour(xs, xs, g.T, levels=levels, colors="k", linewidths=0.3)
        ax.plot([0], [0], "r*", ms=10, label="trained weights")
        ticks = np.linspace(xs[0], xs[-1], 5)
        ax.set(title=f"{LABELS[m]} (eval mode)", xlabel="direction 1 (alpha)",
               ylabel="direction 2 (beta)", aspect="equal",
               xticks=ticks, yticks=ticks)
        ax.legend(loc="upper right", fontsize=8)
    if cs is not None:
        cb = fig.colorbar(cs, ax=list(axes[0]), ticks=levels[::3],
                          label="training loss (cross-entropy, log scale)")
        cb.ax.set_yticklabels([f"{v:.3g}" for v in levels[::3]])
    return fig


def report_values(profile=None):
    """Every ``bn_*`` report value for the profile, as a table.

    Used by notebook 04 (report section 2).
    """
    import pandas as pd
    from cifar_lib.registry import VALUES
    return pd.DataFrame([{"value": k, "text": fn(profile)}
                         for k, fn in sorted(VALUES.items()) if k.startswith("bn_")])

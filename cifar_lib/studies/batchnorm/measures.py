"""What the BatchNorm study measures in its runs and around their weights.

From the records: min-max bands of a per-step quantity across the Adam
learning rates (:func:`loss_band`), the band relative to the mean loss and
at matched loss levels (:func:`relative_band`, :func:`matched_widths`), the
means over a run's probes (:func:`probe_summary`), and the pairs (VGG-A,
VGG-A + BN) of these that the report compares. After training,
:func:`measure` makes the filter-normalised loss surfaces around the final
weights (:func:`surface`), a measurement of the ``batchnorm`` experiment
kept in the store (keyed by the run and the surface options);
:func:`load_surfaces` reads them back.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from cifar_lib import landscape as L
from cifar_lib import store
from cifar_lib.data import Split
from cifar_lib.engine import default_device
from cifar_lib.experiments import Run, load_model, records, train_one
from cifar_lib.profiles import Profile
from cifar_lib.studies.batchnorm.runs import (
    BATCHNORM, MODELS, Sizes, diverged_step, pick, run_setting, setting_lr, sizes)

SURFACE_VERSION = 1  # bump when surface() changes what it stores


def to_array(values) -> np.ndarray:
    """A float array of ``values``, None as NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


# ---------------------------------------------------------------- bands


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
        v = to_array(r["steps"][key])
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


def band_means(runs: list[dict], key: str = "loss", width=lambda b: b.hi - b.lo):
    """Mean ``width`` of the VGG-A and VGG-A + BN bands of ``key`` over the
    steps both cover (default: max - min); (None, None) without both."""
    plain, bn = (loss_band(runs, m, key=key) for m in MODELS)
    if plain is None or bn is None:
        return None, None
    common = np.intersect1d(plain.steps, bn.steps)
    if not len(common):
        return None, None
    return tuple(float(np.mean(width(b)[np.isin(b.steps, common)]))
                 for b in (plain, bn))


def matched_means(runs: list[dict]):
    """Mean loss-band widths of VGG-A and VGG-A + BN over the mean-loss bins
    both networks fill, and the outer bin edges (None, None, None without)."""
    plain, bn = (loss_band(runs, m) for m in MODELS)
    m = None if plain is None or bn is None else matched_widths(plain, bn)
    if m is None:
        return None, None, None
    edges, wp, wb = m
    ok = np.isfinite(wp) & np.isfinite(wb)
    if not ok.any():
        return None, None, None
    return float(wp[ok].mean()), float(wb[ok].mean()), edges[[0, -1]]


# ---------------------------------------------------------------- probes


def probe_summary(run: dict) -> dict:
    """Means over a run's probes: loss range, max gradient distance, beta,
    the norms of the update probed along and of the gradient, and the
    update's length over lr x ||g|| (1 for plain SGD)."""
    p = run["probes"]
    n = len(p["step"])
    rng = to_array(p["loss_max"]) - to_array(p["loss_min"])
    gd, beta, g = to_array(p["gdist_max"]), to_array(p["beta"]), to_array(p["grad_norm"])
    u = to_array(p.get("step_norm", [None] * n))
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


def probe_means(runs: list[dict], S: Sizes, setting: str, key: str):
    """``probe_summary(run)[key]`` of the VGG-A and the VGG-A + BN run of a
    setting; (None, None) without both."""
    plain, bn = (pick(runs, m, setting, setting_lr(setting, S)) for m in MODELS)
    if plain is None or bn is None:
        return None, None
    return probe_summary(plain)[key], probe_summary(bn)[key]


# ---------------------------------------------------------------- surfaces


def surface_n(S: Sizes) -> int:
    """Images the surfaces use: full batches only."""
    return S.surface_images // S.batch_size * S.batch_size


def surface_options(S: Sizes) -> dict:
    """What a surface depends on besides the trained weights."""
    return {"images": surface_n(S), "points": S.surface_points,
            "grid": S.surface_grid, "span": S.surface_span, "seed": S.seed,
            "bn": "running statistics (eval mode); 1-D also batch statistics",
            "batch_size": S.batch_size}


def surface_key(run: str, S: Sizes) -> dict:
    """The store key of the surfaces of run ``run``."""
    return store.measurement_key("surface", SURFACE_VERSION, run, surface_options(S))


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
    key = surface_key(run["run"], S)
    stored = None if force else store.load_measurement(P.results, BATCHNORM.name, key)
    if stored is not None:
        return stored
    if not _has_weights(P, run):
        raise FileNotFoundError(
            f"the weights of {run['run']} are not on disk; retrain the study's "
            "runs with force=True to rebuild them")
    dev = torch.device(device) if device else default_device()
    model = load_model(run, P, dev)
    n, norm = surface_n(S), run["config"]["normalize"]
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
    store.save_measurement(P.results, BATCHNORM.name, key, rec)
    return store.load_measurement(P.results, BATCHNORM.name, key)


def _surfaced(S: Sizes, r: Run) -> bool:
    """Whether a run gets surfaces: the course's setting (Adam at its lr)."""
    return r.cfg.optimizer == "adam" and math.isclose(r.cfg.lr, S.adam_lr)


def _surface_runs(P: Profile, S: Sizes) -> dict[str, tuple[Run, dict]]:
    """The runs whose final weights get surfaces, by model, among the
    finished runs on disk."""
    recs, out = records(BATCHNORM, P), {}
    for r in BATCHNORM.runs(P):
        if _surfaced(S, r):
            rec = pick(recs, r.cfg.model, "adam", S.adam_lr)
            if rec is not None and rec["status"] == "ok":
                out[r.cfg.model] = (r, rec)
    return out


@BATCHNORM.measurement("BatchNorm surfaces (notebook 04)",
                       needs=lambda r: r.cfg.optimizer == "adam")
def measure(P: Profile, split: Split | None = None, *,
            force: bool = False, device=None, log=None) -> None:
    """Every post-training measurement that needs weights: the surfaces of
    the runs at the course's setting, kept in the store.

    Looks at what is stored first: when every surface of the current runs
    is there (and not ``force``), it returns without loading weights or
    data (``split`` may then be None). A surface whose run's weights are
    missing or do not match its record retrains that run first.

    Used by notebook 04 (report section 2).
    """
    S = sizes(P)
    todo = [(r, rec) for r, rec in _surface_runs(P, S).values()
            if force or store.load_measurement(
                P.results, BATCHNORM.name, surface_key(rec["run"], S)) is None]
    if not todo:
        return
    if split is None:
        raise ValueError(f"surfaces of {', '.join(rec['run'] for _, rec in todo)} are "
                         "not stored: pass the data split to measure them")
    for r, rec in todo:
        rec = train_one(BATCHNORM, r, P, split, need_weights=True, device=device, log=log)
        if log:
            log(f"{BATCHNORM.name}: loss surfaces of {rec['run']}")
        surface(P, split, rec, S, force=True, device=device)


def load_surfaces(profile: Profile) -> dict:
    """The stored surfaces of the profile's runs, by model name.

    Used by notebook 04 (report section 2).
    """
    S, out = sizes(profile), {}
    for m, (_, rec) in _surface_runs(profile, S).items():
        data = store.load_measurement(profile.results, BATCHNORM.name,
                                      surface_key(rec["run"], S))
        if data is not None:
            out[m] = data
    return out


def surface_rise(surf: dict, at: float = 0.5, key: str = "line") -> float | None:
    """Mean loss increase from the centre to +-``at`` on the 1-D surface
    (``key``: ``line``, running statistics, or ``line_batch``)."""
    if key not in surf:
        return None
    a, line = np.asarray(surf["alphas"]), to_array(surf[key])
    centre = np.interp(0.0, a, line)
    rise = (np.interp(-at, a, line) + np.interp(at, a, line)) / 2 - centre
    return float(rise) if np.isfinite(rise) else None


def surface_centre(surf: dict, key: str = "line") -> float | None:
    """The loss at the trained weights on the 1-D surface."""
    if key not in surf:
        return None
    v = float(np.interp(0.0, np.asarray(surf["alphas"]), to_array(surf[key])))
    return v if math.isfinite(v) else None


def surface_rises(surfs: dict, key: str = "line", relative: bool = False):
    """The loss rise at +-0.5 of VGG-A and of VGG-A + BN (``relative``: over
    the loss at the trained weights); (None, None) without both surfaces."""
    if set(surfs) != set(MODELS):
        return None, None
    out = []
    for m in MODELS:
        r, c = surface_rise(surfs[m], 0.5, key), surface_centre(surfs[m], key)
        out.append(r / c if relative and r is not None and c else
                   None if relative else r)
    return tuple(out)

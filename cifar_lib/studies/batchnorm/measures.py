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
    BATCHNORM, MODELS, Sizes, diverged_step, matched_run, of_seed, pick, run_setting,
    seeds_of, setting_lr, sizes)

SURFACE_VERSION = 1  # bump when surface() changes what it stores

# A network "sits at chance" while its training loss is at least
# (1 - CHANCE_TOL) x ln 10, the loss of a uniform guess over 10 classes (or
# above it, as at initialisation): it barely moves there and looks smooth by
# every measure, so such steps are left out of the averages.
CHANCE = math.log(10)
CHANCE_TOL = 0.05
PHASES = ("early", "late")  # first and second half of a run's steps


def to_array(values) -> np.ndarray:
    """A float array of ``values``, None as NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def at_chance(loss) -> np.ndarray:
    """Where a loss sits at chance level (see :data:`CHANCE_TOL`)."""
    return np.asarray(loss, dtype=float) >= (1 - CHANCE_TOL) * CHANCE


def phase_of(steps, total: int) -> np.ndarray:
    """``early`` for the first half of a run's ``total`` steps, else ``late``."""
    return np.where(np.asarray(steps) < total / 2, PHASES[0], PHASES[1])


def total_steps(run: dict) -> int:
    """Steps a run took (a diverged one: up to where it stopped)."""
    last = run["steps"].get("last_step")
    return 0 if last is None else last + 1


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


def band_phases(runs: list[dict], key: str = "loss", width=lambda b: b.hi - b.lo,
                chance_free: bool = True) -> dict:
    """Per phase, the mean ``width`` of the VGG-A and VGG-A + BN bands of
    ``key`` over the steps both cover (records of one seed), leaving out the
    steps where a run of either network sits at chance (``chance_free``):
    {phase: (plain, BN)}, a phase without such steps left out."""
    plain, bn = (loss_band(runs, m, key=key) for m in MODELS)
    if plain is None or bn is None:
        return {}
    keep = np.intersect1d(plain.steps, bn.steps)
    if chance_free:
        for m in MODELS:
            lb = loss_band(runs, m)
            if lb is not None:
                keep = keep[~np.isin(keep, lb.steps[at_chance(lb.hi)])]
    total = max(total_steps(r) for r in runs)
    out = {}
    for ph in PHASES:
        steps = keep[phase_of(keep, total) == ph]
        if len(steps):
            out[ph] = tuple(float(np.nanmean(width(b)[np.isin(b.steps, steps)]))
                            for b in (plain, bn))
    return out


def matched_phases(runs: list[dict]) -> dict:
    """The band widths at matched loss (:func:`matched_widths`) over the
    loss levels below chance both networks pass through, the levels split
    into the higher half (``early``) and the lower half (``late``):
    {phase: (plain, BN)}."""
    plain, bn = (loss_band(runs, m) for m in MODELS)
    if plain is None or bn is None:
        return {}
    top = (1 - CHANCE_TOL) * CHANCE
    clip = lambda b: b._replace(mean=np.where(b.mean < top, b.mean, np.nan))  # noqa: E731
    m = matched_widths(clip(plain), clip(bn))
    if m is None:
        return {}
    _, wp, wb = m
    half = len(wp) // 2
    out = {}
    for ph, sl in (("early", slice(half, None)), ("late", slice(0, half))):
        ok = np.isfinite(wp[sl]) & np.isfinite(wb[sl])
        if ok.any():
            out[ph] = (float(wp[sl][ok].mean()), float(wb[sl][ok].mean()))
    return out


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


# Per-probe quantities the phase means average: the paper's three and the
# controls (lengths, and each measure per unit of distance or of gradient).
PROBE_QUANTITIES = {
    "loss_range": lambda p: p["loss_max"] - p["loss_min"],
    "grad_dist": lambda p: p["gdist_max"],
    "beta": lambda p: p["beta"],
    "step_norm": lambda p: p["step_norm"],
    "grad_norm": lambda p: p["grad_norm"],
    "loss_range_per_step": lambda p: (p["loss_max"] - p["loss_min"]) / p["step_norm"],
    "grad_dist_rel": lambda p: p["gdist_max"] / p["grad_norm"],
    "beta_rel": lambda p: p["beta"] / p["grad_norm"],
}


def _probe_columns(run: dict) -> dict[str, np.ndarray]:
    p = run["probes"]
    n = len(p["step"])
    cols = {k: to_array(p.get(k, [None] * n)) for k in
            ("loss", "loss_min", "loss_max", "gdist_max", "beta", "step_norm",
             "grad_norm")}
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {k: f(cols) for k, f in PROBE_QUANTITIES.items()}
    out["loss"], out["step"] = cols["loss"], np.asarray(p["step"])
    return out


def probe_phases(plain: dict, bn: dict) -> dict:
    """Per phase, the mean of every :data:`PROBE_QUANTITIES` entry over the
    probes of two runs (VGG-A, VGG-A + BN) of one seed and setting, at the
    steps both probed where both have finite values and neither sits at
    chance: {phase: {quantity: (plain, BN), "probes": n, "at_chance": m}}
    (None for both when every probe of the phase is at chance)."""
    a, b = _probe_columns(plain), _probe_columns(bn)
    common = np.intersect1d(a["step"], b["step"])
    ia = np.searchsorted(a["step"], common)
    ib = np.searchsorted(b["step"], common)
    finite = np.ones(len(common), bool)
    for k in ("loss_range", "grad_dist", "beta"):
        finite &= np.isfinite(a[k][ia]) & np.isfinite(b[k][ib])
    chance = at_chance(a["loss"][ia]) | at_chance(b["loss"][ib])
    phase = phase_of(common, max(total_steps(plain), total_steps(bn)))
    out = {}
    mean = lambda v: float(np.nanmean(v)) if np.isfinite(v).any() else None  # noqa: E731
    for ph in PHASES:
        if not (finite & (phase == ph)).any():
            continue
        sel = finite & ~chance & (phase == ph)
        row = {"probes": int(sel.sum()),
               "at_chance": int((finite & chance & (phase == ph)).sum())}
        for k in PROBE_QUANTITIES:  # every probe at chance: no means
            row[k] = (mean(a[k][ia][sel]), mean(b[k][ib][sel]))
        out[ph] = row
    return out


def leaves_chance(run: dict) -> int | None:
    """The first kept step at which a run's loss is below chance level
    (None: it never leaves it)."""
    bad = at_chance(to_array(run["steps"]["loss"]))
    return None if bad.all() else int(run["steps"]["step"][int(np.argmin(bad))])


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


def _surface_runs(P: Profile, S: Sizes) -> dict[tuple[int, str], tuple[Run, dict]]:
    """The runs whose final weights get surfaces, by (seed, model), among
    the finished runs on disk."""
    recs, out = records(BATCHNORM, P), {}
    for r in BATCHNORM.runs(P):
        if _surfaced(S, r):
            rec = pick(recs, r.cfg.model, "adam", S.adam_lr, r.cfg.seed)
            if rec is not None and rec["status"] == "ok":
                out[r.cfg.seed, r.cfg.model] = (r, rec)
    return out


MATCHED = "vgg_a_bn_matched"  # surfaces' key of the BN net at matched loss


def end_loss(run: dict, epoch: int | None = None, tail: float = 0.1) -> float | None:
    """The training loss at the end of ``epoch`` (default: the last): the
    mean of the per-step losses over the epoch's last ``tail`` of steps."""
    st, h = run["steps"], run.get("history") or []
    if not h or st.get("last_step") is None:
        return None
    epoch = len(h) if epoch is None else epoch
    per = (st["last_step"] + 1) / len(h)
    steps, loss = np.asarray(st["step"]), to_array(st["loss"])
    inside = (steps < epoch * per) & (steps >= (epoch - 1) * per) & np.isfinite(loss)
    sel = inside & (steps >= (epoch - tail) * per)
    if not sel.any() and inside.any():  # few kept steps: the epoch's last one
        sel = steps == steps[inside].max()
    v = loss[sel]
    return float(v.mean()) if len(v) else None


def matched_epochs(plain: dict, bn: dict) -> int | None:
    """The epoch after which the BN run's training loss is closest (on a
    log scale) to the plain run's final one (None without both)."""
    target = end_loss(plain)
    if target is None or bn["status"] != "ok":
        return None
    gaps = {e: abs(math.log(v / target)) for e in range(1, len(bn["history"]) + 1)
            if (v := end_loss(bn, e))}
    return min(gaps, key=gaps.get) if gaps else None


def _matched(P: Profile, S: Sizes, seed: int, pair: dict) -> tuple[Run, int] | None:
    """The matched-loss run of a seed and its epochs (None: not needed,
    the BN run's final weights are the match, or no pair)."""
    if set(pair) != set(MODELS):
        return None
    k = matched_epochs(pair["vgg_a"][1], pair["vgg_a_bn"][1])
    if k is None or k >= S.epochs:
        return None
    return matched_run(S, seed, k), k


def _by_seed(P: Profile, S: Sizes) -> dict[int, dict[str, tuple[Run, dict]]]:
    out: dict = {}
    for (seed, m), v in _surface_runs(P, S).items():
        out.setdefault(seed, {})[m] = v
    return out


@BATCHNORM.measurement("BatchNorm surfaces (notebook 04)",
                       needs=lambda r: r.cfg.optimizer == "adam")
def measure(P: Profile, split: Split | None = None, *,
            force: bool = False, device=None, log=None) -> None:
    """Every post-training measurement that needs weights: the surfaces of
    the runs at the course's setting, for each seed, and of VGG-A + BN at
    matched loss (:func:`matched_run`, trained here for the epochs
    :func:`matched_epochs` picks), kept in the store.

    Looks at what is stored first: when every surface of the current runs
    is there (and not ``force``), it returns without loading weights or
    data (``split`` may then be None). A surface whose run's weights are
    missing or do not match its record retrains that run first.

    Used by notebook 04 (report section 2).
    """
    S = sizes(P)
    stored = lambda rec: store.load_measurement(  # noqa: E731
        P.results, BATCHNORM.name, surface_key(rec["run"], S)) is not None
    todo = []
    for seed, pair in _by_seed(P, S).items():
        todo += [(r, rec) for r, rec in pair.values() if force or not stored(rec)]
        m = _matched(P, S, seed, pair)
        if m is not None:
            rec = _find(P, m[0], pair["vgg_a"][1]["data"])
            if force or rec is None or not stored(rec):
                todo.append((m[0], rec))
    if not todo:
        return
    if split is None:
        raise ValueError(f"surfaces of {', '.join(r.label for r, _ in todo)} are "
                         "not stored: pass the data split to measure them")
    for r, rec in todo:
        rec = train_one(BATCHNORM, r, P, split, need_weights=True, device=device, log=log)
        if log:
            log(f"{BATCHNORM.name}: loss surfaces of {rec['run']}")
        surface(P, split, rec, S, force=True, device=device)


def _find(P: Profile, r: Run, data: dict) -> dict | None:
    """The stored record on ``data`` of a run that is not one of the
    experiment's."""
    found = store.find_run(P.results, r.cfg.to_dict(), r.tag, data, BATCHNORM.name)
    return None if found is None else found[1]


def surfaces_by_seed(profile: Profile) -> dict[int, dict]:
    """The stored surfaces by seed, then by model name, with
    :data:`MATCHED` (VGG-A + BN at matched loss: the matched run's, or the
    final weights' when those are the match) and ``matched_epoch``."""
    S, out = sizes(profile), {}
    load = lambda rec: store.load_measurement(  # noqa: E731
        profile.results, BATCHNORM.name, surface_key(rec["run"], S))
    for seed, pair in _by_seed(profile, S).items():
        got = {m: s for m, (_, rec) in pair.items() if (s := load(rec)) is not None}
        if set(pair) == set(MODELS):
            k = matched_epochs(pair["vgg_a"][1], pair["vgg_a_bn"][1])
            m = _matched(profile, S, seed, pair)
            if m is not None:  # a run of its own, once trained
                rec = _find(profile, m[0], pair["vgg_a"][1]["data"])
                s = load(rec) if rec else None
            else:              # the final weights are the match (or none)
                s = got.get("vgg_a_bn") if k else None
            if s is not None:
                got[MATCHED] = {**s, "matched_epoch": k,
                                "final_epoch": len(pair["vgg_a"][1]["history"])}
        if got:
            out[seed] = got
    return out


def load_surfaces(profile: Profile) -> dict:
    """The stored surfaces of the first seed's runs, by model name (and
    :data:`MATCHED` when made).

    Used by notebook 04 (report section 2).
    """
    by_seed = surfaces_by_seed(profile)
    return by_seed[min(by_seed)] if by_seed else {}


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

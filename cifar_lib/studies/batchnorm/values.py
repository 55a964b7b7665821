"""The BatchNorm study's report tables (``bn_runs``, ``bn_probes``,
``bn_surfaces``) and its report values (:func:`values`, every ``bn_*``
name), read from the records and surfaces on disk."""
from __future__ import annotations

import math

import numpy as np

from cifar_lib.experiments import records as stored
from cifar_lib.models import create_model
from cifar_lib.profiles import Profile
from cifar_lib.registry import register_figure, register_table, register_values
from cifar_lib.studies.batchnorm import plots
from cifar_lib.studies.batchnorm.measures import (
    band_means, load_surfaces, matched_means, probe_means, probe_summary,
    relative_band, surface_centre, surface_n, surface_rise, surface_rises)
from cifar_lib.studies.batchnorm.runs import (
    BATCHNORM, LABELS, MODELS, Sizes, diverged_step, pick, run_setting, setting_lr,
    setting_name, sizes)


def records(profile: Profile) -> list[dict]:
    """The study's stored runs (``experiments.records(BATCHNORM, profile)``)."""
    return stored(BATCHNORM, profile)


def _outcome(r: dict | None) -> str:
    if r is None:
        return "not run"
    if r["status"] == "diverged":
        return f"diverged at step {diverged_step(r)}"
    return r["status"]


# ---------------------------------------------------------------- tables


@register_table("bn_runs")
def runs_table(profile: Profile):
    """One row per run: model, optimizer, lr, outcome, loss and accuracies.

    "final" is the last finished epoch (of a diverged run: the last before
    it diverged); its weights are the ones kept and tested.

    Used by notebook 04 (report section 2).
    """
    import pandas as pd
    rows = []
    for r in records(profile):
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
def probe_table(profile: Profile):
    """Per setting and model: mean loss range, gradient distance and beta,
    and the mean lengths of the update probed along and of the gradient.

    Used by notebook 04 (report section 2)."""
    import pandas as pd
    P = profile
    S = sizes(P)
    rows = []
    for r in records(P):
        if not r["tag"]["probe_every"]:
            continue
        s = probe_summary(r)
        rows.append({"setting": setting_name(run_setting(r), S),
                     "model": LABELS[r["config"]["model"]],
                     "outcome": _outcome(r), "probes": s["probes"],
                     "mean loss range": s["loss_range"],
                     "mean max grad distance": s["grad_dist"],
                     "mean beta": s["beta"], "max beta": s["beta_max"],
                     "mean ||update||": s["step_norm"],
                     "mean ||grad||": s["grad_norm"],
                     "||update|| / (lr ||grad||)": s["step_over_lr_grad"]})
    return pd.DataFrame(rows)


@register_table("bn_surfaces")
def surface_table(profile: Profile):
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


# ---------------------------------------------------------------- wording


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


def _narrower(pair) -> str | None:
    """The BN band of a (plain, BN) pair against the plain one."""
    plain, bn = pair[:2]
    return _compare(bn, plain, "narrower", "wider")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# ---------------------------------------------------------------- values


def _adam_step_ratio(runs: list[dict], S: Sizes) -> str | None:
    """How many times longer Adam's update is than lr x ||gradient||, the
    step a probe along the raw gradient would take (mean over the probes
    of both Adam runs), e.g. '60'."""
    vals = [probe_summary(r)["step_over_lr_grad"] for r in
            (pick(runs, m, "adam", S.adam_lr) for m in MODELS) if r]
    vals = [v for v in vals if v is not None]
    return _times(float(np.mean(vals))) if vals else None


def _probe_direction(runs: list[dict]) -> str | None:
    """What the probes of the runs on disk step along."""
    dirs = {r["tag"].get("direction", "gradient") for r in runs
            if r["tag"]["probe_every"]}
    names = {"update": "the update the run's optimizer takes at that step",
             "gradient": "the negative gradient, by multiples of the learning rate"}
    return " and ".join(names[d] for d in sorted(dirs)) or None


def _width(S: Sizes) -> str:
    """The channel width and parameter counts of both networks."""
    counts = {m: sum(p.numel() for p in create_model(m, width=S.width).parameters())
              for m in MODELS}
    w = "full width" if S.width == 1 else f"width x{S.width:g}"
    return (f"{w}: {counts['vgg_a']:,} parameters without BN, "
            f"{counts['vgg_a_bn']:,} with BN")


def _acc(runs: list[dict], S: Sizes, model: str, setting: str) -> str | None:
    """Best validation accuracy of a model in a setting (else its outcome)."""
    r = pick(runs, model, setting, setting_lr(setting, S))
    if r is None:
        return None
    if r["status"] != "ok":
        return _outcome(r)
    return f"{100 * r['metrics']['best_val_acc']:.1f}%"


LEARNS = 0.2  # best val acc above twice chance (10 classes): the run learns


def _sgd_trains(runs: list[dict], S: Sizes) -> str | None:
    """Whether both networks learn with SGD, e.g. 'both networks learn' or
    'VGG-A does not learn (best validation accuracy 11.0%)'."""
    found = {m: pick(runs, m, "sgd", S.sgd_lr) for m in MODELS}
    if any(r is None for r in found.values()):
        return None
    bad = [f"{LABELS[m]} does not learn ({_outcome(r)}, best validation accuracy "
           f"{100 * (r['metrics']['best_val_acc'] or 0):.1f}%)"
           for m, r in found.items()
           if r["status"] != "ok" or (r["metrics"]["best_val_acc"] or 0) < LEARNS]
    return "; ".join(bad) if bad else "both networks learn"


def _surface_loss(surfs: dict, model: str) -> str | None:
    """A model's loss at its trained weights on the surface images (eval)."""
    c = None if model not in surfs else surface_centre(surfs[model])
    return None if c is None else f"{c:.3g}"


@register_values
def values(profile: Profile) -> dict:
    """Every ``bn_*`` report value of the profile (None where its results
    are not on disk). Ratios are VGG-A over VGG-A + BN; comparisons say how
    the BN value compares with the plain one ("2 times narrower than").
    Bands are over the steps both networks cover, ``matched`` at the mean
    loss levels both pass through, probes at the course's Adam lr and the
    large SGD lr, surfaces the rise at +-0.5 along the 1-D direction.

    Used by notebook 04 (report section 2).
    """
    P = profile
    S, runs, surfs = sizes(P), records(P), load_surfaces(P)
    band, matched = band_means(runs, "loss"), matched_means(runs)
    rises, levels = surface_rises(surfs), matched[2]
    probe = {(s, k): probe_means(runs, S, s, k)
             for s in ("adam", "sgd") for k in ("loss_range", "grad_dist", "beta")}
    ratio = lambda s, k: _ratio(*probe[s, k])  # noqa: E731
    compare = lambda s, k: _compare(*reversed(probe[s, k]))  # noqa: E731
    k = S.keep_every
    return {
        "bn_band_ratio": _ratio(*band),
        "bn_band_compare": _narrower(band),
        "bn_band_rel_compare": _narrower(band_means(runs, "loss", relative_band)),
        "bn_band_matched_compare": _narrower(matched),
        "bn_band_matched_levels": None if levels is None
        else f"{levels[1]:.2g} to {levels[0]:.2g}",
        "bn_last_grad_compare": _narrower(band_means(runs, "last_grad")),
        "bn_adam_loss_range_ratio": ratio("adam", "loss_range"),
        "bn_adam_loss_range_compare": compare("adam", "loss_range"),
        "bn_adam_gdist_ratio": ratio("adam", "grad_dist"),
        "bn_adam_gdist_compare": compare("adam", "grad_dist"),
        "bn_adam_beta_ratio": ratio("adam", "beta"),
        "bn_adam_beta_compare": compare("adam", "beta"),
        "bn_sgd_loss_range_ratio": ratio("sgd", "loss_range"),
        "bn_sgd_loss_range_compare": compare("sgd", "loss_range"),
        "bn_sgd_gdist_ratio": ratio("sgd", "grad_dist"),
        "bn_sgd_gdist_compare": compare("sgd", "grad_dist"),
        "bn_sgd_beta_ratio": ratio("sgd", "beta"),
        "bn_sgd_beta_compare": compare("sgd", "beta"),
        "bn_adam_step_ratio": _adam_step_ratio(runs, S),
        "bn_probe_direction": _probe_direction(runs),
        "bn_probe_every": str(S.probe_every),
        "bn_probe_scales": ", ".join(f"{s:g}" for s in S.probe_scales),
        "bn_kept_steps": "every step" if k == 1 else f"every {_ordinal(k)} step",
        "bn_epochs": str(S.epochs),
        "bn_width": _width(S),
        "bn_lrs": ", ".join(f"{lr:g}" for lr in S.lrs),
        "bn_adam_lr": f"{S.adam_lr:g}",
        "bn_sgd_lr": f"{S.sgd_lr:g}",
        "bn_batch": str(S.batch_size),
        "bn_surface_images": f"{surface_n(S):,}",
        "bn_device": runs[0]["env"]["device_name"] if runs else None,
        "bn_train_minutes": f"{sum(r['metrics']['wall_time'] for r in runs) / 60:.1f}"
        if runs else None,
        "bn_train_size": f"{runs[0]['data']['train']:,}" if runs else None,
        "bn_sgd_trains": _sgd_trains(runs, S),
        "bn_adam_val_acc_vgg_a": _acc(runs, S, "vgg_a", "adam"),
        "bn_adam_val_acc_vgg_a_bn": _acc(runs, S, "vgg_a_bn", "adam"),
        "bn_sgd_val_acc_vgg_a": _acc(runs, S, "vgg_a", "sgd"),
        "bn_sgd_val_acc_vgg_a_bn": _acc(runs, S, "vgg_a_bn", "sgd"),
        "bn_surface_ratio": _ratio(*rises),
        "bn_surface_compare": _compare(rises[1], rises[0]),
        "bn_surface_rel_compare": _compare(*reversed(surface_rises(surfs, relative=True))),
        "bn_surface_batch_compare": _compare(*reversed(surface_rises(surfs, "line_batch"))),
        "bn_surface_loss_vgg_a": _surface_loss(surfs, "vgg_a"),
        "bn_surface_loss_vgg_a_bn": _surface_loss(surfs, "vgg_a_bn"),
    }


# ---------------------------------------------------------------- figures


def _register_runs_figure(name: str, draw) -> None:
    @register_figure(name)
    def fig(profile: Profile):
        runs = records(profile)
        return draw(runs, sizes(profile)) if runs else None


for _name, _draw in (("bn_curves.png", plots.plot_curves),
                     ("bn_loss_landscape.png", plots.plot_loss_landscape),
                     ("bn_loss_band_views.png", plots.plot_loss_band_views),
                     ("bn_probes.png", plots.plot_probes),
                     ("bn_last_grad.png", plots.plot_last_grad)):
    _register_runs_figure(_name, _draw)


@register_figure("bn_surface_1d.png")
def fig_surface_1d(profile: Profile):
    surfs = load_surfaces(profile)
    return plots.plot_surface_1d(surfs) if surfs else None


@register_figure("bn_surface_2d.png")
def fig_surface_2d(profile: Profile):
    surfs = load_surfaces(profile)
    return plots.plot_surface_2d(surfs) if surfs else None

"""Report sections 2 and 3: the figures read at GitHub's page width.

GitHub shows an image at most about 980 px wide, so a figure W inches wide
shows F-point text at about F / 72 * 980 / W px. Each figure of the
BatchNorm and DessiLBI sections is drawn from synthetic records (and, where
the cpu profile's results are committed, from those) and must be at most
11.5 inches wide, show no text under 9 px, and have no two texts overlap.
"""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from cifar_lib.profiles import get_profile
from cifar_lib.studies import batchnorm as bn
from cifar_lib.studies import dessilbi as slbi
from test_dessilbi_sweep import _measurement
from test_report import _boxes_apart

matplotlib.use("Agg")

PAGE_PX = 980          # GitHub's widest image
MAX_WIDTH = 11.5       # inches
MIN_PX = 9.0           # the smallest text, as shown at page width


def _shown_texts(fig):
    """Every text drawn: titles, labels, legends, annotations, and the tick
    labels inside their axis' view (matplotlib keeps some outside it)."""
    from matplotlib.text import Text
    ticks, shown = set(), []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            eps = 1e-9 * max(1.0, abs(lo), abs(hi))
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                for lab in (tick.label1, tick.label2):
                    ticks.add(id(lab))
                    if (ax.get_visible() and lab.get_visible() and tick.get_visible()
                            and lo - eps <= tick.get_loc() <= hi + eps):
                        shown.append(lab)
    for t in fig.findobj(Text):
        if id(t) not in ticks and t.get_visible() and (t.axes is None or t.axes.get_visible()):
            shown.append(t)
    return [t for t in shown if t.get_text().strip()]


def check_readable(fig, name: str):
    """At most MAX_WIDTH inches wide (as saved, bbox tight), no text under
    MIN_PX at page width, no two texts overlapping."""
    import matplotlib.pyplot as plt
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    width = fig.get_tightbbox(r).width + 0.2          # savefig's bbox_inches="tight"
    assert fig.get_figwidth() <= MAX_WIDTH and width <= MAX_WIDTH, (name, width)
    px_per_pt = min(150, PAGE_PX / width) / 72         # saved at 150 dpi
    texts = _shown_texts(fig)
    small = [(t.get_text(), round(t.get_fontsize() * px_per_pt, 1)) for t in texts
             if t.get_fontsize() * px_per_pt < MIN_PX]
    assert not small, (name, small[:5])
    assert _boxes_apart(texts, r), f"{name}: texts overlap"
    plt.close(fig)


def _legends_below_the_panels(fig):
    fig.canvas.draw()
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert fig.legends
    for leg in fig.legends:
        box = leg.get_window_extent()
        assert all(box.y1 <= ax.get_window_extent().y0 for ax in fig.axes
                   if ax.get_visible())


# ---------------------------------------------------------------- BatchNorm (section 2)


def _bn_run(model, setting, lr, diverge_at=None, n=120, epochs=3, every=4, seed=0):
    """A record with per-step losses, last-layer gradients and probes;
    ``diverge_at``: the step at which its loss stops being finite."""
    rng = np.random.default_rng([int(lr * 1e5), model == "vgg_a", setting == "sgd"])
    base = 2.3 * np.exp(-np.arange(n) / (60 if model == "vgg_a" else 30)) + 0.3
    loss = base * (1 + 0.1 * rng.random(n))
    grad = 0.1 + rng.random(n)
    if diverge_at is not None:
        loss[diverge_at:] = grad[diverge_at:] = np.nan
    pst = list(range(0, n if diverge_at is None else diverge_at, every))
    lo = np.interp(pst, range(n), base)
    hist = []
    for e in range(epochs):
        i = min(n // epochs * (e + 1) - 1, n - 1)
        ok = np.isfinite(loss[i])
        hist.append({"epoch": e + 1, "train_loss": float(loss[i]) if ok else None,
                     "val_loss": float(loss[i]) * 1.1 if ok else None,
                     "train_acc": 0.2 + 0.1 * e if ok else None,
                     "val_acc": 0.18 + 0.1 * e if ok else None})
    last = n - 1 if diverge_at is None else diverge_at
    return {
        "run": f"{model}-{setting}-{lr:g}", "status": "ok" if diverge_at is None else "diverged",
        "diverged_at": None if diverge_at is None else {"epoch": diverge_at * epochs // n},
        "config": {"model": model, "optimizer": setting, "lr": lr, "seed": seed,
                   "epochs": epochs},
        "history": hist,
        "steps": {"step": list(range(n)),
                  "loss": [None if not np.isfinite(v) else float(v) for v in loss],
                  "last_grad": [None if np.isnan(v) else float(v) for v in grad],
                  "last_grad_change": [None if np.isnan(v) else float(v / 2) for v in grad],
                  "first_nonfinite": diverge_at, "last_step": last},
        "probes": {"step": pst, "loss": list(lo), "loss_min": list(lo * 0.9),
                   "loss_max": list(lo * 1.2), "gdist_min": list(0.1 + lo),
                   "gdist_max": list(1 + 2 * lo), "beta": list(5 + 10 * lo)},
    }


@pytest.fixture
def bn_runs():
    """The cpu profile's sizes; VGG-A diverges at Adam's largest learning rate
    (a band that ends early, a longer legend) and with SGD."""
    S = bn.sizes(get_profile("cpu"))
    runs = [_bn_run(m, "adam", lr, diverge_at=80 if (m, lr) == ("vgg_a", max(S.lrs)) else None)
            for m in bn.MODELS for lr in S.lrs]
    runs += [_bn_run(m, "sgd", S.sgd_lr, diverge_at=90 if m == "vgg_a" else None)
             for m in bn.MODELS]
    return runs, S


def _surface(scale, epoch=None, k=9):
    xs = list(np.linspace(-1, 1, k))
    a, b = np.meshgrid(xs, xs, indexing="ij")
    grid = 0.5 + scale * (a ** 2 + 0.5 * b ** 2)
    s = {"xs": xs, "alphas": xs, "grid": grid.tolist(),
         "line": list(0.5 + scale * np.square(xs)),
         "line_batch": list(0.3 + scale / 2 * np.square(xs))}
    if epoch is not None:
        s["matched_epoch"] = epoch
    return s


SURFACES = {"vgg_a": _surface(1.0), "vgg_a_bn": _surface(20.0),
            bn.MATCHED: _surface(8.0, epoch=1)}


def test_batchnorm_run_figures_read_at_page_width(bn_runs):
    runs, S = bn_runs
    for name, draw in (("curves", bn.plot_curves), ("loss_landscape", bn.plot_loss_landscape),
                       ("loss_band_views", bn.plot_loss_band_views),
                       ("probes", bn.plot_probes), ("last_grad", bn.plot_last_grad)):
        check_readable(draw(runs, S), name)


def test_probes_are_one_row_per_measure_with_words_on_the_axes(bn_runs):
    runs, S = bn_runs
    fig = bn.plot_probes(runs, S)
    axes = np.asarray(fig.axes).reshape(3, 2)
    assert [ax.get_ylabel() for ax in axes[:, 0]] == [
        "loss at w + ηu\n(band: min to max over η)",
        "‖∇L(w + ηu) − ∇L(w)‖\n(band: min to max over η)", "effective β"]
    assert all("Adam" in ax.get_title() for ax in axes[:, 0])
    assert all("SGD" in ax.get_title() for ax in axes[:, 1])
    assert not any("||" in ax.get_ylabel() for ax in fig.axes)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:2] == ["VGG-A", "VGG-A + BN"] and len(labels) == len(set(labels))
    assert any("diverged" in lab and "SGD" in lab for lab in labels)
    _legends_below_the_panels(fig)
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_last_grad_axes_say_in_words_what_they_show(bn_runs):
    runs, S = bn_runs
    fig = bn.plot_last_grad(runs, S)
    labels = [ax.get_ylabel().replace("\n", " ") for ax in fig.axes]
    assert labels == ["gradient norm of the last layer's weights",
                      "change of the last layer's gradient between steps"]
    import matplotlib.pyplot as plt
    plt.close(fig)


@pytest.mark.parametrize("models", [tuple(SURFACES), bn.MODELS, bn.MODELS[:1]],
                         ids=["three", "two", "one"])
def test_surface_figures_read_at_page_width_with_one_colour_scale(models):
    surfs = {m: SURFACES[m] for m in models}
    check_readable(bn.plot_surface_1d(surfs), "surface_1d")
    fig = bn.plot_surface_2d(surfs)
    panels = [ax for ax in fig.axes if ax.collections and ax.get_title()]
    assert len(panels) == len(models)
    norms = {(c.norm.vmin, c.norm.vmax) for ax in panels for c in ax.collections
             if hasattr(c, "levels") and c.get_array() is not None and c.filled}
    assert len(norms) == 1                                  # one shared colour scale
    assert all(ax.get_legend() is None for ax in panels)   # the star's key is beside
    stars = [ln for ax in panels for ln in ax.get_lines() if ln.get_marker() == "*"]
    assert len(stars) == len(models) and all(list(s.get_xdata()) == [0] for s in stars)
    check_readable(fig, f"surface_2d ({len(models)})")


# ---------------------------------------------------------------- DessiLBI (section 3)


def _filters(n):
    rng = np.random.default_rng(n)
    models = {}
    for label in ("SLBI", "SGD"):
        w = rng.normal(size=(n, 3, 3, 3))
        models[label] = {"weight": w.ravel().tolist(), "shape": list(w.shape),
                         "orders": {by: [int(i) for i in rng.permutation(n)]
                                    for by in ("path", "bn", "magnitude")}}
    return {"layer": "features.0", "entry": [int(e) for e in rng.integers(-1, 12, n)],
            "models": models}


def _pruning_data(n_filters=16):
    """The sweep tests' measurement with four panels (conv1, conv2, conv13,
    all convs) and the filters of the first layer."""
    data = _measurement()
    rows = data["seeds"][0]["rows"]
    conv1 = [r for r in rows if r["layer"] == "conv1"]
    data["seeds"][0]["rows"] = conv1 + [dict(r, layer=layer) for layer in ("conv2", "conv13")
                                        for r in conv1] + [r for r in rows if r not in conv1]
    data["seeds"][0]["filters"] = _filters(n_filters)
    return data


def test_pruning_is_one_row_per_panel_at_page_width():
    data = _pruning_data()
    fig = slbi.plot_pruning(data, get_profile("cpu"))
    axes = np.asarray(fig.axes).reshape(-1, 2)
    assert len(axes) == 4                          # conv1, conv2, conv13, all convs
    assert [ax.get_ylabel() for ax in axes[0]] == ["kept above chance (%)",
                                                   "test accuracy (%)"]
    assert axes[-1, 0].get_title().startswith("all convs")
    _legends_below_the_panels(fig)
    check_readable(fig, "pruning")


@pytest.mark.parametrize("n", [8, 16, 64])
def test_filters_read_at_page_width(n):
    fig = slbi.plot_filters(_pruning_data(n))
    tags = [ax.title for ax in fig.axes if ax.get_title()]
    assert len(tags) == 2 * n                      # SLBI's two rows carry entry epochs
    assert all(t.get_fontsize() >= 9 for t in tags)
    check_readable(fig, f"filters ({n})")


# ---------------------------------------------------------------- the cpu profile's results

SECTION_FIGURES = ["bn_curves.png", "bn_loss_landscape.png", "bn_loss_band_views.png",
                   "bn_probes.png", "bn_last_grad.png", "bn_surface_1d.png",
                   "bn_surface_2d.png", "slbi_curves.png", "slbi_path.png",
                   "slbi_pruning.png", "slbi_filters.png", "slbi_sweep.png"]


@pytest.mark.parametrize("name", SECTION_FIGURES)
def test_committed_cpu_results_draw_readable_figures(name):
    from cifar_lib.registry import FIGURES
    P = get_profile("cpu")
    if not (P.results / "batchnorm").is_dir() or not (P.results / "dessilbi").is_dir():
        pytest.skip("no cpu-profile results committed here")
    fig = FIGURES[name](P)
    if fig is None:
        pytest.skip(f"{name}: not measured in the cpu profile")
    check_readable(fig, name)

"""Report section 3: readings that weigh a difference against its noise
(path order, filter norm against |BN scale|), and the figures' layout (path in
small multiples, sweep points kept apart with a zoom, pruning legend off
the curves), all from the fixtures of test_dessilbi_sweep."""
from __future__ import annotations

import math

import matplotlib
import pytest

from cifar_lib.profiles import get_profile
from cifar_lib.studies import dessilbi as study
from test_dessilbi_sweep import V, fake, _set  # noqa: F401  (fake: the fixture)

matplotlib.use("Agg")


def _set_rows(data, method: str, fraction: float, acc: float):
    for r in data["seeds"][0]["rows"]:
        if r["method"] == method and r["fraction"] == fraction:
            r["test_acc"] = acc


def test_order_verdict_weighs_the_gap_against_noise(fake):  # noqa: F811
    P = fake["P"]
    # kept: path 17.4, norm 26.1, |BN scale| 34.8; noise of path vs norm 8.1 points
    assert V.order_verdict(P) == (
        "SLBI's path order is the worst of the 3 rankings of the SLBI network, 8.7 points "
        "below the nearest (filter norm), more than the 8.1 points sampling the test set "
        "alone can give.")
    _set_rows(fake["data"], "SLBI, path order", 0.5, 0.22)        # 22.1 kept: within noise
    assert "below the nearest (filter norm), no more than" in V.order_verdict(P)
    _set_rows(fake["data"], "SLBI, path order", 0.5, 0.38)
    assert "path order is the best of the 3 rankings of the SLBI network, 14.0 points " \
           "above the nearest (|BN scale|)" in V.order_verdict(P)


def test_norm_reading_checks_the_expected_weak_baseline(fake):  # noqa: F811
    P = fake["P"]
    text = V.norm_reading(P)
    # kept: filter norm 26.1% against |BN scale| 34.8% (SLBI), 21.9% against 29.2% (SGD)
    assert text.startswith("Filter norm loses to |BN scale| on the SLBI network (-8.7 points, "
                           "noise 8.6) and loses to it on the SGD network (-7.3 points")
    assert "it is the weaker baseline on both networks, as expected" in text
    _set_rows(fake["data"], "SGD, filter norm", 0.5, 0.40)        # SGD: norm ahead
    text = V.norm_reading(P)
    assert "beats it on the SGD network" in text
    assert "it is the weaker baseline on the SLBI network only" in text
    _set_rows(fake["data"], "SLBI, filter norm", 0.5, 0.30)       # SLBI: the same as |BN scale|
    text = V.norm_reading(P)
    assert "Filter norm ties with |BN scale| on the SLBI network" in text
    assert "these results do not show it to be the weaker baseline" in text


def test_after_reading_states_the_profiles_fine_tune(fake):  # noqa: F811
    text = V.after_reading(fake["P"])
    assert text.endswith("Caveat: the fine-tune is only 30 steps of batch 128, 0.77 of an "
                         "epoch of the 5,000 training images, learning rate 0.01 decaying "
                         "to 0.")
    vals = study.values(get_profile("full"))          # no results needed for the setting
    assert vals["slbi_finetune"].startswith("200 steps of batch 128")


def test_the_template_says_no_plural_by_suffix_and_no_fixed_fine_tune_length():
    from test_dessilbi_sweep import SECTION
    from cifar_lib.report import TEMPLATE
    text = SECTION.search(TEMPLATE.read_text()).group(0)
    assert "(s)" not in text and "a few hundred steps" not in text
    assert "value:slbi_finetune" in text and "value:slbi_norm_reading" in text


# ---------------------------------------------------------------- figures


def _path_record(widths=(16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128)):
    convs = [f"features.{3 * i}" for i in range(len(widths))]
    sizes = dict(zip(convs, widths), **{"classifier.1": 1280})
    hist = []
    for ep in (1, 2, 3):
        sup = {c: min(w, w * ep // 3 + i % 3) for i, (c, w) in enumerate(zip(convs, widths))}
        hist.append({"epoch": ep, "slbi_support": dict(sup, **{"classifier.1": 100 * ep}),
                     "slbi_sizes": sizes,
                     **({"slbi_entry": {c: [1] * w for c, w in zip(convs, widths)}}
                        if ep == 3 else {})})
    return {"run": "r", "history": hist}, convs, sizes


def test_path_figure_gives_each_layer_of_a_panel_its_own_style():
    import matplotlib.pyplot as plt
    rec, convs, sizes = _path_record()
    assert study.plots.path_groups(convs, sizes) == [[0, 1], [2, 3], [4, 5, 6], [7, 8, 9],
                                                     [10, 11, 12]]   # VGG-16's stages
    fig = study.plot_path(rec)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 6                                           # 5 conv panels + linear
    labels = [t.get_text() for ax in axes for t in ax.get_legend().get_texts()]
    assert labels[:3] == ["conv1: 100%", "conv2: 100%", "conv3: 100%"]
    assert len(labels) == 14 and labels[-1].startswith("classifier: ")
    for ax in axes:
        styles = [(tuple(matplotlib.colors.to_rgba(ln.get_color())), ln.get_linestyle(),
                   ln.get_marker()) for ln in ax.get_lines()]
        assert len(set(styles)) == len(styles)      # no two lines of a panel look alike
        assert len({s[0] for s in styles}) == len(styles)
    assert axes[3].get_title() == "conv8-conv10 (128 filters each)"
    plt.close("all")


def test_sweep_figure_keeps_close_points_apart_and_zooms(fake):  # noqa: F811
    import matplotlib.pyplot as plt
    P = fake["P"]
    fig = V.fig_sweep(P)
    top, whole, zoom = fig.axes[:3]
    off = study.plots.sweep_offsets([0.6, 0.9, 1.2])
    assert len(set(off.values())) == 4 and max(map(abs, off.values())) < 0.3 / 2
    xs = {ln.get_label(): list(ln.get_xdata()) for ln in whole.get_lines()}
    unpruned = xs["SLBI unpruned"]
    by_gamma = xs["same budget by |BN scale|, fine-tuned"]
    assert unpruned != by_gamma and unpruned[1] - by_gamma[1] == pytest.approx(
        off["base"] - off["bn"])
    # the zoom leaves chance out, and its bars are half the noise of a difference
    lo, hi = zoom.get_ylim()
    assert lo > 15 and hi < 45
    bars = [c for c in zoom.collections if c.get_segments()]
    seg = bars[0].get_segments()[0]                 # the unpruned point at entry 0.6: 40%
    half = abs(seg[1][1] - seg[0][1]) / 2
    assert half == pytest.approx(100 * math.sqrt(2 * 0.4 * 0.6 / 2000))
    assert 2 * half == pytest.approx(100 * V.test_noise(0.4, 0.4, 2000))
    plt.close("all")


def test_pruning_legend_sits_below_the_panels(fake):  # noqa: F811
    import matplotlib.pyplot as plt
    fig = V.fig_pruning(fake["P"])
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert [m for m, _, _ in study.METHODS] == labels[:len(study.METHODS)]
    assert "thin, x: all convs after BN re-estimation" in labels
    fig.canvas.draw()
    box = legend.get_window_extent()
    assert all(box.y1 <= ax.get_window_extent().y0 for ax in fig.axes)
    plt.close("all")

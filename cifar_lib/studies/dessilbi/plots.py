"""Section 3's figures: learning curves, the regularisation path, pruning
curves and the filters of one layer, each returning a Figure (drawn from
run records or the stored measurements, never the weights)."""
from __future__ import annotations

from cifar_lib.profiles import Profile
from cifar_lib.studies.dessilbi.measures import CHANCE, curves_frame
from cifar_lib.studies.dessilbi.runs import METHODS


def plot_curves(runs: dict[str, dict]):
    """Training loss and train/validation accuracy per epoch, one colour per optimizer.

    The loss axis spans the training losses (with a quarter of headroom); a
    validation loss above it (a first-epoch spike, before BatchNorm's running
    statistics settle) is drawn at the top as a triangle labelled with its
    value, so that it does not flatten every other curve.

    Used by notebook 05 (report section 3).
    """
    import math
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    train = [r["train_loss"] for rec in runs.values() for r in rec["history"]
             if r.get("train_loss") is not None and math.isfinite(r["train_loss"])]
    top = 1.25 * max(train) if train else None
    above: list[str] = []
    for (label, rec), c in zip(runs.items(), ("C0", "C1", "C2")):
        h = rec["history"]
        ep = [r["epoch"] for r in h]
        val = [r["val_loss"] for r in h]
        ax1.plot(ep, [r["train_loss"] for r in h], color=c, label=f"{label} train")
        ax1.plot(ep, [min(v, top) if top and v is not None else v for v in val], color=c,
                 ls="--", label=f"{label} val")
        for e, v in zip(ep, val):
            if top and v is not None and v > top:
                ax1.plot([e], [top], marker="^", color=c, clip_on=False)
                above.append(f"{label} val {v:.3g} (epoch {e})")
        ax2.plot(ep, [100 * r["train_acc"] for r in h], color=c, label=f"{label} train")
        ax2.plot(ep, [100 * r["val_acc"] for r in h], color=c, ls="--", label=f"{label} val")
    ax1.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    if top:
        ax1.set_ylim(top=top)
    if above:
        ax1.text(0.5, 0.97, "above the axis:\n" + "\n".join(above), transform=ax1.transAxes,
                 ha="center", va="top", fontsize="small")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    ax1.legend(fontsize="small", loc="center right")
    ax2.legend(fontsize="small")
    fig.tight_layout()
    return fig


def path_groups(convs: list[str], sizes: dict, most: int = 3) -> list[list[int]]:
    """Indices of ``convs`` in panels of the path figure: consecutive layers
    of the same width, at most ``most`` per panel (VGG-16's stages: conv1-2,
    conv3-4, conv5-7, conv8-10, conv11-13)."""
    groups: list[list[int]] = []
    for k, layer in enumerate(convs):
        g = groups[-1] if groups else None
        if g and len(g) < most and sizes[convs[g[-1]]] == sizes[layer]:
            g.append(k)
        else:
            groups.append([k])
    return groups


_LINES = (("C0", "-", "o"), ("C1", "--", "s"), ("C2", ":", "^"))


def plot_path(record: dict):
    """Share of each layer's filters (conv) or weights (linear) in Gamma's
    support per epoch: one panel per few consecutive conv layers of one width
    (:func:`path_groups`), each layer in its own colour, line and marker, its
    final share in the legend; the linear layers in the last panel.

    Used by notebook 05 (report section 3).
    """
    import matplotlib.pyplot as plt
    h = [r for r in record["history"] if "slbi_support" in r]
    if not h:
        raise ValueError(f"run {record.get('run')} recorded no regularisation path; "
                         "it was not trained with optimizer='slbi'")
    sizes = h[0]["slbi_sizes"]
    convs = list(h[-1].get("slbi_entry", {}))
    linear = [layer for layer in h[0]["slbi_support"] if layer not in convs]
    groups = path_groups(convs, sizes) + ([linear] if linear else [])
    ncol = min(3, len(groups))
    nrow = -(-len(groups) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 2.6 * nrow), sharex=True,
                             sharey=True, squeeze=False)
    ep = [0] + [r["epoch"] for r in h]          # Gamma is zero before training
    share = {layer: [0] + [100 * r["slbi_support"][layer] / r["slbi_sizes"][layer] for r in h]
             for layer in convs + linear}
    for ax, group in zip(axes.flat, groups):
        is_conv = group is not groups[-1] or not linear
        names = ([f"conv{k + 1}" for k in group] if is_conv else
                 ["classifier"] if len(group) == 1 else
                 [f"linear {k + 1} of the classifier" for k in range(len(group))])
        layers = [convs[k] for k in group] if is_conv else group
        for (c, ls, m), name, layer in zip(_LINES * len(layers), names, layers):
            ax.plot(ep, share[layer], color=c, ls=ls, marker=m, ms=3.5,
                    label=f"{name}: {share[layer][-1]:.0f}%")
        unit = "filters" if is_conv else "weights"
        title = (f"{names[0]}-{names[-1]}" if len(names) > 1 else names[0]) if is_conv \
            else "linear"
        each = {sizes[x] for x in layers}
        ax.set_title(f"{title} ({next(iter(each)) if len(each) == 1 else 'various'} "
                     f"{unit}{' each' if len(layers) > 1 and len(each) == 1 else ''})",
                     fontsize="small")
        ax.legend(fontsize="x-small", loc="best", title="at the end", title_fontsize="x-small")
        ax.set_ylim(-3, 103)
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel("in Γ's support\n(% of layer)")
    fig.suptitle("Regularisation path of the SLBI run (first seed)")
    fig.tight_layout()
    return fig


def plot_pruning(data: dict, P: Profile):
    """Against % of filters pruned, one row per layer group (mean over
    seeds): left, the accuracy kept above chance (% of each network's own
    unpruned accuracy above 10%); right, the absolute test accuracy with
    chance marked. In the all-convs row, crosses: after BN re-estimation.
    Two panels per row keep the figure at page width; one legend below.

    Used by notebook 05 (report section 3)."""
    import matplotlib.pyplot as plt
    df = curves_frame(data)
    groups = list(dict.fromkeys(df["layer"]))
    fig, axes = plt.subplots(len(groups), 2, figsize=(9.5, 2.5 * len(groups) + 1.4),
                             sharex=True, sharey="col", squeeze=False)
    styles = {"path": "-", "bn": "--", "magnitude": ":"}
    for j, g in enumerate(groups):
        left, right = axes[j, 0], axes[j, 1]
        for i, (method, _, by) in enumerate(METHODS):
            d = df[(df["layer"] == g) & (df["method"] == method)]
            x = 100 * d["fraction"]
            for ax, y, yb in ((left, d["kept"], d["bn_kept"]),
                              (right, d["test_acc"], d["bn_acc"])):
                ax.plot(x, 100 * y, ls=styles[by], marker="o", ms=4, color=f"C{i}",
                        label=method)
                if g == "all convs" and yb.notna().any():
                    ax.plot(x, 100 * yb, ls="-", lw=0.8, marker="x", ms=4,
                            color=f"C{i}", alpha=0.6)
        share = _outside_share(data, g)
        for ax in (left, right):
            if share is not None:
                ax.axvline(100 * share, color="grey", ls=":", label="outside Γ's support")
        left.axhline(0, color="black", lw=0.6)
        right.axhline(100 * CHANCE, color="black", lw=0.6, label="chance (10%)")
        left.set_title(f"{g}: accuracy kept above chance", fontsize=11)
        right.set_title(f"{g}: test accuracy", fontsize=11)
        left.set_ylabel("kept above chance (%)")
        right.set_ylabel("test accuracy (%)")
    for ax in axes[-1]:
        ax.set_xlabel("filters pruned (%)")
    handles, labels = axes[-1, 1].get_legend_handles_labels()
    if "all convs" in groups:
        from matplotlib.lines import Line2D
        handles.append(Line2D([], [], color="grey", lw=0.8, marker="x", ms=4))
        labels.append("thin, x: all convs after BN re-estimation")
    rows = -(-len(labels) // 3)
    fig.tight_layout(rect=(0, (0.15 + 0.22 * rows) / fig.get_figheight(), 1, 1))
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0), ncol=3,
               frameon=False)        # below the panels, off the curves
    return fig


_SWEEP_STYLES = {"support": ("C0", "s", "cut to Γ's support"),
                 "bn": ("C1", "^", "same budget by |BN scale|"),
                 "magnitude": ("C2", "v", "same budget by filter norm")}


def sweep_offsets(entries) -> dict[str, float]:
    """Small x offsets per series of the sweep figure (unpruned and the three
    ways of pruning) so that equal or close accuracies at one threshold sit
    side by side: a sixth of the smallest gap between thresholds each."""
    es = sorted(set(entries))
    gap = min((b - a for a, b in zip(es, es[1:])), default=1.0)
    d = gap / 6
    return {"support": -1.5 * d, "bn": -0.5 * d, "magnitude": 0.5 * d, "base": 1.5 * d}


def plot_sweep(df, sgd_acc: float | None = None, n_test: int | None = None):
    """Panels over the threshold of the lambda sweep (its entry share, one
    point per SLBI run, ``measures.sweep_frame``): the share of conv filters
    outside Gamma's support (top, each point labelled); test accuracy over
    its whole range: unpruned, cut to the support (BN re-estimated,
    fine-tuned), and the same number of filters per layer pruned by |BN
    scale| and by filter norm (fine-tuned), with SGD's unpruned accuracy and
    chance as lines; and, once measured, a zoom on the compared accuracies
    above chance with bars of +-sqrt(2) standard errors of test sampling on
    ``n_test`` images (half the noise of a difference: bars that overlap
    tie). Each series is shifted slightly along x
    (:func:`sweep_offsets`) so that close points stay apart.

    Used by notebook 05 (report section 3)."""
    import matplotlib.pyplot as plt
    import numpy as np
    col, stage = (("finetune_acc", "fine-tuned") if df["finetune_acc"].notna().any()
                  else ("bn_acc", "BN re-estimated"))
    zoom = bool(df[col].notna().any())
    ratios = (1, 1.5, 1.5) if zoom else (1, 1.7)
    fig, axes = plt.subplots(len(ratios), 1, figsize=(6.4, 2.3 * sum(ratios)), sharex=True,
                             layout="constrained", gridspec_kw={"height_ratios": ratios})
    top, ax = axes[0], axes[1]
    sup = df[df["by"] == "support"].sort_values("entry_at")
    e = sup["entry_at"]
    off = sweep_offsets(e)
    out = 100 * sup["fraction_out"]
    top.plot(e, out, "k-o", ms=4)
    for xi, yi in zip(e, out):
        top.annotate(f"{yi:.0f}%" if yi >= 10 or yi == 0 else f"{yi:.1f}%", (xi, yi),
                     textcoords="offset points", xytext=(-4, 6), ha="right", fontsize="x-small")
    top.set(ylabel="conv filters outside\nΓ's support (%)", ylim=(-8, 112))
    series = [("base", e + off["base"], 100 * sup["base"],
               dict(color="k", ls="-", marker="o", ms=4, label="SLBI unpruned"))]
    for by, (c, m, name) in _SWEEP_STYLES.items():
        d = df[df["by"] == by].sort_values("entry_at")
        if d[col].notna().any():  # not measured yet: no empty legend entry
            series.append((by, d["entry_at"] + off[by], 100 * d[col],
                           dict(color=c, ls="-", marker=m, ms=4, label=f"{name}, {stage}")))
    for _, x, y, kw in series:
        ax.plot(x, y, **kw)
    if col == "finetune_acc" and sup["bn_acc"].notna().any():
        ax.plot(e + off["support"], 100 * sup["bn_acc"], "C0--", marker="s", ms=3, mfc="none",
                label="cut to Γ's support, BN re-estimated")
    for a in axes[1:]:
        if sgd_acc is not None:
            a.axhline(100 * sgd_acc, color="C3", ls=":", label="SGD unpruned")
        a.axhline(100 * CHANCE, color="grey", lw=0.8, label="chance (10%)")
        a.set_ylabel("test accuracy (%)")
    if zoom:
        low = axes[2]
        # half of two standard errors of a difference: bars that overlap tie
        se = ((lambda p: 100 * np.sqrt(2 * p * (1 - p) / n_test)) if n_test
              else (lambda p: 0 * p))
        floor = 100 * CHANCE + (float(se(CHANCE)) if n_test else 2.0)
        shown = []
        for _, x, y, kw in series:
            keep = y > floor                       # at chance: in the panel above
            low.errorbar(x[keep], y[keep], yerr=se(y[keep] / 100), capsize=2, lw=1,
                         **{**kw, "ls": "none"})
            shown += list(y[keep] - se(y[keep] / 100)) + list(y[keep] + se(y[keep] / 100))
        if shown:
            low.set_ylim(min(shown) - 0.5, max(shown) + 0.5)
        low.set_title("zoom on the accuracies above chance" + (
            f"; bars: ±√2 standard errors of test sampling ({n_test:,} images),\n"
            "so two points whose bars overlap differ by less than its noise (a tie)"
            if n_test else ""), fontsize="x-small")
    ax.set_title("whole range", fontsize="x-small")
    axes[-1].set_xlabel("threshold: entry share of the path time (lambda grows to the right)")
    axes[-1].set_xticks(list(e))
    axes[-1].set_xticklabels([f"{v:g}" for v in e], fontsize="small")
    top.set_title("Sparsity and accuracy along the λ sweep")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2,
               fontsize="x-small")
    return fig


def _outside_share(data: dict, panel: str) -> float | None:
    """Share of the panel's filters outside Gamma's support (first seed)."""
    layers = data["seeds"][0]["support"]["layers"]
    if panel == "all convs":
        return 1 - sum(r["in_support"] for r in layers) / sum(r["filters"] for r in layers)
    k = int(panel.removeprefix("conv")) - 1 if panel.startswith("conv") else -1
    return 1 - layers[k]["in_support"] / layers[k]["filters"] if 0 <= k < len(layers) else None


def _tiles(w):
    """Filters as spatial patterns: each filter's weights summed over its
    inputs (K x k x k), and the network's symmetric colour limit."""
    s = w.sum(1)
    return s.numpy(), float(s.abs().max()) or 1.0


def plot_filters(data: dict, fraction: float = 0.5,
                 rows=(("SLBI", "path"), ("SLBI", "bn"), ("SGD", "bn")), name: str | None = None):
    """The filters of one conv layer (first seed), kept first, pruned ones crossed out.

    One row of at most 16 filters per network and order (a wider layer wraps
    onto more rows), at most about 10.6 inches wide, so that the labels stay
    readable at page width; ``name``: the layer as the title names it
    (default: its module path).

    Used by notebook 05 (report section 3).
    """
    import matplotlib.pyplot as plt
    import torch
    fd = data["seeds"][0]["filters"]
    layer, entry = fd["layer"], fd["entry"]
    n = len(entry)
    cols = min(n, 16)
    per = -(-n // cols)
    pitch = 0.58                                  # inches per filter, gap included
    fig, axes = plt.subplots(len(rows) * per, cols, squeeze=False,
                             figsize=(max(pitch * cols + 1.3, 7.5),   # the title's width
                                      0.85 * len(rows) * per + 1.0))
    k = int(round(fraction * n))
    for r, (label, by) in enumerate(rows):
        md = fd["models"][label]
        tiles, lim = _tiles(torch.tensor(md["weight"]).view(*md["shape"]))
        for j, f in enumerate(md["orders"][by][::-1]):          # kept first
            ax = axes[r * per + j // cols, j % cols]
            ax.imshow(tiles[f], cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            pruned = j >= n - k
            if pruned:
                ax.plot([0, 1], [0, 1], transform=ax.transAxes, color="red", lw=1.5)
            tag = (f"e{entry[f]}" if entry[f] >= 0 else "out") if label == "SLBI" else ""
            ax.set_title(tag, fontsize=9, color="red" if pruned else "black", pad=2)
        axes[r * per, 0].set_ylabel(f"{label}\n{_ORDER_NAMES[by]}", fontsize=10,
                                    rotation=0, ha="right", va="center", labelpad=6)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"Filters of {name or layer}, kept (left) to pruned (right, crossed) at "
                 f"{100 * fraction:.0f}% pruned\neN: entered the path at epoch N, "
                 "out: never; each filter's weights summed over its inputs,\nred positive, "
                 "blue negative, one scale per network: a faint filter is a weak one",
                 fontsize=10)
    fig.tight_layout(h_pad=0.8, w_pad=0.3)
    return fig


_ORDER_NAMES = {"path": "path order", "bn": "|BN scale|", "magnitude": "filter norm"}

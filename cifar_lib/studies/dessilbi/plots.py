"""Section 3's figures: learning curves, the regularisation path, pruning
curves and the filters of one layer, each returning a Figure (drawn from
run records or the stored measurements, never the weights)."""
from __future__ import annotations

from cifar_lib.profiles import Profile
from cifar_lib.studies.dessilbi.measures import CHANCE, curves_frame
from cifar_lib.studies.dessilbi.runs import METHODS


def plot_curves(runs: dict[str, dict]):
    """Training loss and train/validation accuracy per epoch, one colour per optimizer.

    Used by notebook 05 (report section 3).
    """
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for (label, rec), c in zip(runs.items(), ("C0", "C1", "C2")):
        h = rec["history"]
        ep = [r["epoch"] for r in h]
        ax1.plot(ep, [r["train_loss"] for r in h], color=c, label=f"{label} train")
        ax1.plot(ep, [r["val_loss"] for r in h], color=c, ls="--", label=f"{label} val")
        ax2.plot(ep, [100 * r["train_acc"] for r in h], color=c, label=f"{label} train")
        ax2.plot(ep, [100 * r["val_acc"] for r in h], color=c, ls="--", label=f"{label} val")
    ax1.set(xlabel="epoch", ylabel="cross-entropy loss (log scale)", yscale="log",
            title="Loss")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax1, ax2):
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_path(record: dict):
    """Share of each layer's filters (conv) or weights (linear) in Gamma's support per epoch.

    Used by notebook 05 (report section 3).
    """
    import matplotlib.pyplot as plt
    h = [r for r in record["history"] if "slbi_support" in r]
    if not h:
        raise ValueError(f"run {record.get('run')} recorded no regularisation path; "
                         "it was not trained with optimizer='slbi'")
    layers = list(h[0]["slbi_support"])
    convs = list(h[-1].get("slbi_entry", {}))
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(8, 4))
    ep = [0] + [r["epoch"] for r in h]          # Gamma is zero before training
    for layer in layers:
        share = [0] + [100 * r["slbi_support"][layer] / r["slbi_sizes"][layer] for r in h]
        if layer in convs:
            k = convs.index(layer)
            ax.plot(ep, share, color=cmap(k / max(len(convs) - 1, 1)), marker=".",
                    label=f"conv{k + 1} ({h[0]['slbi_sizes'][layer]} filters)")
        else:
            ax.plot(ep, share, color="C3", ls="--", marker=".",
                    label=f"linear {layer} ({h[0]['slbi_sizes'][layer]} weights)")
    ax.set(xlabel="epoch", ylabel="in Gamma's support (% of layer)", ylim=(-3, 103),
           title="Regularisation path of the SLBI run")
    ax.legend(fontsize="x-small", ncol=2, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.tight_layout()
    return fig


def plot_pruning(data: dict, P: Profile):
    """Against % of filters pruned, one column per layer group (mean over
    seeds): top, the accuracy kept above chance (% of each network's own
    unpruned accuracy above 10%); bottom, the absolute test accuracy with
    chance marked. In the all-convs panels, crosses: after BN re-estimation.

    Used by notebook 05 (report section 3)."""
    import matplotlib.pyplot as plt
    df = curves_frame(data)
    groups = list(dict.fromkeys(df["layer"]))
    fig, axes = plt.subplots(2, len(groups), figsize=(3.3 * len(groups), 6.4),
                             sharey="row", squeeze=False)
    styles = {"path": "-", "bn": "--", "magnitude": ":"}
    for j, g in enumerate(groups):
        top, low = axes[0, j], axes[1, j]
        for i, (method, _, by) in enumerate(METHODS):
            d = df[(df["layer"] == g) & (df["method"] == method)]
            x = 100 * d["fraction"]
            for ax, y, yb in ((top, d["kept"], d["bn_kept"]), (low, d["test_acc"], d["bn_acc"])):
                ax.plot(x, 100 * y, ls=styles[by], marker="o", ms=3, color=f"C{i}",
                        label=method)
                if g == "all convs" and yb.notna().any():
                    ax.plot(x, 100 * yb, ls="-", lw=0.8, marker="x", ms=3,
                            color=f"C{i}", alpha=0.6)
        share = _outside_share(data, g)
        for ax in (top, low):
            if share is not None:
                ax.axvline(100 * share, color="grey", ls=":", label="outside Gamma's support")
        top.axhline(0, color="black", lw=0.6)
        low.axhline(100 * CHANCE, color="black", lw=0.6, label="chance (10%)")
        top.set(title=g)
        low.set(xlabel="filters pruned (%)")
    axes[0, 0].set_ylabel("accuracy kept above chance (%)")
    axes[1, 0].set_ylabel("test accuracy (%)")
    axes[1, -1].legend(fontsize="x-small", loc="upper right")
    if "all convs" in groups:
        ax = axes[0, groups.index("all convs")]
        ax.text(0.98, 0.98, "x: BN statistics re-estimated", transform=ax.transAxes,
                ha="right", va="top", fontsize="x-small")
    fig.tight_layout()
    return fig


def plot_sweep(df, sgd_acc: float | None = None):
    """Two panels over the threshold of the lambda sweep (its entry share,
    one point per SLBI run, ``measures.sweep_frame``): the share of conv
    filters outside Gamma's support (top, each point labelled), and test
    accuracy (bottom): unpruned, cut to the support (BN re-estimated,
    fine-tuned), and the same number of filters per layer pruned by |BN
    scale| and by filter norm (fine-tuned); SGD's unpruned accuracy and
    chance as lines. The entry share is the setting, so the points stay
    apart however close their sparsity is.

    Used by notebook 05 (report section 3)."""
    import matplotlib.pyplot as plt
    fig, (top, ax) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True, layout="constrained",
                                  gridspec_kw={"height_ratios": (1, 1.7)})
    sup = df[df["by"] == "support"].sort_values("entry_at")
    e = sup["entry_at"]
    out = 100 * sup["fraction_out"]
    top.plot(e, out, "k-o", ms=4)
    for xi, yi in zip(e, out):
        top.annotate(f"{yi:.0f}%" if yi >= 10 or yi == 0 else f"{yi:.1f}%", (xi, yi),
                     textcoords="offset points", xytext=(-4, 6), ha="right", fontsize="x-small")
    top.set(ylabel="conv filters outside\nGamma's support (%)", ylim=(-8, 112))
    ax.plot(e, 100 * sup["base"], "k-o", ms=4, label="SLBI unpruned")
    if sup["bn_acc"].notna().any():
        ax.plot(e, 100 * sup["bn_acc"], "C0--", marker="s", ms=3,
                label="cut to Gamma's support, BN re-estimated")
    styles = {"support": ("C0", "-", "s"), "bn": ("C1", "-", "^"),
              "magnitude": ("C2", "-", "v")}
    names = {"support": "cut to Gamma's support", "bn": "same budget by |BN scale|",
             "magnitude": "same budget by filter norm"}
    col, stage = (("finetune_acc", "fine-tuned") if df["finetune_acc"].notna().any()
                  else ("bn_acc", "BN re-estimated"))
    for by, (c, ls, m) in styles.items():
        d = df[df["by"] == by].sort_values("entry_at")
        if not d[col].notna().any():  # not measured yet: no empty legend entry
            continue
        ax.plot(d["entry_at"], 100 * d[col], color=c, ls=ls, marker=m, ms=4,
                label=f"{names[by]}, {stage}")
    if sgd_acc is not None:
        ax.axhline(100 * sgd_acc, color="C3", ls=":", label="SGD unpruned")
    ax.axhline(100 * CHANCE, color="grey", lw=0.8, label="chance (10%)")
    ax.set(xlabel="threshold: entry share of the path time (lambda grows to the right)",
           ylabel="test accuracy (%)")
    ax.set_xticks(list(e))
    ax.set_xticklabels([f"{v:g}" for v in e], fontsize="small")
    top.set_title("Sparsity and accuracy along the lambda sweep")
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
                 rows=(("SLBI", "path"), ("SLBI", "bn"), ("SGD", "bn"))):
    """The filters of one conv layer (first seed), kept first, pruned ones crossed out.

    Used by notebook 05 (report section 3).
    """
    import matplotlib.pyplot as plt
    import torch
    fd = data["seeds"][0]["filters"]
    layer, entry = fd["layer"], fd["entry"]
    n = len(entry)
    cols = min(n, 16)
    per = -(-n // cols)
    fig, axes = plt.subplots(len(rows) * per, cols, squeeze=False,
                             figsize=(0.7 * cols, 0.85 * len(rows) * per + 0.6))
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
            ax.set_title(tag, fontsize=6, color="red" if pruned else "black", pad=1)
        axes[r * per, 0].set_ylabel(f"{label}\n{_ORDER_NAMES[by]}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"Filters of {layer}, kept (left) to pruned (right, crossed) at "
                 f"{100 * fraction:.0f}% pruned; eN: entered the path at epoch N, "
                 "out: never\neach filter's weights summed over its inputs, red positive, "
                 "blue negative, one scale per network: a faint filter is a weak one",
                 fontsize=8)
    fig.tight_layout()
    return fig


_ORDER_NAMES = {"path": "path order", "bn": "|BN scale|", "magnitude": "filter norm"}

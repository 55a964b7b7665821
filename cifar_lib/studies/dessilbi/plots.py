"""Section 3's figures: learning curves, the regularisation path, pruning
curves and the filters of one layer, each returning a Figure (drawn from
run records or the stored measurements, never the weights)."""
from __future__ import annotations

from cifar_lib.profiles import Profile
from cifar_lib.studies.dessilbi.measures import curves_frame
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
    """Accuracy kept (% of each network's own unpruned accuracy, mean over seeds)
    against % of filters pruned, one panel per layer group; in the all-convs
    panel, dotted: after BN re-estimation.

    Used by notebook 05 (report section 3)."""
    import matplotlib.pyplot as plt
    df = curves_frame(data)
    groups = list(dict.fromkeys(df["layer"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.3 * len(groups), 3.4), sharey=True)
    axes = [axes] if len(groups) == 1 else list(axes)
    styles = {"path": "-", "bn": "--", "magnitude": ":"}
    for ax, g in zip(axes, groups):
        for i, (method, _, by) in enumerate(METHODS):
            d = df[(df["layer"] == g) & (df["method"] == method)]
            ax.plot(100 * d["fraction"], 100 * d["kept"], ls=styles[by], marker="o", ms=3,
                    color=f"C{i}", label=method)
            if g == "all convs" and d["bn_acc"].notna().any():
                base = d["test_acc"].iloc[0] / d["kept"].iloc[0]
                ax.plot(100 * d["fraction"], 100 * d["bn_acc"] / base, ls="-", lw=0.8,
                        marker="x", ms=3, color=f"C{i}", alpha=0.6)
        share = _outside_share(data, g)
        if share is not None:
            ax.axvline(100 * share, color="grey", ls=":", label="outside Gamma's support")
        ax.set(xlabel="filters pruned (%)", title=g)
    axes[0].set_ylabel("accuracy kept (% of unpruned)")
    axes[-1].legend(fontsize="x-small", loc="lower left")
    if "all convs" in groups:
        ax = axes[groups.index("all convs")]
        ax.text(0.98, 0.98, "x: BN statistics re-estimated", transform=ax.transAxes,
                ha="right", va="top", fontsize="x-small")
    fig.tight_layout()
    return fig


def _outside_share(data: dict, panel: str) -> float | None:
    """Share of the panel's filters outside Gamma's support (first seed)."""
    layers = data["seeds"][0]["support"]["layers"]
    if panel == "all convs":
        return 1 - sum(r["in_support"] for r in layers) / sum(r["filters"] for r in layers)
    k = int(panel.removeprefix("conv")) - 1 if panel.startswith("conv") else -1
    return 1 - layers[k]["in_support"] / layers[k]["filters"] if 0 <= k < len(layers) else None


def _tiles(w):
    """Filters as images: RGB when they see 3 channels, else their mean over inputs."""
    w = w if w.shape[1] == 3 else w.mean(1, keepdim=True)
    lo = w.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = w.flatten(1).max(1).values.view(-1, 1, 1, 1)
    return ((w - lo) / (hi - lo).clamp_min(1e-12)).permute(0, 2, 3, 1).numpy()


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
        tiles = _tiles(torch.tensor(md["weight"]).view(*md["shape"]))
        for j, f in enumerate(md["orders"][by][::-1]):          # kept first
            ax = axes[r * per + j // cols, j % cols]
            ax.imshow(tiles[f].squeeze(), cmap="gray" if tiles.shape[-1] == 1 else None)
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
                 "out: never", fontsize=8)
    fig.tight_layout()
    return fig


_ORDER_NAMES = {"path": "path order", "bn": "|BN scale|", "magnitude": "filter norm"}

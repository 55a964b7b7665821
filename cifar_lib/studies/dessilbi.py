"""DessiLBI study (report section 3): experiments, measurements, tables, values.

The same VGG-16-BN (reduced width on CPU) trains with SLBI (DessiLBI) and
with SGD, same recipe and seeds. The SLBI run records Gamma's support per
layer each epoch (the regularisation path) and the epoch each conv filter
entered it. After training, :func:`measure` prunes both networks' filters
(SLBI's in path order; both by BatchNorm |scale| and by filter norm), cuts
the SLBI network to Gamma's support layer by layer, and tries BN-statistics
re-estimation and a short fine-tune after pruning; it stores everything the
tables and figures need in ``results/dessilbi_measure.json``, so the
notebook (05_dessilbi.ipynb) renders without the weights.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import statistics

from cifar_lib import slbi
from cifar_lib.engine import TrainConfig, evaluate, make_loaders
from cifar_lib.experiments import load_results, trained_model, write_json
from cifar_lib.optim import lr_factor
from cifar_lib.profiles import Profile, get_profile
from cifar_lib.registry import register_experiment, register_table, register_value

EXPERIMENT = "dessilbi"
MEASURE_FILE = "dessilbi_measure.json"   # under the profile's results/
MEASURE_VERSION = 1                      # bump when measure() changes what it stores
# (label, model trained by, pruning order) of the curves in the pruning figure
METHODS = (("SLBI, path order", "SLBI", "path"),
           ("SLBI, |BN scale|", "SLBI", "bn"),
           ("SLBI, filter norm", "SLBI", "magnitude"),
           ("SGD, |BN scale|", "SGD", "bn"),
           ("SGD, filter norm", "SGD", "magnitude"))
FULL_EPOCHS = 12      # the full profile's training length: the one number to size it


@dataclasses.dataclass(frozen=True)
class Sizes:
    """The study's sizes and hyper-parameters for one profile.

    ``entry_at``: the relative thresholds put a filter that kept its initial
    norm and direction into Gamma's support at this share of the run's path
    time (:func:`path_time`); lambda_conv/lambda_linear follow from it.
    """
    width: float
    epochs: int
    batch_size: int
    train_size: int
    seeds: tuple
    fractions: tuple
    bn_batches: int          # training batches for BN re-estimation (0: skip)
    finetune_steps: int      # steps of the short fine-tune after pruning (0: skip)
    model: str = "vgg16_bn"
    lr: float = 0.1
    kappa: float = 1.0
    nu: float = 100.0        # the reference code's default (its CIFAR VGG script: 500)
    z_lr_floor: float = 0.1  # the Z update's lr never drops below 10% of lr
    entry_at: float = 0.5
    finetune_fraction: float = 0.5   # every conv layer pruned this much, then fine-tuned
    finetune_lr: float = 0.01
    panels: tuple = (1, 7, 13)       # conv layers pruned one at a time (1-based)
    show_layer: int = 1              # conv layer whose filters are drawn

    def __post_init__(self):
        if self.finetune_fraction not in self.fractions:
            raise ValueError(f"finetune_fraction {self.finetune_fraction} must be one of "
                             f"the pruning fractions {self.fractions}")

    @property
    def warmup_epochs(self) -> float:
        return min(1, self.epochs / 4)

    @property
    def lambda_conv(self) -> float:
        return round(self.entry_at * path_time(self), 6)

    @property
    def lambda_linear(self) -> float:
        return self.lambda_conv


# entry_at per profile, from ||Z_g|| / (median initial filter norm * path time)
# measured per layer without entries (H100, nu 100, floor 0.1): 15 epochs on the
# cpu profile's 5000 images, layer medians 0.88-2.37 (10-90% within a layer
# about +-5-10%); 15 epochs on 45k images, 1.35 (conv1) down to 0.28 (deep
# layers, whose filter norms decay to 10-15% of their initial value). A single
# entry_at below the deepest layers' value keeps every layer non-empty.
_PROFILE_SIZES = {
    "smoke": dict(width=1 / 16, epochs=2, batch_size=64, fractions=(0.0, 0.3, 0.5, 0.9),
                  bn_batches=2, finetune_steps=2, entry_at=0.5),
    "cpu": dict(width=0.25, epochs=15, batch_size=128, fractions=(0.0, 0.25, 0.5, 0.75, 0.9),
                bn_batches=10, finetune_steps=30, entry_at=0.9),
    "full": dict(width=1.0, epochs=FULL_EPOCHS, batch_size=128, bn_batches=40,
                 fractions=(0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9), finetune_steps=200,
                 entry_at=0.3),
}


def path_time(S: Sizes) -> float:
    """``sum over steps of max(lr_t, floor) / nu``: the integral Z_g/||W_g|| reaches
    for a filter of constant norm and direction (cosine schedule with warm-up)."""
    return _path_time(S.train_size // S.batch_size, S.epochs, S.warmup_epochs,
                      S.lr, S.z_lr_floor, S.nu)


@functools.lru_cache(maxsize=32)
def _path_time(per_epoch, epochs, warmup_epochs, lr, floor, nu) -> float:
    total, warm = per_epoch * epochs, round(warmup_epochs * per_epoch)
    return sum(max(lr * lr_factor("cosine", t, total, per_epoch) *
                   (min(1.0, (t + 1) / warm) if warm else 1.0), floor * lr)
               for t in range(total)) / nu


def sizes(P: Profile) -> Sizes:
    """The study's sizes and hyper-parameters for profile ``P`` (or its name).

    Used by notebook 05 (report section 3).
    """
    P = get_profile(P)
    kw = _PROFILE_SIZES.get(P.name, _PROFILE_SIZES["full"])
    train = P.train_size or 45000
    return Sizes(seeds=tuple(P.seeds), train_size=train, **kw)


def recipe(P: Profile, optimizer: str, seed: int = 0) -> TrainConfig:
    """VGG-16-BN, momentum 0.9 (no Nesterov, as the reference), wd 5e-4 on weights
    only, cosine with warm-up, crop+flip; SLBI with relative thresholds."""
    S = sizes(P)
    optim_kw = {}
    if optimizer == "slbi":
        optim_kw = dict(kappa=S.kappa, nu=S.nu, lambda_conv=S.lambda_conv,
                        lambda_linear=S.lambda_linear, relative=True,
                        z_lr_floor=S.z_lr_floor)
    return TrainConfig(model=S.model, model_kw={"width": S.width},
                       optimizer=optimizer, optim_kw=optim_kw, lr=S.lr,
                       momentum=0.9, nesterov=False, weight_decay=5e-4,
                       norm_bias_decay=False, scheduler="cosine",
                       warmup_epochs=S.warmup_epochs, epochs=S.epochs,
                       batch_size=S.batch_size, augment="crop_flip", seed=seed, keep="last")


@register_experiment(EXPERIMENT)
def configs(P: Profile) -> list[tuple[str, TrainConfig]]:
    """SLBI and SGD runs, one of each per seed.

    Used by notebook 05 (report section 3).
    """
    return [(label, recipe(P, opt, s)) for s in sizes(P).seeds
            for label, opt in (("SLBI", "slbi"), ("SGD", "sgd"))]


def runs_on_disk(P: Profile) -> dict[str, list[dict]]:
    """The records of this profile's current configs, by label (seed order)."""
    P = get_profile(P)
    recs = load_results(EXPERIMENT, P)
    out: dict[str, list[dict]] = {}
    for label, cfg in configs(P):
        want = cfg.to_dict()
        found = [r for r in recs if r["config"] == want and r["status"] == "ok"]
        if found:
            out.setdefault(label, []).append(found[-1])
    return out


def panels(convs: list[str], P: Profile) -> dict[str, list[str]]:
    """Layer groups pruned together: single conv layers, then all of them."""
    out = {f"conv{i}": [convs[i - 1]] for i in sizes(P).panels if i <= len(convs)}
    out["all convs"] = list(convs)
    return out


def outside_support(entry: dict, layers: list[str]) -> float:
    """Fraction of the filters of ``layers`` that never entered Gamma's support."""
    n = sum(len(entry[layer]) for layer in layers)
    return sum(e < 0 for layer in layers for e in entry[layer]) / n


# ---------------------------------------------------------------- measurements


def _key(P: Profile, runs: dict[str, list[dict]]) -> dict:
    """What the stored measurements depend on: the runs and the measuring sizes."""
    S = sizes(P)
    return {"version": MEASURE_VERSION,
            "runs": {label: [r["run"] for r in recs] for label, recs in runs.items()},
            "settings": dict(fractions=list(S.fractions), panels=list(S.panels),
                             bn_batches=S.bn_batches, finetune_steps=S.finetune_steps,
                             finetune_fraction=S.finetune_fraction,
                             finetune_lr=S.finetune_lr, show_layer=S.show_layer)}


def measured(P: Profile) -> dict | None:
    """The stored measurements of the current runs (None when absent or stale).

    Used by notebook 05 (report section 3).
    """
    P = get_profile(P)
    path = P.results / MEASURE_FILE
    runs = runs_on_disk(P)
    if not path.is_file() or not {"SLBI", "SGD"} <= set(runs):
        return None
    data = json.loads(path.read_text())
    return data if data.get("key") == _key(P, runs) else None


def measure(P: Profile, split, *, force: bool = False, device=None, log=None) -> None:
    """Every post-training measurement of the study, stored in results/.

    Per seed: unpruned test accuracy of both networks; pruning curves of every
    method of :data:`METHODS` per panel and fraction, with BN re-estimation for
    the all-convs panel; the SLBI network cut to Gamma's support per layer and
    in total (raw, BN re-estimated, fine-tuned); every method at
    ``finetune_fraction`` in all conv layers fine-tuned; the filters drawn by
    :func:`plot_filters` (first seed). A no-op (no weights needed) when the
    stored file matches the current runs and sizes, or (with a message) when
    the runs are not all on disk; a run whose checkpoint is missing is
    trained again.

    Used by notebook 05 (report section 3).
    """
    P = get_profile(P)
    if measured(P) is not None and not force:
        return
    runs = runs_on_disk(P)
    if not {"SLBI", "SGD"} <= set(runs) or len(runs["SLBI"]) != len(runs["SGD"]):
        (log or print)(f"dessilbi: nothing measured; the SLBI and SGD runs of every seed of "
                       f"profile {P.name!r} are not all on disk (train configs(P) first)")
        return
    out = {"key": _key(P, runs), "seeds": []}
    for i, (rec_slbi, rec_sgd) in enumerate(zip(runs["SLBI"], runs["SGD"])):
        if log:
            log(f"dessilbi: measuring seed {rec_slbi['config']['seed']}")
        recs = {"SLBI": rec_slbi, "SGD": rec_sgd}
        models = {label: trained_model(TrainConfig.from_dict(rec["config"]), split,
                                       EXPERIMENT, P, label=label, device=device)
                  for label, rec in recs.items()}
        out["seeds"].append(_measure_seed(P, split, recs, models, filters=i == 0))
    write_json(out, P.results / MEASURE_FILE)


def _measure_seed(P: Profile, split, recs: dict, models: dict, filters: bool) -> dict:
    S = sizes(P)
    entry = slbi.entry_from_record(recs["SLBI"])
    dev = next(models["SLBI"].parameters()).device
    loaders = make_loaders(split, TrainConfig.from_dict(recs["SLBI"]["config"]), dev)
    base = {label: evaluate(m, loaders.test)["acc"] for label, m in models.items()}
    convs = list(slbi.conv_layers(models["SLBI"]))
    out = {"seed": recs["SLBI"]["config"]["seed"], "base": base,
           "rows": _curves(P, models, entry, loaders, base, convs),
           "support": _support(S, models["SLBI"], entry, loaders, base["SLBI"]),
           "finetuned": _finetuned(S, models, entry, loaders, base)}
    if filters:
        out["filters"] = _filter_data(models, convs[S.show_layer - 1], entry)
    return out


def _variant(model, pruned: dict, loaders, S: Sizes, how: str) -> float:
    """Test accuracy of a copy of ``model`` with ``pruned`` removed, then
    BN statistics re-estimated (``how="bn"``) or fine-tuned (``"finetune"``)."""
    model = copy.deepcopy(model)
    p = slbi.prune_indices(model, pruned)
    if how == "bn":
        slbi.recalibrate_bn(model, loaders.train, S.bn_batches)
    else:
        slbi.finetune(model, loaders.train, S.finetune_steps, p, lr=S.finetune_lr)
    return evaluate(model, loaders.test)["acc"]


def _curves(P, models, entry, loaders, base, convs) -> list[dict]:
    """Pruning curves: every method, panel and fraction (all-convs also BN re-estimated)."""
    S, rows = sizes(P), []
    for method, label, by in METHODS:
        model = models[label]
        for panel, layers in panels(convs, P).items():
            for f in S.fractions:
                row = dict(method=method, model=label, order=by, layer=panel, fraction=f)
                if f == 0:
                    row.update(test_acc=base[label], bn_acc=base[label])
                else:
                    with slbi.prune_filters(model, f, layers, by, entry) as p:
                        row["test_acc"] = evaluate(model, loaders.test)["acc"]
                    if panel == "all convs" and S.bn_batches:
                        row["bn_acc"] = _variant(model, p.pruned, loaders, S, "bn")
                row["kept"] = row["test_acc"] / base[label]
                rows.append(row)
    return rows


def _support(S: Sizes, model, entry, loaders, base: float) -> dict:
    """The SLBI network cut to Gamma's support: each layer alone, then all at once."""
    layers = []
    for layer in entry:
        with slbi.prune_indices(model, slbi.outside(entry, [layer])):
            acc = evaluate(model, loaders.test)["acc"]
        layers.append(dict(layer=layer, filters=len(entry[layer]),
                           in_support=sum(e >= 0 for e in entry[layer]),
                           test_acc=acc, kept=acc / base))
    cut = slbi.outside(entry)
    with slbi.prune_indices(model, cut):
        acc = evaluate(model, loaders.test)["acc"]
    total = dict(fraction_out=outside_support(entry, list(entry)), test_acc=acc,
                 kept=acc / base)
    if S.bn_batches:
        total["bn_acc"] = _variant(model, cut, loaders, S, "bn")
    if S.finetune_steps:
        total["finetune_acc"] = _variant(model, cut, loaders, S, "finetune")
    return {"layers": layers, "total": total}


def _finetuned(S: Sizes, models, entry, loaders, base) -> list[dict]:
    """Every method at ``finetune_fraction`` of every conv layer, fine-tuned briefly."""
    if not S.finetune_steps:
        return []
    rows = []
    for method, label, by in METHODS:
        model = models[label]
        with slbi.prune_filters(model, S.finetune_fraction, None, by, entry) as p:
            pruned = p.pruned
        acc = _variant(model, pruned, loaders, S, "finetune")
        rows.append(dict(method=method, model=label, fraction=S.finetune_fraction,
                         finetune_acc=acc, kept=acc / base[label]))
    return rows


def _filter_data(models: dict, layer: str, entry: dict) -> dict:
    """What :func:`plot_filters` draws: the layer's weights and each order."""
    out = {"layer": layer, "entry": entry[layer], "models": {}}
    for label, model in models.items():
        conv = slbi.conv_layers(model)[layer]
        bys = [by for _, lab, by in METHODS if lab == label]
        out["models"][label] = {
            "weight": [[round(float(v), 5) for v in f.flatten()]
                       for f in conv.weight.detach().float().cpu()],
            "shape": list(conv.weight.shape),
            "orders": {by: slbi.prune_order(model, layer, by, entry) for by in bys}}
    return out


def _rows(data: dict) -> list[dict]:
    """Pruning-curve rows of every seed, with the seed."""
    return [dict(r, seed=s["seed"]) for s in data["seeds"] for r in s["rows"]]


def curves_frame(data: dict):
    """Pruning curves averaged over seeds: one row per method, panel and fraction."""
    import pandas as pd
    df = pd.DataFrame(_rows(data))
    if "bn_acc" not in df:
        df["bn_acc"] = math.nan
    keys = ["method", "model", "order", "layer", "fraction"]
    return df.groupby(keys, sort=False)[["test_acc", "bn_acc", "kept"]].mean().reset_index()


# ---------------------------------------------------------------- figures
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


# ---------------------------------------------------------------- report


@register_table("slbi_runs")
def runs_table(P: Profile):
    """Accuracy, time and final sparsity of Gamma for SLBI and SGD (mean over seeds).

    Used by notebook 05 (report section 3).
    """
    import pandas as pd
    rows = []
    for label, recs in runs_on_disk(P).items():
        accs = [r["metrics"]["test_acc"] for r in recs]
        sup, size = _final(recs[0], "slbi_support"), _final(recs[0], "slbi_sizes")
        entry = _final(recs[0], "slbi_entry")
        conv = [k for k in sup if k in entry]
        lin = [k for k in sup if k not in entry]
        share = (lambda ks: 100 * sum(sup[k] for k in ks) / sum(size[k] for k in ks)
                 if ks else math.nan)
        rows.append({"run": label, "optimizer": recs[0]["config"]["optimizer"],
                     "seeds": len(recs),
                     "test acc (%)": 100 * statistics.mean(accs),
                     "± std": 100 * statistics.stdev(accs) if len(accs) > 1 else math.nan,
                     "best val acc (%)": 100 * statistics.mean(
                         r["metrics"]["best_val_acc"] for r in recs),
                     "train time (s)": statistics.mean(r["metrics"]["train_time"] for r in recs),
                     "conv filters in support (%)": share(conv),
                     "linear weights in support (%)": share(lin)})
    return pd.DataFrame(rows).round(1) if rows else None



@register_table("slbi_path")
def path_table(P: Profile):
    """Per conv layer of the SLBI run(s): filters, share in Gamma's support, entry
    epochs, and accuracy kept when only that layer is cut to the support (mean over seeds).

    Used by notebook 05 (report section 3)."""
    import pandas as pd
    recs = runs_on_disk(P).get("SLBI")
    if not recs:
        return None
    entries = [_final(r, "slbi_entry") for r in recs]
    data = measured(P)
    cut = [{r["layer"]: r for r in s["support"]["layers"]} for s in data["seeds"]] if data else []
    rows = []
    for i, layer in enumerate(entries[0]):
        inside = [e for ent in entries for e in ent[layer] if e >= 0]
        n = len(entries[0][layer])
        row = {"layer": f"conv{i + 1} ({layer})", "filters": n,
               "in support (%)": 100 * len(inside) / (n * len(entries)),
               "first entry (epoch)": min(inside) if inside else math.nan,
               "median entry (epoch)": statistics.median(inside) if inside else math.nan}
        if cut:
            row["cut to support: acc kept (%)"] = 100 * statistics.mean(
                c[layer]["kept"] for c in cut)
        rows.append(row)
    if data:
        tot = [s["support"]["total"] for s in data["seeds"]]
        rows.append({"layer": "all conv layers", "filters": sum(r["filters"] for r in rows),
                     "in support (%)": 100 * (1 - statistics.mean(t["fraction_out"] for t in tot)),
                     "cut to support: acc kept (%)": 100 * statistics.mean(t["kept"] for t in tot)})
    return pd.DataFrame(rows).round(1)


@register_table("slbi_pruning")
def pruning_table(P: Profile):
    """Accuracy kept (% of the network's own unpruned accuracy, mean over seeds)
    at a few pruning fractions, per panel and method.

    Used by notebook 05 (report section 3)."""
    data = measured(P)
    if data is None:
        return None
    df = curves_frame(data)
    fr = [f for f in sorted(set(df["fraction"])) if f > 0]
    wide = df[df["fraction"].isin(fr)].pivot_table(
        index=["layer", "method"], columns="fraction", values="kept", sort=False)
    wide = (100 * wide).rename(columns=lambda f: f"{100 * f:.0f}% pruned")
    wide.columns.name = None
    mean = 100 * df[df["fraction"] > 0].groupby(["layer", "method"], sort=False)["kept"].mean()
    wide["mean"] = mean
    return wide.reset_index().round(1)


@register_table("slbi_after")
def after_table(P: Profile):
    """Test accuracy (%) after pruning: as pruned, after BN re-estimation, after the
    short fine-tune (mean over seeds); the SLBI network cut to Gamma's support and
    every method at the fine-tuning fraction of every conv layer.

    Used by notebook 05 (report section 3)."""
    import pandas as pd
    data = measured(P)
    if data is None:
        return None
    S, df = sizes(P), curves_frame(data)
    mean = lambda xs: 100 * statistics.mean(xs) if xs else math.nan  # noqa: E731
    tot = [s["support"]["total"] for s in data["seeds"]]
    rows = [{"network": "SLBI cut to Gamma's support",
             "filters pruned (%)": mean([t["fraction_out"] for t in tot]),
             "unpruned": mean([s["base"]["SLBI"] for s in data["seeds"]]),
             "pruned": mean([t["test_acc"] for t in tot]),
             "+ BN re-estimated": mean([t["bn_acc"] for t in tot if "bn_acc" in t]),
             "+ fine-tuned": mean([t["finetune_acc"] for t in tot if "finetune_acc" in t])}]
    ft = [r for s in data["seeds"] for r in s["finetuned"]]
    for method, label, _ in METHODS:
        d = df[(df["layer"] == "all convs") & (df["method"] == method)
               & (df["fraction"].round(3) == round(S.finetune_fraction, 3))]
        rows.append({"network": method, "filters pruned (%)": 100 * S.finetune_fraction,
                     "unpruned": mean([s["base"][label] for s in data["seeds"]]),
                     "pruned": 100 * d["test_acc"].mean() if len(d) else math.nan,
                     "+ BN re-estimated": 100 * d["bn_acc"].mean() if len(d) else math.nan,
                     "+ fine-tuned": mean([r["finetune_acc"] for r in ft
                                           if r["method"] == method])})
    return pd.DataFrame(rows).round(1)


# ---------------------------------------------------------------- values

TABLE_NAMES = ("slbi_runs", "slbi_path", "slbi_pruning", "slbi_after")
VALUE_NAMES = ("slbi_model", "slbi_epochs", "slbi_batch", "slbi_warmup", "slbi_nu",
               "slbi_lambda", "slbi_entry_at", "slbi_z_floor", "slbi_test_acc",
               "sgd_test_acc", "slbi_support_pct", "slbi_support_layers",
               "slbi_support_acc", "slbi_support_kept", "slbi_support_bn_acc",
               "slbi_support_ft_acc", "slbi_prune_kept", "slbi_prune_best",
               "slbi_prune_best_all", "slbi_bn_gain", "slbi_ft_best", "slbi_seeds")


def _pct(x):
    return None if x is None or x != x else f"{100 * x:.1f}"


def _final(rec: dict, key: str) -> dict:
    return next((r[key] for r in reversed(rec["history"]) if key in r), {})


@register_value("slbi_model")
def _model(P: Profile):
    runs = runs_on_disk(P)
    if not runs:
        return None
    cfg = next(iter(runs.values()))[0]["config"]
    width = cfg["model_kw"].get("width", 1.0)
    name = cfg["model"].upper().replace("_BN", "-BN").replace("VGG16", "VGG-16")
    return name if width == 1 else f"{name} at width {width:g}"


def _config_value(key: str, optim: bool = False):
    """A report value: a recipe field of the runs on disk (optim_kw of SLBI's)."""
    def value(P: Profile):
        runs = runs_on_disk(P)
        if optim:
            recs = runs.get("SLBI")
            return f"{recs[0]['config']['optim_kw'][key]:.3g}" if recs else None
        return f"{next(iter(runs.values()))[0]['config'][key]:g}" if runs else None
    return value


register_value("slbi_epochs")(_config_value("epochs"))
register_value("slbi_batch")(_config_value("batch_size"))
register_value("slbi_warmup")(_config_value("warmup_epochs"))
register_value("slbi_nu")(_config_value("nu", optim=True))
register_value("slbi_lambda")(_config_value("lambda_conv", optim=True))
register_value("slbi_z_floor")(_config_value("z_lr_floor", optim=True))


@register_value("slbi_entry_at")
def _entry_at(P: Profile):
    return f"{sizes(P).entry_at:g}" if runs_on_disk(P).get("SLBI") else None


@register_value("slbi_seeds")
def _seeds(P: Profile):
    data = measured(P)
    return str(len(data["seeds"])) if data else None


def _test_acc(label):
    def value(P: Profile):
        recs = runs_on_disk(P).get(label)
        return _pct(statistics.mean(r["metrics"]["test_acc"] for r in recs)) if recs else None
    return value


register_value("slbi_test_acc")(_test_acc("SLBI"))
register_value("sgd_test_acc")(_test_acc("SGD"))


@register_value("slbi_support_pct")
def _support_pct(P: Profile):
    """Conv filters inside Gamma's support at the end of the SLBI runs (%, mean over seeds)."""
    recs = runs_on_disk(P).get("SLBI")
    entries = [e for e in (_final(r, "slbi_entry") for r in recs or []) if e]
    return _pct(statistics.mean(1 - outside_support(e, list(e)) for e in entries)) \
        if entries else None


@register_value("slbi_support_layers")
def _support_layers(P: Profile):
    """The range of the per-layer share in Gamma's support, and the empty layers."""
    df = path_table(P)
    if df is None:
        return None
    share = df[df["layer"] != "all conv layers"]["in support (%)"]
    empty = int((share == 0).sum())
    return (f"{share.min():.0f}% to {share.max():.0f}% per layer, "
            f"{'no layer' if not empty else f'{empty} layer(s)'} left empty")


def _support_total(key: str, rel: bool = False):
    def value(P: Profile):
        data = measured(P)
        xs = [s["support"]["total"].get(key) for s in data["seeds"]] if data else []
        xs = [x for x in xs if x is not None]
        return _pct(statistics.mean(xs)) if xs else None
    return value


register_value("slbi_support_acc")(_support_total("test_acc"))
register_value("slbi_support_kept")(_support_total("kept"))
register_value("slbi_support_bn_acc")(_support_total("bn_acc"))
register_value("slbi_support_ft_acc")(_support_total("finetune_acc"))


def _kept_by_method(P: Profile, panel: str | None = None) -> dict[str, float]:
    data = measured(P)
    if data is None:
        return {}
    df = curves_frame(data)
    df = df[df["fraction"] > 0]
    if panel:
        df = df[df["layer"] == panel]
    return df.groupby("method", sort=False)["kept"].mean().to_dict()


@register_value("slbi_prune_kept")
def _prune_kept(P: Profile):
    """Mean accuracy kept over every panel and fraction, per method."""
    kept = _kept_by_method(P)
    return "; ".join(f"{m} {100 * v:.1f}%" for m, v in kept.items()) or None


def _best(panel):
    def value(P: Profile):
        kept = _kept_by_method(P, panel)
        if not kept:
            return None
        best = max(kept, key=kept.get)
        rest = max(v for m, v in kept.items() if m != best)
        return f"{best} ({100 * kept[best]:.1f}% kept, next {100 * rest:.1f}%)"
    return value


register_value("slbi_prune_best")(_best(None))
register_value("slbi_prune_best_all")(_best("all convs"))


@register_value("slbi_bn_gain")
def _bn_gain(P: Profile):
    """Mean change (points) of all-convs accuracy from BN re-estimation."""
    data = measured(P)
    if data is None:
        return None
    df = curves_frame(data)
    d = df[(df["layer"] == "all convs") & (df["fraction"] > 0)].dropna(subset=["bn_acc"])
    if not len(d):
        return None
    gain = 100 * (d["bn_acc"] - d["test_acc"]).mean()
    return f"{gain:+.1f} points"


@register_value("slbi_ft_best")
def _ft_best(P: Profile):
    """The method with the highest accuracy after pruning and the short fine-tune."""
    data = measured(P)
    ft = [r for s in data["seeds"] for r in s["finetuned"]] if data else []
    if not ft:
        return None
    means = {m: statistics.mean(r["kept"] for r in ft if r["method"] == m)
             for m, _, _ in METHODS}
    best = max(means, key=means.get)
    return f"{best} ({100 * means[best]:.1f}% of its unpruned accuracy)"

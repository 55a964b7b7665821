"""DessiLBI study (report section 3): experiments, pruning curves, tables, values.

The same VGG-16-BN (reduced width on CPU) trains with SLBI (DessiLBI) and
with SGD, same recipe and seeds. The SLBI run records Gamma's support per
layer each epoch (the regularisation path) and the epoch each conv filter
entered it; its filters are then pruned in that order, against magnitude
(filter L2 norm) pruning of both networks. Notebook: 05_dessilbi.ipynb.
"""
from __future__ import annotations

import json
import math
import statistics

from cifar_lib import slbi
from cifar_lib.engine import TrainConfig, evaluate, make_loaders
from cifar_lib.experiments import (load_results, register_experiment, trained_model,
                                   write_json)
from cifar_lib.profiles import Profile, get_profile
from cifar_lib.report import register_table, register_value

EXPERIMENT = "dessilbi"
PRUNING_FILE = "dessilbi_pruning.json"   # under the profile's results/
# (label, model trained by, pruning order) of the curves in the pruning figure
METHODS = (("SLBI, path order", "SLBI", "path"),
           ("SLBI, magnitude", "SLBI", "magnitude"),
           ("SGD, magnitude", "SGD", "magnitude"))

# Sizes per profile. lambda is absolute: filter g enters the path once
# ||Z_g|| > lambda_conv, and Z grows by about lr/nu * ||W_g|| a step, so the
# thresholds grow with the run's length (sum of lr / nu over its steps).
_SIZES = {
    "smoke": dict(width=1 / 16, epochs=2, batch_size=64, lambda_conv=0.05,
                  lambda_linear=0.002, fractions=(0.0, 0.3, 0.5, 0.7, 0.9)),
    "cpu": dict(width=0.25, epochs=15, batch_size=128, lambda_conv=0.75,
                lambda_linear=0.02),
    # full: scaled from cpu (about 36x the sum of lr over the run, BN-decayed
    # filter norms), not tuned; check the path figure (all in / none in: retune)
    "full": dict(width=1.0, epochs=60, batch_size=128, lambda_conv=5.0,
                 lambda_linear=0.4),
}


def sizes(P: Profile) -> dict:
    """The study's sizes and hyper-parameters for profile ``P`` (or its name)."""
    P = get_profile(P)
    s = dict(model="vgg16_bn", lr=0.1, kappa=1.0, nu=20.0, seeds=P.seeds,
             fractions=tuple(round(0.1 * i, 1) for i in range(10)),
             panels=(1, 7, 13),   # conv layers pruned one at a time (1-based)
             show_layer=1)        # conv layer whose filters are drawn
    s.update(_SIZES.get(P.name, _SIZES["full"]))
    return s


def recipe(P: Profile, optimizer: str, seed: int = 0) -> TrainConfig:
    """VGG-16-BN, Nesterov momentum 0.9, wd 5e-4, cosine with 1 warm-up epoch, crop+flip."""
    S = sizes(P)
    optim_kw = {}
    if optimizer == "slbi":
        optim_kw = {k: S[k] for k in ("kappa", "nu", "lambda_conv", "lambda_linear")}
    return TrainConfig(model=S["model"], model_kw={"width": S["width"]},
                       optimizer=optimizer, optim_kw=optim_kw, lr=S["lr"],
                       momentum=0.9, nesterov=True, weight_decay=5e-4,
                       scheduler="cosine", warmup_epochs=min(1, S["epochs"] / 4),
                       epochs=S["epochs"], batch_size=S["batch_size"],
                       augment="crop_flip", seed=seed, keep="last")


@register_experiment(EXPERIMENT)
def configs(P: Profile) -> list[tuple[str, TrainConfig]]:
    """SLBI and SGD runs, one of each per seed."""
    return [(label, recipe(P, opt, s)) for s in sizes(P)["seeds"]
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


# ---------------------------------------------------------------- pruning


def panels(model, P: Profile) -> dict[str, list[str]]:
    """Layer groups pruned together: single conv layers, then all of them."""
    convs = list(slbi.conv_layers(model))
    out = {f"conv{i}": [convs[i - 1]] for i in sizes(P)["panels"] if i <= len(convs)}
    out["all convs"] = convs
    return out


def outside_support(entry: dict, layers: list[str]) -> float:
    """Fraction of the filters of ``layers`` that never entered Gamma's support."""
    n = sum(len(entry[layer]) for layer in layers)
    return sum(e < 0 for layer in layers for e in entry[layer]) / n


def load_models(runs: dict[str, dict], P: Profile, split, device=None) -> dict:
    """The trained networks of ``runs`` (label -> record), in eval mode;
    a run whose checkpoint is not on this machine is trained again."""
    return {label: trained_model(TrainConfig.from_dict(rec["config"]), split, EXPERIMENT, P,
                                 label=label, device=device)
            for label, rec in runs.items()}


def pruning_curves(runs: dict[str, dict], split, P: Profile, force: bool = False,
                   models: dict | None = None):
    """Test accuracy against the fraction of filters pruned, per method and panel.

    ``runs`` maps "SLBI" and "SGD" to their records (``models`` to their
    networks, loaded when not given). The result, with the accuracy of the
    SLBI network cut to Gamma's support, is cached in
    ``results/dessilbi_pruning.json`` for these runs; returns a DataFrame.
    """
    import pandas as pd
    path = P.results / PRUNING_FILE
    key = {label: rec["run"] for label, rec in runs.items()}
    S = sizes(P)
    if path.is_file() and not force:
        old = json.loads(path.read_text())
        if old.get("runs") == key and old.get("fractions") == list(S["fractions"]):
            return pd.DataFrame(old["rows"])
    entry = slbi.entry_from_record(runs["SLBI"])
    models = models or load_models(runs, P, split)
    device = next(models["SLBI"].parameters()).device
    cfg = TrainConfig.from_dict(runs["SLBI"]["config"])
    test = make_loaders(split, cfg, device).test
    rows, base = [], {}
    for method, label, by in METHODS:
        model = models[label]
        if label not in base:
            base[label] = evaluate(model, test)["acc"]
        for panel, layers in panels(model, P).items():
            for f in S["fractions"]:
                if f == 0:
                    acc = base[label]
                else:
                    with slbi.prune_filters(model, f, layers, by, entry):
                        acc = evaluate(model, test)["acc"]
                rows.append(dict(method=method, model=label, order=by, layer=panel,
                                 fraction=f, test_acc=acc))
    support = support_accuracy(models["SLBI"], entry, test)
    write_json({"runs": key, "fractions": list(S["fractions"]), "rows": rows,
                "support": support}, path)
    return pd.DataFrame(rows)


def support_accuracy(model, entry: dict, loader) -> dict:
    """Accuracy of the SLBI network with every filter outside Gamma's support pruned."""
    done = []
    for layer, ent in entry.items():
        done.append(slbi.prune_filters(model, outside_support(entry, [layer]),
                                       layer, "path", entry))
    acc = evaluate(model, loader)["acc"]
    for p in reversed(done):
        p.undo()
    return {"fraction": outside_support(entry, list(entry)), "test_acc": acc}


# ---------------------------------------------------------------- figures


def plot_curves(runs: dict[str, dict]):
    """Training loss and train/validation accuracy per epoch, one colour per optimizer."""
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
    """Share of each layer's filters (conv) or weights (linear) in Gamma's support per epoch."""
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


def plot_pruning(df, entry: dict | None = None, model=None, P: Profile | None = None):
    """Test accuracy against % of filters pruned, one panel per layer group."""
    import matplotlib.pyplot as plt
    groups = list(dict.fromkeys(df["layer"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.3 * len(groups), 3.4), sharey=True)
    axes = [axes] if len(groups) == 1 else list(axes)
    layer_sets = panels(model, P) if model is not None and P is not None else {}
    styles = {"path": "-", "magnitude": "--"}
    for ax, g in zip(axes, groups):
        for i, (method, _, by) in enumerate(METHODS):
            d = df[(df["layer"] == g) & (df["method"] == method)]
            ax.plot(100 * d["fraction"], 100 * d["test_acc"], ls=styles[by],
                    marker="o", ms=3, color=f"C{i}", label=method)
        if entry is not None and g in layer_sets:
            x = 100 * outside_support(entry, layer_sets[g])
            ax.axvline(x, color="grey", ls=":", label="outside Gamma's support")
        ax.set(xlabel="filters pruned (%)", title=g)
    axes[0].set_ylabel("test accuracy (%)")
    axes[-1].legend(fontsize="x-small", loc="lower left")
    fig.tight_layout()
    return fig


def _tiles(w):
    """Filters as images: RGB when they see 3 channels, else their mean over inputs."""
    w = w.detach().float().cpu()
    w = w if w.shape[1] == 3 else w.mean(1, keepdim=True)
    lo = w.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = w.flatten(1).max(1).values.view(-1, 1, 1, 1)
    return ((w - lo) / (hi - lo).clamp_min(1e-12)).permute(0, 2, 3, 1).numpy()


def plot_filters(models: dict, layer: str, fraction: float, entry: dict):
    """The filters of one conv layer, kept first, with the pruned ones crossed out."""
    import matplotlib.pyplot as plt
    rows = [("SLBI", "path"), ("SGD", "magnitude")]
    n = slbi.conv_layers(models["SLBI"])[layer].out_channels
    cols = min(n, 16)
    per = -(-n // cols)
    size = (0.7 * cols, 0.85 * len(rows) * per + 0.6)
    fig, axes = plt.subplots(len(rows) * per, cols, figsize=size, squeeze=False)
    k = int(round(fraction * n))
    for r, (label, by) in enumerate(rows):
        conv = slbi.conv_layers(models[label])[layer]
        order = slbi.prune_order(models[label], layer, by, entry)[::-1]  # kept first
        tiles = _tiles(conv.weight)
        for j, f in enumerate(order):
            ax = axes[r * per + j // cols, j % cols]
            ax.imshow(tiles[f].squeeze(), cmap="gray" if tiles.shape[-1] == 1 else None)
            pruned = j >= n - k
            if pruned:
                ax.plot([0, 1], [0, 1], transform=ax.transAxes, color="red", lw=1.5)
            tag = (f"e{entry[layer][f]}" if entry[layer][f] >= 0 else "out") if by == "path" else ""
            ax.set_title(tag, fontsize=6, color="red" if pruned else "black", pad=1)
        axes[r * per, 0].set_ylabel(f"{label}\n{by}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"Filters of {layer}, kept (left) to pruned (right, crossed) at "
                 f"{100 * fraction:.0f}% pruned; eN: entered the path at epoch N, "
                 "out: never", fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- report

TABLE_NAMES = ("slbi_runs", "slbi_path", "slbi_pruning")
VALUE_NAMES = ("slbi_model", "slbi_epochs", "slbi_batch", "slbi_warmup", "slbi_test_acc", "sgd_test_acc",
               "slbi_support_pct", "slbi_support_acc", "slbi_prune_mean_path",
               "slbi_prune_mean_norm", "sgd_prune_mean_norm")


def _pct(x):
    return None if x is None else f"{100 * x:.1f}"


def _final(rec: dict, key: str) -> dict:
    return next((r[key] for r in reversed(rec["history"]) if key in r), {})


@register_table("slbi_runs")
def runs_table(P: Profile):
    """Accuracy, time and final sparsity of Gamma for SLBI and SGD (mean over seeds)."""
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
    """Per conv layer of the SLBI run: filters, those in Gamma's support, entry epochs."""
    import pandas as pd
    recs = runs_on_disk(P).get("SLBI")
    if not recs:
        return None
    entry = _final(recs[0], "slbi_entry")
    rows = []
    for i, (layer, ent) in enumerate(entry.items()):
        inside = [e for e in ent if e >= 0]
        rows.append({"layer": f"conv{i + 1} ({layer})", "filters": len(ent),
                     "in support": len(inside),
                     "in support (%)": 100 * len(inside) / len(ent),
                     "first entry (epoch)": min(inside) if inside else math.nan,
                     "median entry (epoch)": statistics.median(inside) if inside else math.nan})
    return pd.DataFrame(rows).round(1)


def _pruning(P: Profile):
    path = get_profile(P).results / PRUNING_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    runs = {label: recs[0]["run"] for label, recs in runs_on_disk(P).items()}
    return data if data["runs"] == runs else None


@register_table("slbi_pruning")
def pruning_table(P: Profile):
    """Test accuracy (%) of the pruned networks at a few pruning fractions."""
    import pandas as pd
    data = _pruning(P)
    if data is None:
        return None
    df = pd.DataFrame(data["rows"])
    fr = [f for f in sorted(set(df["fraction"])) if f in (0.0, 0.3, 0.5, 0.7, 0.9)] \
        or sorted(set(df["fraction"]))
    wide = df[df["fraction"].isin(fr)].pivot_table(
        index=["layer", "method"], columns="fraction", values="test_acc", sort=False)
    wide = (100 * wide).rename(columns=lambda f: f"{100 * f:.0f}% pruned")
    wide.columns.name = None
    mean = 100 * df.groupby(["layer", "method"], sort=False)["test_acc"].mean()
    wide[f"mean over {100 * min(df['fraction']):.0f}-{100 * max(df['fraction']):.0f}%"] = mean
    return wide.reset_index().round(1)


@register_value("slbi_model")
def _model(P: Profile):
    runs = runs_on_disk(P)
    if not runs:
        return None
    cfg = next(iter(runs.values()))[0]["config"]
    width = cfg["model_kw"].get("width", 1.0)
    name = cfg["model"].upper().replace("_BN", "-BN").replace("VGG16", "VGG-16")
    return name if width == 1 else f"{name} at width {width:g}"


def _config_value(key: str):
    """A report value: a recipe field of the runs on disk (shared by SLBI and SGD)."""
    def value(P: Profile):
        runs = runs_on_disk(P)
        return f"{next(iter(runs.values()))[0]['config'][key]:g}" if runs else None
    return value


register_value("slbi_epochs")(_config_value("epochs"))
register_value("slbi_batch")(_config_value("batch_size"))
register_value("slbi_warmup")(_config_value("warmup_epochs"))


def _test_acc(label):
    def value(P: Profile):
        recs = runs_on_disk(P).get(label)
        return _pct(statistics.mean(r["metrics"]["test_acc"] for r in recs)) if recs else None
    return value


register_value("slbi_test_acc")(_test_acc("SLBI"))
register_value("sgd_test_acc")(_test_acc("SGD"))


@register_value("slbi_support_pct")
def _support_pct(P: Profile):
    """Conv filters inside Gamma's support at the end of the SLBI run (%)."""
    recs = runs_on_disk(P).get("SLBI")
    if not recs:
        return None
    entry = _final(recs[0], "slbi_entry")
    return _pct(1 - outside_support(entry, list(entry))) if entry else None


@register_value("slbi_support_acc")
def _support_acc(P: Profile):
    """Test accuracy of the SLBI network cut to Gamma's support (%)."""
    data = _pruning(P)
    return _pct(data["support"]["test_acc"]) if data else None


def _prune_mean(method):
    """Test accuracy of one pruning method averaged over every panel and fraction (%)."""
    def value(P: Profile):
        data = _pruning(P)
        accs = [r["test_acc"] for r in data["rows"] if r["method"] == method] if data else []
        return _pct(statistics.mean(accs)) if accs else None
    return value


register_value("slbi_prune_mean_path")(_prune_mean("SLBI, path order"))
register_value("slbi_prune_mean_norm")(_prune_mean("SLBI, magnitude"))
register_value("sgd_prune_mean_norm")(_prune_mean("SGD, magnitude"))

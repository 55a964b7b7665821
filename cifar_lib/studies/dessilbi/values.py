"""Section 3's report tables (``@register_table``) and :func:`values`, the
``value:`` blocks it fills, all read from the runs' records and the stored
measurements."""
from __future__ import annotations

import math
import statistics

from cifar_lib.profiles import Profile
from cifar_lib.registry import register_figure, register_table, register_values
from cifar_lib.studies.dessilbi import plots
from cifar_lib.studies.dessilbi.measures import curves_frame, measured, outside_support
from cifar_lib.studies.dessilbi.runs import METHODS, by_label, finished, first_seed, sizes


def _final(rec: dict, key: str) -> dict:
    """The last value of ``key`` in a run's per-epoch history ({} when never recorded)."""
    return next((r[key] for r in reversed(rec["history"]) if key in r), {})


@register_table("slbi_runs")
def runs_table(P: Profile):
    """Accuracy, time and final sparsity of Gamma for SLBI and SGD (mean over seeds).

    Used by notebook 05 (report section 3).
    """
    import pandas as pd
    rows = []
    for label, recs in by_label(finished(P)).items():
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
    recs = by_label(finished(P)).get("SLBI")
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


@register_values
def values(P: Profile) -> dict:
    """Every ``value:`` block of report section 3, by name: the recipe of the
    runs on disk, their accuracy and Gamma's support, and the pruning results
    of the stored measurements (None where those are not on disk).

    Used by notebook 05 (report section 3).
    """
    runs, data = by_label(finished(P)), measured(P)
    kept = _kept_by_method(data)
    return {
        "slbi_model": _model(runs),
        "slbi_epochs": _config(runs, "epochs"),
        "slbi_batch": _config(runs, "batch_size"),
        "slbi_warmup": _config(runs, "warmup_epochs"),
        "slbi_nu": _optim(runs, "nu"),
        "slbi_lambda": _optim(runs, "lambda_conv"),
        "slbi_entry_at": f"{sizes(P).entry_at:g}" if runs.get("SLBI") else None,
        "slbi_z_floor": _optim(runs, "z_lr_floor"),
        "slbi_test_acc": _test_acc(runs.get("SLBI")),
        "sgd_test_acc": _test_acc(runs.get("SGD")),
        "slbi_support_pct": _support_pct(runs.get("SLBI")),
        "slbi_support_layers": _support_layers(path_table(P)),
        "slbi_support_acc": _support_total(data, "test_acc"),
        "slbi_support_kept": _support_total(data, "kept"),
        "slbi_support_bn_acc": _support_total(data, "bn_acc"),
        "slbi_support_ft_acc": _support_total(data, "finetune_acc"),
        "slbi_prune_kept": "; ".join(f"{m} {100 * v:.1f}%" for m, v in kept.items()) or None,
        "slbi_prune_best": _best(kept),
        "slbi_prune_best_all": _best(_kept_by_method(data, "all convs")),
        "slbi_bn_gain": _bn_gain(data),
        "slbi_ft_best": _ft_best(data),
        "slbi_seeds": str(len(data["seeds"])) if data else None,
    }


def _pct(x):
    return None if x is None or x != x else f"{100 * x:.1f}"


def _model(runs: dict[str, list[dict]]) -> str | None:
    """The trained network, e.g. ``VGG-16-BN at width 0.25``."""
    if not runs:
        return None
    cfg = next(iter(runs.values()))[0]["config"]
    width = cfg["model_kw"].get("width", 1.0)
    name = cfg["model"].upper().replace("_BN", "-BN").replace("VGG16", "VGG-16")
    return name if width == 1 else f"{name} at width {width:g}"


def _config(runs: dict[str, list[dict]], key: str) -> str | None:
    """A recipe field of the runs on disk."""
    return f"{next(iter(runs.values()))[0]['config'][key]:g}" if runs else None


def _optim(runs: dict[str, list[dict]], key: str) -> str | None:
    """An SLBI option (``optim_kw``) of the SLBI runs on disk."""
    recs = runs.get("SLBI")
    return f"{recs[0]['config']['optim_kw'][key]:.3g}" if recs else None


def _test_acc(recs: list[dict] | None) -> str | None:
    return _pct(statistics.mean(r["metrics"]["test_acc"] for r in recs)) if recs else None


def _support_pct(recs: list[dict] | None) -> str | None:
    """Conv filters inside Gamma's support at the end of the SLBI runs (%, mean over seeds)."""
    entries = [e for e in (_final(r, "slbi_entry") for r in recs or []) if e]
    return _pct(statistics.mean(1 - outside_support(e, list(e)) for e in entries)) \
        if entries else None


def _support_layers(df) -> str | None:
    """The range of the per-layer share in Gamma's support, and the empty layers."""
    if df is None:
        return None
    share = df[df["layer"] != "all conv layers"]["in support (%)"]
    empty = int((share == 0).sum())
    return (f"{share.min():.0f}% to {share.max():.0f}% per layer, "
            f"{'no layer' if not empty else f'{empty} layer(s)'} left empty")


def _support_total(data: dict | None, key: str) -> str | None:
    """A measurement of the SLBI network cut to Gamma's support (mean over seeds)."""
    xs = [s["support"]["total"].get(key) for s in data["seeds"]] if data else []
    xs = [x for x in xs if x is not None]
    return _pct(statistics.mean(xs)) if xs else None


def _kept_by_method(data: dict | None, panel: str | None = None) -> dict[str, float]:
    """Mean accuracy kept over every fraction (and panel, or only ``panel``), per method."""
    if data is None:
        return {}
    df = curves_frame(data)
    df = df[df["fraction"] > 0]
    if panel:
        df = df[df["layer"] == panel]
    return df.groupby("method", sort=False)["kept"].mean().to_dict()


def _best(kept: dict[str, float]) -> str | None:
    """The method that keeps the most accuracy, and the runner-up's share."""
    if not kept:
        return None
    best = max(kept, key=kept.get)
    rest = max(v for m, v in kept.items() if m != best)
    return f"{best} ({100 * kept[best]:.1f}% kept, next {100 * rest:.1f}%)"


def _bn_gain(data: dict | None) -> str | None:
    """Mean change (points) of all-convs accuracy from BN re-estimation."""
    if data is None:
        return None
    df = curves_frame(data)
    d = df[(df["layer"] == "all convs") & (df["fraction"] > 0)].dropna(subset=["bn_acc"])
    if not len(d):
        return None
    gain = 100 * (d["bn_acc"] - d["test_acc"]).mean()
    return f"{gain:+.1f} points"


def _ft_best(data: dict | None) -> str | None:
    """The method with the highest accuracy after pruning and the short fine-tune."""
    ft = [r for s in data["seeds"] for r in s["finetuned"]] if data else []
    if not ft:
        return None
    means = {m: statistics.mean(r["kept"] for r in ft if r["method"] == m)
             for m, _, _ in METHODS}
    best = max(means, key=means.get)
    return f"{best} ({100 * means[best]:.1f}% of its unpruned accuracy)"


# ---------------------------------------------------------------- figures


@register_figure("slbi_curves.png")
def fig_curves(P: Profile):
    recs = first_seed(finished(P))
    return plots.plot_curves(recs) if recs else None


@register_figure("slbi_path.png")
def fig_path(P: Profile):
    rec = first_seed(finished(P)).get("SLBI")
    return None if rec is None else plots.plot_path(rec)


@register_figure("slbi_pruning.png")
def fig_pruning(P: Profile):
    data = measured(P)
    return None if data is None else plots.plot_pruning(data, P)


@register_figure("slbi_filters.png")
def fig_filters(P: Profile):
    data = measured(P)
    return None if data is None else plots.plot_filters(data, 0.5)

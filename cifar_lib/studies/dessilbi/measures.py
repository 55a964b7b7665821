"""Section 3's measurements after training: pruning, Gamma's support, stored.

:func:`measure` prunes both networks' filters (SLBI's in path order; both by
BatchNorm |scale| and by filter norm), cuts the SLBI network to Gamma's
support layer by layer, and tries BN-statistics re-estimation and a short
fine-tune after pruning; it stores everything the tables and figures need
in the store, as a measurement of the ``dessilbi`` experiment keyed by its
runs, version and settings (:func:`measured` reads it back), so the
notebook renders without the weights.
"""
from __future__ import annotations

import copy
import math

from cifar_lib import slbi, store
from cifar_lib.engine import TrainConfig, evaluate, make_loaders
from cifar_lib.experiments import trained_model
from cifar_lib.profiles import Profile
from cifar_lib.studies.dessilbi.runs import (DESSILBI, EXPERIMENT, MEASURE_VERSION, METHODS,
                                             Sizes, by_label, finished, sizes)


def panels(convs: list[str], P: Profile) -> dict[str, list[str]]:
    """Layer groups pruned together: single conv layers, then all of them."""
    out = {f"conv{i}": [convs[i - 1]] for i in sizes(P).panels if i <= len(convs)}
    out["all convs"] = list(convs)
    return out


def outside_support(entry: dict, layers: list[str]) -> float:
    """Fraction of the filters of ``layers`` that never entered Gamma's support."""
    n = sum(len(entry[layer]) for layer in layers)
    return sum(e < 0 for layer in layers for e in entry[layer]) / n


def measure_key(P: Profile, runs: dict[str, list[dict]]) -> dict:
    """What the stored measurements depend on: the runs and the measuring sizes."""
    S = sizes(P)
    return store.measurement_key(
        "pruning", MEASURE_VERSION,
        {label: [r["run"] for r in recs] for label, recs in runs.items()},
        dict(fractions=list(S.fractions), panels=list(S.panels),
             bn_batches=S.bn_batches, finetune_steps=S.finetune_steps,
             finetune_fraction=S.finetune_fraction,
             finetune_lr=S.finetune_lr, show_layer=S.show_layer))


def measured(P: Profile) -> dict | None:
    """The stored measurements of the current runs (None when absent).

    Used by notebook 05 (report section 3).
    """
    runs = by_label(finished(P))
    if not {"SLBI", "SGD"} <= set(runs):
        return None
    return store.load_measurement(P.results, DESSILBI.name, measure_key(P, runs))


@DESSILBI.measurement("DessiLBI pruning (notebook 05)")
def measure(P: Profile, split, *, force: bool = False, device=None, log=None) -> None:
    """Every post-training measurement of the study, stored in results/.

    Per seed: unpruned test accuracy of both networks; pruning curves of every
    method of :data:`METHODS` per panel and fraction, with BN re-estimation for
    the all-convs panel; the SLBI network cut to Gamma's support per layer and
    in total (raw, BN re-estimated, fine-tuned); every method at
    ``finetune_fraction`` in all conv layers fine-tuned; the filters drawn by
    ``plots.plot_filters`` (first seed). A no-op (no weights needed) when the
    stored file matches the current runs and sizes, or (with a message) when
    the runs are not all on disk; a run whose checkpoint is missing is
    trained again.

    Used by notebook 05 (report section 3).
    """
    if measured(P) is not None and not force:
        return
    runs = by_label(finished(P))
    if not {"SLBI", "SGD"} <= set(runs) or len(runs["SLBI"]) != len(runs["SGD"]):
        (log or print)(f"dessilbi: nothing measured; the SLBI and SGD runs of every seed of "
                       f"profile {P.name!r} are not all on disk (train them first: "
                       "cl.run_experiment(study.DESSILBI, P))")
        return
    out = {"seeds": []}
    for i, (rec_slbi, rec_sgd) in enumerate(zip(runs["SLBI"], runs["SGD"])):
        if log:
            log(f"dessilbi: measuring seed {rec_slbi['config']['seed']}")
        recs = {"SLBI": rec_slbi, "SGD": rec_sgd}
        models = {label: trained_model(TrainConfig.from_dict(rec["config"]), split,
                                       EXPERIMENT, P, label=label, device=device)
                  for label, rec in recs.items()}
        out["seeds"].append(_measure_seed(P, split, recs, models, filters=i == 0))
    store.save_measurement(P.results, DESSILBI.name, measure_key(P, runs), out)


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
    """What ``plots.plot_filters`` draws: the layer's weights and each order."""
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

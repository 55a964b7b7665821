"""Section 3's measurements after training: pruning, Gamma's support, stored.

:func:`measure` prunes both networks' filters (SLBI's in path order; both by
BatchNorm |scale| and by filter norm), cuts the SLBI network to Gamma's
support layer by layer, and tries BN-statistics re-estimation and a short
fine-tune after pruning; it stores everything the tables and figures need
in the store, as a measurement of the ``dessilbi`` experiment keyed by its
runs, version and settings (:func:`measured` reads it back), so the
notebook renders without the weights. :func:`measure_sweep` does the same
for the lambda sweep: each SLBI run cut to Gamma's support against the same
per-layer number of filters pruned by |BN scale| and by filter norm.

Accuracy *kept* is measured above chance, ``(acc - chance) / (acc0 - chance)``
(:func:`kept`), so that two networks of different unpruned accuracy share
the same floor (0 at chance); the stored accuracies are absolute.
"""
from __future__ import annotations

import copy
import math

from cifar_lib import slbi, store
from cifar_lib.engine import TrainConfig, evaluate, make_loaders
from cifar_lib.experiments import trained_model
from cifar_lib.profiles import Profile
from cifar_lib.studies.dessilbi.runs import (DESSILBI, EXPERIMENT, MEASURE_VERSION, METHODS,
                                             SWEEP, SWEEP_VERSION, Sizes, by_label, finished,
                                             sizes, sweep_finished)

CHANCE = 0.1    # CIFAR-10: ten balanced classes
# (key, how the filters of each layer are chosen) in the sweep's comparison
BUDGET_METHODS = (("support", "outside Gamma's support"), ("bn", "|BN scale|"),
                  ("magnitude", "filter norm"))


def kept(acc: float, base: float, chance: float = CHANCE) -> float:
    """Share of the above-chance accuracy kept: ``(acc - chance) / (base - chance)``
    (0 at chance, 1 unpruned; nan when the unpruned net is at chance)."""
    return (acc - chance) / (base - chance) if base > chance else math.nan


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
           "support": _support(S, models["SLBI"], entry, loaders),
           "finetuned": _finetuned(S, models, entry, loaders)}
    if filters:
        out["filters"] = _filter_data(models, convs[S.show_layer - 1], entry)
    return out


def _variant(model, pruned: dict, loaders, S: Sizes, how: str) -> float:
    """Test accuracy of a copy of ``model`` with ``pruned`` removed, then
    BN statistics re-estimated (``how="bn"``) or fine-tuned (``"finetune"``)."""
    model = copy.deepcopy(model)
    p = slbi.prune_indices(model, pruned)
    loaders.train.set_epoch(0)   # the same batches for every network and method
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
                rows.append(row)
    return rows


def _support(S: Sizes, model, entry, loaders) -> dict:
    """The SLBI network cut to Gamma's support: each layer alone, then all at once."""
    layers = []
    for layer in entry:
        with slbi.prune_indices(model, slbi.outside(entry, [layer])):
            acc = evaluate(model, loaders.test)["acc"]
        layers.append(dict(layer=layer, filters=len(entry[layer]),
                           in_support=sum(e >= 0 for e in entry[layer]), test_acc=acc))
    cut = slbi.outside(entry)
    with slbi.prune_indices(model, cut):
        acc = evaluate(model, loaders.test)["acc"]
    total = dict(fraction_out=outside_support(entry, list(entry)), test_acc=acc)
    if S.bn_batches:
        total["bn_acc"] = _variant(model, cut, loaders, S, "bn")
    if S.finetune_steps:
        total["finetune_acc"] = _variant(model, cut, loaders, S, "finetune")
    return {"layers": layers, "total": total}


def _finetuned(S: Sizes, models, entry, loaders) -> list[dict]:
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
                         finetune_acc=acc))
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
    """Pruning-curve rows of every seed, with the seed, the unpruned accuracy
    (``base``) and the accuracy kept above chance (:func:`kept`; ``bn_kept``
    after BN re-estimation)."""
    out = []
    for s in data["seeds"]:
        for r in s["rows"]:
            base = s["base"][r["model"]]
            bn = r.get("bn_acc")
            out.append(dict(r, seed=s["seed"], base=base, kept=kept(r["test_acc"], base),
                            bn_kept=math.nan if bn is None else kept(bn, base)))
    return out


def curves_frame(data: dict):
    """Pruning curves averaged over seeds: one row per method, panel and
    fraction, with absolute accuracies, the accuracy kept above chance and
    ``seed_sd`` (its standard deviation over seeds, nan with one seed)."""
    import pandas as pd
    df = pd.DataFrame(_rows(data))
    if "bn_acc" not in df:
        df["bn_acc"] = math.nan
    keys = ["method", "model", "order", "layer", "fraction"]
    g = df.groupby(keys, sort=False)
    out = g[["test_acc", "bn_acc", "base", "kept", "bn_kept"]].mean()
    out["seed_sd"] = g["kept"].std()
    return out.reset_index()


# ---------------------------------------------------------------- the lambda sweep


def sweep_key(P: Profile, recs: list[dict]) -> dict:
    """What the stored sweep depends on: its runs and the measuring sizes."""
    S = sizes(P)
    return store.measurement_key(
        "sweep", SWEEP_VERSION, [r["run"] for r in recs],
        dict(bn_batches=S.bn_batches, finetune_steps=S.finetune_steps,
             finetune_lr=S.finetune_lr))


def sweep_measured(P: Profile) -> dict | None:
    """The stored sweep measurements of the current sweep runs (None when absent).

    Used by notebook 05 (report section 3).
    """
    recs = sweep_finished(P)
    if len(recs) < _sweep_size(P):
        return None
    return store.load_measurement(P.results, SWEEP.name, sweep_key(P, recs))


@SWEEP.measurement("DessiLBI lambda sweep (notebook 05)")
def measure_sweep(P: Profile, split, *, force: bool = False, device=None, log=None) -> None:
    """Per run of the sweep: test accuracy, the share of conv filters outside
    Gamma's support, and the network cut to the support against the same
    number of filters per layer pruned by |BN scale| and by filter norm,
    each as pruned, BN re-estimated and fine-tuned; stored in results/.
    A no-op when stored (or, with a message, when runs are missing).

    Used by notebook 05 (report section 3).
    """
    if sweep_measured(P) is not None and not force:
        return
    recs = sweep_finished(P)
    if len(recs) < _sweep_size(P):
        (log or print)(f"dessilbi: sweep not measured; its runs of profile {P.name!r} are "
                       "not all on disk (cl.run_experiment(study.SWEEP, P) trains them)")
        return
    S, out = sizes(P), {"runs": []}
    for rec in recs:
        if log:
            log(f"dessilbi: measuring the sweep run {rec['label']}, seed "
                f"{rec['config']['seed']}")
        model = trained_model(TrainConfig.from_dict(rec["config"]), split, rec["experiment"],
                              P, label=rec["label"], device=device)
        out["runs"].append(_budget(S, split, rec, model))
    store.save_measurement(P.results, SWEEP.name, sweep_key(P, recs), out)


def _sweep_size(P: Profile) -> int:
    """Runs of the sweep, the profile's own SLBI runs among them."""
    S = sizes(P)
    return len(S.sweep) * len(S.seeds)


def budget_prune(model, entry: dict, by: str) -> dict[str, list[int]]:
    """Per conv layer, as many filters as lie outside Gamma's support, chosen
    by ``by``: ``"support"`` (those outside), ``"bn"`` or ``"magnitude"``
    (the first of :func:`slbi.prune_order`)."""
    out = slbi.outside(entry)
    if by == "support":
        return out
    return {layer: slbi.prune_order(model, layer, by)[:len(idx)] for layer, idx in out.items()}


def _budget(S: Sizes, split, rec: dict, model) -> dict:
    """One sweep run: Gamma's support against |BN scale| and filter norm at its budget."""
    entry = slbi.entry_from_record(rec)
    dev = next(model.parameters()).device
    loaders = make_loaders(split, TrainConfig.from_dict(rec["config"]), dev)
    row = {"label": rec["label"], "run": rec["run"], "seed": rec["config"]["seed"],
           "entry_at": rec["entry_at"], "lambda": rec["config"]["optim_kw"]["lambda_conv"],
           "base": evaluate(model, loaders.test)["acc"],
           "fraction_out": outside_support(entry, list(entry)), "methods": {}}
    for by, _ in BUDGET_METHODS:
        pruned = budget_prune(model, entry, by)
        with slbi.prune_indices(model, pruned):
            got = {"test_acc": evaluate(model, loaders.test)["acc"]}
        if S.bn_batches:
            got["bn_acc"] = _variant(model, pruned, loaders, S, "bn")
        if S.finetune_steps:
            got["finetune_acc"] = _variant(model, pruned, loaders, S, "finetune")
        row["methods"][by] = got
    return row


def sweep_frame(sweep: dict):
    """The sweep averaged over seeds: one row per entry_at and way of choosing
    the pruned filters (``by``), with lambda, the share of filters outside
    Gamma's support, the unpruned and pruned accuracies (absolute) and
    ``seeds``; ``base_sd`` and ``ft_sd``: the unpruned and the fine-tuned
    accuracy's standard deviation over seeds (nan with one seed)."""
    import pandas as pd
    rows = [dict(entry_at=r["entry_at"], **{"lambda": r["lambda"]}, seed=r["seed"],
                 fraction_out=r["fraction_out"], base=r["base"], by=by,
                 test_acc=m["test_acc"], bn_acc=m.get("bn_acc", math.nan),
                 finetune_acc=m.get("finetune_acc", math.nan))
            for r in sweep["runs"] for by, m in r["methods"].items()]
    df = pd.DataFrame(rows)
    g = df.groupby(["entry_at", "by"], sort=False)
    out = g[["lambda", "fraction_out", "base", "test_acc", "bn_acc", "finetune_acc"]].mean()
    out["seeds"] = g["seed"].nunique()
    out["base_sd"] = g["base"].std()
    out["ft_sd"] = g["finetune_acc"].std()
    return out.reset_index().sort_values("entry_at", kind="stable").reset_index(drop=True)


def sweep_from_records(recs: list[dict]) -> dict:
    """What the sweep's runs alone tell (no weights, nothing pruned yet): per
    run, lambda, unpruned test accuracy and the share of filters outside
    Gamma's support, in the shape of the stored sweep."""
    nan = math.nan
    return {"runs": [{"label": r["label"], "run": r["run"], "seed": r["config"]["seed"],
                      "entry_at": r["entry_at"],
                      "lambda": r["config"]["optim_kw"]["lambda_conv"],
                      "base": r["metrics"]["test_acc"],
                      "fraction_out": outside_support(e, list(e)),
                      "methods": {"support": dict(test_acc=nan, bn_acc=nan,
                                                  finetune_acc=nan)}}
                     for r in recs for e in [slbi.entry_from_record(r)]]}

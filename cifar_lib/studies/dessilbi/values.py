"""Section 3's report tables (``@register_table``), figures and :func:`values`,
the ``value:`` blocks it fills, all read from the runs' records, the stored
measurements and (for the fixed settings) the profile's sizes.

Every sentence that states a direction (which row is best, whether a lead
is more than noise, whether Gamma's support beats another ranking) computes
it from the numbers it cites. Accuracy *kept* is above chance
(:func:`measures.kept`). Noise: two standard errors of the difference of two
accuracies measured on the same number of test images (:func:`test_noise`),
or the spread over seeds when there are several and it is larger.
"""
from __future__ import annotations

import math
import statistics

from cifar_lib.optim import optimizer_name
from cifar_lib.profiles import Profile
from cifar_lib.registry import register_figure, register_table, register_values
from cifar_lib.studies.dessilbi import plots
from cifar_lib.studies.dessilbi.measures import (BUDGET_METHODS, CHANCE, curves_frame, kept,
                                                 measured, outside_support, sweep_frame,
                                                 sweep_from_records, sweep_measured)
from cifar_lib.studies.dessilbi.runs import (METHODS, by_label, finished, first_seed, recipe,
                                             sizes, sweep_finished)

BY_NAME = dict(BUDGET_METHODS)          # "support" -> "outside Gamma's support", ...
# The sweep table's names of the three budget methods, as the text says them.
SWEEP_HEADS = {"support": "cut to Γ's support", "bn": "by |BN scale|", "magnitude": "by filter norm"}
SHORT = {"support": "Γ's support", "bn": "|BN scale|", "magnitude": "filter norm"}


def _final(rec: dict, key: str) -> dict:
    """The last value of ``key`` in a run's per-epoch history ({} when never recorded)."""
    return next((r[key] for r in reversed(rec["history"]) if key in r), {})


def _mean(xs) -> float:
    xs = [x for x in xs if x is not None and x == x]
    return statistics.mean(xs) if xs else math.nan


# ---------------------------------------------------------------- noise and words


def test_noise(p1: float, p2: float, n: int) -> float:
    """Two standard errors (accuracy units) of the difference of two accuracies
    ``p1``, ``p2``, each measured on ``n`` test images."""
    return 2 * math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / max(n, 1))


def gap(a: float, b: float) -> float:
    """``a - b`` as the sentence shows them (each to one decimal), so that a
    stated lead is the difference of the stated numbers."""
    return float(f"{a:.1f}") - float(f"{b:.1f}")


def lead_clause(lead: float, noise: float, seeds: int, unit: str = "points") -> str:
    """Whether ``lead`` exceeds ``noise`` (both in ``unit``), said plainly."""
    out = (f"its lead of {lead:.1f} {unit} is {'more' if lead > noise else 'no more'} than "
           f"the {noise:.1f} {unit} {noise_source(seeds)}")
    return out + (" (one seed: how much another seed would move it is not measured)"
                  if seeds < 2 else "")


def plural(n: float, noun: str, many: str | None = None) -> str:
    """``1 seed``, ``2 seeds``, ``0.5 warm-up epochs``: ``n`` and its noun."""
    return f"{n:g} {noun if n == 1 else many or noun + 's'}"


def noise_source(seeds: int) -> str:
    """What a noise band in a sentence comes from (one seed or several)."""
    return ("sampling the test set alone can give" if seeds < 2 else
            "the spread over seeds or sampling the test set can give")


def series_words(xs: dict, noise: float, seeds: int) -> str:
    """How a series of accuracies (%, by entry share, in order) moves, said
    against ``noise`` (points): flat within noise when its whole spread is
    within it, else from its first value to its last (or back to within
    noise of it), naming an extreme that lies between the ends."""
    es = list(xs)
    lo, hi = min(es, key=xs.get), max(es, key=xs.get)
    spread = gap(xs[hi], xs[lo])
    if spread <= noise:
        return (f"stays between {xs[lo]:.1f}% and {xs[hi]:.1f}% (a spread of "
                f"{spread:.1f} points, no more than the {noise:.1f} points "
                f"{noise_source(seeds)}: flat within noise)")
    first, last = xs[es[0]], xs[es[-1]]
    ends = {f"{first:.1f}", f"{last:.1f}"}
    extras = [f"{word} {xs[e]:.1f}% at entry {e:g}" for word, e in (("lowest", lo),
                                                                   ("highest", hi))
              if f"{xs[e]:.1f}" not in ends]
    if abs(gap(first, last)) <= noise:
        return (f"ends within noise of where it starts "
                f"({'; '.join([f'{first:.1f}% and {last:.1f}%'] + extras)})")
    return moves(first, last) + (f" ({', '.join(extras)})" if extras else "")


def versus(diff: float, noise: float) -> str:
    """``beats``, ``loses to`` or ``ties with``: ``diff`` against +-``noise``."""
    return "beats" if diff > noise else "loses to" if diff < -noise else "ties with"


def moves(a: float, b: float, unit: str = "%") -> str:
    """``rises from a to b``, ``falls from a to b`` or ``stays at a``."""
    if f"{a:.1f}" == f"{b:.1f}":
        return f"stays at {a:.1f}{unit}"
    return f"{'rises' if b > a else 'falls'} from {a:.1f}{unit} to {b:.1f}{unit}"


def at_chance(acc: float, n: int) -> bool:
    """Whether ``acc`` is within sampling noise of chance on ``n`` test images."""
    return acc - CHANCE <= 2 * math.sqrt(CHANCE * (1 - CHANCE) / max(n, 1))


def _n_test(P: Profile) -> int:
    """Test images the runs were evaluated on."""
    recs = finished(P)
    if recs and recs[0].get("data", {}).get("test"):
        return int(recs[0]["data"]["test"])
    return P.test_size or 10000


def _seeds(P: Profile) -> int:
    return len(sizes(P).seeds)


# ---------------------------------------------------------------- tables


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
        rows.append({"run": label, "optimizer": optimizer_name(recs[0]["config"]["optimizer"]),
                     "seeds": len(recs),
                     "test acc (%)": 100 * statistics.mean(accs),
                     "± std": 100 * statistics.stdev(accs) if len(accs) > 1 else math.nan,
                     "best val acc (%)": 100 * statistics.mean(
                         r["metrics"]["best_val_acc"] for r in recs),
                     "train time (s)": statistics.mean(r["metrics"]["train_time"] for r in recs),
                     "conv filters in support (%)": share(conv),
                     "linear weights in support (%)": share(lin)})
    if not rows:
        return None
    df = pd.DataFrame(rows).round(1)
    return df.drop(columns="± std") if df["± std"].isna().all() else df  # one seed each


KEPT_CUT = "cut to support: kept above chance (%)"
# the after-pruning table's test-accuracy columns, by stage
UNPRUNED, PRUNED = "test acc: unpruned (%)", "test acc: pruned (%)"
BN_ACC, FT_ACC = "test acc: + BN re-estimated (%)", "test acc: + fine-tuned (%)"
ACC_CUT = "cut to support: test acc (%)"


@register_table("slbi_path")
def path_table(P: Profile):
    """Per conv layer of the SLBI run(s): filters, share in Gamma's support, entry
    epochs, and the test accuracy (absolute and kept above chance) when only that
    layer is cut to the support (mean over seeds); the last row cuts every layer.

    Used by notebook 05 (report section 3)."""
    import pandas as pd
    recs = by_label(finished(P)).get("SLBI")
    if not recs:
        return None
    entries = [_final(r, "slbi_entry") for r in recs]
    data = measured(P)
    seeds = data["seeds"] if data else []
    cut = [{r["layer"]: r for r in s["support"]["layers"]} for s in seeds]
    rows = []
    for i, layer in enumerate(entries[0]):
        inside = [e for ent in entries for e in ent[layer] if e >= 0]
        n = len(entries[0][layer])
        row = {"layer": f"conv{i + 1}", "filters": n,
               "in support (%)": 100 * len(inside) / (n * len(entries)),
               "first entry (epoch)": min(inside) if inside else math.nan,
               "median entry (epoch)": statistics.median(inside) if inside else math.nan}
        if cut:
            accs = [c[layer]["test_acc"] for c in cut]
            row[ACC_CUT] = 100 * _mean(accs)
            row[KEPT_CUT] = 100 * _mean(kept(a, s["base"]["SLBI"]) for a, s in zip(accs, seeds))
        rows.append(row)
    if data:
        tot = [s["support"]["total"] for s in seeds]
        rows.append({"layer": "all conv layers", "filters": sum(r["filters"] for r in rows),
                     "in support (%)": 100 * (1 - _mean(t["fraction_out"] for t in tot)),
                     ACC_CUT: 100 * _mean(t["test_acc"] for t in tot),
                     KEPT_CUT: 100 * _mean(kept(t["test_acc"], s["base"]["SLBI"])
                                           for t, s in zip(tot, seeds))})
    return pd.DataFrame(rows).round(1)


@register_table("slbi_pruning")
def pruning_table(P: Profile):
    """Per panel and method, at each pruning fraction: the accuracy kept above
    chance (%) with the absolute test accuracy (%) in brackets, and the mean
    kept over the fractions (mean over seeds).

    Used by notebook 05 (report section 3)."""
    import pandas as pd
    data = measured(P)
    if data is None:
        return None
    df = curves_frame(data)
    df = df[df["fraction"] > 0]
    rows = []
    for layer in dict.fromkeys(df["layer"]):
        for method, _, _ in METHODS:
            d = df[(df["layer"] == layer) & (df["method"] == method)]
            if len(d):
                rows.append(_pruning_row(layer, method, d))
    return pd.DataFrame(rows)


def _pruning_row(layer: str, method: str, d) -> dict:
    """One row of the pruning table: ``kept (acc)`` per fraction, the mean kept."""
    row = {"layer": layer, "method": method}
    for f, k, a in zip(d["fraction"], d["kept"], d["test_acc"]):
        row[f"{100 * f:.0f}% pruned"] = f"{100 * k:.1f} ({100 * a:.1f})"
    row["mean kept (%)"] = round(100 * d["kept"].mean(), 1)
    return row


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
    mean = lambda xs: 100 * _mean(list(xs))  # noqa: E731
    tot = [s["support"]["total"] for s in data["seeds"]]
    rows = [{"network": "SLBI cut to Γ's support",
             "filters pruned (%)": mean(t["fraction_out"] for t in tot),
             UNPRUNED: mean(s["base"]["SLBI"] for s in data["seeds"]),
             PRUNED: mean(t["test_acc"] for t in tot),
             BN_ACC: mean(t.get("bn_acc") for t in tot),
             FT_ACC: mean(t.get("finetune_acc") for t in tot)}]
    ft = [r for s in data["seeds"] for r in s["finetuned"]]
    for method, label, _ in METHODS:
        d = df[(df["layer"] == "all convs") & (df["method"] == method)
               & (df["fraction"].round(3) == round(S.finetune_fraction, 3))]
        rows.append({"network": method, "filters pruned (%)": 100 * S.finetune_fraction,
                     UNPRUNED: mean(s["base"][label] for s in data["seeds"]),
                     PRUNED: 100 * d["test_acc"].mean() if len(d) else math.nan,
                     BN_ACC: 100 * d["bn_acc"].mean() if len(d) else math.nan,
                     FT_ACC: mean(r["finetune_acc"] for r in ft
                                          if r["method"] == method)})
    return pd.DataFrame(rows).round(1)


def empty_layers(P: Profile) -> dict:
    """Per threshold of the sweep (entry_at): the conv layers ('conv10')
    whose every filter is outside Gamma's support at the end of the first
    seed's run, read from its last epoch's record. Such a layer cut to the
    support passes nothing on, so the network is at chance whatever the
    other layers keep."""
    out = {}
    for r in sorted(sweep_finished(P), key=lambda r: r["config"]["seed"]):
        if r["entry_at"] in out:
            continue
        support, layers = _final(r, "slbi_support"), _final(r, "slbi_sizes")
        convs = [k for k in layers if not k.startswith("classifier")]
        out[r["entry_at"]] = [f"conv{i + 1}" for i, k in enumerate(convs)
                              if support.get(k, 1) == 0]
    return out


def _emptied(P: Profile, entries) -> dict:
    """The thresholds among ``entries`` (in their order) whose support
    leaves a conv layer empty, with those layers (:func:`empty_layers`)."""
    empty = empty_layers(P)
    return {e: empty[e] for e in entries if empty.get(e)}


@register_table("slbi_sweep")
def sweep_table(P: Profile):
    """The lambda sweep, one row per threshold: the share of conv filters
    outside Gamma's support, the conv layers it leaves empty, the test
    accuracy (%) unpruned, then with that many filters per layer pruned
    (those outside the support, or the lowest by |BN scale| or by filter
    norm), each cell 'as pruned / BN re-estimated / fine-tuned' (mean over
    seeds).

    Used by notebook 05 (report section 3)."""
    import pandas as pd
    sweep = sweep_measured(P)
    if sweep is None:
        return None
    df = sweep_frame(sweep)
    empty = empty_layers(P)
    rows = []
    for e, d in df.groupby("entry_at", sort=True):
        d = d.set_index("by")
        first = d.iloc[0]
        row = {"entry at (share of path time)": f"{e:g}", "λ": f"{first['lambda']:.3g}",
               "seeds": int(first["seeds"]),
               "filters outside support (%)": round(100 * first["fraction_out"], 1),
               "conv layers left empty": _layer_span(empty.get(e, [])),
               "unpruned (%)": round(100 * first["base"], 1)}
        for by, _ in BUDGET_METHODS:
            if by in d.index:
                m = d.loc[by]
                row[f"{SWEEP_HEADS[by]}: pruned / BN / fine-tuned (%)"] = " / ".join(
                    "–" if v != v else f"{100 * v:.1f}"
                    for v in (m["test_acc"], m["bn_acc"], m["finetune_acc"]))
        rows.append(row)
    return pd.DataFrame(rows)


def _layer_span(layers: list[str]) -> str:
    """'conv7-conv13' for a run of consecutive layers, 'conv9, conv12'
    otherwise; 'none' for no layer."""
    if not layers:
        return "none"
    idx = [int(x.removeprefix("conv")) for x in layers]
    runs, start = [], idx[0]
    for a, b in zip(idx, idx[1:] + [None]):
        if b != a + 1:
            runs.append(f"conv{start}" if start == a else f"conv{start}-conv{a}")
            start = b
    return ", ".join(runs)


# ---------------------------------------------------------------- readings


def runs_reading(P: Profile) -> str | None:
    """The runs table in one sentence."""
    runs = by_label(finished(P))
    if not {"SLBI", "SGD"} <= set(runs):
        return None
    S, n = sizes(P), _n_test(P)
    acc = {k: _mean(r["metrics"]["test_acc"] for r in runs[k]) for k in ("SLBI", "SGD")}
    best = max(acc, key=acc.get)
    other = "SGD" if best == "SLBI" else "SLBI"
    sd = [statistics.stdev(r["metrics"]["test_acc"] for r in runs[k])
          for k in acc if len(runs[k]) > 1]
    noise = max([100 * test_noise(acc[best], acc[other], n)] + [200 * x for x in sd])
    return (f"{best} has the higher test accuracy ({100 * acc[best]:.1f}% against "
            f"{100 * acc[other]:.1f}% for {other}); "
            f"{lead_clause(gap(100 * acc[best], 100 * acc[other]), noise, len(runs[best]))}. "
            f"Caveat: short runs ({S.epochs} epochs on {S.train_size:,} training images), "
            "so this compares the optimizers at this budget, not what each reaches.")


def path_reading(P: Profile) -> str | None:
    """The path table in one sentence."""
    df = path_table(P)
    if df is None or KEPT_CUT not in df:
        return None
    total = df[df["layer"] == "all conv layers"].iloc[0]
    if total["in support (%)"] >= 100:  # nothing is outside: no cut to rank
        return (f"Every conv filter is inside Γ's support at the end, so cutting a layer, "
                f"or all of them, to the support removes nothing ({total[ACC_CUT]:.1f}% "
                f"test accuracy, as unpruned): at this threshold the path ranks filters "
                f"only by when they entered (the entry columns). Caveat: one path per seed "
                f"({_seeds(P)} here), read at the last of {sizes(P).epochs} epochs.")
    n = _n_test(P)
    layers = df[df["layer"] != "all conv layers"]
    worst = layers.loc[layers[KEPT_CUT].idxmin()]
    whole = layers[layers[KEPT_CUT] >= 95]
    acc = total[ACC_CUT] / 100
    state = ("is at chance" if at_chance(acc, n) else
             f"keeps {total[KEPT_CUT]:.1f}% of its above-chance accuracy")
    return (f"Cut one layer at a time, {worst['layer'].split(' ')[0]} costs the most "
            f"({worst[KEPT_CUT]:.1f}% of the above-chance accuracy kept) and "
            f"{len(whole)} of {len(layers)} layers keep at least 95%; cut in every layer "
            f"at once ({100 - total['in support (%)']:.1f}% of the filters), the network "
            f"{state} ({total[ACC_CUT]:.1f}% test accuracy, chance 10%). Caveat: one path "
            f"per seed ({_seeds(P)} here), read at the last of {sizes(P).epochs} epochs.")


def pruning_reading(P: Profile) -> str | None:
    """The pruning table in one sentence."""
    data = measured(P)
    if data is None:
        return None
    df = curves_frame(data)
    df = df[df["fraction"] > 0]
    n = _n_test(P)
    means = df.groupby("method", sort=False)[["kept", "test_acc", "base"]].mean()
    order = means["kept"].sort_values(ascending=False)
    best, nxt = order.index[0], order.index[1]
    b, x = means.loc[best], means.loc[nxt]
    noise = _kept_noise(df, best, nxt, n)
    allc = df[df["layer"] == "all convs"]
    dead = [f for f, d in allc.groupby("fraction") if all(at_chance(a, n) for a in d["test_acc"])]
    where = (f"with every conv layer pruned by {_fractions(dead)} every method is at "
             "chance (kept 0), so those columns do not rank the methods"
             if dead else "no all-convs row is at chance for every method")
    lead = lead_clause(gap(100 * b["kept"], 100 * x["kept"]), noise, _seeds(P))
    return (f"Averaged over every panel and fraction, {best} keeps the most "
            f"({100 * b['kept']:.1f}% of the above-chance accuracy, next {nxt} "
            f"{100 * x['kept']:.1f}%); {lead}. Caveat: {where}.")


def _kept_noise(df, a: str, b: str, n: int) -> float:
    """Noise (points of accuracy kept above chance) of the difference of two
    methods' mean kept over the pruning frame ``df``: the test-sampling noise
    of their mean accuracies over the mean above-chance span, or twice the
    larger spread over seeds when there are several seeds and it is larger."""
    means = df.groupby("method", sort=False)[["test_acc", "base"]].mean()
    x, y = means.loc[a], means.loc[b]
    noise = 100 * test_noise(x["test_acc"], y["test_acc"], n) / \
        (0.5 * (x["base"] + y["base"]) - CHANCE)
    sds = [df[df["method"] == m]["seed_sd"].mean() for m in (a, b)]
    return max([noise] + [200 * sd for sd in sds if sd == sd])


def _fractions(fs) -> str:
    fs = [f"{100 * f:.0f}%" for f in sorted(fs)]
    return fs[0] if len(fs) == 1 else ", ".join(fs[:-1]) + f" or {fs[-1]}"


def after_reading(P: Profile) -> str | None:
    """The after-pruning table in one sentence."""
    df = after_table(P)
    if df is None:
        return None
    col = FT_ACC if df[FT_ACC].notna().any() else BN_ACC
    S = sizes(P)
    # the rows compared remove the same share of filters (the first row, cut
    # to the support, removes its own share: compared at that budget in 3.5)
    same = df.iloc[1:].dropna(subset=[col]).sort_values(col, ascending=False, kind="stable")
    if len(same) < 2:
        return None
    b, x = same.iloc[0], same.iloc[1]
    noise = 100 * test_noise(b[col] / 100, x[col] / 100, _n_test(P))
    sup = df.iloc[0]
    return (f"After {'the short fine-tune' if col == FT_ACC else 'BN re-estimation'}, "
            f"with {100 * S.finetune_fraction:.0f}% of every conv layer's filters removed, "
            f"{b['network']} is highest ({b[col]:.1f}%, next {x['network']} {x[col]:.1f}%); "
            f"{lead_clause(gap(b[col], x[col]), noise, _seeds(P))}. The network cut to Γ's "
            f"support ({sup[col]:.1f}%) removes {sup['filters pruned (%)']:.1f}% of the "
            f"filters, so it is not ranked against those rows here: section 3.5 compares it "
            f"with |BN scale| and filter norm at its own budget."
            + (f" Caveat: the fine-tune is only {finetune_words(S)}."
               if col == FT_ACC else ""))


def _stage(df) -> tuple[str, str]:
    """The latest stage the sweep measured: (column, words)."""
    if df["finetune_acc"].notna().any():
        return "finetune_acc", "after the short fine-tune"
    if df["bn_acc"].notna().any():
        return "bn_acc", "after BN re-estimation"
    return "test_acc", "as pruned"


def sweep_reading(P: Profile) -> str | None:
    """The sweep table in one sentence."""
    sweep = sweep_measured(P)
    if sweep is None:
        return None
    df = sweep_frame(sweep)
    col, stage = _stage(df)
    sup = df[df["by"] == "support"].sort_values("entry_at")
    lo, hi = sup.iloc[0], sup.iloc[-1]
    best = df.loc[df[col].idxmax()]
    rest = df.drop(index=best.name)
    nxt = rest.loc[rest[col].idxmax()]
    n, seeds = _n_test(P), int(sup["seeds"].max())
    noise = 100 * test_noise(best[col], nxt[col], n)
    if best["ft_sd"] == best["ft_sd"] and col == "finetune_acc":
        noise = max(noise, 200 * best["ft_sd"])
    base = _series(sup, "base", "base_sd", n, seeds)
    cut = _series(sup, col, "ft_sd" if col == "finetune_acc" else None, n, seeds)
    lead = lead_clause(gap(100 * best[col], 100 * nxt[col]), noise, int(best["seeds"]))
    out = moves(100 * lo["fraction_out"], 100 * hi["fraction_out"])
    return (f"Raising λ (entry at {lo['entry_at']:g} to {hi['entry_at']:g} of the path time) "
            f"the share of filters outside Γ's support {out}, while the unpruned accuracy "
            f"{base}; the network cut to the support {stage} {cut}; "
            f"the best row {stage} is entry {best['entry_at']:g} by {SHORT[best['by']]} "
            f"({100 * best[col]:.1f}%, next entry {nxt['entry_at']:g} by {SHORT[nxt['by']]} "
            f"{100 * nxt[col]:.1f}%), and {lead}."
            f"{_empty_clause(P, df, col)}"
            f" Caveat: each threshold changes training as well as the support, so a row "
            "mixes both effects.")


def _series(sup, col: str, sd: str | None, n: int, seeds: int) -> str:
    """:func:`series_words` for one column of the sweep's support rows over
    the thresholds; noise: test sampling between the series' extremes, or
    twice its largest spread over seeds (column ``sd``) when larger."""
    xs = dict(zip(sup["entry_at"], 100 * sup[col]))
    noise = max([100 * test_noise(max(xs.values()) / 100, min(xs.values()) / 100, n)]
                + [200 * x for x in (sup[sd] if sd else []) if x == x])
    return series_words(xs, noise, seeds)


def _empty_clause(P: Profile, df, col: str) -> str:
    """' From entry 1 on, Gamma's support leaves a whole conv layer empty
    (conv10 at entry 1), ...': where the sweep's accuracy collapses, why;
    'at chance' only when every way of pruning (``df``, the sweep frame) is
    at chance there."""
    empty = _emptied(P, sorted(df["entry_at"].unique()))
    if not empty:
        return ""
    first = next(iter(empty))
    n = _n_test(P)
    at_chance_ = all(at_chance(a, n) for a in df[df["entry_at"].isin(empty)][col])
    return (f" From entry {first:g} on, Γ's support leaves at least one whole conv layer "
            f"empty ({', '.join(empty[first])} at entry {first:g})"
            + (", so cutting to it, or pruning as many filters per layer by |BN scale| or filter "
               "norm, leaves the network at chance: the sparsity above that threshold is "
               "not usable as it stands." if at_chance_ else "."))


# ---------------------------------------------------------------- verdicts


def _pair_noise(a, b, col: str, n: int) -> float:
    """Noise (points) of the difference of two sweep rows' ``col``: two
    standard errors of test sampling, or twice the larger spread over seeds
    of the fine-tuned accuracy when there are several seeds and it is larger."""
    sds = [200 * r["ft_sd"] for r in (a, b) if col == "finetune_acc" and r["ft_sd"] == r["ft_sd"]]
    return max([100 * test_noise(a[col], b[col], n)] + sds)


def _at_entries(es: list, every: list) -> str:
    """'at entry 0.6', 'at entries 0.6 and 0.8', or 'from entry 1 on' when
    ``es`` are the last few of ``every`` (all thresholds, in order)."""
    if len(es) > 1 and list(every[-len(es):]) == list(es):
        return f"from entry {es[0]:g} on"
    return (f"at entr{'y' if len(es) == 1 else 'ies'} "
            f"{_and([f'{e:g}' for e in es])}")


def sweep_comparisons(P: Profile, df, col: str) -> dict:
    """Per threshold of the sweep (frame ``df``), whether the comparison of
    Gamma's support with |BN scale| and filter norm at its budget can tell
    them apart, and how it came out: ``void`` (entry -> 'nothing pruned' or
    'at chance': nothing pruned leaves the three networks the same, and
    every way of pruning at chance cannot rank them) and ``told`` (entry ->
    {'bn': 'beats' | 'ties with' | 'loses to', 'magnitude': ...})."""
    n, void, told = _n_test(P), {}, {}
    for e, d in df.groupby("entry_at", sort=True):
        d = d.set_index("by")
        if d.loc["support", "fraction_out"] == 0:
            void[e] = "nothing pruned"
        elif all(at_chance(a, n) for a in d[col]):
            void[e] = "at chance"
        else:
            sup = d.loc["support"]
            told[e] = {by: versus(100 * (sup[col] - d.loc[by, col]),
                                  _pair_noise(sup, d.loc[by], col, n))
                       for by in ("bn", "magnitude") if by in d.index}
    return {"void": void, "told": told}


def _tally(P: Profile, df, col: str) -> str:
    """' Over the sweep, 2 of its 7 thresholds can tell the methods apart
    (entries 0.9 and 0.95; at entry 0.6 nothing is pruned, ...): there
    Γ's support, against |BN scale|, ties at entry 0.9 and loses at entry 0.95;
    against filter norm, ...': :func:`sweep_comparisons` per outcome, the
    void thresholds named."""
    every = sorted(df["entry_at"].unique())
    c = sweep_comparisons(P, df, col)
    why = [f"{_at_entries(es, every)} {what}" for what, words in
           (("nothing is pruned", "nothing pruned"),
            ("every method is at chance", "at chance"))
           for es in [[e for e, v in c["void"].items() if v == words]] if es]
    told, k = c["told"], len(every)
    if not told:
        return (f" None of the {k} thresholds of the sweep can tell the methods apart "
                f"({' and '.join(why)}).")
    where = (f"entr{'y' if len(told) == 1 else 'ies'} {_and([f'{e:g}' for e in told])}"
             + (f"; {', and '.join(why)}" if why else ""))
    some = f"all {k}" if len(told) == k else f"{len(told)} of its {k}"
    counts = []
    for by in ("bn", "magnitude"):
        said = [f"{word} at entr{'y' if len(es) == 1 else 'ies'} {_and([f'{e:g}' for e in es])}"
                for outcome, word in (("beats", "wins"), ("ties with", "ties"),
                                      ("loses to", "loses"))
                for es in [[e for e, v in told.items() if v.get(by) == outcome]] if es]
        counts.append(f"against {SHORT[by]}, {_and(said)}")
    return (f" Over the sweep, {some} thresholds can tell the methods "
            f"apart ({where}): there Γ's support, {counts[0]}; {counts[1]} (a tie: "
            "within the noise of that pair).")


def budget_verdict(P: Profile) -> str | None:
    """Whether Gamma's support beats |BN scale| and filter norm at its own
    budget, then over the thresholds of the sweep that can tell them apart
    (:func:`sweep_comparisons`)."""
    sweep = sweep_measured(P)
    if sweep is None:
        return None
    df = sweep_frame(sweep)
    col, stage = _stage(df)
    S, n = sizes(P), _n_test(P)
    here = df[df["entry_at"] == S.entry_at].set_index("by")
    if "support" not in here.index:
        return None
    sup = here.loc["support"]
    if sup["fraction_out"] == 0:  # nothing to prune: no comparison at this budget
        return (f"At this budget (entry {S.entry_at:g}, λ = {sup['lambda']:.3g}) every conv "
                f"filter is inside Γ's support, so cutting to it prunes nothing and the "
                f"path cannot be set against |BN scale| or filter norm here."
                f"{_tally(P, df, col)}")
    words, noise = [], 0.0
    for by in ("bn", "magnitude"):
        nz = _pair_noise(sup, here.loc[by], col, n)
        noise = max(noise, nz)
        words.append(f"{versus(100 * (sup[col] - here.loc[by, col]), nz)} "
                     f"{'|BN scale| (network slimming)' if by == 'bn' else 'filter-norm pruning'}")
    return (f"At this budget (entry {S.entry_at:g}, λ = {sup['lambda']:.3g}: "
            f"{100 * sup['fraction_out']:.1f}% of the conv filters outside Γ's support), the "
            f"SLBI network cut to Γ's support has {100 * sup[col]:.1f}% test accuracy {stage}, "
            f"against {100 * here.loc['bn', col]:.1f}% with as many filters per layer pruned "
            f"by |BN scale| and {100 * here.loc['magnitude', col]:.1f}% by filter norm: Γ's support "
            f"{words[0]} and {words[1]} (a difference counts when it is more than the "
            f"{noise:.1f} points {noise_source(int(sup['seeds']))})."
            f"{_tally(P, df, col)}")


def order_verdict(P: Profile) -> str | None:
    """Where SLBI's path order ranks among the three orders on the same network."""
    data = measured(P)
    if data is None:
        return None
    df = curves_frame(data)
    df = df[(df["fraction"] > 0) & (df["model"] == "SLBI")]
    means = df.groupby("order", sort=False)["kept"].mean()
    if "path" not in means or len(means) < 2:
        return None
    rank = sorted(means.index, key=lambda o: -means[o]).index("path")
    place = ("the best" if rank == 0 else "the worst" if rank == len(means) - 1
             else f"the {('second', 'third', 'fourth')[min(rank, 3) - 1]}")
    near = min((o for o in means.index if o != "path"),
               key=lambda o: abs(means[o] - means["path"]))
    apart = abs(gap(100 * means["path"], 100 * means[near]))
    method = dict(zip(df["order"], df["method"]))
    noise = _kept_noise(df, method["path"], method[near], _n_test(P))
    side = "above" if means["path"] > means[near] else "below"
    # the means themselves are listed just before (slbi_prune_kept)
    return (f"SLBI's path order is {place} of the {len(means)} rankings of the SLBI "
            f"network, {apart:.1f} points {side} the nearest ({SHORT[near]}), "
            f"{'more' if apart > noise else 'no more'} than the {noise:.1f} points "
            f"{noise_source(_seeds(P))}.")


def norm_reading(P: Profile) -> str | None:
    """Whether filter norm is the weaker baseline than |BN scale| (as the
    method text expects of a BN network), on each network, against noise."""
    data = measured(P)
    if data is None:
        return None
    df = curves_frame(data)
    df = df[df["fraction"] > 0]
    means, n = df.groupby("method", sort=False)["kept"].mean(), _n_test(P)
    parts, weaker = [], []
    for model in ("SLBI", "SGD"):
        a, b = f"{model}, filter norm", f"{model}, |BN scale|"
        if a not in means or b not in means:
            continue
        noise = _kept_noise(df, a, b, n)
        word = versus(100 * (means[a] - means[b]), noise)
        weaker += [model] if word == "loses to" else []
        d = gap(100 * means[a], 100 * means[b])  # the means are listed just before
        parts.append(f"{word + ' |BN scale|' if not parts else word + ' it'} on the {model} "
                     f"network ({d:+.1f} points, noise {noise:.1f})")
    if not parts:
        return None
    end = ("it is the weaker baseline on both networks, as expected"
           if len(weaker) == len(parts) else
           f"it is the weaker baseline on the {weaker[0]} network only"
           if weaker else "these results do not show it to be the weaker baseline")
    return (f"Filter norm {' and '.join(parts)}: "
            f"{end} (noise: what {noise_source(_seeds(P))}).")


def verdict(P: Profile) -> str | None:
    """How sparse DessiLBI made the network, at what accuracy, against |BN scale| and
    filter norm at the same budget (for a summary and section 3's opening)."""
    sweep, runs = sweep_measured(P), by_label(finished(P))
    if sweep is None or not {"SLBI", "SGD"} <= set(runs):
        return None
    df = sweep_frame(sweep)
    col, stage = _stage(df)
    S = sizes(P)
    here = df[df["entry_at"] == S.entry_at].set_index("by")
    if "support" not in here.index:
        return None
    sup, sgd = here.loc["support"], _mean(r["metrics"]["test_acc"] for r in runs["SGD"])
    if sup["fraction_out"] == 0:  # every filter entered: nothing sparse to compare
        return (f"{_model(P)}, {plural(_seeds(P), 'seed')}, {plural(S.epochs, 'epoch')}: at "
                f"λ = {sup['lambda']:.3g} every conv filter entered Γ's support, so DessiLBI "
                f"made no filter sparse ({100 * sup['base']:.1f}% test accuracy; SGD: "
                f"{100 * sgd:.1f}%).{_sweep_clause(P, df, col)}")
    return (f"{_model(P)}, {plural(_seeds(P), 'seed')}, {plural(S.epochs, 'epoch')}: at "
            f"λ = {sup['lambda']:.3g} DessiLBI left {100 * sup['fraction_out']:.1f}% of the "
            f"conv filters outside Γ's support, at {100 * sup['base']:.1f}% test accuracy "
            f"(SGD: {100 * sgd:.1f}%); cut to the support, {100 * sup[col]:.1f}% {stage}: "
            f"it {_against_both(P, here, col)}.{_sweep_clause(P, df, col)}")


def _against_both(P: Profile, here, col: str, short: bool = False) -> str:
    """'ties with the better of pruning as many filters per layer by |BN scale|
    (33.8%) or by filter norm (33.4%)' (``short``: 'loses to |BN scale| (34.2%;
    filter norm 32.9%)'): Γ's support against the better ranking at one
    threshold (rows of the sweep frame by ranking), against test noise."""
    other = max(("bn", "magnitude"), key=lambda b: here.loc[b, col])
    sup = here.loc["support", col]
    verb = versus(100 * (sup - here.loc[other, col]),
                  100 * test_noise(sup, here.loc[other, col], _n_test(P)))
    if short:
        rest = "magnitude" if other == "bn" else "bn"
        return (f"{verb} {SHORT[other]} ({100 * here.loc[other, col]:.1f}%; {SHORT[rest]} "
                f"{100 * here.loc[rest, col]:.1f}%)")
    return (f"{verb} the better of pruning as many filters per layer by |BN scale| "
            f"({100 * here.loc['bn', col]:.1f}%) or by filter norm "
            f"({100 * here.loc['magnitude', col]:.1f}%)")


def _sweep_clause(P: Profile, df, col: str) -> str:
    """' At λ = 0.173 (29.0% out) ...': the sweep's sparsest support that
    still learns (its network cut to the support above chance), against |BN scale|
    and filter norm at its budget, and the first threshold that empties a
    whole conv layer. '' when the sweep has nothing sparser than the
    profile's own threshold."""
    S, n = sizes(P), _n_test(P)
    sup = df[df["by"] == "support"].set_index("entry_at")
    own = sup.loc[S.entry_at, "fraction_out"] if S.entry_at in sup.index else 0.0
    alive = [e for e in sup.index if sup.loc[e, "fraction_out"] > own
             and not at_chance(sup.loc[e, col], n)]
    out = ""
    if alive:
        e = max(alive, key=lambda k: sup.loc[k, "fraction_out"])
        here = df[df["entry_at"] == e].set_index("by")
        out = (f" Sparser, at λ = {sup.loc[e, 'lambda']:.3g} "
               f"({100 * sup.loc[e, 'fraction_out']:.1f}% out, unpruned "
               f"{100 * sup.loc[e, 'base']:.1f}%), the cut network has "
               f"{100 * sup.loc[e, col]:.1f}%: it {_against_both(P, here, col, short=True)}.")
    empty = _emptied(P, sup.index)
    if empty:
        first = next(iter(empty))
        dead = all(at_chance(sup.loc[e, col], n) for e in empty)
        out += (f" From λ = {sup.loc[first, 'lambda']:.3g} on "
                f"({100 * sup.loc[first, 'fraction_out']:.1f}% of the conv filters out), the "
                f"support empties a whole conv layer ({_layer_span(empty[first])})"
                + (" and the cut network is at chance." if dead else "."))
        if dead and not alive and own == 0:
            out += (" No threshold of the sweep gives a sparse network that still "
                    "learns at this budget.")
    return out


# ---------------------------------------------------------------- values


@register_values
def values(P: Profile) -> dict:
    """Every ``value:`` block of report section 3, by name: the fixed settings
    (from the profile's sizes), the runs' accuracy and Gamma's support, the
    pruning results and the sweep, and a one-sentence reading of every table
    (None where those results are not on disk).

    Used by notebook 05 (report section 3).
    """
    S, runs, data = sizes(P), by_label(finished(P)), measured(P)
    kept_m = _kept_by_method(data)
    return {
        "slbi_model": _model(P),
        "slbi_epochs": plural(S.epochs, "epoch"),
        "slbi_batch": f"{S.batch_size}",
        "slbi_warmup": plural(S.warmup_epochs, "warm-up epoch"),
        "slbi_nu": f"{S.nu:.3g}",
        "slbi_lambda": f"{S.lambda_conv:.3g}",
        "slbi_entry_at": f"{S.entry_at:g}",
        "slbi_z_floor": f"{S.z_lr_floor:.3g}",
        "slbi_seeds": plural(len(S.seeds), "seed"),
        "slbi_over_seeds": (f"mean over {len(S.seeds)} seeds" if len(S.seeds) > 1
                            else "one seed"),
        "slbi_finetune": finetune_words(S),
        "slbi_sweep": _and([f"{e:g}" for e in S.sweep]),
        "slbi_sweep_lambdas": _and([f"{S.lambda_at(e):.3g}" for e in S.sweep]),
        "slbi_test_acc": _test_acc(runs.get("SLBI")),
        "sgd_test_acc": _test_acc(runs.get("SGD")),
        "slbi_support_pct": _support_pct(runs.get("SLBI")),
        "slbi_support_layers": _support_layers(path_table(P)),
        "slbi_support_acc": _support_total(data, "test_acc"),
        "slbi_support_bn_acc": _support_total(data, "bn_acc"),
        "slbi_support_ft_acc": _support_total(data, "finetune_acc"),
        "slbi_support_kept": _support_kept(data),
        "slbi_prune_kept": "; ".join(f"{m} {100 * v:.1f}%" for m, v in kept_m.items()) or None,
        "slbi_prune_best": _best(kept_m),
        "slbi_prune_best_all": _best(_kept_by_method(data, "all convs")),
        "slbi_bn_gain": _bn_gain(data),
        "slbi_ft_best": _ft_best(data),
        "slbi_runs_reading": runs_reading(P),
        "slbi_path_reading": path_reading(P),
        "slbi_pruning_reading": pruning_reading(P),
        "slbi_after_reading": after_reading(P),
        "slbi_sweep_reading": sweep_reading(P),
        "slbi_budget_verdict": budget_verdict(P),
        "slbi_order_verdict": order_verdict(P),
        "slbi_norm_reading": norm_reading(P),
        "slbi_verdict": verdict(P),
    }


def finetune_words(S) -> str:
    """The short fine-tune after pruning, from the profile's sizes: its steps,
    batch and share of an epoch of the training images."""
    if not S.finetune_steps:
        return "0 steps (skipped in this profile)"
    share = S.finetune_steps * S.batch_size / S.train_size
    return (f"{plural(S.finetune_steps, 'step')} of batch {S.batch_size}, "
            f"{share:.2g} of an epoch of the {S.train_size:,} training images, learning rate "
            f"{S.finetune_lr:g} decaying to 0")


def _pct(x):
    return None if x is None or x != x else f"{100 * x:.1f}"


def _and(xs: list[str]) -> str | None:
    return None if not xs else xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + f" and {xs[-1]}"


def _model(P: Profile) -> str:
    """The trained network, e.g. ``VGG-16-BN at width 0.25``."""
    cfg = recipe(P, "slbi")
    width = cfg.model_kw.get("width", 1.0)
    name = cfg.model.upper().replace("_BN", "-BN").replace("VGG16", "VGG-16")
    return name if width == 1 else f"{name} at width {width:g}"


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
            f"{'no layer' if not empty else plural(empty, 'layer')} left empty")


def _support_total(data: dict | None, key: str) -> str | None:
    """A measurement of the SLBI network cut to Gamma's support (mean over seeds)."""
    xs = [s["support"]["total"].get(key) for s in data["seeds"]] if data else []
    xs = [x for x in xs if x is not None]
    return _pct(statistics.mean(xs)) if xs else None


def _support_kept(data: dict | None) -> str | None:
    """Above-chance accuracy kept by the SLBI network cut to Gamma's support."""
    if not data:
        return None
    return _pct(_mean(kept(s["support"]["total"]["test_acc"], s["base"]["SLBI"])
                      for s in data["seeds"]))


def _kept_by_method(data: dict | None, panel: str | None = None) -> dict[str, float]:
    """Mean accuracy kept above chance over every fraction (and panel, or only
    ``panel``), per method."""
    if data is None:
        return {}
    df = curves_frame(data)
    df = df[df["fraction"] > 0]
    if panel:
        df = df[df["layer"] == panel]
    return df.groupby("method", sort=False)["kept"].mean().to_dict()


def _best(kept_m: dict[str, float]) -> str | None:
    """The method that keeps the most accuracy, and the runner-up's share."""
    if not kept_m:
        return None
    best = max(kept_m, key=kept_m.get)
    rest = max(v for m, v in kept_m.items() if m != best)
    return f"{best} ({100 * kept_m[best]:.1f}% kept, next {100 * rest:.1f}%)"


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
    """The method with the most above-chance accuracy kept after pruning and
    the short fine-tune."""
    ft = [(r, s["base"][r["model"]]) for s in data["seeds"] for r in s["finetuned"]] \
        if data else []
    if not ft:
        return None
    means = {m: _mean(kept(r["finetune_acc"], b) for r, b in ft if r["method"] == m)
             for m, _, _ in METHODS}
    best = max(means, key=means.get)
    acc = _mean(r["finetune_acc"] for r, _ in ft if r["method"] == best)
    return (f"{best} ({100 * means[best]:.1f}% of its above-chance accuracy kept, "
            f"{100 * acc:.1f}% test accuracy)")


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
    if data is None:
        return None
    # the layer as the path table names it: conv1, conv2, ... in the net's order
    recs = by_label(finished(P)).get("SLBI") or []
    convs = list(_final(recs[0], "slbi_entry") or {}) if recs else []
    layer = data["seeds"][0]["filters"]["layer"]
    name = f"conv{convs.index(layer) + 1}" if layer in convs else layer
    return plots.plot_filters(data, 0.5, name=name)


@register_figure("slbi_sweep.png")
def fig_sweep(P: Profile):
    sweep = sweep_measured(P)
    if sweep is None:   # before the measurement: the runs' own sparsity and accuracy
        recs = sweep_finished(P)
        if not recs:
            return None
        sweep = sweep_from_records(recs)
    sgd = [r["metrics"]["test_acc"] for r in by_label(finished(P)).get("SGD", [])]
    return plots.plot_sweep(sweep_frame(sweep), _mean(sgd) if sgd else None, _n_test(P))

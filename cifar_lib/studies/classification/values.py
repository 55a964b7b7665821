"""Section 1's report tables and values, read back from results/ on disk."""
from __future__ import annotations

from cifar_lib.experiments import loaded_split, records, results_frame, summarize
from cifar_lib.health import learned
from cifar_lib.models import display_name
from cifar_lib.profiles import Profile
from cifar_lib.registry import register_figure, register_table, register_values
from cifar_lib.studies.classification.measures import read, save_arch_costs, vis_measured
from cifar_lib.studies.classification.runs import (ABLATION, ARCHITECTURES, FINAL_MODEL,
                                                   LONG_BUDGET, OLD_ABLATION, first_seed)


@register_table("calibration")
def calibration_table(profile: Profile):
    """Used by notebook 03 (report section 1.4)."""
    import pandas as pd
    data = vis_measured(profile)
    if not data:
        return None
    from cifar_lib.studies.classification.measures import vis_runs
    s, runs = data["calibration"], vis_runs(profile)

    def name(k):  # which run: notebook 01's, first seed, at its chosen rate
        r = runs.get(k)
        return (display_name(k) if r is None else
                f"{display_name(k)} (section 1.2's run: lr {r.cfg.lr:g}, seed {r.cfg.seed})")
    return pd.DataFrame([{"model": name(k), "test acc (%)": f"{100 * v['acc']:.1f}",
                          "ECE (15 bins)": f"{v['ece']:.3f}",
                          "mean confidence (%)": f"{100 * v['confidence']:.1f}"}
                         for k, v in s.items()])


def _pm(mean, std, scale=100.0, digits=1):
    """``mean ± std`` in percent; one more decimal where the spread would
    print as 0.0."""
    if mean is None or mean != mean:
        return "n/a"
    if std is None or std != std:
        return f"{scale * mean:.{digits}f}"
    if round(scale * std, digits) == 0:
        digits += 1
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


# A table cell with no value: a mean with no seed to average (every seed
# failed: the "per seed" and "failed" columns say why), or a cost not counted.
NO_MEAN = "–"


def _cell(mean, std=None) -> str:
    """:func:`_pm` in a table: NO_MEAN where no seed learned."""
    return NO_MEAN if mean is None or mean != mean else _pm(mean, std)


def _time(t, fmt="{:.0f}") -> str:
    return fmt.format(t) if t == t else NO_MEAN


def per_seed(values, scale=100.0, digits=1) -> str:
    """Every seed's value in seed order; a failed or diverged one marked."""
    marks = {"failed": " (failed)", "diverged": " (diverged)"}
    return ", ".join("n/a" if v is None or v != v else
                     f"{scale * v:.{digits}f}{marks.get(status, '')}"
                     for status, v in values)


def acted(df) -> dict[str, str]:
    """Per label, how often its mechanism acted (clipped steps, rate cuts,
    the optimizer switch), where one is recorded."""
    out = {}
    for label, d in df.groupby("label", sort=False):
        parts = []
        for key, fmt in (("clip_frac", lambda v: f"clipped {100 * v:.0f}% of steps"),
                         ("lr_cuts", lambda v: f"{v:.0f} rate cut{'' if v == 1 else 's'}"),
                         ("switch_step", lambda v: f"switched at step {v:.0f}")):
            vals = [v for v in d[key] if v is not None and v == v] if key in d else []
            clips = any(float(d[c].fillna(0).max()) > 0
                        for c in ("grad_clip", "grad_clip_quantile") if c in d)
            if vals and (key != "clip_frac" or clips):
                parts.append(fmt(sum(vals) / len(vals)))
        if parts:
            out[label] = "; ".join(parts)
    return out


def summary_table(recs: list[dict]):
    """Per label: test accuracy mean ± std (%) over the seeds that learned,
    every seed's value, val acc, failed and diverged seeds, time; a row
    whose mechanism acted says how often after its name ("plateau: 1 rate
    cut", :func:`acted`).

    Used by notebook 02 (report section 1.3).
    """
    return fold_acted(_summary(recs), "variant") if recs else None


def fold_acted(table, name: str):
    """``table`` without its "acted" column: each of the few rows with an
    entry gets it after its ``name`` ('AdamW then SGD at 50%: switched at
    step 78'), instead of a column that is empty for the other rows."""
    if table is None or "acted" not in table:
        return table
    table = table.copy()
    table[name] = [f"{n}: {a}" if a else n for n, a in zip(table[name], table["acted"])]
    return table.drop(columns="acted")


def _summary(recs: list[dict]):
    """:func:`summary_table` with the "acted" column where a row has one."""
    import pandas as pd
    if not recs:
        return None
    df = results_frame(recs)
    s = summarize(df, by="label",
                  metrics=("test_acc", "best_val_acc", "train_time", "images_per_s"))
    table = pd.DataFrame({
        "variant": s["label"],
        "test acc (%)": [_cell(m, d) for m, d in zip(s["test_acc_mean"], s["test_acc_std"])],
        "per seed": [per_seed(v) for v in s["test_acc_seeds"]],
        "val acc (%)": [_cell(m, d) for m, d in zip(s["best_val_acc_mean"],
                                                     s["best_val_acc_std"])],
        "seeds": s["runs"],
        "failed": s["failed"] + s["diverged"],
        "train time (s)": [_time(t) for t in s["train_time_mean"]],
    })
    act = acted(df)
    if act:
        table.insert(6, "acted", [act.get(lbl, "") for lbl in s["label"]])
    return table


def with_every_seed(recs: list[dict], profile: Profile) -> list[dict]:
    """``recs`` with, for each of their rows, every stored seed of the same
    config (tag and data sizes), wherever it was trained: the ablation
    baseline's second seed (experiment ``baseline``) and the settings the
    long-budget control also trains at the ablations' epochs are the same
    runs as those rows, so a row's mean and its seeds use all of them (the
    seeds section 1 plans, :func:`runs.planned_seeds`; not a run of another
    seed made by hand). Rows keep their order and labels; a record is
    listed once per row.

    Used by section 1.3's tables, readings, dot plots and the summary."""
    import json
    from cifar_lib import store
    if not recs:
        return recs

    def setting(rec):
        cfg = {k: v for k, v in rec["config"].items() if k != "seed"}
        sizes = {k: rec.get("data", {}).get(k) for k in ("train", "val", "test")}
        return json.dumps([cfg, rec.get("tag"), sizes], sort_keys=True)
    from cifar_lib.studies.classification.runs import planned_seeds
    wanted, planned = {setting(r) for r in recs}, planned_seeds(profile)
    seeds: dict = {}
    for rec in store.runs(profile.results):   # oldest first: the newest wins
        key = setting(rec)
        if key in wanted and rec["config"]["seed"] in planned:   # not a stray seed of a user's
            seeds.setdefault(key, {})[rec["config"]["seed"]] = rec
    out, seen = [], set()
    for r in recs:
        key = setting(r)
        found = {**seeds.get(key, {}), r["config"]["seed"]: r}  # r as records() chose it
        for seed, rec in sorted(found.items()):
            if (r["label"], key, seed) not in seen:   # one record per row, config and seed
                seen.add((r["label"], key, seed))
                out.append({**rec, "label": r["label"]})
    return out


def _rate_of(rec) -> float:
    return float(rec["config"]["lr"])


def at_chosen(recs: list[dict]) -> tuple[list[dict], dict]:
    """The records at each label's chosen rate, and per label its grid:
    {label: {"chosen": lr, "grid": [(lr, val acc or None for failed)],
    "from": label whose grid chose it}}. A label whose first seed ran
    several rates chose the one with the best validation accuracy
    (:func:`runs.grid_score`); other labels keep their one rate."""
    from cifar_lib.studies.classification.runs import grid_score
    by: dict[str, list[dict]] = {}
    for r in recs:
        by.setdefault(r["label"], []).append(r)
    keep, grids = [], {}
    for label, rs in by.items():
        first = min(r["config"]["seed"] for r in rs)
        grid = sorted({_rate_of(r): r for r in rs if r["config"]["seed"] == first}.items())
        if len(grid) > 1:
            scored = [(grid_score(r), lr) for lr, r in grid]
            good = [(v, lr) for v, lr in scored if v is not None]
            chosen = max(good)[1] if good else grid[len(grid) // 2][0]
            grids[label] = {"chosen": chosen, "grid": [(lr, v) for v, lr in scored]}
        else:
            chosen = grid[0][0] if grid else None
        keep += [r for r in rs if _rate_of(r) == chosen]
    return keep, grids


def displayed(recs: list[dict], grids: dict | None = None) -> tuple[list[dict], dict]:
    """Architecture records (and their grids, :func:`at_chosen`) labelled
    with the report's model names (:func:`cifar_lib.models.display_name`)
    for readings; the tables map their column themselves."""
    return ([{**r, "label": display_name(r["label"])} for r in recs],
            {display_name(k): v for k, v in (grids or {}).items()})


def edge_note(grids: dict) -> str:
    """A caveat for a reading: which labels chose a rate at an end of their
    grid (the best rate may lie beyond it), or nothing."""
    edge = [lbl for lbl, g in grids.items() if len(g["grid"]) > 1 and g["chosen"] in
            (min(lr for lr, _ in g["grid"]), max(lr for lr, _ in g["grid"]))]
    if not edge:
        return ""
    return (f" {len(edge)} of the {len(grids)} rate grids chose an end of the grid "
            f"({', '.join(edge)}): a wider grid could change the ranking.")


def grid_text(g: dict) -> str:
    """``0.0167: 41.2, 0.05: 45.3 (chosen), 0.15: failed`` (val acc %); a
    choice at an end of the grid says so (the best rate may lie beyond)."""
    lrs = [lr for lr, _ in g["grid"]]

    def mark(lr):
        if lr != g["chosen"]:
            return ""
        edge = "top" if lr == max(lrs) else "bottom" if lr == min(lrs) else None
        return f" (chosen, {edge} of the grid)" if edge and len(lrs) > 1 else " (chosen)"
    return ", ".join(f"{lr:g}: " + ("failed" if v is None else f"{100 * v:.1f}") + mark(lr)
                     for lr, v in g["grid"])


def tuned_table(recs: list[dict], what: str = "variant"):
    """Like :func:`summary_table` at each row's chosen rate, with the rate
    and the grid it was chosen from (val acc of the first seed).

    Used by notebook 02 (report section 1.3)."""
    if not recs:
        return None
    keep, grids = at_chosen(recs)
    table = _summary(keep).rename(columns={"variant": what})
    rates = {r["label"]: _rate_of(r) for r in keep}
    table.insert(1, "lr", [f"{rates[lbl]:g}" for lbl in table[what]])
    table.insert(2, "rates tried: val acc (%)",
                 [grid_text(grids[lbl]) if lbl in grids else "one rate"
                  for lbl in table[what]])
    return fold_acted(table, what)


def arch_summary(profile: Profile):
    """Architecture table data at each model's chosen rate: accuracy (over
    the seeds that learned), parameters, FLOPs, time, images/s, the rate
    and where it came from, validation accuracy at a common epoch.

    Used by notebook 01 (report section 1.2).
    """
    import pandas as pd
    from cifar_lib.studies.classification.runs import ARCH_CORE, nearest_core
    recs = records(ARCHITECTURES, profile)
    if not recs:
        return None
    keep, grids = at_chosen(recs)
    df = results_frame(keep)
    s = summarize(df, by="label",
                  metrics=("test_acc", "train_time", "images_per_s", "params", "epochs"))
    costs = save_arch_costs(profile)
    s["mflops"] = [costs.get(lbl, {}).get("mflops") for lbl in s["label"]]
    params = {r["label"]: r["metrics"].get("params") for r in keep}
    s["params"] = [int(params[lbl] or 0) for lbl in s["label"]]
    s.pop("params_mean")
    epochs = {r["label"]: r["config"]["epochs"] for r in keep}
    s["epochs_mean"] = [epochs[lbl] for lbl in s["label"]]
    rate = {r["label"]: _rate_of(r) for r in keep}
    s["lr"] = [rate[lbl] for lbl in s["label"]]
    complete = _complete_grids(profile)
    s["grid"] = [grid_text(grids[lbl]) if lbl in grids else None for lbl in s["label"]]
    s["lr_from"] = ["own grid" if lbl in grids else
                    _zoo_rate_from(lbl, complete) if lbl not in ARCH_CORE else
                    "shared; own grid pending"
                    for lbl in s["label"]]
    common = min(len(r["history"]) for r in keep)
    s["common_epoch"] = common
    at: dict = {}   # mean over the seeds that learned, as the test accuracy
    for r in keep:
        v = r["history"][common - 1].get("val_acc") if common else None
        if v is not None and learned(r):
            at.setdefault(r["label"], []).append(v)
    s["val_at_common"] = [sum(at[lbl]) / len(at[lbl]) if lbl in at else None
                          for lbl in s["label"]]
    s["test_acc_per_seed"] = [per_seed(v) for v in s["test_acc_seeds"]]
    devices: dict = {}
    for r in keep:
        devices.setdefault(r["label"], set()).add(short_device(
            (r.get("env") or {}).get("device_name") or "unknown"))
    s["devices"] = [", ".join(sorted(devices[lbl])) for lbl in s["label"]]
    return pd.DataFrame(s)


def short_device(name: str) -> str:
    """A device's name without the vendor and the memory ("NVIDIA H100
    80GB HBM3" -> "H100"), for a table column."""
    words = [w for w in name.replace("NVIDIA ", "").split()
             if not any(t in w for t in ("GB", "HBM"))]
    return " ".join(words) or name


def _complete_grids(profile: Profile) -> set:
    """The core models whose rate grid is complete (its choice final)."""
    from cifar_lib.studies.classification.runs import arch_grid, choose
    return {core for core, grid in arch_grid(profile).items() if choose(profile, grid)[1]}


def _zoo_rate_from(label: str, complete: set) -> str:
    """Where a zoo model's rate came from: its nearest core model's grid
    once that grid is complete (``complete``: :func:`_complete_grids`); the
    shared rate (its centre) before."""
    from cifar_lib.studies.classification.runs import nearest_core
    core = nearest_core(label)
    if core in complete:
        return f"{display_name(core)}'s grid"
    return f"shared; {display_name(core)}'s grid pending"


@register_table("architectures")
def arch_table(profile: Profile):
    """Used by notebook 01 (report section 1.2)."""
    s = arch_summary(profile)
    if s is None:
        return None
    import pandas as pd
    s = s.sort_values("test_acc_mean", ascending=False, na_position="last")
    common = int(s["common_epoch"].iloc[0])
    df = pd.DataFrame({  # noqa: E501
        "model": [display_name(lbl) for lbl in s["label"]],
        "test acc (%)": [_cell(m, d) for m, d in zip(s["test_acc_mean"], s["test_acc_std"])],
        "per seed": s["test_acc_per_seed"],
        "failed": s["failed"] + s["diverged"],
        "epochs": s["epochs_mean"],
        f"val acc at epoch {common} (%)": [_cell(v) for v in s["val_at_common"]],
        # where every rate came from the same place, the header says it once
        **({f"lr ({s['lr_from'].iloc[0]})": [f"{v:g}" for v in s["lr"]]}
           if s["lr_from"].nunique() == 1 else
           {"lr (chosen from)": [f"{v:g} ({f})" for v, f in zip(s["lr"], s["lr_from"])]}),
        "params (M)": [f"{p / 1e6:.3g}" for p in s["params"]],
        "MFLOPs": [NO_MEAN if f is None else f"{f:.0f}" for f in s["mflops"]],
        "train time (s)": [_time(t) for t in s["train_time_mean"]],
        "images/s": [_time(v, "{:,.0f}") for v in s["images_per_s_mean"]],
        "device": s["devices"],
    })
    # every model at the same epochs: the "val acc at epoch" header says them;
    # the device only where the rows' times come from more than one
    drop = [c for c, one in (("epochs", df["epochs"].nunique() == 1),
                             ("device", df["device"].nunique() == 1)) if one]
    return report_columns(df.drop(columns=drop))


@register_table("arch_grids")
def arch_grid_table(profile: Profile):
    """Each model's own rate grid: the rates its first seed tried, their
    validation accuracy and the one chosen (the architecture table's
    "own grid" rows), in the architecture table's order; None before any
    grid has run.

    Used by notebook 01 (report section 1.2)."""
    s = arch_summary(profile)
    if s is None or s["grid"].isna().all():
        return None
    import pandas as pd
    s = s.sort_values("test_acc_mean", ascending=False, na_position="last")
    s = s[s["grid"].notna()]
    return pd.DataFrame({"model": [display_name(lbl) for lbl in s["label"]],
                         "rates tried: val acc (%)": s["grid"]})


def lr_grid_table(recs: list[dict]):
    """Mean test accuracy (%) over the runs that learned of the lr grid:
    rows learning rate, columns schedule; NaN where every run of a cell
    failed (:func:`lr_grid_failed` labels those).

    Used by notebook 02 (report section 1.3).
    """
    df = results_frame(recs)
    df["test acc (%)"] = 100 * df["test_acc"].astype(float).where(df["status"] == "ok")
    return df.pivot_table(index="lr", columns="scheduler", values="test acc (%)",
                          aggfunc="mean", dropna=False).sort_index(ascending=False)


def lr_grid_failed(recs: list[dict]):
    """Same shape as :func:`lr_grid_table`: 'failed' plus the runs' test
    accuracy where every run of a cell failed, '' elsewhere."""
    import pandas as pd
    df = results_frame(recs)
    df["acc"] = 100 * df["test_acc"].astype(float)
    cells = df.groupby(["lr", "scheduler"])
    text = {k: ("failed\n(" + ", ".join(f"{v:.1f}" for v in d["acc"]) + ")"
                if (d["status"] != "ok").all() else "") for k, d in cells}
    table = lr_grid_table(recs)
    return pd.DataFrame([[text.get((lr, sch), "") for sch in table.columns]
                         for lr in table.index], index=table.index, columns=table.columns)


def optimizer_decays(profile: Profile) -> str:
    """The weight decay of each optimizer the ablation compares with the
    baseline's, as the recipes set it: 'Adam and sign-SGD (signum): none;
    AdamW: 0.05; AdamW then SGD at 50%: 0.0005'."""
    from cifar_lib.studies.classification.runs import optimizer_variants
    by: dict = {}
    for name, cfg in optimizer_variants(profile).items():
        if "(baseline)" not in name:
            by.setdefault(cfg.weight_decay, []).append(name)
    return "; ".join(f"{' and '.join(names)}: {f'{wd:g}' if wd else 'none'}"
                     for wd, names in by.items())


def lr_grid_failed_caption(profile: Profile) -> str | None:
    """The grid figure's caption clause on failed cells, there only when
    the figure draws one (a cell every run of which failed)."""
    recs = records(ABLATION["lr_grid"], profile)
    if not recs:
        return None
    failed = lr_grid_failed(recs).to_numpy().ravel()
    return ("; grey and hatched: a cell whose run failed, its accuracy in brackets "
            "and no colour" if any(failed) else "")


def report_columns(table):
    """``table`` as the report shows it: without the "seeds" column ("per
    seed" lists every seed, a failed or diverged one marked) and without
    the "failed" column where no row has a failed or diverged seed."""
    if table is None:
        return None
    drop = ["seeds"] + (["failed"] if "failed" in table and not table["failed"].any() else [])
    return table.drop(columns=[c for c in drop if c in table])


def _register_ablation_table(experiment):
    @register_table(experiment.name)
    def table(profile: Profile):
        recs = with_every_seed(records(experiment, profile), profile)
        if experiment is ABLATION["optimizers"]:
            return report_columns(tuned_table(recs, "optimizer"))
        return report_columns(summary_table(recs))


for _experiment in ABLATION.values():
    _register_ablation_table(_experiment)


def long_budget_summary(profile: Profile):
    """Per setting of the long-budget control, test accuracy at the short
    and the long budget (mean over the seeds that learned, every seed) and
    its difference from the baseline at each budget; None while a budget
    has no run."""
    recs = records(LONG_BUDGET, profile)
    if not recs:
        return None
    df = results_frame(recs)
    s = summarize(df, by="label", metrics=("test_acc",))
    rows = {}
    for label, m, seeds in zip(s["label"], s["test_acc_mean"], s["test_acc_seeds"]):
        name, _, epochs = label.rpartition(", ")
        rows.setdefault(name, {})[int(epochs.split()[0])] = (m, seeds)
    budgets = sorted({e for v in rows.values() for e in v})
    if len(budgets) != 2 or "baseline" not in rows:
        return None
    return rows, budgets


def _side(d: float, spread) -> str:
    """'+' better than the baseline beyond the seed spread, '-' worse, '0'
    a tie (within the largest gap between two seeds of one setting)."""
    s = spread or 0.0
    return "+" if d > s else "-" if d < -s else "0"


def _flip_word(d_short, d_long, spread_short=None, spread_long=None) -> str:
    """Whether a setting's verdict against the baseline holds with the
    budget: ``holds``, ``flips``, ``a tie at both budgets``, or how it
    changes where one side is a tie (differences within the seed spread)."""
    if d_short != d_short or d_long != d_long:
        return "pending"
    a, b = _side(d_short, spread_short), _side(d_long, spread_long)
    if a == b:
        return "a tie at both budgets" if a == "0" else "holds"
    if "0" not in (a, b):
        return "flips"
    word = {"+": "better", "-": "worse", "0": "a tie"}
    return f"changes: {word[a]} at the short budget, {word[b]} at the long one"


def _budget_spreads(rows: dict, budgets) -> dict:
    """Per budget, the largest gap between two seeds of one setting
    (points; None with one seed each)."""
    out = {}
    for e in budgets:
        gaps = [100 * (max(v) - min(v)) for by in rows.values() if e in by
                for v in [[x for st, x in by[e][1] if st == "ok" and x == x]] if len(v) > 1]
        out[e] = max(gaps) if gaps else None
    return out


def long_budget_verdicts(profile: Profile):
    """(rows, (short, long), spreads, verdicts) of the long-budget control:
    :func:`long_budget_summary`'s rows, :func:`_budget_spreads`, and per
    setting other than the baseline ``(difference at the short budget, at
    the long one, _flip_word)`` in points; None while a budget has no run."""
    got = long_budget_summary(profile)
    if got is None:
        return None
    rows, (short, long) = got
    base = rows["baseline"]
    spread = _budget_spreads(rows, (short, long))
    verdicts = {}
    for name, by in rows.items():
        if name == "baseline":
            continue
        # the difference of the printed means (:func:`shown`)
        d = {e: round(shown(by.get(e, (float("nan"),))[0])
                      - shown(base.get(e, (float("nan"),))[0]), 1)
             for e in (short, long)}
        verdicts[name] = (d[short], d[long],
                          _flip_word(d[short], d[long], spread[short], spread[long]))
    return rows, (short, long), spread, verdicts


@register_table("long_budget")
def long_budget_table(profile: Profile):
    """The long-budget control: which of section 1.3's conclusions hold at
    ``long_factor`` times the epochs (report section 1.3).

    Used by notebook 02 (report section 1.3)."""
    import pandas as pd
    got = long_budget_verdicts(profile)
    if got is None:
        return None
    rows, (short, long), _, verdicts = got
    out = []
    for name, by in rows.items():
        row = {"setting": name}
        for e in (short, long):
            m, seeds = by.get(e, (float("nan"), []))
            row[f"{e} epochs: test acc (%)"] = _pm(m, None)
            row[f"{e} epochs: per seed"] = per_seed(seeds)
        d_s, d_l, word = verdicts.get(name, (None, None, ""))
        # the verdict in one word; the reading below the table says how it changes
        row[f"vs baseline (points, {short} → {long} epochs)"] = \
            f"{d_s:+.1f} → {d_l:+.1f} (verdict {word.split(':')[0]})" if word else ""
        out.append(row)
    return pd.DataFrame(out)


def long_budget_reading(profile: Profile):
    """One sentence: which settings' verdicts against the baseline hold
    and which flip with the budget."""
    got = long_budget_verdicts(profile)
    if got is None:
        return None
    rows, (short, long), spread, verdicts = got
    groups = {"flips": [], "changes": [], "holds": [], "tie": []}
    word = {"+": "better", "-": "worse", "0": "a tie"}
    for name, (d_s, d_l, verdict) in verdicts.items():
        if short not in rows[name] or long not in rows[name]:
            continue
        key = "tie" if verdict.startswith("a tie") else verdict.split(":")[0]
        if key == "changes":  # say which way: a tie at one budget, a difference at the other
            a, b = _side(d_s, spread[short]), _side(d_l, spread[long])
            groups[key].append(f"{name} is {word[a]} at {short} epochs and {word[b]} at "
                               f"{long} ({d_s:+.1f} → {d_l:+.1f})")
        elif key in groups:
            groups[key].append(f"{name} ({d_s:+.1f} → {d_l:+.1f})")
    said = {"flips": "the verdict flips with the budget for ", "changes": "",
            "holds": "the verdict holds at both budgets for ",
            "tie": "it is a tie at both budgets for "}
    parts = [said[k] + ", ".join(v) for k, v in groups.items() if v]
    gaps = ", ".join(f"{spread[e]:.1f} at {e}" for e in (short, long) if spread[e] is not None)
    noise = (f" A difference within the largest gap between two seeds ({gaps} epochs) "
             "counts as a tie." if gaps else " One seed per setting: every difference counts.")
    return (f"Against the baseline at {short} and {long} epochs (points of test "
            f"accuracy), " + "; ".join(parts) + "." + noise)


def final_model_summary(profile: Profile):
    """(what, config, records) of the final model."""
    recs = records(FINAL_MODEL, profile)
    return recs or None


@register_table("final_model")
def final_model_table(profile: Profile):
    """The final model beside the course reports' best models (their
    numbers as quoted, on the original CIFAR-10).

    Used by notebook 02 (report section 1.2)."""
    import json
    from pathlib import Path

    import pandas as pd
    recs = final_model_summary(profile)
    if not recs:
        return None
    rows = []
    for r in recs:
        rows.append({"model": r["label"] + " (ours)", "test acc (%)":
                     f"{100 * r['metrics']['test_acc']:.1f}",
                     "epochs": r["config"]["epochs"], "data": r["data"]["source"],
                     "device": r["env"].get("device_name", "n/a"),
                     "train time (s)": f"{r['metrics']['train_time']:.0f}"})
    # the course reports' quoted numbers (read directly: the course-report
    # study imports this one)
    ref = json.loads((Path(__file__).resolve().parents[2] / "reference" /
                      "course_reports.json").read_text())
    best: dict[str, tuple] = {}
    for st in ref["settings"]:
        acc = {"test acc": st["value"], "test error": 100 - st["value"]}.get(st["metric"])
        if acc is not None and acc > best.get(st["report"], (0,))[0]:
            best[st["report"]] = (acc, st)
    for rep, (acc, st) in sorted(best.items()):
        epochs = st.get("epochs") or ref["reports"][rep]["epochs"]
        rows.append({"model": f"course report {rep}: {st['setting']}",
                     "test acc (%)": f"{acc:.2f}", "epochs": epochs if epochs else "not stated",
                     "data": "original CIFAR-10 (as quoted)", "device": "-",
                     "train time (s)": "-"})
    return pd.DataFrame(rows)


def final_model_note(profile: Profile):
    recs = final_model_summary(profile)
    if not recs:
        return None
    r = recs[0]
    return (f"{r['label']} for {r['config']['epochs']} epochs: "
            f"{100 * r['metrics']['test_acc']:.1f}% test accuracy on {r['data']['source']}")


# CIFAR-10's training set, which the course reports trained on
CIFAR_TRAIN = 50_000


def final_model_reading(profile: Profile) -> str | None:
    """Under the final model's table: what ours was trained on against the
    course reports' quoted best (their range of accuracy and epochs), and
    whether the two can be compared at all in this profile (a fraction of
    the training images or of the width cannot be)."""
    t = final_model_table(profile)
    recs = final_model_summary(profile)
    if t is None or not recs:
        return None
    r = recs[0]
    theirs = t[t["model"].str.startswith("course report")]
    accs = [float(v) for v in theirs["test acc (%)"]]
    epochs = [int(e) for e in theirs["epochs"] if str(e).isdigit()]
    train = r["data"].get("train") or 0
    width = float((r["config"].get("model_kw") or {}).get("width", 1.0))
    ours = (f"Ours reaches {100 * r['metrics']['test_acc']:.1f}% after "
            f"{r['config']['epochs']} epochs on {train:,} training images"
            + (f", at {width:g} of the published width" if width != 1 else ""))
    quoted = (f"the course reports quote {min(accs):.1f}-{max(accs):.1f}% for their best "
              f"models on CIFAR-10's {CIFAR_TRAIN:,} training images"
              + (f", after {min(epochs)}-{max(epochs)} epochs where stated" if epochs else ""))
    if train < 0.5 * CIFAR_TRAIN or width < 1:
        verdict = (f"with {train / CIFAR_TRAIN:.0%} of the training images"
                   + (f" and {width:g} of the width" if width != 1 else "")
                   + ", this profile's number says what the recipe does at its scale and is "
                   "not comparable with theirs (the full profile's is)")
    else:
        verdict = (f"ours trains fewer epochs than any of theirs, so a gap mixes the recipe "
                   f"with the budget" if epochs and r["config"]["epochs"] < min(epochs) else
                   "their recipes, networks and epochs differ from ours, so the rows compare "
                   "results, not recipes")
    return f"{ours}; {quoted}: {verdict}."


@register_table("ablations_old_recipe")
def old_ablations_table(profile: Profile):
    """Every ablation under the old baseline (``fast_recipe``), where its
    runs are stored (report appendix)."""
    import pandas as pd
    from cifar_lib.studies.classification.runs import factor_name
    parts = []
    for key, exp in OLD_ABLATION.items():
        t = summary_table(records(exp, profile))
        if t is not None:
            t.insert(0, "ablation", factor_name(key))
            parts.append(t[["ablation", "variant", "test acc (%)", "per seed", "failed"]])
    if not parts:  # a profile that never ran the old baseline: the appendix is left out
        return None
    return report_columns(pd.concat(parts, ignore_index=True).fillna(""))


@register_table("data")
def data_table(profile: Profile):
    """Used by notebook 00 (report section 1.1)."""
    import pandas as pd
    s = read(profile, "summaries", "data.json")
    if s is None:
        return None
    rows = [{"split": n, "images": f"{s['sizes'][n]:,}",
             "per class (min-max)": f"{min(c)}-{max(c)}"}
            for n, c in s["class_counts"].items()]
    return pd.DataFrame(rows)


@register_table("data_stats")
def data_stats_table(profile: Profile):
    """Used by notebook 00 (report section 1.1)."""
    import pandas as pd
    from cifar_lib.data import CIFAR10_MEAN, CIFAR10_STD
    s = read(profile, "summaries", "data.json")
    if s is None:
        return None
    return pd.DataFrame({"channel": ["red", "green", "blue"],
                         "mean (train split)": [f"{v:.4f}" for v in s["mean"]],
                         "std (train split)": [f"{v:.4f}" for v in s["std"]],
                         "mean (original CIFAR-10)": [f"{v:.4f}" for v in CIFAR10_MEAN],
                         "std (original CIFAR-10)": [f"{v:.4f}" for v in CIFAR10_STD]})


def data_reading(profile: Profile):
    """One sentence under the data tables: whether every split is class
    balanced, and how far the train split's channel statistics are from
    the original CIFAR-10's (computed from the stored summary)."""
    from cifar_lib.data import CIFAR10_MEAN, CIFAR10_STD
    s = read(profile, "summaries", "data.json")
    if s is None:
        return None
    uneven = [n for n, c in s["class_counts"].items() if min(c) != max(c)]
    balance = ("every split has the same number of images in each class" if not uneven else
               "classes differ in size in " + ", ".join(
                   f"{n} ({min(c)} to {max(c)})" for n, c in s["class_counts"].items()
                   if n in uneven))
    dm = max(abs(a - b) for a, b in zip(s["mean"], CIFAR10_MEAN))
    ds = max(abs(a - b) for a, b in zip(s["std"], CIFAR10_STD))
    shift = max(abs(a - b) / sd for a, b, sd in zip(s["mean"], CIFAR10_MEAN, s["std"]))
    return (f"{balance[0].upper()}{balance[1:]}; the train split's channel means are within "
            f"{dm:.4f} and its standard deviations within {ds:.4f} of the original "
            f"CIFAR-10's (normalising with one instead of the other shifts inputs by at most "
            f"{100 * shift:.1f}% of a standard deviation).")


def data_source(profile: Profile):
    s = read(profile, "summaries", "data.json")
    return None if s is None else s["source"]


def _spread(t: dict) -> str:
    return f"{t['median']:.2f} ({t['min']:.2f}-{t['max']:.2f})"


def _race_rows(race: dict, device: str, what: str, note: str) -> list[dict]:
    """One race's rows: airbench94, then FastNet at each budget, each a
    median of its runs with the spread, the ratio to airbench94's time."""
    ab = race["airbench94"]
    rows = [{"measure": f"{what}: airbench94 (9.9 epochs), median of {ab['time_s'].get('n', 5)}",
             "device": device, "time": _spread(ab["time_s"]),
             "acc": _pm(ab["test_acc"]["median"], None, digits=2), "ratio": "1 (reference)"}]
    for name, v in race["fastnet"].items():
        reached = v["test_acc"]["median"] >= ab["test_acc"]["median"]
        rows.append({"measure": f"{what}: FastNet, {note}, {name.replace('.0 epochs', ' epochs')}, "
                                f"median of {v['time_s'].get('n', 5)}",
                     "device": device, "time": _spread(v["time_s"]),
                     "acc": _pm(v["test_acc"]["median"], None, digits=2),
                     "ratio": f"{v['time_s']['median'] / ab['time_s']['median']:.2f}x airbench's "
                              f"time{'' if reached else ', below its accuracy'}"})
    return rows


@register_table("benchmarks")
def benchmarks_table(profile: Profile):
    """README: the speed record against airbench94 (the like-for-like race
    first, then the old recipe's race) and the pipeline against a
    DataLoader with PIL transforms (results/benchmarks.json, written by
    benchmarks/summarize.py from the GPU runs), each row with its device."""
    import pandas as pd
    b = read(profile, "benchmarks.json")
    if not b:
        return None
    rows = []
    fair = b.get("airbench_race_like_for_like")
    if fair:
        rows += _race_rows(fair, fair["device"], "like for like",
                           "airbench_recipe, training only timed")
    rows += _race_rows(b["airbench_race"], b["device"], "old race",
                       "fast_recipe (old), per-epoch validation timed")
    graphs = b.get("cuda_graphs")
    for mode, v in (graphs or {}).get("modes", {}).items():
        rows.append({"measure": f"CUDA graphs: FastNet, airbench_recipe, {graphs['epochs']:g} "
                                f"epochs, {mode} (warm-up run {v['warmup_run_s']:.1f} s), "
                                f"median of {v['time_s'].get('n', 3)}",
                     "device": graphs["device"], "time": _spread(v["time_s"]),
                     "acc": _pm(v["test_acc"]["median"], None, digits=2),
                     "ratio": f"{v['ratio_to_eager']:.2f}x eager's time"})
    for model, t in b["throughput"].items():
        rows.append({"measure": f"{model} training images/s: ours vs DataLoader+PIL "
                                f"({t['workers']} workers), batch {t['batch_size']}",
                     "device": b["device"],
                     "time": f"{t['ours_images_per_s']:,.0f} vs "
                             f"{t['dataloader_pil_images_per_s']:,.0f} img/s",
                     "acc": "", "ratio": f"{t['ratio']:.2f}x"})
    df = pd.DataFrame(rows)
    df.columns = ["measure", "device", "time (s) or throughput", "test acc (%)", "ratio"]
    return df


def benchmark_device(profile: Profile):
    b = read(profile, "benchmarks.json")
    if not b:
        return None
    fair = b.get("airbench_race_like_for_like")
    if fair and fair["device"] != b["device"]:
        return (f"{fair['device']}, torch {fair['torch']} (the like-for-like race) and "
                f"{b['device']}, torch {b['torch']} (the old race, throughput), {b['data']}")
    return f"{b['device']}, torch {b['torch']}, {b['data']}"


def benchmark_reading(profile: Profile):
    """README: what the like-for-like race says, from its numbers: the
    shortest budget at which FastNet's median accuracy reaches airbench94's,
    its time ratio, and the budgets that are faster but short of it."""
    b = read(profile, "benchmarks.json")
    fair = (b or {}).get("airbench_race_like_for_like")
    if not fair:
        return None
    ab = fair["airbench94"]
    acc, t = ab["test_acc"]["median"], ab["time_s"]["median"]
    runs = [(float(k.split()[0]), v["test_acc"]["median"], v["time_s"]["median"])
            for k, v in fair["fastnet"].items()]
    reach = [r for r in runs if r[1] >= acc]
    head = (f"Like for like on {fair['device']} (training only timed on both sides), "
            f"airbench94 reaches {100 * acc:.2f}% in {t:.2f} s (medians of 5).")
    if reach:
        e, a, s = min(reach)
        verdict = "within" if s <= t else "over"
        head += (f" FastNet under airbench_recipe first reaches it at {e:g} epochs "
                 f"({100 * a:.2f}% in {s:.2f} s): {s / t:.2f}x airbench94's time, "
                 f"{verdict} the goal of at most 1.0x.")
        head += _race_margin(ab["test_acc"], runs, a - acc, t)
    else:
        head += " FastNet under airbench_recipe does not reach it at any budget raced."
    short = [r for r in runs if r[1] < acc and r[2] <= t]
    if short:
        e, a, s = max(short)
        head += (f" At {e:g} epochs it is faster ({s:.2f} s, {s / t:.2f}x) but "
                 f"{100 * (acc - a):.2f} points short ({100 * a:.2f}%).")
    return head + _graphs_reading(b.get("cuda_graphs"))


def _race_margin(ab_acc: dict, runs: list, margin: float, t: float) -> str:
    """Whether the first reaching budget's margin stands out of airbench94's
    run-to-run range, and the first budget whose median clears all of it."""
    lo, hi = ab_acc.get("min"), ab_acc.get("max")
    if lo is None or hi is None or margin > hi - ab_acc["median"]:
        return ""
    text = (f" Its margin ({100 * margin:.2f} points) lies inside airbench94's run-to-run "
            f"range ({100 * lo:.2f}-{100 * hi:.2f}%)")
    clear = [r for r in runs if r[1] > hi]
    if not clear:
        return text + "; no budget raced clears all of it."
    e, a, s = min(clear)
    return (text + f"; FastNet's median clears all of it first at {e:g} epochs "
            f"({100 * a:.2f}% in {s:.2f} s, {s / t:.2f}x airbench94's time).")


def _graphs_reading(g: dict | None) -> str:
    """CUDA graphs' and torch.compile's time against eager's (one call)."""
    modes = (g or {}).get("modes", {})
    if "eager" not in modes or "reduce-overhead" not in modes:
        return ""
    eager, ro = modes["eager"]["time_s"]["median"], modes["reduce-overhead"]["time_s"]["median"]
    r = ro / eager
    text = (f" CUDA graphs (`torch.compile(mode=\"reduce-overhead\")`, "
            f"{g.get('device', 'same device')}) {'cut' if r < 1 else 'raise'} FastNet's "
            f"{g['epochs']:g}-epoch training to {r:.2f}x eager's time ({ro:.2f} s against "
            f"{eager:.2f} s, medians of {modes['eager']['time_s']['n']}, one call)")
    if "compile" in modes:
        c = modes["compile"]["time_s"]["median"] / eager
        text += (f"; plain `torch.compile` is {'slower' if c > 1 else 'faster'} "
                 f"({c:.2f}x)")
    return text + "."


def best_model(profile: Profile):
    s = arch_summary(profile)
    if s is None:
        return None
    best = s.sort_values("test_acc_mean", ascending=False).iloc[0]
    return (f"{display_name(best['label'])} "
            f"({_pm(best['test_acc_mean'], best['test_acc_std'])}% test accuracy)")


def arch_weak(profile: Profile):
    """Architectures whose mean test accuracy stays below 50% (report 1.2)."""
    s = arch_summary(profile)
    if s is None:
        return None
    weak = s[s["test_acc_mean"] < 0.5]
    if not len(weak):
        return "none"
    return ", ".join(f"{display_name(r['label'])} ({_pm(r['test_acc_mean'], r['test_acc_std'])}%)"
                     for _, r in weak.iterrows())


def arch_widths(profile: Profile) -> str:
    """Which architectures this profile trains at a reduced width (report
    1.2), from the profile's model list, so it never waits for a result."""
    from cifar_lib.studies.classification.runs import arch_models
    narrow: dict[float, list[str]] = {}
    for label, _, kw in arch_models(profile):
        width = kw.get("width", 1.0)
        if width != 1.0:
            narrow.setdefault(width, []).append(display_name(label))
    if not narrow:
        return "Every model runs at its published width."
    parts = [f"{', '.join(labels)} at width {width:g}" for width, labels in narrow.items()]
    return (f"This profile trains {'; '.join(parts)} (channel counts scaled; the "
            f"`params` and `MFLOPs` columns), every other model at its published width.")


def grid_growth(profile: Profile) -> str:
    """How far a rate grid grows beyond an end that wins (a fixed setting
    of the profile: never pending)."""
    from cifar_lib.studies.classification.runs import sizes
    n = sizes(profile).grid_growth
    if not n:
        return "In this profile a grid does not grow: a choice at an end is marked as such."
    return (f"Where an end of the grid wins, the grid grows by one rate beyond it (a third "
            f"of the lowest or three times the highest), up to {n} time{'s' if n > 1 else ''}, "
            "so a choice at an end of the grown grid means the best rate may still lie "
            "beyond it.")


def baseline_records(profile: Profile) -> list[dict]:
    """The ablation baseline's runs at its chosen rate (every seed; not
    the other rates of its grid)."""
    from cifar_lib.studies.classification.runs import BASELINE, baseline_choice
    chosen, _ = baseline_choice(profile)
    want = {k: v for k, v in chosen.to_dict().items() if k != "seed"}
    return [r for r in records(BASELINE, profile)
            if {k: v for k, v in r["config"].items() if k != "seed"} == want]


def baseline_acc(profile: Profile):
    """The ablation baseline's test accuracy at its chosen rate (mean ± std
    over its seeds, then each seed)."""
    base = baseline_records(profile)
    if not base:
        return None
    s = summarize(results_frame(base), metrics=("test_acc",))
    seeds = ", ".join(f"{100 * r['metrics']['test_acc']:.1f}" for r in
                      sorted(base, key=lambda r: r["config"]["seed"]))
    return (f"{_pm(s['test_acc_mean'][0], s['test_acc_std'][0])}% (seeds: {seeds}; "
            f"lr {base[0]['config']['lr']:g}, chosen on validation)")


def profile_note(profile: Profile):
    s = read(profile, "summaries", "data.json")
    if s is None:
        return f"profile `{profile.name}` (no data summary yet)"
    n = s["sizes"]
    return (f"profile `{profile.name}`: {s['source']}, {n['train']:,} training / "
            f"{n['val']:,} validation / {n['test']:,} test images")


@register_table("headline")
def headline_table(profile: Profile):
    """README's headline: best architecture and the FastNet baseline."""
    import pandas as pd
    rows = []
    for what, recs in (("best architecture, shared recipe",
                        at_chosen(records(ARCHITECTURES, profile))[0]),
                       ("FastNet ablation baseline", baseline_records(profile))):
        if not recs:
            continue
        s = summarize(results_frame(recs), by="label",
                      metrics=("test_acc", "train_time", "params", "epochs"))
        best = s.sort_values("test_acc_mean", ascending=False).iloc[0]
        rec = next(r for r in recs if r["label"] == best["label"])
        rows.append({"result": what, "model": display_name(rec["config"]["model"]),
                     "test acc (%)": _pm(best["test_acc_mean"], best["test_acc_std"]),
                     "seeds": int(best["runs"]), "epochs": int(best["epochs_mean"]),
                     "train time (s)": f"{best['train_time_mean']:.0f}",
                     "data": rec["data"]["source"], "device": rec["env"]["device_name"]})
    return pd.DataFrame(rows) if rows else None


def noise_records(profile: Profile) -> list[dict]:
    """FastNet runs trained with two seeds besides the ablation tables (the
    baseline and the long-budget control's settings): where an ablation
    row has one seed, their seed gaps at the same epochs measure the noise
    its lead is set against (:func:`lead_noise`)."""
    from cifar_lib.studies.classification.runs import BASELINE
    return records(BASELINE, profile) + records(LONG_BUDGET, profile)


def at_epochs(recs: list[dict], like: list[dict]) -> list[dict]:
    """The records of ``recs`` trained for as many epochs as one of ``like``."""
    epochs = {r["config"]["epochs"] for r in like}
    return [r for r in recs if r["config"]["epochs"] in epochs]


def _seed_gaps(recs: list[dict]) -> list[float]:
    """Per setting with two or more seeds that learned, the gap (points)
    between its best and worst seed."""
    import json
    by: dict = {}
    for r in recs:
        if learned(r):
            setting = json.dumps({k: v for k, v in r["config"].items() if k != "seed"},
                                 sort_keys=True)
            by.setdefault(setting, {})[r["config"]["seed"]] = 100 * r["metrics"]["test_acc"]
    by = {k: list(v.values()) for k, v in by.items()}
    return [max(v) - min(v) for v in by.values() if len(v) > 1]


def lead_noise(recs: list[dict], labels, pool: list[dict] | None = None,
               one_factor: bool = False) -> tuple:
    """(spread in points, its words) that a lead between the rows
    ``labels`` of ``recs`` is set against.

    The table's noise is the largest gap over every setting of ``recs``
    and ``pool`` with two seeds at the same epochs (:func:`spread_words`;
    the shaded band of an ablation's figure). Where each row has two seeds
    that learned, their own seed gaps count too: in a ``one_factor`` table
    (an ablation: one network, one factor changed, so one seed noise) the
    larger of the two is used, so that two seeds that happened to agree
    cannot make a lead inside the band count; across architectures, whose
    seed noise differs from model to model, the two rows' own gaps alone
    (an erratic third model's gap says nothing about these two).
    (None, "") with one seed everywhere."""
    own: dict = {}
    for r in recs:
        if r["label"] in labels and learned(r):
            own.setdefault(r["label"], []).append(100 * r["metrics"]["test_acc"])
    gaps = _seed_gaps(recs + at_epochs(pool or [], recs))
    table = (max(gaps), spread_words(gaps)) if gaps else (None, "")
    if all(len(own.get(lbl, [])) > 1 for lbl in labels):
        g = [max(own[lbl]) - min(own[lbl]) for lbl in labels]
        mine = (max(g), "the two rows' own seed gaps ("
                + " and ".join(f"{v:.1f}" for v in g) + " points)")
        if one_factor and table[0] is not None and round(table[0], 1) > round(mine[0], 1):
            return table
        return mine
    return table


def spread_words(gaps: list[float]) -> str:
    """'the seed noise (0.7 points, the largest of 5 two-seed gaps)': the
    largest gap between two seeds of one setting, over the settings with
    two seeds (the summary and section 1.3 say so at their start)."""
    n = len(gaps)
    if n == 1:
        return f"the seed noise ({gaps[0]:.1f} points, the one two-seed gap measured so far)"
    return f"the seed noise ({max(gaps):.1f} points, the largest of {n} two-seed gaps)"


def _ranked(df):
    """The rows of a :func:`results_frame` by mean test accuracy over the
    seeds that learned, best first (failed rows left out)."""
    s = summarize(df, by="label", metrics=("test_acc",))
    return s[s["test_acc_mean"].notna()].sort_values("test_acc_mean", ascending=False)


def best_vs_baseline(recs: list[dict], baseline_recs: list[dict] | None = None,
                     ranked=None) -> dict | None:
    """The best row (mean test accuracy over the seeds that learned), the
    baseline's, the lead in points (over the runner-up where the baseline
    leads or there is none), the seed noise it is set against
    (:func:`lead_noise`: None with one seed each) and whether the lead
    exceeds it. None with fewer than two rows. Both the summary's answers
    and the readings under the tables (:func:`reading`) are built from it."""
    if not recs:
        return None
    s = _ranked(results_frame(recs)) if ranked is None else ranked
    if len(s) < 2:  # nothing to compare yet
        return None
    base = s[s["label"].str.contains("(baseline)", regex=False)]
    best = s.iloc[0]
    out = {"best": best["label"], "best_acc": shown(best["test_acc_mean"]),
           "base": None, "base_acc": None, "lead": None}
    if len(base):
        out["base"], out["base_acc"] = base.iloc[0]["label"], shown(base.iloc[0]["test_acc_mean"])
    if out["base"] is None or best["label"] == out["base"]:
        # the baseline leads, or there is none (the architectures): the lead
        # over the runner-up
        out["lead"] = round(out["best_acc"] - shown(s.iloc[1]["test_acc_mean"]), 1)
        out["runner_up"] = other = s.iloc[1]["label"]
    else:
        out["lead"] = round(out["best_acc"] - out["base_acc"], 1)
        other = out["base"]
    # a table with a baseline is one network with one factor changed
    out["spread"], out["noise"] = lead_noise(recs, (best["label"], other), baseline_recs,
                                             one_factor=out["base"] is not None)
    out["beyond_noise"] = (out["spread"] is not None
                           and out["lead"] > round(out["spread"], 1))
    out["apart"] = apart_from_baseline(recs, s, out, baseline_recs)
    out["others"] = len(set(s["label"]) - {out["best"], out["base"]})
    return out


def shown(acc: float) -> float:
    """An accuracy (0-1) in percent as the tables print it (one decimal):
    a lead is the difference of the printed numbers, so a sentence agrees
    with its table (61.95 prints as 61.9; 62.55 - 61.95 would read 0.6
    beside a printed 62.6 and 61.9)."""
    return round(100 * float(acc), 1)


def apart_from_baseline(recs: list[dict], ranked, b: dict, pool=None) -> list[tuple]:
    """Every row other than the best whose difference from the baseline is
    larger than the seed noise it is set against (:func:`lead_noise`):
    ``[(label, points)]``, largest difference first; [] without a baseline
    or where no noise is measured."""
    if b["base"] is None:
        return []
    out = []
    for label, acc in zip(ranked["label"], ranked["test_acc_mean"]):
        if label in (b["base"], b["best"]):
            continue
        d = round(shown(acc) - b["base_acc"], 1)
        spread, _ = lead_noise(recs, (label, b["base"]), pool, one_factor=True)
        if spread is not None and abs(d) > round(spread, 1):
            out.append((label, d))
    return sorted(out, key=lambda p: -abs(p[1]))


def reading(recs: list[dict], baseline_recs: list[dict] | None = None,
            what: str = "row") -> str | None:
    """One sentence under a table: the best row, its lead over the
    baseline against the spread over seeds (:func:`best_vs_baseline`), and
    the caveats (failed seeds, one seed, the budget)."""
    if not recs:
        return None
    df = results_frame(recs)
    ranked = _ranked(df)
    if not len(ranked):
        return "Every run of this table failed."
    if len(ranked) < 2:
        return "Only one row has run so far: nothing to compare yet."
    b = best_vs_baseline(recs, baseline_recs, ranked)
    one_seed = " (one seed each: no spread to compare with)"
    out = f"Best {what}: {b['best']} at {b['best_acc']:.1f}%"
    if b["base"] is not None and b["best"] != b["base"]:
        out += f", {b['lead']:+.1f} points over the baseline"
        out += (one_seed if b["spread"] is None else
                f", more than {b['noise']}" if b["beyond_noise"] else
                f", within {b['noise']}: not a reliable difference")
    else:  # the baseline leads, or there is none (the architectures)
        itself = ", the baseline itself," if b["base"] is not None else ","
        out += f"{itself} {b['lead']:.1f} points ahead of {b['runner_up']}"
        out += (one_seed if b["spread"] is None else
                f", {'more than' if b['beyond_noise'] else 'within'} {b['noise']}")
    n_failed = int((df["status"] != "ok").sum())
    if n_failed:
        out += (f"; {n_failed} run{' has' if n_failed == 1 else 's have'} failed and "
                f"{'is' if n_failed == 1 else 'are'} left out of the means")
    epochs = sorted({r["config"]["epochs"] for r in recs})
    out += (f"; at {epochs[0]} epochs" if len(epochs) == 1 else
            f"; at {epochs[0]}-{epochs[-1]} epochs") + "."
    return out + apart_sentence(b)


def apart_sentence(b: dict) -> str:
    """The rows other than the best that differ from the baseline by more
    than their seed noise (:func:`apart_from_baseline`), as a sentence;
    where a baseline and a noise exist and no row does, that too."""
    if b["base"] is None or b["spread"] is None or not b["others"]:
        return ""
    if not b["apart"]:
        return " No other row differs from the baseline by more than its seed noise."
    out = ""
    for side, sign in (("Below", -1), ("Above", 1)):
        rows = [f"{lbl} ({d:+.1f})" for lbl, d in b["apart"] if d * sign > 0]
        if rows:
            out += (f" {side} the baseline by more than the seed noise (points): "
                    f"{', '.join(rows)}.")
    return out


# The value under each ablation table (spelled out: report.md's names are
# found in the code).
READINGS = {"optimizers": "reading_ablation_optimizers",
            "schedulers": "reading_ablation_schedulers",
            "losses": "reading_ablation_losses", "activations": "reading_ablation_activations",
            "regularisation": "reading_ablation_regularisation",
            "augmentation": "reading_ablation_augmentation",
            "lr_grid": "reading_ablation_lr_grid", "batch_size": "reading_ablation_batch_size",
            "stem": "reading_ablation_stem"}


def _readings(profile: Profile) -> dict:
    base = noise_records(profile)
    out = {}
    for key, exp in ABLATION.items():
        recs = with_every_seed(records(exp, profile), profile)
        note = ""
        if key == "optimizers":
            recs, grids = at_chosen(recs)
            note = edge_note(grids)
        text = reading(recs, base if key != "stem" else None,
                       "optimizer" if key == "optimizers" else "row")
        if key == "lr_grid" and text:
            note = grid_schedules_note(recs)
        out[READINGS[key]] = text + note if text else text
    arch = records(ARCHITECTURES, profile)
    if arch:
        keep, grids = displayed(*at_chosen(arch))
        text = reading(keep, None, "model")
        out["reading_architectures"] = text + edge_note(grids) if text else text
    else:
        out["reading_architectures"] = None
    return out


def grid_schedules_note(recs: list[dict]) -> str:
    """Under the rate x schedule grid: at each rate where both schedules
    learned, which scored higher and by how much (first seed of each cell);
    a cell whose run failed is named, never subtracted."""
    status = results_frame(recs)["status"]
    cells: dict = {}
    for r, st in sorted(zip(recs, status), key=lambda p: -p[0]["config"]["seed"]):
        # the first seed wins; a failed run has no accuracy to compare
        cells.setdefault(r["config"]["lr"], {})[r["config"]["scheduler"]] = \
            100 * r["metrics"]["test_acc"] if st == "ok" else None
    pairs = [(lr, c) for lr, c in sorted(cells.items(), reverse=True) if len(c) == 2]
    both = [(lr, c) for lr, c in pairs if None not in c.values()]
    failed = [f"{sch} failed at lr {lr:g}" for lr, c in pairs
              for sch, v in sorted(c.items()) if v is None]
    if not both:
        return f" {'; '.join(failed).capitalize()}." if failed else ""
    a, b = sorted(both[0][1])
    diffs = [(lr, c[a] - c[b]) for lr, c in both]
    each = ", ".join(f"{d:+.1f}{' points' if not i else ''} at lr {lr:g}"
                     for i, (lr, d) in enumerate(diffs))
    where = " where both learned" if failed else ""
    tail = f"; {', '.join(failed)}" if failed else ""
    if all(d > 0 for _, d in diffs):
        win, lose = a, b
    elif all(d < 0 for _, d in diffs):
        win, lose = b, a
    else:
        return (f" Neither schedule wins at every rate{where} ({a} minus {b}: {each}"
                f"{tail}).")
    return (f" The {win} schedule beats {lose} at every rate{where} ({a} minus {b}: "
            f"{each}{tail}).")


def inside_observations(profile: Profile) -> dict:
    """Section 1.4's observations, computed from notebook 03's stored
    measurement: the most confused pair of classes, the weakest and
    strongest class, each model's calibration error and its direction, and
    the pairs behind the wrong predictions the Grad-CAM figure shows."""
    import numpy as np
    d = vis_measured(profile)
    keys = ("vis_confused", "vis_classes", "vis_calibration", "vis_cam_wrong",
            "reading_calibration", "vis_cam_other_preds", "vis_cam_correct_preds")
    if not d:
        return dict.fromkeys(keys)
    classes = d["classes"]
    cm = np.asarray(d["confusion"]["matrix"], dtype=float)
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    off = rows.copy()
    np.fill_diagonal(off, -1)
    i, j = np.unravel_index(np.argmax(off), off.shape)
    confused = (f"{display_name(d['confusion']['model'])} predicts {classes[j]} for "
                f"{100 * rows[i, j]:.0f}% of the {classes[i]} test images, the most "
                f"confused pair")
    model = d["confusion"]["model"]
    acc = d["per_class"].get(model)
    per_class = None
    if acc is not None:
        lo, hi = int(np.argmin(acc)), int(np.argmax(acc))
        per_class = (f"{display_name(model)}'s weakest class is {classes[lo]} ({100 * acc[lo]:.0f}%), its "
                     f"strongest {classes[hi]} ({100 * acc[hi]:.0f}%)")
    parts = []
    for name, c in d["calibration"].items():
        way = {1: "overconfident", -1: "underconfident"}.get(_miss(c))
        parts.append(f"{display_name(name)} ECE {c['ece']:.3f} (" + (
            f"{way}: mean confidence {100 * c['confidence']:.1f}% against "
            f"{100 * c['acc']:.1f}% accuracy" if way else
            f"mean confidence and accuracy both {100 * c['acc']:.1f}%") + ")")
    pairs = [t for t in d["cam_wrong"]["titles"] if "->" in t]
    cam = None
    if pairs:
        cam = (f"the wrong predictions shown are {', '.join(p.replace('->', ' taken for ') for p in pairs[:5])}"
               + (" and more" if len(pairs) > 5 else ""))
    # a measurement stored before the CAM panels kept each model's class says so
    said = {k: bool((d.get(f"cam_{k}") or {}).get("preds")) for k in ("wrong", "correct")}
    foot = "(bold where it is the true class)"
    return {"vis_confused": confused, "vis_classes": per_class,
            "vis_calibration": "; ".join(parts), "vis_cam_wrong": cam,
            "reading_calibration": calibration_reading(d["calibration"]),
            "vis_cam_other_preds": (f", written at the foot of its maps {foot}"
                                    if said["wrong"] else " (not shown)"),
            "vis_cam_correct_preds": (" FastNet's maps are for its own prediction, written "
                                      f"at the foot of each {foot}." if said["correct"] else "")}


def _miss(c: dict) -> int:
    """1 where a model's mean confidence is above its accuracy, -1 below, 0
    where the two agree to the 0.1 point the report prints them with (so
    that no sentence calls 87.9% against 87.9% over- or underconfident)."""
    gap = round(100 * (c["confidence"] - c["acc"]), 1)
    return (gap > 0) - (gap < 0)


def calibration_reading(cal: dict) -> str | None:
    """One sentence under the calibration table: the best calibrated model,
    and which way the models miss (confidence above or below accuracy, or
    neither to the printed 0.1 point)."""
    if not cal:
        return None
    cal = {display_name(m): c for m, c in cal.items()}
    best = min(cal, key=lambda m: cal[m]["ece"])
    side = {k: [m for m, c in cal.items() if _miss(c) == k] for k in (1, -1, 0)}
    if len(side[1]) == len(cal):
        way = "every model is overconfident (mean confidence above accuracy)"
    elif len(side[-1]) == len(cal):
        way = "every model is underconfident (mean confidence below accuracy)"
    else:
        way = "; ".join(f"{w}: {', '.join(side[k])}" for k, w in (
            (1, "overconfident"), (-1, "underconfident"),
            (0, "mean confidence equal to accuracy (to 0.1 point)")) if side[k])
    return f"Best calibrated: {best} (ECE {cal[best]['ece']:.3f}); {way}."


@register_values
def values(profile: Profile) -> dict:
    """Section 1's report values (None where the results are not on disk).

    Used by report.md's sections 1.1-1.3 and the README."""
    return {"profile": profile_note(profile), "data_source": data_source(profile),
            "data_reading": data_reading(profile),
            "best_model": best_model(profile), "arch_weak": arch_weak(profile),
            "arch_widths": arch_widths(profile),
            "grid_growth": grid_growth(profile),
            "baseline_acc": baseline_acc(profile),
            "long_budget_reading": long_budget_reading(profile),
            "final_model": final_model_note(profile),
            "final_model_reading": final_model_reading(profile),
            "lr_grid_failed_cells": lr_grid_failed_caption(profile),
            "optimizer_decays": optimizer_decays(profile),
            **_readings(profile), **inside_observations(profile),
            "benchmark_device": benchmark_device(profile),
            "benchmark_reading": benchmark_reading(profile)}


# ---------------------------------------------------------------- figures
# Drawn from stored results by ``report`` and by the notebooks'
# ``viz.figure(name, P)``; None while their results are missing.


@register_figure("data_class_balance.png")
def fig_class_balance(profile: Profile):
    from cifar_lib import viz
    s = read(profile, "summaries", "data.json")
    return None if s is None else viz.class_balance(s["class_counts"], s["classes"])


@register_figure("data_samples.png")
def fig_samples(profile: Profile):
    from cifar_lib import analysis, viz
    split = loaded_split(profile)
    if split is None:
        return None
    x, y = split.train
    idx = analysis.per_class_indices(y, 10)      # ten per class, one class per row
    names = [split.classes[int(k)] for k in y[idx]]
    rows = names[::10]        # a row per class, unless a class is short of ten: a title each
    rows = rows if names == [n for n in rows for _ in range(10)] else None
    return viz.image_grid(x[idx], names, ncols=10, row_labels=rows)


@register_figure("data_pixel_hist.png")
def fig_pixel_hist(profile: Profile):
    from cifar_lib import viz
    split = loaded_split(profile)
    return None if split is None else viz.channel_histograms(split.train[0][:10000])


@register_figure("data_augmentations.png")
def fig_augmentations(profile: Profile):
    from cifar_lib import analysis, viz
    split = loaded_split(profile)
    return None if split is None else viz.image_rows(analysis.augmentation_examples(split, n=8))


@register_figure("arch_acc_vs_params.png")
def fig_acc_vs_params(profile: Profile):
    from cifar_lib import viz
    s = arch_summary(profile)
    return None if s is None else viz.accuracy_vs_params(
        s.assign(label=[display_name(lbl) for lbl in s["label"]]))


@register_figure("arch_curves.png")
def fig_arch_curves(profile: Profile):
    from cifar_lib import viz
    recs = first_seed(at_chosen(records(ARCHITECTURES, profile))[0])  # at its chosen rate
    return viz.learning_curves(recs, labels=[display_name(r["label"]) for r in recs]) \
        if recs else None


@register_figure("arch_lr.png")
def fig_arch_lr(profile: Profile):
    from cifar_lib import viz
    recs = first_seed(at_chosen(records(ARCHITECTURES, profile))[0])  # at its chosen rate
    return viz.lr_curves(recs, labels=[display_name(r["label"]) for r in recs]) \
        if recs else None


# (ablation, figure, title) of the learning-curve figures of section 1.3
ABLATION_FIGURES = (
    ("optimizers", "abl_optimizers.png", "Optimizers (FastNet)"),
    ("schedulers", "abl_schedulers.png", "Learning-rate schedules (FastNet)"),
    ("losses", "abl_losses.png", "Losses (FastNet)"),
    ("activations", "abl_activations.png", "Activations (FastNet)"),
    ("regularisation", "abl_regularisation.png", "Regularisation (FastNet)"),
    ("augmentation", "abl_augmentation.png", "Augmentation and normalisation (FastNet)"),
    ("lr_grid", "abl_lr_grid_curves.png", "Learning rate x schedule grid (FastNet)"),
    ("batch_size", "abl_batch_size.png", "Batch size (FastNet)"),
    ("stem", "abl_stem.png", "Stem (ResNet-18)"))


def _register_curves(key: str, name: str, title: str) -> None:
    @register_figure(name)
    def fig(profile: Profile):
        from cifar_lib import viz
        recs = records(ABLATION[key], profile)
        if key == "optimizers":   # each optimizer at its chosen rate
            recs = at_chosen(recs)[0]
        return viz.learning_curves(first_seed(recs), title=title) if recs else None


for _key, _name, _title in ABLATION_FIGURES:
    _register_curves(_key, _name, _title)


# (ablation, figure, title) of the report's dot plots: every seed's test
# accuracy per row (the learning curves stay in notebook 02).
ABLATION_DOTS = (
    ("optimizers", "abl_optimizers_dots.png", "Optimizers, each at its chosen rate"),
    ("schedulers", "abl_schedulers_dots.png", "Learning-rate schedules"),
    ("losses", "abl_losses_dots.png", "Losses"),
    ("activations", "abl_activations_dots.png", "Activations"),
    ("regularisation", "abl_regularisation_dots.png", "Regularisation"),
    ("augmentation", "abl_augmentation_dots.png", "Augmentation and normalisation"),
    ("batch_size", "abl_batch_size_dots.png", "Batch size"),
    ("stem", "abl_stem_dots.png", "Stem of ResNet-18"))


def dot_rows(recs: list[dict]) -> list:
    """(label, [(status, test acc %)], is baseline) per row, rows in order."""
    df = results_frame(recs)
    s = summarize(df, by="label", metrics=("test_acc",))
    return [(lbl, [(st, 100 * v) for st, v in seeds], "(baseline)" in lbl)
            for lbl, seeds in zip(s["label"], s["test_acc_seeds"])]


def _register_dots(key: str, name: str, title: str) -> None:
    @register_figure(name)
    def fig(profile: Profile):
        from cifar_lib import viz
        recs = with_every_seed(records(ABLATION[key], profile), profile)
        if key == "optimizers":
            recs = at_chosen(recs)[0]
        if not recs:
            return None
        # the band: the seed noise the table's reading sets a lead against
        pool = noise_records(profile) if key != "stem" else []
        gaps = _seed_gaps(recs + at_epochs(pool, recs))
        return viz.seed_dots(dot_rows(recs), title=title, band=max(gaps) if gaps else None)


for _key, _name, _title in ABLATION_DOTS:
    _register_dots(_key, _name, _title)


@register_figure("abl_lr_grid.png")
def fig_lr_grid(profile: Profile):
    from cifar_lib import viz
    recs = records(ABLATION["lr_grid"], profile)
    if not recs:
        return None
    return viz.heatmap(lr_grid_table(recs), "schedule", "Adam learning rate",
                       "test accuracy (%)", failed=lr_grid_failed(recs))


# notebook 03's figures
# Drawn from notebook 03's stored measurement (``measures.vis_measured``:
# what each figure shows, so no weights are needed); None while it is not
# made for the current runs. ``measures.measure`` saves them through these.
from cifar_lib.studies.classification import plots as _plots  # noqa: E402


def _register_vis(name: str, draw) -> None:
    @register_figure(name)
    def fig(profile: Profile):
        data = vis_measured(profile)
        return None if data is None else draw(data)


for _name, _draw in _plots.DRAW.items():
    _register_vis(_name, _draw)

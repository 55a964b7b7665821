"""The BatchNorm study's report tables (``bn_runs``, ``bn_measures``,
``bn_probes``, ``bn_surfaces``), each with a one-sentence reading, and its
report values (:func:`values`, every ``bn_*`` name), read from the records
and surfaces on disk. Averages are means over seeds, per phase of training
(first and second half of the steps), without the steps where a network
sits at chance; :func:`verdict_measures` turns them into the verdict
(:mod:`~cifar_lib.studies.batchnorm.verdict`)."""
from __future__ import annotations

import math

import numpy as np
import torch

from cifar_lib.experiments import records as stored
from cifar_lib.models import create_model
from cifar_lib.optim import optimizer_name
from cifar_lib.profiles import Profile
from cifar_lib.registry import register_figure, register_table, register_values
from cifar_lib.studies.batchnorm import plots
from cifar_lib.studies.batchnorm import verdict as V
from cifar_lib.studies.batchnorm.measures import (
    CHANCE, CHANCE_TOL, MATCHED, PHASES, band_phases, leaves_chance, load_surfaces,
    loss_band, matched_phases, probe_phases, probe_summary, surface_centre, surface_n,
    surface_rise, surfaces_by_seed)
from cifar_lib.studies.batchnorm.runs import (
    BATCHNORM, LABELS, MODELS, SIZES, Sizes, diverged_step, lr_list, of_seed, pick,
    run_setting, seeds_of, setting_lr, setting_name, sizes)


def records(profile: Profile) -> list[dict]:
    """The study's stored runs (``experiments.records(BATCHNORM, profile)``)."""
    return stored(BATCHNORM, profile)


def _outcome(r: dict | None) -> str:
    if r is None:
        return "not run"
    if r["status"] == "diverged":
        return f"diverged at step {diverged_step(r)}"
    return r["status"]


# ---------------------------------------------------------------- numbers


def _mean(vals):
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _probe_rows(runs: list[dict], S: Sizes, setting: str) -> dict[int, dict]:
    """:func:`probe_phases` of each seed's pair of runs of a setting."""
    out = {}
    for seed in seeds_of(runs):
        a, b = (pick(runs, m, setting, setting_lr(setting, S), seed) for m in MODELS)
        if a is not None and b is not None:
            out[seed] = probe_phases(a, b)
    return out


# A phase rests on few probes when fewer than this share of its probes (summed
# over the seeds) is kept, the rest sitting at chance: its means describe only
# the phase's tail, and the verdict says so.
FEW_PROBES = 0.5


def _probe_counts(per_seed: dict[int, dict], ph: str) -> tuple[int, int, list[int]]:
    """Probes of a phase kept and at chance, summed over the seeds, and
    the kept ones per seed."""
    rows = [rows[ph] for rows in per_seed.values() if ph in rows]
    return (sum(r["probes"] for r in rows), sum(r["at_chance"] for r in rows),
            [r["probes"] for r in rows])


def _few_probes(per_seed: dict[int, dict], detail: bool = False) -> dict[str, str]:
    """{phase: caveat} for the phases that rest on few probes
    (:data:`FEW_PROBES`): short in a measure's sentence, 'on few probes (11
    of 45)'; with ``detail`` (the probes' reading, which says it once),
    'on only 11 of its 45 probes over the 3 seeds (5, 5 and 1 per seed),
    the rest at chance'."""
    out = {}
    for ph in PHASES:
        kept, chance, per = _probe_counts(per_seed, ph)
        if kept + chance and kept < FEW_PROBES * (kept + chance):
            if not detail:
                out[ph] = f"on few probes ({kept} of {kept + chance})"
                continue
            seeds = f" over the {len(per)} seeds" if len(per) > 1 else ""
            each = f" ({_and(per)} per seed)" if len(per) > 1 else ""
            out[ph] = (f"on only {kept} of its {kept + chance} probes{seeds}{each}, "
                       "the rest at chance")
    return out


def _and(items) -> str:
    """'a, b and c'."""
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _pairs(per_seed: dict[int, dict], get) -> dict:
    """{phase: Pair} from per-seed {phase: row}, ``get(row)`` -> (plain, BN)."""
    return {ph: V.pair([get(rows[ph]) for rows in per_seed.values() if ph in rows])
            for ph in PHASES if any(ph in rows for rows in per_seed.values())}


def _surface_pairs(by_seed: dict, bn_key: str, key: str = "line",
                   relative: bool = False) -> dict:
    """{"end": Pair} of the rise at +-0.5: VGG-A's final surface against
    VGG-A + BN's ``bn_key`` surface, per seed."""
    def rise(s):
        r = surface_rise(s, 0.5, key)
        c = surface_centre(s, key)
        return (r / c if r is not None and c else None) if relative else r
    per = [(rise(d["vgg_a"]), rise(d[bn_key])) for d in by_seed.values()
           if "vgg_a" in d and bn_key in d]
    return {"end": V.pair(per)} if per else {}


def verdict_measures(runs: list[dict], S: Sizes, by_seed: dict) -> list[V.Measure]:
    """Every smoothness measure of the study, with its controls, from the
    records of all seeds and the surfaces by seed."""
    out = []
    for setting, opt, short in (("adam", "Adam's", "Adam"), ("sgd", "SGD's", "SGD")):
        rows = _probe_rows(runs, S, setting)
        q = lambda k: _pairs(rows, lambda r: r[k])  # noqa: E731
        few = _few_probes(rows)
        out += [
            V.Measure(f"{setting}_loss_range", f"the loss range along {opt} step",
                      q("loss_range"),
                      (("per unit of update length", q("loss_range_per_step")),),
                      label=f"loss range ({short})", notes=few),
            V.Measure(f"{setting}_grad_dist", f"the gradient change along {opt} step",
                      q("grad_dist"),
                      (("relative to the gradient's own length", q("grad_dist_rel")),),
                      label=f"gradient change ({short})", notes=few),
            V.Measure(f"{setting}_beta", f"the effective beta-smoothness along {opt} step",
                      q("beta"),
                      (("relative to the gradient's own length", q("beta_rel")),),
                      label=f"beta ({short})", notes=few)]
    seeds = {s: of_seed(runs, s) for s in seeds_of(runs)}
    band = {s: band_phases(r) for s, r in seeds.items()}
    matched = {s: matched_phases(r) for s, r in seeds.items()}
    out.append(V.Measure(
        "band", "the course's band of the loss over the Adam learning rates",
        _pairs(band, lambda r: r), (("at matched loss", _pairs(matched, lambda r: r)),),
        less="narrower", more="wider", label="loss band over Adam lrs"))
    mean = lambda b: b.mean  # noqa: E731
    change = {s: band_phases(r, "last_grad_change", mean) for s, r in seeds.items()}
    norm = {s: band_phases(r, "last_grad", mean) for s, r in seeds.items()}
    rel = {s: {ph: tuple(c / n for c, n in zip(change[s][ph], norm[s][ph]))
               for ph in change[s] if ph in norm[s]} for s in seeds}
    out.append(V.Measure(
        "last_grad", "the last layer's mean gradient change between steps over the "
        "Adam learning rates", _pairs(change, lambda r: r),
        (("relative to the gradient's own length", _pairs(rel, lambda r: r)),),
        label="last-layer gradient change"))
    # the measure compares VGG-A's final weights with VGG-A + BN at matched
    # training loss where that surface is made, else after the same epochs;
    # its view and controls name which BN weights each row uses
    has_matched = any(MATCHED in d for d in by_seed.values())
    bn_key = MATCHED if has_matched else "vgg_a_bn"
    final = f"after the same {S.epochs} epochs"
    where = "at matched training loss" if has_matched else final
    around = ("VGG-A's final weights and VGG-A + BN's at matched training loss"
              if has_matched else "the final weights of both networks")
    also = "at matched loss, " if has_matched else ""
    controls = ((f"{also}relative to the loss at the weights",
                 _surface_pairs(by_seed, bn_key, relative=True)),
                (f"{also}with batch statistics",
                 _surface_pairs(by_seed, bn_key, "line_batch")))
    if has_matched:
        controls = ((final, _surface_pairs(by_seed, "vgg_a_bn")),) + controls
    out.append(V.Measure(
        "surface", f"the rise of the loss at ±0.5 along a 1-D surface around {around}",
        _surface_pairs(by_seed, bn_key), controls, label="surface rise at ±0.5",
        view=where))
    return out


# ---------------------------------------------------------------- tables


def _spread(vals, fmt="{:.3g}", scale=1.0) -> str | None:
    """Mean over seeds, with the range when there are several."""
    vals = [scale * v for v in vals if v is not None]
    if not vals:
        return None
    m = fmt.format(float(np.mean(vals)))
    return m if len(vals) == 1 else f"{m} ({fmt.format(min(vals))}-{fmt.format(max(vals))})"


def _settings(runs: list[dict]) -> list[tuple]:
    """(model, optimizer, lr) of the runs: models in study order, then
    optimizer and learning rate ascending."""
    found = {(r["config"]["model"], r["config"]["optimizer"], r["config"]["lr"])
             for r in runs}
    return sorted(found, key=lambda s: (MODELS.index(s[0]) if s[0] in MODELS
                                        else len(MODELS), s[0], s[1], s[2]))


@register_table("bn_runs")
def runs_table(profile: Profile):
    """One row per model, optimizer and lr: runs per outcome and, over the
    seeds whose run finished (diverged ones left out), the mean (min-max)
    final training loss and accuracies.

    "final" is the last epoch; its weights are the ones kept and tested.

    Used by notebook 04 (report section 2).
    """
    import pandas as pd
    runs = records(profile)
    rows = []
    for m, opt, lr in _settings(runs):
        rs = [r for r in runs if (r["config"]["model"], r["config"]["optimizer"],
                                  r["config"]["lr"]) == (m, opt, lr)]
        ok = [r for r in rs if r["status"] == "ok"]
        bad = [f"seed {r['config']['seed']} {_outcome(r)}" for r in rs if r not in ok]
        met = lambda k: [r["metrics"][k] for r in ok]  # noqa: E731
        rows.append({"model": LABELS[m], "optimizer": optimizer_name(opt), "lr": lr,
                     "seeds": len(rs), "outcome": "; ".join(bad) or "all ok",
                     "final train loss": _spread([r["history"][-1]["train_loss"]
                                                  for r in ok if r["history"]]),
                     "best val acc (%)": _spread(met("best_val_acc"), "{:.1f}", 100),
                     "final test acc (%)": _spread(met("test_acc"), "{:.1f}", 100)})
    df = pd.DataFrame(rows)
    # every run finished: no column saying so in each row (the reading under
    # the table counts the runs that finished)
    return df.drop(columns="outcome") if len(df) and (df["outcome"] == "all ok").all() \
        else df


def _runs_reading(runs: list[dict]) -> str | None:
    """The runs table in one sentence: where BN's validation accuracy is
    higher, and the failed runs."""
    if not runs:
        return None
    higher, n = [], 0
    for m, opt, lr in _settings(runs):
        if m != "vgg_a":
            continue
        acc = {mm: _mean([r["metrics"]["best_val_acc"] for r in runs
                          if r["status"] == "ok" and (r["config"]["model"],
                          r["config"]["optimizer"], r["config"]["lr"]) == (mm, opt, lr)])
               for mm in MODELS}
        if None in acc.values():
            continue
        n += 1
        higher.append(acc["vgg_a_bn"] > acc["vgg_a"])
    failed = sum(r["status"] != "ok" for r in runs)
    per = [sum((r["config"]["model"], r["config"]["optimizer"], r["config"]["lr"]) == s
               for r in runs) for s in _settings(runs)]
    seeds = f"{min(per)}" if min(per) == max(per) else f"{min(per)}-{max(per)}"
    over = (f"mean best validation accuracy over {seeds} seed"
            f"{'s' if max(per) > 1 else ''} per setting" if max(per) > 1
            else "best validation accuracy (one seed)")
    return (f"With BN the {over} is higher in {sum(higher)} of "
            f"{V.plural(n, 'setting')} and lower in {n - sum(higher)}; "
            + (f"{failed} of {V.plural(len(runs), 'run')} did not finish (left out of "
               "the means)." if failed else
               f"all {len(runs)} runs finished." if len(runs) > 1 else "the run finished."))


@register_table("bn_measures")
def measures_table(profile: Profile):
    """One row per measure, view (the measure itself or a control) and
    phase: VGG-A and VGG-A + BN (means over seeds), how BN compares, and
    whether that is Santurkar et al.'s direction.

    Used by notebook 04 (report section 2)."""
    import pandas as pd
    rows = []
    word = {"smoother": "yes", "rougher": "no", "even": "even", "split": "seeds split"}
    for m in verdict_measures(records(profile), sizes(profile), surfaces_by_seed(profile)):
        for view, phases in ((m.view, m.phases), *m.controls):
            for ph, p in phases.items():
                if p is None:
                    continue
                rows.append({"measure": m.label or m.name, "view": view,
                             "phase": f"{ph} (few probes)" if ph in m.notes else ph,
                             "VGG-A": p.plain, "VGG-A + BN": p.bn,
                             "with BN": V.said(p, m.less, m.more).split(" with BN")[0],
                             "seeds BN lower": f"{p.wins} of {p.seeds}",
                             "BN smoother": word[V.call(p)]})
    return pd.DataFrame(rows)


def _measures_reading(ms: list[V.Measure]) -> str | None:
    """The measures table in a sentence or two: the verdicts' counts, the
    rows whose seeds split and the phases resting on few probes."""
    c = V.counts(ms)
    if not c:
        return None
    verb = lambda n, one, many: f"{n} {one if n == 1 else many}"  # noqa: E731
    parts = [f"{c.get('agrees', 0)} {'agrees' if c.get('agrees', 0) == 1 else 'agree'} "
             "with Santurkar et al. in every phase"]
    if c.get("mixed"):
        parts.append(f"{c['mixed']} in some phases only")
    if c.get("disagrees"):
        parts.append(verb(c["disagrees"], "disagrees", "disagree"))
    if c.get("disagrees in part"):
        parts.append(verb(c["disagrees in part"], "disagrees", "disagree")
                     + " in some phases and agrees in none")
    if c.get("no difference"):
        parts.append(verb(c["no difference"], "shows", "show")
                     + " no consistent difference")
    out = (f"Of the {V.plural(sum(c.values()), 'measure')}, "
           + (", ".join(parts[:-1]) + " and " if len(parts) > 1 else "") + parts[-1]
           + "; the controls say why (next sections).")
    split = [f"{m.label or m.name} {ph}" for m in ms for ph, p in m.phases.items()
             if V.call(p) == "split"]
    if split:
        out += (" The seeds split (the means differ, most seeds do not follow) in: "
                + "; ".join(split) + (", which counts" if len(split) == 1 else
                                      ", which count") + " for neither side.")
    few = {}
    for m in ms:
        for ph, note in m.notes.items():
            few.setdefault((m.key.split("_")[0], ph), note)
    for (setting, ph), note in few.items():
        name = "Adam" if setting == "adam" else "SGD"
        out += (f" {name}'s {ph} phase rests {note}, the rest of its probes at chance "
                "(marked in the table).")
    return out


@register_table("bn_probes")
def probe_table(profile: Profile):
    """Per setting, phase and model, means over seeds of the probes' loss
    range, gradient change and beta, the lengths of the update and of the
    gradient, with the probes kept and those left out at chance.

    Used by notebook 04 (report section 2)."""
    import pandas as pd
    P = profile
    S, runs = sizes(P), records(P)
    cols = {"mean loss range": "loss_range", "mean max grad change": "grad_dist",
            "mean beta": "beta", "mean ||update||": "step_norm",
            "mean ||grad||": "grad_norm"}
    rows = []
    n = len(seeds_of(runs))
    kept = "probes kept (at chance)" + (f", sum over {n} seeds" if n > 1 else "")
    for setting in ("adam", "sgd"):
        per = _probe_rows(runs, S, setting)
        for ph in PHASES:
            got = [r[ph] for r in per.values() if ph in r]
            if not got:
                continue
            for i, m in enumerate(MODELS):
                row = {"setting": setting_name(setting, S), "phase": ph,
                       "model": LABELS[m],
                       kept: f"{sum(g['probes'] for g in got)} "
                       f"({sum(g['at_chance'] for g in got)})"}
                row.update({c: _mean([g[k][i] for g in got]) for c, k in cols.items()})
                rows.append(row)
    return pd.DataFrame(rows)


def _probes_reading(runs: list[dict], S: Sizes) -> str | None:
    """How long each network's update is, per setting and phase, and what
    that does to the loss-range comparison there; the phases that rest on
    few probes."""
    lengths, cases, notes = [], {"under": [], "decides": [], "over": []}, []
    for setting, name in (("adam", "Adam"), ("sgd", "SGD")):
        rows = _probe_rows(runs, S, setting)
        u = _pairs(rows, lambda r: r["step_norm"])
        rng = _pairs(rows, lambda r: r["loss_range"])
        for ph, p in u.items():
            if p is None:
                continue
            d = V.mean_direction(p)
            lengths.append(f"{name} {ph} " + (
                "about as long" if d == 0 else
                f"{V._x(1 / p.ratio)}x longer" if d < 0 else f"{V._x(p.ratio)}x shorter")
                + f" ({p.bn:.3g} vs {p.plain:.3g})")
            smaller = V.direction(rng.get(ph)) > 0
            where = f"{name} {ph}"
            if d < 0:
                cases["under" if smaller else "decides"].append(where)
            elif d > 0:
                cases["over" if smaller else "decides"].append(where)
        notes += [f"{name}'s {ph} phase rests {note}"
                  for ph, note in _few_probes(rows, detail=True).items()]
    if not lengths:
        return None
    said = {"under": "BN moves farther and still has the smaller loss range, so the "
                     "range understates its smoothness",
            "decides": "the update lengths differ and BN's range is not the smaller, "
                       "so the range per unit of update length decides",
            "over": "BN moves less and has the smaller range, so the range "
                    "overstates its smoothness"}
    out = "BN's update against VGG-A's (mean ||update||): " + "; ".join(lengths) + "."
    if any(cases.values()):
        out += (" A longer update widens the loss range: "
                + "; ".join(f"in {_and(w)} {said[k]}" for k, w in cases.items() if w)
                + ".")
    else:
        out += " The updates are about as long, so the loss ranges compare like with like."
    return out + "".join(f" {n[0].upper()}{n[1:]}." for n in notes)


@register_table("bn_surfaces")
def surface_table(profile: Profile):
    """Per network (VGG-A + BN also at matched loss): its epochs, the loss
    at the weights and its rise along the 1-D direction, with running
    statistics (eval) and batch statistics; means over seeds.

    Used by notebook 04 (report section 2)."""
    import pandas as pd
    by_seed = surfaces_by_seed(profile)
    rows = []
    for key in (*MODELS, MATCHED):
        ss = [d[key] for d in by_seed.values() if key in d]
        if not ss:
            continue
        name = LABELS.get(key, "VGG-A + BN at matched loss")
        ep = sorted({s.get("matched_epoch") or s.get("final_epoch") for s in ss}) \
            if key == MATCHED else ["final"]
        rows.append({"network": name, "epochs": ", ".join(map(str, ep)),
                     "surfaces (seeds)": len(ss),
                     "loss at weights (eval)": _mean([surface_centre(s) for s in ss]),
                     "rise at ±0.25 (eval)": _mean([surface_rise(s, 0.25) for s in ss]),
                     "rise at ±0.5 (eval)": _mean([surface_rise(s, 0.5) for s in ss]),
                     "rise at ±1 (eval)": _mean([surface_rise(s, 1.0) for s in ss]),
                     "loss at weights (batch stats)":
                         _mean([surface_centre(s, "line_batch") for s in ss]),
                     "rise at ±0.5 (batch stats)":
                         _mean([surface_rise(s, 0.5, "line_batch") for s in ss])})
    return pd.DataFrame(rows)


def _centres(by_seed: dict, key: str) -> float | None:
    return _mean([surface_centre(d[key]) for d in by_seed.values() if key in d])


def _surfaces_reading(by_seed: dict, S: Sizes) -> str | None:
    """Whether the matched-loss surfaces are matched, and where the final
    surfaces sit (the rises follow in ``bn_v_surface``)."""
    plain, bn, m = (_centres(by_seed, k) for k in (*MODELS, MATCHED))
    if plain is None or bn is None:
        return None
    if m is None:
        return (f"The surfaces sit at different training losses (VGG-A {plain:.3g}, "
                f"VGG-A + BN {bn:.3g}); the matched-loss surface is not made yet.")
    gap = abs(math.log(m / plain))
    eps = sorted({d[MATCHED].get("matched_epoch") for d in by_seed.values()
                  if MATCHED in d})
    ratio = max(m, plain) / min(m, plain)
    matched = f"{100 * (ratio - 1):.1f}% apart as means over the seeds" \
        if gap < math.log(1.1) else f"{_x(ratio)}x apart, epochs being the finest step here"
    pairs = [(surface_centre(d[MATCHED]), surface_centre(d["vgg_a"]))
             for d in by_seed.values() if MATCHED in d and "vgg_a" in d]
    per = [max(a, b) / min(a, b) - 1 for a, b in pairs if a and b]
    if len(per) > 1:
        matched += (f"; single seeds {min(per):.0%} to {max(per):.0%} apart, "
                    "epochs being the finest step here")
    said = (", ".join(map(str, eps[:-1])) + " or " if len(eps) > 1 else "") + str(eps[-1])
    if abs(math.log(bn / plain)) < math.log(1.1):
        final = "about VGG-A's loss as well"
    else:
        final = (f"{'deeper in its valley than' if bn < plain else 'higher than'} VGG-A, "
                 "so the final rows compare the two networks at different losses and "
                 "the matched-loss rows are the like-for-like ones")
    return (f"Stopped after {said} of {S.epochs} epochs (per seed), VGG-A + BN "
            f"sits at loss {m:.3g} against VGG-A's {plain:.3g} after all {S.epochs} "
            f"({matched}); after all {S.epochs} it sits at {bn:.3g}, {final} "
            "(losses at the trained weights on the surface images, evaluation mode, "
            "means over the seeds).")


def _x(r: float) -> str:
    return V._x(r)


# ---------------------------------------------------------------- values


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _adam_step_ratio(runs: list[dict], S: Sizes) -> str | None:
    """How many times longer Adam's update is than lr x ||gradient||, the
    step a probe along the raw gradient would take (mean over the probes
    of the Adam runs of every seed), e.g. '60'."""
    vals = [probe_summary(r)["step_over_lr_grad"] for r in runs
            if r["tag"]["probe_every"] and run_setting(r) == "adam"]
    vals = [v for v in vals if v is not None]
    return _x(float(np.mean(vals))) if vals else None


def _probe_direction(runs: list[dict]) -> str | None:
    """What the probes of the runs on disk step along."""
    dirs = {r["tag"].get("direction", "gradient") for r in runs
            if r["tag"]["probe_every"]}
    names = {"update": "the update the run's optimizer takes at that step",
             "gradient": "the negative gradient, by multiples of the learning rate"}
    return " and ".join(names[d] for d in sorted(dirs)) or None


def _width(S: Sizes) -> str:
    """The channel width and parameter counts of both networks."""
    counts = {m: sum(p.numel() for p in create_model(m, width=S.width).parameters())
              for m in MODELS}
    net = create_model("vgg_a", width=S.width)
    hidden = "-".join(str(m.out_features) for m in net.classifier
                      if isinstance(m, torch.nn.Linear))
    w = ("full width" if S.width == 1 else
         f"width x{S.width:g} (every channel count and the hidden classifier layers "
         f"scaled: a {hidden} classifier)")
    return (f"{w}: {counts['vgg_a']:,} parameters without BN, "
            f"{counts['vgg_a_bn']:,} with BN")


def _acc(runs: list[dict], S: Sizes, model: str, setting: str) -> str | None:
    """Best validation accuracy of a model in a setting, mean (min-max)
    over the seeds whose run finished (else the outcome)."""
    rs = [r for r in runs if r["config"]["model"] == model and run_setting(r) == setting
          and math.isclose(r["config"]["lr"], setting_lr(setting, S))]
    ok = [r["metrics"]["best_val_acc"] for r in rs if r["status"] == "ok"]
    if not rs:
        return None
    if not ok:
        return _outcome(rs[0])
    return _spread(ok, "{:.1f}%", 100)


LEARNS = 0.2  # best val acc above twice chance (10 classes): the run learns


def _sgd_trains(runs: list[dict], S: Sizes) -> str | None:
    """Whether both networks learn with SGD in every seed, e.g. 'both
    networks learn in every seed' or 'VGG-A does not learn in seed 1 (...)'."""
    found = [r for r in runs if run_setting(r) == "sgd"]
    if {r["config"]["model"] for r in found} != set(MODELS):
        return None
    bad = [f"{LABELS[r['config']['model']]} does not learn in seed {r['config']['seed']} "
           f"({_outcome(r)}, best validation accuracy "
           f"{100 * (r['metrics']['best_val_acc'] or 0):.1f}%)"
           for r in found
           if r["status"] != "ok" or (r["metrics"]["best_val_acc"] or 0) < LEARNS]
    n = len(seeds_of(found))
    return "; ".join(bad) if bad else \
        "both networks learn" + (" in every seed" if n > 1 else "")


def _sgd_lr_why(S: Sizes) -> str:
    """Why SGD trains at its rate in this profile: the full profile's rate,
    or lowered from it (the check behind it is noted at :data:`SIZES`)."""
    full = SIZES["full"].sgd_lr
    if math.isclose(S.sgd_lr, full):
        return "chosen so that both networks train at this scale"
    return (f"lowered from the full profile's {full:g}, at which VGG-A barely "
            "learned in a check run on this profile's smaller training set")


def _diverged_marks(runs: list[dict], S: Sizes) -> dict:
    """The figure captions' clauses about diverged runs, each there only
    when its figure draws such a mark ("" otherwise): the cross of
    Figure 2.1 and the dotted line of Figure 2.4 (a first-seed run at a
    setting's own rate that diverged), the early end of a band in
    Figures 2.2 and 2.5 (a first-seed Adam run without a finite value)."""
    if not runs:
        return dict.fromkeys(("bn_curves_diverged", "bn_probes_diverged",
                              "bn_loss_band_ends", "bn_grad_band_ends"))
    first = of_seed(runs)
    shown = [pick(first, m, s, setting_lr(s, S)) for m in MODELS for s in ("adam", "sgd")]
    diverged = any(r is not None and r["status"] == "diverged" for r in shown)

    def ends(*keys):
        return any(b is not None and b.ends for m in MODELS for k in keys
                   for b in [loss_band(first, m, key=k)])
    return {
        "bn_curves_diverged": " A cross marks a diverged run at the epoch in which "
                              "its loss stopped being finite (or blew up)." if diverged else "",
        "bn_probes_diverged": " Dotted line: the step at which a run diverged."
                              if diverged else "",
        "bn_loss_band_ends": " A band covers only the steps where all of its network's "
                             "runs have a finite loss: it ends (dotted line, legend) where "
                             "a run diverged, instead of narrowing to the runs left."
                             if ends("loss") else "",
        "bn_grad_band_ends": "; a band ends (dotted line, legend) where one of its runs "
                             "diverged" if ends("last_grad", "last_grad_change") else "",
    }


def _chance_steps(runs: list[dict], S: Sizes) -> str | None:
    """Steps each network's probed runs sit at chance, mean over seeds."""
    parts = []
    for m in MODELS:
        bits = []
        for setting, name in (("adam", "Adam"), ("sgd", "SGD")):
            v = _mean([leaves_chance(r) for r in runs if r["config"]["model"] == m
                       and run_setting(r) == setting and r["tag"]["probe_every"]])
            if v is not None:
                bits.append(f"{v:.0f} with {name}")
        if bits:
            parts.append(f"{LABELS[m]} {' and '.join(bits)}")
    return "; ".join(parts) or None


# The value of each measure's verdict sentence (spelled out: report.md's
# names are found in the code).
VERDICT_VALUES = {
    "adam_loss_range": "bn_v_adam_loss_range", "sgd_loss_range": "bn_v_sgd_loss_range",
    "adam_grad_dist": "bn_v_adam_grad_dist", "sgd_grad_dist": "bn_v_sgd_grad_dist",
    "adam_beta": "bn_v_adam_beta", "sgd_beta": "bn_v_sgd_beta", "band": "bn_v_band",
    "last_grad": "bn_v_last_grad", "surface": "bn_v_surface"}


@register_values
def values(profile: Profile) -> dict:
    """Every ``bn_*`` report value of the profile (None where its results
    are not on disk): the verdict (``bn_verdict``, one sentence per
    measure ``bn_v_<measure>``), the tables' readings (``bn_*_reading``)
    and the settings. Comparisons are computed from the numbers they cite
    (:mod:`~cifar_lib.studies.batchnorm.verdict`).

    Used by notebook 04 (report section 2).
    """
    P = profile
    S, runs, by_seed = sizes(P), records(P), surfaces_by_seed(P)
    ms = verdict_measures(runs, S, by_seed)
    k = S.keep_every
    seeds = seeds_of(runs)
    return {
        "bn_verdict": V.summary(ms),
        "bn_verdict_short": V.short_summary(ms),
        "bn_tol": f"{V.TOL:.0%}",
        "bn_few_probes": f"{FEW_PROBES:.0%}",
        # a measure without a value once the runs are in says why (its
        # steps sat at chance); the surfaces' waits for their measurement
        **{VERDICT_VALUES[m.key]: V.sentence(m) if m.measured() else
           V.unmeasured(m) if runs and m.key != "surface" else None for m in ms},
        "bn_measures_reading": _measures_reading(ms),
        "bn_runs_reading": _runs_reading(runs),
        "bn_probes_reading": _probes_reading(runs, S),
        "bn_surfaces_reading": _surfaces_reading(by_seed, S),
        "bn_seeds": f"{len(S.seeds)} seed{'s' if len(S.seeds) > 1 else ''} "
                    f"({', '.join(map(str, S.seeds))})",
        "bn_seeds_done": ", ".join(map(str, seeds)) if seeds else None,
        "bn_chance_loss": f"{(1 - CHANCE_TOL) * CHANCE:.2f}",
        "bn_chance_steps": _chance_steps(runs, S),
        **_diverged_marks(runs, S),
        "bn_adam_step_ratio": _adam_step_ratio(runs, S),
        "bn_probe_direction": _probe_direction(runs),
        "bn_probe_every": str(S.probe_every),
        "bn_probe_scales": ", ".join(f"{s:g}" for s in S.probe_scales),
        "bn_kept_steps": "every step" if k == 1 else f"every {_ordinal(k)} step",
        "bn_epochs": str(S.epochs),
        "bn_width": _width(S),
        "bn_lrs": lr_list(S),
        "bn_adam_lr": f"{S.adam_lr:g}",
        "bn_sgd_lr": f"{S.sgd_lr:g}",
        "bn_sgd_lr_why": _sgd_lr_why(S),
        "bn_momentum": f"{S.momentum:g}",
        "bn_batch": str(S.batch_size),
        "bn_surface_images": f"{surface_n(S):,}",
        "bn_device": runs[0]["env"]["device_name"] if runs else None,
        "bn_train_minutes": f"{sum(r['metrics']['wall_time'] for r in runs) / 60:.1f}"
        if runs else None,
        "bn_train_size": f"{runs[0]['data']['train']:,}" if runs else None,
        "bn_sgd_trains": _sgd_trains(runs, S),
        "bn_adam_val_acc_vgg_a": _acc(runs, S, "vgg_a", "adam"),
        "bn_adam_val_acc_vgg_a_bn": _acc(runs, S, "vgg_a_bn", "adam"),
        "bn_sgd_val_acc_vgg_a": _acc(runs, S, "vgg_a", "sgd"),
        "bn_sgd_val_acc_vgg_a_bn": _acc(runs, S, "vgg_a_bn", "sgd"),
    }


# ---------------------------------------------------------------- figures


def _register_runs_figure(name: str, draw) -> None:
    @register_figure(name)
    def fig(profile: Profile):
        runs = of_seed(records(profile))  # the first seed's runs
        return draw(runs, sizes(profile)) if runs else None


for _name, _draw in (("bn_curves.png", plots.plot_curves),
                     ("bn_loss_landscape.png", plots.plot_loss_landscape),
                     ("bn_loss_band_views.png", plots.plot_loss_band_views),
                     ("bn_probes.png", plots.plot_probes),
                     ("bn_last_grad.png", plots.plot_last_grad)):
    _register_runs_figure(_name, _draw)


@register_figure("bn_surface_1d.png")
def fig_surface_1d(profile: Profile):
    surfs = load_surfaces(profile)
    return plots.plot_surface_1d(surfs) if surfs else None


@register_figure("bn_surface_2d.png")
def fig_surface_2d(profile: Profile):
    surfs = load_surfaces(profile)
    return plots.plot_surface_2d(surfs) if surfs else None

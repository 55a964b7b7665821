"""The summary at the top of report.md: the study's answers at a glance.

One row per question of the course (architecture, optimizer, schedule,
loss, activation, regulariser, augmentation, BatchNorm, DessiLBI), each
answer computed from the numbers it cites: the best setting at this
budget, its lead over the baseline and whether that lead exceeds the
largest gap between two seeds of one setting. The BatchNorm and DessiLBI
rows are those sections' verdicts (``bn_verdict_short``, ``slbi_verdict``).

Trains nothing; registers the table ``summary``.
"""
from __future__ import annotations

from cifar_lib.experiments import records, results_frame, summarize
from cifar_lib.profiles import Profile
from cifar_lib.registry import register_table, register_values
from cifar_lib.studies.classification.values import best_vs_baseline

# (question, ablation) of section 1.3's rows
QUESTIONS = (("optimizer", "optimizers"), ("learning-rate schedule", "schedulers"),
             ("loss", "losses"), ("activation", "activations"),
             ("regulariser", "regularisation"), ("augmentation", "augmentation"))


def answer(b: dict | None) -> str:
    """One cell: the best setting and whether its lead is real."""
    if b is None:
        return "pending"
    text = f"{b['best']} ({b['best_acc']:.1f}%)"
    if b["base"] is None:  # no baseline: the lead over the runner-up
        text += f", {b['lead']:.1f} points ahead of {b['runner_up']}"
    elif b["best"] == b["base"]:
        lead = (f", {b['lead']:.1f} points ahead of {b['runner_up']}"
                if b.get("runner_up") else "")
        name = b["best"].replace(" (baseline)", "")  # "the baseline" says it once
        text = f"the baseline, {name} ({b['best_acc']:.1f}%){lead}"
    else:
        text += f", {b['lead']:+.1f} points over the baseline ({b['base_acc']:.1f}%)"
    if b["spread"] is None:
        return text + "; one seed each, so the spread is not measured"
    text += (f"; more than {b['noise']}" if b["beyond_noise"] else
             f"; within {b['noise']}: a tie")
    worse = [f"{lbl.replace('baseline + ', '')} ({d:+.1f})"
             for lbl, d in b.get("apart", []) if d < 0]
    if worse:
        text += f". Clearly worse than the baseline: {', '.join(worse)}"
    return text


def _rate_words(arch: list[dict]) -> str:
    """How the architecture rows' learning rates were set, as far as the
    stored runs show: chosen per core model from its grid, or still the
    shared rate where a grid has not run."""
    from cifar_lib.studies.classification.runs import ARCH_CORE
    from cifar_lib.studies.classification.values import at_chosen
    grids = at_chosen(arch)[1] if arch else {}
    core = {r["label"] for r in arch} & set(ARCH_CORE)
    if core and core <= set(grids):
        return "shared recipe, rate chosen per model"
    if grids:
        return "shared recipe, rate chosen per model where its grid has run, else shared"
    return "shared recipe and rate; the per-model rate grids are pending"


@register_table("summary")
def summary_table(profile: Profile):
    """The answers at a glance (report.md's first table)."""
    import pandas as pd
    from cifar_lib.studies import batchnorm, dessilbi
    from cifar_lib.studies.classification.runs import ABLATION, ARCHITECTURES, BASELINE
    from cifar_lib.studies.classification.values import at_chosen, displayed
    from cifar_lib.studies.classification.values import noise_records, with_every_seed
    base = noise_records(profile)
    rows = []
    arch = records(ARCHITECTURES, profile)
    text = answer(best_vs_baseline(displayed(at_chosen(arch)[0])[0])) if arch else "pending"
    models = {r.label for r in ARCHITECTURES.runs(profile)}
    ran = {r["label"] for r in arch}
    if arch and ran != models:
        text += f" ({len(ran)} of {len(models)} models have run; the rest are pending)"
    rows.append({"question": f"architecture ({_rate_words(arch)})",
                 "answer at this budget": text})
    for question, key in QUESTIONS:
        recs = records(ABLATION[key], profile)
        planned = len(ABLATION[key].runs(profile))
        done = len(recs)
        recs = with_every_seed(recs, profile)
        if key == "optimizers":
            recs = at_chosen(recs)[0]
        epochs = sorted({r["config"]["epochs"] for r in recs})
        q = f"{question} (FastNet, {epochs[0]} epochs)" if recs else question
        # no answer from part of the runs (a missing row could be the best)
        text = (f"pending ({done} of {planned} runs done)" if done < planned else
                answer(best_vs_baseline(recs, base)))
        rows.append({"question": q, "answer at this budget": text})
    bn = batchnorm.values(profile).get("bn_verdict_short")  # the long one: section 2
    rows.append({"question": "does BatchNorm smooth the landscape (VGG-A)?",
                 "answer at this budget": bn or "pending"})
    sl = dessilbi.values(profile).get("slbi_verdict")
    rows.append({"question": "how sparse does DessiLBI make VGG-16, at what accuracy?",
                 "answer at this budget": sl or "pending"})
    if all(r["answer at this budget"].startswith("pending") for r in rows):
        return None
    return pd.DataFrame(rows)


def old_ablations_reading(profile: Profile) -> str:
    """One sentence on the appendix's old-baseline ablations: each factor's
    best row, its lead over the old baseline, and whether that lead is
    within the seed noise (:func:`best_vs_baseline`)."""
    from cifar_lib.studies.classification.runs import OLD_ABLATION, factor_name
    found = []
    for key, exp in OLD_ABLATION.items():
        b = best_vs_baseline(records(exp, profile))
        if b is not None and b["base"] is not None:
            found.append((factor_name(key), b))
    if not found:
        return f"The {profile.name} profile has no runs under the old baseline."
    one_seed = all(b["spread"] is None for _, b in found)
    parts = []
    for key, b in found:
        if b["best"] == b["base"]:
            text = f"the baseline, {b['lead']:.1f} ahead of {b['runner_up']}"
        else:
            text = f"{b['best']}, {b['lead']:+.1f}"
        if b["spread"] is None and not one_seed:
            text += " (one seed each: no spread)"
        elif b["spread"] is not None and not b["beyond_noise"]:
            text += " (a tie)"
        parts.append(f"{key}: {text}")
    return ("Best row per factor under the old baseline (points of test accuracy; a lead "
            "within the seed noise is marked a tie): " + "; ".join(parts) + "."
            + (" One seed each: no spread to set the leads against." if one_seed else ""))


@register_values
def values(profile: Profile) -> dict:
    """The appendix's reading of the old-baseline ablations."""
    return {"reading_ablations_old_recipe": old_ablations_reading(profile)}

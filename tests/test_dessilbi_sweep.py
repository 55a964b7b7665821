"""Report section 3 after the fair-comparison issue: accuracy kept above
chance, the lambda sweep, and generated sentences whose direction follows
the numbers they cite (a number flipped in a fixture flips the sentence)."""
from __future__ import annotations

import copy
import re
import sys

import matplotlib
import pytest
import torch

from cifar_lib import slbi, store
from cifar_lib.profiles import REPO, get_profile
from cifar_lib.report import TEMPLATE
from cifar_lib.studies import dessilbi as study

matplotlib.use("Agg")
V = sys.modules["cifar_lib.studies.dessilbi.values"]   # the module (``values`` is its function)

CPU_DATA = {"source": "CIFAR-10 (JPEG copy)", "train": 5000, "val": 2000, "test": 2000,
            "split_seed": 0}


def test_main_runs_keep_their_names_and_the_sweep_adds_runs():
    """The sweep adds SLBI runs; the cpu profile's SLBI/SGD runs keep their
    hashes (those of its 10-epoch sizes, the records in runs/cpu/results/)."""
    P = get_profile("cpu")
    S = study.sizes(P)
    names = {r.label: store.run_key(r.cfg.to_dict(), CPU_DATA) for r in study.DESSILBI.runs(P)}
    assert names == {"SLBI": "vgg16_bn-s0-7883e53bc9", "SGD": "vgg16_bn-s0-d06174875c"}
    assert len(S.sweep) >= 3 and S.entry_at in S.sweep
    assert study.recipe(P, "slbi", 0, S.entry_at) == study.recipe(P, "slbi", 0)
    sweep = study.SWEEP.runs(P)
    assert [r.label for r in sweep] == [study.sweep_label(e) for e in S.sweep
                                        if e != S.entry_at for _ in S.seeds]
    lams = [S.lambda_at(e) for e in S.sweep]
    assert lams == sorted(lams) and len(set(lams)) == len(lams)
    assert {r.cfg.optim_kw["lambda_conv"] for r in sweep} == set(lams) - {S.lambda_conv}
    assert all(r.cfg.replace(optim_kw={}) == study.recipe(P, "sgd", r.cfg.seed).replace(
        optimizer="slbi") for r in sweep)     # only lambda differs from the recipe
    with pytest.raises(ValueError, match="must hold entry_at"):
        study.Sizes(**{**vars(S), "sweep": (0.1, 0.2)})


def test_kept_is_measured_above_chance():
    assert study.kept(0.1, 0.387) == 0 and study.kept(0.1, 0.442) == 0
    assert study.kept(0.387, 0.387) == pytest.approx(1)
    assert study.kept(0.25, 0.40) == pytest.approx(0.5)
    assert study.kept(0.3, 0.1) != study.kept(0.3, 0.1)           # nan at a chance base


def test_budget_prune_takes_as_many_filters_per_layer_as_the_support_leaves_out():
    from test_slbi import _bn_net
    model = _bn_net()
    convs = slbi.conv_layers(model)
    entry = {n: [-1, 3, -1] + [2] * (m.out_channels - 3) for n, m in convs.items()}
    first = list(convs)[0]
    bn = slbi._norm_after(model)[first]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 0.01, 2.0, 0.02, 3, 4, 5, 6]))
    assert study.budget_prune(model, entry, "support")[first] == [0, 2]
    assert study.budget_prune(model, entry, "bn")[first] == [1, 3]
    norm = study.budget_prune(model, entry, "magnitude")
    assert {k: len(v) for k, v in norm.items()} == {n: 2 for n in convs}


def test_fixed_settings_come_from_the_profile_without_results(tmp_path):
    P = get_profile("cpu").with_(root=tmp_path)
    vals = study.values(P)
    fixed = {"slbi_model": "VGG-16-BN at width 0.25", "slbi_epochs": "10 epochs",
             "slbi_batch": "128", "slbi_warmup": "1 warm-up epoch", "slbi_nu": "100",
             "slbi_entry_at": "0.9", "slbi_z_floor": "0.1", "slbi_lambda": "0.164",
             "slbi_seeds": "1 seed", "slbi_over_seeds": "one seed",
             "slbi_sweep": "0.6, 0.9, 0.95, 1, 1.05, 1.1 and 1.2",
             "slbi_finetune": "30 steps of batch 128, 0.77 of an epoch of the 5,000 "
                              "training images, learning rate 0.01 decaying to 0"}
    assert {k: vals[k] for k in fixed} == fixed
    assert all(v is None for k, v in vals.items()
               if k not in fixed and k != "slbi_sweep_lambdas")


# ---------------------------------------------------------------- fixtures

LAYERS = ["features.0", "features.3"]


def _record(label, acc, seed=0):
    rec = {"label": label, "run": f"{label}-{seed}", "status": "ok",
           "data": {"test": 2000},
           "config": {"optimizer": label.lower(), "seed": seed, "optim_kw": {}},
           "metrics": {"test_acc": acc, "best_val_acc": acc, "train_time": 1.0},
           "history": [{"epoch": 1, "train_loss": 1, "val_loss": 1, "train_acc": 0.3,
                        "val_acc": acc}]}
    if label == "SLBI":
        rec["history"][0].update(
            slbi_support={LAYERS[0]: 8, LAYERS[1]: 4},
            slbi_sizes={LAYERS[0]: 8, LAYERS[1]: 8},
            slbi_entry={LAYERS[0]: [1] * 8, LAYERS[1]: [1] * 4 + [-1] * 4})
    return rec


def _measurement():
    rows = []
    accs = {"path": 0.20, "bn": 0.30, "magnitude": 0.25}
    for method, label, by in study.METHODS:
        for layer in ("conv1", "all convs"):
            for f in (0.0, 0.5, 0.9):
                acc = {0.0: 0.387 if label == "SLBI" else 0.442, 0.5: accs[by],
                       0.9: 0.10}[f]
                row = dict(method=method, model=label, order=by, layer=layer, fraction=f,
                           test_acc=acc)
                if layer == "all convs":
                    row["bn_acc"] = acc + 0.02 if f else acc
                rows.append(row)
    return {"seeds": [{
        "seed": 0, "base": {"SLBI": 0.387, "SGD": 0.442}, "rows": rows,
        "support": {"layers": [dict(layer=LAYERS[0], filters=8, in_support=8, test_acc=0.387),
                               dict(layer=LAYERS[1], filters=8, in_support=4, test_acc=0.30)],
                    "total": dict(fraction_out=0.25, test_acc=0.30, bn_acc=0.33,
                                  finetune_acc=0.35)},
        "finetuned": [dict(method=m, model=lab, fraction=0.5, finetune_acc=0.3)
                      for m, lab, _ in study.METHODS]}]}


def _sweep():
    def run(e, lam, out, base, sup, bn, mag):
        return {"label": study.sweep_label(e), "run": f"r{e}", "seed": 0, "entry_at": e,
                "lambda": lam, "base": base, "fraction_out": out,
                "methods": {"support": dict(test_acc=0.1, bn_acc=sup - 0.05, finetune_acc=sup),
                            "bn": dict(test_acc=0.1, bn_acc=bn - 0.05, finetune_acc=bn),
                            "magnitude": dict(test_acc=0.1, bn_acc=mag - 0.05,
                                              finetune_acc=mag)}}
    return {"runs": [run(0.6, 0.17, 0.10, 0.40, 0.38, 0.37, 0.30),
                     run(0.9, 0.25, 0.30, 0.387, 0.36, 0.37, 0.28),
                     run(1.2, 0.34, 0.50, 0.37, 0.20, 0.30, 0.22)]}


@pytest.fixture
def fake(monkeypatch):
    """Section 3's values from fixtures: the cpu profile's sizes, no files."""
    state = {"runs": [_record("SLBI", 0.387), _record("SGD", 0.442)],
             "data": _measurement(), "sweep": _sweep()}
    monkeypatch.setattr(V, "finished", lambda P: state["runs"])
    monkeypatch.setattr(V, "measured", lambda P: state["data"])
    monkeypatch.setattr(V, "sweep_measured", lambda P: state["sweep"])
    state["sweep_runs"] = []   # the sweep's SLBI records (empty_layers reads their support)
    monkeypatch.setattr(V, "sweep_finished", lambda P: state["sweep_runs"])
    state["P"] = get_profile("cpu")
    return state


def _sweep_run(entry_at, support, seed=0):
    rec = _record("SLBI", 0.3, seed)
    rec["entry_at"] = entry_at
    rec["history"][0]["slbi_support"] = dict(zip(LAYERS, support), **{"classifier.1": 5})
    rec["history"][0]["slbi_sizes"] = dict(zip(LAYERS, (8, 8)), **{"classifier.1": 10})
    return rec


def _set(sweep, entry_at, by, acc):
    for r in sweep["runs"]:
        if r["entry_at"] == entry_at:
            r["methods"][by]["finetune_acc"] = acc


def _all_at_chance(sweep, entry_at):
    """Every method's network at ``entry_at`` fine-tuned to chance (10%)."""
    for by in ("support", "bn", "magnitude"):
        _set(sweep, entry_at, by, 0.10)


def test_budget_verdict_follows_its_numbers(fake):
    P = fake["P"]
    text = V.budget_verdict(P)
    # 36.0 against 37.0 (|BN scale|) and 28.0 (norm): within noise of |BN scale|, ahead of norm
    assert "36.0%" in text and "37.0%" in text and "28.0%" in text
    assert "ties with |BN scale|" in text and "beats filter-norm pruning" in text
    # over the sweep, support - |BN scale|: +1, -1, -10; support - norm: +8, +8, -2 (noise ~2.6-3)
    assert ("Over the sweep, all 3 thresholds can tell the methods apart (entries 0.6, "
            "0.9 and 1.2): there Γ's support, against |BN scale|, ties at entries 0.6 and 0.9 and "
            "loses at entry 1.2; against filter norm, wins at entries 0.6 and 0.9 and ties "
            "at entry 1.2") in text
    _set(fake["sweep"], 0.9, "bn", 0.45)
    flipped = V.budget_verdict(P)
    assert "loses to |BN scale|" in flipped
    assert "against |BN scale|, ties at entry 0.6 and loses at entries 0.9 and 1.2" in flipped
    _set(fake["sweep"], 0.9, "bn", 0.20)
    assert "beats |BN scale| (network slimming)" in V.budget_verdict(P)
    assert ("against |BN scale|, wins at entry 0.9, ties at entry 0.6 and loses at entry 1.2"
            in V.budget_verdict(P))


def test_budget_tally_leaves_out_thresholds_that_cannot_rank(fake):
    """Nothing pruned (the three networks are one) or every method at chance:
    such a threshold is named, not counted for or against the support."""
    P = fake["P"]
    fake["sweep"]["runs"][0]["fraction_out"] = 0.0               # entry 0.6: nothing out
    for by in ("support", "bn", "magnitude"):
        _set(fake["sweep"], 1.2, by, 0.10)                       # entry 1.2: all at chance
    text = V.budget_verdict(P)
    assert ("Over the sweep, 1 of its 3 thresholds can tell the methods apart (entry 0.9; "
            "at entry 0.6 nothing is pruned, and at entry 1.2 every method is at chance): "
            "there Γ's support, against |BN scale|, ties at entry 0.9; against filter norm, wins "
            "at entry 0.9") in text
    comp = V.sweep_comparisons(P, study.sweep_frame(fake["sweep"]), "finetune_acc")
    assert comp["void"] == {0.6: "nothing pruned", 1.2: "at chance"}
    assert comp["told"] == {0.9: {"bn": "ties with", "magnitude": "beats"}}
    _set(fake["sweep"], 1.2, "bn", 0.30)                         # one method learns again
    assert "2 of its 3 thresholds" in V.budget_verdict(P)
    fake["sweep"]["runs"][1]["fraction_out"] = 0.0
    _set(fake["sweep"], 1.2, "bn", 0.10)
    assert V.budget_verdict(P).endswith(
        "None of the 3 thresholds of the sweep can tell the methods apart (at entries 0.6 "
        "and 0.9 nothing is pruned and at entry 1.2 every method is at chance).")
    assert V._at_entries([1.0, 1.1], [0.6, 0.9, 1.0, 1.1]) == "from entry 1 on"
    assert V._at_entries([0.6], [0.6, 0.9]) == "at entry 0.6"


def test_verdict_for_the_summary_follows_its_numbers(fake):
    P = fake["P"]
    text = V.verdict(P)
    assert text.startswith("VGG-16-BN at width 0.25, 1 seed, 10 epochs: at λ = 0.25 DessiLBI "
                           "left 30.0% of the conv filters outside Γ's support, at 38.7% test "
                           "accuracy (SGD: 44.2%)")
    assert ("cut to the support, 36.0% after the short fine-tune: it ties with the better of "
            "pruning as many filters per layer by |BN scale| (37.0%) or by filter norm (28.0%).") in text
    _set(fake["sweep"], 0.9, "support", 0.50)
    assert "it beats the better of pruning as many filters per layer by |BN scale|" in V.verdict(P)


def test_the_summary_names_the_sweeps_sparsest_support_that_learns(fake):
    P = fake["P"]                       # entry 1.2: 50% out, support 20.0 against |BN scale| 30.0
    text = V.verdict(P)
    assert ("Sparser, at λ = 0.34 (50.0% out, unpruned 37.0%), the cut network has 20.0%: "
            "it loses to |BN scale| (30.0%; filter norm 22.0%).") in text
    assert "empties a whole conv layer" not in text
    _set(fake["sweep"], 1.2, "support", 0.36)                       # flip the number
    assert "it beats |BN scale| (30.0%; filter norm 22.0%)." in V.verdict(P)
    fake["sweep_runs"] = [_sweep_run(1.2, (8, 0))]
    # the cut network at 36.0%: the empty layer is said, "at chance" is not
    assert V.verdict(P).endswith("From λ = 0.34 on (50.0% of the conv filters out), the "
                                 "support empties a whole conv layer (conv2).")
    _set(fake["sweep"], 1.2, "support", 0.10)                       # at chance: not "sparser"
    assert "Sparser" not in V.verdict(P)
    assert V.verdict(P).endswith("From λ = 0.34 on (50.0% of the conv filters out), the "
                                 "support empties a whole conv layer (conv2) and the cut "
                                 "network is at chance.")
    assert "No threshold of the sweep" not in V.verdict(P)  # the own threshold is sparse


def test_readings_say_so_when_every_filter_entered_the_support(fake):
    """The full profile's case: at the profile's own threshold nothing is
    outside the support, so there is no sparsity to report, no cut to rank
    and no pruning comparison at that budget."""
    P = fake["P"]
    for r in fake["sweep"]["runs"]:          # up to the profile's own threshold: none out
        if r["entry_at"] <= V.sizes(P).entry_at:
            r["fraction_out"] = 0.0
    fake["sweep_runs"] = [_sweep_run(1.2, (8, 0))]
    _all_at_chance(fake["sweep"], 1.2)
    text = V.verdict(P)
    assert ("at λ = 0.25 every conv filter entered Γ's support, so DessiLBI made no filter "
            "sparse (38.7% test accuracy; SGD: 44.2%).") in text
    assert "ties with the better of" not in text
    assert text.endswith("the cut network is at chance. No threshold of the sweep gives a "
                         "sparse network that still learns at this budget.")
    budget = V.budget_verdict(P)
    assert budget.startswith("At this budget (entry 0.9, λ = 0.25) every conv filter is "
                             "inside Γ's support, so cutting to it prunes nothing")
    support = fake["data"]["seeds"][0]["support"]
    support["total"]["fraction_out"] = 0.0
    for layer in support.get("layers", []):
        layer["fraction_out"] = 0.0
    path = V.path_reading(P)
    assert path.startswith("Every conv filter is inside Γ's support at the end, so cutting")
    assert "costs the most" not in path


def test_order_verdict_follows_its_numbers(fake):
    P = fake["P"]
    assert "path order is the worst of the 3 rankings" in V.order_verdict(P)
    for r in fake["data"]["seeds"][0]["rows"]:
        if r["order"] == "path" and r["model"] == "SLBI" and r["fraction"] == 0.5:
            r["test_acc"] = 0.38
    assert "path order is the best of the 3 rankings" in V.order_verdict(P)
    means = {}                                 # between the other two: says which place
    for r in fake["data"]["seeds"][0]["rows"]:
        if r["model"] == "SLBI" and r["fraction"] > 0:
            means.setdefault(r["order"], []).append(r["test_acc"])
    lo, hi = sorted(sum(v) / len(v) for o, v in means.items() if o != "path")
    for r in fake["data"]["seeds"][0]["rows"]:
        if r["order"] == "path" and r["model"] == "SLBI" and r["fraction"] > 0:
            r["test_acc"] = (lo + hi) / 2
    assert "path order is the second of the 3 rankings" in V.order_verdict(P)


def test_table_readings_follow_their_numbers(fake):
    P = fake["P"]
    runs = V.runs_reading(P)
    assert runs.startswith("SGD has the higher test accuracy (44.2% against 38.7%")
    assert "lead of 5.5 points is more than the 3.1 points" in runs
    fake["runs"][0]["metrics"]["test_acc"] = 0.45
    assert V.runs_reading(P).startswith("SLBI has the higher test accuracy (45.0%")
    assert "is no more than" in V.runs_reading(P)                   # 0.8 points

    pruning = V.pruning_reading(P)
    assert "SLBI, |BN scale| keeps the most" in pruning
    assert "with every conv layer pruned by 90% every method is at chance" in pruning
    for r in fake["data"]["seeds"][0]["rows"]:
        if r["method"] == "SLBI, path order" and r["fraction"] > 0:
            r["test_acc"] = 0.38
    assert "SLBI, path order keeps the most" in V.pruning_reading(P)
    assert "no all-convs row is at chance" in V.pruning_reading(P)

    path = V.path_reading(P)
    assert "conv2 costs the most" in path and "1 of 2 layers keep at least 95%" in path
    assert "the network keeps" in path                              # 30% is above chance
    fake["data"]["seeds"][0]["support"]["total"]["test_acc"] = 0.10
    assert "the network is at chance (10.0% test accuracy" in V.path_reading(P)

    after = V.after_reading(P)       # ranks the rows at one budget, not the support's
    assert after.startswith("After the short fine-tune, with 50% of every conv layer's "
                            "filters removed, SLBI, path order is highest (30.0%")
    assert ("The network cut to Γ's support (35.0%) removes 25.0% of the filters, so it is "
            "not ranked against those rows here") in after
    for row in fake["data"]["seeds"][0]["finetuned"]:
        if row["method"] == "SGD, |BN scale|":
            row["finetune_acc"] = 0.4                                # flip the number
    assert "removed, SGD, |BN scale| is highest (40.0%" in V.after_reading(P)


def test_sweep_reading_follows_its_numbers(fake):
    P = fake["P"]
    text = V.sweep_reading(P)
    assert "outside Γ's support rises from 10.0% to 50.0%" in text
    # 40.0, 38.7, 37.0: a spread of 3.0 points, within the 3.1 of test sampling
    assert ("unpruned accuracy stays between 37.0% and 40.0% (a spread of 3.0 points, no "
            "more than the 3.1 points sampling the test set alone can give: flat within "
            "noise)") in text
    assert "cut to the support after the short fine-tune falls from 38.0% to 20.0%" in text
    assert "the best row after the short fine-tune is entry 0.6 by Γ's support" in text
    _set(fake["sweep"], 1.2, "support", 0.42)
    text = V.sweep_reading(P)
    assert "falls from 38.0% to 20.0%" not in text
    assert "support after the short fine-tune rises from 38.0% to 42.0% (lowest 36.0% at " \
        "entry 0.9)" in text
    assert "best row after the short fine-tune is entry 1.2 by Γ's support" in text
    fake["sweep"]["runs"][2]["base"] = 0.30                     # beyond noise: it falls
    assert "unpruned accuracy falls from 40.0% to 30.0%" in V.sweep_reading(P)
    fake["sweep"]["runs"][1]["base"] = 0.45                     # up, then down
    assert "unpruned accuracy falls from 40.0% to 30.0% (highest 45.0% at entry 0.9)" \
        in V.sweep_reading(P)
    fake["sweep"]["runs"][2]["base"] = 0.41                     # and back
    assert ("unpruned accuracy ends within noise of where it starts (40.0% and 41.0%; "
            "highest 45.0% at entry 0.9)") in V.sweep_reading(P)


def test_words_for_numbers():
    assert [V.plural(1, "seed"), V.plural(3, "seed"), V.plural(0.5, "warm-up epoch"),
            V.plural(1, "layer"), V.plural(0, "step")] == \
        ["1 seed", "3 seeds", "0.5 warm-up epochs", "1 layer", "0 steps"]
    assert V.series_words({0.6: 34.2, 0.9: 33.6, 1.2: 33.1}, 3.0, 1).startswith(
        "stays between 33.1% and 34.2% (a spread of 1.1 points, no more than the 3.0 points")
    assert V.series_words({0.6: 34.2, 0.9: 33.6, 1.2: 33.1}, 1.0, 2) == \
        "falls from 34.2% to 33.1%"
    assert "spread over seeds" in V.series_words({1: 30.0, 2: 30.5}, 1.0, 2)
    S = study.sizes(get_profile("full"))
    assert V.finetune_words(S).startswith(f"{S.finetune_steps} steps of batch 128, 0.57 "
                                          "of an epoch of the 45,000 training images")
    assert V.finetune_words(study.Sizes(**{**vars(S), "finetune_steps": 0})) == \
        "0 steps (skipped in this profile)"

def test_the_sweep_names_the_conv_layers_its_support_empties(fake):
    P = fake["P"]
    fake["sweep_runs"] = [_sweep_run(0.6, (8, 4)), _sweep_run(0.9, (8, 4)),
                          _sweep_run(1.2, (3, 0)), _sweep_run(1.2, (0, 0), seed=1)]
    assert V.empty_layers(P) == {0.6: [], 0.9: [], 1.2: ["conv2"]}   # the first seed's
    from cifar_lib.registry import TABLES
    assert list(TABLES["slbi_sweep"](P)["conv layers left empty"]) == ["none", "none", "conv2"]
    assert V._layer_span(["conv7", "conv8", "conv9", "conv12"]) == "conv7-conv9, conv12"
    _all_at_chance(fake["sweep"], 1.2)
    text = V.sweep_reading(P)
    assert ("From entry 1.2 on, Γ's support leaves at least one whole conv layer empty "
            "(conv2 at entry 1.2), so cutting to it") in text
    _set(fake["sweep"], 1.2, "bn", 0.30)            # |BN scale| learns: not every method at chance
    assert "(conv2 at entry 1.2). Caveat" in V.sweep_reading(P)
    _set(fake["sweep"], 1.2, "bn", 0.10)
    _set(fake["sweep"], 1.2, "support", 0.30)                       # learned after all
    assert "(conv2 at entry 1.2). Caveat" in V.sweep_reading(P)
    fake["sweep_runs"] = [_sweep_run(e, (8, 4)) for e in (0.6, 0.9, 1.2)]
    assert "whole conv layer" not in V.sweep_reading(P)


def test_sweep_table_and_figure_from_the_fixture(fake):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure
    P = fake["P"]
    df = V.sweep_table(P)                                 # one row per threshold
    assert list(df["entry at (share of path time)"]) == ["0.6", "0.9", "1.2"]
    assert list(df.columns[-3:]) == [f"{m}: pruned / BN / fine-tuned (%)" for m in
                                     ("cut to Γ's support", "by |BN scale|", "by filter norm")]
    assert df.iloc[2, -3] == "10.0 / 15.0 / 20.0"         # 1.2: support 0.20 fine-tuned
    assert df.iloc[2, -2] == "10.0 / 25.0 / 30.0"
    assert isinstance(V.fig_sweep(P), Figure) and isinstance(V.fig_pruning(P), Figure)
    plt.close("all")
    table = V.pruning_table(P)
    assert table.loc[0, "50% pruned"] == "34.8 (20.0)"            # (20 - 10) / (38.7 - 10)
    assert table.loc[0, "90% pruned"] == "0.0 (10.0)"
    vals = study.values(P)
    assert all(v is not None for v in vals.values()), [k for k, v in vals.items() if v is None]


SECTION = re.compile(r"^## 3\. DessiLBI.*?(?=^## )", re.S | re.M)


def test_every_table_has_a_reading_and_every_figure_a_caption():
    text = SECTION.search(TEMPLATE.read_text()).group(0)
    after = lambda m: text[m.end():].lstrip("\n").split("\n\n")[0]  # noqa: E731
    tables = list(re.finditer(r"<!-- END table:(\S+) -->", text))
    figures = list(re.finditer(r"<!-- END figure:(\S+) -->", text))
    assert len(tables) == 5 and len(figures) == 5
    for m in tables:
        assert re.search(r"\*Reading:\* <!-- BEGIN value:slbi_\w+_reading -->", after(m)), m[1]
    numbers = [re.match(r"\*Figure (3\.\d+)\. ", after(m)) for m in figures]
    assert all(numbers), [m[1] for m, n in zip(figures, numbers) if not n]
    assert [n[1] for n in numbers] == [f"3.{i}" for i in range(1, len(figures) + 1)]
    assert "value:slbi_verdict" in text and "value:slbi_budget_verdict" in text


def test_sweep_figure_before_the_measurement_draws_the_runs(fake, monkeypatch):
    """Runs on disk, sweep not measured: the figure shows their sparsity and accuracy."""
    from matplotlib.figure import Figure
    P = fake["P"]
    slbi_rec = dict(fake["runs"][0], config={"optimizer": "slbi", "seed": 0,
                                             "optim_kw": {"lambda_conv": 0.25}})
    recs = [dict(slbi_rec, entry_at=e) for e in (0.6, 0.9)]
    monkeypatch.setattr(V, "sweep_measured", lambda P: None)
    monkeypatch.setattr(V, "sweep_finished", lambda P: recs)
    sweep = study.sweep_from_records(recs)
    assert [r["fraction_out"] for r in sweep["runs"]] == [0.25, 0.25]   # 4 of 16 filters
    assert isinstance(V.fig_sweep(P), Figure)
    assert V.sweep_table(P) is None and V.sweep_reading(P) is None
    monkeypatch.setattr(V, "sweep_finished", lambda P: [])
    assert V.fig_sweep(P) is None

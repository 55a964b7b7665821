"""Fair comparisons: failed runs out of the means, rates chosen on
validation, readings that follow their numbers, no row identical to
another."""
import json
import math

import pytest

from cifar_lib import store
from cifar_lib.experiments import Experiment, Run, results_frame, run_experiment, summarize
from cifar_lib.profiles import PROFILES, REPO, get_profile
from cifar_lib.report import TEMPLATE
from cifar_lib.studies import classification as study
from cifar_lib.studies.classification import runs as section1
import importlib

v1 = importlib.import_module("cifar_lib.studies.classification.values")

LN10 = math.log(10)


def rec(label, acc, seed=0, lr=0.1, stuck=False, epochs=4, val=None, status="ok",
        experiment="ablation_x", **cfg):
    """A stored record of ``epochs`` epochs: learning, or at chance."""
    hist = []
    for e in range(1, epochs + 1):
        if stuck:
            hist.append({"epoch": e, "train_loss": LN10, "val_acc": 0.1, "val_loss": LN10})
        else:
            hist.append({"epoch": e, "train_loss": 2.0 / e, "val_acc": acc * e / epochs,
                         "val_loss": 1.0 / e})
    v = (0.1 if stuck else acc) if val is None else val
    return {"experiment": experiment, "label": label, "run": f"{label}-{seed}-{lr}",
            "status": status, "history": hist,
            "config": {"model": "fastnet", "seed": seed, "lr": lr, "epochs": epochs,
                       "grad_clip": 0.0, **cfg},
            "metrics": {"test_acc": 0.1 if stuck else acc, "best_val_acc": v,
                        "kept_val_acc": v, "train_time": 1.0},
            "data": {"source": "synthetic"}, "env": {"device_name": "cpu"}}


def test_a_run_at_chance_is_failed_and_out_of_the_mean():
    recs = [rec("vgg_a", 0.449, seed=1), rec("vgg_a", 0.156, seed=0, stuck=True),
            rec("lenet", 0.40, seed=0), rec("lenet", 0.50, seed=1)]
    df = results_frame(recs)
    assert list(df["status"]) == ["ok", "failed", "ok", "ok"]
    s = summarize(df, metrics=("test_acc",))
    row = s[s["label"] == "vgg_a"].iloc[0]
    assert row["test_acc_mean"] == pytest.approx(0.449) and row["failed"] == 1
    assert row["runs"] == 2
    table = v1.summary_table(recs)
    assert list(table["failed"]) == [1, 0]
    assert table["per seed"].iloc[0] == "10.0 (failed), 44.9"
    assert table["test acc (%)"].iloc[0] == "44.9"


def test_a_row_whose_every_seed_failed_has_no_mean_and_says_why():
    recs = [rec("Adam lr=0.0001", 0.22, stuck=True), rec("Adam lr=0.01", 0.60)]
    row = v1.summary_table(recs).set_index("variant").loc["Adam lr=0.0001"]
    assert (row["test acc (%)"], row["val acc (%)"], row["train time (s)"]) == (
        v1.NO_MEAN,) * 3
    assert row["per seed"] == "10.0 (failed)" and row["failed"] == 1
    assert "n/a" not in v1.summary_table(recs).to_string()


def test_two_seeds_that_agree_show_another_decimal():
    assert v1._pm(0.8738, 0.0003) == "87.38 ± 0.03"
    assert v1._pm(0.874, 0.004) == "87.4 ± 0.4"


def test_a_grid_chooses_on_validation_and_skips_failed_points():
    recs = [rec("Adam", 0.80, lr=0.001, val=0.79), rec("Adam", 0.85, lr=0.003, val=0.84),
            rec("Adam", 0.1, lr=0.01, stuck=True), rec("Adam", 0.86, lr=0.003, seed=1),
            rec("SGD", 0.9, lr=1.0)]
    keep, grids = v1.at_chosen(recs)
    assert grids["Adam"]["chosen"] == 0.003 and "SGD" not in grids
    assert sorted((r["label"], r["config"]["seed"]) for r in keep) == [
        ("Adam", 0), ("Adam", 1), ("SGD", 0)]
    assert v1.grid_text(grids["Adam"]) == "0.001: 79.0, 0.003: 84.0 (chosen), 0.01: failed"
    # test accuracy plays no part: a better test score at a worse val score loses
    recs[0] = rec("Adam", 0.99, lr=0.001, val=0.5)
    assert v1.at_chosen(recs)[1]["Adam"]["chosen"] == 0.003
    # a choice at an end of the grid says so: the best rate may lie beyond
    recs[0] = rec("Adam", 0.9, lr=0.001, val=0.9)
    assert v1.grid_text(v1.at_chosen(recs)[1]["Adam"]) == \
        "0.001: 90.0 (chosen, bottom of the grid), 0.003: 84.0, 0.01: failed"


def test_choose_waits_for_the_whole_grid(tmp_path):
    P = get_profile("smoke").with_(root=tmp_path)
    base = section1.ablation_recipe(P)
    cands = [base.replace(lr=v) for v in section1.rate_grid(base.lr)]
    assert section1.rate_grid(1.0) == (0.333, 1.0, 3.0)
    best, final = section1.choose(P, cands)
    assert best is cands[1] and not final
    for c, val in zip(cands, (0.5, 0.4, 0.6)):
        r = rec("fastnet", val, lr=c.lr, val=val)
        r["config"] = c.to_dict()
        r["data"] = {"source": "synthetic", "train": 1, "val": 1, "test": 1}
        store.write(r, P.results / "g" / f"{c.lr}.json")
    best, final = section1.choose(P, cands)
    assert final and best is cands[2]


def _store_val(P, cfg, val):
    r = rec("fastnet", val, lr=cfg.lr, val=val)
    r["config"] = cfg.to_dict()
    r["data"] = {"source": "synthetic", "train": 1, "val": 1, "test": 1}
    store.write(r, P.results / "g" / f"{cfg.lr}.json")


def test_a_grid_grows_beyond_an_end_that_wins(tmp_path):
    P = get_profile("cpu").with_(root=tmp_path)
    assert section1.sizes(P).grid_growth == 3   # cpu: FastNet's rate needed three
    base = section1.ablation_recipe(P)
    three = [base.replace(lr=v) for v in section1.rate_grid(1.0)]
    assert section1.grown(P, three) == three              # nothing stored: the three
    for c, val in zip(three, (0.4, 0.5, 0.6)):            # the top wins
        _store_val(P, c, val)
    grid = section1.grown(P, three)
    assert [c.lr for c in grid] == [0.333, 1.0, 3.0, 9.0]  # one rate beyond it
    best, final = section1.choose(P, grid)
    assert not final                                      # until that rate is stored
    _store_val(P, grid[-1], 0.55)                         # 3.0 is now inside: final
    assert section1.grown(P, three) == grid
    assert section1.choose(P, grid) == (grid[2], True)


def test_a_grid_grows_at_most_its_profiles_growth_then_says_so(tmp_path):
    P = get_profile("cpu").with_(root=tmp_path)
    base = section1.ablation_recipe(P)
    three = [base.replace(lr=v) for v in section1.rate_grid(1.0)]
    for c, val in zip(three, (0.6, 0.5, 0.4)):            # the bottom wins ...
        _store_val(P, c, val)
    _store_val(P, base.replace(lr=0.111), 0.65)           # ... and again
    _store_val(P, base.replace(lr=0.037), 0.70)           # ... and again
    _store_val(P, base.replace(lr=0.0123), 0.75)          # ... and again
    _store_val(P, base.replace(lr=0.0041), 0.80)          # (a fourth is never listed)
    grid = section1.grown(P, three)
    assert [c.lr for c in grid] == [0.0123, 0.037, 0.111, 0.333, 1.0, 3.0]  # three, no more
    assert section1.choose(P, grid) == (grid[0], True)
    recs = [rec("m", v, lr=c.lr, val=v)
            for c, v in zip(grid, (0.75, 0.7, 0.65, 0.6, 0.5, 0.4))]
    assert v1.grid_text(v1.at_chosen(recs)[1]["m"]).startswith(
        "0.0123: 75.0 (chosen, bottom of the grid)")
    F = get_profile("full").with_(root=tmp_path)
    assert section1.sizes(F).grid_growth == 2
    S = get_profile("smoke").with_(root=tmp_path)
    assert section1.sizes(S).grid_growth == 0 and section1.grown(S, three) == three


def test_the_plain_runner_follows_a_grid_that_grows(tmp_path, monkeypatch):
    """run_budget trains the grid, the rate it grows by, then the runs that
    waited for the choice, in one call."""
    from types import SimpleNamespace
    from cifar_lib import plan as pl
    state = {"done": []}

    def job(key, waits=False):
        return SimpleNamespace(key=key, done=key in state["done"], group="core",
                               run=SimpleNamespace(waits=waits), est_s=1.0,
                               label=key, experiment="e", cfg=SimpleNamespace(seed=0),
                               row=lambda: {"key": key})

    def fake_plan(P, *a, **k):
        d = state["done"]
        jobs = [job("lr-1"), job("lr-2"), job("lr-3")]
        grid_done = {"lr-1", "lr-2", "lr-3"} <= set(d)
        if grid_done:
            jobs.append(job("lr-9"))                      # the top won: the grid grows
        final = grid_done and "lr-9" in d
        jobs.append(job("seed-1 at the choice" if final else "seed-1 waiting", waits=not final))
        return jobs

    def fake_train(j, P, split, claim, log):
        state["done"].append(j.key)
        return 0.1

    monkeypatch.setattr(pl, "plan", fake_plan)
    monkeypatch.setattr(pl, "_train_job", fake_train)
    monkeypatch.setattr(pl, "_post_steps", lambda jobs: [])
    monkeypatch.setattr("cifar_lib.experiments.profile_split", lambda P, root=None: None)
    out = pl.run_budget(get_profile("smoke").with_(root=tmp_path), budget_min=10,
                        log=lambda m: None)
    assert state["done"] == ["lr-1", "lr-2", "lr-3", "lr-9", "seed-1 at the choice"]
    assert out["pending"] == 0


def test_notebook_03_looks_inside_each_models_chosen_run(tmp_path):
    """Not the last grid point: the one chosen on validation."""
    from cifar_lib.studies.classification import measures
    P = get_profile("smoke").with_(root=tmp_path)
    grid = section1.arch_grid(P)["resnet18"]
    assert "resnet18" not in measures.vis_runs(P)        # grid incomplete: none yet
    for c, val in zip(grid, (0.5, 0.7, 0.6)):
        r = rec("resnet18", val, lr=c.lr, val=val)
        r["config"] = c.to_dict()
        r["data"] = {"source": "synthetic", "train": 1, "val": 1, "test": 1}
        store.write(r, P.results / "architectures" / f"{c.lr}.json")
    assert measures.vis_runs(P)["resnet18"].cfg.lr == grid[1].lr


def test_waiting_runs_train_once_their_grid_is_done(tmp_path, monkeypatch):
    """run_experiment trains the grid, then the runs that waited for it."""
    from cifar_lib import experiments as ex
    P = get_profile("smoke").with_(root=tmp_path)
    base = section1.ablation_recipe(P)
    done = {}

    def make_runs(profile):
        grid = [Run("m", base.replace(lr=v)) for v in (0.1, 0.2)]
        ready = len(done) >= 2
        chosen = 0.2 if ready else 0.1
        return grid + [Run("m", base.replace(lr=chosen, seed=1),
                           waits=None if ready else "the grid")]

    def fake_train(exp, r, profile, split, **kw):
        done[r.cfg.lr, r.cfg.seed] = True
        return {"lr": r.cfg.lr, "seed": r.cfg.seed}

    monkeypatch.setattr(ex, "train_one", fake_train)
    out = run_experiment(Experiment("t", "01_architectures", "1.2", "core", make_runs),
                         P, split=object())
    assert sorted(done) == [(0.1, 0), (0.2, 0), (0.2, 1)]
    assert [(o["lr"], o["seed"]) for o in out] == [(0.1, 0), (0.2, 0), (0.2, 1)]


def test_the_reading_follows_its_numbers():
    base = [rec("baseline (baseline)", 0.80, seed=0), rec("baseline (baseline)", 0.81, seed=1)]
    recs = [base[0], rec("flip", 0.85)]
    text = v1.reading(recs, base)
    assert text.startswith("Best row: flip at 85.0%, +5.0 points over the baseline, more than")
    recs = [base[0], rec("flip", 0.805)]
    text = v1.reading(recs, base)
    assert "+0.5 points over the baseline, within the seed noise" in text
    recs = [base[0], rec("flip", 0.70)]
    assert v1.reading(recs, base).startswith("Best row: baseline (baseline) at 80.0%, the "
                                             "baseline itself, 10.0 points ahead of flip")
    recs = [base[0], rec("flip", 0.85), rec("flip", 0.1, seed=1, stuck=True)]
    assert "1 run has failed and is left out of the means" in v1.reading(recs, base)


def test_a_reading_without_a_baseline_gives_the_lead_and_its_noise():
    recs = [rec("a", 0.60), rec("b", 0.58)]
    assert v1.reading(recs, None, "model") == (
        "Best model: a at 60.0%, 2.0 points ahead of b (one seed each: no spread to "
        "compare with); at 4 epochs.")
    recs += [rec("a", 0.61, seed=1), rec("b", 0.66, seed=1)]          # flip the order
    assert v1.reading(recs, None, "model") == (
        "Best model: b at 62.0%, 1.5 points ahead of a, within the two rows' own seed gaps "
        "(8.0 and 1.0 points); at 4 epochs.")


def test_the_long_budget_reading_says_what_flips(monkeypatch):
    recs = [rec("baseline, 4 epochs", 0.80), rec("baseline, 16 epochs", 0.85),
            rec("cutmix, 4 epochs", 0.75), rec("cutmix, 16 epochs", 0.88),
            rec("cross-entropy, 4 epochs", 0.82), rec("cross-entropy, 16 epochs", 0.86)]
    monkeypatch.setattr(v1, "records", lambda exp, P: recs)
    P = get_profile("smoke")
    text = v1.long_budget_reading(P)
    assert "flips with the budget for cutmix (-5.0 → +3.0)" in text
    assert "the verdict holds at both budgets for cross-entropy (+2.0 → +1.0)" in text
    table = v1.long_budget_table(P)
    assert list(table["setting"]) == ["baseline", "cutmix", "cross-entropy"]
    recs[3] = rec("cutmix, 16 epochs", 0.80)
    assert "holds at both budgets for cutmix (-5.0 → -5.0), cross-entropy" in v1.long_budget_reading(P)


@pytest.mark.parametrize("profile", ["cpu", "full"])
def test_no_two_settings_of_an_experiment_train_identically(profile):
    """A row whose setting never acted trains exactly as another row: two
    different configs of one experiment may not share a history."""
    P = get_profile(profile)
    from cifar_lib import studies
    for exp in studies.experiments(extended=False):
        seen = {}
        for r in exp.runs(P):
            key = store.identity(r.cfg.to_dict(), r.tag, {})
            found = [x for x in store.runs(P.results, exp.name)
                     if store.identity(x["config"], x.get("tag"), {}) == key]
            if not found:
                continue
            hist = json.dumps([(h.get("train_loss"), h.get("val_acc"))
                               for h in found[-1]["history"]])
            other = seen.get((hist, r.cfg.seed))
            assert other is None or other == key, (exp.name, r.label)
            seen[(hist, r.cfg.seed)] = key


def test_every_section1_table_has_a_reading_in_the_template():
    text = TEMPLATE.read_text()
    for name in study.ABLATION_EXPERIMENTS.values():
        assert f"value:reading_{name}" in text, name
    assert "value:reading_architectures" in text and "table:long_budget" in text
    assert "table:final_model" in text


def test_the_long_budget_reading_counts_a_difference_within_the_seeds_as_a_tie(monkeypatch):
    recs = [rec("baseline, 4 epochs", 0.80), rec("baseline, 4 epochs", 0.82, seed=1),
            rec("baseline, 16 epochs", 0.85), rec("baseline, 16 epochs", 0.85, seed=1),
            rec("cutmix, 4 epochs", 0.80), rec("cutmix, 4 epochs", 0.81, seed=1),
            rec("cutmix, 16 epochs", 0.90), rec("cutmix, 16 epochs", 0.90, seed=1)]
    monkeypatch.setattr(v1, "records", lambda exp, P: recs)
    P = get_profile("smoke")
    text = v1.long_budget_reading(P)
    # -0.5 at 4 epochs is within the 2.0-point seed gap; +5.0 at 16 is not
    assert "cutmix is a tie at 4 epochs and better at 16 (-0.5 → +5.0)" in text
    assert "largest gap between two seeds (2.0 at 4, 0.0 at 16 epochs)" in text
    table = v1.long_budget_table(P).set_index("setting")
    assert table.loc["cutmix", "vs baseline (points, 4 → 16 epochs)"] == "-0.5 → +5.0 (verdict changes)"


def test_a_reading_names_the_grids_that_chose_an_end():
    grids = {"a": {"chosen": 0.1, "grid": [(0.1, 0.5), (0.3, 0.4), (0.9, 0.3)]},
             "b": {"chosen": 0.3, "grid": [(0.1, 0.5), (0.3, 0.6), (0.9, 0.3)]}}
    assert v1.edge_note(grids) == (" 1 of the 2 rate grids chose an end of the grid (a): "
                                   "a wider grid could change the ranking.")
    grids["a"]["chosen"] = 0.3
    assert v1.edge_note(grids) == ""


def test_a_baseline_that_leads_with_one_seed_says_by_how_much():
    recs = [rec("CIFAR stem (baseline)", 0.512, model_kw="a"),
            rec("ImageNet stem", 0.481, model_kw="b")]
    assert v1.reading(recs) == ("Best row: CIFAR stem (baseline) at 51.2%, the baseline "
                                "itself, 3.1 points ahead of ImageNet stem (one seed each: "
                                "no spread to compare with); at 4 epochs.")

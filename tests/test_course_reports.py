"""Beside the earlier course reports: the quoted data, the table, report B's recipe."""
from __future__ import annotations

import hashlib
import json
import re

import pytest
import torch

from cifar_lib.engine import TrainConfig, fit, make_loaders
from cifar_lib import studies
from cifar_lib.store import write as write_json
from cifar_lib.landscape import Recorder
from cifar_lib.models import count_params, create_model, list_models
from cifar_lib.profiles import REPO, get_profile
from cifar_lib.report import BLOCK, TABLES, TEMPLATE, refresh_text
from cifar_lib.studies import course_reports as CR
from conftest import TINY_MODEL

# Our model is not the size of theirs here: report B's VGG-11 has the
# ImageNet-size classifier (128.8M), ours the CIFAR one.
NOT_SAME_SIZE = {"vgg11"}


def test_every_setting_names_a_setting_of_ours():
    """Each key names a registered model of the architecture comparison (whose
    full list may leave it out: then the table says so) or a label of the full
    profile's ablations (a renamed label fails here), or a schedule of one."""
    for s in CR.settings():
        key = s["ours"]
        assert s["report"] in "ABCDE" and s["metric"] in CR.METRICS
        assert isinstance(s["value"], (int, float)) and s["recipe"]
        if key.get("experiment") == "architectures":
            assert key["label"] in list_models(), (s["setting"], key)
        elif "label" in key:
            exp = studies.experiment(key["experiment"])
            labels = [r.label for r in exp.runs(get_profile("full"))]
            assert key["label"] in labels, (s["setting"], key)
        elif "scheduler" in key:  # a row whose label carries the profile's sizes
            exp = studies.experiment(key["experiment"])
            assert any(r.cfg.scheduler == key["scheduler"]
                       for r in exp.runs(get_profile("full"))), (s["setting"], key)
        else:  # a model with options, found in whichever experiment runs it
            TrainConfig(model=key["model"], model_kw=key["model_kw"])


def test_our_models_are_the_size_they_report():
    checked = 0
    for s in CR.settings():
        key = s["ours"]
        model = key.get("model") or (key["label"] if key.get("experiment") == "architectures"
                                     else None)
        if not s.get("params") or model is None or model in NOT_SAME_SIZE:
            continue
        with torch.device("meta"):
            n = count_params(create_model(model, **key.get("model_kw", {})))
        assert n == pytest.approx(s["params"], rel=0.01), s["setting"]
        checked += 1
    assert checked >= 25


def test_quoted_numbers_and_metrics():
    by = {(s["report"], s["setting"]): s for s in CR.settings()}
    d = by["D", "ResNeXt-50 32x4d"]
    assert (d["metric"], d["value"], d["epochs"]) == ("test error", 4.54, 200)
    assert CR.theirs_cell(d) == "95.46 (error 4.54)"
    b = by["B", "VGG-A with BN"]
    assert CR.theirs_cell(b) == "84.29 (best val acc)" and b["epochs"] == 50
    e = by["E", "ResNet-18, ImageNet stem (baseline)"]
    assert e["ours"] == {"model": "resnet18", "model_kw": {"stem": "imagenet"}}
    assert e["epochs"] is None  # report E does not say
    assert CR.theirs_cell(by["C", "LeNet-style CNN"]) == "64"


def _record(cfg, label, experiment, acc, val=0.6, source="synthetic", seconds=12.0,
            tag=None):
    digest = hashlib.sha1(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()
    rec = {"experiment": experiment, "run": f"{label}-s{cfg.seed}-{digest[:10]}",  # as stored
           "label": label,
           "status": "ok", "config": cfg.to_dict(), "created": "2024-01-01T00:00:00",
           "data": {"source": source, "train": 640}, "history": [],
           "env": {"device": "cpu", "device_name": "cpu"},
           "metrics": {"test_acc": acc, "best_val_acc": val, "train_time": seconds,
                       "wall_time": seconds, "params": 1000, "epochs_run": cfg.epochs}}
    if tag is not None:  # recorded step by step (the BatchNorm study): nothing kept here
        rec.update(tag=tag, **Recorder(**tag).result())
    return rec


@pytest.fixture
def profile(tmp_path):
    """The smoke profile with two seeds, writing into a temp folder, with runs
    of three shared settings on disk (each under the tag its experiment
    records it with: the BatchNorm study's runs have one)."""
    P = get_profile("smoke").with_(root=tmp_path, seeds=(0, 1))
    for exp, label, accs in (("ablation_optimizers", "Adam", (0.50, 0.54)),
                             ("architectures", "lenet", (0.95,)),
                             ("batchnorm", "VGG-A + BN, Adam lr=0.001", (0.10,))):
        runs = [r for r in studies.experiment(exp).runs(P) if r.label == label]
        assert (runs[0].tag is not None) == (exp == "batchnorm")
        if exp == "ablation_optimizers":  # the rate grid (first seed), then seed 1
            grid = [r for r in runs if r.cfg.seed == 0]
            for i, (r, acc, val) in enumerate(zip(grid, (0.3, 0.50, 0.4), (0.6, 0.7, 0.65))):
                write_json(_record(r.cfg, label, exp, acc, val=val),
                           P.results / exp / f"g{i}.json")
            runs = [r for r in studies.experiment(exp).runs(P) if r.label == label
                    and r.cfg.seed == 1]
            assert runs[0].cfg.lr == grid[1].cfg.lr
            accs = accs[1:]
        for i, (r, acc) in enumerate(zip(runs, accs)):
            write_json(_record(r.cfg, label, exp, acc, val=0.7, tag=r.tag),
                       P.results / exp / f"r{i}.json")
    return P


def test_table_puts_ours_beside_theirs(profile):
    df = TABLES["course_reports"](profile)
    assert len(df) == len(CR.settings())
    rows = {(r["reported by"], r["setting"]): r for r in df.to_dict("records")}
    adam = rows["course report A", "optimizer: Adam"]
    assert adam["theirs (%)"] == "88.42" and adam["ours (%)"] == "52.0 ± 2.8"
    assert adam["seeds"] == 2 and adam["our train time (s)"] == "12"
    assert adam["epochs theirs / ours"] == "50 / 1"
    assert "data theirs / ours" not in adam        # one data set on each side: in the text
    assert adam["our run"] == "optimizers (1.3): Adam"
    assert adam["our recipe"].startswith("FastNet x0.125, Adam lr 0.002")
    lenet = rows["course report C", "LeNet-style CNN"]
    assert lenet["ours (%)"] == "95.0" and lenet["epochs theirs / ours"] == "200 / 1"
    # their metric is the best validation accuracy: ours is too
    assert rows["course report B", "VGG-A with BN"]["ours (%)"] == "70.0"
    assert rows["course report A", "optimizer: sign-SGD"]["ours (%)"] == "not run"
    assert rows["course report D", "PreActResNet-18"]["ours (%)"] == \
        "not run (not in the smoke profile)"
    assert rows["course report D", "PreActResNet-18"]["seeds"] == 0


def test_values_for_the_prose(profile):
    n = len(CR.settings())
    vals = CR.values(profile)
    assert vals["course_reports_matched"] == f"3 of {n}"
    # Adam (52 < 88.42) and VGG-A + BN (70 < 84.29) are below; LeNet (95 > 64) is not
    assert vals["course_reports_below"] == "2"
    assert vals["course_reports_below_fewer_epochs"] == "2"
    bn_epochs = studies.experiment("batchnorm").runs(profile)[0].cfg.epochs
    assert bn_epochs > 1
    assert vals["course_reports_our_epochs"] == f"1 to {bn_epochs}"
    assert vals["course_reports_our_data"] == "synthetic"
    assert vals["course_reports_their_epochs"] == "50 to 200"
    empty = CR.values(get_profile("smoke").with_(root=profile.root / "nothing"))
    assert empty["course_reports_matched"] == f"0 of {n}"
    assert empty["course_reports_below"] is None
    assert empty["course_reports_our_epochs"] is None and empty["course_reports_our_data"] is None


def test_model_key_finds_the_run_in_any_experiment(profile):
    assert CR._registered() == {e.name: e for e in studies.experiments()}
    runs = CR._Runs(profile)
    recs, planned = runs.find({"model": "lenet", "model_kw": {}})
    assert "architectures" in planned and [r["label"] for r in recs] == ["lenet"]
    recs, planned = runs.find({"model": "resnet34", "model_kw": {"stem": "imagenet"}})
    assert recs == [] and planned == []  # no experiment of the smoke profile runs it
    assert runs.find({"experiment": "no_such_experiment", "label": "x"}) == ([], [])


def test_schedule_key_finds_the_row_whose_label_carries_its_step_size(profile):
    """The step schedule's label names its step size, which follows the
    profile's epochs; the course reports' StepLR row finds it by schedule."""
    runs = CR._Runs(profile)
    found = runs.candidates({"experiment": "ablation_schedulers", "scheduler": "step"})
    assert list(found) == ["ablation_schedulers"]
    (label,) = found["ablation_schedulers"]
    assert label.startswith("step (x0.1 every ")
    step = [s for s in CR.settings() if s["ours"].get("scheduler") == "step"]
    assert step and CR._key_words(step[0]["ours"]) == "schedulers (1.3): the step schedule"


def test_runs_of_a_setting_pool_seeds_and_prefer_the_longest_recipe(profile):
    """A third seed in another experiment joins the mean; of two recipes of one
    label (e.g. WRN-28-10 short in the main set, long in the extended set) the
    longer-trained one is shown."""
    short, long_ = TrainConfig(epochs=2), TrainConfig(epochs=6)
    runs = CR._Runs(profile)
    runs._configs = {"main": [("x", short)], "more": [("x", long_), ("x", long_.replace(seed=1))]}
    runs._records = {"main": [_record(short, "x", "main", 0.9)],
                     "more": [_record(long_, "x", "more", 0.5),
                              _record(long_.replace(seed=1), "x", "more", 0.7)]}
    CR.ALSO["main"] = ("more",)
    try:
        recs, planned = runs.find({"experiment": "main", "label": "x"})
    finally:
        del CR.ALSO["main"]
    assert planned == ["main", "more"]
    assert [(r["config"]["epochs"], r["config"]["seed"]) for r in recs] == [(6, 0), (6, 1)]
    assert {runs.source[r["run"]] for r in recs} == {"more"}  # named by the set that has it


def test_heavy_models_are_opt_in(profile):
    """ResNeXt-50 runs only in the extended set: the table says so."""
    df = TABLES["course_reports"](profile).set_index("setting")
    assert df.loc["ResNeXt-50 32x4d", "ours (%)"] == "not run (opt-in: the extended set)"


def test_a_reports_table_says_each_recipe_once_and_each_row_its_change(profile):
    """Report A's table: the recipe most rows share stated above it (here
    the Adam row's, the only one run), a row naming only its own
    ingredients, theirs likewise in the setting."""
    df = TABLES["course_reports_a"](profile).set_index("setting")
    assert "reported by" not in df and "their recipe" not in df
    col = "our run; its recipe where it differs"
    assert df.loc["optimizer: Adam", col] == "optimizers (1.3): Adam"
    assert df.loc["optimizer: sign-SGD", col] == "optimizers (1.3): sign-SGD (signum)"
    mse = [s for s in df.index if s.startswith("loss: MSE")]
    # only its network differs from the recipe stated above the table
    assert mse == ["loss: MSE (their recipe: 3-conv CNN 128-256-512 in place of "
                   "3-conv CNN 64-128-256, the rest as above)"]
    said = CR.values(profile)["course_report_a_recipes"]
    assert said.startswith("Their recipe: 3-conv CNN 64-128-256; Adam 1e-3, wd 1e-4, grad "
                           "clip, StepLR(20, 0.1). Ours: FastNet x0.125, Adam lr 0.002")
    # every setting is in one report's table
    n = sum(len(TABLES[f"course_reports_{x}"](profile)) for x in "abcde")
    assert n == len(CR.settings())


def test_the_common_recipe_takes_a_majority_and_leaves_the_rest_to_the_rows():
    a = {"model": "FastNet", "optimizer": "SGD lr 1", "wd": "wd 0.1", "batch": "batch 8"}
    b = {"model": "FastNet", "optimizer": "Adam lr 0.01", "batch": "batch 8"}
    c = {"model": "LeNet-5", "optimizer": "SGD lr 1", "wd": "wd 0.1", "batch": "batch 8",
         "loss": "mse"}
    common = CR.common_recipe([a, b, c])
    assert common == {"model": "FastNet", "optimizer": "SGD lr 1", "wd": "wd 0.1",
                      "loss": None, "batch": "batch 8",  # and the rest at its default
                      **dict.fromkeys(("schedule", "smoothing", "augment", "normalize"))}
    assert CR.recipe_change(a, common) == ""
    assert CR.recipe_change(b, common) == "Adam lr 0.01, no weight decay"
    assert CR.recipe_change(c, common) == "LeNet-5, mse"
    assert CR.recipe_change(c, common, said="MSE on one-hot") == "LeNet-5"  # the label says it
    # two recipes that share only the batch: each row says the rest
    split = CR.common_recipe([a, c])
    assert "model" not in split and split["batch"] == "batch 8"
    assert CR.recipe_change(a, split) == "FastNet, cross-entropy"
    assert CR.common_words(split).endswith("each row gives its network, loss and any "
                                           "other change")
    assert CR._their_change("x, y", "x") == " (their recipe adds y)"
    assert CR._their_change("z", "x") == " (their recipe: z)" and CR._their_change("x", "x") == ""
    assert CR._their_change("a; b", "c; b") == " (their recipe: a in place of c, the rest as above)"
    assert CR._their_change("a; d", "c; b") == " (their recipe: a; d)"


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else len(text)]


def test_report_section_renders_and_states_no_typed_numbers(profile):
    text = TEMPLATE.read_text()
    main = _section(text, "## Beside the earlier course reports")
    appendix = _section(text, "## Appendix: every setting beside the earlier course reports")
    # the main text has one row per report; every setting is in the appendix
    assert "<!-- BEGIN table:course_reports_condensed -->" in main
    assert all(f"<!-- BEGIN table:course_reports_{x} -->" in appendix for x in "abcde")
    assert "<details>" in appendix
    out = refresh_text(main, profile, profile.root)
    assert "| B | 1 of " in out and "| 52.0 |" in out and "n/a" not in out
    out = refresh_text(appendix, profile, profile.root)
    assert "| ResNet-18 |" in out and "52.0\u00a0±\u00a02.8" in out
    assert "-->Their recipe: AdamW then SGD" in out
    section = main + appendix
    prose = BLOCK.sub("", section)
    names = r"CIFAR-10|ResNet-18|ResNeXt-50|VGG-11|[A-E]-[A-E]|\b[A-E]\b"
    assert not re.search(r"\d", re.sub(names, "", prose)), "numbers typed by hand"


def test_report_b_recipe_trains(small_split):
    cfg = CR.report_b_recipe(TINY_MODEL["model"], epochs=5, batch_size=64,
                             model_kw=TINY_MODEL["model_kw"], amp=False)
    assert (cfg.optimizer, cfg.optim_kw["switch_at"], cfg.scheduler) == ("adamw_sgd", 0.8,
                                                                          "exponential")
    assert (cfg.lr, cfg.sched_kw, cfg.label_smoothing, cfg.weight_decay) == \
        (1e-3, {"gamma": 0.96}, 0.1, 1e-3)
    assert cfg.augment["erase"] > 0 and cfg.augment["crop"] and cfg.augment["flip"]
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert CR.report_b_recipe("resnet18").epochs == 70
    torch.manual_seed(0)
    model = create_model(cfg.model, **cfg.model_kw)
    phases = []
    out = fit(model, make_loaders(small_split, cfg, "cpu"), cfg,
              callbacks=(lambda optimizer, **_: phases.append(optimizer.phase),))
    assert out["status"] == "ok" and len(out["history"]) == 5
    lrs = [h["lr"] for h in out["history"]]
    assert lrs == pytest.approx([1e-3 * 0.96 ** e for e in range(5)])
    assert phases[0] == "adamw" and phases[-1] == "sgd"  # switched for the last 20%


def test_a_run_that_did_not_learn_stays_out_of_the_mean_and_is_named(profile):
    """A diverged seed is left out of our number (no NaN, no failed run
    averaged in) and the cell says so; a row none of whose runs learned
    says that instead of a number."""
    exp = "ablation_optimizers"
    r1 = next(r for r in studies.experiment(exp).runs(profile)
                    if r.label == "Adam" and r.cfg.seed == 1)
    rec = {**_record(r1.cfg, "Adam", exp, None), "status": "diverged"}
    write_json(rec, profile.results / exp / "r0.json")    # seed 1 diverged
    rows = {(r["report"], r["setting"]): r for r in CR.comparison(profile)}
    adam = rows["A", "optimizer: Adam"]
    assert adam["runs"] == 1 and adam["not_learned"] == ["diverged"]
    cells = {(r["reported by"], r["setting"]): r for r in
             TABLES["course_reports"](profile).to_dict("records")}
    assert cells["course report A", "optimizer: Adam"]["ours (%)"] == \
        "50.0 (1 diverged, left out)"
    for f in (profile.results / exp).glob("g*.json"):        # the grid's runs too
        write_json({**json.loads(f.read_text()), "status": "diverged",
                    "metrics": {"test_acc": None}}, f)
    cells = {(r["reported by"], r["setting"]): r for r in
             TABLES["course_reports"](profile).to_dict("records")}
    assert cells["course report A", "optimizer: Adam"]["ours (%)"].startswith(
        "no run learned (")
    assert "nan" not in TABLES["course_reports_condensed"](profile).to_string()

"""The report's summary: each answer follows the numbers it cites."""
import importlib

import matplotlib

matplotlib.use("Agg")

from cifar_lib import viz  # noqa: E402
from cifar_lib.studies import summary as S  # noqa: E402

from test_fair import rec  # noqa: E402

v1 = importlib.import_module("cifar_lib.studies.classification.values")


def base_pair(a=0.80, b=0.81):
    return [rec("crop (baseline)", a, seed=0), rec("crop (baseline)", b, seed=1)]


def test_the_answer_names_the_best_setting_and_whether_it_beats_the_noise():
    base = base_pair()
    recs = [base[0], rec("flip", 0.85)]
    b = S.best_vs_baseline(recs, base)
    assert b["best"] == "flip" and round(b["lead"], 6) == 5.0 and b["beyond_noise"]
    text = S.answer(b)
    assert text == ("flip (85.0%), +5.0 points over the baseline (80.0%); more than the "
                    "seed noise (1.0 points, the one two-seed gap measured so far)")
    # flip one number: the lead shrinks under the seed gap and the answer says tie
    recs = [base[0], rec("flip", 0.805)]
    assert S.answer(S.best_vs_baseline(recs, base)).endswith(
        "(1.0 points, the one two-seed gap measured so far): a tie")
    # flip it the other way: the baseline leads
    recs = [base[0], rec("flip", 0.70)]
    assert S.answer(S.best_vs_baseline(recs, base)).startswith(
        "the baseline, crop (80.0%), 10.0 points ahead of flip")


def test_the_noise_counts_seed_pairs_at_the_rows_epochs_only():
    """One seed per row: the lead is set against the seed gaps of the
    settings trained twice at the same epochs, not at a longer budget."""
    base = [rec("crop (baseline)", 0.80, augment="crop", seed=s) for s in (0, 1)]
    base[1]["metrics"]["test_acc"] = 0.81
    recs = [base[0], rec("flip", 0.815, augment="flip")]
    noise = base + [rec("cutmix", 0.70, seed=0, augment="cutmix"),
                    rec("cutmix", 0.72, seed=1, augment="cutmix")]
    long = [rec("crop (baseline)", 0.80, epochs=16, augment="crop"),
            rec("crop (baseline)", 0.90, seed=1, epochs=16, augment="crop")]
    b = S.best_vs_baseline(recs, noise + long)
    assert round(b["spread"], 6) == 2.0 and not b["beyond_noise"]
    assert S.answer(b).endswith("(2.0 points, the largest of 2 two-seed gaps): a tie")
    text = v1.reading(recs, noise + long)
    assert "within the seed noise (2.0 points, the largest of 2 two-seed gaps)" in text


def test_in_an_ablation_two_seeds_that_agree_do_not_shrink_the_noise():
    """One network, one factor: a lead inside the table's band (its figure's
    shaded noise) is a tie even where the two rows' own seeds happened to
    agree; the rows' own gaps count where they are the larger."""
    base = [rec("crop (baseline)", a, seed=s, augment="crop") for s, a in ((0, 0.800), (1, 0.801))]
    flip = [rec("flip", a, seed=s, augment="flip") for s, a in ((0, 0.805), (1, 0.805))]
    cut = [rec("cutmix", a, seed=s, augment="cutmix") for s, a in ((0, 0.70), (1, 0.71))]
    recs = base + flip + cut
    b = S.best_vs_baseline(recs, base)
    assert b["lead"] == 0.5 and round(b["spread"], 6) == 1.0 and not b["beyond_noise"]
    assert S.answer(b).endswith("within the seed noise (1.0 points, the largest of 3 "
                                "two-seed gaps): a tie. Clearly worse than the baseline: "
                                "cutmix (-9.5)")
    assert "+0.5 points over the baseline, within the seed noise (1.0 points" in v1.reading(recs, base)
    assert [lbl for lbl, _ in v1.apart_from_baseline(
        recs, v1._ranked(v1.results_frame(recs)), b, base)] == ["cutmix"]
    flip[1]["metrics"]["test_acc"] = 0.825                     # flip's own gap is now 2.0
    recs = base + flip + cut
    b = S.best_vs_baseline(recs, base)
    assert b["noise"] == "the two rows' own seed gaps (2.0 and 0.1 points)"
    flip[0]["metrics"]["test_acc"], flip[1]["metrics"]["test_acc"] = 0.84, 0.85
    b = S.best_vs_baseline(base + flip + cut, base)              # a lead beyond both
    assert b["beyond_noise"] and b["noise"] == "the two rows' own seed gaps (1.0 and 0.1 points)"
    # across architectures the two rows' own gaps alone (an erratic third
    # model's gap says nothing about these two): unchanged
    models = [rec("a", 0.60, model_kw="a"), rec("a", 0.601, seed=1, model_kw="a"),
              rec("b", 0.58, model_kw="b"), rec("b", 0.581, seed=1, model_kw="b"),
              rec("c", 0.30, model_kw="c"), rec("c", 0.50, seed=1, model_kw="c")]
    assert S.best_vs_baseline(models)["beyond_noise"]


def test_the_baseline_accuracy_is_its_chosen_rate_only(monkeypatch):
    """The baseline's grid runs at the other rates are not averaged in."""
    from types import SimpleNamespace
    chosen = SimpleNamespace(to_dict=lambda: {"model": "fastnet", "seed": 0, "lr": 0.3,
                                              "epochs": 4, "grad_clip": 0.0})
    runs = importlib.import_module("cifar_lib.studies.classification.runs")
    monkeypatch.setattr(runs, "baseline_choice", lambda P: (chosen, True))
    monkeypatch.setattr(v1, "records", lambda exp, P: [
        rec("fastnet", 0.40, lr=0.1), rec("fastnet", 0.66, lr=0.3),
        rec("fastnet", 0.60, lr=0.9), rec("fastnet", 0.67, lr=0.3, seed=1)])
    assert v1.baseline_acc(None) == ("66.5 ± 0.7% (seeds: 66.0, 67.0; lr 0.3, "
                                     "chosen on validation)")


def test_failed_runs_do_not_win_and_one_seed_says_so():
    recs = [rec("a (baseline)", 0.6), rec("b", 0.1, stuck=True), rec("c", 0.62)]
    b = S.best_vs_baseline(recs)
    assert b["best"] == "c" and b["spread"] is None
    assert S.answer(b).endswith("one seed each, so the spread is not measured")
    # no baseline (the architectures): the lead over the runner-up, against the seeds
    models = [rec("a", 0.60, model_kw="a"), rec("a", 0.61, seed=1, model_kw="a"),
              rec("b", 0.58, model_kw="b")]
    assert S.answer(S.best_vs_baseline(models)) == (
        "a (60.5%), 2.5 points ahead of b; more than the seed noise (1.0 points, the "
        "one two-seed gap measured so far)")
    models[2]["metrics"]["test_acc"] = 0.603                  # flip one number
    assert S.answer(S.best_vs_baseline(models)).endswith("two-seed gap measured so far): a tie")
    # both rows with two seeds: their own gaps, not an erratic third model's
    models = [rec("a", 0.60, model_kw="a"), rec("a", 0.61, seed=1, model_kw="a"),
              rec("b", 0.58, model_kw="b"), rec("b", 0.585, seed=1, model_kw="b"),
              rec("c", 0.30, model_kw="c"), rec("c", 0.50, seed=1, model_kw="c")]
    # b's mean 58.25% prints as 58.2 (the float is 58.2499...): the lead is
    # the difference of the printed numbers, 60.5 - 58.2
    assert S.answer(S.best_vs_baseline(models)) == (
        "a (60.5%), 2.3 points ahead of b; more than the two rows' own seed gaps "
        "(1.0 and 0.5 points)")
    assert S.answer(None) == "pending"


def test_a_lead_is_the_difference_of_the_printed_numbers():
    """61.94% prints as 61.9 and 62.56% as 62.6: the sentence says +0.7,
    as a reader subtracting the table's numbers finds, not the raw 0.6."""
    base = base_pair(0.6194, 0.6194)
    b = S.best_vs_baseline([base[0], base[1], rec("elu", 0.6256)], base)
    assert (b["best_acc"], b["base_acc"], b["lead"]) == (62.6, 61.9, 0.7)
    assert "+0.7 points over the baseline (61.9%)" in S.answer(b)


def test_rows_beyond_the_noise_are_named_on_both_sides():
    """The reading names every row further from the baseline than the
    seed noise, not only the best one; within the noise, none."""
    base = base_pair(0.80, 0.81)                       # noise: a 1.0-point gap
    recs = base + [rec("flip", 0.812), rec("mixup", 0.74), rec("erasing", 0.798),
                   rec("crop", 0.83)]
    b = S.best_vs_baseline(recs, base)
    assert b["best"] == "crop" and b["apart"] == [("mixup", -6.5)]
    text = v1.reading(recs, base)
    assert text.endswith(" Below the baseline by more than the seed noise (points): "
                         "mixup (-6.5).")
    assert S.answer(b).endswith("Clearly worse than the baseline: mixup (-6.5)")
    recs = base + [rec("flip", 0.812), rec("erasing", 0.80)]
    assert v1.reading(recs, base).endswith(
        " No other row differs from the baseline by more than its seed noise.")
    # one seed everywhere: no noise, so nothing is named either way
    one = [rec("crop (baseline)", 0.80), rec("mixup", 0.60), rec("flip", 0.81)]
    assert S.best_vs_baseline(one)["apart"] == [] and "seed noise" not in v1.reading(one)


def test_a_row_takes_every_stored_seed_of_its_config(tmp_path):
    """The ablation table's baseline row is the baseline's config: its
    second seed, stored under the experiment ``baseline``, belongs in the
    row (and a setting the long-budget control trains at the same epochs
    likewise); another config's runs do not."""
    from cifar_lib import store
    from cifar_lib.profiles import get_profile
    P = get_profile("smoke").with_(root=tmp_path)
    mine = [rec("crop (baseline)", 0.80), rec("mixup", 0.70, mixup=0.2)]
    others = [rec("crop (baseline)", 0.82, seed=1, experiment="baseline"),
              rec("mixup", 0.72, seed=1, mixup=0.2, experiment="long_budget"),
              rec("mixup", 0.50, seed=1, mixup=0.2, epochs=16, experiment="long_budget")]
    for r in mine + others:
        path = store.run_path(P.results, r["experiment"], r["run"] + f"-e{r['config']['epochs']}")
        path.parent.mkdir(parents=True, exist_ok=True)
        store.write({**r, "created": "2026-01-01"}, path)
    got = v1.with_every_seed(mine, P)
    assert [(r["label"], r["config"]["seed"], r["metrics"]["test_acc"]) for r in got] == [
        ("crop (baseline)", 0, 0.80), ("crop (baseline)", 1, 0.82),
        ("mixup", 0, 0.70), ("mixup", 1, 0.72)]
    assert got[0] is not mine[0] and got[0]["metrics"] == mine[0]["metrics"]
    assert v1.with_every_seed([], P) == []


def test_dot_plot_draws_every_seed():
    rows = v1.dot_rows([rec("a (baseline)", 0.6), rec("a (baseline)", 0.62, seed=1),
                        rec("b", 0.1, stuck=True), rec("b", 0.5, seed=1)])
    assert rows == [("a (baseline)", [("ok", 60.0), ("ok", 62.0)], True),
                    ("b", [("failed", 10.0), ("ok", 50.0)], False)]
    fig = viz.seed_dots(rows, title="t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a (baseline)"]
    points = sum(len(c.get_offsets()) for c in ax.collections)
    assert points == 4
    matplotlib.pyplot.close(fig)


def test_dot_plot_shades_the_seed_noise_around_the_baseline():
    rows = [("a (baseline)", [("ok", 60.0), ("ok", 62.0)], True), ("b", [("ok", 58.0)], False)]
    fig = viz.seed_dots(rows, band=2.5)
    ax = fig.axes[0]
    (span,) = ax.patches
    xs = span.get_path().transformed(span.get_patch_transform()).vertices[:, 0]
    assert (min(xs), max(xs)) == (61.0 - 2.5, 61.0 + 2.5)      # around the baseline's mean
    legend = fig.legends[0]            # below the axes, where it hides no dot
    assert "2.5 points: the largest gap between two seeds" in legend.get_texts()[0].get_text()
    matplotlib.pyplot.close(fig)
    fig = viz.seed_dots(rows)                                   # no noise measured: no band
    assert not fig.axes[0].patches
    matplotlib.pyplot.close(fig)


def test_the_lr_grid_heat_map_greys_out_a_failed_cell():
    cells = [rec("x", 0.6, lr=0.01, scheduler="constant"), rec("x", 0.5, lr=0.01, scheduler="step"),
             rec("x", 0.3, lr=0.001, scheduler="constant"),
             rec("x", 0.10, lr=0.001, scheduler="step", stuck=True)]
    table, failed = v1.lr_grid_table(cells), v1.lr_grid_failed(cells)
    assert table.loc[0.01, "step"] == 50.0 and table.loc[0.001, "step"] != table.loc[0.001, "step"]
    assert failed.loc[0.001, "step"] == "failed\n(10.0)" and failed.loc[0.01, "step"] == ""
    fig = viz.heatmap(table, "schedule", "lr", "acc", failed=failed)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "failed\n(10.0)" in texts and "10.0" not in texts and "50.0" in texts
    matplotlib.pyplot.close(fig)


def test_the_lr_grid_caption_speaks_of_failed_cells_only_when_one_is_drawn(monkeypatch):
    ok = [rec("x", 0.6, lr=0.01, scheduler="constant"), rec("x", 0.5, lr=0.01, scheduler="step")]
    stuck = [rec("x", 0.10, lr=0.001, scheduler="step", stuck=True)]
    for recs, said in ((ok, False), (ok + stuck, True)):
        monkeypatch.setattr(v1, "records", lambda exp, profile, recs=recs: recs)
        assert ("hatched" in v1.lr_grid_failed_caption(None)) is said
    monkeypatch.setattr(v1, "records", lambda exp, profile: [])
    assert v1.lr_grid_failed_caption(None) is None  # pending


def test_observations_of_section_1_4_come_from_the_measurement(monkeypatch):
    data = {"classes": ["cat", "dog", "ship"],
            "confusion": {"model": "resnet18", "matrix": [[6, 3, 1], [1, 9, 0], [0, 0, 10]]},
            "per_class": {"resnet18": [0.6, 0.9, 1.0]},
            "calibration": {"resnet18": {"acc": 0.8, "ece": 0.05, "confidence": 0.9},
                            "fastnet": {"acc": 0.8, "ece": 0.04, "confidence": 0.7}},
            "cam_wrong": {"titles": ["cat->dog", "dog->cat"]}}
    monkeypatch.setattr(v1, "vis_measured", lambda P: data)
    out = v1.inside_observations(None)   # models by the report's names
    assert out["vis_confused"] == ("ResNet-18 predicts dog for 30% of the cat test images, "
                                   "the most confused pair")
    assert "weakest class is cat (60%), its strongest ship (100%)" in out["vis_classes"]
    assert "ResNet-18 ECE 0.050 (overconfident" in out["vis_calibration"]
    assert "FastNet ECE 0.040 (underconfident" in out["vis_calibration"]
    assert out["vis_cam_wrong"] == "the wrong predictions shown are cat taken for dog, dog taken for cat"
    assert out["reading_calibration"] == ("Best calibrated: FastNet (ECE 0.040); "
                                          "overconfident: ResNet-18; underconfident: FastNet.")
    data["calibration"]["resnet18"]["confidence"] = 0.75           # flip one number
    assert v1.inside_observations(None)["reading_calibration"].endswith(
        "every model is underconfident (mean confidence below accuracy).")
    data["calibration"]["fastnet"]["confidence"] = 0.79996          # 80.0% against 80.0%
    out = v1.inside_observations(None)
    assert "FastNet ECE 0.040 (mean confidence and accuracy both 80.0%)" in out["vis_calibration"]
    assert out["reading_calibration"].endswith(
        "underconfident: ResNet-18; mean confidence equal to accuracy (to 0.1 point): FastNet.")


def test_an_ablation_with_a_run_still_pending_has_no_answer(monkeypatch, tmp_path):
    """A missing row could be the best one: no answer from part of the runs."""
    from cifar_lib.profiles import get_profile
    from cifar_lib.studies.classification.runs import ABLATION
    P = get_profile("smoke").with_(root=tmp_path)
    runs = ABLATION["losses"].runs(P)
    made = [rec(r.label, 0.5 + 0.01 * i, seed=r.cfg.seed) for i, r in enumerate(runs)]
    other = [rec(r.label, 0.5, seed=r.cfg.seed) for r in ABLATION["activations"].runs(P)]

    def fake(exp, profile, **kw):  # losses and activations have run
        return list(made) if exp is ABLATION["losses"] else \
            list(other) if exp is ABLATION["activations"] else []
    monkeypatch.setattr(S, "records", fake)
    row = lambda: S.summary_table(P).set_index("question").filter(  # noqa: E731
        like="loss", axis=0).iloc[0, 0]
    assert not row().startswith("pending")          # every run in: an answer
    made.pop()
    assert row() == f"pending ({len(runs) - 1} of {len(runs)} runs done)"


def test_data_reading_follows_the_stored_summary(monkeypatch):
    from cifar_lib.data import CIFAR10_MEAN, CIFAR10_STD
    s = {"class_counts": {"train": [10, 10], "val": [5, 5]},
         "mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD)}
    monkeypatch.setattr(v1, "read", lambda P, *parts: s)
    assert v1.data_reading(None).startswith(
        "Every split has the same number of images in each class; the train split's channel "
        "means are within 0.0000")
    s["class_counts"]["val"] = [4, 6]
    s["mean"] = [m + 0.01 for m in CIFAR10_MEAN]
    text = v1.data_reading(None)
    assert text.startswith("Classes differ in size in val (4 to 6); ")
    assert "means are within 0.0100" in text


def test_the_grid_note_follows_each_cell():
    cells = [rec("x", acc, lr=lr, scheduler=sch) for lr, sch, acc in
             [(0.01, "step", 0.56), (0.01, "constant", 0.62),
              (0.001, "step", 0.52), (0.001, "constant", 0.59)]]
    assert v1.grid_schedules_note(cells) == (
        " The constant schedule beats step at every rate (constant minus step: "
        "+6.0 points at lr 0.01, +7.0 at lr 0.001).")
    cells[0]["metrics"]["test_acc"] = 0.70              # flip one cell
    assert v1.grid_schedules_note(cells).startswith(" Neither schedule wins at every rate")
    cells[0]["metrics"]["test_acc"] = 0.56
    cells += [rec("x", 0.22, lr=0.0001, scheduler="step", stuck=True),
              rec("x", 0.26, lr=0.0001, scheduler="constant")]
    assert v1.grid_schedules_note(cells) == (   # a failed cell is named, not subtracted
        " The constant schedule beats step at every rate where both learned (constant "
        "minus step: +6.0 points at lr 0.01, +7.0 at lr 0.001; step failed at lr 0.0001).")


def test_the_old_baseline_reading_follows_its_numbers(monkeypatch):
    recs = {"losses": [rec("ls (baseline)", 0.80, augment="a"),
                       rec("ls (baseline)", 0.81, seed=1, augment="a"),
                       rec("ce", 0.82, augment="b"), rec("ce", 0.82, seed=1, augment="b")],
            "activations": [rec("gelu (baseline)", 0.60, augment="c"), rec("relu", 0.58,
                                                                            augment="d")]}
    runs = importlib.import_module("cifar_lib.studies.classification.runs")
    monkeypatch.setattr(runs, "OLD_ABLATION", {k: k for k in recs})
    monkeypatch.setattr(S, "records", lambda exp, P: recs[exp])
    assert S.old_ablations_reading(None) == (
        "Best row per factor under the old baseline (points of test accuracy; a lead within "
        "the seed noise is marked a tie): losses: ce, +1.5; activations: the baseline, 2.0 "
        "ahead of relu (one seed each: no spread).")
    recs["losses"][2]["metrics"]["test_acc"] = 0.80                  # flip one number
    assert "losses: ce, +0.5 (a tie)" in S.old_ablations_reading(None)
    recs["losses"] = []                                           # one seed everywhere
    assert S.old_ablations_reading(None).endswith(
        "activations: the baseline, 2.0 ahead of relu. One seed each: no spread to set the "
        "leads against.")


def test_architecture_question_says_how_the_rates_were_set():
    """'rate chosen per model' only once every core model's grid has chosen."""
    shared = [rec("fastnet", 0.8, lr=0.2), rec("lenet", 0.5, lr=0.2)]
    assert S._rate_words(shared) == "shared recipe and rate; the per-model rate grids are pending"
    one = shared + [rec("fastnet", 0.7, lr=0.6)]               # fastnet's grid: two rates
    assert S._rate_words(one).endswith("where its grid has run, else shared")
    both = one + [rec("lenet", 0.4, lr=0.6)]
    assert S._rate_words(both) == "shared recipe, rate chosen per model"
    assert S._rate_words(both + [rec("resnet_s2", 0.6, lr=0.2)]) == \
        "shared recipe, rate chosen per model"                 # the zoo takes a core rate


def test_learning_curves_show_the_first_seed_that_learned():
    from cifar_lib.studies.classification.runs import first_seed
    recs = [rec("vgg_a", 0.45, seed=1), rec("vgg_a", 0.1, seed=0, stuck=True),
            rec("lenet", 0.5, seed=1), rec("lenet", 0.4, seed=0),
            rec("cnn3", 0.1, seed=0, stuck=True)]
    got = first_seed(recs)
    assert [(r["label"], r["config"]["seed"]) for r in got] == \
        [("vgg_a", 1), ("lenet", 0), ("cnn3", 0)]      # order by label's lowest seed


def test_the_architecture_table_says_a_shared_rate_source_and_equal_epochs_once(monkeypatch):
    import pandas as pd

    def summary(froms, epochs):
        n = len(froms)
        return pd.DataFrame({
            "label": ["fastnet", "lenet"][:n], "test_acc_mean": [0.8, 0.5][:n],
            "test_acc_std": [0.01, float("nan")][:n], "test_acc_per_seed": ["80.0", "50.0"][:n],
            "failed": [0] * n, "diverged": [0] * n, "epochs_mean": epochs,
            "common_epoch": [min(epochs)] * n, "val_at_common": [0.79, 0.49][:n],
            "lr": [0.2, 0.05][:n], "lr_from": froms, "params": [2e6, 6e4][:n],
            "mflops": [236.0, 1.0][:n], "train_time_mean": [3.0, 2.0][:n],
            "images_per_s_mean": [1e5, 1e4][:n], "devices": devices[:n]})
    devices = ["H100", "H100"]
    monkeypatch.setattr(v1, "arch_summary", lambda p: summary(["own grid", "shared"], [8, 8]))
    t = v1.arch_table(None)
    assert list(t["lr (chosen from)"]) == ["0.2 (own grid)", "0.05 (shared)"]
    assert "epochs" not in t and "val acc at epoch 8 (%)" in t
    assert "device" not in t                     # one device: its times compare
    devices[1] = "H200"
    assert list(v1.arch_table(None)["device"]) == ["H100", "H200"]
    monkeypatch.setattr(v1, "arch_summary", lambda p: summary(["shared; own grid pending"] * 2,
                                                              [8, 4]))
    t = v1.arch_table(None)
    assert list(t["lr (shared; own grid pending)"]) == ["0.2", "0.05"]
    assert list(t["epochs"]) == [8, 4] and "val acc at epoch 4 (%)" in t


def test_the_optimizer_section_states_each_optimizers_weight_decay():
    from cifar_lib.profiles import get_profile
    from cifar_lib.studies.classification.runs import optimizer_variants
    P = get_profile("smoke")
    text = v1.optimizer_decays(P)
    for name, cfg in optimizer_variants(P).items():
        if "(baseline)" not in name:
            assert name in text
            said = text.split(name, 1)[1].split(";")[0]
            assert (f"{cfg.weight_decay:g}" if cfg.weight_decay else "none") in said

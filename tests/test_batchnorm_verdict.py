"""The BatchNorm study's verdict: every direction is computed from the
numbers it cites, so flipping a number flips the sentence; averages per
phase leave out the steps at chance; surfaces are matched by loss."""
import importlib
import math

import numpy as np
import pytest

from cifar_lib.studies import batchnorm as study
from cifar_lib.studies.batchnorm import verdict as V


def test_pair_direction_and_wording_follow_the_numbers():
    p = V.pair([(0.3, 0.15), (0.32, 0.16), (0.1, 0.2)])
    assert (p.wins, p.seeds) == (2, 3)
    assert p.plain == pytest.approx(0.24) and p.bn == pytest.approx(0.17)
    assert V.direction(p) == 1
    assert V.said(p) == ("1.4x smaller with BN (0.17 vs 0.24; "
                         "lower with BN in 2 of 3 seeds)")
    flipped = V.Pair(p.bn, p.plain, 1, 3)
    assert V.direction(flipped) == -1 and V.said(flipped).startswith("1.4x larger")
    assert V.said(V.Pair(1.0, 1.03)) == "about the same with BN (1.03 vs 1)"
    assert V.said(V.Pair(0.2, 0.1), "narrower", "wider").startswith("2x narrower")
    assert V.pair([(None, 1.0), (0.0, 1.0)]) is None and V.said(None) == "not measured"


def _measures(adam_late_bn=0.15, band_matched_bn=0.2, late_wins=None):
    """Three measures: one agrees, one disagrees but a control explains
    it, one disagrees whatever the control. The late loss range is lower
    with BN in every seed where its mean is (``late_wins`` overrides)."""
    wins = (3 if adam_late_bn < 0.32 else 0) if late_wins is None else late_wins
    return [
        V.Measure("adam_loss_range", "the loss range along Adam's step",
                  {"early": V.Pair(0.3, 0.16, 3, 3),
                   "late": V.Pair(0.32, adam_late_bn, wins, 3)},
                  (("per unit of update length",
                    {"early": V.Pair(1.8, 1.0), "late": V.Pair(1.7, 0.8)}),)),
        V.Measure("band", "the course's band",
                  {"early": V.Pair(0.2, 0.4), "late": V.Pair(0.3, 0.5)},
                  (("at matched loss", {"early": V.Pair(0.3, band_matched_bn),
                                        "late": V.Pair(0.34, band_matched_bn)}),),
                  less="narrower", more="wider"),
        V.Measure("surface", "the rise of the loss",
                  {"end": V.Pair(0.7, 5.8)},
                  (("relative to the loss at the weights", {"end": V.Pair(0.57, 10.6)}),)),
    ]


def test_a_flipped_number_flips_the_sentence_and_the_verdict():
    ms = _measures()
    assert [V.verdict(m) for m in ms] == ["agrees", "disagrees", "disagrees"]
    s = V.sentence(ms[0])
    assert s.startswith("The loss range along Adam's step agrees with Santurkar et al.: "
                        "early 1.9x smaller with BN (0.16 vs 0.3")
    assert "late 2.1x smaller with BN (0.15 vs 0.32" in s
    assert "Per unit of update length it still agrees" in s
    # BN's late loss range made larger than VGG-A's: the sentence and the verdict flip
    flipped = _measures(adam_late_bn=0.64)[0]
    assert V.verdict(flipped) == "mixed"
    s = V.sentence(flipped)
    assert "agrees with Santurkar et al. only in part" in s
    assert "late 2x larger with BN (0.64 vs 0.32" in s
    assert "The control that explains it: per unit of update length BN is smoother" in s


def test_the_control_that_explains_a_disagreement_is_named_only_when_it_does():
    band, surface = _measures()[1:]
    assert V.explaining_control(band) == "at matched loss"
    assert "The control that explains it: at matched loss BN is smoother " \
           "(early 1.5x narrower with BN (0.2 vs 0.3)" in V.sentence(band)
    worse = _measures(band_matched_bn=0.5)[1]  # at matched loss BN is wider too
    assert V.explaining_control(worse) is None
    assert "No control here reverses it (at matched loss: early 1.7x wider" \
        in V.sentence(worse)
    assert V.explaining_control(surface) is None
    assert V.sentence(surface).endswith("(relative to the loss at the weights: 19x larger "
                                        "with BN (10.6 vs 0.57)).")


def test_summary_counts_and_lists_the_measures_for_and_against():
    text = V.summary(_measures())
    assert text.startswith("BatchNorm did not smooth the landscape here: 1 of 3 measures "
                           "agrees with Santurkar et al. (BN smoother in every phase, "
                           "in most seeds), 2 disagree.")
    assert ("\n- **For:** the loss range along Adam's step (early 1.9x smaller, "
            "late 2.1x smaller).") in text
    assert "\n- **Against:** the course's band (early 2x wider, late 1.7x wider), BN " \
           "smoother at matched loss; the rise of the loss (8.3x larger)." in text
    text = V.summary(_measures(adam_late_bn=0.64))
    assert "0 of 3 measures agree" in text and "**In part:** the loss range" in text
    assert V.summary([V.Measure("x", "x", {"early": None})]) is None
    assert V.counts(_measures()) == {"agrees": 1, "disagrees": 2}


# ---------------------------------------------------------------- from records


def _record(model, setting, seed, losses, probe_loss_range, probe_losses, *,
            step_norm=0.1, lr=None, epochs=2):
    """A run record with per-step losses and probes every 2 steps."""
    n = len(losses)
    steps = list(range(n))
    pst = list(range(0, n, 2))
    rng = np.asarray(probe_loss_range, float)
    return {
        "config": {"model": model, "optimizer": setting, "seed": seed, "epochs": epochs,
                   "lr": lr or (1e-3 if setting == "adam" else 0.02)},
        "status": "ok", "tag": {"probe_every": 2},
        "metrics": {"best_val_acc": 0.4, "test_acc": 0.4, "wall_time": 6.0},
        "env": {"device_name": "cpu"}, "data": {"train": 100},
        "history": [{"train_loss": losses[n // epochs * (e + 1) - 1]}
                    for e in range(epochs)],
        "steps": {"step": steps, "loss": list(losses), "last_grad": [1.0] * n,
                  "last_grad_change": [0.5] * n, "last_step": n - 1},
        "probes": {"step": pst, "loss": list(probe_losses), "loss_min": [1.0] * len(pst),
                   "loss_max": list(1.0 + rng), "gdist_max": [2.0] * len(pst),
                   "beta": [10.0] * len(pst), "step_norm": [step_norm] * len(pst),
                   "grad_norm": [1.0] * len(pst)},
    }


def _pair_of_runs(seed=0, bn_range=0.1, at_chance=2, bn_step=0.1):
    """VGG-A sits at chance over its first ``at_chance`` probes (where it
    looks smoothest); probes at steps 0-8 are the early phase, 10-18 the
    late one."""
    losses = np.linspace(2.3, 1.0, 20)
    plain_probe = [2.3] * at_chance + [2.0, 1.8, 1.6, 1.5, 1.4, 1.3, 1.2, 1.1][at_chance - 2:]
    bn_probe = [2.0, 1.8, 1.6, 1.4, 1.2, 1.0, 0.9, 0.8, 0.7, 0.6]
    plain = _record("vgg_a", "adam", seed, losses, [0.001, 0.001] + [0.3] * 8, plain_probe)
    bn = _record("vgg_a_bn", "adam", seed, losses * 0.8, [bn_range] * 10, bn_probe,
                 step_norm=bn_step)
    return plain, bn


def test_probe_phases_leave_out_the_probes_at_chance():
    plain, bn = _pair_of_runs()
    ph = study.probe_phases(plain, bn)
    assert set(ph) == {"early", "late"}
    assert (ph["early"]["probes"], ph["early"]["at_chance"]) == (3, 2)  # steps 0, 2 out
    assert ph["early"]["loss_range"] == pytest.approx((0.3, 0.1))
    assert ph["late"]["probes"] == 5
    assert ph["late"]["loss_range_per_step"] == pytest.approx((3.0, 1.0))
    assert study.at_chance([2.30, 2.20, 2.18, 2.5]).tolist() == [True, True, False, True]
    assert study.leaves_chance(plain) == 2  # losses 2.30, 2.23 (at chance), 2.16


def test_the_verdict_sentence_flips_with_a_number_in_the_records():
    S = study.SIZES["smoke"]
    runs = [r for seed in (0, 1) for r in _pair_of_runs(seed)]
    ms = {m.key: m for m in study.verdict_measures(runs, S, {})}
    m = ms["adam_loss_range"]
    assert V.verdict(m) == "agrees"
    assert m.phases["late"] == V.Pair(pytest.approx(0.3), pytest.approx(0.1), 2, 2)
    assert "late 3x smaller with BN (0.1 vs 0.3; lower with BN in 2 of 2 seeds)" \
        in V.sentence(m)
    # BN's loss range made larger in both seeds: the same sentence now says so
    runs = [r for seed in (0, 1) for r in _pair_of_runs(seed, bn_range=0.6)]
    m = {m.key: m for m in study.verdict_measures(runs, S, {})}["adam_loss_range"]
    assert V.verdict(m) == "disagrees"
    assert "late 2x larger with BN (0.6 vs 0.3; lower with BN in 0 of 2 seeds)" \
        in V.sentence(m)
    assert "disagrees with Santurkar et al." in V.sentence(m)


def test_matched_epochs_pick_the_bn_epoch_at_the_plain_final_loss():
    plain = _record("vgg_a", "adam", 0, np.linspace(2.3, 1.3, 40), [0.1] * 20, [2] * 20,
                    epochs=4)
    bn = _record("vgg_a_bn", "adam", 0, np.linspace(2.0, 0.2, 40), [0.1] * 20, [2] * 20,
                 epochs=4)
    assert study.end_loss(plain) == pytest.approx(1.3)
    assert study.end_loss(bn, 2) == pytest.approx(np.linspace(2.0, 0.2, 40)[19])
    assert study.matched_epochs(plain, bn) == 2  # 1.12 at epoch 2 vs 1.3
    assert math.isclose(study.end_loss(bn, 4), 0.2)


def test_a_measure_without_a_value_says_why_and_is_not_counted():
    band = V.Measure("band", "the course's band", {})
    ok = V.Measure("adam_loss_range", "the loss range", {"early": V.Pair(2.0, 1.0)})
    assert not band.measured()
    assert V.unmeasured(band) == ("The course's band: no value in this profile, since at "
                                  "every step it compares one of the networks sits at chance.")
    assert V.summary([band, ok]).count("1 of 1 measure agrees") == 1


# ------------------------------------------------ seeds, few probes, views


VALUES = importlib.import_module("cifar_lib.studies.batchnorm.values")


def test_a_mean_that_most_seeds_do_not_follow_counts_for_neither_side():
    p = V.Pair(16.96, 14.09, 1, 3)  # BN lower on average, higher in 2 of 3 seeds
    assert V.mean_direction(p) == 1 and not V.backed(p)
    assert V.call(p) == "split" and V.direction(p) == 0
    assert V.said(p) == ("1.2x smaller with BN on average (14.1 vs 17; but lower with "
                         "BN in only 1 of 3 seeds)")
    assert V.call(V.Pair(16.96, 14.09, 2, 3)) == "smoother"  # most seeds follow
    assert V.call(V.Pair(14.09, 16.96, 2, 3)) == "split"     # higher on average only
    assert V.call(V.Pair(14.09, 16.96, 1, 3)) == "rougher"
    assert V.call(V.Pair(10.0, 9.0, 1, 2)) == "split"        # half is not most
    assert V.call(V.Pair(10.0, 9.0)) == "smoother"           # one seed: its own way
    assert V.call(V.Pair(10.0, 9.8, 0, 3)) == "even"         # within 5%: seeds aside
    late = V.Pair(20.6, 19.9, 1, 3)
    ctl = (("relative to the gradient", {"early": V.Pair(8.5, 3.7, 3, 3),
                                         "late": V.Pair(6.0, 3.6, 3, 3)}),)
    split = V.Measure("adam_beta", "beta", {"early": p, "late": late}, ctl,
                      label="beta (Adam)")
    assert V.verdict(split) == "no difference"
    s = V.sentence(split)
    assert s.startswith("Beta shows no consistent difference (the seeds split): early "
                        "1.2x smaller with BN on average (14.1 vs 17; but lower with BN "
                        "in only 1 of 3 seeds); late about the same")
    assert "The control that explains it: relative to the gradient BN is smoother" in s
    # the same means with 2 of 3 seeds lower: the early phase counts for the paper
    backed = V.Measure("adam_beta", "beta", {"early": V.Pair(16.96, 14.09, 2, 3),
                                             "late": late}, ctl, label="beta (Adam)")
    assert V.verdict(backed) == "mixed"
    text = V.summary([split, backed])
    assert "0 of 2 measures agree" in text
    assert "1 agrees only in part and 1 shows no consistent difference" in text
    assert ("**Neither way:** beta (early 1.2x smaller on average but lower with BN in only "
            "1 of 3 seeds, late about the same)") in text
    assert V.summary([backed]).startswith(
        "Whether BatchNorm smoothed the landscape here is undecided: 0 of 1 measure agree")


def test_the_short_verdict_is_two_sentences_and_follows_the_counts():
    ms = _measures()
    short = V.short_summary(ms)
    assert short == ("No: 1 of 3 measures agrees with Santurkar et al. (BN smoother in "
                     "every phase, in most seeds), 2 disagree. For: the loss range along "
                     "Adam's step; against: the course's band, the rise of the loss "
                     "(details in section 2).")
    assert len(short) < len(V.summary(ms)) / 1.5
    both = _measures(band_matched_bn=0.2)[:1] * 2 + _measures()[1:2]
    assert V.short_summary(both).startswith("Yes: 2 of 3 measures agree")
    even = _measures()[:2]
    assert V.short_summary(even).startswith("Undecided: 1 of 2 measures agrees")
    assert V.summary(even).startswith("Whether BatchNorm smoothed the landscape here is "
                                      "undecided: 1 of 2")
    assert V.short_summary([]) is None


def _use(monkeypatch, runs, by_seed=None, S=None):
    """The study's values and tables read ``runs`` and ``by_seed``."""
    S = S or study.SIZES["smoke"]
    monkeypatch.setattr(VALUES, "records", lambda profile: runs)
    monkeypatch.setattr(VALUES, "sizes", lambda profile: S)
    monkeypatch.setattr(VALUES, "surfaces_by_seed", lambda profile: by_seed or {})
    return S


def test_the_table_and_verdict_say_where_the_seeds_split(monkeypatch, tmp_path):
    from cifar_lib.profiles import get_profile
    P = get_profile("smoke").with_(root=tmp_path)
    # BN's loss range is lower on average (0.237 vs 0.3) but higher in seeds 0, 1
    runs = [r for seed, bn in ((0, 0.35), (1, 0.35), (2, 0.01))
            for r in _pair_of_runs(seed, bn_range=bn)]
    _use(monkeypatch, runs)
    table = VALUES.measures_table(P)
    row = table[(table["measure"] == "loss range (Adam)") & (table["view"] == "as measured")
                & (table["phase"] == "late")].iloc[0]
    assert (row["with BN"], row["seeds BN lower"], row["BN smoother"]) == \
        ("1.3x smaller", "1 of 3", "seeds split")
    vals = VALUES.values(P)
    assert "agrees" not in vals["bn_v_adam_loss_range"].split(":")[0]
    assert vals["bn_v_adam_loss_range"].startswith(
        "The loss range along Adam's step shows no consistent difference (the seeds split)")
    assert "The seeds split (the means differ, most seeds do not follow) in: loss range " \
        "(Adam) early; loss range (Adam) late, which count for neither side." \
        in vals["bn_measures_reading"]
    # the same numbers with BN lower in every seed: the row and verdict agree
    runs = [r for seed in (0, 1, 2) for r in _pair_of_runs(seed, bn_range=0.237)]
    _use(monkeypatch, runs)
    table = VALUES.measures_table(P)
    assert set(table[table["measure"] == "loss range (Adam)"]["BN smoother"]) == {"yes"}
    assert VALUES.values(P)["bn_v_adam_loss_range"].startswith(
        "The loss range along Adam's step agrees with Santurkar et al.")


def test_a_phase_on_few_probes_says_so_and_the_counts_say_they_are_sums(
        monkeypatch, tmp_path):
    from cifar_lib.profiles import get_profile
    P = get_profile("smoke").with_(root=tmp_path)
    # VGG-A at chance over 4 of the 5 early probes in seeds 0 and 1, 2 in seed 2
    runs = [r for seed, n in ((0, 4), (1, 4), (2, 2)) for r in _pair_of_runs(seed, at_chance=n)]
    _use(monkeypatch, runs)
    probes = VALUES.probe_table(P)
    col = "probes kept (at chance), sum over 3 seeds"
    assert col in probes.columns
    assert list(probes[probes["phase"] == "early"][col]) == ["5 (10)"] * 2
    ms = {m.key: m for m in VALUES.verdict_measures(runs, study.SIZES["smoke"], {})}
    assert ms["adam_loss_range"].notes == {"early": "on few probes (5 of 15)"}
    vals = VALUES.values(P)
    assert "early 3x smaller with BN (0.1 vs 0.3; lower with BN in 3 of 3 seeds), on " \
        "few probes (5 of 15); late" in vals["bn_v_adam_loss_range"]
    assert "Adam's early phase rests on only 5 of its 15 probes over the 3 seeds " \
        "(1, 1 and 3 per seed), the rest at chance." in vals["bn_probes_reading"]
    assert "early 3x smaller on few probes" in vals["bn_verdict"]
    table = VALUES.measures_table(P)
    assert set(table[table["measure"] == "loss range (Adam)"]["phase"]) == \
        {"early (few probes)", "late"}
    # with most probes outside chance no phase is marked
    runs = [r for seed in (0, 1, 2) for r in _pair_of_runs(seed, at_chance=2)]
    _use(monkeypatch, runs)
    assert "few probes" not in VALUES.values(P)["bn_verdict"]
    assert "rests on" not in VALUES.values(P)["bn_probes_reading"]


def test_the_probes_reading_follows_the_update_lengths(monkeypatch, tmp_path):
    from cifar_lib.profiles import get_profile
    P = get_profile("smoke").with_(root=tmp_path)
    _use(monkeypatch, [r for s in (0, 1) for r in _pair_of_runs(s, bn_step=0.2)])
    text = VALUES.values(P)["bn_probes_reading"]
    assert text.startswith("BN's update against VGG-A's (mean ||update||): Adam early 2x "
                           "longer (0.2 vs 0.1); Adam late 2x longer (0.2 vs 0.1).")
    assert "in Adam early and Adam late BN moves farther and still has the smaller " \
        "loss range, so the range understates its smoothness." in text
    _use(monkeypatch, [r for s in (0, 1) for r in _pair_of_runs(s, bn_step=0.05)])
    text = VALUES.values(P)["bn_probes_reading"]
    assert "Adam early 2x shorter (0.05 vs 0.1)" in text
    assert "BN moves less and has the smaller range, so the range overstates" in text
    _use(monkeypatch, [r for s in (0, 1) for r in _pair_of_runs(s)])
    assert VALUES.values(P)["bn_probes_reading"].endswith(
        "The updates are about as long, so the loss ranges compare like with like.")


def _surface(rise, centre=1.0):
    """A 1-D surface whose loss rises by ``rise`` at +-0.5."""
    return {"alphas": [-1.0, -0.5, 0.0, 0.5, 1.0],
            "line": [centre + 4 * rise, centre + rise, centre, centre + rise,
                     centre + 4 * rise]}


def test_the_surface_rows_name_the_weights_they_compare(monkeypatch, tmp_path):
    from cifar_lib.profiles import get_profile
    P = get_profile("smoke").with_(root=tmp_path)
    S = study.SIZES["smoke"]
    by_seed = {s: {"vgg_a": _surface(0.5, 1.4), "vgg_a_bn": _surface(5.0, 0.7),
                   study.MATCHED: _surface(2.0, 1.37)} for s in (0, 1)}
    m = {m.key: m for m in VALUES.verdict_measures([], S, by_seed)}["surface"]
    assert m.view == "at matched training loss"
    assert m.phases["end"].bn == pytest.approx(2.0)
    final = dict(m.controls)[f"after the same {S.epochs} epochs"]["end"]
    assert final.bn == pytest.approx(5.0) and final.plain == pytest.approx(0.5)
    _use(monkeypatch, [], by_seed, S)
    table = VALUES.measures_table(P).set_index("view")
    assert table.loc["at matched training loss", "VGG-A + BN"] == pytest.approx(2.0)
    assert table.loc[f"after the same {S.epochs} epochs", "VGG-A + BN"] == \
        pytest.approx(5.0)
    # without the matched surface the measure is the final one, and says so
    plain = {s: {k: v for k, v in d.items() if k != study.MATCHED}
             for s, d in by_seed.items()}
    m = {m.key: m for m in VALUES.verdict_measures([], S, plain)}["surface"]
    assert m.view == f"after the same {S.epochs} epochs"
    assert m.phases["end"].bn == pytest.approx(5.0)
    assert [name for name, _ in m.controls] == ["relative to the loss at the weights",
                                                "with batch statistics"]


def test_rates_are_listed_in_order_and_described_as_configured(tmp_path):
    from cifar_lib.profiles import get_profile
    vals = study.values(get_profile("smoke").with_(root=tmp_path))
    assert vals["bn_lrs"] == "0.0001, 0.0005, 0.001, 0.002"
    cpu, full = (study.sizes(get_profile(n)) for n in ("cpu", "full"))
    assert VALUES._sgd_lr_why(full) == "chosen so that both networks train at this scale"
    assert VALUES._sgd_lr_why(cpu).startswith(
        f"lowered from the full profile's {full.sgd_lr:g}")
    runs = [_record(m, "adam", 0, np.linspace(2.3, 1.0, 20), [0.1] * 10, [2.0] * 10, lr=lr)
            for m in ("vgg_a_bn", "vgg_a") for lr in study.COURSE_LRS]
    assert [(m, lr) for m, _, lr in VALUES._settings(runs)] == \
        [(m, lr) for m in study.MODELS for lr in sorted(study.COURSE_LRS)]


def test_counts_read_in_the_singular_and_the_plural():
    one = _measures()[:1]
    assert V.summary(one).startswith("BatchNorm smoothed the landscape here: 1 of 1 "
                                     "measure agrees with")
    reading = VALUES._measures_reading(_measures())
    assert reading.startswith("Of the 3 measures, 1 agrees with Santurkar et al. in every "
                              "phase and 2 disagree;")
    assert VALUES._measures_reading(one).startswith(
        "Of the 1 measure, 1 agrees with Santurkar et al. in every phase;")
    assert V.plural(1, "seed") == "1 seed" and V.plural(3, "seed") == "3 seeds"


def test_the_summary_table_gives_the_short_verdict(monkeypatch, tmp_path):
    from cifar_lib.profiles import get_profile
    from cifar_lib.studies.summary import summary_table
    P = get_profile("smoke").with_(root=tmp_path)
    _use(monkeypatch, [r for seed in (0, 1) for r in _pair_of_runs(seed)])
    vals = VALUES.values(P)
    row = summary_table(P).set_index("question").loc[
        "does BatchNorm smooth the landscape (VGG-A)?", "answer at this budget"]
    assert row == vals["bn_verdict_short"] and row != vals["bn_verdict"]
    assert row.replace("et al.", "et al").count(". ") == 1  # two sentences
    assert row.endswith("(details in section 2).")
    # 1 of 4 measures for, none against: not a plain yes
    assert row.startswith("Undecided, leaning yes: 1 of 4 measures agrees")

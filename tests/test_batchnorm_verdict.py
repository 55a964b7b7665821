"""The BatchNorm study's verdict: every direction is computed from the
numbers it cites, so flipping a number flips the sentence; averages per
phase leave out the steps at chance; surfaces are matched by loss."""
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


def _measures(adam_late_bn=0.15, band_matched_bn=0.2):
    """Three measures: one agrees, one disagrees but a control explains
    it, one disagrees whatever the control."""
    return [
        V.Measure("adam_loss_range", "the loss range along Adam's step",
                  {"early": V.Pair(0.3, 0.16, 3, 3),
                   "late": V.Pair(0.32, adam_late_bn, 3, 3)},
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
                           "agree with Santurkar et al.")
    assert ("For: the loss range along Adam's step (early 1.9x smaller, "
            "late 2.1x smaller).") in text
    assert "Against: the course's band (early 2x wider, late 1.7x wider), BN smoother at " \
           "matched loss; the rise of the loss (8.3x larger)." in text
    text = V.summary(_measures(adam_late_bn=0.64))
    assert "0 of 3 measures agree" in text and "In part: the loss range" in text
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
        "status": "ok", "tag": {"probe_every": 2}, "metrics": {"best_val_acc": 0.4},
        "history": [{"train_loss": losses[n // epochs * (e + 1) - 1]}
                    for e in range(epochs)],
        "steps": {"step": steps, "loss": list(losses), "last_grad": [1.0] * n,
                  "last_grad_change": [0.5] * n, "last_step": n - 1},
        "probes": {"step": pst, "loss": list(probe_losses), "loss_min": [1.0] * len(pst),
                   "loss_max": list(1.0 + rng), "gdist_max": [2.0] * len(pst),
                   "beta": [10.0] * len(pst), "step_norm": [step_norm] * len(pst),
                   "grad_norm": [1.0] * len(pst)},
    }


def _pair_of_runs(seed=0, bn_range=0.1):
    """VGG-A sits at chance over its first probes (where it looks smoothest)."""
    losses = np.linspace(2.3, 1.0, 20)
    plain_probe = [2.3, 2.3, 2.0, 1.8, 1.6, 1.5, 1.4, 1.3, 1.2, 1.1]
    bn_probe = [2.0, 1.8, 1.6, 1.4, 1.2, 1.0, 0.9, 0.8, 0.7, 0.6]
    plain = _record("vgg_a", "adam", seed, losses, [0.001, 0.001] + [0.3] * 8, plain_probe)
    bn = _record("vgg_a_bn", "adam", seed, losses * 0.8, [bn_range] * 10, bn_probe)
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
    assert V.summary([band, ok]).count("1 of 1 measures") == 1

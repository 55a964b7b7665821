"""The BatchNorm study's measurements: probes, surfaces, the recorder hook."""
from __future__ import annotations

import copy
import importlib
import math
import warnings

import matplotlib
import numpy as np
import pytest
import torch
import torch.nn as nn

from cifar_lib import landscape as L
from cifar_lib import store
from cifar_lib.data import split_data, synthetic_cifar
from cifar_lib.engine import TrainConfig, fit, make_loaders
from cifar_lib.models import create_model
from cifar_lib.profiles import get_profile

matplotlib.use("Agg")


class Quadratic(nn.Module):
    """A model whose output is its weight vector; the loss makes it quadratic."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x):
        return self.w


def quadratic_problem(seed=0, n=6):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    lam = torch.linspace(0.5, 7.0, n, dtype=torch.float64)
    A = q @ torch.diag(lam) @ q.T
    c = torch.randn(n, generator=g, dtype=torch.float64)

    def loss_fn(w, _y):
        d = w - c
        return 0.5 * d @ A @ d
    return A, c, lam, q, loss_fn


def test_probe_on_quadratic_is_exact():
    A, c, _, _, loss_fn = quadratic_problem()
    w = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    model, x = Quadratic(w), torch.zeros(1, dtype=torch.float64)
    etas = [0.01, 0.05, 0.1, 0.2]
    p = L.probe(model, loss_fn, x, None, etas)
    g = A @ (w - c)
    Ag = A @ g
    want_losses = [float(loss_fn(w - e * g, None)) for e in etas]
    assert p["loss"] == pytest.approx(float(loss_fn(w, None)), rel=1e-12)
    assert p["grad_norm"] == pytest.approx(float(g.norm()), rel=1e-12)
    assert p["losses"] == pytest.approx(want_losses, rel=1e-10)
    assert p["loss_min"] == pytest.approx(min(want_losses), rel=1e-10)
    assert p["loss_max"] == pytest.approx(max(want_losses), rel=1e-10)
    # grad(w - eta g) - grad(w) = -eta A g
    assert p["grad_dists"] == pytest.approx([e * float(Ag.norm()) for e in etas], rel=1e-10)
    assert p["gdist_min"] == pytest.approx(etas[0] * float(Ag.norm()), rel=1e-10)
    assert p["gdist_max"] == pytest.approx(etas[-1] * float(Ag.norm()), rel=1e-10)
    # curvature along the gradient: ||A g|| / ||g||, between the extreme eigenvalues
    assert p["beta"] == pytest.approx(float(Ag.norm() / g.norm()), rel=1e-10)


def test_probe_beta_is_the_curvature_along_an_eigen_direction():
    A, c, lam, q, loss_fn = quadratic_problem()
    for k in (0, 3, 5):  # the gradient points along eigenvector k
        model = Quadratic(c + 0.3 * q[:, k])
        p = L.probe(model, loss_fn, torch.zeros(1, dtype=torch.float64), None,
                    [0.01, 0.02, 0.04])
        assert p["beta"] == pytest.approx(float(lam[k]), rel=1e-10)


def test_probe_rejects_bad_step_sizes():
    _, _, _, _, loss_fn = quadratic_problem()
    with pytest.raises(ValueError, match="positive"):
        L.probe(Quadratic(torch.zeros(6, dtype=torch.float64)), loss_fn,
                torch.zeros(1), None, [0.0, 1.0])


def _tiny_state(seed=0):
    """A tiny VGG-A-BN after two Adam steps: gradients, BN stats, optimizer state."""
    torch.manual_seed(seed)
    model = create_model("vgg_a_bn", width=1 / 16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, opt, x, y


def _snapshot(model, opt):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [p.grad.clone() for p in model.parameters()],
            copy.deepcopy(opt.state_dict()),
            [m.training for m in model.modules()])


def _assert_same(before, after):
    (s0, g0, o0, m0), (s1, g1, o1, m1) = before, after
    assert s0.keys() == s1.keys()
    for k in s0:  # weights and BN running statistics, bit for bit
        assert torch.equal(s0[k], s1[k]), k
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))
    assert o0["param_groups"] == o1["param_groups"]
    for i, st in o0["state"].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(o1["state"][i][k]))
    assert m0 == m1


@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
def test_probe_and_surface_leave_the_model_as_they_found_it(mode):
    model, opt, x, y = _tiny_state()
    model.train(mode == "train")
    if mode == "mixed":
        model.features[1].train()
    before = _snapshot(model, opt)
    p = L.probe(model, nn.functional.cross_entropy, x, y, [1e-3, 1e-2])
    assert math.isfinite(p["beta"]) and p["gdist_max"] > 0
    _assert_same(before, _snapshot(model, opt))
    d = L.filter_normalized_direction(model)
    losses = L.loss_surface(model, [(x, y)], [d], [[-0.5], [0.0], [0.5]])
    assert losses.shape == (3,) and np.isfinite(losses).all()
    _assert_same(before, _snapshot(model, opt))


def test_probe_uses_batch_statistics_without_updating_them():
    model, opt, x, y = _tiny_state()
    model.eval()
    p = L.probe(model, nn.functional.cross_entropy, x, y, [1e-3])
    model.train()
    with torch.no_grad():
        want = nn.functional.cross_entropy(model(x), y)
    assert p["loss"] == pytest.approx(float(want), rel=1e-5)


def test_filter_normalized_direction_matches_filter_norms():
    torch.manual_seed(0)
    model = create_model("vgg_a_bn", width=1 / 16)
    d = L.filter_normalized_direction(model, seed=3)
    params = [p for p in model.parameters() if p.requires_grad]
    assert len(d) == len(params)
    for p, di in zip(params, d):
        assert di.shape == p.shape
        if p.dim() <= 1:  # biases and BN parameters stay fixed
            assert torch.count_nonzero(di) == 0
        else:
            torch.testing.assert_close(di.reshape(len(di), -1).norm(dim=1),
                                       p.reshape(len(p), -1).norm(dim=1))
    again = L.filter_normalized_direction(model, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(d, again))


def test_loss_surface_at_the_origin_is_the_loss():
    model, _, x, y = _tiny_state()
    model.eval()
    d = L.filter_normalized_direction(model)
    s = L.loss_surface(model, [(x[:8], y[:8]), (x[8:], y[8:])], [d, d],
                       [[0.0, 0.0], [0.25, -0.25]])
    model.train()
    with torch.no_grad():
        halves = [nn.functional.cross_entropy(model(x[i:i + 8]), y[i:i + 8])
                  for i in (0, 8)]
    assert s[0] == pytest.approx(float(sum(halves) / 2), rel=1e-5)
    assert s[1] == pytest.approx(s[0], rel=1e-5)  # d and -d cancel
    with pytest.raises(ValueError, match="columns"):
        L.loss_surface(model, [(x, y)], [d], [[0.0, 1.0]])


def test_float32_precision_turns_tf32_off_and_restores_the_settings():
    switches = L._tf32_switches()
    saved = [getattr(obj, name) for obj, name, _ in switches]
    new_api = isinstance(saved[0], str)
    # a mixed starting state, to see each switch get its own value back
    start = [("tf32" if new_api else True) if i % 2 == 0 else v
             for i, (_, _, v) in enumerate(switches)]
    try:
        for (obj, name, _), v in zip(switches, start):
            setattr(obj, name, v)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # neither API may warn
            with L.float32_precision("cpu"):  # CPU: nothing touched
                assert [getattr(o, n) for o, n, _ in switches] == start
            with L.float32_precision("cuda"):
                assert [getattr(o, n) for o, n, _ in switches] == \
                    [v for _, _, v in switches]
            assert [getattr(o, n) for o, n, _ in switches] == start
            with pytest.raises(KeyError), L.float32_precision("cuda"):
                raise KeyError("an error inside the block")
            assert [getattr(o, n) for o, n, _ in switches] == start
    finally:
        for (obj, name, _), v in zip(switches, saved):
            setattr(obj, name, v)


def test_surface_batches_are_full_and_equal(small_split):
    x, y = small_split.train
    sizes = lambda bs: [len(yb) for _, yb in bs]  # noqa: E731
    assert sizes(L.fixed_batches(x[:150], y[:150], 64)) == [64, 64]
    uneven = L.fixed_batches(x[:150], y[:150], 64, drop_last=False)
    assert sizes(uneven) == [64, 64, 22]
    with pytest.raises(ValueError, match="no full batch"):
        L.fixed_batches(x[:10], y[:10], 64)
    model, _, _, _ = _tiny_state()
    d = L.filter_normalized_direction(model)
    with pytest.raises(ValueError, match="same size"):
        L.loss_surface(model, uneven, [d], [[0.0]])
    assert np.isfinite(L.loss_surface(model, uneven, [d], [[0.0]], bn_train=False)).all()


VGG_CFG = dict(model="vgg_a_bn", model_kw={"width": 1 / 16}, optimizer="sgd",
               lr=0.05, momentum=0.9, nesterov=False, weight_decay=0.0,
               scheduler="constant", epochs=2, batch_size=64, augment="crop_flip",
               amp=False, keep="last")


@pytest.fixture(scope="module")
def vgg_split():
    """A little synthetic data: 256 training images, 4 batches of 64."""
    return split_data(synthetic_cifar(n_train=320, n_test=64, seed=2),
                      val_size=64, seed=0)


def _fit(split, cfg, hooks=()):
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, **cfg.model_kw)
    loaders = make_loaders(split, cfg, "cpu")
    return model, loaders, fit(model, loaders, cfg, hooks=hooks)


def test_recorder_probes_every_k_steps_on_the_batch_about_to_be_trained(
        vgg_split, monkeypatch):
    cfg = TrainConfig(**VGG_CFG)
    probed, real = [], L.probe

    def spy(model, loss_fn, x, y, etas, optimizer=None):
        probed.append((x.clone(), y.clone()))
        assert isinstance(optimizer, torch.optim.SGD)  # the run's own
        return real(model, loss_fn, x, y, etas, optimizer=optimizer)
    monkeypatch.setattr(L, "probe", spy)
    rec = L.Recorder(etas=[0.025, 0.2], probe_every=3)
    sparse = L.Recorder(keep_every=3)  # no probes, every 3rd step kept
    model, loaders, out = _fit(vgg_split, cfg, hooks=[rec, sparse])
    steps = len(loaders.train)
    assert out["status"] == "ok" and steps == 4
    res = rec.result()
    assert res["probes"]["step"] == [0, 3, 6] and res["probes"]["etas"] == [0.025, 0.2]
    assert res["probes"]["direction"] == "update"
    assert rec.options()["direction"] == "update" and "direction" not in sparse.options()
    # the probed batch is the one trained at that step (augmented as trained) ...
    for (x, y), t in zip(probed, res["probes"]["step"]):
        loaders.train.set_epoch(t // steps)
        xt, yt = list(loaders.train)[t % steps]
        assert torch.equal(x, xt) and torch.equal(y, yt)
    # ... at the weights before the step: its loss is that step's training loss
    st = res["steps"]
    assert st["step"] == list(range(2 * steps)) and st["every"] == 1
    for t, loss in zip(res["probes"]["step"], res["probes"]["loss"]):
        assert loss == pytest.approx(st["loss"][t], rel=1e-4)
    assert st["last_grad_change"][0] is None  # no previous step
    assert all(v is not None and v > 0 for v in st["last_grad"] + st["last_grad_change"][1:])
    assert st["first_nonfinite"] is None and st["last_step"] == 2 * steps - 1
    assert all(lo <= hi for lo, hi in zip(res["probes"]["loss_min"],
                                          res["probes"]["loss_max"]))
    kept = sparse.result()
    assert kept["steps"]["step"] == [0, 3, 6] and kept["probes"]["step"] == []
    assert kept["steps"]["loss"] == [st["loss"][t] for t in (0, 3, 6)]


def test_probing_leaves_training_bit_for_bit_unchanged(vgg_split):
    cfg = TrainConfig(**VGG_CFG)
    plain, _, out0 = _fit(vgg_split, cfg)
    rec = L.Recorder(etas=[0.05, 0.5, 5.0], probe_every=1)
    probed, _, out1 = _fit(vgg_split, cfg, hooks=[rec])
    assert len(rec.result()["probes"]["step"]) == 8
    a, b = plain.state_dict(), probed.state_dict()
    assert a.keys() == b.keys()
    for k in a:  # weights and BN running statistics
        assert torch.equal(a[k], b[k]), k
    assert [h["train_loss"] for h in out0["history"]] == \
        [h["train_loss"] for h in out1["history"]]


def test_recorder_marks_a_diverged_run(vgg_split):
    cfg = TrainConfig(**{**VGG_CFG, "model": "vgg_a", "lr": 1e6, "epochs": 3})
    rec = L.Recorder(keep_every=2)
    _, _, out = _fit(vgg_split, cfg, hooks=[rec])
    st = rec.result()["steps"]
    assert out["status"] == "diverged"
    assert st["last_step"] is not None
    assert st["first_nonfinite"] is None or st["first_nonfinite"] <= st["last_step"]
    with pytest.raises(ValueError, match="positive"):
        L.Recorder(etas=[], probe_every=2)
    with pytest.raises(ValueError, match="keep_every"):
        L.Recorder(keep_every=0)


def test_loss_band_ends_where_a_run_diverges():
    from cifar_lib.studies import batchnorm as study

    def rec(lr, losses, status="ok"):
        n = len(losses)
        return {"config": {"model": "vgg_a", "optimizer": "adam", "lr": lr},
                "status": status,
                "steps": {"step": list(range(0, 2 * n, 2)), "loss": losses,
                          "first_nonfinite": 6 if status == "diverged" else None,
                          "last_step": 2 * n - 2}}
    runs = [rec(1e-3, [2.3, 2.0, 1.8, 1.5, 1.2]),
            rec(2e-3, [2.3, 2.5, 9.0, None, None], "diverged"),
            rec(1e-4, [2.3, 2.2, 2.1, 2.0, 1.9])]
    band = study.loss_band(runs, "vgg_a")
    assert list(band.steps) == [0, 2, 4]  # not on over the two runs left
    assert list(band.lo) == [2.3, 2.0, 1.8] and list(band.hi) == [2.3, 2.5, 9.0]
    assert band.ends == "lr=0.002 diverged at step 6"
    full = study.loss_band([runs[0], runs[2]], "vgg_a")
    assert len(full.steps) == 5 and full.ends is None
    assert study.loss_band(runs, "vgg_a_bn") is None


def test_captions_speak_of_a_divergence_only_where_a_figure_draws_one():
    from cifar_lib.studies import batchnorm as study
    bv = importlib.import_module("cifar_lib.studies.batchnorm.values")
    S = study.Sizes(width=1, epochs=1, batch_size=8, lrs=(1e-3, 2e-3), adam_lr=1e-3,
                    sgd_lr=0.1)

    def rec(model, opt, lr, status="ok", seed=0):
        bad = status == "diverged"
        v = [2.3, 2.0, None] if bad else [2.3, 2.0, 1.8]
        return {"config": {"model": model, "optimizer": opt, "lr": lr, "seed": seed},
                "status": status, "diverged_at": {"epoch": 0} if bad else None,
                "steps": {"step": [0, 2, 4], "loss": v, "last_grad": v,
                          "last_grad_change": [None, *v[1:]],
                          "first_nonfinite": 4 if bad else None, "last_step": 4}}
    runs = [rec(m, o, lr) for m in study.MODELS
            for o, lr in (("adam", 1e-3), ("adam", 2e-3), ("sgd", 0.1))]
    keys = ("bn_curves_diverged", "bn_probes_diverged", "bn_loss_band_ends",
            "bn_grad_band_ends")
    assert bv._diverged_marks(runs, S) == dict.fromkeys(keys, "")
    assert bv._diverged_marks([], S) == dict.fromkeys(keys)
    # a second seed's divergence is in no figure
    assert bv._diverged_marks(runs + [rec("vgg_a", "adam", 2e-3, "diverged", seed=1)],
                              S) == dict.fromkeys(keys, "")
    # an Adam run off the course's rate: only the bands end
    runs[1] = rec("vgg_a", "adam", 2e-3, "diverged")
    got = bv._diverged_marks(runs, S)
    assert not got["bn_curves_diverged"] and not got["bn_probes_diverged"]
    assert "dotted line" in got["bn_loss_band_ends"] and "diverged" in got["bn_grad_band_ends"]
    # SGD's run diverged: the curves' cross and the probes' line, no band
    runs[1] = rec("vgg_a", "adam", 2e-3)
    runs[2] = rec("vgg_a", "sgd", 0.1, "diverged")
    got = bv._diverged_marks(runs, S)
    assert "cross" in got["bn_curves_diverged"] and "Dotted" in got["bn_probes_diverged"]
    assert not got["bn_loss_band_ends"] and not got["bn_grad_band_ends"]


def _use_sizes(monkeypatch, S):
    """The BatchNorm study with sizes ``S`` in every profile: ``sizes`` is
    replaced in each of the package's modules that uses it."""
    import sys
    for name, mod in list(sys.modules.items()):
        if name.startswith("cifar_lib.studies.batchnorm") and hasattr(mod, "sizes"):
            monkeypatch.setattr(mod, "sizes", lambda profile=None: S)


def test_study_end_to_end(small_split, tmp_path, monkeypatch):
    from cifar_lib import experiments
    from cifar_lib.report import TABLES, render_block
    from cifar_lib.studies import batchnorm as study

    P = get_profile("smoke").with_(root=tmp_path / "smoke")
    S = study.Sizes(width=1 / 16, epochs=1, batch_size=64, lrs=(1e-3, 1e-4),
                    probe_every=2, probe_scales=(0.5, 4), keep_every=2,
                    surface_images=100, surface_points=5, surface_grid=3)
    _use_sizes(monkeypatch, S)
    # trained as notebook 04 trains them
    runs = experiments.run_experiment(study.BATCHNORM, P, small_split, device="cpu")
    assert len(runs) == 6 and all(r["status"] in ("ok", "diverged") for r in runs)
    assert [r["label"] for r in runs] == [s.label for s in study.specs(S)]
    probed = [r for r in runs if r["tag"]["probe_every"]]
    assert {(r["config"]["model"], study.run_setting(r)) for r in probed} == \
        {(m, s) for m in study.MODELS for s in ("adam", "sgd")}
    assert all(len(r["probes"]["step"]) == 2 for r in probed)
    assert all(r["tag"]["direction"] == "update" and r["probes"]["direction"] == "update"
               and r["tag"]["etas"] == [0.5, 4.0] for r in probed)
    assert all("direction" not in r["tag"] for r in runs if r not in probed)
    for r in runs:
        assert r["config"]["keep"] == "last" and r["metrics"]["kept"] == "last"
        assert r["steps"]["step"] == [0, 2]  # 4 steps, every 2nd kept
        assert set(r["steps"]) >= {"step", "loss", "last_grad", "last_grad_change"}
        assert len(r["history"]) == 1 or r["status"] == "diverged"

    def no_training(*a, **k):
        raise AssertionError("a cached run was trained again")
    monkeypatch.setattr(experiments, "fit", no_training)
    again = experiments.run_experiment(study.BATCHNORM, P, small_split, device="cpu")
    assert [r["run"] for r in again] == [r["run"] for r in runs]
    assert [r["run"] for r in study.records(P)] == [r["run"] for r in runs]
    assert study.records(P) == experiments.records(study.BATCHNORM, P)
    assert study.EXPERIMENTS == (study.BATCHNORM,) and study.BATCHNORM.name == "batchnorm"
    # each run of the experiment carries the tag its stored record has, and
    # fresh step recorders with those options; training it again loads it
    bn_runs = study.BATCHNORM.runs(P)
    assert [r.label for r in bn_runs] == [s.label for s in study.specs(S)]
    for spec, run, rec in zip(study.specs(S), bn_runs, runs):
        assert run.cfg == study.config(spec, S) and run.cfg.to_dict() == rec["config"]
        assert run.tag == study.recording(spec, S) == rec["tag"]
        assert rec["run"] == store.run_key(rec["config"], rec["data"], run.tag)
        assert study.BATCHNORM.group_of(run) == "batchnorm"
        hooks, other = run.make_hooks(), run.make_hooks()
        assert len(hooks) == 1 and isinstance(hooks[0], L.Recorder)
        assert hooks[0].options() == run.tag and hooks[0] is not other[0]
        assert experiments.train_one(study.BATCHNORM, run, P, small_split)["run"] == rec["run"]
    monkeypatch.undo()
    _use_sizes(monkeypatch, S)

    bn = study.pick(runs, "vgg_a_bn", "adam", S.adam_lr)
    (P.root / bn["weights"]).unlink()  # a surface without weights retrains its run
    with pytest.raises(ValueError, match="pass the data split"):
        study.measure(P, None)
    study.measure(P, small_split, device="cpu")
    surfs = study.load_surfaces(P)
    assert set(surfs) - set(study.MODELS) <= {study.MATCHED}
    assert set(surfs) >= set(study.MODELS) and (P.root / bn["weights"]).is_file()
    # one epoch: VGG-A + BN's final weights are its match (no run of its own)
    assert surfs[study.MATCHED]["matched_epoch"] == 1
    surfs = {m: surfs[m] for m in study.MODELS}
    for m, s in surfs.items():
        # kept in the store under the key of its run and the surface options
        key = study.surface_key(study.pick(runs, m, "adam", S.adam_lr)["run"], S)
        assert key["settings"] == study.surface_options(S)
        assert store.measurement_path(P.results, "batchnorm", key).is_file()
        assert store.load_measurement(P.results, "batchnorm", key) == s
        assert len(s["line"]) == 5 and np.shape(s["grid"]) == (3, 3)
        assert s["options"]["images"] == 64  # full batches only
        assert "running statistics" in s["options"]["bn"]
        # the centre of the eval-mode surfaces is the loss with running statistics
        if m == "vgg_a":  # without BN the two modes are one
            assert s["line"] == pytest.approx(s["line_batch"], rel=1e-5)
    assert surfs["vgg_a_bn"]["line"] != pytest.approx(surfs["vgg_a_bn"]["line_batch"])

    # measured: a no-op that needs neither weights nor data nor training
    for r in runs:
        if r.get("weights"):
            (P.root / r["weights"]).unlink(missing_ok=True)
    monkeypatch.setattr(experiments, "fit", no_training)
    monkeypatch.setattr(L, "loss_surface", no_training)
    study.measure(P, None)
    assert {m: study.load_surfaces(P)[m] for m in study.MODELS} == surfs
    assert len(list((P.results / "batchnorm" / "measurements").glob("surface-*.json"))) == 2
    assert not (P.results / "batchnorm" / "surfaces").exists()  # the old layout
    monkeypatch.undo()
    _use_sizes(monkeypatch, S)

    band = study.loss_band(runs, "vgg_a_bn")
    assert band is not None and (band.lo <= band.hi).all()
    for name in ("bn_runs", "bn_probes", "bn_surfaces"):
        assert len(TABLES[name](P)) > 0
    vals = study.values(P)
    for name in ("bn_adam_val_acc_vgg_a_bn", "bn_probe_every", "bn_width",
                 "bn_runs_reading", "bn_surfaces_reading", "bn_adam_step_ratio"):
        assert vals[name] is not None, name
    # rises may be < 0 after one epoch on synthetic data: then not measured
    assert vals["bn_verdict"] is None or "Santurkar" in vals["bn_verdict"]
    assert TABLES["bn_measures"](P) is not None
    # one epoch on synthetic data: every probe sits at chance and is left
    # out, so the probe measures are not measured (and say so)
    probes = TABLES["bn_probes"](P)
    col = "probes kept (at chance)"  # one seed: no sum over seeds
    kept = [int(v.split()[0]) for v in probes[col]]
    at_chance = [int(v.split("(")[1].rstrip(")")) for v in probes[col]]
    assert sum(at_chance) > 0
    if not any(kept):
        assert "no value in this profile" in vals["bn_v_adam_loss_range"]
        assert vals["bn_probes_reading"] is None
    for key, rel in (("line", True), ("line_batch", False)):  # may be < 0 here
        assert all(math.isfinite(v) for v in study.surface_rises(surfs, key, rel))
    assert vals["bn_probe_direction"].startswith("the update")
    assert vals["bn_kept_steps"] == "every 2nd step"
    assert vals["bn_surface_images"] == "64"
    assert "VGG-A + BN" in render_block("table", "bn_probes", None, P, tmp_path)

    import matplotlib.pyplot as plt
    figs = [study.plot_curves(runs, S), study.plot_loss_landscape(runs, S),
            study.plot_loss_band_views(runs, S),
            study.plot_probes(runs, S), study.plot_last_grad(runs, S),
            study.plot_surface_1d(surfs), study.plot_surface_2d(surfs)]
    assert all(f.axes for f in figs)
    plt.close("all")


# The report values that follow from the profile's sizes alone; every other
# value needs results on disk.
SIZES_VALUES = {"bn_probe_every", "bn_probe_scales", "bn_kept_steps", "bn_epochs",
                "bn_width", "bn_lrs", "bn_adam_lr", "bn_sgd_lr", "bn_batch",
                "bn_surface_images", "bn_seeds", "bn_chance_loss", "bn_tol",
                "bn_few_probes", "bn_sgd_lr_why", "bn_momentum"}


def test_study_values_without_results(tmp_path):
    from cifar_lib.studies import batchnorm as study
    P = get_profile("smoke").with_(root=tmp_path)
    S = study.sizes(P)
    assert study.records(P) == [] and study.load_surfaces(P) == {}
    vals = study.values(P)
    assert len(vals) == 47 and all(k.startswith("bn_") for k in vals)
    assert {k for k, v in vals.items() if v is not None} == SIZES_VALUES
    assert all(isinstance(vals[k], str) for k in SIZES_VALUES)
    assert (vals["bn_epochs"], vals["bn_batch"]) == (str(S.epochs), str(S.batch_size))
    assert vals["bn_probe_scales"] == "0.5, 2, 4" and vals["bn_kept_steps"] == "every step"
    assert vals["bn_seeds"] == "1 seed (0)" and vals["bn_chance_loss"] == "2.19"
    assert (vals["bn_tol"], vals["bn_few_probes"], vals["bn_momentum"]) == \
        ("5%", "50%", "0.9")
    assert vals["bn_lrs"] == ", ".join(f"{lr:g}" for lr in sorted(S.lrs))
    cpu = study.sizes(get_profile("cpu"))
    assert cpu.seeds == (0, 1, 2) and cpu.seed == 0
    runs = study.BATCHNORM.runs(get_profile("cpu"))
    assert len(runs) == 30 and [r.cfg.seed for r in runs[::10]] == [0, 1, 2]
    assert study.sizes(get_profile("full")).seeds == (0,)


def test_study_records_match_config_and_current_tag_newest_first(tmp_path):
    """A run saved under an older recording tag (a probed run from before the
    probes followed the optimizer's update, whose tag has no ``direction``)
    is not one of the study's runs; of two saves of a run the newest counts."""
    from cifar_lib.experiments import write_json
    from cifar_lib.studies import batchnorm as study
    P = get_profile("smoke").with_(root=tmp_path)
    S = study.sizes(P)
    spec = next(s for s in study.specs(S) if s.probed)
    cfg, tag = study.config(spec, S), study.recording(spec, S)
    old_tag = {k: v for k, v in tag.items() if k != "direction"}

    def save(name, tag, created):
        write_json({"experiment": "batchnorm", "run": name, "label": spec.label,
                    "status": "ok", "config": cfg.to_dict(), "tag": tag,
                    "created": created, "data": {"source": "synthetic"}},
                   P.results / "batchnorm" / f"{name}.json")
    save("older-tag", old_tag, "2025-01-01T00:00:00+00:00")
    assert study.records(P) == []
    save("first", tag, "2025-01-02T00:00:00+00:00")
    save("second", tag, "2025-01-03T00:00:00+00:00")
    save("older-tag-newer", old_tag, "2025-01-04T00:00:00+00:00")
    found = study.records(P)
    assert [r["run"] for r in found] == ["second"] and found[0]["label"] == spec.label


# ------------------------------------------------ probes along the optimizer's update


def _optimizers(params):
    return {"sgd": torch.optim.SGD(params, lr=0.05),
            "momentum": torch.optim.SGD(params, lr=0.05, momentum=0.9),
            "adam": torch.optim.Adam(params, lr=1e-3)}


def _state_of(opt):
    """The optimizer's state (tensors cloned, keyed by position) and groups."""
    index = {id(p): i for i, p in enumerate(L._optimizer_params(opt))}
    state = {index[id(p)]: {k: v.clone() if torch.is_tensor(v) else v
                            for k, v in st.items()} for p, st in opt.state.items()}
    return state, [{k: v for k, v in g.items() if k != "params"}
                   for g in opt.param_groups]


def _assert_state_equal(a, b):
    (s0, g0), (s1, g1) = a, b
    assert g0 == g1 and s0.keys() == s1.keys()
    for i in s0:
        assert s0[i].keys() == s1[i].keys()
        for k in s0[i]:
            assert torch.equal(torch.as_tensor(s0[i][k]), torch.as_tensor(s1[i][k])), (i, k)


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("warm", [0, 2])  # first step (no state yet), or later
def test_optimizer_update_is_the_step_and_changes_nothing(name, warm):
    torch.manual_seed(0)
    model = create_model("vgg_a_bn", width=1 / 16)
    params = list(model.parameters())
    opt = _optimizers(params)[name]
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    for _ in range(warm):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    _, g = L.loss_and_grad(model, nn.functional.cross_entropy, x, y, params)
    weights0 = {k: v.clone() for k, v in model.state_dict().items()}
    before = _snapshot(model, opt) if warm else None  # (.grad is None at first)
    state0, grads0 = _state_of(opt), [p.grad for p in params]
    u = L.optimizer_update(opt, params, g)
    if warm:
        _assert_same(before, _snapshot(model, opt))
    assert all(torch.equal(v, weights0[k]) for k, v in model.state_dict().items())
    assert all(a is b for a, b in zip([p.grad for p in params], grads0))  # same objects
    _assert_state_equal(state0, _state_of(opt))
    assert (len(opt.state) == 0) == (warm == 0 or name == "sgd")
    if name == "sgd":  # plain SGD: the update is -lr * g
        for a, b in zip(u, g):
            torch.testing.assert_close(a, -0.05 * b, rtol=1e-5, atol=1e-6)
    w0 = [p.detach().clone() for p in params]  # the real step, taken now
    for p, gi in zip(params, g):
        p.grad = gi.clone()
    opt.step()
    for a, p, w in zip(u, params, w0):
        assert torch.equal(a, p.detach() - w)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_probe_along_the_sgd_update_is_the_papers_probe(momentum):
    """SGD without momentum: eta x update = (eta lr) x -g, the paper's probe;
    its first momentum step is the same (the buffer starts at g)."""
    A, c, _, _, loss_fn = quadratic_problem()
    w = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    model, x, lr = Quadratic(w), torch.zeros(1, dtype=torch.float64), 0.05
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    scales = [0.5, 1.0, 4.0]
    along = L.probe(model, loss_fn, x, None, scales, optimizer=opt)
    paper = L.probe(model, loss_fn, x, None, [s * lr for s in scales])
    assert along["direction"] == "update" and paper["direction"] == "gradient"
    for k in ("losses", "grad_dists", "beta", "loss"):
        assert along[k] == pytest.approx(paper[k], rel=1e-12), k
    assert along["step_norm"] == pytest.approx(lr * paper["grad_norm"], rel=1e-12)
    assert len(opt.state) == 0 and torch.equal(model.w.detach(), w)


def test_probe_along_the_momentum_step_uses_the_buffer():
    A, c, _, _, loss_fn = quadratic_problem()
    w = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    model, x = Quadratic(w), torch.zeros(1, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    buf = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    opt.state[model.w]["momentum_buffer"] = buf.clone()
    g = A @ (w - c)
    u = -0.05 * (0.9 * buf + g)  # torch's momentum step
    p = L.probe(model, loss_fn, x, None, [1.0, 2.0], optimizer=opt)
    assert p["losses"] == pytest.approx([float(loss_fn(w + e * u, None))
                                         for e in (1.0, 2.0)], rel=1e-12)
    assert p["grad_dists"] == pytest.approx([e * float((A @ u).norm())
                                             for e in (1.0, 2.0)], rel=1e-12)
    assert p["beta"] == pytest.approx(float((A @ u).norm() / u.norm()), rel=1e-12)
    assert torch.equal(opt.state[model.w]["momentum_buffer"], buf)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_recorder_probes_along_the_step_the_run_takes(vgg_split, optimizer):
    """The probed update is the optimizer's real step (Adam: not lr x g), and
    a run with probes ends bit for bit like the run without."""
    cfg = TrainConfig(**{**VGG_CFG, "optimizer": optimizer,
                         "lr": 1e-3 if optimizer == "adam" else 0.05})

    class Weights:  # the weights before every step
        def __init__(self):
            self.w = []

        def before_step(self, model, x, y, step):
            self.w.append(torch.cat([p.detach().flatten().clone()
                                     for p in model.parameters()]))

    rec, seen = L.Recorder(etas=[0.5, 1.0, 4.0], probe_every=3), Weights()
    probed, _, out1 = _fit(vgg_split, cfg, hooks=[seen, rec])
    plain, _, out0 = _fit(vgg_split, cfg)
    res = rec.result()["probes"]
    assert res["step"] == [0, 3, 6] and res["direction"] == "update"
    for t, norm, gnorm in zip(res["step"], res["step_norm"], res["grad_norm"]):
        real = float((seen.w[t + 1] - seen.w[t]).norm())
        assert norm == pytest.approx(real, rel=1e-3)
        if optimizer == "adam":  # far from lr x ||g||
            assert norm > 3 * cfg.lr * gnorm
    a, b = plain.state_dict(), probed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["train_loss"] for h in out0["history"]] == \
        [h["train_loss"] for h in out1["history"]]
    from torch.optim import optimizer as torch_optimizer
    assert not torch_optimizer._global_optimizer_pre_hooks  # finder removed


def test_recorder_can_still_probe_along_the_gradient(vgg_split):
    cfg = TrainConfig(**{**VGG_CFG, "optimizer": "adam", "lr": 1e-3, "epochs": 1})
    rec = L.Recorder(etas=[1e-3, 4e-3], probe_every=2, direction="gradient")
    _fit(vgg_split, cfg, hooks=[rec])
    res = rec.result()["probes"]
    assert res["direction"] == "gradient" and res["step"] == [0, 2]
    assert res["step_norm"] == res["grad_norm"]
    with pytest.raises(ValueError, match="direction"):
        L.Recorder(etas=[1.0], probe_every=1, direction="sideways")


def test_relative_and_matched_band_views_take_out_the_speed():
    """A net that learns twice as fast with the same relative spread over
    learning rates: same relative band, same width at matched loss, though
    its min-max band per step is wider in the early steps."""
    from cifar_lib.studies import batchnorm as study

    def rec(model, lr, losses):
        return {"config": {"model": model, "optimizer": "adam", "lr": lr},
                "status": "ok",
                "steps": {"step": list(range(len(losses))), "loss": list(losses),
                          "first_nonfinite": None, "last_step": len(losses) - 1}}
    t = np.arange(200)
    slow = [2.3 * np.exp(-k * t / 200) for k in (1.0, 1.2)]
    fast = [2.3 * np.exp(-k * t / 100) for k in (1.0, 1.2)]
    runs = [rec("vgg_a", lr, v) for lr, v in zip((1e-3, 2e-3), slow)] + \
        [rec("vgg_a_bn", lr, v) for lr, v in zip((1e-3, 2e-3), fast)]
    plain, bn = (study.loss_band(runs, m) for m in study.MODELS)
    np.testing.assert_allclose(plain.mean, (slow[0] + slow[1]) / 2)
    rel_p, rel_b = study.relative_band(plain), study.relative_band(bn)
    assert rel_b[50] == pytest.approx(rel_p[100], rel=1e-9)  # same loss level
    edges, wp, wb = study.matched_widths(plain, bn, bins=4)
    assert edges[0] == pytest.approx(bn.mean.min() if bn.mean.min() > plain.mean.min()
                                     else plain.mean.min())
    ok = np.isfinite(wp) & np.isfinite(wb)
    assert ok.sum() >= 3
    np.testing.assert_allclose(wb[ok], wp[ok], rtol=0.1)


def test_the_surface_colour_bar_ticks_are_round_numbers():
    from cifar_lib.studies.batchnorm.plots import round_ticks
    assert round_ticks(0.865, 503) == [1, 3, 10, 30, 100, 300]
    assert round_ticks(2, 30) == [2, 5, 10, 20]
    assert round_ticks(0.01, 1e6) == [0.01, 1, 100, 1e4, 1e6]
    assert round_ticks(1.2, 1.9) == [1.2, 1.9]  # nothing round inside: the ends


def test_chance_stretches_of_both_networks_draw_one_even_shade():
    """Overlapping at-chance stretches merge, so the figure has one grey."""
    from cifar_lib.studies.batchnorm.plots import _union
    assert _union([(0, 48), (0, 9), (58, 59), (60, 68)]) == [(0, 48), (58, 59), (60, 68)]
    assert _union([(5, 10), (8, 20), (20, 25)]) == [(5, 25)]
    assert _union([]) == []


def test_log_axis_of_about_a_decade_gets_finer_ticks():
    """An axis from 0.55 to 2.2 shows more than the two labels 1 and 2."""
    from cifar_lib.studies.batchnorm.plots import _log_ticks, _plain_log
    assert _log_ticks(0.55, 2.2) == (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    assert _log_ticks(0.002, 1.0) == (1.0, 2.0, 5.0)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [2.2, 1.2, 0.55])
    _plain_log(ax)
    fig.canvas.draw()
    lo, hi = ax.get_ylim()
    shown = [t for t in ax.get_yticks() if lo <= t <= hi]
    plt.close(fig)
    assert len(shown) >= 4 and {1.0, 2.0} <= set(np.round(shown, 6))

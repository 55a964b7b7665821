"""DessiLBI: proximal maps, one step by hand, the path, pruning, state, engine."""
from __future__ import annotations

import copy
import dataclasses
import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cifar_lib import slbi, store
from cifar_lib.engine import TrainConfig, fit, make_loaders
from cifar_lib.optim import OPTIMIZERS, make_optimizer


def test_prox_group_by_hand():
    # three 1x2x1 filters: norm 5, a zero group, norm 0.5 (below lambda)
    z = torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.3, 0.4]]).view(3, 1, 2, 1)
    out = slbi.prox_group(z, 1.0)
    want = torch.tensor([[2.4, 3.2], [0.0, 0.0], [0.0, 0.0]]).view(3, 1, 2, 1)
    assert torch.allclose(out, want) and torch.isfinite(out).all()
    assert torch.equal(slbi.prox_group(torch.zeros(2, 3, 1, 1), 0.0), torch.zeros(2, 3, 1, 1))
    assert torch.allclose(slbi.prox_group(z, 0.0), z)


def test_prox_l1_by_hand():
    z = torch.tensor([[-2.0, -0.5, 0.0], [0.5, 1.0, 3.0]])
    want = torch.tensor([[-1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    assert torch.equal(slbi.prox_l1(z, 1.0), want)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 4 * 4, 4)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).flatten(1))


def _grads(model, seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(8, 2, 4, 4, generator=g), torch.randint(0, 4, (8,), generator=g)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_two_steps_match_the_equations_by_hand():
    torch.manual_seed(0)
    model = Tiny()
    lr, kappa, nu, mom, wd = 0.5, 2.0, 4.0, 0.9, 0.01
    lam = {"conv.weight": 0.05, "fc.weight": 0.02}
    opt = make_optimizer("slbi", model, lr=lr, momentum=mom, weight_decay=wd,
                         nesterov=True, kappa=kappa, nu=nu, norm_bias_decay=True,
                         lambda_conv=lam["conv.weight"], lambda_linear=lam["fc.weight"])
    W = {n: p.detach().clone() for n, p in model.named_parameters()}
    Z = {n: torch.zeros_like(W[n]) for n in lam}
    G = {n: torch.zeros_like(W[n]) for n in lam}
    buf = {}
    for step in range(2):
        grads = _grads(model, step)
        opt.step()
        for n, g in grads.items():
            d = g + wd * W[n]
            buf[n] = d.clone() if step == 0 else mom * buf[n] + d
            d = d + mom * buf[n]                          # Nesterov
            if n in lam:
                diff = W[n] - G[n]
                W[n] = W[n] - lr * kappa * (d + diff / nu)
                Z[n] = Z[n] + lr / nu * diff
                prox = slbi.prox_group if n == "conv.weight" else slbi.prox_l1
                G[n] = kappa * prox(Z[n], lam[n])
            else:                                         # biases, BN: plain SGD
                W[n] = W[n] - lr * d
        for n, p in model.named_parameters():
            assert torch.allclose(p, W[n], atol=1e-6), (step, n)
        for n in lam:
            gamma = opt.gammas()[n.split(".")[0]]
            assert torch.allclose(gamma, G[n], atol=1e-6), (step, n)
    assert G["fc.weight"].count_nonzero() > 0       # the test reaches the prox's active part


def _toy_problem():
    """A 1x1 conv with 4 filters; the targets use filter 0 strongly, 1 weakly, 2-3 not."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 2, 2, generator=g)
    w_true = torch.zeros(4, 3, 1, 1)
    w_true[0, 0], w_true[1, 1] = 3.0, 1.0
    return x, F.conv2d(x, w_true)


def test_gamma_starts_at_zero_and_grows_along_the_path():
    torch.manual_seed(0)
    x, y = _toy_problem()
    model = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False))
    opt = slbi.SLBI(slbi.slbi_groups(model, lambda_conv=1.0, lambda_linear=0.1),
                    lr=0.1, nu=1.0, momentum=0.0)
    assert all(g.count_nonzero() == 0 for g in opt.gammas().values())
    assert opt.support() == {"0": 0} and opt.sizes() == {"0": 4}
    sizes = []
    for epoch in range(15):          # an "epoch" of 10 full-batch steps
        for _ in range(10):
            opt.zero_grad()
            F.mse_loss(model(x), y).backward()
            opt.step()
        out = opt.epoch_end(epoch, last=epoch == 14)
        assert out["slbi_support"] == opt.support() and out["slbi_sizes"] == {"0": 4}
        assert ("slbi_entry" in out) == (epoch == 14)
        sizes.append(opt.support()["0"])
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    entry = opt.entry_epochs()["0"]
    assert 0 < entry[0] < entry[1]                  # the strong filter enters first
    assert entry[2] == entry[3] == -1               # unused filters stay out
    assert slbi.prune_order(model, "0", "path", {"0": entry})[2:] == [1, 0]


def _check_channels_zero(model, pruned):
    """The pruned output channels of the first conv+BN are exactly zero."""
    x = torch.randn(4, 3, 32, 32)
    out = model.features[1](model.features[0](x))
    assert (out[:, pruned] == 0).all() and (out.abs().sum((0, 2, 3)) > 0).sum() > 0


@pytest.mark.parametrize("by", ["magnitude", "path"])
def test_prune_then_undo_restores_the_weights_exactly(by):
    from cifar_lib import create_model
    torch.manual_seed(0)
    model = create_model("cnn3", filters=(8, 16, 16)).eval()
    with torch.no_grad():   # non-trivial BN statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.bias.uniform_(-1, 1)
    before = copy.deepcopy(model.state_dict())
    convs = list(slbi.conv_layers(model))
    entry = {n: torch.randint(-1, 5, (m.out_channels,)).tolist()
             for n, m in slbi.conv_layers(model).items()}
    p = slbi.prune_filters(model, 0.5, by=by, entry=entry)
    assert [len(p.pruned[n]) for n in convs] == [4, 8, 8]
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    _check_channels_zero(model, p.pruned[convs[0]])
    assert p.keep_mask(convs[0], 8).sum() == 4
    p.undo()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with slbi.prune_filters(model, 0.9, layers=convs[1], by=by, entry=entry) as q:
        assert len(q.pruned[convs[1]]) == 14 and list(q.pruned) == [convs[1]]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_prune_orders():
    conv = nn.Conv2d(1, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([3.0, 1.0, 2.0, 0.5]).view(4, 1, 1, 1))
    model = nn.Sequential(conv)
    assert slbi.prune_order(model, "0") == [3, 1, 2, 0]
    entry = {"0": [1, 4, 4, -1]}   # late (and never) first, ties by smaller norm
    assert slbi.prune_order(model, "0", "path", entry) == [3, 1, 2, 0]
    entry = {"0": [5, 2, -1, 2]}
    assert slbi.prune_order(model, "0", "path", entry) == [2, 0, 3, 1]
    with pytest.raises(ValueError, match="entry epochs"):
        slbi.prune_order(model, "0", "path")
    with pytest.raises(ValueError, match="no conv layer"):
        slbi.prune_order(model, "fc")


def _train_steps(model, opt, n, seed=0):
    for i in range(n):
        _grads(model, seed + i)
        opt.step()


def test_state_dict_round_trip_through_torch_save():
    torch.manual_seed(0)
    model = Tiny()
    kw = dict(lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True, nu=2.0,
              lambda_conv=0.01, lambda_linear=0.001)
    opt = make_optimizer("slbi", model, **kw)
    _train_steps(model, opt, 3)
    opt.epoch_end(0)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, buf)
    buf.seek(0)
    ck = torch.load(buf, weights_only=True)
    model2 = Tiny()
    model2.load_state_dict(ck["model"])
    opt2 = make_optimizer("slbi", model2, **kw)
    opt2.load_state_dict(ck["optimizer"])
    assert opt2.entry_epochs() == opt.entry_epochs() and opt2.support() == opt.support()
    for p, q in zip(model.parameters(), model2.parameters()):
        st, st2 = opt.state[p], opt2.state[q]
        assert st.keys() == st2.keys()
        for k in st:
            assert st[k].dtype == st2[k].dtype and torch.equal(st[k], st2[k]), k
    _train_steps(model, opt, 2, seed=10)
    _train_steps(model2, opt2, 2, seed=10)
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)


def test_created_by_name_with_clear_errors():
    assert "slbi" in OPTIMIZERS
    model = Tiny()
    opt = make_optimizer("slbi", model, lr=0.1, mu=50.0)
    assert isinstance(opt, slbi.SLBI)
    kinds = {g["kind"]: g for g in opt.param_groups}
    assert kinds["conv"]["names"] == ["conv"] and kinds["linear"]["names"] == ["fc"]
    assert kinds["conv"]["nu"] == 50.0
    others = [g for g in opt.param_groups if g["kind"] == "other"]
    assert sum(len(g["params"]) for g in others) == 4
    with pytest.raises(ValueError, match="no option"):
        make_optimizer("slbi", model, lr=0.1, lambda_fc=1.0)
    with pytest.raises(ValueError, match="not both"):
        make_optimizer("slbi", model, lr=0.1, mu=1.0, nu=2.0)
    with pytest.raises(ValueError, match="bad value nu"):
        make_optimizer("slbi", model, lr=0.1, nu=0.0)


def test_engine_fit_with_slbi_records_the_path(small_split, cfg_factory, tmp_path):
    from cifar_lib import create_model, experiments
    cfg = cfg_factory(optimizer="slbi", epochs=2,
                      optim_kw={"nu": 10.0, "lambda_conv": 0.05, "lambda_linear": 0.001})
    rec = experiments.run(cfg, small_split, "slbi_test", "smoke")  # as from the CLI
    assert rec["status"] == "ok" and len(rec["history"]) == 2
    h0, h1 = rec["history"]
    assert "slbi_entry" not in h0 and set(h1["slbi_support"]) == set(h1["slbi_sizes"])
    entry = slbi.entry_from_record(rec)
    model = experiments.load_model(rec, "smoke", device="cpu")
    assert list(entry) == list(slbi.conv_layers(model))
    with slbi.prune_filters(model, 0.5, by="path", entry=entry) as p:
        assert sum(map(len, p.pruned.values())) > 0
    # an SGD run records nothing of the kind
    sgd = fit(create_model(cfg.model, **cfg.model_kw),
              make_loaders(small_split, cfg.replace(optimizer="sgd", optim_kw={}), "cpu"),
              cfg.replace(optimizer="sgd", optim_kw={}))
    assert "slbi_support" not in sgd["history"][0]
    with pytest.raises(ValueError, match="slbi_entry"):
        slbi.entry_from_record({"run": "x", "history": sgd["history"]})


STUDY_TABLES = ("slbi_runs", "slbi_path", "slbi_pruning", "slbi_after", "slbi_sweep")


def test_study_configs_and_empty_tables():
    from cifar_lib import studies
    from cifar_lib.profiles import get_profile
    from cifar_lib.report import TABLES
    from cifar_lib.studies import dessilbi as study
    assert study.EXPERIMENTS == (study.DESSILBI, study.SWEEP)
    assert studies.experiment("dessilbi") is study.DESSILBI  # the one the plan trains
    assert studies.experiment("dessilbi_sweep") is study.SWEEP
    assert (study.SWEEP.notebook, study.SWEEP.group) == ("05_dessilbi", "dessilbi")
    assert (study.DESSILBI.notebook, study.DESSILBI.group) == ("05_dessilbi", "dessilbi")
    for name in ("smoke", "cpu", "full"):
        P = get_profile(name)
        S = study.sizes(P)
        runs = study.DESSILBI.runs(P)
        pairs = [(r.label, r.cfg) for r in runs]
        assert all(r.tag is None and not r.make_hooks() for r in runs)
        assert pairs == [(label, study.recipe(P, opt, s)) for s in S.seeds
                         for label, opt in (("SLBI", "slbi"), ("SGD", "sgd"))]
        assert {"SLBI", "SGD"} <= {label for label, cfg in pairs} and S.lambda_conv > 0
        slbi_cfg = dict(pairs)["SLBI"]
        assert slbi_cfg.optim_kw["relative"] and not slbi_cfg.nesterov
        assert 100 <= slbi_cfg.optim_kw["nu"] <= 500          # the reference's range
        with pytest.raises(dataclasses.FrozenInstanceError):
            S.epochs = 1
    P = get_profile("smoke")   # scratch is an empty temp folder here
    assert study.finished(P) == [] and study.by_label([]) == {}
    for name in STUDY_TABLES:
        out = TABLES[name](P)
        assert out is None or len(out) == 0
    vals = study.values(P)
    fixed = {"slbi_model", "slbi_epochs", "slbi_batch", "slbi_warmup", "slbi_nu",
             "slbi_lambda", "slbi_entry_at", "slbi_z_floor", "slbi_seeds", "slbi_over_seeds",
             "slbi_sweep", "slbi_sweep_lambdas",
             "slbi_finetune"}   # from the profile's sizes: never n/a
    assert len(vals) == 35 and fixed <= set(vals)
    assert all((v is None) == (k not in fixed) for k, v in vals.items()), vals


def test_train_config_accepts_slbi():
    cfg = TrainConfig(model="cnn3", optimizer="slbi", optim_kw={"kappa": 1.0, "mu": 20})
    assert cfg.to_dict()["optimizer"] == "slbi"


def test_no_weight_decay_on_norm_and_bias_unless_asked():
    torch.manual_seed(0)
    model = Tiny()
    opt = make_optimizer("slbi", model, lr=0.1, weight_decay=0.1, momentum=0.0)
    flat = {id(p) for p in (model.conv.bias, model.bn.weight, model.bn.bias, model.fc.bias)}
    for g in opt.param_groups:
        for p in g["params"]:
            assert g["weight_decay"] == (0.0 if id(p) in flat else 0.1)
    before = model.bn.weight.detach().clone()
    for p in model.parameters():      # zero loss gradient: only decay moves a weight
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.equal(model.bn.weight, before)
    opt2 = make_optimizer("slbi", Tiny(), lr=0.1, weight_decay=0.1, norm_bias_decay=True)
    assert all(g["weight_decay"] == 0.1 for g in opt2.param_groups)


def _clone_step(foreach, model, n=4, **kw):
    model = copy.deepcopy(model)
    opt = slbi.SLBI(slbi.slbi_groups(model, 0.02, 0.002, norm_bias_decay=False),
                    foreach=foreach, **kw)
    _train_steps(model, opt, n)
    return model, opt


@pytest.mark.parametrize("kw", [dict(lr=0.3, nu=2.0, momentum=0.9, weight_decay=1e-2),
                                dict(lr=0.3, nu=2.0, momentum=0.9, nesterov=True,
                                     relative=True, z_lr_min=0.5),
                                dict(lr=0.3, nu=2.0, momentum=0.0)])
def test_foreach_step_equals_the_loop(kw):
    torch.manual_seed(0)
    model = Tiny()
    (m1, o1), (m2, o2) = _clone_step(True, model, **kw), _clone_step(False, model, **kw)
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.allclose(p, q, atol=1e-6, rtol=0)
    for n, g in o1.gammas().items():
        assert torch.allclose(g, o2.gammas()[n], atol=1e-6, rtol=0)
    assert any(g.count_nonzero() > 0 for g in o1.gammas().values())  # the prox acted


def test_relative_thresholds_scale_with_each_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 16, 3))
    with torch.no_grad():
        model[1].weight.mul_(0.5)
    opt = slbi.SLBI(slbi.slbi_groups(model, 0.3, 0.01), relative=True)
    th = opt.thresholds()
    for name, conv in slbi.conv_layers(model).items():
        want = 0.3 * float(slbi.filter_norms(conv).median())
        assert th[name] == pytest.approx(want, rel=1e-5)
    absolute = slbi.SLBI(slbi.slbi_groups(model, 0.3, 0.01)).thresholds()
    assert all(v == pytest.approx(0.3) for v in absolute.values())


def test_z_lr_floor_keeps_the_path_moving_at_zero_lr():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 1, bias=False))
    opt = slbi.SLBI(slbi.slbi_groups(model, 10.0, 1.0), lr=0.1, nu=2.0, z_lr_min=0.05)
    opt.param_groups[0]["lr"] = 0.0          # a schedule at its end
    w = model[0].weight.detach().clone()
    model[0].weight.grad = torch.ones_like(w)
    opt.step()
    z = opt.state[model[0].weight]["z"]
    assert torch.equal(model[0].weight, w)                   # W does not move at lr 0
    assert torch.allclose(z, 0.05 / 2.0 * w)                 # Z does, at the floor


def test_relative_support_is_non_empty_in_every_layer():
    """Relative thresholds on a tiny BN net whose second conv starts 4x smaller."""
    from cifar_lib import create_model
    torch.manual_seed(0)
    model = create_model("cnn3", filters=(8, 16, 16))
    with torch.no_grad():
        list(slbi.conv_layers(model).values())[1].weight.mul_(0.25)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)
    opt = slbi.SLBI(slbi.slbi_groups(model, 1.0, 0.01, norm_bias_decay=False),
                    lr=0.05, nu=1.0, relative=True, momentum=0.9, weight_decay=5e-4)
    for step in range(40):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    opt.epoch_end(0, last=True)
    sup, size = opt.support(), opt.sizes()
    convs = list(slbi.conv_layers(model))
    assert all(0 < sup[c] for c in convs), sup
    assert any(sup[c] < size[c] for c in convs), sup   # a path, not all in at once


def _bn_net():
    from cifar_lib import create_model
    torch.manual_seed(0)
    model = create_model("cnn3", filters=(8, 16, 16)).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(-1, 1)
                m.bias.uniform_(-1, 1)
    return model


def _expected(before, model, name, by, entry, k):
    """The k filters ``by`` should prune, computed from the saved state."""
    norms = before[f"{name}.weight"].flatten(1).norm(dim=1)
    if by == "magnitude":
        return set(norms.argsort()[:k].tolist())
    if by == "bn":
        bn = _bn_name(model, slbi._norm_after(model)[name])
        return set(before[f"{bn}.weight"].abs().argsort()[:k].tolist())
    late = [99 if e < 0 else e for e in entry[name]]      # never entered: latest
    return set(sorted(range(len(late)), key=lambda i: (-late[i], float(norms[i])))[:k])


@pytest.mark.parametrize("by", ["magnitude", "bn", "path"])
def test_pruning_removes_exactly_the_filters_asked_for(by):
    model = _bn_net()
    convs, norms = slbi.conv_layers(model), slbi._norm_after(model)
    entry = {n: torch.randint(-1, 5, (m.out_channels,)).tolist() for n, m in convs.items()}
    before = copy.deepcopy(model.state_dict())
    with slbi.prune_filters(model, 0.25, by=by, entry=entry) as p:
        for name, conv in convs.items():
            n = conv.out_channels
            want = _expected(before, model, name, by, entry, n // 4)
            assert set(p.pruned[name]) == want and len(want) == n // 4
            keep = torch.ones(n, dtype=torch.bool)
            keep[list(want)] = False
            bn = norms[name]
            for t in (conv.weight, conv.bias, bn.weight, bn.bias):
                if t is not None:
                    assert (t[list(want)] == 0).all() and (t[keep] != 0).all()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _bn_name(model, bn):
    return next(n for n, m in model.named_modules() if m is bn)


def test_bn_order_by_scale_and_clear_error_without_bn():
    model = _bn_net()
    name = list(slbi.conv_layers(model))[0]
    bn = slbi._norm_after(model)[name]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, -0.1, 2.0, -3.0, 0.2, 1.0, -0.05, 0.7]))
    assert slbi.prune_order(model, name, "bn") == [6, 1, 4, 0, 7, 5, 2, 3]
    with pytest.raises(ValueError, match="no affine BatchNorm2d"):
        slbi.prune_order(nn.Sequential(nn.Conv2d(1, 2, 1)), "0", "bn")


def test_prune_indices_outside_support_and_reapply():
    model = _bn_net()
    convs = list(slbi.conv_layers(model))
    entry = {c: [-1, 2, -1, 1] + [1] * (m.out_channels - 4)
             for c, m in slbi.conv_layers(model).items()}
    assert slbi.outside(entry)[convs[0]] == [0, 2]
    p = slbi.prune_indices(model, slbi.outside(entry))
    conv = slbi.conv_layers(model)[convs[0]]
    with torch.no_grad():
        conv.weight.add_(1.0)                       # a fine-tuning step moves them
    p.reapply()
    assert (conv.weight[[0, 2]] == 0).all() and (conv.weight[1] != 0).all()


def test_recalibrate_bn_and_finetune_keep_pruned_channels_zero():
    from cifar_lib.data import DeviceLoader
    model = _bn_net()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    loader = DeviceLoader(x, y, 16, train=True)
    p = slbi.prune_filters(model, 0.5, by="bn")
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    mean_before = bn.running_mean.clone()
    slbi.recalibrate_bn(model, loader, 2)
    assert not model.training and not torch.equal(bn.running_mean, mean_before)
    assert bn.momentum == 0.1
    slbi.finetune(model, loader, 3, p, lr=0.05)
    first = list(slbi.conv_layers(model))[0]
    _check_channels_zero(model, p.pruned[first])


def test_study_measure_stores_everything_and_renders_without_weights(
        small_split, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    from cifar_lib import experiments
    from cifar_lib.profiles import get_profile
    from cifar_lib.report import TABLES
    from cifar_lib.studies import dessilbi as study
    from cifar_lib.studies.dessilbi import measures, runs
    P = get_profile("smoke")

    def tiny_recipe(P, optimizer, seed=0, entry_at=None):   # the recipe on the tiny CNN
        cfg = TrainConfig(model="cnn3", model_kw={"filters": [8, 16, 16]},
                                optimizer=optimizer, lr=0.05, batch_size=64, epochs=2,
                                augment="none", scheduler="constant", amp=False,
                                seed=seed, keep="last")
        if optimizer == "slbi":
            lam = 0.5 * (entry_at or study.sizes(P).entry_at) / study.sizes(P).entry_at
            cfg = cfg.replace(optim_kw=dict(nu=1.0, lambda_conv=lam, lambda_linear=lam,
                                            relative=True, z_lr_floor=0.1))
        return cfg
    monkeypatch.setattr(runs, "recipe", tiny_recipe)
    assert study.measured(P) is None
    recs = experiments.run_experiment(study.DESSILBI, P, small_split)   # as notebook 05
    assert [r["label"] for r in recs] == ["SLBI", "SGD"] * len(study.sizes(P).seeds)
    assert list(study.first_seed(recs)) == ["SLBI", "SGD"]
    assert [r["run"] for r in study.finished(P)] == [r["run"] for r in recs]
    study.measure(P, small_split, device="cpu")
    data = study.measured(P)
    # the sweep: one more SLBI run per threshold, measured at Gamma's budget
    assert study.sweep_measured(P) is None
    experiments.run_experiment(study.SWEEP, P, small_split)
    study.measure_sweep(P, small_split, device="cpu")
    sweep = study.sweep_measured(P)
    assert [r["entry_at"] for r in sweep["runs"]] == sorted(study.sizes(P).sweep)
    assert all(set(r["methods"]) == {"support", "bn", "magnitude"} for r in sweep["runs"])
    assert all({"test_acc", "bn_acc", "finetune_acc"} <= set(m)
               for r in sweep["runs"] for m in r["methods"].values())
    # kept in the store, keyed by the runs and the measuring sizes
    key = study.measure_key(P, study.by_label(recs))
    assert key["measurement"] == "pruning" and key["version"] == study.MEASURE_VERSION
    assert key["runs"] == {lbl: [r["run"] for r in recs if r["label"] == lbl]
                           for lbl in ("SLBI", "SGD")}
    assert store.load_measurement(P.results, "dessilbi", key) == data
    assert [p.name for p in (P.results / "dessilbi" / "measurements").iterdir()] == \
        [store.measurement_path(P.results, "dessilbi", key).name]
    assert not (P.results / "dessilbi_measure.json").exists()   # the old layout
    S, seed = study.sizes(P), data["seeds"][0]
    n_panels = 2                                   # conv1 and all convs (cnn3 has 3 convs)
    assert len(seed["rows"]) == len(study.METHODS) * n_panels * len(S.fractions)
    frame = study.curves_frame(data)
    assert (frame[frame["fraction"] == 0]["kept"] == 1.0).all()   # above chance
    assert all("bn_acc" in r for r in seed["rows"] if r["layer"] == "all convs")
    assert [r["layer"] for r in seed["support"]["layers"]] == ["features.0", "features.4",
                                                                "features.8"]
    assert {"bn_acc", "finetune_acc"} <= set(seed["support"]["total"])
    assert len(seed["finetuned"]) == len(study.METHODS)
    # the weights are gone: measure is a no-op and everything renders from results/
    for pt in P.weights.rglob("*.pt"):
        pt.unlink()
    monkeypatch.setattr(measures, "trained_model", lambda *a, **k: pytest.fail("retrained"))
    study.measure(P, small_split)
    study.measure_sweep(P, small_split)
    for name in STUDY_TABLES:
        assert TABLES[name](P) is not None and len(TABLES[name](P)) > 0, name
    assert "cut to support: kept above chance (%)" in study.path_table(P)
    vals = study.values(P)
    assert all(v is not None for v in vals.values()), vals
    study.plot_pruning(data, P)
    study.plot_filters(data)
    study.plot_sweep(study.sweep_frame(sweep))
    # other measuring sizes make the stored file stale
    monkeypatch.setattr(runs, "_PROFILE_SIZES", {**runs._PROFILE_SIZES, "smoke": dict(
        runs._PROFILE_SIZES["smoke"], fractions=(0.0, 0.5))})
    assert study.measured(P) is None


def test_study_measure_without_runs_is_a_no_op(small_split):
    from cifar_lib.profiles import get_profile
    from cifar_lib.studies import dessilbi as study
    P = get_profile("smoke")
    said = []
    study.measure(P, small_split, log=said.append)
    assert study.measured(P) is None and "not all on disk" in said[0]
    assert not (P.results / "dessilbi" / "measurements").exists()
    assert not (P.results / "dessilbi_measure.json").exists()

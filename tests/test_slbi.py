"""DessiLBI: proximal maps, one step by hand, the path, pruning, state, engine."""
from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cifar_lib import slbi
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
                         nesterov=True, kappa=kappa, nu=nu,
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
    assert kinds["conv"]["nu"] == 50.0 and len(kinds["other"]["params"]) == 4
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
    model = experiments.load_model(rec, "smoke")
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


def test_study_configs_and_empty_tables():
    from cifar_lib.profiles import get_profile
    from cifar_lib.report import TABLES, VALUES
    from cifar_lib.studies import dessilbi as study
    for name in ("smoke", "cpu", "full"):
        P = get_profile(name)
        S = study.sizes(P)
        labels = [label for label, cfg in study.configs(P)]
        assert {"SLBI", "SGD"} <= set(labels) and isinstance(S, dict)
    P = get_profile("smoke")   # scratch is an empty temp folder here
    for name in study.TABLE_NAMES:
        out = TABLES[name](P)
        assert out is None or len(out) == 0
    assert all(VALUES[n](P) is None for n in study.VALUE_NAMES)


def test_train_config_accepts_slbi():
    cfg = TrainConfig(model="cnn3", optimizer="slbi", optim_kw={"kappa": 1.0, "mu": 20})
    assert cfg.to_dict()["optimizer"] == "slbi"

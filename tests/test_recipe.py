"""airbench94's recipe as options of TrainConfig (issue 23): each ingredient
against reference maths written here (airbench itself is not imported)."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cifar_lib.data import DeviceLoader, split_data, synthetic_cifar
from cifar_lib.engine import (TrainConfig, epoch_steps, fit, make_loaders, optim_args,
                              run_steps, tta_logits)
from cifar_lib.models import create_model
from cifar_lib.optim import Lookahead, LRSchedule, lr_factor, make_optimizer
from cifar_lib.augment import Augment
from cifar_lib.recipes import AIRBENCH94, airbench_recipe

NEW_FIELDS = {"decoupled": True, "norm_bias_lr": 64.0, "last_epoch_frac": 0.9,
              "lookahead": 5, "lookahead_decay": 0.9, "lookahead_pow": 2.0,
              "whiten_bias_epochs": 3, "tta_translate": 1, "epoch_aug": True,
              "val_every": 2, "fp16": True}


def tiny_fastnet_split(n=64, seed=0):
    return split_data(synthetic_cifar(n_train=n + 16, n_test=16, seed=seed),
                      val_size=16, seed=0)


# ---------------------------------------------------------------- config


def test_new_fields_stay_out_of_old_configs():
    """Every config of before keeps its dict (and run name); a field set
    away from its default is stored and read back."""
    d = TrainConfig().to_dict()
    assert not set(NEW_FIELDS) & set(d)
    for name, value in NEW_FIELDS.items():
        kw = {name: value, "keep": "last"} if name == "val_every" else {name: value}
        cfg = TrainConfig(**kw, epochs=10)
        assert cfg.to_dict()[name] == value
        assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("kw,says", [
    ({"norm_bias_lr": 0.0}, "norm_bias_lr=0.0; expected a positive"),
    ({"last_epoch_frac": 1.5}, r"last_epoch_frac=1.5; expected a fraction in \(0, 1\]"),
    ({"lookahead": -1}, "lookahead=-1; expected steps"),
    ({"lookahead_decay": 0.0}, r"lookahead_decay=0.0; expected a decay in \(0, 1\]"),
    ({"lookahead_pow": -1.0}, "lookahead_pow=-1.0"),
    ({"whiten_bias_epochs": 11}, r"whiten_bias_epochs=11; expected epochs in \[0, epochs=10\]"),
    ({"tta_translate": 9}, r"tta_translate=9; expected pixels in \[0, 8\]"),
    ({"val_every": 0}, "val_every=0 only with keep='last'"),
    ({"val_every": -1}, "val_every=-1"),
    ({"decoupled": True, "optimizer": "adam"}, "decoupled=True only with optimizer 'sgd'"),
    ({"fp16": "yes"}, "fp16='yes'; expected bool"),
])
def test_new_fields_are_validated(kw, says):
    with pytest.raises(ValueError, match=says):
        TrainConfig(epochs=10, **kw)


def test_recipe_is_airbench94():
    cfg = airbench_recipe()
    assert (cfg.epochs, cfg.last_epoch_frac, cfg.batch_size) == (10, 0.9, 1024)
    assert cfg.model_kw == {"width": 1.0, "whiten": "uncentred"}
    assert cfg.to_dict()["sched_kw"] == {"start": 0.2, "peak": 0.23, "end": 0.07}
    four = airbench_recipe(epochs=4, width=0.5)
    assert four.last_epoch_frac == 1.0 and "last_epoch_frac" not in four.to_dict()
    assert airbench_recipe(epochs=2).whiten_bias_epochs == 2  # capped at the epochs
    assert airbench_recipe(batch_size=256).batch_size == 256
    assert set(AIRBENCH94) <= {f for f in TrainConfig().__dataclass_fields__}


# ---------------------------------------------------------------- schedule


def triangle_reference(total, start=0.2, end=0.07, peak=0.23):
    """airbench94's factor at each step 0..total: through (0, start),
    (int(peak * total), 1) and (total, end)."""
    return np.interp(np.arange(total + 1), [0, int(peak * total), total], [start, 1.0, end])


def test_triangle_factor_at_every_step_of_a_9_9_epoch_run():
    cfg = airbench_recipe()
    per_epoch = 45000 // 1024  # 43
    total = run_steps(cfg, per_epoch)
    assert total == math.ceil(per_epoch * 9.9) == 426
    assert [epoch_steps(cfg, per_epoch, e) for e in range(10)] == [43] * 9 + [39]
    ref = triangle_reference(total)
    got = [lr_factor("triangle", t, total, per_epoch, **cfg.sched_kw) for t in range(total)]
    assert np.allclose(got, ref[:total], rtol=0, atol=1e-12)
    # and the rates LambdaLR sets, step by step
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = LRSchedule(opt, "triangle", total, per_epoch, **cfg.sched_kw)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert np.allclose(lrs, 2.0 * ref[:total], rtol=1e-12, atol=0)


# ---------------------------------------------------------------- one step


def test_one_step_matches_airbench_maths():
    """FastNet (airbench94's network, small), one batch, one step of the
    recipe: the update is the one of airbench's parametrisation (the
    summed loss, SGD at lr / (1024 * (1 + 1 / (1 - momentum))), weight
    decay wd * batch / (1024 * gain) / lr, BN biases at 64x the lr),
    computed here by hand from the same start."""
    split = tiny_fastnet_split(n=32)
    cfg = airbench_recipe(width=0.125, epochs=1, batch_size=32, augment="none",
                          lookahead=0, amp=False, whiten_bias_epochs=0, optim_kw={})
    loaders = make_loaders(split, cfg, "cpu")
    torch.manual_seed(0)
    model = create_model(cfg.model, **cfg.model_kw)
    ref = copy.deepcopy(model)
    ref.data_init(loaders.train.prepare(loaders.train.x[:5000]))
    x, y = loaders.train.prepare(loaders.train.x), loaders.train.y
    fit(model, loaders, cfg)

    B, m = 32, cfg.momentum
    gain = 1024 * (1 + 1 / (1 - m))
    lr = cfg.lr / gain * 1.0  # triangle factor at step 0 of a 1-step run
    wd = cfg.weight_decay * B / gain
    ref.train()
    loss = F.cross_entropy(ref(x), y, label_smoothing=0.2, reduction="sum")
    loss.backward()
    biases = {id(mod.bias) for mod in ref.modules() if isinstance(mod, nn.BatchNorm2d)}
    with torch.no_grad():
        for p in ref.parameters():
            if not p.requires_grad:
                continue
            group_lr = lr * (64 if id(p) in biases else 1)
            d = p.grad + wd / group_lr * p
            p -= group_lr * (d + m * d)  # Nesterov, first step: buffer = d
    for (k, a), b in zip(ref.state_dict().items(), model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-6), k


def test_decoupled_units():
    cfg = airbench_recipe()
    lr, wd = optim_args(cfg, 1024)
    assert lr == pytest.approx(11.5 / (1 + 1 / 0.15))
    assert wd == pytest.approx(0.0153 / 11.5)
    assert optim_args(cfg.replace(decoupled=False), 1024) == (11.5, 0.0153)


def test_norm_bias_lr_multiplier():
    model = create_model("fastnet", width=0.125)
    opt = make_optimizer("sgd", model, lr=0.1, momentum=0.0, weight_decay=0.01,
                         norm_bias_decay=True, norm_bias_lr=64.0)
    bias_group = opt.param_groups[-1]
    bn_biases = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [id(p) for p in bias_group["params"]] == [id(p) for p in bn_biases]
    assert bias_group["lr"] == pytest.approx(6.4)
    assert bias_group["weight_decay"] == pytest.approx(0.01 / 64)  # same decay step
    others = {id(p) for g in opt.param_groups[:-1] for p in g["params"]}
    assert not others & {id(p) for p in bn_biases}
    assert all(g["lr"] == 0.1 for g in opt.param_groups[:-1])
    with pytest.raises(ValueError, match="norm-bias lr"):
        make_optimizer("slbi", model, lr=0.1, norm_bias_lr=2.0)


# ---------------------------------------------------------------- lookahead


def test_lookahead_on_a_toy_model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    la = Lookahead(net, every=2, total=6, decay=0.9, pow=3.0)
    avg = [v.clone() for v in net.state_dict().values() if v.is_floating_point()]
    live = [v for v in net.state_dict().values() if v.is_floating_point()]
    for t in range(1, 7):
        with torch.no_grad():
            for v in live:
                v.add_(0.1 * t)  # the optimizer's step
        before = [v.clone() for v in live]
        la.step(t)
        if t % 2 == 0:
            rho = 0.9 ** 2 * (t / 6) ** 3
            avg = [a + (1 - rho) * (v - a) for a, v in zip(avg, before)]
            assert all(torch.allclose(v, a) for v, a in zip(live, avg))
        else:
            assert all(torch.equal(v, b) for v, b in zip(live, before))
    with torch.no_grad():
        live[0].add_(5.0)
    la.finish()
    assert all(torch.allclose(v, a) for v, a in zip(live, avg))  # the final weights
    assert net[1].num_batches_tracked.dtype == torch.long  # integers untouched


def test_lookahead_gives_the_final_weights_in_fit():
    split = tiny_fastnet_split()
    cfg = airbench_recipe(width=0.125, epochs=1, batch_size=16, amp=False, optim_kw={},
                          lookahead=3)
    torch.manual_seed(0)
    model = create_model(cfg.model, **cfg.model_kw)
    start = copy.deepcopy(model)
    fit(model, make_loaders(split, cfg, "cpu"), cfg)
    # 4 steps, lookahead at step 3; the 4th step is dropped by the final copy
    assert not torch.equal(model.head.weight, start.head.weight)


# ---------------------------------------------------------------- augmentation


def marked_images(n=32):
    """Images whose left half is bright and right half dark (a flip shows),
    each with its index in a pixel; labels are the indices."""
    x = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
    x[:, :, :, :16] = 200
    x[:, 0, 16, 8] = torch.arange(n, dtype=torch.uint8)
    return x, torch.arange(n)


@pytest.mark.parametrize("epoch_aug", [False, True])
def test_each_image_flips_every_other_epoch(epoch_aug):
    x, y = marked_images()
    ld = DeviceLoader(x, y, 8, train=True, epoch_aug=epoch_aug,
                      augment=Augment(crop=0, flip=True, alt_flip=True))
    states = []
    for epoch in range(4):
        ld.set_epoch(epoch)
        flipped = torch.zeros(len(y), dtype=torch.bool)
        for xb, yb in ld:
            flipped[yb] = xb[:, 1, 0, 0] < xb[:, 1, 0, 31]  # dark on the left
        states.append(flipped)
    assert 0 < states[0].sum() < len(y)  # random on epoch 0
    assert torch.equal(states[1], ~states[0]) and torch.equal(states[2], states[0])
    assert torch.equal(states[3], ~states[0])


def test_translate_moves_each_image_by_up_to_two_pixels():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (200, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.arange(200)
    ld = DeviceLoader(x, y, 50, train=True, epoch_aug=True,
                      augment=Augment(crop=2, flip=False))
    src = F.pad(ld.prepare(x), (2, 2, 2, 2), mode="reflect")
    shifts = set()
    for xb, yb in ld:
        for img, i in zip(xb, yb):
            found = [(dy, dx) for dy in range(5) for dx in range(5)
                     if torch.equal(src[i, :, dy:dy + 32, dx:dx + 32], img)]
            assert found, "not a translation of its image"
            shifts.add(found[0])
    assert len(shifts) == 25


# ---------------------------------------------------------------- TTA, stem


def test_tta_averages_six_views():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    x = torch.randn(5, 3, 8, 8)
    pad = F.pad(x, (1, 1, 1, 1), mode="reflect")
    views = [x, pad[..., :8, :8], pad[..., 2:, 2:]]
    weights = [0.25, 0.125, 0.125]
    want = sum(w * (net(v) + net(v.flip(3))) for w, v in zip(weights, views))
    assert torch.allclose(tta_logits(net, x, True, 1), want, atol=1e-6)
    assert torch.allclose(tta_logits(net, x, True, 0), (net(x) + net(x.flip(3))) / 2)
    assert torch.equal(tta_logits(net, x), net(x))


def test_whitening_bias_frozen_after_n_epochs():
    split = tiny_fastnet_split()
    cfg = airbench_recipe(width=0.125, epochs=3, batch_size=16, amp=False, optim_kw={},
                          lookahead=0, whiten_bias_epochs=1)
    torch.manual_seed(0)
    model = create_model(cfg.model, **cfg.model_kw)
    seen = []

    def record(epoch, model, optimizer, record):
        seen.append((model.stem.bias.clone(), model.head.weight.clone()))
    fit(model, make_loaders(split, cfg, "cpu"), cfg, callbacks=(record,))
    assert not torch.equal(seen[0][0], torch.zeros_like(seen[0][0]))  # trained in epoch 1
    assert torch.equal(seen[0][0], seen[1][0]) and torch.equal(seen[1][0], seen[2][0])
    assert not torch.equal(seen[1][1], seen[2][1])  # the rest still trains


def test_uncentred_whitening_zeroes_the_stem_bias():
    net = create_model("fastnet", width=0.125, whiten="uncentred")
    assert torch.equal(net.stem.bias, torch.zeros(24))
    x = torch.randn(64, 3, 32, 32) + 0.5
    net.data_init(x)
    patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
    out = patches @ net.stem.weight[:12].reshape(12, 12).T  # whitened: unit second moment
    assert torch.allclose(out.T @ out / len(out), torch.eye(12), atol=2e-2)
    with pytest.raises(ValueError, match="unknown whitening"):
        create_model("fastnet", whiten="zca")


# ---------------------------------------------------------------- lean loop


def test_lean_loop_reads_once_and_keeps_the_last_weights():
    split = tiny_fastnet_split()
    cfg = airbench_recipe(width=0.125, epochs=3, batch_size=16, amp=False, optim_kw={})
    torch.manual_seed(0)
    out = fit(create_model(cfg.model, **cfg.model_kw), make_loaders(split, cfg, "cpu"), cfg)
    h = out["history"]
    assert out["status"] in ("ok", "failed") and len(h) == 3  # 64 images: may not learn
    assert all(r["train_loss"] is not None and r["train_acc"] is not None for r in h)
    assert [r["val_acc"] is None for r in h] == [True, True, False]
    m = out["metrics"]
    assert m["kept_epoch"] == 3 and m["test_acc"] is not None and out["train_wall_time"] > 0


def test_lean_loop_records_divergence_at_the_end():
    split = tiny_fastnet_split()
    cfg = airbench_recipe(width=0.125, epochs=2, batch_size=16, amp=False, optim_kw={},
                          lr=1e9)
    torch.manual_seed(0)
    out = fit(create_model(cfg.model, **cfg.model_kw), make_loaders(split, cfg, "cpu"), cfg)
    assert out["status"] == "diverged" and out["diverged_at"]["epoch"] <= 1
    assert len(out["history"]) == out["diverged_at"]["epoch"]


def test_validation_every_n_epochs():
    split = tiny_fastnet_split()
    cfg = TrainConfig(model="fastnet", model_kw={"width": 0.125}, epochs=3, batch_size=16,
                      val_every=2, amp=False, keep="best")
    out = fit(create_model(cfg.model, **cfg.model_kw), make_loaders(split, cfg, "cpu"), cfg)
    assert [r["val_acc"] is None for r in out["history"]] == [True, False, False]
    assert out["metrics"]["best_epoch"] in (2, 3)


def test_lean_loop_copies_outputs_that_cuda_graphs_overwrite(monkeypatch):
    """Under ``compile="reduce-overhead"`` a CUDA graph's next replay
    overwrites its last output (H200: "accessing tensor output of CUDAGraphs
    that has been overwritten"); the lean loop keeps a copy of each step's
    logits, so its train metrics equal eager's. Replayed here on the CPU by
    a stand-in that blanks its previous output at every call."""
    import cifar_lib.engine as engine

    class Overwriting:
        def __init__(self, model):
            self.model, self.prev = model, None

        def __call__(self, x):
            if self.prev is not None:
                self.prev.data.fill_(float("nan"))
            self.prev = self.model(x)
            return self.prev

    split = tiny_fastnet_split()
    cfg = airbench_recipe(width=0.125, epochs=2, batch_size=16, amp=False, optim_kw={})
    hist = {}
    for mode in (False, "reduce-overhead"):
        monkeypatch.setattr(engine, "compiled", lambda m, how: Overwriting(m) if how else m)
        torch.manual_seed(0)
        out = fit(create_model(cfg.model, **cfg.model_kw), make_loaders(split, cfg, "cpu"),
                  cfg.replace(compile=mode))
        hist[mode] = [(r["train_loss"], r["train_acc"]) for r in out["history"]]
    assert hist["reduce-overhead"] == hist[False]

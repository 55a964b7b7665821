"""Adam-family optimizers over an fp16 network (airbench94's recipe keeps
the network in fp16): their state and update in fp32 (FP32State). On the
H200, Adam, AdamW and AdamW-then-SGD diverged in their first epoch at every
rate of the optimizer ablation: squared gradients and eps underflow in fp16."""
import copy

import pytest
import torch
import torch.nn as nn

import cifar_lib.engine as engine
from cifar_lib.data import split_data, synthetic_cifar
from cifar_lib.models import create_model
from cifar_lib.optim import FP16_UNSAFE, FP32State, make_optimizer
from cifar_lib.recipes import airbench_recipe


def _half_linear(grad=1e-5):
    torch.manual_seed(0)
    m = nn.Linear(4, 3).half()
    for p in m.parameters():
        p.grad = torch.full_like(p, grad)
        p.grad[..., 0] = -grad
    return m


def test_plain_adam_on_fp16_weights_breaks_on_small_gradients():
    """The failure FP32State exists for, shown: 1e-5 squares to 0 in fp16."""
    m = _half_linear()
    make_optimizer("adam", m, lr=1e-3).step()
    assert not all(torch.isfinite(p).all() for p in m.parameters())


def test_fp32_state_gives_adams_first_step_rounded_to_fp16():
    """Adam's first step is lr * g / (|g| + eps), about lr * sign(g): the
    reference maths in fp32, rounded once into the fp16 weights."""
    m = _half_linear()
    before = [p.detach().float().clone() for p in m.parameters()]
    grads = [p.grad.float() for p in m.parameters()]
    opt = FP32State(make_optimizer("adam", m, lr=1e-3))
    opt.step()
    for p, w, g in zip(m.parameters(), before, grads):
        assert p.dtype == torch.float16
        want = (w - 1e-3 * g / (g.abs() + 1e-8)).half()
        assert torch.equal(p.detach(), want)
    assert opt.state_dict()["state"][0]["exp_avg_sq"].dtype == torch.float32
    engine._clear_grads(opt)
    assert all(p.grad is None for p in m.parameters())


def test_fp32_state_reaches_both_phases_of_adamw_then_sgd():
    m = _half_linear(grad=1e-3)
    opt = FP32State(make_optimizer("adamw_sgd", m, lr=1e-3, total_steps=4, switch_at=0.5))
    seen = []
    for _ in range(4):
        w, phase = m.weight.detach().clone(), opt.phase
        opt.step()
        seen.append((phase, bool((m.weight != w).any())))
        for p in m.parameters():
            p.grad = torch.full_like(p, 1e-3)
    assert seen == [("adamw", True)] * 2 + [("sgd", True)] * 2
    assert opt.switched_at == 2


@pytest.mark.parametrize("name", sorted(FP16_UNSAFE))
def test_adam_family_trains_an_fp16_fastnet(monkeypatch, name):
    """The optimizer ablation's Adam rows on the CUDA path (emulated on the
    CPU, the network in fp16): finite losses, no divergence."""
    monkeypatch.setattr(engine, "EMULATE_CUDA", True)
    split = split_data(synthetic_cifar(n_train=144, n_test=16, seed=0), val_size=16, seed=0)
    kw = {"switch_at": 0.5} if name == "adamw_sgd" else {}
    cfg = airbench_recipe(width=0.125, epochs=2, batch_size=32, amp=False).replace(
        optimizer=name, lr=2e-3, weight_decay=0.0, decoupled=False, norm_bias_lr=1.0,
        optim_kw=kw)
    assert cfg.fp16
    torch.manual_seed(0)
    model = create_model(cfg.model, **cfg.model_kw)
    out = engine.fit(model, engine.make_loaders(split, cfg, "cpu"), cfg)
    assert out["status"] == "ok", out.get("failure")
    assert next(model.parameters()).dtype == torch.float16
    assert all(r["train_loss"] < 10 for r in out["history"])


def _rec(optimizer="adam", fp16=True, device="cuda", **metrics):
    return {"config": {"optimizer": optimizer, "fp16": fp16}, "status": "diverged",
            "env": {"device": device}, "metrics": metrics}


def test_runs_made_before_the_fix_are_stale_and_train_again():
    """A GPU run of an Adam-family optimizer over an fp16 network without
    the fp32 state's mark is stale; every other run stands."""
    assert "underflows" in engine.stale(_rec())
    assert engine.stale(_rec("adamw_sgd")) is not None
    assert engine.stale(_rec(optimizer_state="fp32")) is None
    assert engine.stale(_rec(device="cpu")) is None      # fp16 is CUDA-only
    assert engine.stale(_rec(optimizer="sgd")) is None
    assert engine.stale(_rec(fp16=None)) is None


def test_a_stale_record_is_pending_in_the_plan_and_retrained(tmp_path, monkeypatch):
    """The planner counts a stale record as not done; ``experiments.run``
    trains it again (over the same path) and says why."""
    from cifar_lib import experiments, plan, store
    from cifar_lib.profiles import get_profile
    P = get_profile("smoke").with_(root=tmp_path)
    split = split_data(synthetic_cifar(n_train=80, n_test=16, seed=0), val_size=16, seed=0)
    cfg = airbench_recipe(width=0.125, epochs=1, batch_size=32, amp=False).replace(
        optimizer="adam", lr=2e-3, weight_decay=0.0, decoupled=False, norm_bias_lr=1.0,
        optim_kw={})
    rec = experiments.run(cfg, split, "opt", P, device="cpu")
    path = store.run_path(P.results, "opt", rec["run"])
    assert plan._done_records(P)
    old = {**store.read(path), "status": "diverged", "env": {"device": "cuda"}}
    store.write(old, path)
    assert plan._done_records(P) == {}
    said = []
    again = experiments.run(cfg, split, "opt", P, device="cpu", log=said.append)
    assert again["status"] == "ok" and again["env"]["device"] == "cpu"
    assert any("retraining" in s and "underflows" in s for s in said)


def test_fp32_state_resumes_from_its_state_dict():
    """A checkpoint's optimizer state (the inner optimizer's, in fp32)
    loads into a fresh FP32State over the same network: the next steps match."""
    m = _half_linear(grad=1e-3)
    a = FP32State(make_optimizer("adam", m, lr=1e-3))
    a.step()
    saved = copy.deepcopy(a.state_dict())  # as a checkpoint file holds it
    twin = _half_linear(grad=1e-3)
    twin.load_state_dict(m.state_dict())
    b = FP32State(make_optimizer("adam", twin, lr=1e-3))
    b.load_state_dict(saved)
    assert b.state_dict()["state"][0]["exp_avg"].dtype == torch.float32
    for net, opt in ((m, a), (twin, b)):
        for p in net.parameters():
            p.grad = torch.full_like(p, 2e-3)
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(m.parameters(), twin.parameters()))

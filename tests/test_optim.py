"""Optimizers and learning-rate schedules by name, against torch's own."""
from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn as nn

from cifar_lib.optim import (OPTIMIZERS, SCHEDULES, AdamWThenSGD, LRSchedule,
                             SignSGD, check_schedule, lr_factor, make_ema,
                             make_optimizer, make_swa)


def problem(seed=0):
    """A linear model and a least-squares loss on fixed data."""
    g = torch.Generator().manual_seed(seed)
    X, w = torch.randn(64, 8, generator=g), torch.randn(8, 1, generator=g)
    y = X @ w
    torch.manual_seed(seed)
    model = nn.Linear(8, 1)
    return model, lambda: ((model(X) - y) ** 2).mean()


def saved(state):
    """``state`` after a torch.save / torch.load(weights_only=True) round trip."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def train(opt, loss_fn, steps):
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


LRS = {"sgd": 0.05, "adam": 0.05, "adamw": 0.05, "signsgd": 0.01, "adamw_sgd": 0.02}


@pytest.mark.parametrize("name", sorted(LRS))
def test_optimizer_lowers_the_loss(name):
    model, loss_fn = problem()
    opt = make_optimizer(name, model, lr=LRS[name], total_steps=40)
    before = loss_fn().item()
    losses = train(opt, loss_fn, 40)
    assert losses[1] < losses[0] and loss_fn().item() < 0.5 * before


def test_every_registered_optimizer_is_covered():
    assert set(LRS) <= set(OPTIMIZERS)
    assert set(OPTIMIZERS) - set(LRS) <= {"slbi"}  # DessiLBI is tested in test_slbi


def test_only_trainable_parameters():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    model[0].weight.requires_grad_(False)
    opt = make_optimizer("sgd", model, lr=0.1)
    params = [p for g in opt.param_groups for p in g["params"]]
    assert len(params) == 3 and all(p is not model[0].weight for p in params)


def test_sgd_options_reach_torch():
    model, _ = problem()
    opt = make_optimizer("sgd", model, lr=0.1, momentum=0.8, weight_decay=1e-3,
                         nesterov=True)
    g = opt.param_groups[0]
    assert (g["lr"], g["momentum"], g["weight_decay"], g["nesterov"]) == (0.1, 0.8, 1e-3, True)
    # nesterov needs momentum; it is turned off rather than failing
    assert make_optimizer("sgd", model, lr=0.1, momentum=0.0,
                          nesterov=True).param_groups[0]["nesterov"] is False


def test_signsgd_step_is_lr_times_sign():
    model, loss_fn = problem()
    opt = make_optimizer("signsgd", model, lr=0.01, momentum=0.0)
    assert isinstance(opt, SignSGD)
    w0 = model.weight.detach().clone()
    loss_fn().backward()
    grad = model.weight.grad.clone()
    opt.step()
    assert torch.allclose(model.weight - w0, -0.01 * grad.sign())
    # with momentum the first step is still lr * sign(grad) (m = (1-beta) g)
    model, loss_fn = problem()
    opt = make_optimizer("signsgd", model, lr=0.01, momentum=0.9)
    w0 = model.weight.detach().clone()
    loss_fn().backward()
    grad = model.weight.grad.clone()
    opt.step()
    assert torch.allclose(model.weight - w0, -0.01 * grad.sign())


def test_adamw_sgd_switches_at_the_right_step():
    model, loss_fn = problem()
    opt = make_optimizer("adamw_sgd", model, lr=0.01, total_steps=10, switch_at=0.3,
                         momentum=0.9)
    assert isinstance(opt, AdamWThenSGD) and opt.switch_step == 3
    phases = []
    for _ in range(10):
        phases.append(opt.phase)
        train(opt, loss_fn, 1)
    assert phases == ["adamw"] * 3 + ["sgd"] * 7
    p = model.weight
    assert opt.adamw.state[p]["step"].item() == 3
    assert "momentum_buffer" in opt.sgd.state[p]
    # the schedule sets the outer lr; SGD runs at lr * sgd_lr_scale
    opt.param_groups[0]["lr"] = 0.002
    train(opt, loss_fn, 1)
    assert opt.sgd.param_groups[0]["lr"] == pytest.approx(0.002 * opt.sgd_lr_scale)


def test_adamw_sgd_phase_uses_adamw_then_sgd():
    """The first steps equal plain AdamW, the later ones plain SGD."""
    model, loss_fn = problem()
    opt = make_optimizer("adamw_sgd", model, lr=0.01, total_steps=4, switch_at=0.5,
                         weight_decay=0.0)
    ref_model, ref_loss = problem()
    ref = torch.optim.AdamW(ref_model.parameters(), lr=0.01, weight_decay=0.0)
    train(opt, loss_fn, 2)
    train(ref, ref_loss, 2)
    assert torch.allclose(model.weight, ref_model.weight)
    sgd = torch.optim.SGD(ref_model.parameters(), lr=0.01 * opt.sgd_lr_scale,
                          momentum=0.9)  # make_optimizer's default: no nesterov
    train(opt, loss_fn, 2)
    train(sgd, ref_loss, 2)
    assert torch.allclose(model.weight, ref_model.weight, atol=1e-6)


def test_adamw_sgd_state_dict_round_trip():
    model, loss_fn = problem()
    opt = make_optimizer("adamw_sgd", model, lr=0.01, total_steps=10, switch_at=0.4)
    train(opt, loss_fn, 5)  # past the switch: both inner states are filled
    state = saved(opt.state_dict())
    copy_model, copy_loss = problem()
    copy_model.load_state_dict(model.state_dict())
    copy = make_optimizer("adamw_sgd", copy_model, lr=0.01, total_steps=10, switch_at=0.4)
    copy.load_state_dict(state)
    assert copy.steps == 5 and copy.phase == "sgd"
    train(opt, loss_fn, 3)
    train(copy, copy_loss, 3)
    assert torch.equal(model.weight, copy_model.weight)
    # a copy restored before the switch switches at the same step
    model, loss_fn = problem()
    opt = make_optimizer("adamw_sgd", model, lr=0.01, total_steps=10, switch_at=0.4)
    train(opt, loss_fn, 2)
    copy_model, copy_loss = problem()
    copy_model.load_state_dict(model.state_dict())
    copy = make_optimizer("adamw_sgd", copy_model, lr=0.01, total_steps=10, switch_at=0.4)
    copy.load_state_dict(saved(opt.state_dict()))
    phases = []
    for _ in range(4):
        phases.append(copy.phase)
        train(opt, loss_fn, 1)
        train(copy, copy_loss, 1)
    assert phases == ["adamw", "adamw", "sgd", "sgd"]
    assert torch.equal(model.weight, copy_model.weight)


def test_optimizer_errors():
    model, _ = problem()
    with pytest.raises(ValueError, match="unknown optimizer 'lion'; choose one of .*adam.*sgd"):
        make_optimizer("lion", model, lr=0.1)
    with pytest.raises(ValueError, match="learning rate must be positive"):
        make_optimizer("sgd", model, lr=0.0)
    with pytest.raises(ValueError, match="switch_at must be a fraction"):
        make_optimizer("adamw_sgd", model, lr=0.1, total_steps=10, switch_at=1.5)
    with pytest.raises(ValueError, match="needs total_steps"):
        make_optimizer("adamw_sgd", model, lr=0.1)
    with pytest.raises(ValueError, match="optimizer 'sgd' rejects .*switch_at"):
        make_optimizer("sgd", model, lr=0.1, switch_at=0.5)


# ---------------------------------------------------------------- schedules


def lrs(sched, steps):
    out = []
    for _ in range(steps):
        out.append(sched.lr)
        sched.optimizer.step()  # nothing to update; the order torch expects
        sched.step()
    return out


def torch_lrs(make, steps, per_epoch=1, momentum=0.0):
    """lr used at each optimizer step by a torch scheduler stepped every
    ``per_epoch`` optimizer steps."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4, momentum=momentum)
    sched = make(opt)
    out = []
    for t in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if (t + 1) % per_epoch == 0 and t + 1 < steps:
            sched.step()
    return out


def ours(name, total, per_epoch, **kw):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4)
    return lrs(LRSchedule(opt, name, total, per_epoch, **kw), total)


def test_cosine_matches_torch():
    assert ours("cosine", 50, 10) == pytest.approx(torch_lrs(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=50), 50))
    assert ours("cosine", 50, 10, min_ratio=0.1) == pytest.approx(torch_lrs(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 50, eta_min=0.04), 50))


@pytest.mark.parametrize("kw", [{}, {"pct_start": 0.25, "div_factor": 10.0,
                                     "final_div_factor": 100.0}])
def test_onecycle_matches_torch(kw):
    want = torch_lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=0.4, total_steps=60, **kw), 60, momentum=0.9)
    got = ours("onecycle", 60, 12, **kw)
    assert got == pytest.approx(want, rel=1e-6)
    assert max(got) == pytest.approx(0.4, rel=1e-3)


def test_onecycle_short_runs_do_not_fail():
    # pct_start * total == 1 leaves no warm phase; torch divides by zero here
    f = [lr_factor("onecycle", t, 10, 5, pct_start=0.1) for t in range(10)]
    assert f[0] == 1.0 and all(a >= b for a, b in zip(f, f[1:]))
    assert lr_factor("onecycle", 0, 1, 1) > 0


def test_step_and_exponential_are_per_epoch():
    per = 7
    assert ours("step", 70, per, step_size=3, gamma=0.5) == pytest.approx(torch_lrs(
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5), 70, per))
    assert ours("exponential", 70, per, gamma=0.8) == pytest.approx(torch_lrs(
        lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.8), 70, per))
    # default step size: a third of the epochs
    got = ours("step", 90, 10)
    assert got[29] == pytest.approx(0.4) and got[30] == pytest.approx(0.04)
    assert got[60] == pytest.approx(0.004)


@pytest.mark.parametrize("epochs, words", [(4, "every epoch"), (8, "every 2 epochs"),
                                           (16, "every 5 epochs")])
def test_step_row_label_names_the_step_size_it_runs_at(epochs, words):
    """The ablation's step row says when its rate is cut, as lr_factor cuts it."""
    from cifar_lib.engine import TrainConfig
    from cifar_lib.studies.classification.runs import step_label
    cfg = TrainConfig(model="lenet", epochs=epochs, scheduler="step")
    assert step_label(cfg) == f"step (x0.1 {words})"
    per = 5
    lrs = [lr_factor("step", t, epochs * per, per) for t in range(epochs * per)]
    size = 1 if epochs == 4 else int(words.split()[1])
    cuts = [t // per for t in range(1, len(lrs)) if lrs[t] < lrs[t - 1]]
    assert cuts == list(range(size, epochs, size))
    assert step_label(cfg.replace(sched_kw={"step_size": 3})) == "step (x0.1 every 3 epochs)"


def test_constant_and_linear():
    assert ours("constant", 20, 5) == [0.4] * 20
    got = ours("linear", 20, 5, min_ratio=0.5)
    assert got == pytest.approx([0.4 * (1 - 0.5 * t / 20) for t in range(20)])


def test_warmup_multiplies_the_schedule():
    got = ours("cosine", 40, 10, warmup_steps=8)
    plain = ours("cosine", 40, 10)
    assert got == pytest.approx([p * min(1, (t + 1) / 8) for t, p in enumerate(plain)])
    assert got[0] == pytest.approx(0.05) and got[7] == pytest.approx(plain[7])


def test_hold_from_keeps_a_constant_lr():
    got = ours("cosine", 40, 10, hold_from=30, hold_factor=0.1)
    assert got[:30] == pytest.approx(ours("cosine", 40, 10)[:30])
    assert got[30:] == pytest.approx([0.04] * 10)


def test_plateau_matches_torch():
    losses = [1.0, 0.9, 0.95, 0.9, 0.91, 0.5, 0.6, 0.6, 0.6, 0.6, 0.7, 0.7]
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
    sched = LRSchedule(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4),
                       "plateau", 100, 10, factor=0.5, patience=2)
    got, want = [], []
    for v in losses:
        for _ in range(3):
            sched.optimizer.step()
            sched.step()  # steps inside an epoch leave the lr alone
        sched.epoch_end(v)
        ref.step(v)
        got.append(sched.lr)
        want.append(opt.param_groups[0]["lr"])
    assert got == pytest.approx(want)
    assert got[0] == 0.4 and got[-1] < 0.4 / 3  # it did reduce, twice
    sched.epoch_end(None)  # a non-finite val loss changes nothing
    assert sched.lr == got[-1]


def test_schedule_state_round_trip():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4)
    a = LRSchedule(opt, "plateau", 100, 10, patience=0)
    a.epoch_end(1.0)
    a.epoch_end(2.0)
    for _ in range(13):
        opt.step()
        a.step()
    b = LRSchedule(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4),
                   "plateau", 100, 10, patience=0)
    b.load_state_dict(saved(a.state_dict()))
    assert b.state_dict() == a.state_dict() and b.lr == a.lr == pytest.approx(0.04)
    c_opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4)
    c = LRSchedule(c_opt, "cosine", 100, 10)
    c.load_state_dict({"t": 50, "mult": 1.0, "best": math.inf, "bad": 0})
    assert c.lr == pytest.approx(0.2)


class FunctionSchedule:
    """The schedule as it was before LambdaLR drove it, kept as the
    reference: it sets each group's lr to base * factor itself."""

    def __init__(self, optimizer, name, total_steps, steps_per_epoch, warmup_steps=0,
                 hold_from=None, hold_factor=1.0, **kw):
        check_schedule(name, kw)
        self.optimizer, self.name, self.kw = optimizer, name, kw
        self.total, self.per_epoch = total_steps, max(steps_per_epoch, 1)
        self.warmup, self.hold_from, self.hold_factor = warmup_steps, hold_from, hold_factor
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.t, self.mult, self.best, self.bad = 0, 1.0, math.inf, 0
        self.cuts = 0
        self._apply()

    def factor(self):
        if self.hold_from is not None and self.t >= self.hold_from:
            return self.hold_factor
        f = lr_factor(self.name, self.t, self.total, self.per_epoch, **self.kw)
        if self.warmup:
            f *= min(1.0, (self.t + 1) / self.warmup)
        return f * self.mult

    def _apply(self):
        f = self.factor()
        for g, base in zip(self.optimizer.param_groups, self.base):
            g["lr"] = base * f

    @property
    def lr(self):
        return self.optimizer.param_groups[0]["lr"]

    def step(self):
        self.t += 1
        self._apply()

    def epoch_end(self, val_loss):
        if self.name != "plateau" or val_loss is None:
            return
        if val_loss < self.best * (1 - self.kw.get("threshold", 1e-4)):
            self.best, self.bad = val_loss, 0
        else:
            self.bad += 1
            if self.bad > self.kw.get("patience", 2):
                self.mult *= self.kw.get("factor", 0.1)
                self.bad = 0
                self.cuts += 1
        self._apply()

    def state_dict(self):
        return {"t": self.t, "mult": self.mult, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state):
        self.t, self.mult, self.best, self.bad = (state[k] for k in ("t", "mult", "best", "bad"))
        self._apply()


# every scheduler of TrainConfig with options that change something
SCHEDULE_CASES = [("constant", {}), ("step", {}), ("step", {"step_size": 2, "gamma": 0.3}),
                  ("linear", {"min_ratio": 0.1}), ("cosine", {}), ("cosine", {"min_ratio": 0.05}),
                  ("exponential", {"gamma": 0.7}), ("onecycle", {}),
                  ("onecycle", {"pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0}),
                  ("plateau", {"patience": 0, "factor": 0.3}), ("plateau", {}),
                  ("triangle", {}), ("triangle", {"start": 0.0, "peak": 0.5, "end": 0.0})]
VAL_LOSSES = [1.0, 0.9, 0.95, 0.9, 0.91, 0.5, 0.6, 0.6, 0.6, 0.6]  # cuts a plateau schedule


def used_lrs(kind, optimizer, sched_name, sched_kw, warmup, hold, resume_at=None):
    """Every group's lr as each optimizer step uses it (the inner optimizer's
    for adamw_sgd), over 10 epochs of 7 steps of a tiny model, the schedule
    stepped as the engine does; with ``resume_at`` the run restarts there
    from saved optimizer and schedule states, as from a ``.last.pt``."""
    epochs, per = 10, 7
    model, loss_fn = problem()
    kw = {"switch_at": 0.4, "sgd_lr_scale": 20.0} if optimizer == "adamw_sgd" else {}

    def build():
        opt = make_optimizer(optimizer, model, lr=0.03, weight_decay=5e-4,
                             total_steps=epochs * per, **kw)
        sched = kind(opt, sched_name, epochs * per, per, warmup_steps=warmup,
                     hold_from=hold, hold_factor=0.25, **sched_kw)
        return opt, sched
    opt, sched = build()
    out = []
    for epoch in range(epochs):
        if epoch == resume_at:
            state = saved({"optimizer": opt.state_dict(), "schedule": sched.state_dict()})
            opt, sched = build()
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["schedule"])
        for _ in range(per):
            opt.zero_grad()
            loss_fn().backward()
            inner = getattr(opt, opt.phase) if optimizer == "adamw_sgd" else opt
            opt.step()
            out.append([g["lr"] for g in inner.param_groups])
            sched.step()
        sched.epoch_end(VAL_LOSSES[epoch])
    return out


@pytest.mark.parametrize("optimizer", ["sgd", "adamw_sgd"])
@pytest.mark.parametrize("warmup", [0, 10])
@pytest.mark.parametrize("name,kw", SCHEDULE_CASES)
def test_lambda_lr_gives_the_function_path_lrs_bit_for_bit(name, kw, warmup, optimizer):
    """LambdaLR sets exactly the floats the function path set, for every
    scheduler, with and without warm-up, an SWA hold, the Adam->SGD switch
    (its sgd_lr_scale) and a resume from saved states."""
    for hold in (None, 56):
        want = used_lrs(FunctionSchedule, optimizer, name, kw, warmup, hold)
        assert used_lrs(LRSchedule, optimizer, name, kw, warmup, hold) == want
        assert used_lrs(LRSchedule, optimizer, name, kw, warmup, hold, resume_at=4) == want
        assert len({len(g) for g in want}) == 1 and len(want[0]) == 2  # decay, no decay
        if name == "plateau" and hold is None:
            assert want[-1][0] < want[35][0]  # the plateau rule did cut the lr
    if optimizer == "adamw_sgd" and name == "constant" and not warmup:
        assert want[28][0] == want[27][0] * 20.0  # the switch scales by sgd_lr_scale


def test_schedule_is_a_lambda_lr():
    assert {name for name, _ in SCHEDULE_CASES} == set(SCHEDULES)  # all compared above
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4)
    sched = LRSchedule(opt, "cosine", 10, 5, warmup_steps=2)
    assert isinstance(sched.lambda_lr, torch.optim.lr_scheduler.LambdaLR)
    opt.step()
    sched.step()
    assert sched.t == sched.lambda_lr.last_epoch == 1
    assert sched.lambda_lr.get_last_lr() == [sched.lr] == [0.4 * sched.factor()]


def test_schedule_errors():
    with pytest.raises(ValueError, match="unknown scheduler 'cyclic'; choose one of "
                                         + ", ".join(SCHEDULES)):
        check_schedule("cyclic", {})
    with pytest.raises(ValueError, match="unknown scheduler"):
        lr_factor("cyclic", 0, 10, 1)
    with pytest.raises(ValueError, match=r"scheduler 'cosine' takes no option\(s\) "
                                         r"\['gamma'\]; valid: min_ratio"):
        LRSchedule(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1), "cosine",
                   10, 1, gamma=0.5)
    with pytest.raises(ValueError, match="valid: none"):
        check_schedule("constant", {"gamma": 0.1})


# ---------------------------------------------------------------- averaging


def test_ema_and_swa_average():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema, swa = make_ema(model, 0.5), make_swa(model)
    for v in (1.0, 2.0, 3.0):
        with torch.no_grad():
            model.weight.fill_(v)
        ema.update(model)
        swa.update_parameters(model)
    # EMA warms up: decay_n = min(0.5, (1 + n) / (10 + n)) = 0.1, 2/11, 0.25
    e = 0.0
    for n, v in enumerate((1.0, 2.0, 3.0)):
        d = min(0.5, (1 + n) / (10 + n))
        e = d * e + (1 - d) * v
    assert torch.allclose(ema.module.weight, torch.full((1, 2), e))
    assert ema.n == 3 and not ema.module.weight.requires_grad
    # SWA: (1 + 2 + 3) / 3
    assert torch.allclose(swa.module.weight, torch.full((1, 2), 2.0))
    # later the decay is the one asked for
    for _ in range(100):
        ema.update(model)
    before = ema.module.weight.clone()
    with torch.no_grad():
        model.weight.fill_(5.0)
    ema.update(model)
    assert torch.allclose(ema.module.weight, 0.5 * before + 0.5 * 5.0)
    # round trip
    other = make_ema(model, 0.5)
    other.load_state_dict(ema.state_dict())
    assert other.n == ema.n and torch.equal(other.module.weight, ema.module.weight)
    with pytest.raises(ValueError, match="EMA decay"):
        make_ema(model, 1.0)


@pytest.mark.parametrize("momentum,wd", [(0.9, 5e-4), (0.0, 0.0), (0.5, 0.0)])
def test_signsgd_foreach_equals_the_loop(momentum, wd):
    from cifar_lib.optim import SignSGD
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4),
                                torch.nn.Linear(4, 3)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [SignSGD(n.parameters(), lr=0.01, momentum=momentum, weight_decay=wd,
                    foreach=f) for n, f in zip(nets, (True, False))]
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    for _ in range(4):
        for n, o in zip(nets, opts):
            o.zero_grad()
            torch.nn.functional.cross_entropy(n(x), y).backward()
            o.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "signsgd", "adamw_sgd"])
def test_norm_weights_and_biases_get_no_weight_decay(name):
    from cifar_lib.optim import make_optimizer
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    net(torch.zeros(2, 3, 8, 8))
    opt = make_optimizer(name, net, lr=0.01, weight_decay=5e-4, total_steps=10)
    inner = opt.sgd if name == "adamw_sgd" else opt
    decay = {id(p): g["weight_decay"] for g in inner.param_groups for p in g["params"]}
    for p in net.parameters():
        assert decay[id(p)] == (5e-4 if p.dim() >= 2 else 0.0)
    every = make_optimizer(name, net, lr=0.01, weight_decay=5e-4, total_steps=10,
                           norm_bias_decay=True)
    inner = every.sgd if name == "adamw_sgd" else every
    assert {g["weight_decay"] for g in inner.param_groups} == {5e-4}


def test_config_records_from_before_norm_bias_decay_keep_their_recipe():
    from cifar_lib.engine import TrainConfig
    old = TrainConfig(weight_decay=5e-4).to_dict()
    old.pop("norm_bias_decay")
    assert TrainConfig.from_dict(old).norm_bias_decay is True
    assert "norm_bias_decay" not in TrainConfig(weight_decay=0.0).to_dict()


def test_ema_is_torch_averaged_model_with_the_warm_up():
    """EMA through AveragedModel + get_ema_multi_avg_fn gives exactly the
    average of the earlier hand-written lerp (copy counted as the first
    average, warm-up decay, integer buffers copied)."""
    from torch.optim.swa_utils import AveragedModel
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    ema = make_ema(model, 0.9)
    assert isinstance(ema.averaged, AveragedModel)
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for n in range(12):
        model(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        d = min(0.9, (1 + n) / (10 + n))
        for k, v in model.state_dict().items():
            ref[k] = ref[k].lerp(v, 1 - d) if v.is_floating_point() else v.clone()
        ema.update(model)
    for k, v in ema.module.state_dict().items():
        assert torch.equal(v, ref[k]), k
    assert ema.module.state_dict()["1.num_batches_tracked"].item() == 12


def test_step_with_a_closure_returns_its_loss_and_uses_its_gradients():
    from cifar_lib.optim import SignSGD
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = SignSGD([w], lr=0.5, momentum=0.0)

    def closure():
        opt.zero_grad()
        loss = (w ** 2).sum()
        loss.backward()
        return loss
    assert float(opt.step(closure)) == 5.0
    assert w.tolist() == [0.5, -1.5]  # one signed step against the gradient


def test_grad_clip_quantile_is_autoclip():
    """Each step clips at the running quantile (numpy's percentile) of the
    global norms so far, this step's included; the clipped steps are
    counted on the device."""
    import numpy as np
    from cifar_lib.optim import GradClip
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.zeros(5))
    clip = GradClip(quantile=0.3, total_steps=200)
    seen, clipped = [], 0
    for _ in range(200):
        g = torch.randn(5) * torch.rand(()) * 3
        seen.append(g.norm().item())
        limit = np.percentile(seen, 30)
        w.grad = g.clone()
        clip([w])
        expect = min(1.0, limit / (seen[-1] + 1e-6))
        assert torch.allclose(w.grad, g * expect, rtol=1e-5, atol=1e-7)
        clipped += expect < 1
    assert clip.fraction() == clipped / 200
    assert 0.55 <= clip.fraction() <= 0.85  # about 1 - q of the steps
    fixed = GradClip(max_norm=1.0)
    w.grad = torch.full((5,), 10.0)
    fixed([w])
    assert abs(w.grad.norm().item() - 1.0) < 1e-5 and fixed.fraction() == 1.0
    with pytest.raises(ValueError, match="one of"):
        GradClip(max_norm=1.0, quantile=0.5)


def test_plateau_cuts_and_adamw_sgd_switch_are_counted():
    model = torch.nn.Linear(3, 2)
    opt = make_optimizer("adamw_sgd", model, lr=0.01, total_steps=10, switch_at=0.3)
    for _ in range(5):
        model(torch.randn(4, 3)).sum().backward()
        opt.step()
    assert opt.switched_at == 3
    state = opt.state_dict()
    fresh = make_optimizer("adamw_sgd", model, lr=0.01, total_steps=10, switch_at=0.3)
    fresh.load_state_dict(state)
    assert fresh.switched_at == 3
    del state["switched_at"]  # a resume state from before the field
    fresh.load_state_dict(state)
    assert fresh.switched_at == 3
    sched = LRSchedule(torch.optim.SGD(model.parameters(), lr=1.0), "plateau", 10, 2,
                       patience=0)
    for loss in (1.0, 1.0, 1.0, 0.5):
        sched.epoch_end(loss)
    assert sched.cuts == 2
    again = LRSchedule(torch.optim.SGD(model.parameters(), lr=1.0), "plateau", 10, 2,
                       patience=0)
    again.load_state_dict(sched.state_dict())
    assert again.cuts == 2

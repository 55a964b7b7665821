"""Optimizers and learning-rate schedules by name, and weight averaging.

Optimizers are built from a model (only its trainable parameters) with
``make_optimizer(name, model, lr=..., ...)``; new ones join through
``@register_optimizer`` (from the leaf :mod:`cifar_lib.registry`; the
DessiLBI optimizer ``"slbi"`` registers in :mod:`cifar_lib.slbi`, which
:mod:`cifar_lib.engine` imports). Schedules are pure functions of the step
(:func:`lr_factor`), applied per step by :class:`LRSchedule` through
torch's ``LambdaLR``. Weight averages: :class:`EMA`, SWA
(:func:`make_swa`) and :class:`Lookahead`.
"""
from __future__ import annotations

import inspect
import math

import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from cifar_lib.registry import OPTIMIZERS, register_optimizer  # noqa: F401



def trainable(model) -> list[torch.nn.Parameter]:
    """Parameters that require gradients."""
    return [p for p in model.parameters() if p.requires_grad]


NORM_LAYERS = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm,
               torch.nn.LayerNorm)


def norm_biases(model) -> list[torch.nn.Parameter]:
    """The trainable biases of the model's normalisation layers (BatchNorm,
    GroupNorm, LayerNorm, InstanceNorm)."""
    return [m.bias for m in model.modules()
            if isinstance(m, NORM_LAYERS) and getattr(m, "bias", None) is not None
            and m.bias.requires_grad]


def decay_groups(model, weight_decay: float, norm_bias_decay: bool = False,
                 norm_bias_lr: float = 1.0, lr: float | None = None) -> list[dict]:
    """Parameter groups: weights of two or more dimensions decay; norm
    weights and biases (1-D) do not, unless ``norm_bias_decay`` (as in
    nanoGPT's ``configure_optimizers`` and the DessiLBI reference).

    With ``norm_bias_lr`` other than 1, the norm layers' biases form a group
    of their own whose learning rate is ``lr * norm_bias_lr`` and whose
    weight decay is divided by ``norm_bias_lr``, so that the decay step
    (lr times decay) stays the one of the other parameters (airbench's
    ``bias_scaler``: 64 in airbench94)."""
    params = trainable(model)
    if norm_bias_lr != 1.0:
        if lr is None:
            raise ValueError("decay_groups needs the base lr to scale the norm biases' lr")
        biases = {id(p) for p in norm_biases(model)}
        rest = [p for p in params if id(p) not in biases]
        groups = decay_groups(_Params(rest), weight_decay, norm_bias_decay)
        bias_wd = weight_decay / norm_bias_lr if norm_bias_decay else 0.0
        bias = [p for p in params if id(p) in biases]
        return groups + ([{"params": bias, "lr": lr * norm_bias_lr,
                           "weight_decay": bias_wd}] if bias else [])
    if norm_bias_decay or not weight_decay:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    return [g for g in ({"params": decay, "weight_decay": weight_decay},
                        {"params": rest, "weight_decay": 0.0}) if g["params"]]


class _Params:
    """A list of parameters that :func:`decay_groups` reads like a model."""

    def __init__(self, params):
        self.params = params

    def parameters(self):
        return iter(self.params)


# The report's names of the optimizers (configs store the keys).
OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "signsgd": "sign-SGD",
                   "adamw_sgd": "AdamW then SGD", "slbi": "SLBI"}


def optimizer_name(name: str) -> str:
    """An optimizer key as the report names it ('adam' -> 'Adam')."""
    return OPTIMIZER_NAMES.get(name, name)


def make_optimizer(name: str, model, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0, nesterov: bool = False,
                   total_steps: int | None = None, norm_bias_decay: bool = False,
                   norm_bias_lr: float = 1.0, **kw):
    """The optimizer called ``name`` over ``model``'s trainable parameters;
    norm weights and biases get no weight decay unless ``norm_bias_decay``;
    norm biases learn ``norm_bias_lr`` times faster (see :func:`decay_groups`)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of "
                         f"{', '.join(sorted(OPTIMIZERS))}")
    if not lr > 0:
        raise ValueError(f"learning rate must be positive, got {lr}")
    if norm_bias_lr != 1.0:
        if "norm_bias_lr" not in inspect.signature(OPTIMIZERS[name]).parameters:
            raise ValueError(f"optimizer {name!r} has no norm-bias lr multiplier "
                             f"(norm_bias_lr={norm_bias_lr}); use 1.0 with it")
        kw["norm_bias_lr"] = norm_bias_lr
    try:
        return OPTIMIZERS[name](model, lr=lr, momentum=momentum,
                                weight_decay=weight_decay, nesterov=nesterov,
                                total_steps=total_steps,
                                norm_bias_decay=norm_bias_decay, **kw)
    except TypeError as e:  # an option the optimizer does not take
        raise ValueError(f"optimizer {name!r} rejects its options {sorted(kw)} "
                         f"({e})") from e


@register_optimizer("sgd")
def _sgd(model, lr, momentum, weight_decay, nesterov, total_steps,
         norm_bias_decay=False, norm_bias_lr=1.0, **kw):
    groups = decay_groups(model, weight_decay, norm_bias_decay, norm_bias_lr, lr)
    return torch.optim.SGD(groups, lr=lr, momentum=momentum,
                           weight_decay=weight_decay,
                           nesterov=nesterov and momentum > 0, **kw)


@register_optimizer("adam")
def _adam(model, lr, momentum, weight_decay, nesterov, total_steps,
          norm_bias_decay=False, norm_bias_lr=1.0, **kw):
    groups = decay_groups(model, weight_decay, norm_bias_decay, norm_bias_lr, lr)
    return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, **kw)


@register_optimizer("adamw")
def _adamw(model, lr, momentum, weight_decay, nesterov, total_steps,
           norm_bias_decay=False, norm_bias_lr=1.0, **kw):
    groups = decay_groups(model, weight_decay, norm_bias_decay, norm_bias_lr, lr)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, **kw)


def closure_loss(closure):
    """An optimizer step's ``closure()`` evaluated with gradients on (the
    loss it returns), or None without one: the first lines of every
    ``step`` of ours (SignSGD, SLBI)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class SignSGD(torch.optim.Optimizer):
    """Sign descent with momentum (signum, Bernstein et al. 2018).

    m <- beta * m + (1 - beta) * (g + wd * w);  w <- w - lr * sign(m).
    With momentum 0 this is plain signSGD.
    """

    def __init__(self, params, lr=1e-3, momentum=0.9, weight_decay=0.0, foreach=True):
        super().__init__(params, dict(lr=lr, momentum=momentum,
                                      weight_decay=weight_decay))
        self.foreach = foreach

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.grad is not None]
            if ps:
                (self._step_foreach if self.foreach else self._step_loop)(group, ps)
        return loss

    def _step_loop(self, group, ps):
        beta, wd = group["momentum"], group["weight_decay"]
        for p in ps:
            g = p.grad.add(p, alpha=wd) if wd else p.grad
            if beta:
                m = self.state[p].setdefault("momentum", torch.zeros_like(p))
                m.mul_(beta).add_(g, alpha=1 - beta)
                g = m
            p.add_(g.sign(), alpha=-group["lr"])

    def _step_foreach(self, group, ps):
        """The same step with one fused call per operation over the group."""
        beta, wd = group["momentum"], group["weight_decay"]
        grads = [p.grad for p in ps]
        if wd:
            grads = torch._foreach_add(grads, ps, alpha=wd)
        if beta:
            ms = [self.state[p].setdefault("momentum", torch.zeros_like(p)) for p in ps]
            torch._foreach_mul_(ms, beta)
            torch._foreach_add_(ms, grads, alpha=1 - beta)
            grads = ms
        torch._foreach_add_(ps, torch._foreach_sign(grads), alpha=-group["lr"])


@register_optimizer("signsgd")
def _signsgd(model, lr, momentum, weight_decay, nesterov, total_steps,
             norm_bias_decay=False, norm_bias_lr=1.0, **kw):
    groups = decay_groups(model, weight_decay, norm_bias_decay, norm_bias_lr, lr)
    return SignSGD(groups, lr=lr,
                   momentum=momentum,
                   weight_decay=weight_decay, **kw)


class AdamWThenSGD(torch.optim.Optimizer):
    """AdamW for the first ``switch_step`` steps, then SGD with momentum.

    A fixed-point version of switching from Adam to SGD (Keskar & Socher
    2017). The schedule sets this optimizer's ``lr``; the SGD phase uses it
    times ``sgd_lr_scale``. Both phases share ``weight_decay``.
    """

    def __init__(self, params, lr=1e-3, switch_step=1000, sgd_lr_scale=50.0,
                 momentum=0.9, nesterov=True, weight_decay=0.0,
                 betas=(0.9, 0.999)):
        params = list(params)
        if params and not isinstance(params[0], dict):
            params = [{"params": params}]
        copy = lambda: [dict(g) for g in params]  # noqa: E731 (each optimizer owns its groups)
        super().__init__(copy(), dict(lr=lr))
        self.adamw = torch.optim.AdamW(copy(), lr=lr, betas=betas,
                                       weight_decay=weight_decay)
        self.sgd = torch.optim.SGD(copy(), lr=lr * sgd_lr_scale,
                                   momentum=momentum, nesterov=nesterov,
                                   weight_decay=weight_decay)
        self.switch_step, self.sgd_lr_scale, self.steps = switch_step, sgd_lr_scale, 0
        self.switched_at = None  # the step it switched to SGD at (None: not yet)

    @property
    def phase(self) -> str:
        return "adamw" if self.steps < self.switch_step else "sgd"

    def step(self, closure=None):
        inner = self.adamw if self.phase == "adamw" else self.sgd
        scale = 1.0 if inner is self.adamw else self.sgd_lr_scale
        if inner is self.sgd and self.switched_at is None:
            self.switched_at = self.steps  # AdamW steps taken before
        for outer, group in zip(self.param_groups, inner.param_groups):
            group["lr"] = outer["lr"] * scale
        self.steps += 1
        return inner.step(closure)

    def state_dict(self):
        return {"outer": super().state_dict(), "adamw": self.adamw.state_dict(),
                "sgd": self.sgd.state_dict(), "steps": self.steps,
                "switched_at": self.switched_at}

    def load_state_dict(self, state):
        super().load_state_dict(state["outer"])
        self.adamw.load_state_dict(state["adamw"])
        self.sgd.load_state_dict(state["sgd"])
        self.steps = state["steps"]
        self.switched_at = state.get("switched_at",  # states from before the field
                                     self.switch_step if self.steps > self.switch_step else None)


@register_optimizer("adamw_sgd")
def _adamw_sgd(model, lr, momentum, weight_decay, nesterov, total_steps,
               switch_at=0.5, norm_bias_decay=False, norm_bias_lr=1.0, **kw):
    if not 0 < switch_at < 1:
        raise ValueError(f"switch_at must be a fraction in (0, 1), got {switch_at}")
    if total_steps is None:
        raise ValueError("adamw_sgd needs total_steps to place the switch")
    groups = decay_groups(model, weight_decay, norm_bias_decay, norm_bias_lr, lr)
    return AdamWThenSGD(groups, lr=lr,
                        switch_step=int(switch_at * total_steps),
                        momentum=momentum, nesterov=nesterov,
                        weight_decay=weight_decay, **kw)


# Optimizers whose second-moment state underflows in fp16: a gradient
# below about 2.4e-4 squares to 0 there, and Adam's eps (1e-8) is 0 too, so
# an fp16 network's first step divides by zero. The engine gives them
# :class:`FP32State` when the network runs in fp16 (``TrainConfig.fp16``).
FP16_UNSAFE = frozenset({"adam", "adamw", "adamw_sgd"})


class FP32State:
    """``opt``'s state and update in fp32 over an fp16 network.

    ``opt`` is built over the network's (fp16) parameters; this swaps each
    fp16 parameter in its groups (and in the groups of optimizers it holds,
    as AdamW-then-SGD's phases) for an fp32 copy. Every :meth:`step` copies
    the parameters and their gradients into the fp32 copies, steps ``opt``
    there and rounds the result back into the network: the weights keep
    fp16 storage, as under SGD, while the optimizer's moments live in fp32.
    Everything else (``param_groups`` for the schedule, ``state_dict``,
    ``switched_at``, ``epoch_end``) is ``opt``'s own.
    """

    def __init__(self, opt: torch.optim.Optimizer):
        self.opt = opt
        shadow: dict[int, tuple] = {}  # id of an fp16 parameter: (it, its fp32 copy)
        inner = [opt, *(v for v in vars(opt).values() if isinstance(v, torch.optim.Optimizer))]
        for o in inner:
            for g in o.param_groups:
                g["params"] = [self._shadow(p, shadow) for p in g["params"]]
        self.pairs = [(p, m) for p, m in shadow.values()]
        self.model_params = [p for p, _ in self.pairs]  # their grads: cleared with the step's

    @staticmethod
    def _shadow(p: torch.Tensor, shadow: dict) -> torch.Tensor:
        if p.dtype != torch.float16:
            return p
        if id(p) not in shadow:
            shadow[id(p)] = (p, p.detach().float().requires_grad_(p.requires_grad))
        return shadow[id(p)][1]

    @torch.no_grad()
    def step(self, closure=None):
        for p, m in self.pairs:
            m.copy_(p)
            m.grad = None if p.grad is None else p.grad.float()
        out = self.opt.step(closure)
        for p, m in self.pairs:
            p.copy_(m)
        return out

    def __getattr__(self, name):
        if name == "opt":  # not set yet (copy, unpickling)
            raise AttributeError(name)
        return getattr(self.opt, name)


# ---------------------------------------------------------------- schedules

SCHEDULE_OPTIONS = {
    "constant": set(),
    "step": {"step_size", "gamma"},
    "exponential": {"gamma"},
    "cosine": {"min_ratio"},
    "linear": {"min_ratio"},
    "onecycle": {"pct_start", "div_factor", "final_div_factor"},
    "plateau": {"factor", "patience", "threshold"},
    "triangle": {"start", "peak", "end"},
}
SCHEDULES = tuple(SCHEDULE_OPTIONS)


def _cos(start: float, end: float, frac: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * frac)) / 2


def lr_factor(name: str, step: int, total: int, steps_per_epoch: int,
              **kw) -> float:
    """Multiplier of the base learning rate at optimizer step ``step``.

    ``step`` and ``exponential`` change per epoch (as torch's StepLR and
    ExponentialLR stepped once an epoch); the others per step. ``plateau``
    is 1 here: its reductions come from validation losses.
    """
    epoch = step // steps_per_epoch
    frac = min(step / max(total, 1), 1.0)
    if name in ("constant", "plateau"):
        return 1.0
    if name == "step":
        size = kw.get("step_size") or max(1, total // steps_per_epoch // 3)
        return kw.get("gamma", 0.1) ** (epoch // size)
    if name == "exponential":
        return kw.get("gamma", 0.9) ** epoch
    if name == "cosine":
        return _cos(1.0, kw.get("min_ratio", 0.0), frac)
    if name == "linear":
        lo = kw.get("min_ratio", 0.0)
        return 1.0 - (1.0 - lo) * frac
    if name == "onecycle":  # torch.optim.lr_scheduler.OneCycleLR, cos anneal
        start = 1.0 / kw.get("div_factor", 25.0)
        end = start / kw.get("final_div_factor", 1e4)
        up = float(kw.get("pct_start", 0.3) * total) - 1
        if step <= up and up > 0:  # up <= 0: no room for a warm phase
            return _cos(start, 1.0, step / up)
        down = total - 1 - up
        return _cos(1.0, end, min((step - up) / down, 1.0) if down > 0 else 1.0)
    if name == "triangle":
        return triangle(step, total, kw.get("start", 0.2), kw.get("peak", 0.23),
                        kw.get("end", 0.07))
    raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULES)}")


def triangle(step: int, total: int, start: float = 0.2, peak: float = 0.23,
             end: float = 0.07) -> float:
    """airbench's per-step triangle: linear from ``start`` at step 0 to 1 at
    step ``int(peak * total)``, then linear to ``end`` at step ``total``."""
    top = int(peak * total)
    if step < top:
        return start + (1.0 - start) * step / top
    return 1.0 + (end - 1.0) * (step - top) / max(total - top, 1)


def check_schedule(name: str, options: dict) -> None:
    """Raise a clear error for an unknown schedule or option."""
    if name not in SCHEDULE_OPTIONS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULES)}")
    bad = set(options) - SCHEDULE_OPTIONS[name]
    if bad:
        valid = ", ".join(sorted(SCHEDULE_OPTIONS[name])) or "none"
        raise ValueError(f"scheduler {name!r} takes no option(s) {sorted(bad)}; valid: {valid}")
    if name == "triangle":
        start, peak, end = (options.get(k, d) for k, d in
                            (("start", 0.2), ("peak", 0.23), ("end", 0.07)))
        if not (0 <= start <= 1 and 0 <= peak < 1 and 0 <= end <= 1):
            raise ValueError(f"bad triangle schedule start={start!r}, peak={peak!r}, "
                             f"end={end!r}; expected start and end in [0, 1] (factors "
                             "of the lr) and peak in [0, 1) (fraction of the steps)")


class LRSchedule:
    """Each group's lr, base * warmup * schedule (* plateau cuts), set per
    step by torch's :class:`~torch.optim.lr_scheduler.LambdaLR`.

    Call :meth:`step` after every optimizer step and :meth:`epoch_end` with
    the validation loss after every epoch. From ``hold_from`` on (SWA) the
    lr stays at base * ``hold_factor``. The optimizer's own rules stay in
    the optimizer: :class:`AdamWThenSGD` scales the rate set here by
    ``sgd_lr_scale`` after its switch.

    The lambda is :meth:`factor`, the pure :func:`lr_factor` with the warm-up
    and the plateau multiplier, so every rate is ``base * factor(t)``, the
    same float as before LambdaLR drove it. ``plateau`` keeps its own
    ReduceLROnPlateau rule (same decisions as torch's, see the tests) and
    cuts that multiplier: torch's ReduceLROnPlateau rescales the current lr
    in place, which LambdaLR overwrites at the next step, rounds otherwise
    (it multiplies the current lr, not the base by one factor) and stops
    cutting below its ``eps``. A cut, like a resume, puts a LambdaLR at step
    ``t`` the way torch restores a scheduler (``last_epoch=t - 1``).
    """

    def __init__(self, optimizer, name: str, total_steps: int,
                 steps_per_epoch: int, warmup_steps: int = 0,
                 hold_from: int | None = None, hold_factor: float = 1.0, **kw):
        check_schedule(name, kw)
        self.optimizer, self.name, self.kw = optimizer, name, kw
        self.total, self.per_epoch = total_steps, max(steps_per_epoch, 1)
        self.warmup, self.hold_from, self.hold_factor = warmup_steps, hold_from, hold_factor
        self.base = [g["lr"] for g in optimizer.param_groups]
        self.mult, self.best, self.bad = 1.0, math.inf, 0
        self.cuts = 0  # times the plateau rule cut the rate
        self._at(0)

    def factor(self, t: int | None = None) -> float:
        """The multiplier of the base rate at step ``t`` (default: now)."""
        t = self.t if t is None else t
        if self.hold_from is not None and t >= self.hold_from:
            return self.hold_factor
        f = lr_factor(self.name, t, self.total, self.per_epoch, **self.kw)
        if self.warmup:
            f *= min(1.0, (t + 1) / self.warmup)
        return f * self.mult

    def _at(self, t: int) -> None:
        """A LambdaLR at step ``t``: its (initial) step sets base * factor(t)."""
        for g, base in zip(self.optimizer.param_groups, self.base):
            g["initial_lr"] = base  # LambdaLR's base rate
        self.lambda_lr = LambdaLR(self.optimizer, lambda s: self.factor(s), last_epoch=t - 1)

    @property
    def t(self) -> int:
        """Optimizer steps taken (the LambdaLR's ``last_epoch``)."""
        return self.lambda_lr.last_epoch

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def step(self) -> None:
        self.lambda_lr.step()

    def epoch_end(self, val_loss: float) -> None:
        """Plateau: cut the lr by ``factor`` after ``patience`` flat epochs."""
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
                self._at(self.t)

    def state_dict(self) -> dict:
        return {"t": self.t, "mult": self.mult, "best": self.best, "bad": self.bad,
                "cuts": self.cuts}

    def load_state_dict(self, state: dict) -> None:
        self.mult, self.best, self.bad = (state[k] for k in ("mult", "best", "bad"))
        self.cuts = state.get("cuts", 0)
        self._at(state["t"])


# ---------------------------------------------------------------- averaging


class EMA:
    """Exponential moving average of a model's weights and float buffers,
    through torch's :class:`~torch.optim.swa_utils.AveragedModel` and
    :func:`~torch.optim.swa_utils.get_ema_multi_avg_fn`.

    The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so
    early weights do not linger in a short run. ``get_ema_multi_avg_fn``
    takes a fixed decay, so each update builds it with the warmed-up one
    (the count is kept in Python: no host sync per step). Two details keep
    the average the one this library always took: ``AveragedModel`` copies
    the model on its first update, while here the copy made at construction
    counts as the first average (``n_averaged`` starts at 1), so the first
    update already mixes; and integer buffers (BatchNorm's
    ``num_batches_tracked``) are copied, where ``get_ema_multi_avg_fn``
    would average and truncate them.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.n = decay, 0
        self.averaged = AveragedModel(model, multi_avg_fn=self._average, use_buffers=True)
        self.averaged.n_averaged.fill_(1)  # the copy is the first average
        self.module = self.averaged.module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next update uses (warmed up)."""
        return min(self.decay, (1 + self.n) / (10 + self.n))

    @torch.no_grad()
    def _average(self, mine: list, theirs: list, n_averaged) -> None:
        """``multi_avg_fn`` of the AveragedModel, called per device and dtype."""
        if mine[0].is_floating_point():
            get_ema_multi_avg_fn(self.current_decay())(mine, theirs, n_averaged)
        else:  # e.g. BatchNorm's num_batches_tracked
            for a, b in zip(mine, theirs):
                a.copy_(b)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.averaged.update_parameters(model)
        self.n += 1

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "n": self.n}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.n = state["n"]
        self.averaged.n_averaged.fill_(self.n + 1)


def make_ema(model, decay: float) -> EMA:
    """An :class:`EMA` of ``model`` (weights and BN statistics)."""
    return EMA(model, decay)


class Lookahead:
    """Lookahead as a weight average (hlb-cifar10, airbench94).

    Every ``every`` optimizer steps the average moves toward the live
    weights, ``avg <- avg + (1 - rho) * (w - avg)`` with ``rho = decay **
    every * (t / total) ** pow`` at step ``t`` (so it follows the weights
    closely early and averages strongly late), and the live weights jump
    back to the average. :meth:`finish` gives the model the average at the
    end of training. Every floating-point entry of the state dict takes
    part: weights and BatchNorm statistics. Two fused calls per update, no
    host sync.
    """

    def __init__(self, model: torch.nn.Module, every: int, total: int,
                 decay: float = 0.95, pow: float = 3.0):
        if every < 1 or total < 1:
            raise ValueError(f"Lookahead needs every >= 1 and total >= 1, "
                             f"got every={every}, total={total}")
        self.every, self.total, self.decay, self.pow = every, total, decay, pow
        self.live = [v for v in model.state_dict().values() if v.is_floating_point()]
        self.avg = [v.detach().clone() for v in self.live]

    def rho(self, t: int) -> float:
        """The weight the average keeps at step ``t``."""
        return self.decay ** self.every * (t / self.total) ** self.pow

    @torch.no_grad()
    def step(self, t: int) -> None:
        """After optimizer step ``t`` (counting from 1): update every
        ``every`` steps."""
        if t % self.every == 0:
            torch._foreach_lerp_(self.avg, self.live, 1.0 - self.rho(t))
            torch._foreach_copy_(self.live, self.avg)

    @torch.no_grad()
    def finish(self) -> None:
        """The model takes the average (its final weights)."""
        torch._foreach_copy_(self.live, self.avg)

    def state_dict(self) -> dict:
        return {"avg": list(self.avg)}

    def load_state_dict(self, state: dict) -> None:
        for a, b in zip(self.avg, state["avg"]):
            a.copy_(b)


def make_swa(model) -> AveragedModel:
    """Equal-weight average for SWA (Izmailov et al. 2018); BN refit at the end."""
    return AveragedModel(model)


# ---------------------------------------------------------------- clipping


class GradClip:
    """Gradient clipping by the global norm, counted on the device.

    ``max_norm`` clips at a fixed norm (``torch.nn.utils.clip_grad_norm_``'s
    rule); ``quantile`` q in (0, 1] clips each step at the running q-quantile
    of every global gradient norm seen so far, this step's included (AutoClip,
    Seetharaman et al. 2020; numpy's linear interpolation). The norms live
    in a preallocated device buffer of ``total_steps`` and the number of
    steps whose gradient the clipping changed (coefficient below 1) in a
    device counter: nothing is read by the host until :meth:`fraction`.
    """

    def __init__(self, max_norm: float = 0.0, quantile: float = 0.0,
                 total_steps: int = 1, device=None):
        if (max_norm > 0) == (quantile > 0):
            raise ValueError(f"GradClip needs one of max_norm={max_norm!r} and "
                             f"quantile={quantile!r} above 0")
        if not quantile <= 1:
            raise ValueError(f"quantile must be in (0, 1], got {quantile!r}")
        self.max_norm, self.quantile = float(max_norm), float(quantile)
        self.norms = torch.zeros(total_steps if quantile else 0, device=device)
        self.clipped = torch.zeros((), device=device, dtype=torch.long)
        self.steps = 0  # steps clipped (or not) so far, on the host

    @torch.no_grad()
    def __call__(self, params) -> None:
        """Clip the gradients of ``params`` in place (one optimizer step)."""
        params = [p for p in params if p.grad is not None]
        if not params:
            return
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        limit = self.max_norm
        if self.quantile:
            t = min(self.steps, len(self.norms) - 1)  # (a longer run: last slot)
            self.norms[t] = norm
            limit = torch.quantile(self.norms[:t + 1], self.quantile)
        torch.nn.utils.clip_grads_with_norm_(params, limit, norm)  # clip_grad_norm_'s step
        self.clipped += norm + 1e-6 > limit  # its coefficient limit / (norm + 1e-6) < 1
        self.steps += 1

    def fraction(self) -> float | None:
        """The fraction of steps whose gradient was clipped (a host read)."""
        return self.clipped.item() / self.steps if self.steps else None

    def state_dict(self) -> dict:
        return {"norms": self.norms, "clipped": self.clipped, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.norms.copy_(state["norms"])
        self.clipped.copy_(state["clipped"])
        self.steps = state["steps"]

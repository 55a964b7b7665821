"""Measurements of the BatchNorm study: probes along the optimizer's step,
a recorder hook that takes them (and per-step quantities) during
:func:`cifar_lib.engine.fit`, and filter-normalised loss surfaces.

Probes follow Santurkar et al. 2018 ("How Does Batch Normalization Help
Optimization?", Fig. 4 and appendix A.2.2): at weights w with gradient g on
the current batch, the loss and the gradient are taken on the same batch at
w + eta * u for several multiples eta of a direction u. In the paper u is
the SGD step -lr * g; here u is, by default, the update the run's optimizer
would take with that gradient (:func:`optimizer_update`: the SGD step, the
momentum step, Adam's step, ...), so every optimizer is probed at the scale
at which it moves. From the probes come the loss range (loss landscape),
the distances ||grad(w + eta u) - g|| (gradient predictiveness) and
max ||grad(w + eta u) - g|| / (eta ||u||) (effective beta-smoothness).

Surfaces follow Li et al. 2018 ("Visualizing the Loss Landscape of Neural
Nets"): random directions rescaled filter by filter to the norms of the
weights, biases and BatchNorm parameters left fixed.

Probes and surfaces run in float32: no autocast, and TF32 off on CUDA
(:func:`float32_precision`). Every measurement leaves the model as it found
it: weights, gradients, BatchNorm running statistics and train/eval modes;
and a probe along the optimizer's update leaves the optimizer's state and
hyper-parameters exactly as they were.
"""
from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from cifar_lib.analysis import last_linear
from cifar_lib.data import DeviceLoader
from cifar_lib.optim import trainable

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------- helpers


def global_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """l2 norm of a list of tensors seen as one vector (float64, 0-d)."""
    return torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(t, dtype=torch.float64) for t in tensors]))


def _tf32_switches() -> list[tuple[object, str, object]]:
    """(object, attribute, float32 value) of every TF32 switch that matters.

    The ``fp32_precision`` API where torch has it (2.9 warns when the legacy
    ``allow_tf32`` flags are set, and refuses to read them once both APIs
    have been mixed); ``allow_tf32`` on older versions.
    """
    b = torch.backends
    if hasattr(b.cuda.matmul, "fp32_precision") and hasattr(b.cudnn, "conv"):
        return [(obj, "fp32_precision", "ieee") for obj in
                (b.cuda.matmul, b.cudnn.conv, getattr(b.cudnn, "rnn", None))
                if obj is not None]
    return [(b.cuda.matmul, "allow_tf32", False), (b.cudnn, "allow_tf32", False)]


@contextmanager
def float32_precision(device=None):
    """Turn TF32 off for CUDA matmuls and cuDNN convolutions inside the block.

    Active when ``device`` is a CUDA device (``None``: when CUDA is
    available); on CPU nothing is touched. The previous settings come back
    on exit, also after an exception.
    """
    active = torch.device(device).type == "cuda" if device is not None \
        else torch.cuda.is_available()
    if not active:
        yield
        return
    switches = _tf32_switches()
    old = [getattr(obj, name) for obj, name, _ in switches]
    try:
        for obj, name, value in switches:
            setattr(obj, name, value)
        yield
    finally:
        for (obj, name, _), value in zip(switches, old):
            setattr(obj, name, value)


@contextmanager
def preserved(model: nn.Module):
    """Restore weights, buffers (BN running statistics) and modes on exit.

    Parameters are copied back in place, so optimizers keep their references
    and the restored values are bit-for-bit the saved ones.
    """
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        with torch.no_grad():
            for k, v in model.state_dict().items():
                v.copy_(state[k])
        for m, mode in modes:
            m.training = mode


def loss_and_grad(model: nn.Module, loss_fn: LossFn, x, y, params):
    """Loss and gradient w.r.t. ``params`` in float32, leaving ``.grad`` alone."""
    with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
        loss = loss_fn(model(x), y)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g.detach()
             for p, g in zip(params, grads)]
    return loss.detach(), grads


# ---------------------------------------------------------------- probes


def _optimizer_params(optimizer) -> list[torch.Tensor]:
    return [p for g in optimizer.param_groups for p in g["params"]]


def _save_optimizer(optimizer) -> tuple[dict, list[dict]]:
    """Copies of the optimizer's per-parameter state and of its groups'
    hyper-parameters (everything but the parameters themselves)."""
    state = {p: {k: v.detach().clone() if torch.is_tensor(v) else copy.deepcopy(v)
                 for k, v in optimizer.state[p].items()}
             for p in list(optimizer.state)}
    groups = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
              for g in optimizer.param_groups]
    return state, groups


@torch.no_grad()
def _restore_optimizer(optimizer, saved: tuple[dict, list[dict]]) -> None:
    """Put back what :func:`_save_optimizer` copied, in place where it can:
    tensors keep their identity, state a step created is removed."""
    state, groups = saved
    for p in list(optimizer.state):
        if p not in state:
            del optimizer.state[p]
            continue
        cur, old = optimizer.state[p], state[p]
        for k in [k for k in cur if k not in old]:
            del cur[k]
        for k, v in old.items():
            c = cur.get(k)
            if torch.is_tensor(v) and torch.is_tensor(c) and c.shape == v.shape \
                    and c.dtype == v.dtype and c.device == v.device:
                c.copy_(v)
            else:
                cur[k] = v
    for g, old in zip(optimizer.param_groups, groups):
        for k in [k for k in g if k != "params" and k not in old]:
            del g[k]
        g.update(old)


def optimizer_update(optimizer, params: Sequence[torch.Tensor],
                     grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The update ``w_new - w`` that ``optimizer.step()`` would make to
    ``params`` if their gradients were ``grads``; nothing is changed.

    A trial step: the gradients are put in ``.grad`` (parameters of the
    optimizer not in ``params`` get none, so they do not move), the step is
    taken, the change read, and then the parameters, their ``.grad`` and
    the optimizer's state and hyper-parameters are put back exactly (state
    tensors in place; state that the step created, e.g. Adam's moments or
    SGD's momentum buffer at the first step, removed again). For SGD
    without momentum the update is ``-lr * g``; with momentum it is the
    momentum step; for Adam, Adam's step. Optimizers that keep state
    outside ``optimizer.state`` and ``param_groups`` are not supported.
    """
    params = list(params)
    own = {id(p) for p in params}
    if not own <= {id(p) for p in _optimizer_params(optimizer)}:
        raise ValueError("the optimizer does not hold every probed parameter")
    by_id = {id(p): g for p, g in zip(params, grads)}
    everything = _optimizer_params(optimizer)
    old_grads = [p.grad for p in everything]
    w0 = [p.detach().clone() for p in params]
    saved = _save_optimizer(optimizer)
    try:
        for p in everything:
            g = by_id.get(id(p))
            p.grad = None if g is None else g.detach().clone().to(p.dtype)
        with torch.no_grad():
            optimizer.step()
            delta = [p.detach() - w for p, w in zip(params, w0)]
    finally:
        with torch.no_grad():
            for p, w in zip(params, w0):
                p.copy_(w)
        for p, g in zip(everything, old_grads):
            p.grad = g
        _restore_optimizer(optimizer, saved)
    return delta


def probe(model: nn.Module, loss_fn: LossFn, x, y, etas: Sequence[float],
          optimizer=None) -> dict:
    """Loss and gradient along a direction u on one batch.

    At the current weights w, with g the gradient of ``loss_fn`` on (x, y),
    evaluates the loss and the gradient at w + eta * u for each eta, in
    float32 with BatchNorm in training mode (batch statistics) and
    everything restored afterwards. With ``optimizer``, u is the update
    that optimizer would take with gradient g (:func:`optimizer_update`)
    and the etas are multiples of it (1: the real step); without, u = -g
    and the etas are step sizes (the paper's SGD probe). Returns the loss,
    ||g|| and ``step_norm`` = ||u|| at w, ``direction`` ("update" or
    "gradient"), per-eta ``losses`` and ``grad_dists``
    (||grad(w + eta u) - g||), and the summaries ``loss_min``/``loss_max``,
    ``gdist_min``/``gdist_max`` and ``beta`` (max over eta of grad_dist /
    (eta ||u||)).
    """
    etas = [float(e) for e in etas]
    if not etas or min(etas) <= 0:
        raise ValueError(f"probe step sizes must be positive, got {etas}")
    params = trainable(model)
    with preserved(model), float32_precision(params[0].device):
        model.train()
        loss0, g0 = loss_and_grad(model, loss_fn, x, y, params)
        u = [-g for g in g0] if optimizer is None else \
            optimizer_update(optimizer, params, g0)
        w0 = [p.detach().clone() for p in params]
        losses, dists = [], []
        for eta in etas:
            with torch.no_grad():
                for p, w, d in zip(params, w0, u):
                    p.copy_(w).add_(d, alpha=eta)
            loss, grads = loss_and_grad(model, loss_fn, x, y, params)
            losses.append(loss)
            dists.append(global_norm([a - b for a, b in zip(grads, g0)]))
        gnorm, unorm = global_norm(g0), global_norm(u)
    vals = torch.stack([v.double() for v in (loss0, gnorm, unorm, *losses, *dists)]
                       ).tolist()  # one host sync
    loss0, gnorm, unorm = vals[:3]
    losses, dists = vals[3:3 + len(etas)], vals[3 + len(etas):]
    betas = [d / (e * unorm) if unorm > 0 else math.nan
             for d, e in zip(dists, etas)]
    return {"loss": loss0, "grad_norm": gnorm, "step_norm": unorm,
            "direction": "gradient" if optimizer is None else "update",
            "etas": etas, "losses": losses, "grad_dists": dists,
            "loss_min": min(losses), "loss_max": max(losses),
            "gdist_min": min(dists), "gdist_max": max(dists),
            "beta": max(betas)}


PROBE_KEYS = ("loss", "grad_norm", "step_norm", "loss_min", "loss_max",
              "gdist_min", "gdist_max", "beta")
STEP_KEYS = ("loss", "last_grad", "last_grad_change")
DIRECTIONS = ("update", "gradient")


def _round(v: float, digits: int = 5):
    """A float with ``digits`` significant digits (None when not finite)."""
    return float(f"{v:.{digits}g}") if math.isfinite(v) else None


# ---------------------------------------------------------------- recording


class Recorder:
    """A hook for :func:`cifar_lib.engine.fit` that records a run step by step.

    ``after_backward`` measures, at every step, the training loss, the norm
    of the last linear layer's weight gradient and the norm of its change
    since the previous step; the values stay on the device, and the steps
    whose index is a multiple of ``keep_every`` are kept. Every
    ``probe_every`` steps (0: never) the recorder runs :func:`probe` on the
    batch about to be trained, at the weights before the step, with ``etas``:

    * ``direction="update"`` (default): along the update the run's
      optimizer is about to take, the etas being multiples of it. The probe
      runs just before that ``optimizer.step()`` (a step pre-hook: fit does
      not hand hooks its optimizer, so the recorder finds the optimizer that
      holds the model's parameters when it first steps). The update is
      computed from the probe's own float32 gradient of the batch (no
      gradient clipping).
    * ``direction="gradient"``: along -g, the etas being step sizes (the
      paper's SGD probe for any optimizer); it runs in ``before_step``.

    A probe changes nothing that training uses: weights, gradients, BN
    statistics, optimizer state, random state. ``result()`` gives the
    records as JSON-safe columns (5 significant digits) for the run's
    record; ``options()`` the settings, to name the run by. Use a new
    recorder for each run.
    """

    def __init__(self, loss_fn: LossFn | None = None, etas: Sequence[float] = (),
                 probe_every: int = 0, keep_every: int = 1,
                 direction: str = "update"):
        if probe_every < 0 or keep_every < 1:
            raise ValueError(f"need probe_every >= 0 and keep_every >= 1, got "
                             f"{probe_every} and {keep_every}")
        if probe_every and (not etas or min(etas) <= 0):
            raise ValueError(f"probe step sizes must be positive, got {list(etas)}")
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown probe direction {direction!r}; choose one "
                             f"of {', '.join(DIRECTIONS)}")
        self.loss_fn = loss_fn or nn.functional.cross_entropy
        self.etas = [float(e) for e in etas]
        self.probe_every, self.keep_every = int(probe_every), int(keep_every)
        self.direction = direction
        self.steps: list[int] = []            # every step seen
        self.rows: list[torch.Tensor] = []    # its STEP_KEYS, on the device
        self.probes: list[dict] = []
        self._head, self._prev = None, None
        self._pending = None                  # (model, x, y, step) to probe
        self._opt = self._finder = None

    def options(self) -> dict:
        """What is recorded, JSON-safe (a run's ``tag``); ``direction`` only
        when probing, so runs without probes keep their names."""
        out = {"probe_every": self.probe_every, "etas": self.etas,
               "keep_every": self.keep_every}
        return {**out, "direction": self.direction} if self.probe_every else out

    def _probe(self, model, x, y, step, optimizer=None) -> None:
        dev = x.device
        cuda = [] if dev.type != "cuda" else \
            [dev.index if dev.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=cuda):  # e.g. dropout in the probe
            p = probe(model, self.loss_fn, x, y, self.etas, optimizer=optimizer)
        self.probes.append({"step": step, **{k: p[k] for k in PROBE_KEYS}})

    def before_step(self, model: nn.Module, x, y, step: int) -> None:
        if not self.probe_every or step % self.probe_every:
            return
        if self.direction == "gradient":
            self._probe(model, x, y, step)
            return
        self._pending = (model, x, y, step)
        if self._opt is None and self._finder is None:
            self._finder = register_optimizer_step_pre_hook(
                self._find_optimizer)

    def _find_optimizer(self, optimizer, args, kwargs) -> None:
        """Global step pre-hook: bind the optimizer that trains the model."""
        if self._pending is None or self._opt is not None:
            return
        held = {id(p) for p in _optimizer_params(optimizer)}
        if not all(id(p) in held for p in trainable(self._pending[0])):
            return  # another optimizer
        self._finder.remove()
        self._finder, self._opt = None, optimizer
        optimizer.register_step_pre_hook(self._before_optimizer_step)
        self._before_optimizer_step(optimizer, args, kwargs)

    def _before_optimizer_step(self, optimizer, args, kwargs) -> None:
        if self._pending is None:  # nothing due, or the probe's trial step
            return
        (model, x, y, step), self._pending = self._pending, None
        self._probe(model, x, y, step, optimizer)

    def after_backward(self, model: nn.Module, loss: torch.Tensor, step: int) -> None:
        if self._head is None:
            self._head = last_linear(model)
        g = self._head.weight.grad.detach().float()
        change = torch.linalg.vector_norm(g - self._prev) if self._prev is not None \
            else torch.full((), math.nan, device=g.device)
        self.rows.append(torch.stack([loss.detach().float(),
                                      torch.linalg.vector_norm(g), change]))
        self.steps.append(step)
        self._prev = g.clone()

    def result(self) -> dict:
        """``steps`` (kept steps, first non-finite loss, last step) and ``probes``."""
        if self._finder is not None:  # no optimizer ever stepped
            self._finder.remove()
            self._finder = None
        table = torch.stack(self.rows).double().cpu() if self.rows else \
            torch.zeros(0, len(STEP_KEYS), dtype=torch.float64)  # one host sync
        bad = (~torch.isfinite(table[:, 0])).nonzero().flatten().tolist()
        kept = [i for i, s in enumerate(self.steps) if s % self.keep_every == 0]
        cols = table[kept].T.tolist() if kept else [[] for _ in STEP_KEYS]
        probes = {"every": self.probe_every, "etas": self.etas,
                  **({"direction": self.direction} if self.probe_every else {}),
                  **{k: [p[k] if k == "step" else _round(p[k]) for p in self.probes]
                     for k in ("step", *PROBE_KEYS)}}
        return {
            "steps": {"every": self.keep_every, "step": [self.steps[i] for i in kept],
                      **{k: [_round(v) for v in col] for k, col in zip(STEP_KEYS, cols)},
                      "first_nonfinite": self.steps[bad[0]] if bad else None,
                      "last_step": self.steps[-1] if self.steps else None},
            "probes": probes,
        }


# ---------------------------------------------------------------- surfaces


def filter_normalized_direction(model: nn.Module, seed: int = 0) -> list[torch.Tensor]:
    """A random direction, one tensor per trainable parameter (Li et al. 2018).

    Each filter (slice along the first axis of a conv or linear weight) gets
    the norm of the matching weight filter; 1-D parameters (biases, BN
    scales and shifts) get zeros, so they stay fixed.
    """
    g = torch.Generator().manual_seed(seed)
    out = []
    for p in trainable(model):
        if p.dim() <= 1:
            out.append(torch.zeros_like(p))
            continue
        d = torch.randn(p.shape, generator=g, dtype=torch.float32)
        d = d.to(device=p.device, dtype=p.dtype)
        shape = (-1,) + (1,) * (p.dim() - 1)
        w_norm = p.detach().reshape(len(p), -1).norm(dim=1)
        d_norm = d.reshape(len(d), -1).norm(dim=1).clamp_min(1e-12)
        out.append(d * (w_norm / d_norm).view(shape))
    return out


def fixed_batches(x, y, batch_size: int, mean=None, std=None, device=None,
                  drop_last: bool = True):
    """Normalised, un-augmented batches of uint8 images, kept on the device.

    With ``drop_last`` (default) every batch is full and the last
    ``len(y) % batch_size`` images are left out: with batch statistics, a
    small last batch would give a noisier, different loss.
    """
    if drop_last and len(y) < batch_size:
        raise ValueError(f"{len(y)} images make no full batch of {batch_size}")
    return list(DeviceLoader(x, y, batch_size, mean=mean, std=std, device=device,
                             drop_last=drop_last))


@torch.no_grad()
def mean_loss(model: nn.Module, batches, loss_fn: LossFn | None = None) -> torch.Tensor:
    """Mean loss over fixed batches in the model's current mode (0-d tensor)."""
    loss_fn = loss_fn or nn.functional.cross_entropy
    total = sum(loss_fn(model(x).float(), y) * len(y) for x, y in batches)
    return total / sum(len(y) for _, y in batches)


def _has_bn(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def loss_surface(model: nn.Module, batches, directions, coords,
                 loss_fn: LossFn | None = None, bn_train: bool = True) -> np.ndarray:
    """Mean loss at w + sum_i c_i d_i for each row c of ``coords``.

    ``directions`` is a list of k directions (each a list of tensors shaped
    like the trainable parameters); ``coords`` is N x k. BatchNorm uses
    batch statistics (``bn_train``; the batches must then be of one size,
    see :func:`fixed_batches`) or its running statistics. Runs in float32;
    the model is restored afterwards. Returns N losses (inf/nan kept).
    """
    coords = np.asarray(coords, dtype=np.float64).reshape(len(coords), -1)
    if coords.shape[1] != len(directions):
        raise ValueError(f"coords have {coords.shape[1]} columns for "
                         f"{len(directions)} directions")
    batches = list(batches)
    sizes = sorted({len(y) for _, y in batches})
    if bn_train and len(sizes) > 1 and _has_bn(model):
        raise ValueError(f"batches of sizes {sizes}: with batch statistics every "
                         "batch must have the same size (fixed_batches drops the "
                         "last, smaller one)")
    params = trainable(model)
    dev = params[0].device
    out = []
    with preserved(model), float32_precision(dev), \
            torch.autocast(dev.type, enabled=False):
        model.train(bn_train)
        w0 = [p.detach().clone() for p in params]
        for c in coords:
            for i, (p, w) in enumerate(zip(params, w0)):
                p.copy_(w)
                for ci, d in zip(c, directions):
                    p.add_(d[i], alpha=float(ci))
            out.append(mean_loss(model, batches, loss_fn))
    return torch.stack(out).double().cpu().numpy()

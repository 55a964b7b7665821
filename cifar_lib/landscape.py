"""Measurements of the BatchNorm study: gradient-direction probes, a training
loop that records them per step, and filter-normalised loss surfaces.

Probes follow Santurkar et al. 2018 ("How Does Batch Normalization Help
Optimization?", Fig. 4 and appendix A.2.2): at weights w with gradient g on
the current batch, the loss and the gradient are taken on the same batch at
w - eta * g for several step sizes eta. From them come the loss range (loss
landscape), the distances ||grad(w - eta g) - g|| (gradient predictiveness)
and max ||grad(w - eta g) - g|| / (eta ||g||) (effective beta-smoothness).

Surfaces follow Li et al. 2018 ("Visualizing the Loss Landscape of Neural
Nets"): random directions rescaled filter by filter to the norms of the
weights, biases and BatchNorm parameters left fixed.

Every measurement leaves the model as it found it: weights, gradients,
BatchNorm running statistics and train/eval modes.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from cifar_lib.data import DeviceLoader
from cifar_lib.engine import Loaders, TrainConfig, _labels, _progress, evaluate
from cifar_lib.losses import make_loss
from cifar_lib.optim import LRSchedule, make_optimizer, trainable

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------- helpers


def global_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """l2 norm of a list of tensors seen as one vector (float64, 0-d)."""
    return torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(t, dtype=torch.float64) for t in tensors]))


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last ``nn.Linear`` (the classifier's output layer)."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer")
    return layers[-1]


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


def probe(model: nn.Module, loss_fn: LossFn, x, y, etas: Sequence[float]) -> dict:
    """Loss and gradient along the negative gradient on one batch.

    At the current weights w, with g the gradient of ``loss_fn`` on (x, y),
    evaluates the loss and the gradient at w - eta * g for each eta, with
    BatchNorm in training mode (batch statistics) and everything restored
    afterwards. Returns the loss and ||g|| at w, per-eta ``losses`` and
    ``grad_dists`` (||grad(w - eta g) - g||), and the summaries
    ``loss_min``/``loss_max``, ``gdist_min``/``gdist_max`` and ``beta``
    (max over eta of grad_dist / (eta ||g||)).
    """
    etas = [float(e) for e in etas]
    if not etas or min(etas) <= 0:
        raise ValueError(f"probe step sizes must be positive, got {etas}")
    params = trainable(model)
    with preserved(model):
        model.train()
        loss0, g0 = loss_and_grad(model, loss_fn, x, y, params)
        w0 = [p.detach().clone() for p in params]
        losses, dists = [], []
        for eta in etas:
            with torch.no_grad():
                for p, w, g in zip(params, w0, g0):
                    p.copy_(w).add_(g, alpha=-eta)
            loss, grads = loss_and_grad(model, loss_fn, x, y, params)
            losses.append(loss)
            dists.append(global_norm([a - b for a, b in zip(grads, g0)]))
        gnorm = global_norm(g0)
    vals = torch.stack([v.double() for v in (loss0, gnorm, *losses, *dists)]
                       ).tolist()  # one host sync
    loss0, gnorm = vals[:2]
    losses, dists = vals[2:2 + len(etas)], vals[2 + len(etas):]
    betas = [d / (e * gnorm) if gnorm > 0 else math.nan
             for d, e in zip(dists, etas)]
    return {"loss": loss0, "grad_norm": gnorm, "etas": etas,
            "losses": losses, "grad_dists": dists,
            "loss_min": min(losses), "loss_max": max(losses),
            "gdist_min": min(dists), "gdist_max": max(dists),
            "beta": max(betas)}


PROBE_KEYS = ("loss", "grad_norm", "loss_min", "loss_max",
              "gdist_min", "gdist_max", "beta")
STEP_KEYS = ("loss", "last_grad", "last_grad_change")


def _round(v: float, digits: int = 5):
    """A float with ``digits`` significant digits (None when not finite)."""
    return float(f"{v:.{digits}g}") if math.isfinite(v) else None


# ---------------------------------------------------------------- training


def train_recorded(model: nn.Module, loaders: Loaders, cfg: TrainConfig, *,
                   probe_every: int = 0,
                   probe_scales: Sequence[float] = (0.5, 1, 2, 3, 4),
                   record_every: int = 1, check_every: int = 50,
                   progress: bool | None = None,
                   log: Callable[[str], None] | None = None) -> dict:
    """Train as ``cfg`` says, recording per-step quantities and probes.

    Every step records the training loss, the norm of the last layer's
    weight gradient and its change since the previous step (kept every
    ``record_every`` steps). Every ``probe_every`` steps (0: never), before
    the step, :func:`probe` runs on that step's batch with step sizes
    ``probe_scales`` times the current learning rate. Validation after each
    epoch. A non-finite loss stops the run with status ``diverged``.
    Returns status, per-epoch history, per-step records, probes, metrics;
    the model ends with its final weights.
    """
    from tqdm.auto import tqdm

    unsupported = [k for k in ("ema", "swa_start", "l1", "grad_clip")
                   if getattr(cfg, k)]
    if unsupported:
        raise ValueError(f"train_recorded does not support {unsupported}; "
                         "use cifar_lib.engine.fit for those options")
    if probe_every < 0 or record_every < 1:
        raise ValueError("probe_every must be >= 0 and record_every >= 1")
    dev = loaders.train.device
    model.to(dev)
    if loaders.train.channels_last:
        model.to(memory_format=torch.channels_last)
    steps = len(loaders.train)
    if steps == 0:
        raise ValueError(f"the training set ({len(loaders.train.y)} images) is "
                         f"smaller than one batch ({cfg.batch_size})")
    total = cfg.epochs * steps
    opt = make_optimizer(cfg.optimizer, model, lr=cfg.lr, momentum=cfg.momentum,
                         weight_decay=cfg.weight_decay, nesterov=cfg.nesterov,
                         total_steps=total, **cfg.optim_kw)
    sched = LRSchedule(opt, cfg.scheduler, total, steps,
                       warmup_steps=round(cfg.warmup_epochs * steps), **cfg.sched_kw)
    loss_fn = make_loss(cfg.loss, cfg.label_smoothing, **cfg.loss_kw)
    head = last_linear(model)
    amp = cfg.amp and dev.type == "cuda"
    rec = torch.full((len(STEP_KEYS), total), math.nan, device=dev)
    probes, history, prev = [], [], None
    status, diverged_at, t = "ok", None, 0
    wall0, train_time = time.perf_counter(), 0.0
    bar = tqdm(total=total, disable=not _progress(progress), desc=cfg.model,
               leave=False)
    for epoch in range(cfg.epochs):
        loaders.train.set_epoch(epoch)
        model.train()
        t0, first = time.perf_counter(), t
        correct = torch.zeros((), device=dev, dtype=torch.long)
        seen = 0
        for x, y in loaders.train:
            if probe_every and t % probe_every == 0:
                p = probe(model, loss_fn, x, y, [s * sched.lr for s in probe_scales])
                probes.append({"step": t, **{k: p[k] for k in PROBE_KEYS}})
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                out = model(x)
                loss = loss_fn(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gw = head.weight.grad.detach().float()
            rec[0, t] = loss.detach().float()
            rec[1, t] = torch.linalg.vector_norm(gw)
            if prev is not None:
                rec[2, t] = torch.linalg.vector_norm(gw - prev)
            prev = gw.clone()
            opt.step()
            sched.step()
            correct += (out.argmax(1) == _labels(y)).sum()
            seen += len(x)
            t += 1
            bar.update()
            if t % check_every == 0 and not torch.isfinite(loss):
                break
        losses = rec[0, first:t]
        finite = torch.isfinite(losses)
        train_time += time.perf_counter() - t0
        if not bool(finite.all()):
            bad = first + int((~finite).nonzero()[0])
            status, diverged_at = "diverged", {"epoch": epoch, "step": bad}
            if log:
                log(f"{cfg.model}: loss not finite at step {bad} (epoch "
                    f"{epoch}); stopping, the run is recorded as diverged")
            break
        val = evaluate(model, loaders.val, amp=cfg.amp)
        sched.epoch_end(val["loss"])
        history.append({"epoch": epoch + 1, "train_loss": float(losses.mean()),
                        "train_acc": int(correct) / max(seen, 1),
                        "val_loss": val["loss"], "val_acc": val["acc"],
                        "lr": sched.lr, "time": time.perf_counter() - t0})
        if log:
            h = history[-1]
            log(f"{cfg.model} epoch {epoch + 1}/{cfg.epochs} loss "
                f"{h['train_loss']:.4f} val {h['val_acc']:.4f}")
    bar.close()
    test = evaluate(model, loaders.test, amp=cfg.amp) if status == "ok" else None
    keep = list(range(0, t, record_every))
    table = rec[:, keep].tolist()
    best = max(history, key=lambda h: h["val_acc"]) if history else None
    return {
        "status": status, "diverged_at": diverged_at, "history": history,
        "steps": {"step": keep, "steps_per_epoch": steps,
                  **{k: [_round(v) for v in col] for k, col in zip(STEP_KEYS, table)}},
        "probes": {"every": probe_every, "scales": list(map(float, probe_scales)),
                   **{k: [p[k] if k == "step" else _round(p[k]) for p in probes]
                      for k in ("step", *PROBE_KEYS)}},
        "metrics": {
            "best_val_acc": best["val_acc"] if best else None,
            "best_epoch": best["epoch"] if best else None,
            "final_val_acc": history[-1]["val_acc"] if history else None,
            "final_train_loss": history[-1]["train_loss"] if history else None,
            "test_acc": test["acc"] if test else None,
            "test_loss": test["loss"] if test else None,
            "epochs_run": len(history), "steps_run": t,
            "train_time": train_time, "wall_time": time.perf_counter() - wall0,
            "images_per_s": t * cfg.batch_size / train_time if train_time else None,
            "params": sum(p.numel() for p in model.parameters()),
        },
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


def fixed_batches(x, y, batch_size: int, mean=None, std=None, device=None):
    """Normalised, un-augmented batches of uint8 images, kept on the device."""
    return list(DeviceLoader(x, y, batch_size, mean=mean, std=std, device=device))


@torch.no_grad()
def mean_loss(model: nn.Module, batches, loss_fn: LossFn | None = None) -> torch.Tensor:
    """Mean loss over fixed batches in the model's current mode (0-d tensor)."""
    loss_fn = loss_fn or nn.functional.cross_entropy
    total = sum(loss_fn(model(x).float(), y) * len(y) for x, y in batches)
    return total / sum(len(y) for _, y in batches)


@torch.no_grad()
def loss_surface(model: nn.Module, batches, directions, coords,
                 loss_fn: LossFn | None = None, bn_train: bool = True) -> np.ndarray:
    """Mean loss at w + sum_i c_i d_i for each row c of ``coords``.

    ``directions`` is a list of k directions (each a list of tensors shaped
    like the trainable parameters); ``coords`` is N x k. BatchNorm uses
    batch statistics (``bn_train``) or its running statistics; the model is
    restored afterwards. Returns N losses (inf/nan kept as they are).
    """
    coords = np.asarray(coords, dtype=np.float64).reshape(len(coords), -1)
    if coords.shape[1] != len(directions):
        raise ValueError(f"coords have {coords.shape[1]} columns for "
                         f"{len(directions)} directions")
    params = trainable(model)
    out = []
    with preserved(model):
        model.train(bn_train)
        w0 = [p.detach().clone() for p in params]
        for c in coords:
            for i, (p, w) in enumerate(zip(params, w0)):
                p.copy_(w)
                for ci, d in zip(c, directions):
                    p.add_(d[i], alpha=float(ci))
            out.append(mean_loss(model, batches, loss_fn))
    return torch.stack(out).double().cpu().numpy()

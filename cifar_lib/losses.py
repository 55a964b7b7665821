"""Classification losses by name; each takes int labels or soft N x K targets.

Soft targets come from mixup/cutmix; label smoothing turns any target t
into (1 - eps) * t + eps / K before the loss is taken. Cross-entropy is
``F.cross_entropy``, which takes both kinds of target and the smoothing;
focal and square losses smooth through :func:`as_soft`. Label smoothing is
set one way: the ``label_smoothing`` argument (TrainConfig's field).
"""
from __future__ import annotations

import inspect
from functools import partial

import torch
import torch.nn.functional as F


def as_soft(y: torch.Tensor, num_classes: int, smoothing: float = 0.0):
    """N x K float targets from int labels or soft targets, smoothed."""
    t = F.one_hot(y, num_classes).float() if y.dtype == torch.long else y.float()
    return t * (1 - smoothing) + smoothing / num_classes if smoothing else t


def cross_entropy(logits, y, label_smoothing: float = 0.0):
    """Mean cross-entropy against int labels or soft targets (``F.cross_entropy``
    takes class probabilities too); label smoothing mixes in the uniform
    distribution."""
    if y.dtype != torch.long:  # soft targets: in float32 like the other losses
        logits, y = logits.float(), y.float()
    return F.cross_entropy(logits, y, label_smoothing=label_smoothing)


def focal_loss(logits, y, gamma: float = 2.0, label_smoothing: float = 0.0):
    """Focal loss (Lin et al. 2017): -sum t * (1 - p)^gamma * log p."""
    t = as_soft(y, logits.shape[1], label_smoothing)
    logp = F.log_softmax(logits.float(), 1)
    return -(t * (1 - logp.exp()).pow(gamma) * logp).sum(1).mean()


def mse_loss(logits, y, label_smoothing: float = 0.0):
    """Square loss between the logits and the one-hot targets (Hui & Belkin 2021)."""
    t = as_soft(y, logits.shape[1], label_smoothing)
    return F.mse_loss(logits.float(), t)


LOSSES = {
    "cross_entropy": cross_entropy,
    "focal": focal_loss,
    "mse": mse_loss,
}


def make_loss(name: str, label_smoothing: float = 0.0, **kw):
    """The loss called ``name`` as ``f(logits, y)``; ``kw`` e.g. ``gamma``."""
    if name == "label_smoothing":  # a loss name once; no run on disk used it
        raise ValueError("label smoothing is not a loss of its own: use "
                         "loss='cross_entropy' with label_smoothing=0.1 (the field)")
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    options = set(inspect.signature(LOSSES[name]).parameters)
    options -= {"logits", "y", "label_smoothing"}  # label smoothing is an argument
    if set(kw) - options:
        raise ValueError(f"loss {name!r} has no option(s) {sorted(set(kw) - options)}; "
                         f"valid: {', '.join(sorted(options)) or 'none'}")
    return partial(LOSSES[name], label_smoothing=label_smoothing, **kw)

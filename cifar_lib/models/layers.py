"""Building blocks shared by the model families: activations and norms by name."""
from __future__ import annotations

import math

import torch.nn as nn

ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),
    "elu": lambda: nn.ELU(inplace=True),
    "gelu": nn.GELU,
    "silu": lambda: nn.SiLU(inplace=True),
}

NORMS = {
    "bn": nn.BatchNorm2d,
    "none": lambda c: nn.Identity(),
    "gn": lambda c: nn.GroupNorm(math.gcd(32, c), c),  # up to 32 groups dividing c
}


def act_layer(name: str) -> nn.Module:
    """A fresh activation module by name (relu, leaky_relu, elu, gelu, silu)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of "
                         f"{', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def norm_layer(name: str, channels: int) -> nn.Module:
    """A 2-d normalisation over ``channels`` by name (bn, gn, none)."""
    if name not in NORMS:
        raise ValueError(f"unknown norm {name!r}; choose one of {', '.join(NORMS)}")
    return NORMS[name](channels)


def conv_norm_act(cin: int, cout: int, act: str = "relu", norm: str = "bn",
                  kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """conv (no bias when normalised) -> norm -> activation."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=norm == "none"),
        norm_layer(norm, cout), act_layer(act))

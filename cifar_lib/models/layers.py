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


STEMS = ("cifar", "imagenet")


def make_stem(kind: str, cout: int, act: str = "relu", norm: str = "bn") -> nn.Sequential:
    """The layers before the first stage, by name.

    ``cifar``: a 3x3 stride-1 conv, norm, activation (keeps 32 x 32).
    ``imagenet``: a 7x7 stride-2 conv, norm, activation and a 3x3 stride-2
    max-pool (32 x 32 -> 8 x 8), as in He et al. 2016. Both put their conv
    and norm at ``0`` and ``1``, so parameter names are the same.
    """
    if kind == "cifar":
        return conv_norm_act(3, cout, act, norm)
    if kind == "imagenet":
        return nn.Sequential(*conv_norm_act(3, cout, act, norm, kernel=7, stride=2),
                             nn.MaxPool2d(3, 2, 1))
    raise ValueError(f"unknown stem {kind!r}; choose one of {', '.join(STEMS)}")


def build_stages(num_blocks, make_block, cin: int):
    """Stages of residual-style blocks; the first block of every stage but
    the first has stride 2. ``make_block(stage, index, cin, stride)`` returns
    ``(block, cout)``. Returns ``(nn.Sequential of stages, final width)``."""
    stages = []
    for i, n in enumerate(num_blocks):
        blocks = []
        for j in range(n):
            block, cin = make_block(i, j, cin, 2 if i and not j else 1)
            blocks.append(block)
        stages.append(nn.Sequential(*blocks))
    return nn.Sequential(*stages), cin


class StagedNet(nn.Module):
    """stem -> layers -> pool (or a head ending in pooling) -> fc: the frame
    shared by the residual, dense, mobile and shuffle families."""

    def finish(self, stem: nn.Module, layers: nn.Module, width: int, num_classes: int,
               pool: nn.Module | None = None) -> None:
        """Set the parts; ``pool`` defaults to global average pooling."""
        self.stem, self.layers = stem, layers
        self.pool = pool or nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.layers(self.stem(x))))

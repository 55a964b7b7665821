"""Wide ResNet (Zagoruyko & Komodakis 2016, "Wide Residual Networks").

WRN-d-k: a 16-channel 3x3 stem, three stages of (d - 4) / 6 pre-activation
blocks at widths 16k-32k-64k (strides 1, 2, 2), a final norm -> act, pool and
a linear layer. ``dropout`` sits between the two convs of every block (the
paper uses 0.3). WRN-28-10 has 36.49M parameters, WRN-16-8 10.96M.
"""
from __future__ import annotations

from cifar_lib.registry import register_model
from cifar_lib.models.preactresnet import PreActResNet


def wide_resnet(depth: int, k: int, num_classes=10, dropout=0.0, act="relu",
                norm="bn") -> PreActResNet:
    """WRN-``depth``-``k``; ``depth`` must be 6n + 4."""
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"WRN depth must be 6n + 4 (10, 16, 22, 28, ...), "
                         f"got {depth}")
    n = (depth - 4) // 6
    return PreActResNet((n, n, n), num_classes, widths=(16 * k, 32 * k, 64 * k),
                        stem=16, act=act, norm=norm, dropout=dropout)


@register_model
def wrn28_10(num_classes=10, dropout=0.0, act="relu", norm="bn"):
    """WRN-28-10: 4 blocks per stage at 160-320-640, 36.49M parameters."""
    return wide_resnet(28, 10, num_classes, dropout, act, norm)


@register_model
def wrn16_8(num_classes=10, dropout=0.0, act="relu", norm="bn"):
    """WRN-16-8: 2 blocks per stage at 128-256-512, 10.96M parameters."""
    return wide_resnet(16, 8, num_classes, dropout, act, norm)

"""MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and
Linear Bottlenecks").

An inverted residual expands the channels t-fold with a 1x1 conv, filters
them with a depthwise 3x3 conv and projects them back with a linear 1x1 conv
(no activation); the residual connects the narrow ends when shapes match.
CIFAR variant: 3x3 stride-1 stem of 32 channels, the paper's stages with
the first two strides set to 1 (32 -> 16 -> 8 -> 4 pixels), a 1x1 conv to
1280 channels, pool and a linear layer: 2.24M parameters for 10 classes.
"""
from __future__ import annotations

import torch.nn as nn

from cifar_lib.registry import register_model
from cifar_lib.models.layers import StagedNet, act_layer, norm_layer

# expansion t, channels c, repeats n, stride s (of the first repeat)
CONFIG = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2),
          (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _act(name: str) -> nn.Module:
    """ReLU6 (the paper's activation) or any activation of ``layers``."""
    return nn.ReLU6(inplace=True) if name == "relu6" else act_layer(name)


def _cna(cin, cout, act, norm, kernel=1, stride=1, groups=1):
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups,
                      bias=False), norm_layer(norm, cout), _act(act)]


class InvertedResidual(nn.Module):
    """1x1 expand -> depthwise 3x3 -> linear 1x1 project (+ identity)."""

    def __init__(self, cin, cout, stride, t, act="relu6", norm="bn"):
        super().__init__()
        mid = cin * t
        layers = _cna(cin, mid, act, norm) if t != 1 else []
        layers += _cna(mid, mid, act, norm, 3, stride, groups=mid)
        layers += [nn.Conv2d(mid, cout, 1, bias=False), norm_layer(norm, cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(StagedNet):
    """Stem, inverted-residual stages, 1x1 conv to 1280, pool, fc."""

    def __init__(self, num_classes=10, act="relu6", norm="bn"):
        super().__init__()
        blocks, cin = [], 32
        for t, c, n, s in CONFIG:
            for j in range(n):
                blocks.append(InvertedResidual(cin, c, s if j == 0 else 1, t,
                                               act, norm))
                cin = c
        head = nn.Sequential(*_cna(cin, 1280, act, norm), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten())
        self.finish(nn.Sequential(*_cna(3, 32, act, norm, 3)), nn.Sequential(*blocks),
                    1280, num_classes, head)


@register_model
def mobilenetv2(num_classes=10, act="relu6", norm="bn"):
    """MobileNetV2 for CIFAR, 2.24M parameters (``act`` also takes relu6)."""
    return MobileNetV2(num_classes, act, norm)

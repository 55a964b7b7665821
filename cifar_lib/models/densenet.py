"""DenseNet (Huang et al. 2017, "Densely Connected Convolutional Networks").

DenseNet-BC for CIFAR: a 3x3 stride-1 stem of 2 x growth channels, four
dense blocks (6, 12, 24, 16 layers for DenseNet-121) separated by
transitions (norm -> act -> 1x1 conv halving the channels -> 2x2 avg-pool),
then norm -> act, pool and a linear layer. Each dense layer is
norm -> act -> 1x1 conv (4 x growth) -> norm -> act -> 3x3 conv (growth) and
its output is concatenated to its input. DenseNet-121 (growth 32) has 6.96M
parameters for 10 classes.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from cifar_lib.registry import register_model
from cifar_lib.models.layers import StagedNet, act_layer, norm_layer


class DenseLayer(nn.Module):
    """Bottleneck layer adding ``growth`` channels to its input."""

    def __init__(self, cin, growth, act="relu", norm="bn"):
        super().__init__()
        self.body = nn.Sequential(
            norm_layer(norm, cin), act_layer(act),
            nn.Conv2d(cin, 4 * growth, 1, bias=False),
            norm_layer(norm, 4 * growth), act_layer(act),
            nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.body(x)], 1)


def transition(cin, cout, act="relu", norm="bn") -> nn.Sequential:
    """norm -> act -> 1x1 conv -> 2x2 average pool."""
    return nn.Sequential(norm_layer(norm, cin), act_layer(act),
                         nn.Conv2d(cin, cout, 1, bias=False), nn.AvgPool2d(2))


class DenseNet(StagedNet):
    """Stem, dense blocks and transitions, norm-act, pool, fc."""

    def __init__(self, num_layers=(6, 12, 24, 16), growth=32, reduction=0.5,
                 num_classes=10, act="relu", norm="bn"):
        super().__init__()
        c = 2 * growth
        body = []
        for i, n in enumerate(num_layers):
            for _ in range(n):
                body.append(DenseLayer(c, growth, act, norm))
                c += growth
            if i < len(num_layers) - 1:
                cout = int(c * reduction)
                body.append(transition(c, cout, act, norm))
                c = cout
        head = nn.Sequential(norm_layer(norm, c), act_layer(act),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.finish(nn.Conv2d(3, 2 * growth, 3, 1, 1, bias=False), nn.Sequential(*body),
                    c, num_classes, head)


@register_model
def densenet121(num_classes=10, growth=32, act="relu", norm="bn"):
    """DenseNet-121 (layers 6-12-24-16, growth 32), 6.96M parameters."""
    return DenseNet((6, 12, 24, 16), growth, 0.5, num_classes, act, norm)

"""Dual Path Networks (Chen et al. 2017, "Dual Path Networks").

A DPN block is a ResNeXt-style bottleneck (1x1 -> grouped 3x3 -> 1x1) whose
output is split in two: the first ``out`` channels are added to the input's
residual part (ResNet path, feature re-use), the remaining ``dense`` channels
are concatenated to the input's dense part (DenseNet path, new features).
CIFAR variant: 3x3 stride-1 stem of 64 channels, four stages (strides 1, 2,
2, 2), pool and a linear layer. DPN-26 has 2 blocks per stage and 11.57M
parameters for 10 classes.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from cifar_lib.registry import register_model
from cifar_lib.models.layers import StagedNet, act_layer, build_stages, conv_norm_act, norm_layer


class DualPathBlock(nn.Module):
    """Bottleneck whose output feeds a residual and a densely grown path."""

    def __init__(self, cin, mid, out, dense, stride=1, first=False,
                 groups=32, act="relu", norm="bn"):
        super().__init__()
        self.out = out
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), norm_layer(norm, mid),
            act_layer(act),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=groups, bias=False),
            norm_layer(norm, mid), act_layer(act),
            nn.Conv2d(mid, out + dense, 1, bias=False),
            norm_layer(norm, out + dense))
        # the first block of a stage projects its input onto both paths
        self.shortcut = nn.Identity()
        if first:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, out + dense, 1, stride, bias=False),
                norm_layer(norm, out + dense))
        self.act = act_layer(act)

    def forward(self, x):
        y, x = self.body(x), self.shortcut(x)
        d = self.out
        res = x[:, :d] + y[:, :d]
        return self.act(torch.cat([res, x[:, d:], y[:, d:]], 1))


class DPN(StagedNet):
    """Stem, four stages of dual-path blocks, pool, fc."""

    def __init__(self, mids=(96, 192, 384, 768), outs=(256, 512, 1024, 2048),
                 num_blocks=(2, 2, 2, 2), dense=(16, 32, 24, 128),
                 num_classes=10, act="relu", norm="bn"):
        super().__init__()
        def block(i, j, cin, stride):
            return (DualPathBlock(cin, mids[i], outs[i], dense[i], stride, j == 0,
                                  act=act, norm=norm), outs[i] + (j + 2) * dense[i])
        layers, cout = build_stages(num_blocks, block, 64)
        self.finish(conv_norm_act(3, 64, act, norm), layers, cout, num_classes)


@register_model
def dpn26(num_classes=10, act="relu", norm="bn"):
    """DPN-26: 2 dual-path blocks per stage, 11.57M parameters."""
    return DPN(num_blocks=(2, 2, 2, 2), num_classes=num_classes, act=act,
               norm=norm)

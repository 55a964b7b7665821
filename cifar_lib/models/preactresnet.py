"""Pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep
Residual Networks").

Each block is norm -> act -> conv -> norm -> act -> conv plus an identity
(or 1x1 projection of the pre-activated input), so the residual path carries
no non-linearity. CIFAR variant: 3x3 stride-1 stem (a bare conv), four stages
of 64-128-256-512 channels, a final norm -> act before pooling.
PreActResNet-18 has 11.17M parameters for 10 classes.
"""
from __future__ import annotations

import torch.nn as nn

from cifar_lib.registry import register_model
from cifar_lib.models.layers import StagedNet, act_layer, build_stages, norm_layer


class PreActBlock(nn.Module):
    """norm-act-conv3x3, norm-act-(dropout)-conv3x3, plus the shortcut."""

    def __init__(self, cin, cout, stride=1, act="relu", norm="bn",
                 dropout=0.0):
        super().__init__()
        self.bn1, self.act1 = norm_layer(norm, cin), act_layer(act)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.act2 = norm_layer(norm, cout), act_layer(act)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = self.act1(self.bn1(x))
        # a projection sees the pre-activated input; an identity sees x itself
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(self.drop(self.act2(self.bn2(out))))
        return out + skip


class PreActResNet(StagedNet):
    """Bare conv stem, stages of pre-activation blocks, norm-act, pool, fc.

    Also the body of the Wide ResNets (``wideresnet.py``): ``stem`` is the
    stem width, ``widths`` the stage widths, ``dropout`` sits inside blocks.
    """

    def __init__(self, num_blocks=(2, 2, 2, 2), num_classes=10,
                 widths=(64, 128, 256, 512), stem=None, act="relu", norm="bn",
                 dropout=0.0):
        super().__init__()
        stem = stem or widths[0]
        layers, cout = build_stages(
            num_blocks, lambda i, j, cin, s: (PreActBlock(cin, widths[i], s, act, norm,
                                                          dropout), widths[i]), stem)
        pool = nn.Sequential(norm_layer(norm, cout), act_layer(act),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.finish(nn.Conv2d(3, stem, 3, 1, 1, bias=False), layers, cout, num_classes, pool)


@register_model
def preactresnet18(num_classes=10, act="relu", norm="bn"):
    """PreActResNet-18: blocks (2, 2, 2, 2) at 64-512, 11.17M parameters."""
    return PreActResNet((2, 2, 2, 2), num_classes, act=act, norm=norm)

"""ResNet (He et al. 2016, "Deep Residual Learning for Image Recognition").

CIFAR variant: 3x3 stride-1 stem with no max-pool, four stages of
64-128-256-512 channels, global average pooling, one linear layer.
ResNet-18 has 11,173,962 parameters for 10 classes. Every size takes
``stem="imagenet"`` for the ImageNet stem instead (7x7 stride-2 conv and a
3x3 stride-2 max-pool; ResNet-18 then has 11,181,642 parameters).

The small nets ``resnet_s2`` / ``resnet_s3`` have a 16-channel stem and three
stages of 32-64-128 channels with 2 or 3 BasicBlocks each (0.69M / 1.08M).
"""
from __future__ import annotations

import torch.nn as nn

from cifar_lib.registry import register_model
from cifar_lib.models.layers import StagedNet, act_layer, build_stages, make_stem, norm_layer


def _shortcut(cin, cout, stride, norm):
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                         norm_layer(norm, cout))


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection."""

    expansion = 1

    def __init__(self, cin, planes, stride=1, act="relu", norm="bn"):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = norm_layer(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = norm_layer(norm, planes)
        self.act1, self.act2 = act_layer(act), act_layer(act)
        self.shortcut = _shortcut(cin, planes, stride, norm)

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), with a residual connection."""

    expansion = 4

    def __init__(self, cin, planes, stride=1, act="relu", norm="bn"):
        super().__init__()
        out = planes * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, planes, 1, bias=False), norm_layer(norm, planes), act_layer(act),
            nn.Conv2d(planes, planes, 3, stride, 1, bias=False), norm_layer(norm, planes),
            act_layer(act), nn.Conv2d(planes, out, 1, bias=False), norm_layer(norm, out))
        self.act = act_layer(act)
        self.shortcut = _shortcut(cin, out, stride, norm)

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


class ResNet(StagedNet):
    """Stem, stages of residual blocks (stride 2 from the second), pool, fc."""

    def __init__(self, block, num_blocks, num_classes=10,
                 widths=(64, 128, 256, 512), act="relu", norm="bn", stem_width=None,
                 stem="cifar"):
        super().__init__()
        stem_width = stem_width or widths[0]  # default: the first stage's width
        layers, cout = build_stages(
            num_blocks, lambda i, j, cin, s: (block(cin, widths[i], s, act, norm),
                                              widths[i] * block.expansion), stem_width)
        self.finish(make_stem(stem, stem_width, act, norm), layers, cout, num_classes)


@register_model
def resnet18(num_classes=10, act="relu", norm="bn", stem="cifar", width=1.0):
    """ResNet-18: BasicBlock x (2, 2, 2, 2), 11.17M parameters; ``width``
    scales every channel count (the cpu profile's 0.25: 16-32-64-128, 0.70M)."""
    widths = tuple(max(4, round(w * width)) for w in (64, 128, 256, 512))
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, widths=widths, act=act,
                  norm=norm, stem=stem)


@register_model
def resnet34(num_classes=10, act="relu", norm="bn", stem="cifar"):
    """ResNet-34: BasicBlock x (3, 4, 6, 3), 21.28M parameters."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, act=act, norm=norm, stem=stem)


@register_model
def resnet50(num_classes=10, act="relu", norm="bn", stem="cifar"):
    """ResNet-50: Bottleneck x (3, 4, 6, 3), 23.52M parameters."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, act=act, norm=norm, stem=stem)


@register_model
def resnet_s2(num_classes=10, act="relu", norm="bn", stem="cifar"):
    """Small ResNet: stem 16, BasicBlock x (2, 2, 2) at 32-64-128, 0.69M."""
    return ResNet(BasicBlock, (2, 2, 2), num_classes, widths=(32, 64, 128),
                  act=act, norm=norm, stem_width=16, stem=stem)


@register_model
def resnet_s3(num_classes=10, act="relu", norm="bn", stem="cifar"):
    """Small ResNet: stem 16, BasicBlock x (3, 3, 3) at 32-64-128, 1.08M."""
    return ResNet(BasicBlock, (3, 3, 3), num_classes, widths=(32, 64, 128),
                  act=act, norm=norm, stem_width=16, stem=stem)

"""ResNeXt (Xie et al. 2017, "Aggregated Residual Transformations for Deep
Neural Networks").

ResNeXt-29 for CIFAR: a 64-channel 3x3 stem, three stages of three
bottleneck blocks (strides 1, 2, 2). A block is 1x1 reduce -> grouped 3x3
(``cardinality`` groups) -> 1x1 expand (x2), plus a residual connection.
``width`` is the grouped conv's width in the first stage (cardinality x
bottleneck width, so 32x4d has width 128); it doubles in every stage.
Sizes (10 classes): 2x32d 2.30M, 2x64d 9.13M, 32x4d 4.77M, 8x64d 89.6M.

ResNeXt-50 has four stages of (3, 4, 6, 3) blocks of the same kind (strides
1, 2, 2, 2), so its outputs are 2 x width per stage: the 32x4d net is the
paper's ResNeXt-50 (256-512-1024-2048 channels) on the CIFAR stem. The three
widths of the kuangliu-style comparison (course report D): 2x40d 17.30M,
8x14d 20.87M, 32x4d 22.99M. Every size takes ``stem="imagenet"``.
"""
from __future__ import annotations

import torch.nn as nn

from cifar_lib.registry import register_model
from cifar_lib.models.layers import StagedNet, act_layer, build_stages, make_stem, norm_layer
from cifar_lib.models.resnet import _shortcut


class ResNeXtBlock(nn.Module):
    """1x1 -> grouped 3x3 -> 1x1 (x ``expansion``), with a residual."""

    expansion = 2

    def __init__(self, cin, width, cardinality, stride=1, act="relu",
                 norm="bn"):
        super().__init__()
        out = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), norm_layer(norm, width),
            act_layer(act),
            nn.Conv2d(width, width, 3, stride, 1, groups=cardinality,
                      bias=False),
            norm_layer(norm, width), act_layer(act),
            nn.Conv2d(width, out, 1, bias=False), norm_layer(norm, out))
        self.shortcut = _shortcut(cin, out, stride, norm)
        self.act = act_layer(act)

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


class ResNeXt(StagedNet):
    """Stem, stages of ResNeXt blocks (width doubling per stage), pool, fc."""

    def __init__(self, num_blocks=(3, 3, 3), cardinality=32, width=128,
                 num_classes=10, act="relu", norm="bn", stem="cifar"):
        super().__init__()
        if cardinality < 1 or width < 1 or width % cardinality:
            raise ValueError(
                f"cardinality {cardinality} must divide the bottleneck width "
                f"{width} (width = cardinality x bottleneck width, e.g. 32x4d "
                f"has width 128); choose a cardinality among the divisors "
                f"of {width}")
        def block(i, j, cin, stride):
            w = width * 2 ** i
            return (ResNeXtBlock(cin, w, cardinality, stride, act, norm),
                    w * ResNeXtBlock.expansion)
        layers, cout = build_stages(num_blocks, block, 64)
        self.finish(make_stem(stem, 64, act, norm), layers, cout, num_classes)


@register_model
def resnext29_2x32d(num_classes=10, cardinality=2, width=64, act="relu",
                    norm="bn", stem="cifar"):
    """ResNeXt-29 (2x32d): 2 groups of 32 channels, 2.30M parameters."""
    return ResNeXt((3, 3, 3), cardinality, width, num_classes, act, norm, stem)


@register_model
def resnext29_2x64d(num_classes=10, cardinality=2, width=128, act="relu",
                    norm="bn", stem="cifar"):
    """ResNeXt-29 (2x64d): 2 groups of 64 channels, 9.13M parameters."""
    return ResNeXt((3, 3, 3), cardinality, width, num_classes, act, norm, stem)


@register_model
def resnext29_32x4d(num_classes=10, cardinality=32, width=128, act="relu",
                    norm="bn", stem="cifar"):
    """ResNeXt-29 (32x4d): 32 groups of 4 channels, 4.77M parameters."""
    return ResNeXt((3, 3, 3), cardinality, width, num_classes, act, norm, stem)


@register_model
def resnext29_8x64d(num_classes=10, cardinality=8, width=512, act="relu",
                    norm="bn", stem="cifar"):
    """ResNeXt-29 (8x64d): 8 groups of 64 channels, 89.6M parameters."""
    return ResNeXt((3, 3, 3), cardinality, width, num_classes, act, norm, stem)


@register_model
def resnext50_2x40d(num_classes=10, cardinality=2, width=80, act="relu",
                    norm="bn", stem="cifar"):
    """ResNeXt-50 (2x40d): 2 groups of 40 channels, 17.30M parameters."""
    return ResNeXt((3, 4, 6, 3), cardinality, width, num_classes, act, norm, stem)


@register_model
def resnext50_8x14d(num_classes=10, cardinality=8, width=112, act="relu",
                    norm="bn", stem="cifar"):
    """ResNeXt-50 (8x14d): 8 groups of 14 channels, 20.87M parameters."""
    return ResNeXt((3, 4, 6, 3), cardinality, width, num_classes, act, norm, stem)


@register_model
def resnext50_32x4d(num_classes=10, cardinality=32, width=128, act="relu",
                    norm="bn", stem="cifar"):
    """ResNeXt-50 (32x4d): 32 groups of 4 channels, 22.99M parameters."""
    return ResNeXt((3, 4, 6, 3), cardinality, width, num_classes, act, norm, stem)

"""ShuffleNetV2 (Ma et al. 2018, "ShuffleNet V2: Practical Guidelines for
Efficient CNN Architecture Design").

A unit splits its channels in two, leaves one half untouched and passes the
other through 1x1 -> depthwise 3x3 -> 1x1, then concatenates the halves and
shuffles the channels (2 groups) so information crosses between them. A
down-sampling unit feeds the whole input to both branches (each with a
stride-2 depthwise conv) and so doubles the channels. CIFAR variant: 3x3
stride-1 stem of 24 channels with no max-pool, three stages of 4, 8, 4 units
(32 -> 16 -> 8 -> 4 pixels), a 1x1 conv to 1024, pool and a linear layer.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from cifar_lib.registry import register_model
from cifar_lib.models.layers import StagedNet, conv_norm_act, norm_layer

# stage widths for each width multiplier (the paper's Table 5)
WIDTHS = {0.5: (48, 96, 192), 1.0: (116, 232, 464), 1.5: (176, 352, 704),
          2.0: (244, 488, 976)}


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal groups."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(
        n, c, h, w)


def _dw(c, stride, norm):
    """Depthwise 3x3 conv -> norm (no activation)."""
    return [nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False),
            norm_layer(norm, c)]


class ShuffleUnit(nn.Module):
    """Split, transform one half, concatenate, shuffle (stride 1), or
    transform the whole input twice with stride 2 (channels double)."""

    def __init__(self, cin, cout, stride=1, act="relu", norm="bn"):
        super().__init__()
        half = cout // 2
        self.stride = stride
        if stride == 1 and cin != cout:
            raise ValueError(f"a stride-1 unit keeps its width, got {cin}->{cout}")
        bin_ = cin if stride > 1 else half
        self.branch = nn.Sequential(
            conv_norm_act(bin_, half, act, norm, kernel=1),
            *_dw(half, stride, norm),
            conv_norm_act(half, half, act, norm, kernel=1))
        self.proj = None
        if stride > 1:
            self.proj = nn.Sequential(
                *_dw(cin, stride, norm),
                conv_norm_act(cin, half, act, norm, kernel=1))

    def forward(self, x):
        if self.proj is None:
            keep, x = x.chunk(2, dim=1)
        else:
            keep = self.proj(x)
        return channel_shuffle(torch.cat([keep, self.branch(x)], 1))


class ShuffleNetV2(StagedNet):
    """Stem, three stages of shuffle units, 1x1 conv to 1024, pool, fc."""

    def __init__(self, scale=1.0, num_classes=10, repeats=(4, 8, 4),
                 act="relu", norm="bn"):
        super().__init__()
        if scale not in WIDTHS:
            raise ValueError(f"unknown width multiplier {scale}; choose one "
                             f"of {sorted(WIDTHS)}")
        units, cin = [], 24
        for c, n in zip(WIDTHS[scale], repeats):
            for j in range(n):
                units.append(ShuffleUnit(cin, c, 2 if j == 0 else 1, act,
                                         norm))
                cin = c
        head = nn.Sequential(conv_norm_act(cin, 1024, act, norm, kernel=1),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.finish(conv_norm_act(3, 24, act, norm), nn.Sequential(*units), 1024,
                    num_classes, head)


@register_model
def shufflenetv2(num_classes=10, act="relu", norm="bn"):
    """ShuffleNetV2 1x (stages 116-232-464), 1.26M parameters."""
    return ShuffleNetV2(1.0, num_classes, act=act, norm=norm)


@register_model
def shufflenetv2_0_5(num_classes=10, act="relu", norm="bn"):
    """ShuffleNetV2 0.5x (stages 48-96-192), 0.35M parameters."""
    return ShuffleNetV2(0.5, num_classes, act=act, norm=norm)

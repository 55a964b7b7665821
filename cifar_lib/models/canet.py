"""CANet: a residual net whose blocks mix spatial and channel attention.

This bundle's own design, after squeeze-and-excitation (Hu et al. 2018,
"Squeeze-and-Excitation Networks") and CBAM (Woo et al. 2018, "CBAM:
Convolutional Block Attention Module"). A CA block maps x (cin channels) to
cout channels with stride s::

    t   = act(norm(conv3x3_s(x)))          shared transform
    y_s = norm(conv3x3(t)) * S(t)          spatial path,  S(t): N x 1 x H x W
    y_c = norm(conv3x3(t)) * C(t)          channel path,  C(t): N x C
    out = act(y_s + y_c + shortcut(x))     residual path (identity or 1x1)

Both attention weights come from the shared transform t: the spatial gate S
is a 7x7 conv over the channel-wise mean and max of t, the channel gate C is
squeeze-excitation (global pool -> 1x1 -> act -> 1x1), each ending in a
sigmoid. So one path learns *where* to look and the other *what* to look at,
and the residual path keeps the block easy to optimise.

The net: a 3x3 stride-1 stem of w channels, three stages of (3, 2, 3) CA
blocks at w-2w-4w (strides 1, 2, 2), pool and a linear layer; three blocks
at full resolution give the spatial gates fine maps to show, and the depths
set the sizes (10 classes): tiny w=16 (0.40M), light w=32 (1.57M), base
w=64 (6.27M, also ``canet``), pro w=128 (25.06M).

Every gate keeps its last map, detached (``SpatialAttention.last_spatial``
N x 1 x H x W, ``ChannelAttention.last_channel`` N x C), and
``CANet.attention_maps()`` lists them per block for plotting.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from cifar_lib.registry import register_model
from cifar_lib.models.layers import StagedNet, act_layer, build_stages, conv_norm_act, norm_layer
from cifar_lib.models.resnet import _shortcut


class SpatialAttention(nn.Module):
    """Where: sigmoid(conv7x7([mean_c(t), max_c(t)])), N x 1 x H x W."""

    def __init__(self, kernel: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2)
        self.last_spatial: torch.Tensor | None = None

    def forward(self, t):
        pooled = torch.cat([t.mean(1, keepdim=True),
                            t.amax(1, keepdim=True)], 1)
        w = torch.sigmoid(self.conv(pooled))
        self.last_spatial = w.detach()
        return w


class ChannelAttention(nn.Module):
    """What: squeeze-excitation, sigmoid(fc(act(fc(pool(t))))), N x C."""

    def __init__(self, channels: int, reduction: int = 8, act: str = "relu"):
        super().__init__()
        hidden = max(4, channels // reduction)
        self.fc = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1),
            act_layer(act), nn.Conv2d(hidden, channels, 1))
        self.last_channel: torch.Tensor | None = None

    def forward(self, t):
        w = torch.sigmoid(self.fc(t))  # N x C x 1 x 1
        self.last_channel = w.detach().flatten(1)
        return w


class CABlock(nn.Module):
    """Shared transform, spatial and channel attention paths, residual."""

    def __init__(self, cin, cout, stride=1, act="relu", norm="bn",
                 reduction=8):
        super().__init__()
        self.transform = conv_norm_act(cin, cout, act, norm, stride=stride)
        self.spatial_path = nn.Sequential(
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), norm_layer(norm, cout))
        self.channel_path = nn.Sequential(
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), norm_layer(norm, cout))
        self.spatial = SpatialAttention()
        self.channel = ChannelAttention(cout, reduction, act)
        self.shortcut = _shortcut(cin, cout, stride, norm)
        self.act = act_layer(act)

    def forward(self, x):
        t = self.transform(x)
        y_s = self.spatial_path(t) * self.spatial(t)
        y_c = self.channel_path(t) * self.channel(t)
        return self.act(y_s + y_c + self.shortcut(x))


class CANet(StagedNet):
    """Stem, three stages of CA blocks (w, 2w, 4w), pool, fc."""

    def __init__(self, width=64, num_blocks=(3, 2, 3), num_classes=10,
                 act="relu", norm="bn", reduction=8):
        super().__init__()
        def block(i, j, cin, stride):
            w = width * 2 ** i
            return CABlock(cin, w, stride, act, norm, reduction), w
        layers, cout = build_stages(num_blocks, block, width)
        self.finish(conv_norm_act(3, width, act, norm), layers, cout, num_classes)

    def attention_maps(self) -> list[dict]:
        """Per block, the last forward's maps: {"block", "spatial", "channel"}.

        ``spatial`` is N x 1 x H x W and ``channel`` N x C (float, on the
        model's device); both are None before the first forward.
        """
        maps = []
        for name, m in self.named_modules():
            if isinstance(m, CABlock):
                s, c = m.spatial.last_spatial, m.channel.last_channel
                maps.append({"block": name,
                             "spatial": None if s is None else s.float(),
                             "channel": None if c is None else c.float()})
        return maps


@register_model
def canet_tiny(num_classes=10, act="relu", norm="bn", reduction=8):
    """CANet at width 16 (16-32-64), 0.40M parameters."""
    return CANet(16, (3, 2, 3), num_classes, act, norm, reduction)


@register_model
def canet_light(num_classes=10, act="relu", norm="bn", reduction=8):
    """CANet at width 32 (32-64-128), 1.57M parameters."""
    return CANet(32, (3, 2, 3), num_classes, act, norm, reduction)


@register_model(name="canet")
@register_model
def canet_base(num_classes=10, act="relu", norm="bn", reduction=8):
    """CANet at width 64 (64-128-256), 6.27M parameters; also ``canet``."""
    return CANet(64, (3, 2, 3), num_classes, act, norm, reduction)


@register_model
def canet_pro(num_classes=10, act="relu", norm="bn", reduction=8):
    """CANet at width 128 (128-256-512), 25.06M parameters."""
    return CANet(128, (3, 2, 3), num_classes, act, norm, reduction)

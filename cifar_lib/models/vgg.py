"""VGG (Simonyan & Zisserman 2015) with CIFAR heads.

VGG-A is the course's network: configuration A's 8 convs, 5 max-pools and a
512-512-K classifier with Xavier-normal init (9,750,922 parameters);
``vgg_a_bn`` adds BatchNorm after every conv, before the ReLU (Santurkar et
al. 2018 study exactly this pair). VGG-11/16 follow pytorch-cifar's heads
(one linear layer after the features).
"""
from __future__ import annotations

import torch.nn as nn

from cifar_lib.registry import register_model
from cifar_lib.models.layers import act_layer

CONFIGS = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
          512, 512, 512, "M", 512, 512, 512, "M"),
}


class VGG(nn.Module):
    """Convs from a configuration ("M" = max-pool), then an FC classifier.

    ``width`` scales every channel count (and the hidden classifier layers),
    for tiny test-sized networks.
    """

    def __init__(self, config="A", num_classes=10, bn=False, hidden=(512, 512),
                 act="relu", width: float = 1.0, init: str = "xavier"):
        super().__init__()
        layers, cin = [], 3
        for v in CONFIGS[config]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            c = max(1, round(v * width))
            layers += [nn.Conv2d(cin, c, 3, padding=1),
                       *([nn.BatchNorm2d(c)] if bn else []), act_layer(act)]
            cin = c
        self.features = nn.Sequential(*layers)
        fc, w = [nn.Flatten()], cin
        for h in hidden:
            h = max(1, round(h * width))
            fc += [nn.Linear(w, h), act_layer(act)]
            w = h
        fc.append(nn.Linear(w, num_classes))
        self.classifier = nn.Sequential(*fc)
        if init == "xavier":
            self._xavier()
        elif init != "default":
            raise ValueError(f"unknown init {init!r}; choose xavier or default")

    def _xavier(self):
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model
def vgg_a(num_classes=10, act="relu", width=1.0):
    """The course's VGG-A without BatchNorm (9.75M parameters)."""
    return VGG("A", num_classes, bn=False, act=act, width=width)


@register_model
def vgg_a_bn(num_classes=10, act="relu", width=1.0):
    """VGG-A with BatchNorm after every conv, before the ReLU."""
    return VGG("A", num_classes, bn=True, act=act, width=width)


@register_model
def vgg11(num_classes=10, act="relu", width=1.0):
    """VGG-11 (configuration A) with a single linear head, no BN."""
    return VGG("A", num_classes, bn=False, hidden=(), act=act, width=width)


@register_model
def vgg11_bn(num_classes=10, act="relu", width=1.0):
    """VGG-11 with BatchNorm and a single linear head."""
    return VGG("A", num_classes, bn=True, hidden=(), act=act, width=width)


@register_model
def vgg16(num_classes=10, act="relu", width=1.0):
    """VGG-16 (configuration D) with a single linear head, no BN."""
    return VGG("D", num_classes, bn=False, hidden=(), act=act, width=width)


@register_model
def vgg16_bn(num_classes=10, act="relu", width=1.0):
    """VGG-16 with BatchNorm and a single linear head (14.7M parameters)."""
    return VGG("D", num_classes, bn=True, hidden=(), act=act, width=width)

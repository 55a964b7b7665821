"""Simple CNNs: LeNet-5 (LeCun et al. 1998) and the three-block BN CNN.

The three-block CNN is conv-BN-act-maxpool three times, then a fully
connected head; its filters, head, activation, BN and dropout are options.
"""
from __future__ import annotations

import torch.nn as nn

from cifar_lib.registry import register_model
from cifar_lib.models.layers import act_layer


class LeNet(nn.Module):
    """LeNet-5 on 32x32 RGB: two 5x5 convs with pooling, FC 400-120-84-K."""

    def __init__(self, num_classes: int = 10, act: str = "relu"):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5), act_layer(act), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), act_layer(act), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(400, 120), act_layer(act),
            nn.Linear(120, 84), act_layer(act), nn.Linear(84, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class SimpleCNN(nn.Module):
    """Three blocks of conv3x3 -> BN -> act -> maxpool, then an FC head."""

    def __init__(self, num_classes: int = 10, filters=(32, 64, 128), head=(),
                 act: str = "relu", bn: bool = True, dropout: float = 0.0):
        super().__init__()
        if len(filters) != 3:
            raise ValueError(f"filters must list 3 widths, got {filters}")
        layers, cin = [], 3
        for c in filters:
            layers += [nn.Conv2d(cin, c, 3, padding=1),
                       nn.BatchNorm2d(c) if bn else nn.Identity(),
                       act_layer(act), nn.MaxPool2d(2)]
            cin = c
        self.features = nn.Sequential(*layers)
        fc, width = [nn.Flatten()], cin * 4 * 4
        for h in head:
            fc += [nn.Linear(width, h), act_layer(act)]
            if dropout:
                fc.append(nn.Dropout(dropout))
            width = h
        if dropout and not head:
            fc.append(nn.Dropout(dropout))
        fc.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*fc)

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model
def lenet(num_classes=10, act="relu"):
    """LeNet-5, about 62k parameters."""
    return LeNet(num_classes, act)


@register_model
def cnn3(num_classes=10, filters=(32, 64, 128), head=(), act="relu",
         bn=True, dropout=0.0):
    """Three-block BN CNN 32-64-128 with a linear head, about 114k parameters."""
    return SimpleCNN(num_classes, filters, head, act, bn, dropout)


@register_model
def cnn3_64(num_classes=10, filters=(64, 128, 256), head=(512, 256),
            act="relu", bn=True, dropout=0.0):
    """Three-block CNN 64-128-256 with an FC head 512-256-K."""
    return SimpleCNN(num_classes, filters, head, act, bn, dropout)


@register_model
def cnn3_128(num_classes=10, filters=(128, 256, 512), head=(512, 256),
             act="relu", bn=True, dropout=0.0):
    """Three-block CNN 128-256-512 with an FC head 512-256-K."""
    return SimpleCNN(num_classes, filters, head, act, bn, dropout)

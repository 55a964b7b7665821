"""Deep Layer Aggregation (Yu et al. 2018, "Deep Layer Aggregation").

Hierarchical aggregation: a tree of level L runs a chain of nodes (a tree of
level L - 1, or a BasicBlock at level 1, then BasicBlocks) and a "root"
(1x1 conv -> norm -> act) fuses the concatenation of every node's output, so
shallow and deep features of a stage are merged at each level. From level 2
on, the tree's own input (through a strided BasicBlock) also joins the root,
as the paper's level roots do. CIFAR variant
after pytorch-cifar's DLA: a 16-channel 3x3 stem, two plain conv layers
(16, 32), trees of levels 1, 2, 2, 1 at 64-128-256-512 channels (strides 1,
2, 2, 2), pool and a linear layer: 16.29M parameters for 10 classes.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from cifar_lib.registry import register_model
from cifar_lib.models.layers import conv_norm_act
from cifar_lib.models.resnet import BasicBlock


class Tree(nn.Module):
    """Aggregation tree of ``level`` >= 1 with a 1x1 root over its nodes."""

    def __init__(self, cin, cout, level=1, stride=1, act="relu", norm="bn"):
        super().__init__()
        if level == 1:
            nodes = [BasicBlock(cin, cout, stride, act, norm)]
        else:
            nodes = [Tree(cin, cout, level - 1, stride, act, norm),
                     BasicBlock(cout, cout, 1, act, norm)]
        nodes.append(BasicBlock(cout, cout, 1, act, norm))
        self.nodes = nn.ModuleList(nodes)
        # from level 2 the (projected) input of the tree joins the root too
        self.skip = (BasicBlock(cin, cout, stride, act, norm) if level > 1
                     else None)
        n_in = len(nodes) + (self.skip is not None)
        self.root = conv_norm_act(n_in * cout, cout, act, norm, kernel=1)

    def forward(self, x):
        outs = [self.skip(x)] if self.skip is not None else []
        for node in self.nodes:
            x = node(x)
            outs.append(x)
        return self.root(torch.cat(outs, 1))


class DLA(nn.Module):
    """Stem, two conv layers, four aggregation trees, pool, fc."""

    def __init__(self, num_classes=10, widths=(64, 128, 256, 512),
                 levels=(1, 2, 2, 1), act="relu", norm="bn"):
        super().__init__()
        self.stem = nn.Sequential(conv_norm_act(3, 16, act, norm),
                                  conv_norm_act(16, 16, act, norm),
                                  conv_norm_act(16, 32, act, norm))
        trees, cin = [], 32
        for i, (w, level) in enumerate(zip(widths, levels)):
            trees.append(Tree(cin, w, level, 2 if i else 1, act, norm))
            cin = w
        self.layers = nn.Sequential(*trees)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.layers(self.stem(x))))


@register_model
def dla(num_classes=10, act="relu", norm="bn"):
    """DLA for CIFAR (trees of levels 1-2-2-1), 16.29M parameters."""
    return DLA(num_classes, act=act, norm=norm)

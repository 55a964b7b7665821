"""FastNet: a short conv net for quick ablations, after airbench94.

Ideas from Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU" (2024)
and hlb-cifar10: a frozen 2x2 patch-whitening stem initialised from the
training images, three conv groups (conv, max-pool, BN, act, conv, BN, act)
with identity-initialised convs, BN with frozen scale and fast running
statistics, and a scaled linear head. About 2M parameters at width 1.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from cifar_lib.registry import register_model
from cifar_lib.models.layers import act_layer


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training step does not count its batches: with a
    fixed ``momentum`` the count (``num_batches_tracked``) is read by
    nothing, and its ``+= 1`` is one operation per layer and step (six of
    FastNet's). The normalisation is BatchNorm2d's; with ``momentum=None``
    (a cumulative average, as ``torch.optim.swa_utils.update_bn`` sets)
    and in eval mode it is BatchNorm2d's forward itself, count included."""

    def forward(self, x):
        if not self.training or self.momentum is None:
            return super().forward(x)
        self._check_input_dim(x)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight,
                            self.bias, True, self.momentum, self.eps)


def _bn(c):
    bn = BatchNorm(c, momentum=0.4, eps=1e-12)
    bn.weight.requires_grad_(False)
    return bn


# How the stem's whitening filters are computed: "centred" (this library's
# first version; the stem bias keeps PyTorch's init) or "uncentred"
# (airbench94: second moment of the patches, stem bias zeroed).
WHITENINGS = ("centred", "uncentred")


class ConvGroup(nn.Sequential):
    """conv -> max-pool -> BN -> act -> conv -> BN -> act."""

    def __init__(self, cin, cout, act):
        convs = [nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                 nn.Conv2d(cout, cout, 3, padding=1, bias=False)]
        for conv in convs:  # identity on the first channels speeds early training
            k = min(conv.in_channels, conv.out_channels)
            nn.init.dirac_(conv.weight[:k])
        super().__init__(convs[0], nn.MaxPool2d(2), _bn(cout), act_layer(act),
                         convs[1], _bn(cout), act_layer(act))


class FastNet(nn.Module):
    """Whitening stem, three conv groups, max-pool, scaled linear head."""

    def __init__(self, num_classes=10, widths=(64, 256, 256), width=1.0,
                 act="gelu", dropout=0.0, scale=1 / 9, whiten="centred"):
        super().__init__()
        if whiten not in WHITENINGS:
            raise ValueError(f"unknown whitening {whiten!r}; choose one of "
                             f"{', '.join(WHITENINGS)}")
        widths = [max(4, round(w * width)) for w in widths]
        self.whiten = whiten
        self.stem = nn.Conv2d(3, 24, 2, bias=True)  # 12 whitening filters and their negatives
        if whiten == "uncentred":
            nn.init.zeros_(self.stem.bias)
        self.stem_act = act_layer(act)
        self.groups = nn.Sequential(ConvGroup(24, widths[0], act),
                                    ConvGroup(widths[0], widths[1], act),
                                    ConvGroup(widths[1], widths[2], act))
        self.pool = nn.Sequential(nn.MaxPool2d(3), nn.Flatten(), nn.Dropout(dropout))
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.scale = scale

    @property
    def whiten_bias(self) -> nn.Parameter:
        """The whitening stem's bias (trained, then frozen by the engine's
        ``whiten_bias_epochs``)."""
        return self.stem.bias

    @torch.no_grad()
    def data_init(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the stem to whiten 2x2 patches of ``x`` (normalised images), then freeze it.

        ``centred``: eigenvectors of the patches' covariance about their
        mean; ``uncentred`` (airbench94): of their second moment, largest
        eigenvalue first."""
        patches = x.float().unfold(2, 2, 1).unfold(3, 2, 1)  # N C H W 2 2
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
        if self.whiten == "centred":
            patches = patches - patches.mean(0)
        cov = patches.T @ patches / len(patches)
        evals, evecs = torch.linalg.eigh(cov.double())
        if self.whiten == "uncentred":
            evals, evecs = evals.flip(0), evecs.flip(1)
        filters = (evecs.T / (evals + eps).sqrt()[:, None]).float().view(12, 3, 2, 2)
        self.stem.weight.copy_(torch.cat([filters, -filters]).to(self.stem.weight))
        self.stem.weight.requires_grad_(False)

    def forward(self, x):
        x = self.groups(self.stem_act(self.stem(x)))
        return self.head(self.pool(x)) * self.scale


@register_model
def fastnet(num_classes=10, widths=(64, 256, 256), width=1.0, act="gelu", dropout=0.0,
            whiten="centred"):
    """FastNet at widths 64-256-256 (about 2M parameters); ``whiten`` as in
    :data:`WHITENINGS`."""
    return FastNet(num_classes, widths, width, act, dropout, whiten=whiten)

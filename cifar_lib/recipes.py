"""Named training recipes built from :class:`~cifar_lib.engine.TrainConfig`.

``airbench_recipe`` is airbench94's recipe (Jordan, "94% on CIFAR-10 in
3.29 seconds on a single GPU", 2024; github.com/KellerJordan/airbench,
package version 0.1.8) written with this library's options, for FastNet,
which is airbench94's network. Every ingredient is a TrainConfig field (or
an augmentation or model option) of its own, tested in tests/test_recipe.py.
"""
from __future__ import annotations

import math

from cifar_lib.engine import TrainConfig

# airbench94's hyper-parameters, as TrainConfig fields.
AIRBENCH94 = dict(
    model="fastnet",
    batch_size=1024,
    # Nesterov SGD in airbench's decoupled units (engine.optim_args): lr per
    # 1024 images, normalised by the momentum's gain 1 + 1 / (1 - momentum);
    # weight decay per 1024 images, independent of the lr.
    optimizer="sgd", nesterov=True, decoupled=True,
    optim_kw={"fused": True},     # one fused update per parameter group
    lr=11.5,
    momentum=0.85,
    weight_decay=0.0153,
    norm_bias_decay=True,         # decay on every trainable tensor
    norm_bias_lr=64.0,            # BatchNorm biases learn 64x faster (same decay step)
    label_smoothing=0.2,
    # Per step: 0.2 -> 1.0 over the first 23% of the steps, then down to 0.07.
    scheduler="triangle", sched_kw={"start": 0.2, "peak": 0.23, "end": 0.07},
    warmup_epochs=0.0,
    # Lookahead: every 5 steps the average moves toward the weights with
    # rho = 0.95**5 * (t / T)**3 and the weights jump back to it; the final
    # weights are the average (BatchNorm statistics included).
    lookahead=5, lookahead_decay=0.95, lookahead_pow=3.0,
    whiten_bias_epochs=3,         # whitening stem bias trains 3 epochs, then frozen
    # Translate by up to 2 px (reflect padding); each image flipped every
    # other epoch (random on epoch 0). A whole epoch augmented at once.
    augment={"crop": 2, "flip": True, "alt_flip": True},
    epoch_aug=True,
    # Test-time views: the image, its mirror and 1-pixel shifts (6 views).
    tta_flip=True, tta_translate=1,
    # No validation or snapshot while training; the last weights are kept.
    val_every=0, keep="last",
    # CUDA: network in fp16 with BatchNorm in fp32, fp16 inputs, NHWC.
    fp16=True, channels_last=True,
)


def airbench_recipe(width: float = 1.0, epochs: float = 9.9, seed: int = 0,
                    **over) -> TrainConfig:
    """airbench94's recipe for FastNet at ``width`` for ``epochs`` (may be
    fractional: 9.9 trains 9 epochs and 0.9 of a tenth); ``over`` replaces
    any field (e.g. ``batch_size=256``: lr and decay are per image, so the
    steps keep their size).

    FastNet's whitening stem is computed as airbench's (uncentred patch
    covariance, bias zeroed)."""
    if not epochs > 0:
        raise ValueError(f"epochs must be positive, got {epochs!r}")
    whole = math.ceil(epochs)
    cfg = dict(AIRBENCH94, model_kw={"width": width, "whiten": "uncentred"},
               epochs=whole, last_epoch_frac=round(epochs - (whole - 1), 6), seed=seed)
    if cfg["whiten_bias_epochs"] > whole:
        cfg["whiten_bias_epochs"] = whole
    cfg.update(over)
    return TrainConfig(**cfg)

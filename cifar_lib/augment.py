"""Batch-level augmentations that run on the device, with no per-image Python.

Every function takes a whole float batch N x C x H x W and returns a new one.
Per-image randomness comes from a ``torch.Generator`` on the batch's device,
per-batch scalars (mixing ratios, cutmix boxes) from a NumPy ``Generator``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    """Which augmentations a training loader applies, and how strongly."""

    crop: int = 4         # padding in pixels of the random crop (0: off): a random
    #                       translation by up to `crop` pixels, reflect-padded
    #                       (airbench's "translate")
    flip: bool = True     # random horizontal flip with probability 1/2
    erase: float = 0.0    # probability of erasing a square per image (cutout)
    erase_size: int = 12  # side of the erased square in pixels
    mixup: float = 0.0    # alpha of Beta(alpha, alpha) for mixup (0: off)
    cutmix: float = 0.0   # alpha of Beta(alpha, alpha) for cutmix (0: off)
    rotate: float = 0.0   # largest rotation in degrees, uniform in +-rotate (0: off)
    alt_flip: bool = False  # with flip: each image flipped every other epoch (random
    #                         on epoch 0, then alternating; airbench's "altflip")

    def __post_init__(self):
        ranges = [("crop", int, 0, 31), ("erase", float, 0, 1),
                  ("erase_size", int, 1, 32), ("mixup", float, 0, math.inf),
                  ("cutmix", float, 0, math.inf), ("rotate", float, 0, 180)]
        for name, kind, lo, hi in ranges:
            v = getattr(self, name)
            ok = isinstance(v, (int, float) if kind is float else int)
            if isinstance(v, bool) or not ok or not lo <= v <= hi:
                raise ValueError(f"bad augmentation value {name}={v!r}; expected "
                                 f"{'an integer' if kind is int else 'a number'} "
                                 f"in [{lo}, {hi}]")
        if not isinstance(self.alt_flip, bool) or self.alt_flip and not self.flip:
            raise ValueError(f"bad augmentation value alt_flip={self.alt_flip!r}; "
                             "expected True or False, and True only with flip=True")

    @property
    def mixes(self) -> bool:
        """True when labels become soft (mixup or cutmix)."""
        return self.mixup > 0 or self.cutmix > 0


PRESETS = {
    "none": Augment(crop=0, flip=False),
    "flip": Augment(crop=0),
    "crop_flip": Augment(),
    "crop_flip_erase": Augment(erase=0.5),
    "crop_flip_mixup": Augment(mixup=1.0),
    "crop_flip_cutmix": Augment(cutmix=1.0),
    "crop_flip_rotate": Augment(rotate=15.0),  # course report E's small rotations
    "translate_altflip": Augment(crop=2, alt_flip=True),  # airbench94's
}
# Fields left out of a config's augmentation dict while at their default, so
# configs (and run names) from before the field existed stay the same.
_OMITTED_AT_DEFAULT = {"rotate": 0.0, "alt_flip": False}


def resolve_augment(spec) -> Augment:
    """An :class:`Augment` from a preset name, a dict of fields, or itself."""
    if isinstance(spec, Augment):
        return spec
    if spec is None:
        return PRESETS["none"]
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ValueError(f"unknown augmentation preset {spec!r}; choose one "
                             f"of {', '.join(PRESETS)} or pass a dict of "
                             f"{', '.join(f.name for f in fields(Augment))}")
        return PRESETS[spec]
    if isinstance(spec, dict):
        names = {f.name for f in fields(Augment)}
        bad = set(spec) - names
        if bad:
            raise ValueError(f"unknown augmentation option(s) {sorted(bad)}; "
                             f"valid: {', '.join(sorted(names))}")
        return Augment(**spec)
    raise TypeError(f"augmentation must be a preset name, dict or Augment, "
                    f"not {type(spec).__name__}")


def describe(spec) -> str:
    """A few words for an augmentation spec, as the report's rows name
    them: "translate 2 px + alternating flip", "crop 4 px + random flip +
    cutmix", "none"."""
    a = resolve_augment(spec)
    parts = ([f"{'translate' if a.crop < 4 else 'crop'} {a.crop} px"] if a.crop else []) + \
        (["alternating flip" if a.alt_flip else "random flip"] if a.flip else []) + \
        [w for on, w in ((a.erase, "erasing"), (a.mixup, "mixup"), (a.cutmix, "cutmix"),
                         (a.rotate, f"rotation ({a.rotate:g} degrees)")) if on]
    return " + ".join(parts) or "none"


def augment_dict(spec) -> dict:
    """The plain-dict form of an augmentation spec (stored in configs).

    ``rotate`` and ``alt_flip`` appear only when on, so configs without
    them keep the dict (and the run name) they had before they existed.
    """
    d = asdict(resolve_augment(spec))
    return {k: v for k, v in d.items()
            if not (k in _OMITTED_AT_DEFAULT and v == _OMITTED_AT_DEFAULT[k])}


def random_crop(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """Random crop of each image after reflect-padding by ``pad`` pixels."""
    if pad <= 0:
        return x
    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g, device=x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)
    cols = dx[:, None] + torch.arange(w, device=x.device)
    out = xp.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * pad))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def random_flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability 1/2."""
    flip = torch.rand(len(x), generator=g, device=x.device) < 0.5
    return flip_where(x, flip)


def flip_where(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Flip image ``i`` left-right where ``flip[i]`` is true."""
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def alt_flip_mask(base: torch.Tensor, epoch: int) -> torch.Tensor:
    """Which images are flipped in ``epoch`` under the alternating flip:
    ``base`` (drawn once, 1/2 each) on even epochs, its negation on odd
    ones, so each image is seen mirrored every other epoch."""
    return ~base if epoch % 2 else base


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate image ``i`` by ``degrees[i]`` (counter-clockwise) about its centre.

    One ``affine_grid``/``grid_sample`` call for the whole batch, bilinear;
    pixels from outside the image are zero (the dataset mean once the batch
    is normalised, as for erasing).
    """
    a = torch.deg2rad(degrees.to(x.dtype))
    cos, sin, zero = a.cos(), a.sin(), torch.zeros_like(a)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1),   # output -> input
                         torch.stack([sin, cos, zero], 1)], 1)   # coordinates
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def random_rotate(x: torch.Tensor, max_degrees: float,
                  g: torch.Generator) -> torch.Tensor:
    """Rotate each image by an angle drawn uniformly from +-``max_degrees``."""
    if max_degrees <= 0:
        return x
    u = torch.rand(len(x), generator=g, device=x.device)
    return rotate(x, (2 * u - 1) * max_degrees)


def random_erase(x: torch.Tensor, p: float, size: int,
                 g: torch.Generator) -> torch.Tensor:
    """Cutout: with probability ``p`` zero a ``size``-pixel square per image.

    Zero is the dataset mean after normalisation. Squares are centred
    anywhere in the image and clipped at its border.
    """
    if p <= 0:
        return x
    n, _, h, w = x.shape
    dev = x.device
    on = torch.rand(n, generator=g, device=dev) < p
    cy = torch.randint(0, h, (n,), generator=g, device=dev) - size // 2
    cx = torch.randint(0, w, (n,), generator=g, device=dev) - size // 2
    ar_h, ar_w = torch.arange(h, device=dev), torch.arange(w, device=dev)
    rows = (ar_h >= cy[:, None]) & (ar_h < cy[:, None] + size)
    cols = (ar_w >= cx[:, None]) & (ar_w < cx[:, None] + size)
    mask = rows[:, :, None] & cols[:, None, :] & on[:, None, None]
    return x.masked_fill(mask[:, None], 0.0)


def mixup(x, t, alpha: float, g: torch.Generator, rng: np.random.Generator):
    """Mix each image and soft target with a partner: lam*a + (1-lam)*b."""
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(len(x), generator=g, device=x.device)
    return lam * x + (1 - lam) * x[perm], lam * t + (1 - lam) * t[perm]


def cutmix(x, t, alpha: float, g: torch.Generator, rng: np.random.Generator):
    """Paste a box from a partner image; targets mix by the pasted area."""
    n, _, h, w = x.shape
    lam = float(rng.beta(alpha, alpha))
    r = np.sqrt(1 - lam)
    bh, bw = int(h * r), int(w * r)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - bh // 2, 0), min(cy - bh // 2 + bh, h)
    x0, x1 = max(cx - bw // 2, 0), min(cx - bw // 2 + bw, w)
    perm = torch.randperm(n, generator=g, device=x.device)
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    return x, lam * t + (1 - lam) * t[perm]


def augment_images(aug: Augment, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The per-image augmentations: crop, flip (not the alternating one),
    rotate, erase; on a batch or on a whole epoch at once."""
    x = random_crop(x, aug.crop, g)
    if aug.flip and not aug.alt_flip:
        x = random_flip(x, g)
    x = random_rotate(x, aug.rotate, g)  # draws nothing when off
    return random_erase(x, aug.erase, aug.erase_size, g)


def mix_batch(aug: Augment, x, y, num_classes: int, g: torch.Generator,
              rng: np.random.Generator):
    """Mixup or cutmix (one of them per batch) when ``aug`` asks, else the
    batch unchanged."""
    if not aug.mixes:
        return x, y
    t = F.one_hot(y, num_classes).float() if y.dtype == torch.long else y
    use_cutmix = aug.cutmix > 0 and (aug.mixup <= 0 or rng.random() < 0.5)
    if use_cutmix:
        return cutmix(x, t, aug.cutmix, g, rng)
    return mixup(x, t, aug.mixup, g, rng)


def apply_augment(aug: Augment, x, y, num_classes: int,
                  g: torch.Generator, rng: np.random.Generator):
    """Crop, flip, rotate, erase, then mixup or cutmix (one of them per batch).

    The alternating flip is the loader's (it knows each image and the
    epoch): here ``alt_flip`` turns the random flip off."""
    x = augment_images(aug, x, g)
    return mix_batch(aug, x, y, num_classes, g, rng)

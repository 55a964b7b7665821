"""Invariants of the batch augmentations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cifar_lib.augment import (PRESETS, Augment, apply_augment, augment_dict,
                               cutmix, mixup, random_crop, random_erase,
                               random_flip, random_rotate, resolve_augment, rotate,
                               describe)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def batch(n=64, seed=0):
    """Random float images, all pixels distinct and non-zero."""
    return 1 + torch.rand(n, 3, 32, 32, generator=gen(seed))


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_keep_shape_and_dtype(name):
    x, y = batch(32), torch.arange(32) % 10
    out, t = apply_augment(PRESETS[name], x.clone(), y, 10, gen(), np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    if PRESETS[name].mixes:
        assert t.shape == (32, 10) and t.dtype == torch.float32
        assert torch.allclose(t.sum(1), torch.ones(32))
    else:
        assert torch.equal(t, y)
    if name == "none":
        assert torch.equal(out, x)
    else:
        assert not torch.equal(out, x)


def test_crop_with_no_padding_is_identity():
    x = batch()
    assert torch.equal(random_crop(x, 0, gen()), x)


def test_crop_is_a_window_of_the_padded_image():
    x, pad = batch(50), 4
    out = random_crop(x, pad, gen(1))
    xp = F.pad(x, (pad,) * 4, mode="reflect")
    offsets = set()
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                if torch.equal(out[i], xp[i, :, dy:dy + 32, dx:dx + 32])]
        assert len(hits) == 1, f"image {i} is not a translated window"
        offsets.add(hits[0])
    assert len(offsets) > 20  # offsets drawn per image, not per batch
    assert {dy for dy, _ in offsets} == set(range(2 * pad + 1))


def test_flip_per_image_and_twice_is_identity():
    x = batch(200)
    once = random_flip(x, gen(2))
    flipped = torch.tensor([torch.equal(o, xi.flip(2)) for o, xi in zip(once, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(once, x)])
    assert (flipped ^ kept).all()
    assert 60 < flipped.sum() < 140  # about half
    assert torch.equal(random_flip(once, gen(2)), x)  # same draws undo it


def test_erase_zeros_one_square():
    x, size = batch(300), 12
    out = random_erase(x, 1.0, size, gen(3))
    zero = out == 0
    assert (zero == zero[:, :1]).all(), "the same square in every channel"
    assert torch.equal(out[~zero], x[~zero]), "other pixels untouched"
    heights, widths = [], []
    for z in zero[:, 0]:
        rows, cols = z.any(1), z.any(0)
        assert rows.any(), "p=1 erases every image"
        assert torch.equal(z, rows[:, None] & cols[None, :]), "a rectangle"
        r, c = rows.nonzero().flatten(), cols.nonzero().flatten()
        assert r[-1] - r[0] + 1 == len(r) and c[-1] - c[0] + 1 == len(c)
        heights.append(len(r))
        widths.append(len(c))
        # clipped only at the border of the image
        assert len(r) == size or r[0] == 0 or r[-1] == 31
        assert len(c) == size or c[0] == 0 or c[-1] == 31
    assert max(heights) == size and max(widths) == size
    assert sum(h == size and w == size for h, w in zip(heights, widths)) > 50


def test_erase_probability():
    x = batch(400)
    assert torch.equal(random_erase(x, 0.0, 12, gen()), x)
    out = random_erase(x, 0.5, 8, gen(4))
    erased = (out == 0).flatten(1).any(1).float().mean()
    assert 0.4 < erased < 0.6


def label_values(n=16):
    """Image i is the constant value i, its one-hot target is class i."""
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 32, 32)
    return x.clone(), F.one_hot(torch.arange(n), n).float()


@pytest.mark.parametrize("mix", [mixup, cutmix])
@pytest.mark.parametrize("seed", range(5))
def test_mixing_ratio_matches_the_pixels(mix, seed):
    x, t = label_values()
    out, soft = mix(x, t, 1.0, gen(seed), np.random.default_rng(seed))
    assert out.shape == x.shape and soft.shape == t.shape
    assert torch.allclose(soft.sum(1), torch.ones(len(t)))
    assert (soft >= 0).all()
    # the mean pixel of each image is the label-weighted mean of sources
    values = torch.arange(len(t), dtype=torch.float32)
    assert torch.allclose(out.mean((1, 2, 3)), soft @ values, atol=1e-4)
    if mix is cutmix:  # each pixel comes from one of the two images
        own = (out == x).float().mean((1, 2, 3))
        partner = soft.clone()
        partner[torch.arange(len(t)), torch.arange(len(t))] = 0
        has_partner = partner.sum(1) > 0
        assert has_partner.any()  # these seeds paste a non-empty box
        # the fraction of pasted pixels is the partner's share of the target
        assert torch.allclose(own[has_partner], 1 - partner.sum(1)[has_partner], atol=1e-6)
        # one box per batch: the pasted pixels are the same for every image
        changed = (out != x)[:, 0]
        some = changed.flatten(1).any(1)
        if some.sum() > 1:
            assert (changed[some] == changed[some][:1]).all()


def test_mix_soft_inputs_and_alternation():
    aug = Augment(crop=0, flip=False, mixup=1.0, cutmix=1.0)
    x, y = label_values(8)
    rng, g = np.random.default_rng(0), gen()
    kinds = set()
    for _ in range(20):
        out, soft = apply_augment(aug, x, y, 8, g, rng)  # soft targets in
        assert torch.allclose(soft.sum(1), torch.ones(8))
        # cutmix leaves pixels of exactly the source values, mixup blends them
        pure = torch.isin(out, torch.arange(8.0)).all()
        kinds.add("cutmix" if pure else "mixup")
    assert kinds == {"cutmix", "mixup"}


def test_resolve_augment():
    assert resolve_augment("crop_flip") == Augment()
    assert resolve_augment(None) == PRESETS["none"]
    a = Augment(erase=0.25)
    assert resolve_augment(a) is a
    assert resolve_augment({"crop": 2, "flip": False}) == Augment(crop=2, flip=False)
    assert resolve_augment(augment_dict("crop_flip_cutmix")) == PRESETS["crop_flip_cutmix"]
    assert augment_dict("crop_flip_mixup")["mixup"] == 1.0
    with pytest.raises(ValueError, match="unknown augmentation preset 'shear'.*crop_flip"):
        resolve_augment("shear")
    with pytest.raises(ValueError, match=r"unknown augmentation option\(s\) \['shear'\].*"
                                         r"valid: alt_flip, crop, cutmix"):
        resolve_augment({"shear": 10})
    with pytest.raises(TypeError, match="preset name, dict or Augment"):
        resolve_augment(3)


@pytest.mark.parametrize("bad", [{"crop": -1}, {"crop": 40}, {"crop": 2.5},
                                 {"erase": 1.5}, {"erase_size": 0},
                                 {"mixup": -1.0}, {"cutmix": "a"},
                                 {"rotate": -5.0}, {"rotate": 200}])
def test_bad_augmentation_values(bad):
    with pytest.raises(ValueError, match=f"bad augmentation value {next(iter(bad))}="):
        resolve_augment(bad)


# ---------------------------------------------------------------- rotation


def test_rotation_by_zero_is_identity_and_by_90_is_rot90():
    x = batch(8)
    assert torch.allclose(rotate(x, torch.zeros(8)), x, atol=1e-6)
    assert random_rotate(x, 0.0, gen()) is x
    # positive angles turn counter-clockwise, like torch.rot90(k=1) and torchvision
    assert torch.allclose(rotate(x, torch.full((8,), 90.0)), x.rot90(1, (2, 3)), atol=1e-5)
    assert torch.allclose(rotate(x, torch.full((8,), -90.0)), x.rot90(-1, (2, 3)), atol=1e-5)


def test_rotation_angles_per_image_from_the_generator():
    x = batch(64)
    out = random_rotate(x, 15.0, gen(5))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, random_rotate(x, 15.0, gen(5)))      # seeded
    assert not torch.equal(out, random_rotate(x, 15.0, gen(6)))
    angles = (2 * torch.rand(64, generator=gen(5)) - 1) * 15.0   # the same draws
    assert torch.equal(out, rotate(x, angles))
    assert angles.abs().max() <= 15 and angles.std() > 5          # per image, both ways
    # a small rotation keeps the centre and fills the corners it uncovers with zero
    c = torch.ones(64, 3, 32, 32)
    turned = random_rotate(c, 15.0, gen(5))
    assert torch.allclose(turned[:, :, 12:20, 12:20], c[:, :, 12:20, 12:20], atol=1e-5)
    big = angles.abs() > 5
    assert (turned[big][:, :, 0, 0] < 0.5).all()


def test_rotation_off_leaves_the_other_augmentations_draws_unchanged():
    """Configs without rotation augment exactly as before it existed."""
    x = batch(32)
    out, _ = apply_augment(PRESETS["crop_flip_erase"], x, torch.zeros(32).long(), 10,
                           gen(7), np.random.default_rng(0))
    g = gen(7)
    want = random_erase(random_flip(random_crop(x, 4, g), g), 0.5, 12, g)
    assert torch.equal(out, want)


def test_rotation_is_left_out_of_config_dicts_when_off():
    """Run names hash the augmentation dict: without rotation it is unchanged."""
    from cifar_lib.engine import TrainConfig
    old = {"crop": 4, "flip": True, "erase": 0.0, "erase_size": 12, "mixup": 0.0, "cutmix": 0.0}
    assert augment_dict("crop_flip") == old
    assert TrainConfig(augment="crop_flip").to_dict()["augment"] == old
    d = augment_dict("crop_flip_rotate")
    assert d == {**old, "rotate": 15.0}
    assert resolve_augment(d) == PRESETS["crop_flip_rotate"] == Augment(rotate=15.0)
    assert resolve_augment(old).rotate == 0.0


def test_rotation_in_the_device_loader():
    """uint8 images, normalised to floats on the device, then rotated."""
    from cifar_lib.data import DeviceLoader
    g = gen(0)
    x = torch.randint(0, 256, (40, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.arange(40) % 10
    kw = dict(train=True, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), seed=3)

    def batches(preset):
        loader = DeviceLoader(x, y, 16, augment=resolve_augment(preset), **kw)
        return list(loader)
    rot, rot2, plain = batches("crop_flip_rotate"), batches("crop_flip_rotate"), batches("crop_flip")
    assert len(rot) == len(plain) == 2
    for (xr, yr), (xr2, yr2), (xp, yp) in zip(rot, rot2, plain):
        assert xr.shape == (16, 3, 32, 32) and xr.dtype == torch.float32
        assert torch.equal(yr, yp) and yr.dtype == torch.long     # labels untouched
        assert torch.equal(xr, xr2) and torch.equal(yr, yr2)      # seeded
        assert not torch.allclose(xr, xp)
        assert torch.isfinite(xr).all()


def test_describe_names_the_augmentations_as_the_report_rows_do():
    assert describe("translate_altflip") == "translate 2 px + alternating flip"
    assert describe("crop_flip") == "crop 4 px + random flip"
    assert describe("none") == "none"
    assert describe({**augment_dict("translate_altflip"), "cutmix": 1.0}) == \
        "translate 2 px + alternating flip + cutmix"
    assert describe("crop_flip_rotate") == "crop 4 px + random flip + rotation (15 degrees)"
    assert describe(Augment(crop=0, erase=0.5)) == "random flip + erasing"

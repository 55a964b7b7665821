"""CIFAR-10 as uint8 tensors: sources, cache, split, device-resident loader.

Sources, tried in this order under the data root (argument, else the
environment variable ``CIFAR10_ROOT``, else ``<repo>/data``):

* a cache file (``.pt``) written by this module;
* torchvision's format (``cifar-10-batches-py/``), read by torchvision's
  ``CIFAR10`` (md5 sums checked after a download, else with ``verify=True``);
* an ImageFolder tree (``train/<class>/*``, ``test/<class>/*``), directly or
  one folder down, or a ``.tar.gz`` of one (such as the JPEG copy);
* torchvision's download into the root (the default for users). Only the
  default root ``<repo>/data`` is created for it; any other root must exist,
  so that a mistyped path is an error rather than a new empty folder.

The first load decodes the source once and writes a cache under
``CIFAR_LIB_CACHE`` (default ``<repo>/data/cache``); later loads read it. A
cache file that cannot be read is rebuilt from its source, with a warning.
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cifar_lib.augment import (Augment, alt_flip_mask, apply_augment,
                               augment_images, flip_where, mix_batch)
from cifar_lib.fsutil import atomic_write
from cifar_lib.profiles import REPO

CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
# Reference statistics of the original training set (pixels scaled to [0, 1]).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
ARCHIVE_EXTS = (".tar.gz", ".tgz", ".tar")


class DataError(RuntimeError):
    """Data missing, corrupt or of the wrong shape; the message says what to do."""


@dataclass
class CIFARData:
    """Train and test images (uint8, N x 3 x 32 x 32) with int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    source: str  # how to quote it: "CIFAR-10", "CIFAR-10 (JPEG copy)", ...


def default_root() -> Path:
    """``<repo>/data``: the root used when none is given; the only one that
    is created for a download."""
    return REPO / "data"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root``, else ``$CIFAR10_ROOT``, else ``<repo>/data``."""
    return Path(root or os.environ.get("CIFAR10_ROOT") or default_root())


def cache_dir() -> Path:
    """Where decoded datasets are cached (``$CIFAR_LIB_CACHE``)."""
    return Path(os.environ.get("CIFAR_LIB_CACHE") or REPO / "data" / "cache")


# ---------------------------------------------------------------- sources


def _fail(path: Path, what: str) -> DataError:
    where = str(path) if Path(path).is_absolute() else f"{path} ({Path(path).resolve()})"
    return DataError(
        f"CIFAR-10 could not be loaded from {where}: {what}. Point the data "
        "root (argument `root` or environment variable CIFAR10_ROOT) at a "
        "folder with torchvision's cifar-10-batches-py/, an ImageFolder tree "
        "(train/<class>/, test/<class>/) or a .tar.gz of one, or call "
        "load_cifar10(download=True) on a machine with internet.")


def _is_image_folder(p: Path) -> bool:
    return (p / "train").is_dir() and (p / "test").is_dir()


def _find_source(root: Path, download: bool) -> tuple[str, Path]:
    """(kind, path) of the first usable source under ``root``."""
    if root.is_file():
        if root.suffix == ".pt":
            return "cache", root
        if root.name.endswith(ARCHIVE_EXTS):
            return "archive", root
        raise _fail(root, "it is a file of unknown type (expected .pt or .tar.gz)")
    if root.is_dir():
        if (root / "cifar-10-batches-py").is_dir():
            return "torchvision", root / "cifar-10-batches-py"
        if _is_image_folder(root):
            return "folder", root
        subs = sorted(p for p in root.iterdir() if p.is_dir() and _is_image_folder(p))
        if subs:
            return "folder", subs[0]
        archives = sorted(p for p in root.iterdir()
                          if p.name.endswith(ARCHIVE_EXTS)
                          and not p.name.startswith("cifar-10-python"))
        if archives:
            return "archive", archives[0]
    elif download and root.resolve() != default_root().resolve():
        # only the default root is made for a download: a mistyped path is an error
        raise _fail(root, "the folder does not exist (to download CIFAR-10 there, "
                          "create it first)")
    if download:
        return "download", root
    if not root.exists():
        raise _fail(root, "it does not exist (download=False)")
    raise _fail(root, "no dataset found there and download=False")


def _check(x: np.ndarray, y: np.ndarray, n_classes: int, path: Path, split: str):
    if x.ndim != 4 or x.shape[1:] != (3, 32, 32):
        raise _fail(path, f"{split} images have shape {tuple(x.shape[1:])}, "
                          "expected 3 x 32 x 32")
    if len(x) == 0:
        raise _fail(path, f"the {split} split has no images")
    if len(y) != len(x):
        raise _fail(path, f"the {split} split has {len(x)} images but {len(y)} labels")
    if n_classes != 10:
        raise _fail(path, f"found {n_classes} classes, expected 10")
    if y.min() < 0 or y.max() >= n_classes:
        raise _fail(path, f"{split} labels outside 0..9")


def _decode(data: bytes, name: str, path: Path) -> np.ndarray:
    from PIL import Image
    try:
        img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    except Exception as e:  # PIL raises many types for broken files
        raise _fail(path, f"image {name} cannot be decoded ({e})") from e
    if img.shape != (32, 32, 3):
        raise _fail(path, f"image {name} is {img.shape[1]}x{img.shape[0]}, "
                          "expected 32x32")
    return img


def _from_items(items, path: Path) -> CIFARData:
    """Build a dataset from (split, class, name, bytes) items."""
    found: dict[str, dict[str, list[np.ndarray]]] = {"train": {}, "test": {}}
    exts = set()
    for split, cls, name, data in items:
        found[split].setdefault(cls, []).append(_decode(data, name, path))
        exts.add(os.path.splitext(name)[1].lower())
    classes = sorted(set(found["train"]) | set(found["test"]))
    out = {}
    for split, per_class in found.items():
        if not per_class:
            raise _fail(path, f"no {split}/<class>/ images found")
        xs, ys = [], []
        for i, c in enumerate(classes):
            imgs = per_class.get(c, [])
            xs += imgs
            ys += [i] * len(imgs)
        x = np.stack(xs).transpose(0, 3, 1, 2)
        y = np.asarray(ys, dtype=np.int64)
        _check(x, y, len(classes), path, split)
        out[split] = (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y))
    jpeg = exts <= {".jpg", ".jpeg"}
    source = "CIFAR-10 (JPEG copy)" if jpeg else "CIFAR-10 (ImageFolder)"
    return CIFARData(*out["train"], *out["test"], tuple(classes), source)


def _split_of(parts: tuple[str, ...]):
    """('train'|'test', class, name) from a path's trailing parts, else None."""
    if len(parts) >= 3 and parts[-3] in ("train", "test") \
            and parts[-1].lower().endswith(IMAGE_EXTS):
        return parts[-3], parts[-2], parts[-1]
    return None


def _read_folder(path: Path) -> CIFARData:
    def items():
        for f in sorted(path.glob("*/*/*")):
            key = _split_of(f.parts)
            if key:
                yield (*key, f.read_bytes())
    return _from_items(items(), path)


def _read_archive(path: Path) -> CIFARData:
    def items():
        with tarfile.open(path) as tar:
            for m in tar:
                key = _split_of(tuple(m.name.split("/")))
                if m.isfile() and key:
                    yield (*key, tar.extractfile(m).read())
    try:
        return _from_items(items(), path)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise _fail(path, f"the archive is truncated or corrupt ({e})") from e


def _torchvision_files() -> list[tuple[str, str]]:
    """(name, md5) of the files of torchvision's ``cifar-10-batches-py``:
    the five training batches, the test batch, then ``batches.meta``."""
    from torchvision.datasets.cifar import CIFAR10
    return [*map(tuple, CIFAR10.train_list + CIFAR10.test_list),
            (CIFAR10.meta["filename"], CIFAR10.meta["md5"])]


def _verify_sums(path: Path) -> None:
    """Check each file of ``path`` against the md5 sum torchvision lists for
    the CIFAR-10 release (``load_cifar10(verify=True)``)."""
    from torchvision.datasets.utils import check_integrity
    for name, md5 in _torchvision_files():
        if not (path / name).is_file():
            raise _fail(path, f"{name} is missing")
        if not check_integrity(str(path / name), md5):
            raise _fail(path, f"{name} is corrupt (its md5 sum is not the one of "
                              "the CIFAR-10 release)")


def _read_torchvision(path: Path) -> CIFARData:
    """Decode ``cifar-10-batches-py`` with torchvision's ``CIFAR10``.

    One dataset object per batch file, so that an error names the file,
    with torchvision's md5 checks off: the sums are checked where the files
    come from a download (by torchvision itself) or with ``verify=True``
    (:func:`_verify_sums`), not on every read, so that a folder in the same
    format that is not the release (a course's subset, the tests' tiny
    batches) loads as it always did. The class is taken from its module,
    ``torchvision.datasets.cifar``: this reader never downloads, and the
    tests replace only the public ``torchvision.datasets.CIFAR10`` (the
    name the download goes through) to make sure that nothing downloads.
    """
    from torchvision.datasets.cifar import CIFAR10

    class MetaError(Exception):
        pass

    class OneBatch(CIFAR10):
        def __init__(self, name: str):
            self.train_list, self.test_list = [[name, None]], []
            self.meta = {**CIFAR10.meta, "md5": None}
            super().__init__(str(path.parent), train=True)

        def _load_meta(self):  # read after the batch: its errors are the meta's
            # (torchvision's private step; were it renamed, a broken meta would
            # be reported as its batch's error, and the data stay the same)
            try:
                super()._load_meta()
            except Exception as e:  # pickle raises many types
                raise MetaError(e) from e

    files = _torchvision_files()
    for name, _ in files:
        if not (path / name).is_file():
            raise _fail(path, f"{name} is missing")
    batches = []
    for name, _ in files[:-1]:
        try:
            batches.append(OneBatch(name))
        except MetaError as e:
            raise _fail(path, f"{files[-1][0]} is corrupt ({e})") from e
        except Exception as e:  # pickle raises many types
            raise _fail(path, f"{name} is corrupt ({e})") from e
    # torchvision holds images as N x 32 x 32 x 3: back to CIFAR's N x 3 x 32 x 32
    xs = [np.asarray(b.data, dtype=np.uint8).transpose(0, 3, 1, 2) for b in batches]
    ys = [np.asarray(b.targets, dtype=np.int64) for b in batches]
    tx, ty = np.concatenate(xs[:-1]), np.concatenate(ys[:-1])
    vx, vy = np.ascontiguousarray(xs[-1]), ys[-1]
    classes = tuple(batches[0].classes)
    for x, y, s in ((tx, ty, "train"), (vx, vy, "test")):
        _check(x, y, len(classes), path, s)
    return CIFARData(torch.from_numpy(tx), torch.from_numpy(ty),
                     torch.from_numpy(vx), torch.from_numpy(vy), classes, "CIFAR-10")


def _download(root: Path) -> Path:
    import torchvision
    root.mkdir(parents=True, exist_ok=True)
    try:
        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    except Exception as e:  # network errors come in many types
        raise _fail(root, f"the download failed ({e})") from e
    return root / "cifar-10-batches-py"


def _cache_path(kind: str, path: Path) -> Path:
    """Cache file keyed by the source's path, size and mtime; for a folder also
    by its entries two levels down (adding, removing or rewriting a batch
    file, or adding or removing images, changes one of their stats)."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}"
    if path.is_dir():
        for p in sorted(path.glob("*")) + sorted(path.glob("*/*")):
            key += f"|{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
    return cache_dir() / f"cifar10-{kind}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt"


def save_cache(data: CIFARData, path: Path) -> None:
    """Write ``data`` to ``path`` atomically (temp file, then rename)."""
    obj = {"train_x": data.train_x, "train_y": data.train_y, "test_x": data.test_x,
           "test_y": data.test_y, "classes": list(data.classes), "source": data.source}
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_cache(path: Path) -> CIFARData:
    """Read a cache file written by :func:`save_cache`."""
    try:
        d = torch.load(path, weights_only=True)
        data = CIFARData(d["train_x"], d["train_y"], d["test_x"], d["test_y"],
                         tuple(d["classes"]), d["source"])
    except Exception as e:  # a broken pickle/zip raises many types
        raise _fail(path, f"the cache file is unreadable ({e}); delete it and load "
                          "from the dataset it was made from") from e
    for x, y, s in ((data.train_x, data.train_y, "train"),
                    (data.test_x, data.test_y, "test")):
        _check(x.numpy(), y.numpy(), len(data.classes), path, s)
    return data


def _cached_or_none(cached: Path | None, source: Path) -> CIFARData | None:
    """The data in ``cached`` if it is there and readable; a broken cache
    (truncated, not a cache, wrong shapes) is rebuilt from ``source``: warn
    and return None."""
    if cached is None or not cached.is_file():
        return None
    try:
        return load_cache(cached)
    except DataError as e:
        why = (str(e.__cause__ or e).strip().splitlines() or ["?"])[0][:200]
        warnings.warn(f"the CIFAR-10 cache {cached} is unreadable ({why}); "
                      f"rebuilding it from the source {source}", stacklevel=3)
        return None


def load_cifar10(root=None, download: bool = True, cache: bool = True,
                 verify: bool = False) -> CIFARData:
    """Load CIFAR-10 as uint8 tensors from the first source found (module doc).

    ``verify`` checks the md5 sums of a ``cifar-10-batches-py`` folder
    against the release before it is used (a download is always checked,
    by torchvision); off by default, as a folder in that format need not be
    the release itself.
    """
    root = data_root(root)
    kind, path = _find_source(root, download)
    if kind == "cache":
        return load_cache(path)
    if kind == "download":
        kind, path = "torchvision", _download(path)
    elif kind == "torchvision" and verify:
        _verify_sums(path)
    cached = _cache_path(kind, path) if cache else None
    data = _cached_or_none(cached, path)
    if data is not None:
        return data
    reader = {"torchvision": _read_torchvision, "folder": _read_folder,
              "archive": _read_archive}[kind]
    data = reader(path)
    if cached is not None:
        try:
            save_cache(data, cached)
        except (OSError, RuntimeError) as e:  # read-only or full: still return the data
            warnings.warn(f"could not write the CIFAR-10 cache {cached} ({e}); "
                          "set CIFAR_LIB_CACHE to a writable folder")
    return data


# ---------------------------------------------------------------- synthetic

_PALETTE = torch.tensor([[230, 25, 75], [60, 180, 75], [255, 225, 25],
                         [0, 130, 200], [245, 130, 48], [145, 30, 180],
                         [70, 240, 240], [240, 50, 230], [210, 245, 60],
                         [128, 128, 128]], dtype=torch.float32)


def synthetic_cifar(n_train: int = 2000, n_test: int = 500, seed: int = 0,
                    num_classes: int = 10) -> CIFARData:
    """A tiny learnable stand-in for CIFAR-10 (tests, smoke profile).

    Each class is a coloured square (colour and a stripe pattern set by the
    class) at a random place on a noisy background, in the same tensor
    format as :func:`load_cifar10`.
    """
    if not 2 <= num_classes <= len(_PALETTE):
        raise ValueError(f"num_classes must be in 2..{len(_PALETTE)}")
    g = torch.Generator().manual_seed(seed)

    def make(n):
        y = torch.arange(n) % num_classes
        y = y[torch.randperm(n, generator=g)]
        x = torch.rand(n, 3, 32, 32, generator=g) * 60
        ii = torch.arange(32)
        top = torch.randint(0, 13, (n,), generator=g)
        left = torch.randint(0, 13, (n,), generator=g)
        rows = (ii >= top[:, None]) & (ii < top[:, None] + 20)
        cols = (ii >= left[:, None]) & (ii < left[:, None] + 20)
        box = rows[:, :, None] & cols[:, None, :]
        stripes = ((ii[None, :] // (1 + y[:, None] % 3)) % 2 == 0)[:, :, None]
        colour = _PALETTE[y][:, :, None, None] * (0.7 + 0.3 * stripes[:, None])
        colour = colour + torch.randn(n, 3, 1, 1, generator=g) * 8
        x = torch.where(box[:, None], colour, x)
        return x.clamp(0, 255).to(torch.uint8), y.long()

    classes = CLASSES[:num_classes]
    return CIFARData(*make(n_train), *make(n_test), tuple(classes), "synthetic")


# ---------------------------------------------------------------- split


@dataclass
class Split:
    """Train/val/test tensors with normalisation statistics from train only."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    classes: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str
    seed: int

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> dict:
        """Sizes and source, stored with every result."""
        return {"source": self.source, "train": len(self.train[1]),
                "val": len(self.val[1]), "test": len(self.test[1]),
                "split_seed": self.seed}


def _stratified_order(y: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded permutation that interleaves classes (any prefix is balanced)."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    onehot = torch.nn.functional.one_hot(y[perm], int(y.max()) + 1)
    rank = (onehot.cumsum(0) * onehot).sum(1) - 1  # rank of each within its class
    key = rank * (int(y.max()) + 1) + y[perm]
    return perm[torch.argsort(key, stable=True)]


def channel_stats(x: torch.Tensor, chunk: int = 5000):
    """Per-channel mean and std of uint8 images, on the [0, 1] scale."""
    s = torch.zeros(3, dtype=torch.float64)
    s2 = torch.zeros(3, dtype=torch.float64)
    for i in range(0, len(x), chunk):
        b = x[i:i + chunk].double() / 255
        s += b.sum((0, 2, 3))
        s2 += (b * b).sum((0, 2, 3))
    n = len(x) * x.shape[2] * x.shape[3]
    mean = s / n
    std = (s2 / n - mean * mean).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def split_data(data: CIFARData, val_size: int = 5000, seed: int = 0,
               train_size: int | None = None,
               test_size: int | None = None) -> Split:
    """Seeded, class-balanced train/val split (and optional subsets).

    The validation images are held out of the training set; ``train_size``
    and ``test_size`` keep balanced subsets. Statistics come from train only.
    """
    n = len(data.train_y)
    if not 0 < val_size < n:
        raise ValueError(f"val_size must be between 1 and {n - 1}, got {val_size}")
    order = _stratified_order(data.train_y, seed)
    val_idx, train_idx = order[:val_size], order[val_size:]
    if train_size is not None:
        train_idx = train_idx[:train_size]
    test_idx = torch.arange(len(data.test_y))
    if test_size is not None and test_size < len(test_idx):
        test_idx = _stratified_order(data.test_y, seed)[:test_size]
    tx = data.train_x[train_idx]
    mean, std = channel_stats(tx)
    return Split(train=(tx, data.train_y[train_idx]),
                 val=(data.train_x[val_idx], data.train_y[val_idx]),
                 test=(data.test_x[test_idx], data.test_y[test_idx]),
                 classes=data.classes, mean=mean, std=std,
                 source=data.source, seed=seed)


# ---------------------------------------------------------------- loader


class DeviceLoader:
    """Batches drawn from tensors that live on the device, augmented there.

    ``x`` is uint8 N x 3 x 32 x 32. Each batch is scaled to [0, 1],
    normalised with ``mean``/``std`` when given, then augmented as a whole
    (training only). Labels come out as int64, or as soft N x K targets when
    the augmentation mixes images. Call :meth:`set_epoch` for a new,
    reproducible shuffle.

    With ``epoch_aug`` a training loader normalises its images once (kept
    on the device) and augments, flips and shuffles a whole epoch at once
    when the epoch starts; a batch is then a slice of that epoch (mixup and
    cutmix stay per batch). Fewer, larger operations: two per batch.
    ``dtype`` is the dtype of the images it yields (float32; float16 for a
    network in half precision). An ``alt_flip`` augmentation flips each
    image every other epoch, from a random draw made once per seed.
    """

    def __init__(self, x, y, batch_size: int, *, train: bool = False,
                 augment: Augment | None = None, mean=None, std=None,
                 device=None, num_classes: int = 10, seed: int = 0,
                 channels_last: bool = False, drop_last: bool | None = None,
                 epoch_aug: bool = False, dtype: torch.dtype | None = None):
        self.device = torch.device(device or "cpu")
        self.x = x.to(self.device)
        self.y = y.to(self.device)
        self.batch_size = int(batch_size)
        self.train = train
        self.augment = augment if train else None
        self.num_classes = num_classes
        self.seed = seed
        self.channels_last = channels_last
        self.epoch_aug = epoch_aug and train
        self.dtype = dtype
        self._prepared = None  # the normalised images (epoch_aug)
        if drop_last is None:
            drop_last = train and len(self.y) >= self.batch_size
        self.drop_last = drop_last
        if mean is not None:
            shape = (1, 3, 1, 1)
            self.mean = torch.tensor(mean, device=self.device).view(shape)
            self.std = torch.tensor(std, device=self.device).view(shape)
        else:
            self.mean = self.std = None
        self.flip_base = None
        if self.augment is not None and self.augment.alt_flip:  # fixed per seed
            g = torch.Generator().manual_seed(seed * 100003 + 99991)
            self.flip_base = (torch.rand(len(self.y), generator=g) < 0.5).to(self.device)
        self.gen = torch.Generator(device=self.device)
        self.rng = np.random.default_rng(seed)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Reseed shuffling and augmentation for ``epoch`` (resumable)."""
        self.epoch = epoch
        self.gen.manual_seed(self.seed * 100003 + epoch)
        self.rng = np.random.default_rng([self.seed, epoch])

    def __len__(self) -> int:
        n, b = len(self.y), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images on the device -> float, scaled and normalised."""
        x = x.float().div_(255)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return x if self.dtype in (None, torch.float32) else x.to(self.dtype)

    def _alt_flip(self, x: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        if self.flip_base is None:
            return x
        mask = alt_flip_mask(self.flip_base, self.epoch)
        return flip_where(x, mask if idx is None else mask[idx])

    def __iter__(self):
        if self.epoch_aug:
            yield from self._epoch_batches()
            return
        n = len(self.y)
        if self.train:
            order = torch.randperm(n, generator=self.gen, device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x, y = self.prepare(self.x[idx]), self.y[idx]
            if self.augment is not None:
                x = self._alt_flip(x, idx)
                x, y = apply_augment(self.augment, x, y, self.num_classes,
                                     self.gen, self.rng)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y

    def epoch_images(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole epoch, augmented and shuffled (``epoch_aug``)."""
        if self._prepared is None:
            self._prepared = self.prepare(self.x)
        x = self._prepared
        if self.augment is not None:
            x = augment_images(self.augment, self._alt_flip(x), self.gen)
        order = torch.randperm(len(self.y), generator=self.gen, device=self.device)
        x, y = x[order], self.y[order]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def _epoch_batches(self):
        x, y = self.epoch_images()
        b = self.batch_size
        for i in range(len(self)):
            xb, yb = x[i * b:(i + 1) * b], y[i * b:(i + 1) * b]
            if self.augment is not None and self.augment.mixes:
                xb, yb = mix_batch(self.augment, xb, yb, self.num_classes,
                                   self.gen, self.rng)
            yield xb, yb

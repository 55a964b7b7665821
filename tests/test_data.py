"""Data sources, cache, split and device loader, on small fake datasets."""
from __future__ import annotations

import hashlib
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cifar_lib import data as D
from cifar_lib.augment import Augment
from cifar_lib.data import (CLASSES, CIFARData, DataError, DeviceLoader,
                            cache_dir, channel_stats, load_cifar10, split_data)

N_TRAIN, N_TEST = 3, 2  # images per class in the fake ImageFolder


def colour(label: int, k: int) -> tuple[int, int, int]:
    """The fill colour of image ``k`` of class ``label`` (label is readable back)."""
    return (20 * label + 5, 10 * k, 200)


def write_image_folder(root, classes=CLASSES, size=32, ext=".png"):
    """train/<class>/*.png and test/<class>/*.png, one flat colour each."""
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        for i, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True)
            for k in range(n):
                Image.new("RGB", (size, size), colour(i, k)).save(d / f"{k}{ext}")
    return root


def check_folder_data(data: CIFARData):
    """Shapes, dtypes and labels of a dataset read from the fake folder."""
    assert data.classes == CLASSES
    for x, y, n in ((data.train_x, data.train_y, N_TRAIN),
                    (data.test_x, data.test_y, N_TEST)):
        assert x.dtype == torch.uint8 and x.shape == (10 * n, 3, 32, 32)
        assert y.dtype == torch.int64
        assert torch.equal(torch.bincount(y, minlength=10), torch.full((10,), n))
        # the red channel encodes the class, the image is one flat colour
        assert torch.equal(x[:, 0, 0, 0].long(), 20 * y + 5)
        assert (x == x[:, :, :1, :1]).all()
        assert (x[:, 2] == 200).all()


class Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as a Python 2 ``str`` (SHORT_BINSTRING/BINSTRING), as
    in CIFAR's own batches: they load as ``str`` with torchvision's
    ``encoding="latin1"`` and as ``bytes`` with ``encoding="bytes"``."""

    def save_bytes(self, obj):
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256
                    else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, bytes: save_bytes}


def write_py2_pickle(obj, path):
    with open(path, "wb") as f:
        Py2Pickler(f, protocol=2).dump(obj)


def fake_torchvision(root, n_per_batch=20, n_test=30, label_names=CLASSES):
    """cifar-10-batches-py with pickles in CIFAR's own format."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name, n in [*((f"data_batch_{i}", n_per_batch) for i in range(1, 6)),
                    ("test_batch", n_test)]:
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        batches[name] = (x, y)
        write_py2_pickle({b"batch_label": name.encode(), b"labels": y,
                          b"data": x, b"filenames": [b"f.png"] * n}, d / name)
    write_py2_pickle({b"label_names": [c.encode() for c in label_names],
                      b"num_cases_per_batch": n_per_batch, b"num_vis": 3072},
                     d / "batches.meta")
    return batches


def cache_files():
    return sorted(p.name for p in cache_dir().glob("*")) if cache_dir().exists() else []


def make_tar(folder, out, prefix="cifar10"):
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder / "train", f"{prefix}/train")
        tar.add(folder / "test", f"{prefix}/test")
    return out


# ---------------------------------------------------------------- sources


def test_image_folder_loads(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    data = load_cifar10(root, download=False)
    check_folder_data(data)
    assert data.source == "CIFAR-10 (ImageFolder)"


def test_image_folder_one_level_down_and_jpeg(tmp_path):
    write_image_folder(tmp_path / "root" / "cifar10-jpeg", ext=".jpg")
    data = load_cifar10(tmp_path / "root", download=False)
    assert data.source == "CIFAR-10 (JPEG copy)"
    assert data.train_x.shape == (30, 3, 32, 32)
    # JPEG is lossy but a flat colour survives within a few levels
    assert ((data.train_x[:, 0, 0, 0].long() - (20 * data.train_y + 5)).abs() <= 3).all()


def test_archive_loads(tmp_path):
    folder = write_image_folder(tmp_path / "imgs")
    archive = make_tar(folder, tmp_path / "cifar10.tar.gz")
    check_folder_data(load_cifar10(archive, download=False))
    # also found when the root is the folder holding the archive
    (tmp_path / "only").mkdir()
    archive.rename(tmp_path / "only" / archive.name)
    check_folder_data(load_cifar10(tmp_path / "only", download=False))


def test_torchvision_format_loads(tmp_path):
    batches = fake_torchvision(tmp_path)
    data = load_cifar10(tmp_path, download=False)
    assert data.classes == CLASSES and data.source == "CIFAR-10"
    assert data.train_x.dtype == torch.uint8 and data.train_x.shape == (100, 3, 32, 32)
    assert data.test_x.shape == (30, 3, 32, 32)
    x = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    y = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    # CIFAR rows are 1024 red, 1024 green, 1024 blue values, row-major
    assert torch.equal(data.train_x, torch.from_numpy(x.reshape(-1, 3, 32, 32)))
    assert data.train_y.tolist() == y
    assert data.test_y.tolist() == batches["test_batch"][1]
    assert data.train_x[7, 1, 2, 3] == x[7, 1024 + 2 * 32 + 3]


def test_class_names_come_from_meta(tmp_path):
    names = tuple(f"c{i}" for i in range(10))
    fake_torchvision(tmp_path, label_names=names)
    assert load_cifar10(tmp_path, download=False).classes == names


def test_cache_written_once_then_used(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "imgs")
    assert cache_files() == []
    first = load_cifar10(root, download=False)
    files = cache_files()
    assert len(files) == 1 and files[0].endswith(".pt")

    def boom(path):
        raise AssertionError("the source was decoded again instead of cached")
    monkeypatch.setattr(D, "_read_folder", boom)
    second = load_cifar10(root, download=False)
    assert cache_files() == files
    for a, b in zip((first.train_x, first.train_y, first.test_x, first.test_y),
                    (second.train_x, second.train_y, second.test_x, second.test_y)):
        assert torch.equal(a, b)
    assert (second.classes, second.source) == (first.classes, first.source)
    # cache=False skips the cache entirely
    with pytest.raises(AssertionError, match="decoded again"):
        load_cifar10(root, download=False, cache=False)
    # the cache file itself is a valid root
    check_folder_data(load_cifar10(cache_dir() / files[0], download=False))


def test_cache_key_follows_the_source(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    load_cifar10(root, download=False)
    # an image added to a class folder makes a new cache entry, not a stale hit
    Image.new("RGB", (32, 32), colour(0, 9)).save(root / "train" / CLASSES[0] / "new.png")
    data = load_cifar10(root, download=False)
    assert len(data.train_y) == 10 * N_TRAIN + 1
    assert len(cache_files()) == 2


def test_download_goes_through_torchvision(tmp_path, monkeypatch):
    import torchvision
    calls = []

    class FakeCIFAR10:
        def __init__(self, root, train=True, download=False):
            calls.append((root, download))
            fake_torchvision(tmp_path / "dl")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    (tmp_path / "dl").mkdir()  # a root other than the default must exist
    data = load_cifar10(tmp_path / "dl", download=True)
    assert calls == [(str(tmp_path / "dl"), True)]
    assert data.train_x.shape == (100, 3, 32, 32)


def test_failed_download_is_a_data_error(tmp_path, monkeypatch):
    import torchvision

    class Offline:
        def __init__(self, *a, **kw):
            raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    (tmp_path / "dl").mkdir()
    with pytest.raises(DataError, match="download failed.*network unreachable"):
        load_cifar10(tmp_path / "dl", download=True)
    assert cache_files() == []


# ---------------------------------------------------------------- errors


def _error(root, **kw) -> str:
    with pytest.raises(DataError) as e:
        load_cifar10(root, **kw)
    msg = str(e.value)
    assert str(root) in msg, "the error names the path"
    assert "CIFAR10_ROOT" in msg, "the error says what to do"
    assert cache_files() == [], "no cache file after a failure"
    return msg


def test_error_nothing_there(tmp_path):
    assert "does not exist" in _error(tmp_path / "missing", download=False)
    (tmp_path / "empty").mkdir()
    assert "no dataset found" in _error(tmp_path / "empty", download=False)


def test_missing_root_is_an_error_and_is_not_created(tmp_path, monkeypatch):
    """A mistyped --data-root must not leave a new empty folder behind."""
    import torchvision
    calls = []
    def fake_download(root, **kw):
        calls.append(root)
        fake_torchvision(Path(root))
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_download)
    missing = tmp_path / "typo" / "cifar"
    msg = _error(missing, download=True)
    assert "does not exist" in msg and "create it first" in msg
    assert not (tmp_path / "typo").exists() and calls == []
    # the default root is the one a download may create
    monkeypatch.setattr(D, "default_root", lambda: missing)
    monkeypatch.delenv("CIFAR10_ROOT")
    assert load_cifar10(download=True).train_x.shape == (100, 3, 32, 32)
    assert calls == [str(missing)]


def test_error_no_image_files(tmp_path):
    for s in ("train", "test"):
        (tmp_path / s / "cat").mkdir(parents=True)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    assert "no train/<class>/ images" in _error(tmp_path, download=False)


def test_error_truncated_archive(tmp_path):
    folder = write_image_folder(tmp_path / "imgs")
    full = make_tar(folder, tmp_path / "full.tar.gz").read_bytes()
    bad = tmp_path / "broken" / "cifar10.tar.gz"
    bad.parent.mkdir()
    bad.write_bytes(full[: len(full) // 2])
    msg = _error(bad, download=False)
    assert "truncated or corrupt" in msg or "cannot be decoded" in msg


def test_error_wrong_image_size(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    Image.new("RGB", (28, 28)).save(root / "test" / CLASSES[3] / "0.png")
    assert "28x28, expected 32x32" in _error(root, download=False)


def test_error_corrupt_image(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    (root / "train" / CLASSES[2] / "1.png").write_bytes(b"\x89PNG garbage")
    assert "cannot be decoded" in _error(root, download=False)


def test_error_wrong_class_count(tmp_path):
    root = write_image_folder(tmp_path / "imgs", classes=CLASSES[:9])
    assert "found 9 classes, expected 10" in _error(root, download=False)


def test_error_torchvision_missing_batch(tmp_path):
    fake_torchvision(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    assert "data_batch_3 is missing" in _error(tmp_path, download=False)


def test_error_torchvision_corrupt_batch(tmp_path):
    fake_torchvision(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x02junk")
    assert "test_batch is corrupt" in _error(tmp_path, download=False)


def test_error_torchvision_corrupt_meta_or_labels(tmp_path):
    fake_torchvision(tmp_path / "a")
    (tmp_path / "a" / "cifar-10-batches-py" / "batches.meta").write_bytes(b"\x80\x02junk")
    assert "batches.meta is corrupt" in _error(tmp_path / "a", download=False)
    fake_torchvision(tmp_path / "b")
    f = tmp_path / "b" / "cifar-10-batches-py" / "data_batch_2"
    d = pickle.loads(f.read_bytes(), encoding="bytes")
    d[b"labels"] = d[b"labels"][:-1]
    write_py2_pickle(d, f)
    assert "100 images but 99 labels" in _error(tmp_path / "b", download=False)
    (tmp_path / "b" / "cifar-10-batches-py" / "batches.meta").unlink()
    assert "batches.meta is missing" in _error(tmp_path / "b", download=False)


def test_torchvision_format_is_read_by_torchvision(tmp_path, monkeypatch):
    """The batches go through torchvision's CIFAR10 (one object per file,
    meta included); its md5 checks are off unless verify=True."""
    from torchvision.datasets import cifar
    seen = []
    real_init = cifar.CIFAR10.__init__

    def spy(self, *a, **kw):
        real_init(self, *a, **kw)
        seen.append([n for n, _ in self.train_list])
    monkeypatch.setattr(cifar.CIFAR10, "__init__", spy)
    fake_torchvision(tmp_path)
    data = load_cifar10(tmp_path, download=False)
    assert seen == [[f"data_batch_{i}"] for i in range(1, 6)] + [["test_batch"]]
    assert data.train_x.is_contiguous() and data.test_x.is_contiguous()


def test_verify_checks_the_release_sums(tmp_path, monkeypatch):
    from torchvision.datasets import cifar
    fake_torchvision(tmp_path)
    msg = _error(tmp_path, download=False, verify=True)
    assert "data_batch_1 is corrupt (its md5 sum is not the one of the CIFAR-10 release" in msg
    # with the fake files' own sums in torchvision's list, the same folder passes
    d = tmp_path / "cifar-10-batches-py"
    md5 = lambda name: hashlib.md5((d / name).read_bytes()).hexdigest()  # noqa: E731
    monkeypatch.setattr(cifar.CIFAR10, "train_list",
                        [[n, md5(n)] for n, _ in cifar.CIFAR10.train_list])
    monkeypatch.setattr(cifar.CIFAR10, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(cifar.CIFAR10, "meta",
                        {**cifar.CIFAR10.meta, "md5": md5("batches.meta")})
    assert load_cifar10(tmp_path, download=False, verify=True).train_x.shape == (100, 3, 32, 32)
    # a changed byte in one file is named
    (name,) = cache_files()
    (cache_dir() / name).unlink()
    f = d / "data_batch_4"
    f.write_bytes(f.read_bytes()[:-1] + b"\x00")
    assert "data_batch_4 is corrupt (its md5" in _error(tmp_path, download=False, verify=True)


def test_error_unknown_file_and_broken_cache(tmp_path):
    f = tmp_path / "data.zip"
    f.write_bytes(b"PK")
    assert "unknown type" in _error(f, download=False)
    pt = tmp_path / "broken.pt"
    pt.write_bytes(b"not a torch file")
    assert "delete it" in _error(pt, download=False)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_shape"])
def test_corrupt_cache_is_rebuilt_from_its_source(tmp_path, damage):
    root = write_image_folder(tmp_path / "imgs")
    load_cifar10(root, download=False)
    (name,) = cache_files()
    f = cache_dir() / name
    good = f.read_bytes()
    if damage == "truncate":
        f.write_bytes(good[: len(good) // 3])
    elif damage == "garbage":
        f.write_bytes(b"not a torch file")
    else:
        torch.save({"train_x": torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
                    "train_y": torch.zeros(2, dtype=torch.long),
                    "test_x": torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
                    "test_y": torch.zeros(2, dtype=torch.long),
                    "classes": list(CLASSES), "source": "x"}, f)
    with pytest.warns(UserWarning, match="unreadable.*rebuilding it from the source"):
        data = load_cifar10(root, download=False)
    check_folder_data(data)
    assert cache_files() == [name]  # rewritten in place, no temp file left
    check_folder_data(D.load_cache(f))  # and readable again


def test_corrupt_cache_with_a_bad_source_fails_on_the_source(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    load_cifar10(root, download=False)
    (name,) = cache_files()
    (cache_dir() / name).write_bytes(b"junk")
    # the source changes size but keeps its mtime (same cache key): now broken too
    img = root / "train" / CLASSES[2] / "1.png"
    st = img.stat()
    img.write_bytes(b"\x89PNG garbage")
    import os
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.warns(UserWarning, match="rebuilding"), \
            pytest.raises(DataError, match="cannot be decoded"):
        load_cifar10(root, download=False)


@pytest.mark.parametrize("error", [OSError, RuntimeError])  # torch.save raises either
def test_failed_cache_write_leaves_no_temp_file(tmp_path, monkeypatch, error):
    root = write_image_folder(tmp_path / "imgs")
    real_save = torch.save

    def half_write(obj, f, *a, **kw):
        real_save({"partial": True}, f)
        raise error("disk full")
    monkeypatch.setattr(torch, "save", half_write)
    # the data still loads; the cache is skipped with a warning
    with pytest.warns(UserWarning, match="disk full.*CIFAR_LIB_CACHE"):
        data = load_cifar10(root, download=False)
    check_folder_data(data)
    assert cache_files() == []
    # an interrupt during the write leaves nothing either
    def interrupted(obj, f, *a, **kw):
        real_save({"partial": True}, f)
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_cifar10(root, download=False)
    assert cache_files() == []


# ---------------------------------------------------------------- split


def indexed_data(n_train=600, n_test=200, k=10) -> CIFARData:
    """Random images whose first two pixels encode their index."""
    g = torch.Generator().manual_seed(3)
    data = []
    for n in (n_train, n_test):
        x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        i = torch.arange(n)
        x[:, 0, 0, 0], x[:, 0, 0, 1] = i % 256, i // 256
        data += [x, torch.arange(n) % k]
    return CIFARData(*data, CLASSES[:k], "indexed")


def index_of(x: torch.Tensor) -> torch.Tensor:
    return x[:, 0, 0, 0].long() + 256 * x[:, 0, 0, 1].long()


def test_split_is_seeded():
    data = indexed_data()
    a, b = split_data(data, 100, seed=0), split_data(data, 100, seed=0)
    for s in ("train", "val", "test"):
        assert torch.equal(getattr(a, s)[0], getattr(b, s)[0])
        assert torch.equal(getattr(a, s)[1], getattr(b, s)[1])
    c = split_data(data, 100, seed=1)
    assert set(index_of(a.val[0]).tolist()) != set(index_of(c.val[0]).tolist())


def test_split_partitions_and_balances():
    data = indexed_data()
    s = split_data(data, 100, seed=5)
    tr, va = index_of(s.train[0]), index_of(s.val[0])
    assert len(va) == 100 and len(tr) == 500
    assert set(tr.tolist()).isdisjoint(va.tolist())
    assert sorted(tr.tolist() + va.tolist()) == list(range(600))
    # labels travel with their images
    assert torch.equal(s.train[1], data.train_y[tr])
    assert torch.equal(s.val[1], data.train_y[va])
    assert torch.equal(torch.bincount(s.val[1], minlength=10), torch.full((10,), 10))
    # any val size is balanced within one image per class
    counts = torch.bincount(split_data(data, 57, seed=2).val[1], minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 57
    assert s.describe() == {"source": "indexed", "train": 500, "val": 100,
                            "test": 200, "split_seed": 5}


def test_split_subsets():
    data = indexed_data()
    s = split_data(data, 100, seed=0, train_size=200, test_size=50)
    assert len(s.train[1]) == 200 and len(s.test[1]) == 50
    assert torch.equal(torch.bincount(s.train[1], minlength=10), torch.full((10,), 20))
    assert torch.equal(torch.bincount(s.test[1], minlength=10), torch.full((10,), 5))
    full = split_data(data, 100, seed=0)
    # the train subset is a part of the full train split, never of val
    assert set(index_of(s.train[0]).tolist()) <= set(index_of(full.train[0]).tolist())
    assert torch.equal(s.val[0], full.val[0])
    assert torch.equal(s.test[1], data.test_y[index_of(s.test[0])])
    with pytest.raises(ValueError, match="val_size"):
        split_data(data, 600)


def test_statistics_from_train_only():
    data = indexed_data()
    # make val images much brighter so train-only statistics are visibly different
    s0 = split_data(data, 100, seed=0)
    val_idx = index_of(s0.val[0])
    data.train_x[val_idx] = 255
    s = split_data(data, 100, seed=0)
    x = s.train[0].double() / 255
    mean = x.mean((0, 2, 3))
    std = x.permute(1, 0, 2, 3).reshape(3, -1).std(1, unbiased=False)
    assert np.allclose(s.mean, mean.numpy(), atol=1e-6)
    assert np.allclose(s.std, std.numpy(), atol=1e-6)
    all_mean, _ = channel_stats(data.train_x)
    assert min(abs(a - b) for a, b in zip(all_mean, s.mean)) > 0.01
    # chunking does not change the statistics
    assert np.allclose(channel_stats(s.train[0], chunk=7)[1], s.std, atol=1e-9)


# ---------------------------------------------------------------- loader


def test_loader_batch_counts():
    x, y = torch.zeros(100, 3, 32, 32, dtype=torch.uint8), torch.arange(100) % 10
    sizes = lambda ld: [len(b[1]) for b in ld]  # noqa: E731
    train = DeviceLoader(x, y, 32, train=True)
    assert len(train) == 3 and sizes(train) == [32, 32, 32]
    keep = DeviceLoader(x, y, 32, train=True, drop_last=False)
    assert len(keep) == 4 and sizes(keep) == [32, 32, 32, 4]
    ev = DeviceLoader(x, y, 32)
    assert len(ev) == 4 and sizes(ev) == [32, 32, 32, 4]
    # a training set smaller than a batch still gives one batch
    small = DeviceLoader(x[:10], y[:10], 32, train=True)
    assert len(small) == 1 and sizes(small) == [10]


def test_loader_shuffle_reproducible_per_epoch():
    data = indexed_data(300, 10)
    ld = DeviceLoader(data.train_x, data.train_y, 50, train=True, seed=4)

    def order(epoch):
        ld.set_epoch(epoch)
        return torch.cat([index_of((x * 255).round().to(torch.uint8)) for x, _ in ld])
    a, b, c = order(3), order(3), order(4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert sorted(a.tolist()) == list(range(300))  # a permutation
    other = DeviceLoader(data.train_x, data.train_y, 50, train=True, seed=5)
    other.set_epoch(3)
    other_order = torch.cat([index_of((x * 255).round().to(torch.uint8)) for x, _ in other])
    assert not torch.equal(other_order, a)  # another seed, another shuffle
    # labels stay with their images
    ld.set_epoch(1)
    for x, y in ld:
        idx = index_of((x * 255).round().to(torch.uint8))
        assert torch.equal(y, data.train_y[idx])


def test_loader_normalises():
    data = indexed_data(64, 10)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    ld = DeviceLoader(data.train_x, data.train_y, 64, mean=mean, std=std)
    (x, y), = list(ld)
    ref = (data.train_x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) \
        / torch.tensor(std).view(1, 3, 1, 1)
    assert x.dtype == torch.float32 and torch.allclose(x, ref, atol=1e-6)
    assert y.dtype == torch.int64 and torch.equal(y, data.train_y)
    raw = DeviceLoader(data.train_x, data.train_y, 64)
    assert torch.allclose(next(iter(raw))[0], data.train_x.float() / 255)


def test_loader_soft_labels_when_mixing():
    data = indexed_data(128, 10)
    ld = DeviceLoader(data.train_x, data.train_y, 32, train=True,
                      augment=Augment(mixup=1.0), num_classes=10)
    for x, y in ld:
        assert x.shape == (32, 3, 32, 32)
        assert y.dtype == torch.float32 and y.shape == (32, 10)
        assert torch.allclose(y.sum(1), torch.ones(32))
    plain = DeviceLoader(data.train_x, data.train_y, 32, train=True, augment=Augment())
    assert all(y.dtype == torch.int64 for _, y in plain)


def test_loader_no_augmentation_when_not_training():
    data = indexed_data(100, 10)
    aug = Augment(crop=4, flip=True, erase=1.0, mixup=1.0)
    ev = DeviceLoader(data.train_x, data.train_y, 40, augment=aug)
    assert ev.augment is None
    x = torch.cat([b[0] for b in ev])
    y = torch.cat([b[1] for b in ev])
    assert torch.equal(x, data.train_x.float() / 255)  # same images, same order
    assert torch.equal(y, data.train_y)
    tr = DeviceLoader(data.train_x, data.train_y, 40, train=True, augment=aug)
    xb, yb = next(iter(tr))
    assert yb.dtype == torch.float32 and not torch.equal(xb, data.train_x[:40].float() / 255)

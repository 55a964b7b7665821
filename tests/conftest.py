"""Shared fixtures: tiny synthetic data, a fast model config, temp outputs.

Every test runs with ``CIFAR_LIB_CACHE``, ``CIFAR_LIB_SCRATCH`` and
``CIFAR10_ROOT`` pointing into its own temp folder, so nothing reads the
repository's data/ or writes into runs/, results/ or weights/, and with
torchvision's CIFAR10 replaced so that no test can start a download.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # plain `pytest` from anywhere finds cifar_lib
    sys.path.insert(0, str(REPO))

from cifar_lib.data import split_data, synthetic_cifar  # noqa: E402
from cifar_lib.engine import TrainConfig  # noqa: E402
from cifar_lib.plan import load_studies  # noqa: E402

# The suite is an entry point: it looks experiments and report blocks up by
# name, so it registers the studies as the CLI and the notebooks do.
load_studies()

# Tiny models: one thread is as fast and does not thrash on a shared machine.
torch.set_num_threads(1)

# A three-block CNN small enough to train in well under a second per epoch.
TINY_MODEL = {"model": "cnn3", "model_kw": {"filters": [8, 16, 16]}}


class NoDownload:
    """Stands in for torchvision's CIFAR10: a test never downloads."""

    def __init__(self, *a, **kw):
        raise OSError("downloads are disabled in the tests")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Caches, scratch outputs and the data root in temp dirs; no progress
    bars, no downloads."""
    import torchvision
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", NoDownload)
    monkeypatch.setenv("CIFAR_LIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CIFAR_LIB_SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.setenv("CIFAR10_ROOT", str(tmp_path / "no-data-here"))
    monkeypatch.setenv("CIFAR_LIB_PROGRESS", "0")
    monkeypatch.delenv("CIFAR_LIB_PROFILE", raising=False)
    from cifar_lib import experiments
    experiments._split.cache_clear()  # profile splits are cached in memory
    yield
    experiments._split.cache_clear()


@pytest.fixture(scope="session")
def synth():
    """1200 train / 200 test synthetic images in CIFAR's tensor format."""
    return synthetic_cifar(n_train=1200, n_test=200, seed=0)


@pytest.fixture(scope="session")
def split(synth):
    """The synthetic data split 1000 train / 200 val / 200 test."""
    return split_data(synth, val_size=200, seed=0)


@pytest.fixture(scope="session")
def small_split():
    """A smaller split (300 train / 100 val / 100 test) for quick runs."""
    return split_data(synthetic_cifar(n_train=400, n_test=100, seed=1),
                      val_size=100, seed=0)


def tiny_config(**kw) -> TrainConfig:
    """A config that trains the tiny CNN for one quick epoch on CPU."""
    base = dict(TINY_MODEL, lr=0.05, batch_size=64, epochs=1, augment="none",
                scheduler="constant", weight_decay=0.0, amp=False)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def cfg_factory():
    """:func:`tiny_config` as a fixture."""
    return tiny_config

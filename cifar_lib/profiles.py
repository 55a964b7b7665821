"""Run profiles (smoke, cpu, full) and where each one writes its outputs.

A profile is chosen in one place: the ``profile`` argument, else the
environment variable ``CIFAR_LIB_PROFILE``, else ``full`` on a GPU and ``cpu``
without one. Notebooks put it in their ``parameters`` cell and derive every
size from the returned :class:`Profile`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Profile:
    """Sizes shared by every notebook of one profile, and its output root."""

    name: str
    data: str                  # "synthetic" (made in memory) or "cifar10"
    train_size: int | None     # images kept from the 45k train split (None: all)
    val_size: int              # images held out of the 50k train set
    test_size: int | None      # test images used (None: all 10k)
    epochs: int                # epochs of a standard run
    seeds: tuple[int, ...]     # seeds averaged over where a table has spread
    batch_size: int
    root: Path                 # figures/, results/, weights/ live under it

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def weights(self) -> Path:
        return self.root / "weights"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    def with_(self, **kw) -> "Profile":
        """A copy with some fields changed (for a one-off smaller run)."""
        return replace(self, **kw)


def _scratch() -> Path:
    return Path(os.environ.get("CIFAR_LIB_SCRATCH", REPO / "runs" / "smoke"))


def _profiles() -> dict[str, Profile]:
    return {
        # Synthetic data, one epoch: every notebook in about a minute on 2 cores.
        "smoke": Profile("smoke", "synthetic", train_size=640, val_size=160,
                         test_size=320, epochs=1, seeds=(0,), batch_size=64,
                         root=_scratch()),
        # Real data, small subsets and few epochs: a laptop without a GPU.
        "cpu": Profile("cpu", "cifar10", train_size=5000, val_size=2000,
                       test_size=2000, epochs=4, seeds=(0,), batch_size=128,
                       root=REPO / "runs" / "cpu"),
        # The real study on a GPU, sized with `python -m cifar_lib plan` to
        # about 15 minutes on one H100 (a third seed and the heaviest
        # variants are in the opt-in extended set).
        "full": Profile("full", "cifar10", train_size=None, val_size=5000,
                        test_size=None, epochs=8, seeds=(0, 1),
                        batch_size=512, root=REPO),
    }


PROFILES = tuple(_profiles())


def default_profile_name() -> str:
    """``CIFAR_LIB_PROFILE`` if set, else ``full`` with CUDA, else ``cpu``."""
    env = os.environ.get("CIFAR_LIB_PROFILE")
    if env:
        return env
    import torch
    return "full" if torch.cuda.is_available() else "cpu"


def get_profile(name: "str | Profile | None" = None) -> Profile:
    """The profile called ``name`` (default: see :func:`default_profile_name`);
    a Profile passes through unchanged.

    Used by notebooks 00-05 (every report section)."""
    if isinstance(name, Profile):
        return name
    name = name or default_profile_name()
    profiles = _profiles()
    if name not in profiles:
        raise ValueError(f"unknown profile {name!r}; choose one of "
                         f"{', '.join(profiles)} (argument or CIFAR_LIB_PROFILE)")
    return profiles[name]

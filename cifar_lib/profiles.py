"""Run profiles (smoke, cpu, full) and where each one writes its outputs.

A profile is chosen in one place: the ``profile`` argument, else the
environment variable ``CIFAR_LIB_PROFILE``, else ``full`` on a GPU and ``cpu``
without one. Notebooks put it in their ``parameters`` cell and derive every
size from the returned :class:`Profile`.

The cpu and full profiles write into committed folders (``runs/cpu/``, the
repository root). Runs of your own go elsewhere with the same sizes::

    P = get_profile("cpu", root="runs/scratch/mine")   # or P.with_(root=...)

(a relative root is taken from the repository root; ``runs/scratch/`` is
ignored by git). ``python -m cifar_lib train`` writes to
:func:`scratch_root` unless given ``--out``.
"""
from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Images in CIFAR-10's train and test sets: the bounds of a profile's sizes.
CIFAR10_TRAIN, CIFAR10_TEST = 50_000, 10_000
DATA_KINDS = ("synthetic", "cifar10")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_count(what: str, value, low: int = 1, high: int | None = None,
                where: str = "", none_means: str | None = None) -> None:
    """Raise ValueError unless ``value`` is an integer in [low, high] (or
    None where ``none_means`` says what None stands for); the message names
    ``what``, the valid range and the value, e.g. "--epochs must be >= 1
    (got 0)" or "train_size must be between 1 and 48000 for the cpu profile
    (got -5)"."""
    if value is None and none_means is not None:
        return
    if _is_int(value) and value >= low and (high is None or value <= high):
        return
    span = f">= {low}" if high is None else f"between {low} and {high}"
    other = f", or None for {none_means}" if none_means is not None else ""
    kind = "" if _is_int(value) else "an integer "
    raise ValueError(f"{what} must be {kind}{span}{where}{other} (got {value!r})")


@dataclass(frozen=True)
class Profile:
    """Sizes shared by every notebook of one profile, and its output root."""

    name: str
    data: str                  # "synthetic" (made in memory) or "cifar10"
    train_size: int | None     # training images kept (None: all, 50k - val_size)
    val_size: int              # images held out of the 50k train set
    test_size: int | None      # test images used (None: all 10k)
    epochs: int                # epochs of a standard run
    seeds: tuple[int, ...]     # seeds averaged over where a table has spread
    batch_size: int
    root: Path                 # figures/, results/, weights/ live under it
                               # (a relative root: from the repository root)

    def __post_init__(self):
        """Reject sizes and counts that cannot train: a clear ValueError that
        names the field, its valid range and the value."""
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a profile needs a name (got {self.name!r})")
        where = f" for the {self.name} profile"
        if self.data not in DATA_KINDS:
            raise ValueError(f"data must be one of {', '.join(DATA_KINDS)}{where} "
                             f"(got {self.data!r})")
        cifar = self.data == "cifar10"
        check_count("val_size", self.val_size, 1, CIFAR10_TRAIN - 1 if cifar else None,
                    where)
        check_count("train_size", self.train_size, 1, self.max_train_size, where,
                    none_means="all" if cifar else None)
        check_count("test_size", self.test_size, 1, CIFAR10_TEST if cifar else None,
                    where, none_means="all" if cifar else None)
        check_count("epochs", self.epochs, 1, where=where)
        check_count("batch_size", self.batch_size, 1, where=where)
        seeds = tuple(self.seeds) if isinstance(self.seeds, list) else self.seeds
        if not isinstance(seeds, tuple) or not seeds:
            raise ValueError(f"seeds must be a non-empty tuple of integers >= 0{where} "
                             f"(got {self.seeds!r})")
        for seed in seeds:
            check_count("each seed", seed, 0, 2**32 - 1, where)
        for field in ("train_size", "val_size", "test_size", "epochs", "batch_size"):
            value = getattr(self, field)
            if value is not None and type(value) is not int:  # numpy's: plain int
                object.__setattr__(self, field, int(value))
        object.__setattr__(self, "seeds", tuple(int(s) for s in seeds))
        root = Path(self.root)
        if not root.is_absolute():  # notebooks, papermill and the CLI start in
            root = REPO / root      # different folders: one place for all
        if root != self.root:
            object.__setattr__(self, "root", root)

    @property
    def max_train_size(self) -> int | None:
        """The most training images the profile can keep: CIFAR-10's 50,000
        less the validation images (None: synthetic data has no bound)."""
        return CIFAR10_TRAIN - self.val_size if self.data == "cifar10" else None

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
        """A copy with some fields changed (for a one-off smaller run, or
        ``root=`` for outputs elsewhere: a relative root is taken from the
        repository root); the new values are checked as at construction
        (ValueError)."""
        return replace(self, **kw)


def _scratch() -> Path:
    env = os.environ.get("CIFAR_LIB_SCRATCH")
    return Path(env).absolute() if env else REPO / "runs" / "smoke"


def scratch_root(name: str) -> Path:
    """Where ``python -m cifar_lib train`` writes a run of profile ``name``
    unless given ``--out``: ``runs/scratch/<name>/`` (ignored by git), or
    ``$CIFAR_LIB_SCRATCH/train/<name>/`` when that variable is set. Never a
    committed folder: one-off runs change no tracked file."""
    env = os.environ.get("CIFAR_LIB_SCRATCH")
    base = Path(env).absolute() / "train" if env else REPO / "runs" / "scratch"
    return base / name


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


def get_profile(name: "str | Profile | None" = None, root=None) -> Profile:
    """The profile called ``name`` (default: see :func:`default_profile_name`);
    a Profile passes through unchanged.

    With ``root`` its outputs (figures/, results/, weights/) go there instead
    of the profile's own folder, with the same sizes: e.g.
    ``get_profile("cpu", root="runs/scratch/mine")`` for runs of your own
    that leave the committed ``runs/cpu/`` as it is (a relative root is
    taken from the repository root).

    Used by notebooks 00-05 (every report section)."""
    if isinstance(name, Profile):
        return name if root is None else name.with_(root=root)
    name = name or default_profile_name()
    profiles = _profiles()
    if name not in profiles:
        raise ValueError(f"unknown profile {name!r}; choose one of "
                         f"{', '.join(profiles)} (argument or CIFAR_LIB_PROFILE)")
    return profiles[name] if root is None else profiles[name].with_(root=root)

"""Section 3's runs: sizes per profile, the recipe, the named experiments.

The experiment :data:`DESSILBI` trains the same VGG-16-BN with SLBI and with
SGD, one of each per seed; :func:`finished` finds those runs on disk,
:func:`by_label` groups them per optimizer. :data:`SWEEP` trains SLBI at
each threshold of ``Sizes.sweep`` (the one of :data:`DESSILBI` among them,
found on disk, not trained twice); :func:`sweep_finished` finds them.
"""
from __future__ import annotations

import dataclasses
import functools

from cifar_lib.engine import TrainConfig
from cifar_lib.experiments import Experiment, records
from cifar_lib.optim import lr_factor
from cifar_lib.profiles import Profile

EXPERIMENT = "dessilbi"
SWEEP_EXPERIMENT = "dessilbi_sweep"
SWEEP_VERSION = 1                        # bump when measure_sweep() changes what it stores
MEASURE_VERSION = 1                      # bump when measure() changes what it stores
# (label, model trained by, pruning order) of the curves in the pruning figure
METHODS = (("SLBI, path order", "SLBI", "path"),
           ("SLBI, |BN scale|", "SLBI", "bn"),
           ("SLBI, filter norm", "SLBI", "magnitude"),
           ("SGD, |BN scale|", "SGD", "bn"),
           ("SGD, filter norm", "SGD", "magnitude"))
FULL_EPOCHS = 12      # the full profile's training length: the one number to size it


@dataclasses.dataclass(frozen=True)
class Sizes:
    """The study's sizes and hyper-parameters for one profile.

    ``entry_at``: the relative thresholds put a filter that kept its initial
    norm and direction into Gamma's support at this share of the run's path
    time (:func:`path_time`); lambda_conv/lambda_linear follow from it.
    ``sweep``: the entry_at values of the lambda sweep (entry_at among them).
    """
    width: float
    epochs: int
    batch_size: int
    train_size: int
    seeds: tuple
    fractions: tuple
    bn_batches: int          # training batches for BN re-estimation (0: skip)
    finetune_steps: int      # steps of the short fine-tune after pruning (0: skip)
    model: str = "vgg16_bn"
    lr: float = 0.1
    kappa: float = 1.0
    nu: float = 100.0        # the reference code's default (its CIFAR VGG script: 500)
    z_lr_floor: float = 0.1  # the Z update's lr never drops below 10% of lr
    entry_at: float = 0.5
    finetune_fraction: float = 0.5   # every conv layer pruned this much, then fine-tuned
    finetune_lr: float = 0.01
    panels: tuple = (1, 7, 13)       # conv layers pruned one at a time (1-based)
    show_layer: int = 1              # conv layer whose filters are drawn
    sweep: tuple = ()                # entry_at of each SLBI run of the lambda sweep

    def __post_init__(self):
        if self.finetune_fraction not in self.fractions:
            raise ValueError(f"finetune_fraction {self.finetune_fraction} must be one of "
                             f"the pruning fractions {self.fractions}")
        if self.sweep and self.entry_at not in self.sweep:
            raise ValueError(f"the sweep {self.sweep} must hold entry_at {self.entry_at}")

    @property
    def warmup_epochs(self) -> float:
        return min(1, self.epochs / 4)

    @property
    def lambda_conv(self) -> float:
        return self.lambda_at(self.entry_at)

    def lambda_at(self, entry_at: float) -> float:
        """The relative threshold lambda that puts an unchanged filter into
        Gamma's support at the share ``entry_at`` of the path time."""
        return round(entry_at * path_time(self), 6)

    @property
    def lambda_linear(self) -> float:
        return self.lambda_conv


# entry_at per profile, from ||Z_g|| / (median initial filter norm * path time)
# measured per layer without entries (H100, nu 100, floor 0.1): 15 epochs on the
# cpu profile's 5000 images, layer medians 0.88-2.37 (10-90% within a layer
# about +-5-10%); 15 epochs on 45k images, 1.35 (conv1) down to 0.28 (deep
# layers, whose filter norms decay to 10-15% of their initial value). A single
# entry_at below the deepest layers' value keeps every layer non-empty.
# entry_at sets how sparse Gamma ends, so it is swept (``sweep``): each value
# is one more SLBI run per seed. The cpu profile trains 10 epochs (15 before)
# to train from scratch in about 80 minutes on 2 cores; entry_at is a
# fraction of the path time, which counts the epochs.
_PROFILE_SIZES = {
    "smoke": dict(width=1 / 16, epochs=2, batch_size=64, fractions=(0.0, 0.3, 0.5, 0.9),
                  bn_batches=2, finetune_steps=2, entry_at=0.5, sweep=(0.3, 0.5, 0.8)),
    "cpu": dict(width=0.25, epochs=10, batch_size=128, fractions=(0.0, 0.25, 0.5, 0.75, 0.9),
                bn_batches=10, finetune_steps=30, entry_at=0.9, sweep=(0.6, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2)),
    "full": dict(width=1.0, epochs=FULL_EPOCHS, batch_size=128, bn_batches=40,
                 fractions=(0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9), finetune_steps=200,
                 entry_at=0.3, sweep=(0.2, 0.3, 0.45)),
}


def path_time(S: Sizes) -> float:
    """``sum over steps of max(lr_t, floor) / nu``: the integral Z_g/||W_g|| reaches
    for a filter of constant norm and direction (cosine schedule with warm-up)."""
    return _path_time(S.train_size // S.batch_size, S.epochs, S.warmup_epochs,
                      S.lr, S.z_lr_floor, S.nu)


@functools.lru_cache(maxsize=32)
def _path_time(per_epoch, epochs, warmup_epochs, lr, floor, nu) -> float:
    total, warm = per_epoch * epochs, round(warmup_epochs * per_epoch)
    return sum(max(lr * lr_factor("cosine", t, total, per_epoch) *
                   (min(1.0, (t + 1) / warm) if warm else 1.0), floor * lr)
               for t in range(total)) / nu


def sizes(P: Profile) -> Sizes:
    """The study's sizes and hyper-parameters for profile ``P``.

    Used by notebook 05 (report section 3).
    """
    kw = _PROFILE_SIZES.get(P.name, _PROFILE_SIZES["full"])
    train = P.train_size or 45000
    return Sizes(seeds=tuple(P.seeds), train_size=train, **kw)


def recipe(P: Profile, optimizer: str, seed: int = 0,
           entry_at: float | None = None) -> TrainConfig:
    """VGG-16-BN, momentum 0.9 (no Nesterov, as the reference), wd 5e-4 on weights
    only, cosine with warm-up, crop+flip; SLBI with relative thresholds (that
    put an unchanged filter into Gamma's support at ``entry_at`` of the path
    time; default: the profile's)."""
    S = sizes(P)
    optim_kw = {}
    if optimizer == "slbi":
        lam = S.lambda_at(S.entry_at if entry_at is None else entry_at)
        optim_kw = dict(kappa=S.kappa, nu=S.nu, lambda_conv=lam,
                        lambda_linear=lam, relative=True,
                        z_lr_floor=S.z_lr_floor)
    return TrainConfig(model=S.model, model_kw={"width": S.width},
                       optimizer=optimizer, optim_kw=optim_kw, lr=S.lr,
                       momentum=0.9, nesterov=False, weight_decay=5e-4,
                       norm_bias_decay=False, scheduler="cosine",
                       warmup_epochs=S.warmup_epochs, epochs=S.epochs,
                       batch_size=S.batch_size, augment="crop_flip", seed=seed, keep="last")


def _runs(P: Profile) -> list[tuple[str, TrainConfig]]:
    """SLBI and SGD runs, one of each per seed."""
    return [(label, recipe(P, opt, s)) for s in sizes(P).seeds
            for label, opt in (("SLBI", "slbi"), ("SGD", "sgd"))]


DESSILBI = Experiment(EXPERIMENT, "05_dessilbi", "3", "dessilbi", _runs)


def sweep_label(entry_at: float) -> str:
    """The label of the sweep's SLBI run at ``entry_at``."""
    return f"SLBI, entry {entry_at:g}"


def _sweep_runs(P: Profile) -> list[tuple[str, TrainConfig]]:
    """SLBI at every entry_at of the sweep but the profile's own (that one is
    the SLBI run of :data:`DESSILBI`), one run per seed."""
    S = sizes(P)
    return [(sweep_label(e), recipe(P, "slbi", s, e)) for e in S.sweep if e != S.entry_at
            for s in S.seeds]


SWEEP = Experiment(SWEEP_EXPERIMENT, "05_dessilbi", "3", "dessilbi", _sweep_runs)


def finished(P: Profile) -> list[dict]:
    """The finished (``ok``) runs of the experiment on disk, in its order.

    Used by notebook 05 (report section 3).
    """
    return records(DESSILBI, P, ok_only=True)


def sweep_finished(P: Profile) -> list[dict]:
    """The finished SLBI runs of the lambda sweep, the profile's own entry_at
    (from :data:`DESSILBI`) among them, ordered by entry_at and seed; each
    with its ``entry_at`` (``experiment`` says where its weights are).

    Used by notebook 05 (report section 3).
    """
    S = sizes(P)
    own = [{**r, "label": sweep_label(S.entry_at), "entry_at": S.entry_at}
           for r in by_label(finished(P)).get("SLBI", [])]
    at = {sweep_label(e): e for e in S.sweep}
    more = [{**r, "entry_at": at[r["label"]]} for r in records(SWEEP, P, ok_only=True)]
    return sorted(own + more, key=lambda r: (r["entry_at"], r["config"]["seed"]))


def by_label(recs: list[dict]) -> dict[str, list[dict]]:
    """Records grouped by label (``SLBI``, ``SGD``), each in seed order."""
    out: dict[str, list[dict]] = {}
    for rec in recs:
        out.setdefault(rec["label"], []).append(rec)
    return out


def first_seed(recs: list[dict]) -> dict[str, dict]:
    """The first seed's record of each label (for the curve and path plots).

    Used by notebook 05 (report section 3).
    """
    return {label: group[0] for label, group in by_label(recs).items()}

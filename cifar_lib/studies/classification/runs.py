"""Section 1's runs: sizes per profile, recipes, the named experiments.

Each named experiment maps a profile to (label, config) pairs
(:func:`configs`); sizes come from the profile (:func:`sizes`) so the same
experiment runs at smoke, cpu and full scale.
"""
from __future__ import annotations

from dataclasses import dataclass

from cifar_lib.engine import TrainConfig
from cifar_lib.experiments import Experiment, Run
from cifar_lib.profiles import Profile

# (label, model, options) of the architecture comparison per profile.
ARCH_SMOKE = (("lenet", "lenet", {}), ("cnn3", "cnn3", {}),
              ("fastnet", "fastnet", {"width": 0.125}),
              ("vgg_a", "vgg_a", {"width": 0.125}), ("vgg_a_bn", "vgg_a_bn", {"width": 0.125}),
              ("resnet18", "resnet18", {}), ("canet_tiny", "canet_tiny", {}))
ARCH_CPU = (("lenet", "lenet", {}), ("cnn3", "cnn3", {}), ("cnn3_64", "cnn3_64", {}),
            ("fastnet", "fastnet", {"width": 0.5}), ("resnet_s2", "resnet_s2", {}),
            ("vgg_a", "vgg_a", {}), ("vgg_a_bn", "vgg_a_bn", {}),
            ("resnet18", "resnet18", {}), ("canet_tiny", "canet_tiny", {}))
# Every architecture of the earlier course reports, in the full profile's
# 20-minute set (one seed each except the core models); WRN-28-10 with fewer
# epochs. The heaviest variants are in the opt-in extended set (EXTENDED).
# Cheap models first: the budgeted runner trains in this order.
ARCH_FULL = tuple((m, m, {}) for m in (
    "lenet", "cnn3", "fastnet", "vgg_a", "vgg_a_bn", "resnet18", "canet_tiny",
    "shufflenetv2", "cnn3_64", "resnet_s2", "resnet_s3", "canet_light", "mobilenetv2",
    "resnext29_2x32d", "preactresnet18", "dpn26", "canet_base", "resnet34", "dla",
    "resnet50", "densenet121", "wrn28_10"))
# Models trained with every seed of the profile; the rest with one.
ARCH_CORE = frozenset({"lenet", "cnn3", "fastnet", "vgg_a", "vgg_a_bn", "resnet18"})
VIS_MODELS = ("resnet18", "fastnet")   # notebook 03's models (and CANet's attention)
ATTENTION_MODEL = "canet_tiny"


@dataclass(frozen=True)
class Sizes:
    """Everything section 1 varies with the profile."""

    epochs: int               # the architectures' (the core models', in full)
    batch_size: int
    seeds: tuple
    fast_width: float         # FastNet channel multiplier of the ablations
    fast_epochs: int          # epochs of every ablation run
    batch_sizes: tuple        # the batch-size ablation (plus the baseline's)
    ema_decay: float          # the regularisation ablation's EMA (few steps: short horizon)
    arch_models: tuple        # (label, model, options) of the architecture comparison
    zoo_epochs: int | None = None  # architectures outside ARCH_CORE (None: ``epochs``)
    arch_epochs: tuple = ()   # (label, epochs): exceptions to ``zoo_epochs``

    def arch_epochs_of(self, label: str) -> int:
        """Epochs the architecture comparison trains ``label`` for."""
        if self.zoo_epochs is None or label in ARCH_CORE:
            return self.epochs
        return dict(self.arch_epochs).get(label, self.zoo_epochs)


# Full: sized with `python -m cifar_lib plan` so the whole study fits about
# 15 minutes on an H100. The core models train the profile's 8 epochs with 2
# seeds, the rest of the zoo 4 epochs with one (WRN-28-10, 10 GFLOPs: 2); the
# table shows each model's epochs, and the extended set trains the zoo at 8.
_PROFILE_SIZES = {
    "smoke": dict(fast_width=0.125, fast_epochs=1, batch_sizes=(32, 64), ema_decay=0.9,
                  arch_models=ARCH_SMOKE),
    "cpu": dict(fast_width=0.5, fast_epochs=4, batch_sizes=(32, 64, 128, 256),
                ema_decay=0.98, arch_models=ARCH_CPU),
    "full": dict(fast_width=1.0, fast_epochs=6, batch_sizes=(128, 256, 512, 1024),
                 ema_decay=0.999, arch_models=ARCH_FULL, zoo_epochs=4,
                 arch_epochs=(("wrn28_10", 2),)),
}


def sizes(profile: Profile) -> Sizes:
    """Section 1's sizes for a profile (another profile name: full's models,
    its own epochs).

    Used by notebooks 01, 02 (report sections 1.2, 1.3)."""
    P = profile
    kw = _PROFILE_SIZES.get(P.name, dict(fast_width=1.0, fast_epochs=P.epochs, batch_sizes=(),
                                         ema_decay=0.999, arch_models=ARCH_FULL))
    return Sizes(epochs=P.epochs, batch_size=P.batch_size, seeds=tuple(P.seeds), **kw)


# ---------------------------------------------------------------- recipes


def fast_recipe(profile: Profile, **over) -> TrainConfig:
    """The quick-ablation baseline: FastNet, Nesterov SGD, label smoothing
    0.2, flip-TTA, one warm-up epoch then linear decay.

    Used by notebook 02 (report section 1.3)."""
    S = sizes(profile)
    cfg = dict(model="fastnet", model_kw={"width": S.fast_width},
               optimizer="sgd", lr=0.8, momentum=0.9, nesterov=True,
               weight_decay=5e-4, scheduler="linear",
               warmup_epochs=min(1.0, S.fast_epochs / 4), label_smoothing=0.2,
               epochs=S.fast_epochs, batch_size=S.batch_size, augment="crop_flip",
               tta_flip=True)
    cfg.update(over)
    return TrainConfig(**cfg)


def arch_recipe(profile: Profile, model: str, model_kw: dict, seed: int = 0,
                epochs: int | None = None) -> TrainConfig:
    """One recipe for every architecture: Nesterov SGD, lr 0.05 per 128
    images, weight decay 5e-4 (not on norm weights and biases), warm-up then
    cosine, crop+flip.

    Used by notebook 01 (report section 1.2)."""
    bs = profile.batch_size
    epochs = epochs or profile.epochs
    return TrainConfig(model=model, model_kw=model_kw, optimizer="sgd",
                       lr=0.05 * bs / 128, momentum=0.9, nesterov=True,
                       weight_decay=5e-4, scheduler="cosine",
                       warmup_epochs=min(1.0, epochs / 4),
                       epochs=epochs, batch_size=bs, augment="crop_flip",
                       seed=seed)


def arch_models(profile: Profile) -> list[tuple[str, str, dict]]:
    """(label, model, options) trained by the architecture comparison.

    Used by notebook 01 (report section 1.2).
    """
    return list(sizes(profile).arch_models)


def _seeded(profile: Profile, variants: dict[str, TrainConfig]):
    return [(label, cfg.replace(seed=s)) for label, cfg in variants.items()
            for s in profile.seeds]


# ---------------------------------------------------------------- experiments


def architectures(profile: Profile):
    """Every model of the profile's list with one shared recipe."""
    S, out = sizes(profile), []
    for label, model, kw in S.arch_models:
        seeds = S.seeds if label in ARCH_CORE else S.seeds[:1]
        out += [(label, arch_recipe(profile, model, kw, s, S.arch_epochs_of(label)))
                for s in seeds]
    return out


# The opt-in extended set of the full profile (`plan --extended`,
# `run --extended`): the heaviest variants, longer schedules, a third seed.
EXTENDED_MODELS = ("resnext29_8x64d", "canet_pro", "resnext29_32x4d", "resnext29_2x64d",
                   "resnext50_2x40d", "resnext50_8x14d", "resnext50_32x4d", "wrn16_8")
EXTENDED_SEEDS = (2,)
EXTENDED = ("architectures_extended",)


def architectures_extended(profile: Profile):
    """Heavy models, the zoo at the core's epochs, and a third seed of the core."""
    S = sizes(profile)
    out = [(m, arch_recipe(profile, m, {}, 0)) for m in EXTENDED_MODELS]
    out += [(label, arch_recipe(profile, model, kw, 0)) for label, model, kw
            in S.arch_models if label not in ARCH_CORE]
    out += [(label, arch_recipe(profile, model, kw, s))
            for label, model, kw in S.arch_models if label in ARCH_CORE
            for s in EXTENDED_SEEDS]
    return out


def ablations(profile: Profile) -> dict[str, dict[str, TrainConfig]]:
    """Each ablation: variants of the FastNet baseline changing one factor."""
    S, base = sizes(profile), fast_recipe(profile)
    lr = base.lr
    return {
        "optimizers": {
            "SGD + Nesterov momentum (baseline)": base,
            "Adam": base.replace(optimizer="adam", lr=2e-3, weight_decay=0.0),
            "AdamW": base.replace(optimizer="adamw", lr=2e-3, weight_decay=0.05),
            "sign-SGD (signum)": base.replace(optimizer="signsgd", lr=1e-3, weight_decay=0.0),
            "AdamW then SGD at 50%": base.replace(
                optimizer="adamw_sgd", lr=2e-3, weight_decay=5e-4,
                optim_kw={"switch_at": 0.5, "sgd_lr_scale": lr / 2e-3}),
        },
        "schedulers": {
            "warm-up + linear decay (baseline)": base,
            "constant": base.replace(scheduler="constant", warmup_epochs=0.0),
            "step (x0.1 every third)": base.replace(scheduler="step", warmup_epochs=0.0),
            "plateau (x0.1, patience 1)": base.replace(
                scheduler="plateau", warmup_epochs=0.0, sched_kw={"patience": 1}),
            "cosine": base.replace(scheduler="cosine", warmup_epochs=0.0),
            "exponential (x0.7 per epoch)": base.replace(
                scheduler="exponential", warmup_epochs=0.0, sched_kw={"gamma": 0.7}),
            "one-cycle": base.replace(scheduler="onecycle", warmup_epochs=0.0),
        },
        "losses": {
            "label smoothing 0.2 (baseline)": base,
            "cross-entropy": base.replace(label_smoothing=0.0),
            "focal (gamma 2)": base.replace(loss="focal", label_smoothing=0.0),
            "MSE on one-hot": base.replace(loss="mse", label_smoothing=0.0),
        },
        "activations": {
            "GELU (baseline)": base,
            **{name: base.replace(model_kw={**base.model_kw, "act": a})
               for name, a in (("ReLU", "relu"), ("LeakyReLU (0.1)", "leaky_relu"),
                               ("ELU", "elu"))},
        },
        "regularisation": {
            "weight decay 5e-4 (baseline)": base,
            "no weight decay": base.replace(weight_decay=0.0),
            "L1 5e-6": base.replace(l1=5e-6),
            "dropout 0.2": base.replace(model_kw={**base.model_kw, "dropout": 0.2}),
            "gradient clipping at norm 1": base.replace(grad_clip=1.0),
            "SWA over the last 25%": base.replace(swa_start=0.75),
            "EMA of weights": base.replace(ema=S.ema_decay),
        },
        "augmentation": {
            "none": base.replace(augment="none"),
            "flip": base.replace(augment="flip"),
            "crop + flip (baseline)": base,
            "crop + flip + erasing": base.replace(augment="crop_flip_erase"),
            "crop + flip + mixup": base.replace(augment="crop_flip_mixup"),
            "crop + flip + cutmix": base.replace(augment="crop_flip_cutmix"),
            "crop + flip + rotation (15 degrees)": base.replace(augment="crop_flip_rotate"),
            "crop + flip, no normalisation": base.replace(normalize=False),
        },
        "lr_grid": {
            f"Adam lr={v:g}, {s}": base.replace(
                optimizer="adam", lr=v, weight_decay=0.0, scheduler=s,
                warmup_epochs=0.0, sched_kw={"step_size": max(1, base.epochs // 2)} if s == "step" else {})
            for v in (1e-2, 1e-3, 1e-4) for s in ("step", "constant")
        },
        "batch_size": {
            f"batch {b}{' (baseline)' if b == base.batch_size else ''}": base.replace(batch_size=b)
            for b in sorted(set(S.batch_sizes) | {base.batch_size})
        },
    }


ABLATIONS = ("optimizers", "schedulers", "losses", "activations", "regularisation",
             "augmentation", "lr_grid", "batch_size")
# The experiment (and report table) of each ablation, spelled out so that
# every name report.md uses can be found in the code.
ABLATION_EXPERIMENTS = {
    "optimizers": "ablation_optimizers", "schedulers": "ablation_schedulers",
    "losses": "ablation_losses", "activations": "ablation_activations",
    "regularisation": "ablation_regularisation", "augmentation": "ablation_augmentation",
    "lr_grid": "ablation_lr_grid", "batch_size": "ablation_batch_size",
    "stem": "ablation_stem"}


def stem_variants(profile: Profile) -> dict[str, TrainConfig]:
    """ResNet-18 with the CIFAR stem (3x3, stride 1) against the ImageNet stem
    (7x7 stride 2 and a max-pool, course report E), all else equal."""
    base = arch_recipe(profile, "resnet18", {})
    return {"CIFAR stem 3x3 (baseline)": base,
            "ImageNet stem 7x7/2 + max-pool": base.replace(model_kw={"stem": "imagenet"})}



def configs(profile: Profile) -> dict[str, list[tuple[str, TrainConfig]]]:
    """Every named experiment of section 1: name -> (label, config) pairs.

    ``baseline`` (the FastNet recipe), ``architectures`` (and the opt-in
    ``architectures_extended``), one ``ablation_*`` per factor (FastNet,
    one thing changed from the baseline) and ``ablation_stem`` (ResNet-18),
    each over the profile's seeds.
    """
    P = profile
    out = {"baseline": _seeded(P, {"fastnet": fast_recipe(P)}),
           "architectures": architectures(P),
           "architectures_extended": architectures_extended(P)}
    for name, variants in ablations(P).items():
        out[ABLATION_EXPERIMENTS[name]] = _seeded(P, variants)
    out["ablation_stem"] = _seeded(P, stem_variants(P))
    return out


def _arch_runs(profile: Profile) -> list[Run]:
    """The architecture comparison: the core models are in the ``core``
    priority group, the rest of the zoo in ``zoo``."""
    return [Run(label, cfg, group="core" if label in ARCH_CORE else "zoo")
            for label, cfg in architectures(profile)]


def _experiment(name: str, notebook: str, section: str, group: str, **kw) -> Experiment:
    def make_runs(profile: Profile):
        return configs(profile)[name]
    return Experiment(name, notebook, section, group, make_runs, **kw)


BASELINE = _experiment("baseline", "02_ablations", "1.3", "ablations")
ARCHITECTURES = Experiment("architectures", "01_architectures", "1.2", "core", _arch_runs)
ARCHITECTURES_EXTENDED = _experiment("architectures_extended", "01_architectures", "1.2",
                                     "extended", extended=True)
ABLATION = {key: _experiment(name, "02_ablations", "1.3", "ablations")
            for key, name in ABLATION_EXPERIMENTS.items()}


def first_seed(recs: list[dict]) -> list[dict]:
    """One record per label: the lowest seed's (for learning-curve plots).

    Used by notebooks 01, 02 (report sections 1.2, 1.3).
    """
    out: dict[str, dict] = {}
    for r in sorted(recs, key=lambda r: r["config"]["seed"]):
        out.setdefault(r["label"], r)
    return list(out.values())

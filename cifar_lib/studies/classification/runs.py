"""Section 1's runs: sizes per profile, recipes, the named experiments.

Each named experiment maps a profile to (label, config) pairs
(:func:`configs`); sizes come from the profile (:func:`sizes`) so the same
experiment runs at smoke, cpu and full scale.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from cifar_lib.engine import TrainConfig
from cifar_lib.experiments import Experiment, Run
from cifar_lib.profiles import Profile
from cifar_lib.recipes import airbench_recipe

# (label, model, options) of the architecture comparison per profile.
ARCH_SMOKE = (("lenet", "lenet", {}), ("cnn3", "cnn3", {}),
              ("fastnet", "fastnet", {"width": 0.125}),
              ("vgg_a", "vgg_a", {"width": 0.125}), ("vgg_a_bn", "vgg_a_bn", {"width": 0.125}),
              ("resnet18", "resnet18", {}), ("canet_tiny", "canet_tiny", {}))
# cpu: FastNet, VGG-A and ResNet-18 at a quarter of their width, so that the
# profile trains from scratch in about 80 minutes on 2 cores (VGG-A, VGG-A +
# BN and ResNet-18 at full width took 121 of its 435 core-minutes).
ARCH_CPU = (("lenet", "lenet", {}), ("cnn3", "cnn3", {}), ("cnn3_64", "cnn3_64", {}),
            ("fastnet", "fastnet", {"width": 0.25}), ("resnet_s2", "resnet_s2", {}),
            ("vgg_a", "vgg_a", {"width": 0.25}), ("vgg_a_bn", "vgg_a_bn", {"width": 0.25}),
            ("resnet18", "resnet18", {"width": 0.25}), ("canet_tiny", "canet_tiny", {}))
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
    fast_batch: int = 0       # the ablation baseline's batch (0: the profile's)
    base_seeds: tuple = ()    # the ablation baseline's seeds (): the profile's
    long_factor: int = 4      # the long-budget control trains this many times the epochs
    final_epochs: int = 0     # the final model's epochs (0: long_factor x the baseline's)
    grid_growth: int = 2      # rates a rate grid may add beyond an end that wins (:func:`grown`)

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
                  arch_models=ARCH_SMOKE, long_factor=2, grid_growth=0),
    # cpu: one seed for every run, two for the baseline and the long-budget
    # control, so the report can tell a difference from seed noise; a grid
    # grows three times (FastNet's architecture rate still won at the top
    # after two: 0.05 -> 0.45 -> 1.35).
    "cpu": dict(fast_width=0.25, fast_epochs=4, batch_sizes=(32, 64, 128, 256),
                ema_decay=0.98, arch_models=ARCH_CPU, base_seeds=(0, 1), grid_growth=3),
    # full: airbench94's batch of 1024 for the FastNet ablations; the final
    # model is ResNet-18 with the shared recipe at 32 epochs.
    "full": dict(fast_width=1.0, fast_epochs=6, batch_sizes=(128, 256, 512, 1024),
                 ema_decay=0.99, arch_models=ARCH_FULL, zoo_epochs=4,
                 arch_epochs=(("wrn28_10", 2),), fast_batch=1024, final_epochs=32),
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
    """The old ablation baseline (before airbench94's recipe): FastNet,
    Nesterov SGD lr 0.8, label smoothing 0.2, flip-TTA, one warm-up epoch
    then linear decay, crop 4 + random flip, the profile's batch.

    Kept for comparison (benchmarks/recipe_cpu_check.py, step_ops.py)."""
    S = sizes(profile)
    cfg = dict(model="fastnet", model_kw={"width": S.fast_width},
               optimizer="sgd", lr=0.8, momentum=0.9, nesterov=True,
               weight_decay=5e-4, scheduler="linear",
               warmup_epochs=min(1.0, S.fast_epochs / 4), label_smoothing=0.2,
               epochs=S.fast_epochs, batch_size=S.batch_size, augment="crop_flip",
               tta_flip=True)
    cfg.update(over)
    return TrainConfig(**cfg)


def ablation_recipe(profile: Profile, **over) -> TrainConfig:
    """Section 1.3's baseline: FastNet with airbench94's recipe
    (:func:`cifar_lib.recipes.airbench_recipe`) at the profile's width,
    epochs and batch, in the lean loop: validated once, after training, and
    its last weights tested, as in airbench (per-epoch validation with six
    test-time views cost more than training itself on the cpu profile).

    Its rate is chosen on validation from three, grown beyond an end that
    wins (:func:`base_grid`, :func:`grown`), once those runs are stored (airbench's 11.5 per 1024 images was tuned for
    50,000 images and 10 epochs; a smaller profile takes far fewer steps);
    until then it is the centre.

    Used by notebook 02 (report section 1.3)."""
    cfg, _ = baseline_choice(profile)
    return cfg.replace(**over) if over else cfg


def base_grid(profile: Profile) -> list[TrainConfig]:
    """The baseline's rate grid around airbench94's rate (first seed),
    grown beyond an end that wins (:func:`grown`)."""
    S = sizes(profile)
    cfg = airbench_recipe(width=S.fast_width, epochs=S.fast_epochs,
                          batch_size=S.fast_batch or profile.batch_size)
    return grown(profile, [cfg.replace(lr=v) for v in rate_grid(cfg.lr)])


def baseline_choice(profile: Profile) -> tuple[TrainConfig, bool]:
    """(the baseline, whether its rate is final): see :func:`choose`."""
    return choose(profile, base_grid(profile))


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


def _seeded(profile: Profile, variants: dict[str, TrainConfig], seeds=None):
    return [(label, cfg.replace(seed=s)) for label, cfg in variants.items()
            for s in (seeds or profile.seeds)]


# ---------------------------------------------------------------- experiments


# The core model whose chosen rate each zoo model takes (the nearest by
# design: plain CNNs take CNN3's, the rest, all with BatchNorm, ResNet-18's).
NEAREST_CORE = {"cnn3_64": "cnn3"}


def nearest_core(label: str) -> str:
    """The core model whose rate the zoo model ``label`` takes."""
    return label if label in ARCH_CORE else NEAREST_CORE.get(label, "resnet18")


def arch_grid(profile: Profile) -> dict[str, list[TrainConfig]]:
    """Each core model of the profile's list: its rate grid around the
    shared rate (first seed)."""
    S = sizes(profile)
    out = {}
    for label, model, kw in S.arch_models:
        if label in ARCH_CORE:
            base = arch_recipe(profile, model, kw, S.seeds[0], S.arch_epochs_of(label))
            out[label] = grown(profile, [base.replace(lr=v) for v in rate_grid(base.lr)])
    return out


def architectures(profile: Profile) -> list[Run]:
    """Every model of the profile's list with one shared recipe; each core
    model's rate chosen on validation from three (the first seed trains
    the grid, the others the chosen rate); the zoo (one seed) at the rate
    chosen for its nearest core model."""
    S, out = sizes(profile), []
    grids = arch_grid(profile)
    chosen = {label: choose(profile, g) for label, g in grids.items()}
    for label, model, kw in S.arch_models:
        if label in grids:
            out += _tuned(profile, label, grids[label], S.seeds, group="core")
            continue
        core = nearest_core(label)
        shared = arch_recipe(profile, model, kw, S.seeds[0], S.arch_epochs_of(label))
        best, final = chosen.get(core, (shared, True))
        out.append(Run(label, shared.replace(lr=best.lr), group="zoo",
                       waits=None if final else f"the rate grid of {core}"))
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


# ---------------------------------------------------------------- rate grids
# A rate is chosen on validation: one seed (the profile's first) trains
# every rate of the grid, the others train at the chosen one.
LR_FACTORS = (1 / 3, 1.0, 3.0)


def rate_grid(lr: float) -> tuple:
    """The grid around ``lr``: a third, itself, three times (3 digits)."""
    return tuple(float(f"{lr * f:.3g}") for f in LR_FACTORS)


def grown(profile: Profile, candidates: list[TrainConfig]) -> list[TrainConfig]:
    """The rate grid ``candidates`` (ascending rates), grown by one rate
    beyond an end whose run is the best on validation, three times further
    out (a third, or three times, that rate), up to the profile's
    ``grid_growth`` rates: a choice at an end says only that the best rate
    may lie beyond it, so the grid follows it there. The added rate is
    listed once the grid it extends is stored (its runs are then pending
    again); the choice (:func:`choose`) is final once the best rate is
    inside the grid, or the grid has grown as far as it may."""
    grid = list(candidates)
    for _ in range(sizes(profile).grid_growth):
        best, final = choose(profile, grid)
        if not final or len(grid) < 2:
            break
        lrs = [c.lr for c in grid]
        if best.lr == max(lrs):
            grid.append(best.replace(lr=float(f"{best.lr * LR_FACTORS[-1]:.3g}")))
        elif best.lr == min(lrs):
            grid.insert(0, best.replace(lr=float(f"{best.lr * LR_FACTORS[0]:.3g}")))
        else:
            break
    return grid


def grid_score(rec: dict) -> float | None:
    """What a grid point is chosen by: the validation accuracy of the
    weights it tests (None for a failed or diverged run)."""
    from cifar_lib.health import record_failure
    if rec is None or record_failure(rec):
        return None
    m = rec.get("metrics", {})
    v = m.get("kept_val_acc", m.get("best_val_acc"))
    return None if v is None or v != v else float(v)


_FINISHED: dict = {}  # results folder -> (its files' stamps, finished runs by identity)


def _finished(results) -> dict:
    """The finished runs (ok, diverged or failed) under ``results`` by
    identity, read again only when a record file was added or changed (the
    experiments call :func:`choose` many times per listing), and checked
    once per listing within :func:`cifar_lib.store.pinned`."""
    from cifar_lib import store
    return store.memo(("finished", str(results)), lambda: _finished_now(results))


def _finished_now(results) -> dict:
    from pathlib import Path
    from cifar_lib import store
    stamps = []
    for p in sorted(Path(results).glob("*/*.json")):
        try:
            st = p.stat()
        except OSError:
            continue
        stamps.append((p.name, st.st_mtime_ns, st.st_size))
    stamps = tuple(stamps)
    cached = _FINISHED.get(str(results))
    if cached is None or cached[0] != stamps:
        recs = {store.identity(r["config"], r.get("tag"), {}): r
                for r in store.runs(results) if r.get("status") in ("ok", "diverged", "failed")}
        _FINISHED[str(results)] = cached = (stamps, recs)
    return cached[1]


def choose(profile: Profile, candidates: list[TrainConfig]):
    """The candidate with the best validation accuracy among stored runs,
    and whether the choice is final: (config, True) once every candidate
    has a record; (the middle candidate, False) before, or when all failed.

    Used by the rate grids of sections 1.2 and 1.3."""
    from cifar_lib import store
    recs = _finished(profile.results)
    got = [recs.get(store.identity(c.to_dict(), None, {})) for c in candidates]
    middle = candidates[len(candidates) // 2]
    if any(g is None for g in got):
        return middle, False
    scored = [(grid_score(g), i) for i, g in enumerate(got)]
    scored = [(v, i) for v, i in scored if v is not None]
    if not scored:
        return middle, True
    return candidates[max(scored)[1]], True


def _tuned(profile: Profile, label: str, candidates: list[TrainConfig], seeds,
           group: str | None = None) -> list[Run]:
    """The grid (first seed, each rate labelled) and the other seeds at the
    chosen rate (waiting while the grid is incomplete)."""
    out = [Run(label, c, group=group) for c in candidates]
    best, final = choose(profile, candidates)
    out += [Run(label, best.replace(seed=s), group=group,
                waits=None if final else f"the rate grid of {label}")
            for s in seeds[1:]]
    return out


# ---------------------------------------------------------------- ablations


def optimizer_variants(profile: Profile) -> dict[str, TrainConfig]:
    """Each optimizer at the centre of its rate grid. Adam, AdamW and
    sign-SGD take the usual step units (no per-1024 decoupling) and no lr
    multiplier on BatchNorm biases; AdamW then SGD switches to the
    baseline's SGD step size."""
    from cifar_lib.engine import optim_args
    base = ablation_recipe(profile)
    plain = dict(decoupled=False, norm_bias_lr=1.0, optim_kw={})
    sgd_lr, _ = optim_args(base, base.batch_size)
    return {
        "SGD + Nesterov momentum (baseline)": base,
        "Adam": base.replace(optimizer="adam", lr=2e-3, weight_decay=0.0, **plain),
        "AdamW": base.replace(optimizer="adamw", lr=2e-3, weight_decay=0.05, **plain),
        "sign-SGD (signum)": base.replace(optimizer="signsgd", lr=1e-3, weight_decay=0.0,
                                          **plain),
        "AdamW then SGD at 50%": base.replace(
            optimizer="adamw_sgd", lr=2e-3, weight_decay=5e-4, decoupled=False,
            norm_bias_lr=1.0, optim_kw={"switch_at": 0.5,
                                        "sgd_lr_scale": float(f"{sgd_lr / 2e-3:.4g}")}),
    }


def optimizer_runs(profile: Profile) -> list[Run]:
    """Each optimizer's rate chosen on validation from three values (grown
    beyond an end that wins: :func:`grown`)."""
    out = []
    for name, cfg in optimizer_variants(profile).items():
        grid = (base_grid(profile) if "(baseline)" in name else
                grown(profile, [cfg.replace(lr=v) for v in rate_grid(cfg.lr)]))
        out += _tuned(profile, name, grid, profile.seeds)
    return out


def _losses(base: TrainConfig) -> dict[str, TrainConfig]:
    """The loss ablation around ``base`` (label smoothing 0.2)."""
    return {
        "label smoothing 0.2 (baseline)": base,
        "cross-entropy": base.replace(label_smoothing=0.0),
        "focal (gamma 2)": base.replace(loss="focal", label_smoothing=0.0),
        "MSE on one-hot": base.replace(loss="mse", label_smoothing=0.0),
    }


def _activations(base: TrainConfig) -> dict[str, TrainConfig]:
    """The activation ablation around ``base`` (FastNet's GELU)."""
    return {
        "GELU (baseline)": base,
        **{name: base.replace(model_kw={**base.model_kw, "act": a})
           for name, a in (("ReLU", "relu"), ("LeakyReLU (0.1)", "leaky_relu"),
                           ("ELU", "elu"))},
    }


def factor_name(key: str) -> str:
    """An ablation's key as the report names it: 'batch size',
    'Adam lr x schedule grid', 'optimizers'."""
    return {"lr_grid": "Adam lr x schedule grid"}.get(key, key.replace("_", " "))


def step_label(cfg: TrainConfig) -> str:
    """The step schedule's row label, with the step size it takes at
    ``cfg``'s epochs (:func:`cifar_lib.optim.lr_factor`: a third of the
    whole epochs, at least one), so that it reads as the rate it ran at."""
    size = cfg.sched_kw.get("step_size") or max(1, int(cfg.epochs) // 3)
    return f"step (x0.1 every {'epoch' if size == 1 else f'{size} epochs'})"


def ablations(profile: Profile) -> dict[str, dict[str, TrainConfig]]:
    """Each ablation: variants of the FastNet baseline changing one factor
    (the optimizers, with their rate grids, are :func:`optimizer_runs`)."""
    S, base = sizes(profile), ablation_recipe(profile)
    aug = dict(base.augment)
    ab_aug = {k: v for k, v in aug.items() if k in ("crop", "flip", "alt_flip")}
    return {
        "schedulers": {
            "triangle per step (baseline)": base,
            "constant": base.replace(scheduler="constant", sched_kw={}),
            step_label(base): base.replace(scheduler="step", sched_kw={}),
            # patience 0 and a 10% threshold so that it cuts at this budget
            # (at 2% it never cut in the cpu profile: the validation loss
            # fell 19%, 6% and 14% in its epochs); the table shows how often
            # it did. It reads each epoch's validation loss, so it alone
            # validates every epoch.
            "plateau (x0.1, patience 0, 10% threshold)": base.replace(
                scheduler="plateau", sched_kw={"patience": 0, "threshold": 0.1},
                val_every=1),
            "cosine": base.replace(scheduler="cosine", sched_kw={}),
            "exponential (x0.7 per epoch)": base.replace(scheduler="exponential",
                                                         sched_kw={"gamma": 0.7}),
            "one-cycle": base.replace(scheduler="onecycle", sched_kw={}),
            "warm-up + linear decay (the old baseline's)": base.replace(
                scheduler="linear", sched_kw={}, warmup_epochs=min(1.0, base.epochs / 4)),
        },
        "losses": _losses(base),
        "activations": _activations(base),
        "regularisation": {
            "weight decay (baseline)": base,
            "no weight decay": base.replace(weight_decay=0.0),
            "L1 5e-6": base.replace(l1=5e-6),
            "dropout 0.2": base.replace(model_kw={**base.model_kw, "dropout": 0.2}),
            # at the running median of the gradient norms: acts on about
            # half the steps at any budget (a fixed norm of 1 never acted)
            "gradient clipping at the median norm": base.replace(grad_clip_quantile=0.5),
            "no Lookahead (last weights)": base.replace(lookahead=0),
            "SWA over the last 25%": base.replace(swa_start=0.75),
            "EMA of weights": base.replace(ema=S.ema_decay),
        },
        "augmentation": {
            "none": base.replace(augment="none"),
            "random flip only": base.replace(augment={"crop": 0, "flip": True}),
            "translate 2 px + random flip": base.replace(augment={**ab_aug, "alt_flip": False}),
            "translate 2 px + alternating flip (baseline)": base,
            "crop 4 px + random flip (the old baseline's)": base.replace(augment="crop_flip"),
            "baseline + erasing": base.replace(augment={**ab_aug, "erase": 0.5}),
            "baseline + mixup": base.replace(augment={**ab_aug, "mixup": 1.0}),
            "baseline + cutmix": base.replace(augment={**ab_aug, "cutmix": 1.0}),
            "baseline + rotation (15 degrees)": base.replace(augment={**ab_aug, "rotate": 15.0}),
            "baseline, no normalisation": base.replace(normalize=False),
        },
        "lr_grid": {
            f"Adam lr={v:g}, {s}": base.replace(
                optimizer="adam", lr=v, weight_decay=0.0, decoupled=False, norm_bias_lr=1.0,
                optim_kw={}, scheduler=s,
                sched_kw={"step_size": max(1, base.epochs // 2)} if s == "step" else {})
            for v in (1e-2, 1e-3, 1e-4) for s in ("step", "constant")
        },
        # lr and decay are per 1024 images (decoupled): each step's lr grows
        # linearly with the batch (the linear scaling rule)
        "batch_size": {
            f"batch {b}{' (baseline)' if b == base.batch_size else ''}": base.replace(batch_size=b)
            for b in sorted(set(S.batch_sizes) | {base.batch_size})
        },
    }


# The EMA decay each profile's old ablations used.
_OLD_EMA = {"smoke": 0.9, "cpu": 0.98, "full": 0.999}


def old_ablations(profile: Profile) -> dict[str, dict[str, TrainConfig]]:
    """The ablations under the old baseline (:func:`fast_recipe`), as they
    ran before airbench94's recipe became the baseline: their records (the
    full profile's on an H100) stay readable, in the report's appendix."""
    S, base = sizes(profile), fast_recipe(profile)
    S = replace(S, ema_decay=_OLD_EMA.get(profile.name, S.ema_decay))
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
            step_label(base): base.replace(scheduler="step", warmup_epochs=0.0),
            "plateau (x0.1, patience 1)": base.replace(
                scheduler="plateau", warmup_epochs=0.0, sched_kw={"patience": 1}),
            "cosine": base.replace(scheduler="cosine", warmup_epochs=0.0),
            "exponential (x0.7 per epoch)": base.replace(
                scheduler="exponential", warmup_epochs=0.0, sched_kw={"gamma": 0.7}),
            "one-cycle": base.replace(scheduler="onecycle", warmup_epochs=0.0),
        },
        "losses": _losses(base),
        "activations": _activations(base),
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
ABLATION_EXPERIMENTS = {  # noqa: E501
    "optimizers": "ablation_optimizers", "schedulers": "ablation_schedulers",
    "losses": "ablation_losses", "activations": "ablation_activations",
    "regularisation": "ablation_regularisation", "augmentation": "ablation_augmentation",
    "lr_grid": "ablation_lr_grid", "batch_size": "ablation_batch_size",
    "stem": "ablation_stem"}


def stem_variants(profile: Profile) -> dict[str, TrainConfig]:
    """ResNet-18 with the CIFAR stem (3x3, stride 1) against the ImageNet stem
    (7x7 stride 2 and a max-pool, course report E), all else equal."""
    kw = {label: kw for label, _, kw in arch_models(profile)}.get("resnet18", {})
    base = arch_recipe(profile, "resnet18", kw)
    return {"CIFAR stem 3x3 (baseline)": base,
            "ImageNet stem 7x7/2 + max-pool": base.replace(model_kw={**kw, "stem": "imagenet"})}



LONG_SEEDS = (0, 1)   # the long-budget control's seeds, in every profile


def planned_seeds(profile: Profile) -> set:
    """Every seed section 1's FastNet runs use in ``profile``: the
    profile's, the ablation baseline's and the long-budget control's."""
    return set(profile.seeds) | set(sizes(profile).base_seeds) | set(LONG_SEEDS)


def long_budget(profile: Profile) -> list[Run]:
    """The long-budget control: the baseline, no augmentation, cutmix and
    plain cross-entropy at ``long_factor`` times the epochs, two seeds, with
    the same four at the ablations' budget for the second seed (the first
    seed's are the ablation rows)."""
    S, base = sizes(profile), ablation_recipe(profile)
    ab = ablations(profile)
    rows = {"baseline": base, "no augmentation": ab["augmentation"]["none"],
            "cutmix": ab["augmentation"]["baseline + cutmix"],
            "cross-entropy": ab["losses"]["cross-entropy"]}
    long_epochs = S.fast_epochs * S.long_factor
    seeds = LONG_SEEDS
    out = []
    for name, cfg in rows.items():
        out += [Run(f"{name}, {cfg.epochs} epochs", cfg.replace(seed=s)) for s in seeds]
        out += [Run(f"{name}, {long_epochs} epochs", cfg.replace(epochs=long_epochs, seed=s))
                for s in seeds]
    return out


def final_recipe(profile: Profile) -> tuple[str, TrainConfig]:
    """The final model: (what it is, its config). Full: ResNet-18 with the
    shared recipe for ``final_epochs``; other profiles: FastNet with the
    baseline recipe at the long budget (the long-budget control's run)."""
    S = sizes(profile)
    if S.final_epochs:
        return "ResNet-18, shared recipe", arch_recipe(profile, "resnet18", {}, 0,
                                                      S.final_epochs)
    return ("FastNet, airbench94's recipe",
            ablation_recipe(profile, epochs=S.fast_epochs * S.long_factor))


def configs(profile: Profile) -> dict[str, list[Run]]:
    """Every named experiment of section 1: name -> runs.

    ``baseline`` (the FastNet recipe), ``architectures`` (and the opt-in
    ``architectures_extended``), one ``ablation_*`` per factor (FastNet,
    one thing changed from the baseline) and ``ablation_stem`` (ResNet-18),
    each over the profile's seeds; ``long_budget`` and ``final_model``.
    Built once per listing (:func:`cifar_lib.store.pinned`): each experiment
    takes its part.
    """
    from cifar_lib import store
    with store.pinned():  # one state of results/ for every choice below
        return store.memo(("classification.configs", profile), lambda: _configs(profile))


def _configs(profile: Profile) -> dict[str, list[Run]]:
    P, S = profile, sizes(profile)
    base, final = baseline_choice(P)
    wait = None if final else "the baseline's rate grid"
    out = {"baseline": [Run("fastnet", c) for c in base_grid(P)] +
           [Run("fastnet", base.replace(seed=s), waits=wait) for s in (S.base_seeds or P.seeds)[1:]],
           "architectures": architectures(P),
           "architectures_extended": _pairs(architectures_extended(P))}
    for name, variants in ablations(P).items():
        # the Adam grid is read as a grid (report E's): one seed per cell
        seeds = P.seeds[:1] if name == "lr_grid" else None
        out[ABLATION_EXPERIMENTS[name]] = _pairs(_seeded(P, variants, seeds))
    out["ablation_optimizers"] = optimizer_runs(P)
    out["ablation_stem"] = _pairs(_seeded(P, stem_variants(P)))
    out["long_budget"] = long_budget(P)
    what, cfg = final_recipe(P)
    out["final_model"] = [Run(what, cfg)]
    if wait:  # every run built on the baseline waits for its rate
        grid = {store_id(c) for c in base_grid(P)}
        for name in (*ABLATION_EXPERIMENTS.values(), "long_budget", "final_model"):
            if name in ("ablation_stem",) or (name == "final_model" and S.final_epochs):
                continue
            out[name] = [r if store_id(r.cfg) in grid or r.waits else replace(r, waits=wait)
                         for r in out[name]]
    return out


def store_id(cfg: TrainConfig) -> str:
    from cifar_lib import store
    return store.identity(cfg.to_dict(), None, {})


def _pairs(pairs) -> list[Run]:
    return [Run(label, cfg) for label, cfg in pairs]


def _experiment(name: str, notebook: str, section: str, group: str, **kw) -> Experiment:
    def make_runs(profile: Profile):
        return list(configs(profile)[name])
    return Experiment(name, notebook, section, group, make_runs, **kw)


BASELINE = _experiment("baseline", "02_ablations", "1.3", "ablations")
ARCHITECTURES = _experiment("architectures", "01_architectures", "1.2", "core")
ARCHITECTURES_EXTENDED = _experiment("architectures_extended", "01_architectures", "1.2",
                                     "extended", extended=True)
ABLATION = {key: _experiment(name, "02_ablations", "1.3", "ablations")
            for key, name in ABLATION_EXPERIMENTS.items()}
# The old baseline's ablations: read only (the opt-in extended set would
# train them where they are missing), shown in the report's appendix.
OLD_ABLATION = {key: Experiment(f"{name}_old_recipe", "02_ablations", "1.3", "extended",
                                lambda P, key=key: _pairs(_seeded(P, old_ablations(P)[key])),
                                extended=True)
                for key, name in ABLATION_EXPERIMENTS.items() if key != "stem"}
LONG_BUDGET = _experiment("long_budget", "02_ablations", "1.3", "long")
FINAL_MODEL = _experiment("final_model", "02_ablations", "1.2", "long")


def first_seed(recs: list[dict]) -> list[dict]:
    """One record per label (for learning-curve plots): the lowest seed
    that learned, else the lowest seed, so that a failed first seed does not
    stand for a row whose table mean comes from the seeds that learned.

    Used by notebooks 01, 02 (report sections 1.2, 1.3).
    """
    from cifar_lib.health import learned
    by_seed = sorted(recs, key=lambda r: r["config"]["seed"])
    order = list(dict.fromkeys(r["label"] for r in by_seed))
    out: dict[str, dict] = {}
    for r in sorted(recs, key=lambda r: (not learned(r), r["config"]["seed"])):
        out.setdefault(r["label"], r)
    return [out[lbl] for lbl in order]

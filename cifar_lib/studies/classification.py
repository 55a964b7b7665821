"""The study's named experiments: which configs each notebook runs per profile.

Each ``@register_experiment`` function maps a profile to (label, config)
pairs; sizes (widths, epochs, seeds) come from the profile so that the same
experiment runs at smoke, cpu and full scale.
"""
from __future__ import annotations

from cifar_lib.engine import TrainConfig
from cifar_lib.experiments import register_experiment
from cifar_lib.profiles import Profile

# FastNet width per profile: full size on a GPU, smaller where time is short.
FAST_WIDTH = {"smoke": 0.125, "cpu": 0.5, "full": 1.0}


def fast_recipe(profile: Profile, **over) -> TrainConfig:
    """The quick-ablation recipe: FastNet, Nesterov SGD, label smoothing, warm-up then linear decay."""
    cfg = dict(model="fastnet", model_kw={"width": FAST_WIDTH.get(profile.name, 1.0)},
               optimizer="sgd", lr=0.8, momentum=0.9, nesterov=True,
               weight_decay=5e-4, scheduler="linear", warmup_epochs=min(1, profile.epochs / 4),
               label_smoothing=0.2, epochs=profile.epochs,
               batch_size=profile.batch_size, augment="crop_flip", tta_flip=True)
    cfg.update(over)
    return TrainConfig(**cfg)


@register_experiment("baseline")
def baseline(profile: Profile):
    """The FastNet recipe over the profile's seeds."""
    return [("fastnet", fast_recipe(profile, seed=s)) for s in profile.seeds]

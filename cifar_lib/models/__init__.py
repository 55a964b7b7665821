"""Models by name: ``create_model(name, **kw)``, ``list_models()``.

One file per family in this package; each registers its named sizes with
``@register_model`` (from the leaf :mod:`cifar_lib.registry`; ``register``
here is the same decorator). Every model takes 3 x 32 x 32 inputs and
``num_classes``.
"""
from __future__ import annotations

import inspect

import torch.nn as nn

from cifar_lib.registry import (MODEL_ALIASES, MODEL_FAMILY, MODELS,
                                register_model)

# The registry tables live in the leaf module cifar_lib.registry.
register = register_model
_MODELS, _FAMILY, _ALIASES = MODELS, MODEL_FAMILY, MODEL_ALIASES


# How the report names each model (the registry's key is the code's name).
DISPLAY_NAMES = {
    "lenet": "LeNet-5", "cnn3": "CNN 32-64-128", "cnn3_64": "CNN 64-128-256 + FC head",
    "cnn3_128": "CNN 128-256-512 + FC head", "fastnet": "FastNet",
    "vgg_a": "VGG-A", "vgg_a_bn": "VGG-A + BN", "vgg11": "VGG-11", "vgg11_bn": "VGG-11 + BN",
    "vgg16": "VGG-16", "vgg16_bn": "VGG-16 + BN",
    "resnet18": "ResNet-18", "resnet34": "ResNet-34", "resnet50": "ResNet-50",
    "resnet_s2": "ResNet, 6 blocks", "resnet_s3": "ResNet, 9 blocks",
    "preactresnet18": "PreAct ResNet-18", "wrn16_8": "WRN-16-8", "wrn28_10": "WRN-28-10",
    "densenet121": "DenseNet-121", "dla": "DLA", "dpn26": "DPN-26",
    "mobilenetv2": "MobileNetV2", "shufflenetv2": "ShuffleNetV2 1x",
    "shufflenetv2_0_5": "ShuffleNetV2 0.5x",
    "resnext29_2x32d": "ResNeXt-29 2x32d", "resnext29_2x64d": "ResNeXt-29 2x64d",
    "resnext29_32x4d": "ResNeXt-29 32x4d", "resnext29_8x64d": "ResNeXt-29 8x64d",
    "resnext50_2x40d": "ResNeXt-50 2x40d", "resnext50_8x14d": "ResNeXt-50 8x14d",
    "resnext50_32x4d": "ResNeXt-50 32x4d",
    "canet_tiny": "CANet tiny", "canet_light": "CANet light", "canet_base": "CANet",
    "canet_pro": "CANet pro",
}


def display_name(name: str) -> str:
    """The report's name of a model (``vgg_a_bn`` -> ``VGG-A + BN``); an
    unknown name as it is."""
    return DISPLAY_NAMES.get(name, name)


def list_models(family: str | None = None, aliases: bool = False) -> list[str]:
    """Registered model names, sorted (optionally of one family, with aliases)."""
    return sorted(n for n in _MODELS if family in (None, _FAMILY[n])
                  and (aliases or n not in _ALIASES))


def model_aliases() -> dict[str, str]:
    """Alias -> the registered name it stands for."""
    return dict(_ALIASES)


def model_family(name: str) -> str:
    """The family (file) a registered model comes from."""
    _check_name(name)
    return _FAMILY[name]


def _check_name(name: str) -> None:
    """Unknown names raise, offering what ``list_models()`` shows (aliases
    still work but are not offered: each net is named once)."""
    if name not in _MODELS:
        import difflib
        names = list_models()
        close = difflib.get_close_matches(str(name), names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; registered models: "
                         f"{', '.join(names)}")


def model_options(name: str) -> list[str]:
    """Keyword options the builder of ``name`` accepts."""
    _check_name(name)
    return list(inspect.signature(_MODELS[name]).parameters)


def create_model(name: str, num_classes: int = 10, **kw) -> nn.Module:
    """Build the registered model ``name``; unknown options raise clearly.

    Used by notebook 01 (report section 1.2).
    """
    _check_name(name)
    bad = set(kw) - set(model_options(name))
    if bad:
        raise ValueError(f"model {name!r} has no option(s) {sorted(bad)}; "
                         f"valid: {', '.join(model_options(name))}")
    return _MODELS[name](num_classes=num_classes, **kw)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only trainable ones)."""
    return sum(p.numel() for p in model.parameters()
               if p.requires_grad or not trainable_only)


# Families register themselves on import.
from cifar_lib.models import (  # noqa: E402,F401
    simple, vgg, resnet, fastnet, preactresnet, wideresnet, resnext,
    densenet, dpn, dla, mobilenetv2, shufflenetv2, canet)

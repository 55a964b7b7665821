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

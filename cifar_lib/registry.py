"""Every name-to-function table of the library, in one leaf module.

Models, optimizers, the report's figures and tables and each study's
``values(profile)`` register here with a decorator: names a user types
(``create_model("resnet18")``, ``optimizer="adamw"``) or a report marker
names (``table:architectures``, ``figure:arch_curves.png``). This module
imports nothing of ``cifar_lib``, so any module can register without an
import cycle; the modules that *use* a table (``models``, ``optim``,
``report``, ``viz``) read it from here. Study modules fill ``FIGURES``,
``TABLES`` and ``VALUE_SOURCES`` when imported, and only the entry points
import them (``python -m cifar_lib``, the notebooks, ``plan``), through
``import cifar_lib.studies``. Experiments are objects that each study
exports (``cifar_lib.studies.experiments()``), not entries of a table.
"""
from __future__ import annotations

from typing import Callable

MODELS: dict[str, Callable] = {}         # name -> builder(num_classes=, **kw)
MODEL_FAMILY: dict[str, str] = {}        # name -> family (its file)
MODEL_ALIASES: dict[str, str] = {}       # alias -> the name it stands for
OPTIMIZERS: dict[str, Callable] = {}     # name -> builder(model, lr, **hyper)
FIGURES: dict[str, Callable] = {}        # report ``figure:name`` -> fn(profile) -> Figure | None
TABLES: dict[str, Callable] = {}         # report ``table:name`` -> fn(profile)
VALUE_SOURCES: dict[str, Callable] = {}  # study -> values(profile) -> {name: str | None}
PLANNER: dict[str, Callable] = {}        # "jobs" -> fn(profile) -> the plan's runs (plan.py)

# Priority groups of runs, in the order the budgeted runner trains them; an
# experiment names its group (``Experiment.group``, or a run's own).
# The budgeted runner's order: report sections without any result first,
# then the core models (and their rate grids), the ablations, the
# long-budget control and final model, the rest of the zoo.
PRIORITY = ("batchnorm", "dessilbi", "core", "ablations", "long", "zoo", "extended")

STUDIES_HINT = ("the study modules register them: import cifar_lib.studies "
                "first (the CLI, the notebooks and plan do)")


def register_model(fn: Callable | None = None, *, name: str | None = None):
    """Decorator: register a model builder under ``name`` (default: its own).

    Registering a builder a second time under another name makes an alias
    (e.g. ``canet`` for ``canet_base``): it can be created by that name but is
    not listed again, so comparisons over ``list_models()`` train each net once.
    """
    def deco(f):
        key = name or f.__name__
        if key in MODELS:
            raise ValueError(f"model {key!r} is registered twice")
        target = next((k for k, g in MODELS.items()
                       if g is f and k not in MODEL_ALIASES), None)
        if target is not None:
            MODEL_ALIASES[key] = target
        MODELS[key] = f
        MODEL_FAMILY[key] = f.__module__.rsplit(".", 1)[-1]
        return f
    return deco(fn) if fn is not None else deco


def _into(table: dict, name: str, what: str):
    def deco(fn):
        table[name] = fn
        return fn
    deco.__doc__ = f"Register ``fn`` as the {what} {name!r}."
    return deco


def register_optimizer(name: str):
    """Decorator: make ``builder(model, lr, **hyper)`` available by ``name``."""
    return _into(OPTIMIZERS, name, "optimizer")


def register_figure(name: str):
    """Decorator: ``fn(profile) -> Figure | None`` draws ``figure:name``
    from stored results (None while they are missing); ``report`` draws
    every one and a notebook cell shows it with ``viz.figure(name, P)``."""
    return _into(FIGURES, name, "report figure")


def register_table(name: str):
    """Decorator: ``fn(profile) -> DataFrame | None`` fills ``table:name``."""
    return _into(TABLES, name, "report table")


def register_values(fn: Callable):
    """Decorator: a study's ``values(profile) -> {name: str | None}``.

    It returns every ``value:name`` block of the report that the study
    fills, each name spelled out, None where the results are not on disk.
    """
    key = f"{fn.__module__}.{fn.__qualname__}"
    VALUE_SOURCES[key] = fn
    return fn


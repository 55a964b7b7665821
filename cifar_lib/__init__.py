"""cifar_lib: a thin PyTorch helper library for the CIFAR-10 study notebooks.

The names a notebook (or a user's own) needs are re-exported here: data,
models, training, runs and experiments (``run``, ``run_experiment``,
``records``). Plotting (``viz``, with ``viz.figure(name, P)`` for a report
figure), the report (``report``), the stored results (``store``), the
BatchNorm measurements (``landscape``) and DessiLBI (``slbi``) are imported
from their modules; each study's experiments from ``cifar_lib.studies``.

The names load on first use (``cl.TrainConfig`` imports torch then), so
that ``import cifar_lib`` and the command line's ``--help`` stay quick.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> the module that defines it
_EXPORTS = {
    "cifar_lib.data": ("CIFARData", "DataError", "DeviceLoader", "Split", "load_cifar10",
                       "split_data", "synthetic_cifar"),
    "cifar_lib.engine": ("CheckpointError", "TrainConfig", "evaluate", "fit",
                         "load_checkpoint", "make_loaders", "predict", "save_checkpoint"),
    "cifar_lib.experiments": ("Experiment", "Run", "load_model", "profile_split", "records",
                              "results_frame", "run", "run_experiment", "summarize"),
    "cifar_lib.models": ("count_params", "create_model", "list_models"),
    "cifar_lib.models.summary": ("model_table", "summary"),
    "cifar_lib.profiles": ("Profile", "get_profile"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cifar_lib' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_WHERE))

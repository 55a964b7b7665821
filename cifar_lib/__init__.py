"""cifar_lib: a thin PyTorch helper library for the CIFAR-10 study notebooks.

The names a notebook (or a user's own) needs are re-exported here: data,
models, training, runs and experiments (``run``, ``run_experiment``,
``records``). Plotting (``viz``, with ``viz.figure(name, P)`` for a report
figure), the report (``report``), the stored results (``store``), the
BatchNorm measurements (``landscape``) and DessiLBI (``slbi``) are imported
from their modules; each study's experiments from ``cifar_lib.studies``.
"""
from cifar_lib.data import (CIFARData, DataError, DeviceLoader, Split,
                            load_cifar10, split_data, synthetic_cifar)
from cifar_lib.engine import (CheckpointError, TrainConfig, evaluate, fit,
                              load_checkpoint, make_loaders, predict,
                              save_checkpoint)
from cifar_lib.experiments import (Experiment, Run, load_model, profile_split,
                                   records, results_frame, run, run_experiment,
                                   summarize)
from cifar_lib.models import count_params, create_model, list_models
from cifar_lib.models.summary import model_table, summary
from cifar_lib.profiles import Profile, get_profile

__version__ = "0.1.0"

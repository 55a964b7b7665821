"""cifar_lib: a thin PyTorch helper library for the CIFAR-10 study notebooks.

The names most notebooks need are re-exported here; plotting (``viz``),
the report (``report``), the BatchNorm measurements (``landscape``) and
DessiLBI (``slbi``) are imported from their modules.
"""
from cifar_lib.data import (CIFARData, DataError, DeviceLoader, Split,
                            load_cifar10, split_data, synthetic_cifar)
from cifar_lib.engine import (CheckpointError, TrainConfig, evaluate, fit,
                              load_checkpoint, make_loaders, predict,
                              save_checkpoint)
from cifar_lib.experiments import (load_model, load_results, profile_split,
                                   results_frame, run, run_experiment,
                                   summarize)
from cifar_lib.models import count_params, create_model, list_models
from cifar_lib.models.summary import model_table, summary
from cifar_lib.profiles import Profile, get_profile

__version__ = "0.1.0"

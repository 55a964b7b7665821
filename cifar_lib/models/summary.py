"""Model size and cost: ``summary(model)`` and ``model_table()``.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode``: two per
multiply-add of convolutions and matrix products (norms, activations,
pooling and additions are not counted), for one forward pass. Papers often
quote multiply-adds as "FLOPs"; ``macs`` is half of ``flops`` (ResNet-18 on a
32 x 32 image: 0.56 G MACs = 1.11 GFLOPs).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from cifar_lib.models import count_params, create_model, list_models, model_family


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def count_flops(model: nn.Module, input_size=(1, 3, 32, 32)) -> int:
    """FLOPs (2 per multiply-add) of one eval-mode forward of ``input_size``."""
    was_training = model.training
    model.eval()
    p = next(model.parameters(), None)
    dtype = p.dtype if p is not None and p.is_floating_point() else None
    x = torch.zeros(input_size, device=_device(model), dtype=dtype)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


@dataclass
class ModelSummary:
    """What ``summary`` returns; ``print`` it for the table and totals."""

    params: int
    trainable: int
    flops: int        # per forward of ``input_size``, 2 per multiply-add
    table: str
    input_size: tuple = (1, 3, 32, 32)

    @property
    def macs(self) -> int:
        """Multiply-adds (half the FLOPs)."""
        return self.flops // 2

    def __str__(self) -> str:
        return (f"{self.table}\n"
                f"Total params:     {self.params:,}\n"
                f"Trainable params: {self.trainable:,}\n"
                f"FLOPs:            {self.flops / 1e9:.3f} G "
                f"({self.macs / 1e9:.3f} G multiply-adds) "
                f"per forward of {tuple(self.input_size)}")


def summary(model: nn.Module, input_size=(1, 3, 32, 32), depth: int = 3
            ) -> ModelSummary:
    """A torchinfo layer table with parameter and FLOP totals (eval mode).

    Used by notebook 01 (report section 1.2) and the README."""
    from torchinfo import summary as torchinfo_summary

    stats = torchinfo_summary(
        model, input_size=input_size, depth=depth, device=_device(model),
        col_names=("output_size", "num_params"), verbose=0)
    return ModelSummary(count_params(model), count_params(model, True),
                        count_flops(model, input_size), str(stats),
                        tuple(input_size))


def _build_and_count(name: str) -> tuple[int, int]:
    """(params, FLOPs) of a registered model, built without memory if possible."""
    try:  # meta tensors: shapes only, so even 90M-parameter nets take no time
        with torch.device("meta"):
            model = create_model(name)
        return count_params(model), count_flops(model)
    except (NotImplementedError, RuntimeError):
        model = create_model(name)
        return count_params(model), count_flops(model)


def model_table(names=None):
    """DataFrame of registered models: name, family, params, MFLOPs, MMACs.

    FLOPs are for one 3 x 32 x 32 image (see the module docstring).
    """
    import pandas as pd

    rows = []
    for name in names or list_models():
        params, flops = _build_and_count(name)
        rows.append({"name": name, "family": model_family(name),
                     "params": params, "MFLOPs": flops / 1e6,
                     "MMACs": flops / 2e6})
    return pd.DataFrame(rows, columns=["name", "family", "params", "MFLOPs",
                                       "MMACs"])

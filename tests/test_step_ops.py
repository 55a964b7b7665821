"""The lean recipe's step stays lean: at most 100 dispatched operations
per training step (every aten operation, views and profiler marks
included; 88 at 43 steps an epoch, about 94 here, where the epoch's own
work is spread over 6 steps) and no host sync inside an epoch, counted as
on CUDA by benchmarks/step_ops.py (small FastNet, a few steps, CPU)."""
import importlib.util

import pytest

from cifar_lib.engine import TrainConfig
from cifar_lib.profiles import REPO
from cifar_lib.recipes import airbench_recipe


@pytest.fixture(scope="module")
def step_ops():
    spec = importlib.util.spec_from_file_location("step_ops", REPO / "benchmarks" / "step_ops.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_airbench_recipe_step_is_lean(step_ops):
    cfg = airbench_recipe(width=0.125)
    r = step_ops.count(cfg, epochs=2, full_train=6 * cfg.batch_size)
    assert r["steps"] == 12
    assert r["ops_per_step"] <= 100, step_ops.describe("airbench_recipe", r)
    assert r["work_ops_per_step"] <= 80, step_ops.describe("airbench_recipe", r)
    assert r["syncs_in_steps_per_epoch"] == 0 and r["syncs_at_epoch_end_per_epoch"] == 0
    assert r["syncs_after_training"] <= 3  # train metrics, validation, test


def test_old_recipe_is_counted_as_before(step_ops):
    cfg = step_ops.old_recipe(model_kw={"width": 0.125}, epochs=1)
    assert isinstance(cfg, TrainConfig)
    r = step_ops.count(cfg, epochs=1, full_train=3 * cfg.batch_size)
    assert r["work_ops_per_step"] > 100 and r["syncs_per_epoch"] >= 2

"""Operations dispatched per training step and host syncs per epoch, by recipe.

A GPU step is bound by the host when each of its operations costs more to
launch than to run (FastNet at batch 512-1024 on an H100), so the number of
operations a step dispatches is what the recipe's loop costs. This counts
them on the CPU, while ``engine.fit`` trains FastNet (width 1) on synthetic
data, with a ``TorchDispatchMode`` that sees every aten operation below
autograd, and with the CUDA-only paths taken (``engine.EMULATE_CUDA``: bf16
autocast, channels_last, the fp16 network), so the count is the one of a
CUDA step. A step's operations are split in phases: data (loader and
augmentation), forward and loss, backward, optimizer, and after (schedule,
weight averaging, training metrics). Epoch-level work (a whole epoch's
augmentation) is spread over the steps of an epoch of full size (45,000
images, the recipe's batch), which is what a step costs on the GPU; the
benchmark keeps the number of steps and shrinks the batch.

Two counts: every dispatched operation, and those that do work on the
device (leaving out views such as ``detach``, ``t``, ``view``, ``slice``,
``expand`` and the profiler's marks): the second is what issue 23 counted
(139 for the old recipe on an H100: data 20, forward+loss 56, backward 47,
optimizer 21, metrics 6).

Host syncs are reads of device memory by the host: ``aten._local_scalar_dense``
(``.item()``, ``bool()``, ``float()`` of a tensor) and calls of
``Tensor.tolist``/``.cpu``/``.numpy``. They are counted inside the epochs'
steps, at each epoch's end (its metrics, validation, snapshot) and after
training.

    python benchmarks/step_ops.py          # one line per recipe (+ details)
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cifar_lib import engine  # noqa: E402
from cifar_lib.data import split_data, synthetic_cifar  # noqa: E402
from cifar_lib.engine import TrainConfig, fit, make_loaders  # noqa: E402
from cifar_lib.models import create_model  # noqa: E402
from cifar_lib.recipes import airbench_recipe  # noqa: E402

FULL_TRAIN = 45000  # the full profile's training images
SYNC_OPS = {"aten::_local_scalar_dense"}
PHASES = ("data", "forward+loss", "backward", "optimizer", "after")


def old_recipe(**over) -> TrainConfig:
    """The FastNet recipe of the ablations before this benchmark (as
    ``classification.fast_recipe`` for the full profile: width 1, batch
    512, 6 epochs, lr 0.8, one warm-up epoch then linear decay, crop+flip,
    flip-TTA, per-epoch validation and best-weights snapshot)."""
    cfg = dict(model="fastnet", model_kw={"width": 1.0}, optimizer="sgd", lr=0.8,
               momentum=0.9, nesterov=True, weight_decay=5e-4, scheduler="linear",
               warmup_epochs=1.0, label_smoothing=0.2, epochs=6, batch_size=512,
               augment="crop_flip", tta_flip=True)
    cfg.update(over)
    return TrainConfig(**cfg)


RECIPES = {"fast_recipe (old)": old_recipe, "airbench_recipe": airbench_recipe}


def _cpu_only(func, args) -> bool:
    """An operation only the CPU path dispatches: the empty reserve tensor
    of ``_batch_norm_impl_index`` (cuDNN's batch norm returns its own)."""
    return func is torch.ops.aten.empty.memory_format and list(args[0]) == [0]


class Counter_(TorchDispatchMode):
    """Counts aten operations by phase, and host syncs by region."""

    def __init__(self):
        super().__init__()
        self.ops, self.syncs = Counter(), Counter()
        self.phase, self.region, self.counting = "data", "outside", False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.counting and not _cpu_only(func, args):
            phase = "backward" if torch._C._current_graph_task_id() != -1 else self.phase
            self.ops[phase] += 1
            if not (func.is_view or func.namespace == "profiler"):
                self.ops["work:" + phase] += 1
        if func._schema.name in SYNC_OPS:
            self.syncs[self.region] += 1
        return func(*args, **(kwargs or {}))


class _Loader:
    """The training loader, its batches drawn in the "data" phase."""

    def __init__(self, inner, counter: Counter_):
        self.inner, self.counter = inner, counter

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __len__(self):
        return len(self.inner)

    def __iter__(self):
        it = iter(self.inner)
        while True:
            self.counter.phase = "data"
            try:
                batch = next(it)
            except StopIteration:
                return
            self.counter.phase = "forward+loss"
            yield batch


class _Phases:
    """Hooks that move the counter from phase to phase."""

    def __init__(self, counter: Counter_):
        self.c, self.steps = counter, 0

    def before_step(self, model, x, y, step):
        self.c.phase = "forward+loss"
        self.steps += 1

    def after_backward(self, model, loss, step):
        self.c.phase = "optimizer"


@contextmanager
def _watch(counter: Counter_):
    """Host reads through Tensor methods, the optimizer step's end, and the
    regions of fit: in the epochs' steps, at an epoch's end, after."""
    patched = {}

    def reads(name):
        orig = getattr(torch.Tensor, name)

        def wrapper(self, *a, **kw):
            counter.syncs[counter.region] += 1
            return orig(self, *a, **kw)
        patched[name] = orig
        setattr(torch.Tensor, name, wrapper)

    def region(fn_name, name, count_ops=False):
        orig = getattr(engine, fn_name)

        def wrapper(*a, **kw):
            counter.region, counter.counting = name, count_ops
            try:
                return orig(*a, **kw)
            finally:
                counter.region, counter.counting = "after training", False
        patched["engine." + fn_name] = orig
        setattr(engine, fn_name, wrapper)

    for name in ("tolist", "cpu", "numpy"):
        reads(name)
    region("train_epoch", "steps", count_ops=True)
    region("_epoch_done", "epoch end")

    def post(opt, args, kwargs):
        counter.phase = "after"
    handle = register_optimizer_step_post_hook(post)
    try:
        yield
    finally:
        handle.remove()
        for name, orig in patched.items():
            if name.startswith("engine."):
                setattr(engine, name[len("engine."):], orig)
            else:
                setattr(torch.Tensor, name, orig)


def count(cfg: TrainConfig, epochs: int = 1, images_per_step: int = 2,
          full_train: int = FULL_TRAIN, emulate_cuda: bool = True) -> dict:
    """Ops per step (by phase) and syncs per epoch of ``cfg`` for
    ``epochs`` whole epochs of full size (``full_train // cfg.batch_size``
    steps), each step of ``images_per_step`` synthetic images."""
    steps = max(1, full_train // cfg.batch_size)
    if emulate_cuda and cfg.optimizer in ("sgd", "adam", "adamw") and not (
            {"fused", "foreach"} & set(cfg.optim_kw)):
        cfg = cfg.replace(optim_kw={**cfg.optim_kw, "foreach": True})  # CUDA's default
    cfg = cfg.replace(batch_size=images_per_step, epochs=epochs, last_epoch_frac=1.0,
                      whiten_bias_epochs=min(cfg.whiten_bias_epochs, epochs),
                      warmup_epochs=min(cfg.warmup_epochs, epochs))
    data = synthetic_cifar(n_train=steps * images_per_step + 8, n_test=8, seed=0)
    split = split_data(data, val_size=8, seed=0)
    counter, was = Counter_(), engine.EMULATE_CUDA
    engine.EMULATE_CUDA = emulate_cuda
    try:
        loaders = make_loaders(split, cfg, "cpu")
        loaders = loaders._replace(train=_Loader(loaders.train, counter))
        torch.manual_seed(cfg.seed)
        model = create_model(cfg.model, **cfg.model_kw)
        phases = _Phases(counter)
        with _watch(counter), counter:
            out = fit(model, loaders, cfg, hooks=(phases,), progress=False)
    finally:
        engine.EMULATE_CUDA = was
    # (a few steps on synthetic images need not learn: "failed" is fine)
    assert out["status"] in ("ok", "failed"), out["status"]
    n = phases.steps
    return {"ops_per_step": sum(counter.ops[p] for p in PHASES) / n,
            "work_ops_per_step": sum(counter.ops["work:" + p] for p in PHASES) / n,
            "phases": {p: counter.ops[p] / n for p in PHASES},
            "work_phases": {p: counter.ops["work:" + p] / n for p in PHASES},
            "syncs_per_epoch": (counter.syncs["steps"] + counter.syncs["epoch end"]) / epochs,
            "syncs_in_steps_per_epoch": counter.syncs["steps"] / epochs,
            "syncs_at_epoch_end_per_epoch": counter.syncs["epoch end"] / epochs,
            "syncs_after_training": counter.syncs["after training"],
            "steps_per_epoch": steps, "steps": n}


def describe(name: str, r: dict) -> str:
    """``<recipe>: <N> ops/step, <M> syncs/epoch`` and the details."""
    phases = ", ".join(f"{p} {r['phases'][p]:.1f} ({r['work_phases'][p]:.1f})"
                       for p in PHASES)
    return (f"{name}: {r['ops_per_step']:.0f} ops/step, {r['syncs_per_epoch']:g} syncs/epoch\n"
            f"    {r['work_ops_per_step']:.0f} of them do work (not views, detach or "
            f"profiler marks)\n"
            f"    phases (working): {phases}\n"
            f"    syncs per epoch: {r['syncs_in_steps_per_epoch']:g} in its steps, "
            f"{r['syncs_at_epoch_end_per_epoch']:g} at its end; "
            f"{r['syncs_after_training']} after training "
            f"({r['steps_per_epoch']} steps an epoch)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-emulate-cuda", action="store_true",
                    help="count the CPU path (no autocast, NCHW, fp32, for-loop SGD)")
    ap.add_argument("--width", type=float, default=0.25,
                    help="FastNet's width (the counts do not depend on it; 0.25 is "
                         "quicker on a CPU than 1)")
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args(argv)
    for name, recipe in RECIPES.items():
        cfg = recipe()
        cfg = cfg.replace(model_kw={**cfg.model_kw, "width": args.width})
        r = count(cfg, epochs=args.epochs, emulate_cuda=not args.no_emulate_cuda)
        print(describe(name, r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

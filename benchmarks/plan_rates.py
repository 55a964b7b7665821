"""Measure the rates `python -m cifar_lib plan` assumes, on this machine.

Trains each model for a few epochs with the full profile's recipe
(``engine.fit``: bf16 autocast, channels_last, device-resident loader) on
the profile's training split, and reports per model: seconds per epoch
(the first epoch, which pays for kernel selection, apart), effective
training TFLOP/s (3 forward FLOPs per image), ms per optimizer step and the
run's overhead beyond its epochs; optionally the same with torch.compile.
The plan's defaults (``plan.DEFAULT_TFLOPS``, ``DEFAULT_STEP_MS``,
``RUN_OVERHEAD_S``) are read off these figures.

    python benchmarks/plan_rates.py --models fastnet resnet18 vgg_a --out rates.json
    python benchmarks/plan_rates.py --compile fastnet resnet18
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cifar_lib.engine import fit, make_loaders  # noqa: E402
from cifar_lib.experiments import write_json, environment, profile_split  # noqa: E402
from cifar_lib.models import create_model  # noqa: E402
from cifar_lib.plan import forward_gflops  # noqa: E402
from cifar_lib.profiles import get_profile  # noqa: E402
from cifar_lib.studies.classification import arch_recipe  # noqa: E402


def measure(model: str, split, P, epochs: int, compile: bool = False) -> dict:
    """One short run of ``model``: per-epoch times and effective rates."""
    cfg = arch_recipe(P, model, {}, epochs=epochs).replace(compile=compile)
    net = create_model(model)
    t0 = time.perf_counter()
    out = fit(net, make_loaders(split, cfg), cfg)
    wall = time.perf_counter() - t0
    times = [h["time"] for h in out["history"]]
    later = times[1:] or times
    per_epoch = sum(later) / len(later)
    n = len(split.train[1])
    steps = n // cfg.batch_size
    g = forward_gflops(model)
    return {"model": model, "compile": compile, "epochs": epochs, "batch_size": cfg.batch_size,
            "gflops_forward": g, "first_epoch_s": times[0], "epoch_s": per_epoch,
            "ms_per_step": 1e3 * per_epoch / steps,
            "train_tflops": 3 * g * n / per_epoch / 1e3,
            "overhead_s": wall - sum(times), "wall_s": wall,
            "test_acc": out["metrics"]["test_acc"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["fastnet", "resnet18", "vgg_a"])
    ap.add_argument("--compile", nargs="*", default=[], help="models also timed compiled")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--profile", default="full")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    P = get_profile(args.profile)
    split = profile_split(P)
    rows = []
    for m in args.models:
        rows.append(measure(m, split, P, args.epochs))
        print(json.dumps(rows[-1]), flush=True)
    for m in args.compile:
        rows.append(measure(m, split, P, args.epochs, compile=True))
        print(json.dumps(rows[-1]), flush=True)
    result = {"env": environment(), "data": split.describe(), "rows": rows}
    if args.out:
        write_json(result, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

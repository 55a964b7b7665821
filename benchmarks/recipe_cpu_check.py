"""airbench_recipe against the old fast_recipe at the cpu profile's scale.

The cpu profile's split of real CIFAR-10 (5,000 training, 2,000 validation
and 2,000 test images), FastNet at width 0.5, the same epochs and batch for
both recipes, two seeds; trained with ``engine.fit`` directly, so nothing
is written into results/ or runs/. Prints each run's test accuracy (with
each recipe's own TTA) and the means.

    python benchmarks/recipe_cpu_check.py --data data/ --epochs 4 --seeds 0 1
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cifar_lib.engine import fit, make_loaders  # noqa: E402
from cifar_lib.experiments import profile_split  # noqa: E402
from cifar_lib.models import create_model  # noqa: E402
from cifar_lib.profiles import get_profile  # noqa: E402
from cifar_lib.recipes import airbench_recipe  # noqa: E402
from cifar_lib.studies.classification import fast_recipe  # noqa: E402


def recipes(epochs: int, batch: int, width: float, seed: int, variants=(),
            old: bool = True) -> dict:
    """The old recipe and airbench_recipe, plus one airbench_recipe per
    variant (a dict of TrainConfig fields it changes)."""
    P = get_profile("cpu")
    out = {}
    if old:
        out["fast_recipe (old)"] = fast_recipe(P, epochs=epochs, batch_size=batch,
                                               model_kw={"width": width}, seed=seed)
    out["airbench_recipe"] = airbench_recipe(width=width, epochs=epochs, seed=seed,
                                             batch_size=batch)
    for over in variants:
        name = "airbench_recipe " + ", ".join(f"{k}={v}" for k, v in over.items())
        out[name] = airbench_recipe(width=width, epochs=epochs, seed=seed,
                                    batch_size=batch, **over)
    return out


def _variant(text: str) -> dict:
    """``lr=23,whiten_bias_epochs=1`` -> {"lr": 23.0, "whiten_bias_epochs": 1}."""
    out = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        out[key.strip()] = json.loads(value)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="data root (default: CIFAR10_ROOT or data/)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128, help="both recipes' batch size")
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variant", action="append", default=[], type=_variant,
                    help="also airbench_recipe with these fields, e.g. lr=23,momentum=0.9 "
                         "(repeatable)")
    ap.add_argument("--no-old", action="store_true", help="leave out the old recipe")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    split = profile_split("cpu", args.data)
    print(f"data: {split.describe()}", flush=True)
    accs: dict[str, list[float]] = {}
    vals: dict[str, list[float]] = {}
    for seed in args.seeds:
        for name, cfg in recipes(args.epochs, args.batch, args.width, seed, args.variant,
                                          not args.no_old).items():
            torch.manual_seed(seed)
            model = create_model(cfg.model, **cfg.model_kw)
            t0 = time.perf_counter()
            out = fit(model, make_loaders(split, cfg, "cpu"), cfg)
            acc = out["metrics"]["test_acc"]
            val = out["metrics"].get("kept_val_acc")
            accs.setdefault(name, []).append(acc)
            vals.setdefault(name, []).append(val)
            print(f"{name} seed {seed}: val acc {val:.4f}, test acc {acc:.4f} ({out['status']}, "
                  f"train {out['metrics']['train_time']:.0f} s, "
                  f"all {time.perf_counter() - t0:.0f} s)", flush=True)
    for name, a in accs.items():
        print(f"{name}: mean val acc {statistics.mean(vals[name]):.4f}, mean test acc "
              f"{statistics.mean(a):.4f} over seeds {args.seeds} "
              f"({', '.join(f'{v:.4f}' for v in a)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

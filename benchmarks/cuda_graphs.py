"""CUDA graphs for FastNet's lean loop: the like-for-like race's FastNet
side (``airbench_recipe``, training only timed, the device synchronised at
both ends) eager, under ``torch.compile`` and under
``torch.compile(mode="reduce-overhead")`` (CUDA graphs of the compiled
forward and backward; the optimizer step and the weight averaging stay
eager), each mode its median of ``--runs`` runs after one untimed warm-up
run, whose time (compilation included) is reported apart.

    python benchmarks/cuda_graphs.py --runs 3 --epochs 9.9
    python benchmarks/cuda_graphs.py --dry-run    # CPU, synthetic, tiny, eager: the code paths

Writes ``results/benchmarks/cuda_graphs.json`` (``--out``): per mode the
median time with its spread, the median test accuracy, the warm-up run's
time, and the ratio of each mode's median time to eager's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from airbench_race import med, run_ours  # noqa: E402
from cifar_lib.data import split_data, synthetic_cifar  # noqa: E402
from cifar_lib.engine import default_device  # noqa: E402
from cifar_lib.experiments import environment, profile_split  # noqa: E402
from cifar_lib import store  # noqa: E402

OUT = ROOT / "results" / "benchmarks" / "cuda_graphs.json"
MODES = {"eager": False, "compile": True, "reduce-overhead": "reduce-overhead"}


def measure(split, epochs: float, runs: int, device, modes, width: float = 1.0) -> dict:
    """Each mode's runs, medians and ratio to eager's median time."""
    out = {}
    for name in modes:
        warm: list = []
        rows = run_ours(split, epochs, runs, device, width, compile=MODES[name], warmup=warm)
        out[name] = {"time_s": med(rows, "time_s"), "test_acc": med(rows, "test_acc"),
                     "warmup_run_s": warm[0], "runs": rows}
        print(f"{name}: {out[name]['time_s']['median']:.2f} s, test acc "
              f"{out[name]['test_acc']['median']:.4f} (warm-up run {warm[0]:.1f} s)",
              flush=True)
    if "eager" in out:
        base = out["eager"]["time_s"]["median"]
        for v in out.values():
            v["ratio_to_eager"] = v["time_s"]["median"] / base
    return {"recipe": "airbench_recipe", "epochs": epochs,
            "timed": "training only, device synchronised", "modes": out}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=float, default=9.9)
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--dry-run", action="store_true",
                    help="CPU, synthetic data, tiny model, eager only: writes nothing")
    args = ap.parse_args(argv)
    if args.dry_run:
        split = split_data(synthetic_cifar(n_train=96, n_test=32, seed=0), val_size=16, seed=0)
        res = measure(split, 1.5, 2, torch.device("cpu"), ["eager"], width=0.125)
        assert res["modes"]["eager"]["ratio_to_eager"] == 1.0
        print("dry run: ok")
        return 0
    device = default_device()
    if device.type != "cuda":
        raise SystemExit("CUDA graphs need a CUDA GPU; try --dry-run on a CPU")
    res = measure(profile_split("full"), args.epochs, args.runs, device, args.modes)
    res.update(env=environment())
    store.write(res, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

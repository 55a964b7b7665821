"""Time to accuracy: this engine's FastNet against airbench94, same data, same GPU.

airbench (Keller Jordan's airbench94, the PyPI package) is CUDA-only, reads
``cifar10/{train,test}.pt`` relative to its working folder and sets
``cudnn.benchmark`` globally when imported, so it runs in its own process in
a scratch folder holding the same 45k training split and 10k test set as
ours (written here from ``profile_split("full")``: on this workplace the
JPEG copy). Each side trains ``--runs`` times:

* airbench: ``train94`` (its own recipe, 9.9 epochs, TTA level 2), timed
  wall-clock around the call with the GPU synchronised; test accuracy with
  its ``evaluate`` (not timed);
* ours: ``engine.fit`` with the FastNet recipe of the ablations
  (``classification.fast_recipe``) at several epoch budgets, timed
  wall-clock around ``fit`` (its per-epoch validation included).

Ours' time to airbench's accuracy is the median time of the shortest budget
whose median test accuracy reaches airbench's median. Prints the medians and
the ratio (ours / airbench) and writes them as JSON.

    python benchmarks/airbench_race.py --runs 5 --epochs 8 10 12 --out race.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cifar_lib.engine import fit, make_loaders  # noqa: E402
from cifar_lib.experiments import write_json, environment, profile_split  # noqa: E402
from cifar_lib.models import create_model  # noqa: E402
from cifar_lib.profiles import get_profile  # noqa: E402
from cifar_lib.studies.classification import fast_recipe  # noqa: E402

AIRBENCH = r"""
import json, sys, time, torch, airbench
runs = int(sys.argv[1])
airbench.warmup94(verbose=False)
test = airbench.CifarLoader('cifar10', train=False, batch_size=2000)
out = []
for i in range(runs):
    loader = airbench.CifarLoader('cifar10', train=True, batch_size=1024,
                                  aug={'flip': True, 'translate': 2}, altflip=True)
    torch.cuda.synchronize(); t0 = time.perf_counter()
    model = airbench.train94(loader, run=i, verbose=False)
    torch.cuda.synchronize(); t = time.perf_counter() - t0
    acc = airbench.evaluate(model, test, tta_level=2)
    out.append({"time_s": t, "test_acc": float(acc)})
    print(json.dumps(out[-1]), flush=True)
print("RESULT " + json.dumps(out))
"""


def write_airbench_data(split, folder: Path) -> None:
    """Our train split and test set in airbench's format (uint8 NHWC)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (x, y) in (("train", split.train), ("test", split.test)):
        torch.save({"images": x.permute(0, 2, 3, 1).contiguous(), "labels": y,
                    "classes": list(split.classes)}, folder / f"{name}.pt")


def run_airbench(split, runs: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        write_airbench_data(split, Path(tmp) / "cifar10")
        proc = subprocess.run([sys.executable, "-c", AIRBENCH, str(runs)], cwd=tmp,
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"airbench failed:\n{proc.stderr[-3000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def run_ours(split, epochs: int, runs: int) -> list[dict]:
    P = get_profile("full")
    out = []
    for seed in range(runs + 1):  # the first run warms up kernels; not counted
        cfg = fast_recipe(P, epochs=epochs, seed=seed)
        net = create_model(cfg.model, **cfg.model_kw)
        loaders = make_loaders(split, cfg)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        m = fit(net, loaders, cfg)["metrics"]
        torch.cuda.synchronize()
        if seed:
            out.append({"time_s": time.perf_counter() - t0, "train_time_s": m["train_time"],
                        "test_acc": m["test_acc"]})
    return out


def med(rows, key):
    vals = [r[key] for r in rows]
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--epochs", type=int, nargs="+", default=[8, 10, 12])
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    split = profile_split("full")
    ab = run_airbench(split, args.runs)
    ab_acc, ab_time = med(ab, "test_acc"), med(ab, "time_s")
    print(f"airbench94: {ab_acc['median']:.4f} test acc in {ab_time['median']:.2f} s (median of {args.runs})")
    ours = {}
    for e in args.epochs:
        rows = run_ours(split, e, args.runs)
        ours[e] = {"time_s": med(rows, "time_s"), "train_time_s": med(rows, "train_time_s"),
                   "test_acc": med(rows, "test_acc"), "runs": rows}
        print(f"FastNet {e} epochs: {ours[e]['test_acc']['median']:.4f} in "
              f"{ours[e]['time_s']['median']:.2f} s", flush=True)
    reach = [e for e in args.epochs if ours[e]["test_acc"]["median"] >= ab_acc["median"]]
    best = min(reach) if reach else None
    ratio = ours[best]["time_s"]["median"] / ab_time["median"] if best else None
    print(f"time to airbench's accuracy: "
          + (f"FastNet {best} epochs, ratio ours/airbench {ratio:.2f}" if best
             else "not reached at these budgets"))
    result = {"env": environment(), "data": split.describe(), "airbench": {
        "version": "0.1.8 (airbench94)", "time_s": ab_time, "test_acc": ab_acc, "runs": ab},
        "ours": {str(e): v for e, v in ours.items()}, "reached_at_epochs": best,
        "time_ratio_ours_over_airbench": ratio}
    if args.out:
        write_json(result, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time to accuracy, like for like: FastNet under airbench_recipe against
airbench94, same data, same GPU, training only timed on both sides.

airbench (Keller Jordan's airbench94, the PyPI package 0.1.8) is CUDA-only,
reads ``cifar10/{train,test}.pt`` relative to its working folder and sets
``cudnn.benchmark`` globally when imported, so it runs in its own process in
a scratch folder holding the same 45k training split and 10k test set as
ours (written here from ``profile_split("full")``: on this workplace the
JPEG copy). Each side trains ``--runs`` times after one untimed warm-up run,
and the timed region is training only, the device synchronised at both ends:

* airbench: ``train94`` (its recipe, 9.9 epochs; with ``verbose=False`` it
  evaluates nothing), from the call to its return (network, whitening,
  training); test accuracy with its ``evaluate`` at TTA level 2, not timed;
* ours: ``cifar_lib.recipes.airbench_recipe`` (the lean loop: no
  validation or snapshot while training) for each ``--epochs`` budget, from
  the network's creation to the end of training (``fit``'s
  ``train_wall_time``); the one validation and the test (6 TTA views, as
  airbench's level 2) come after, not timed.

FastNet's time to airbench94's accuracy is the median time of the shortest
budget whose median test accuracy reaches airbench94's median; the ratio is
that time over airbench94's median time. Writes one JSON (``--out``,
default ``results/benchmarks/race_like_for_like.json``) with
``"like_for_like": true``; ``benchmarks/summarize.py`` adds it to
results/benchmarks.json beside the old race (the old recipe, per-epoch
validation timed).

    python benchmarks/airbench_race.py --runs 5 --epochs 9.9 10.5 11 12
    python benchmarks/airbench_race.py --dry-run    # CPU, synthetic, tiny: the code paths
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
from cifar_lib.data import split_data, synthetic_cifar  # noqa: E402
from cifar_lib.engine import default_device, fit, make_loaders  # noqa: E402
from cifar_lib.experiments import environment, profile_split  # noqa: E402
from cifar_lib import store  # noqa: E402
from cifar_lib.models import create_model  # noqa: E402
from cifar_lib.recipes import airbench_recipe  # noqa: E402

OUT = ROOT / "results" / "benchmarks" / "race_like_for_like.json"

AIRBENCH = r"""
import json, sys, time, torch, airbench
runs = int(sys.argv[1])
airbench.warmup94(verbose=False)  # untimed warm-up
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


def _sync(device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def run_ours(split, epochs: float, runs: int, device, width: float = 1.0,
             compile: bool | str = False, warmup: list | None = None) -> list[dict]:
    """``runs`` timed runs of airbench_recipe (after one untimed warm-up,
    whose time goes to ``warmup`` where given); ``compile``: TrainConfig's
    torch.compile setting (False: eager)."""
    out = []
    for seed in range(runs + 1):  # the first run warms up kernels; not counted
        cfg = airbench_recipe(width=width, epochs=epochs, seed=seed).replace(compile=compile)
        if len(split.train[1]) < cfg.batch_size:  # the dry run's tiny set
            cfg = cfg.replace(batch_size=max(8, len(split.train[1]) // 4))
        loaders = make_loaders(split, cfg, device)
        t0 = _sync(device)
        model = create_model(cfg.model, **cfg.model_kw)
        made = _sync(device) - t0
        res = fit(model, loaders, cfg)
        if not seed and warmup is not None:
            warmup.append(made + res["train_wall_time"])
        if seed:
            out.append({"time_s": made + res["train_wall_time"],
                        "test_acc": res["metrics"]["test_acc"], "status": res["status"]})
    return out


def med(rows, key):
    vals = [r[key] for r in rows]
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "n": len(vals)}


def race(split, airbench_rows, budgets, runs, device, width=1.0) -> dict:
    """Both sides' medians (with spread), FastNet's time to airbench94's
    accuracy and its ratio to airbench94's time."""
    ab_acc, ab_time = med(airbench_rows, "test_acc"), med(airbench_rows, "time_s")
    print(f"airbench94: {ab_acc['median']:.4f} test acc in {ab_time['median']:.2f} s "
          f"(median of {len(airbench_rows)})", flush=True)
    ours = {}
    for e in budgets:
        rows = run_ours(split, e, runs, device, width)
        ours[str(e)] = {"time_s": med(rows, "time_s"), "test_acc": med(rows, "test_acc"),
                        "runs": rows}
        print(f"FastNet airbench_recipe {e} epochs: {ours[str(e)]['test_acc']['median']:.4f} "
              f"in {ours[str(e)]['time_s']['median']:.2f} s", flush=True)
    reach = [e for e in budgets if ours[str(e)]["test_acc"]["median"] >= ab_acc["median"]]
    best = min(reach) if reach else None
    ratio = ours[str(best)]["time_s"]["median"] / ab_time["median"] if best else None
    print("time to airbench94's accuracy: " +
          (f"FastNet {best} epochs, ratio ours/airbench {ratio:.2f}" if best
           else "not reached at these budgets"))
    return {"like_for_like": True, "timed": "training only, device synchronised; "
            "evaluation outside, both sides", "recipe": "airbench_recipe",
            "airbench": {"version": "0.1.8 (airbench94)", "time_s": ab_time,
                         "test_acc": ab_acc, "runs": airbench_rows},
            "ours": ours, "reached_at_epochs": best, "ratio": ratio}


def dry_run() -> int:
    """The race's code paths on the CPU: synthetic data, a tiny FastNet,
    made-up airbench rows (airbench needs CUDA); writes nothing."""
    split = split_data(synthetic_cifar(n_train=96, n_test=32, seed=0), val_size=16, seed=0)
    fake = [{"time_s": 1.0 + i / 10, "test_acc": 0.1} for i in range(3)]
    out = race(split, fake, [1, 1.5], 2, torch.device("cpu"), width=0.125)
    assert out["like_for_like"] and set(out["ours"]) == {"1", "1.5"}
    print("dry run: ok")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--epochs", type=float, nargs="+", default=[9.9, 10.5, 11.0, 12.0])
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--dry-run", action="store_true",
                    help="CPU, synthetic data, tiny model: exercise the code, write nothing")
    args = ap.parse_args(argv)
    if args.dry_run:
        return dry_run()
    device = default_device()
    if device.type != "cuda":
        raise SystemExit("the race needs a CUDA GPU (airbench is CUDA-only); "
                         "try --dry-run on a CPU")
    if args.runs < 5:
        raise SystemExit("medians of at least 5 runs per side: --runs 5 or more")
    split = profile_split("full")
    result = race(split, run_airbench(split, args.runs), args.epochs, args.runs, device)
    result.update(env=environment(), data=split.describe())
    store.write(result, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

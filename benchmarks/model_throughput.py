"""Training throughput of the model zoo: images/s and peak memory per model.

One training step is forward + cross-entropy + backward + SGD (momentum)
step on a synthetic batch that lives on the device. On CUDA the step runs
under bf16 autocast with channels_last tensors (as ``engine.fit`` does); on
CPU it runs in fp32 and peak memory is not measured (NaN). Steps are timed
after a few warm-up steps, with the device synchronised at both ends.

    python benchmarks/model_throughput.py                      # all models
    python benchmarks/model_throughput.py --models resnet18 canet \\
        --batch 512 --out results/benchmarks/throughput.csv    # or .json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cifar_lib.experiments import environment  # noqa: E402
from cifar_lib.models import (  # noqa: E402
    count_params, create_model, list_models, model_family)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(name: str, batch: int = 512, steps: int = 20, warmup: int = 3,
          device: str | torch.device = "cuda", compile: bool = False) -> dict:
    """Time ``steps`` training steps of model ``name``; one result row."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = create_model(name).to(device)
    fmt = torch.channels_last if cuda else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                          nesterov=True)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    net = torch.compile(model) if compile else model

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    row = {"model": name, "family": model_family(name),
           "params": count_params(model), "batch": batch,
           "device": device.type, "dtype": "bf16" if cuda else "fp32",
           "channels_last": cuda, "steps": steps}
    try:
        for _ in range(warmup):
            step()
        _sync(device)
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        dt = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else math.nan
        row.update(step_ms=1e3 * dt / steps, images_per_s=batch * steps / dt,
                   peak_mem_mb=peak, error="")
    except torch.cuda.OutOfMemoryError:
        row.update(step_ms=math.nan, images_per_s=math.nan,
                   peak_mem_mb=math.nan, error="out of memory")
    finally:
        del net, model, opt
        if cuda:
            torch.cuda.empty_cache()
    return row


def save(rows: list[dict], env: dict, args, out: Path) -> None:
    """Write rows as CSV, or as JSON (with the environment) for a .json path."""
    import pandas as pd

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".json":
        clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v)
                  for k, v in r.items()} for r in rows]
        out.write_text(json.dumps({"environment": env, "config": vars(args),
                                   "rows": clean}, indent=2, default=str))
    else:
        pd.DataFrame(rows).to_csv(out, index=False)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=None,
                   help="registered names (default: all)")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available()
                   else "cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile each model")
    p.add_argument("--out", type=Path, default=None, help=".csv or .json")
    args = p.parse_args(argv)

    import pandas as pd

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    names = args.models or list_models()
    for name in names:  # fail on a misspelt name before the first long run
        model_family(name)
    rows = []
    for name in names:
        rows.append(bench(name, args.batch, args.steps, args.warmup, device,
                          args.compile))
        r = rows[-1]
        mem = "" if math.isnan(r["peak_mem_mb"]) else f"{r['peak_mem_mb']:.0f} MiB"
        print(f"{name:18s} {r['images_per_s']:10.0f} img/s  {mem} {r['error']}",
              flush=True)
    env = environment(device)
    print(f"\n{env}")
    cols = ["model", "params", "batch", "dtype", "step_ms", "images_per_s",
            "peak_mem_mb", "error"]
    print(pd.DataFrame(rows)[cols].to_string(index=False, float_format="%.1f"))
    if args.out:
        save(rows, env, args, args.out)
        print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()

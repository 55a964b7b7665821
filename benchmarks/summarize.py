"""Collect the GPU benchmark outputs into results/benchmarks.json.

Reads, from ``results/benchmarks/``: ``race.json`` (the first race: the old
FastNet recipe, its per-epoch validation inside the timed region),
``race_like_for_like.json`` (benchmarks/airbench_race.py: airbench_recipe,
training only timed on both sides), ``cuda_graphs.json``
(benchmarks/cuda_graphs.py: eager, compiled, CUDA graphs), 
``tp_<model>.json`` (benchmarks/throughput.py) and ``rates.json``
(benchmarks/plan_rates.py), and writes one summary with the device named,
each figure as a median with its spread, and the ratios. The README's
benchmark table is rendered from it (``python -m cifar_lib report``).

    python benchmarks/summarize.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "results" / "benchmarks"


def summarize(src: Path = SRC) -> dict:
    race = json.loads((src / "race.json").read_text())
    out = {"device": race["env"]["device_name"], "torch": race["env"]["torch"],
           "data": race["data"]["source"],
           "split": {k: race["data"][k] for k in ("train", "test")},
           "airbench_race": {
               "recipe": "fast_recipe (old): whole epochs, per-epoch validation and "
                         "snapshot timed; not like for like",
               "like_for_like": False,
               "airbench94": {"time_s": race["airbench"]["time_s"],
                              "test_acc": race["airbench"]["test_acc"]},
               "fastnet": {f"{e} epochs": {"time_s": v["time_s"], "test_acc": v["test_acc"]}
                           for e, v in race["ours"].items()},
               "reached_at_epochs": race["reached_at_epochs"],
               "time_ratio_ours_over_airbench": race["time_ratio_ours_over_airbench"]},
           "throughput": {}}
    fair = src / "race_like_for_like.json"
    if fair.is_file():
        out["airbench_race_like_for_like"] = like_for_like(json.loads(fair.read_text()))
    graphs = src / "cuda_graphs.json"
    if graphs.is_file():
        g = json.loads(graphs.read_text())
        out["cuda_graphs"] = {"device": g["env"]["device_name"], "torch": g["env"]["torch"],
                              "epochs": g["epochs"], "timed": g["timed"],
                              "modes": {k: {f: v[f] for f in ("time_s", "test_acc",
                                                               "warmup_run_s", "ratio_to_eager")
                                            if f in v}
                                        for k, v in g["modes"].items()}}
    for path in sorted(src.glob("tp_*.json")):
        tp = json.loads(path.read_text())
        out["throughput"][tp["model"]] = {
            "ours_images_per_s": tp["ours_images_per_s"],
            "dataloader_pil_images_per_s": tp["naive_images_per_s"],
            "workers": tp["workers"], "batch_size": tp["batch_size"],
            "ratio": tp["ratio"]}
    rates = src / "rates.json"
    if rates.is_file():
        out["plan_rates"] = [{k: r[k] for k in ("model", "compile", "epoch_s", "ms_per_step",
                                                "train_tflops", "first_epoch_s")}
                             for r in json.loads(rates.read_text())["rows"]]
    return out


def like_for_like(race: dict) -> dict:
    """The like-for-like race's entry: device, both sides' medians with
    their spread, accuracies, and the ratio of FastNet's time to
    airbench94's accuracy over airbench94's time."""
    return {"like_for_like": True, "recipe": race.get("recipe", "airbench_recipe"),
            "timed": race.get("timed"), "device": race["env"]["device_name"],
            "torch": race["env"]["torch"], "data": race["data"]["source"],
            "airbench94": {"time_s": race["airbench"]["time_s"],
                           "test_acc": race["airbench"]["test_acc"]},
            "fastnet": {f"{e} epochs": {"time_s": v["time_s"], "test_acc": v["test_acc"]}
                        for e, v in race["ours"].items()},
            "reached_at_epochs": race["reached_at_epochs"], "ratio": race["ratio"]}


def main() -> int:
    out = summarize()
    path = ROOT / "results" / "benchmarks.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

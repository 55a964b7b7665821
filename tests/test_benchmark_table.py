"""The README's speed record: the like-for-like race first (its own
device), the old race labelled as such, and a reading whose every number
and direction comes from the race's entry."""
from __future__ import annotations

import importlib
import json

from cifar_lib.profiles import get_profile

values = importlib.import_module("cifar_lib.studies.classification.values")


def _t(m):
    return {"median": m, "min": m - 0.01, "max": m + 0.01, "n": 5}


def _race(ab, ours):
    return {"airbench94": {"time_s": _t(ab[0]), "test_acc": _t(ab[1])},
            "fastnet": {f"{e} epochs": {"time_s": _t(t), "test_acc": _t(a)}
                        for e, (t, a) in ours.items()}}


def _write(P, fair_ours):
    b = {"device": "GPU-A", "torch": "2.x", "data": "CIFAR-10 (JPEG copy)",
         "airbench_race": _race((2.0, 0.90), {"12": (6.0, 0.89)}), "throughput": {}}
    if fair_ours is not None:
        b["airbench_race_like_for_like"] = {"like_for_like": True, "device": "GPU-B",
                                            "torch": "2.y", **_race((2.0, 0.90), fair_ours)}
    P.results.mkdir(parents=True, exist_ok=True)
    (P.results / "benchmarks.json").write_text(json.dumps(b))


def test_the_like_for_like_race_leads_the_table_with_its_own_device(tmp_path):
    P = get_profile("smoke").with_(root=tmp_path)
    _write(P, {"9.9": (1.8, 0.899), "11.0": (1.9, 0.902)})
    df = values.benchmarks_table(P)
    assert list(df["device"]) == ["GPU-B"] * 3 + ["GPU-A"] * 2
    assert df["measure"][0].startswith("like for like: airbench94")
    assert df["measure"][3].startswith("old race: airbench94")
    assert df["ratio"][1] == "0.90x airbench's time, below its accuracy"
    assert df["ratio"][2] == "0.95x airbench's time"
    assert "GPU-B" in values.benchmark_device(P) and "GPU-A" in values.benchmark_device(P)
    text = values.benchmark_reading(P)
    assert "first reaches it at 11 epochs (90.20% in 1.90 s): 0.95x" in text
    assert "within the goal" in text and "At 9.9 epochs it is faster (1.80 s, 0.90x)" in text


def test_the_reading_says_over_the_goal_or_not_reached(tmp_path):
    P = get_profile("smoke").with_(root=tmp_path)
    _write(P, {"12": (2.2, 0.91)})
    assert "1.10x airbench94's time, over the goal" in values.benchmark_reading(P)
    _write(P, {"12": (2.2, 0.85)})
    assert "does not reach it at any budget raced" in values.benchmark_reading(P)
    _write(P, None)
    assert values.benchmark_reading(P) is None
    assert list(values.benchmarks_table(P)["device"]) == ["GPU-A"] * 2


def test_a_device_name_is_short_in_a_table_column():
    assert values.short_device("NVIDIA H100 80GB HBM3") == "H100"
    assert values.short_device("NVIDIA H200") == "H200"
    assert values.short_device("NVIDIA GeForce RTX 4090") == "GeForce RTX 4090"
    assert values.short_device("cpu") == "cpu"


def test_the_race_and_the_cuda_graphs_benchmark_run_their_code_paths_on_the_cpu(capsys):
    import sys
    from cifar_lib.profiles import REPO
    sys.path.insert(0, str(REPO / "benchmarks"))
    import airbench_race
    import cuda_graphs
    assert airbench_race.main(["--dry-run"]) == 0
    assert cuda_graphs.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("dry run: ok") == 2 and "eager:" in out


def test_compile_takes_a_mode_and_keeps_old_run_names():
    import pytest
    import torch.nn as nn
    from cifar_lib.engine import TrainConfig, compiled
    assert TrainConfig(model="lenet").to_dict()["compile"] is False   # as stored before
    assert TrainConfig(model="lenet", compile="reduce-overhead").compile == "reduce-overhead"
    with pytest.raises(ValueError, match="compile"):
        TrainConfig(model="lenet", compile="fast")
    m = nn.Linear(2, 2)
    assert compiled(m, False) is m


def test_cuda_graph_rows_follow_the_races_with_their_ratio_to_eager(tmp_path):
    P = get_profile("smoke").with_(root=tmp_path)
    _write(P, None)
    b = json.loads((P.results / "benchmarks.json").read_text())
    b["cuda_graphs"] = {"device": "GPU-B", "epochs": 9.9, "modes": {
        m: {"time_s": _t(t), "test_acc": _t(0.9), "warmup_run_s": 30.0,
            "ratio_to_eager": t / 1.6} for m, t in (("eager", 1.6), ("reduce-overhead", 1.2))}}
    (P.results / "benchmarks.json").write_text(json.dumps(b))
    df = values.benchmarks_table(P)
    assert list(df["ratio"][2:]) == ["1.00x eager's time", "0.75x eager's time"]
    assert df["measure"][3].startswith("CUDA graphs: FastNet, airbench_recipe, 9.9 epochs, "
                                       "reduce-overhead (warm-up run 30.0 s)")


def test_the_reading_weighs_a_thin_margin_against_airbench_spread(tmp_path):
    """A first reaching budget whose margin lies inside airbench94's range of
    runs is said to, with the first budget that clears the whole range."""
    P = get_profile("smoke").with_(root=tmp_path)
    _write(P, {"9.9": (1.8, 0.905), "10.5": (1.86, 0.9105), "12": (2.2, 0.92)})
    text = values.benchmark_reading(P)
    assert "first reaches it at 9.9 epochs" in text
    assert ("Its margin (0.50 points) lies inside airbench94's run-to-run range "
            "(89.00-91.00%); FastNet's median clears all of it first at 10.5 epochs "
            "(91.05% in 1.86 s, 0.93x airbench94's time).") in text
    _write(P, {"9.9": (1.8, 0.905)})
    assert "; no budget raced clears all of it." in values.benchmark_reading(P)
    _write(P, {"9.9": (1.8, 0.92)})   # 2 points over airbench's median: clear
    assert "margin" not in values.benchmark_reading(P)


def test_the_reading_gives_cuda_graphs_against_eager(tmp_path):
    P = get_profile("smoke").with_(root=tmp_path)
    _write(P, {"9.9": (1.8, 0.92)})
    b = json.loads((P.results / "benchmarks.json").read_text())
    b["cuda_graphs"] = {"device": "GPU-B", "epochs": 9.9, "modes": {
        m: {"time_s": _t(t), "test_acc": _t(0.9)}
        for m, t in (("eager", 1.6), ("compile", 2.0), ("reduce-overhead", 1.44))}}
    (P.results / "benchmarks.json").write_text(json.dumps(b))
    text = values.benchmark_reading(P)
    assert ("CUDA graphs (`torch.compile(mode=\"reduce-overhead\")`, GPU-B) cut FastNet's "
            "9.9-epoch training to 0.90x eager's time (1.44 s against 1.60 s, medians of 5, "
            "one call); plain `torch.compile` is slower (1.25x).") in text

"""Runs on disk: JSON per run, loading instead of retraining, tables."""
from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch

from cifar_lib import experiments as E
from cifar_lib import store
from cifar_lib.engine import evaluate, make_loaders, read_checkpoint
from cifar_lib.profiles import get_profile
from conftest import tiny_config


@pytest.fixture
def smoke():
    """The smoke profile, rooted in this test's temp scratch folder."""
    return get_profile("smoke")


def no_training(*a, **kw):
    raise AssertionError("fit was called; the run should have been loaded")


def test_run_writes_a_record(smoke, small_split, tmp_path):
    assert str(smoke.root).startswith(str(tmp_path))  # never into the repo
    cfg = tiny_config(epochs=2)
    rec = E.run(cfg, small_split, "exp", smoke, label="tiny")
    path = smoke.results / "exp" / f"{rec['run']}.json"
    assert path.is_file() and json.loads(path.read_text()) == rec
    assert rec["run"] == E.run_name(cfg, small_split.describe())
    assert rec["run"].startswith("cnn3-s0-")
    assert (rec["experiment"], rec["label"], rec["status"]) == ("exp", "tiny", "ok")
    assert rec["config"] == cfg.to_dict() and rec["data"] == small_split.describe()
    assert rec["profile"] == "smoke" and rec["diverged_at"] is None
    assert {"torch", "torchvision", "python", "device"} <= set(rec["env"])
    assert rec["env"]["torch"] == torch.__version__
    assert [h["epoch"] for h in rec["history"]] == [1, 2]
    assert 0 < rec["metrics"]["test_acc"] <= 1 and rec["metrics"]["epochs_run"] == 2
    # weights beside it, listed in the manifest with their hash
    ck = smoke.root / rec["weights"]
    assert ck == smoke.weights / "exp" / f"{rec['run']}.pt" and ck.is_file()
    assert not ck.with_suffix(".last.pt").exists()
    manifest = json.loads((smoke.weights / "manifest.json").read_text())
    entry = manifest[rec["weights"]]
    assert entry["sha256"] == hashlib.sha256(ck.read_bytes()).hexdigest()
    assert entry["test_acc"] == rec["metrics"]["test_acc"]
    assert not list(smoke.root.rglob("*.tmp"))


def test_second_call_loads_and_force_retrains(smoke, small_split, monkeypatch):
    cfg = tiny_config()
    first = E.run(cfg, small_split, "exp", smoke)
    path = smoke.results / "exp" / f"{first['run']}.json"
    real_fit = E.fit
    monkeypatch.setattr(E, "fit", no_training)
    assert E.run(cfg, small_split, "exp", smoke) == first
    # the same config asked for by another experiment is reused, relabelled
    other = E.run(cfg, small_split, "other", smoke, label="again")
    assert other["experiment"] == "other" and other["label"] == "again"
    assert other["metrics"] == first["metrics"]
    assert (smoke.results / "other" / path.name).is_file()
    # a different config trains
    with pytest.raises(AssertionError, match="fit was called"):
        E.run(cfg.replace(lr=0.02), small_split, "exp", smoke)
    calls = []
    monkeypatch.setattr(E, "fit", lambda *a, **kw: calls.append(1) or real_fit(*a, **kw))
    forced = E.run(cfg, small_split, "exp", smoke, force=True)
    assert calls == [1] and forced["run"] == first["run"]
    assert json.loads(path.read_text()) == forced


def test_load_model_returns_the_trained_weights(smoke, small_split):
    cfg = tiny_config(epochs=2)
    rec = E.run(cfg, small_split, "exp", smoke)
    model = E.load_model(rec, smoke, device="cpu")
    assert not model.training
    saved = read_checkpoint(smoke.root / rec["weights"])["model"]
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    acc = evaluate(model, make_loaders(small_split, cfg, "cpu").test)["acc"]
    assert acc == pytest.approx(rec["metrics"]["test_acc"])


def test_load_model_with_fewer_classes(smoke):
    from cifar_lib.data import split_data, synthetic_cifar
    split5 = split_data(synthetic_cifar(300, 50, num_classes=5), 50)
    rec = E.run(tiny_config(), split5, "five", smoke)
    model = E.load_model(rec, smoke, device="cpu")
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)


def test_diverged_run_is_saved(smoke, small_split, monkeypatch):
    cfg = tiny_config(lr=1e6, epochs=2)
    rec = E.run(cfg, small_split, "exp", smoke)
    assert rec["status"] == "diverged" and rec["diverged_at"]["epoch"] == 0
    assert rec["weights"] is None and rec["metrics"]["test_acc"] is None
    path = smoke.results / "exp" / f"{rec['run']}.json"
    assert json.loads(path.read_text())["status"] == "diverged"
    with pytest.raises(FileNotFoundError, match="kept no weights.*force=True"):
        E.load_model(rec, smoke)
    monkeypatch.setattr(E, "fit", no_training)
    assert E.run(cfg, small_split, "exp", smoke) == rec  # not retried


def test_records_are_json_safe(tmp_path):
    out = store._clean({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": 2}})
    assert out == {"a": None, "b": [1.0, None], "c": {"d": 2}}
    # the one writer (also by its older name) stores non-finite numbers as null
    assert E.write_json is store.write
    path = E.write_json({"x": float("nan"), "y": [float("-inf"), 1.5]}, tmp_path / "r.json")
    assert json.loads(path.read_text()) == {"x": None, "y": [None, 1.5]}


def fake_record(label, seed, test_acc, status="ok"):
    cfg = tiny_config(seed=seed).to_dict()
    return {"experiment": "e", "label": label, "run": f"{label}-{seed}", "status": status,
            "config": cfg, "metrics": {"test_acc": test_acc, "best_val_acc": test_acc,
                                       "train_time": 1.0 + seed}}


def test_results_frame_and_summary():
    recs = [fake_record("a", 0, 0.5), fake_record("b", 0, 0.9), fake_record("a", 1, 0.7),
            fake_record("a", 2, 0.6), fake_record("b", 1, None, status="diverged")]
    df = E.results_frame(recs)
    assert len(df) == 5 and list(df["label"]) == ["a", "b", "a", "a", "b"]
    assert list(df["seed"]) == [0, 0, 1, 2, 1] and (df["model"] == "cnn3").all()
    assert "model_kw" not in df.columns  # only scalar config fields
    s = E.summarize(df).set_index("label")
    assert list(s.index) == ["a", "b"]  # first-seen order
    assert s.loc["a", "test_acc_mean"] == pytest.approx(0.6)
    assert s.loc["a", "test_acc_std"] == pytest.approx(0.1)  # sample std over seeds
    assert s.loc["a", "train_time_mean"] == pytest.approx(2.0)
    assert s.loc["a", "runs"] == 3 and s.loc["a", "diverged"] == 0
    assert s.loc["b", "test_acc_mean"] == pytest.approx(0.9)
    assert s.loc["b", "runs"] == 2 and s.loc["b", "diverged"] == 1
    assert math.isnan(s.loc["b", "test_acc_std"])  # one finished run: no spread


def test_results_over_real_seeds(smoke, small_split):
    for seed in (0, 1):
        E.run(tiny_config(seed=seed), small_split, "seeds", smoke, label="tiny")
    recs = store.runs(smoke.results, "seeds")
    assert [r["config"]["seed"] for r in recs] == [0, 1]
    s = E.summarize(E.results_frame(recs))
    assert s.loc[0, "runs"] == 2
    accs = [r["metrics"]["test_acc"] for r in recs]
    assert s.loc[0, "test_acc_mean"] == pytest.approx(sum(accs) / 2)


def toy(make_runs, name="toy"):
    """A one-off experiment of tiny runs (not one of the studies')."""
    return E.Experiment(name, "00_x", "0", "core", make_runs)


def test_named_experiment(smoke, small_split):
    exp = toy(lambda P: [("slow", tiny_config(lr=0.01)), ("fast", tiny_config(lr=0.05))])
    assert [r.label for r in exp.runs(smoke)] == ["slow", "fast"]
    assert all(isinstance(r, E.Run) and exp.group_of(r) == "core" for r in exp.runs(smoke))
    recs = E.run_experiment(exp, smoke, small_split)
    df = E.results_frame(recs)
    assert list(df["label"]) == ["slow", "fast"] and list(df["lr"]) == [0.01, 0.05]
    assert all(r["experiment"] == "toy" for r in recs)
    assert len(store.runs(smoke.results, "toy")) == 2
    found = E.records(exp, smoke)
    assert [r["run"] for r in found] == [r["run"] for r in recs]
    assert [r["label"] for r in found] == ["slow", "fast"]
    # a damaged file in the folder is left out, a config no longer in the spec too
    (smoke.results / "toy" / "broken.json").write_text("{")
    fast = toy(lambda P: [("fast", tiny_config(lr=0.05))])
    assert [r["label"] for r in E.records(fast, smoke)] == ["fast"]
    # a run saved under another tag is not the experiment's
    tagged = toy(lambda P: [E.Run("fast", tiny_config(lr=0.05), tag={"probe": 1})])
    assert E.records(tagged, smoke) == []
    # labels come from the experiment's runs, not from the stored records
    renamed = toy(lambda P: [("quick", tiny_config(lr=0.05))])
    assert [r["label"] for r in E.records(renamed, smoke)] == ["quick"]


def test_find_experiment_names_the_choices():
    exps = [toy(lambda P: [], "toy"), toy(lambda P: [], "other")]
    assert E.find_experiment(exps, "other") is exps[1]
    with pytest.raises(ValueError, match=r"unknown experiment 'toyy'; did you mean 'toy'\? "
                       r"\(choose one of toy, other\)"):
        E.find_experiment(exps, "toyy")
    with pytest.raises(ValueError, match=r"unknown experiment 'nope' \(choose one of toy"):
        E.find_experiment(exps, "nope")


def test_records_find_shared_runs_newest_and_ok_only(smoke, small_split, split, monkeypatch):
    cfg = tiny_config(lr=0.05)
    # a run made for another experiment is this one's too, under this one's label
    first = E.run(cfg, small_split, "other", smoke, label="theirs")
    mine = toy(lambda P: [("mine", cfg)])
    found = E.records(mine, smoke)
    assert [(r["run"], r["label"]) for r in found] == [(first["run"], "mine")]
    # its own folder wins over another's; run_experiment copies it there, no training
    monkeypatch.setattr(E, "fit", no_training)
    E.run_experiment(mine, smoke, small_split)
    assert (smoke.results / "toy" / f"{first['run']}.json").is_file()
    monkeypatch.undo()
    # the same config on other data: the newest record wins, unless data is asked for
    second = E.run(cfg, split, "toy", smoke)
    assert second["run"] != first["run"]
    for rec, when in ((first, "2020"), (second, "2021")):
        _set_created(smoke, rec, when)
    assert [r["run"] for r in E.records(mine, smoke)] == [second["run"]]
    assert [r["run"] for r in E.records(mine, smoke, data=small_split.describe())] == \
        [first["run"]]
    _set_created(smoke, first, "2022")
    assert [r["run"] for r in E.records(mine, smoke)] == [first["run"]]
    # ok_only leaves a diverged run out
    bad = tiny_config(lr=1e6, epochs=2)
    both = toy(lambda P: [("mine", cfg), ("bad", bad)])
    E.run(bad, small_split, "toy", smoke)
    assert [r["label"] for r in E.records(both, smoke)] == ["mine", "bad"]
    assert [r["label"] for r in E.records(both, smoke, ok_only=True)] == ["mine"]


def _set_created(P, rec, year):
    """Date the stored record ``rec`` of experiment toy to ``year``."""
    path = store.run_path(P.results, "toy", rec["run"])
    store.write({**store.read(path), "created": f"{year}-01-01T00:00:00+00:00"}, path)


def test_run_hooks_are_fresh_for_each_run(smoke, small_split):
    made = []

    class Counter:
        def __init__(self):
            self.steps = 0
            made.append(self)

        def before_step(self, *a, **kw):
            self.steps += 1

        def result(self):
            return {"counted": self.steps}

    exp = toy(lambda P: [E.Run(f"lr {lr}", tiny_config(lr=lr), tag={"counted": True},
                               hooks=lambda: [Counter()]) for lr in (0.01, 0.05)])
    recs = E.run_experiment(exp, smoke, small_split)
    assert len(made) == 2 and made[0] is not made[1]
    assert all(r["tag"] == {"counted": True} for r in recs)
    assert [r["label"] for r in E.records(exp, smoke)] == ["lr 0.01", "lr 0.05"]
    assert all(r["run"] == store.run_key(r["config"], r["data"], r["tag"]) for r in recs)


def test_profile_split_for_smoke(smoke):
    s = E.profile_split("smoke")
    assert s.describe() == {"source": "synthetic", "train": smoke.train_size,
                            "val": smoke.val_size, "test": smoke.test_size,
                            "split_seed": 0}
    assert s.train[0].dtype == torch.uint8 and s.num_classes == 10
    assert E.profile_split(smoke) is s  # cached in memory


def test_run_name_depends_on_config_and_data(small_split):
    d = small_split.describe()
    a = E.run_name(tiny_config(), d)
    assert a == E.run_name(tiny_config(), d)
    assert a != E.run_name(tiny_config(lr=0.01), d)
    assert a != E.run_name(tiny_config(), {**d, "train": 1})
    assert E.run_name(tiny_config(seed=3), d).startswith("cnn3-s3-")


def test_profiles():
    assert get_profile("cpu").data == "cifar10"
    with pytest.raises(ValueError, match="unknown profile 'huge'; choose one of smoke, cpu, full"):
        get_profile("huge")


def test_need_weights_retrains_when_the_checkpoint_is_gone(smoke, small_split, monkeypatch):
    cfg = tiny_config(epochs=1)
    rec = E.run(cfg, small_split, "exp", smoke)
    ck = smoke.root / rec["weights"]
    ck.unlink()
    monkeypatch.setattr(E, "fit", no_training)
    assert E.run(cfg, small_split, "exp", smoke)["run"] == rec["run"]  # results suffice
    monkeypatch.undo()
    model = E.trained_model(cfg, small_split, "exp", smoke, device="cpu")
    assert ck.is_file()
    assert evaluate(model, make_loaders(small_split, cfg, "cpu").test)["acc"] == \
        pytest.approx(json.loads((smoke.results / "exp" / f"{rec['run']}.json").read_text())
                      ["metrics"]["test_acc"])


def test_force_removes_the_old_checkpoint(smoke, small_split, monkeypatch):
    cfg = tiny_config(epochs=1)
    rec = E.run(cfg, small_split, "exp", smoke)
    ck = smoke.root / rec["weights"]
    assert ck.is_file()

    def diverge_at_once(model, loaders, cfg, **kw):
        return {"status": "diverged", "diverged_at": {"epoch": 0, "step": 0},
                "history": [], "metrics": {"best_val_acc": None, "test_acc": None}}
    monkeypatch.setattr(E, "fit", diverge_at_once)
    again = E.run(cfg, small_split, "exp", smoke, force=True)
    assert again["status"] == "diverged" and again["weights"] is None and not ck.exists()

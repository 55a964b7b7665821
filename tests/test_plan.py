"""The plan (every run of a profile, once, with its cost) and the budgeted runner."""
from __future__ import annotations

import json

import pytest

from cifar_lib import plan as pl
from cifar_lib.__main__ import main
from cifar_lib.profiles import get_profile

FIELDS = {"experiment", "model", "model_kw", "epochs", "images", "seed",
          "gflops_forward", "train_pflops"}


def test_full_plan_lists_each_run_once_with_its_cost():
    P = get_profile("full")
    jobs = pl.plan(P)
    keys = [json.dumps([j.cfg.to_dict(), j.tag], sort_keys=True) for j in jobs]
    assert len(keys) == len(set(keys))  # runs shared by experiments appear once
    groups = [j.group for j in jobs]
    assert groups == sorted(groups, key=pl.PRIORITY.index)  # priority order
    assert {"core", "ablations", "batchnorm", "dessilbi", "zoo"} <= set(groups)
    assert all(j.images == 45_000 and j.train_pflops > 0 and j.est_s > 0 for j in jobs)
    # the baseline is shared by the ablations: named once, with the others listed
    from cifar_lib.studies.classification import ablation_recipe
    centre = ablation_recipe(P).to_dict()
    base = [j for j in jobs if "(baseline)" in j.label and j.cfg.model == "fastnet"
            and {**j.cfg.to_dict(), "seed": 0} == centre]
    assert len(base) == len(P.seeds) and all(j.also for j in base)
    # every architecture of the course reports is in the 20-minute set
    models = {j.cfg.model for j in jobs}
    for m in ("lenet", "cnn3", "resnet_s2", "resnet18", "resnet34", "resnet50",
              "preactresnet18", "wrn28_10", "resnext29_2x32d", "densenet121", "dpn26",
              "dla", "mobilenetv2", "shufflenetv2", "canet_tiny", "canet_light",
              "canet_base", "vgg_a", "vgg_a_bn", "vgg16_bn"):
        assert m in models, m
    assert "resnext29_8x64d" not in models and "canet_pro" not in models
    ext = {j.cfg.model for j in pl.plan(P, extended=True)}
    assert {"resnext29_8x64d", "canet_pro", "resnext50_32x4d"} <= ext


def test_plan_estimate_scales_with_the_rate():
    P = get_profile("full")
    t_slow = pl.totals(pl.plan(P, tflops=30.0))["est_min"]
    t_fast = pl.totals(pl.plan(P, tflops=120.0))["est_min"]
    assert t_slow > t_fast > 0


def test_cost_counts_flops_epochs_and_probes():
    from cifar_lib.engine import TrainConfig
    P = get_profile("full")
    cfg = TrainConfig(model="resnet18", epochs=2, batch_size=512)
    g, pf, secs = pl.cost(cfg, P)
    assert g == pytest.approx(1.11, rel=0.01)
    train = 3 * g * 45_000 * 2 / 1e6
    assert train < pf < train * 1.2  # plus validation and test passes
    g2, pf2, secs2 = pl.cost(cfg.replace(epochs=4), P, first=False)
    assert pf2 > 1.9 * pf and secs2 > secs - pl.WARMUP_MAX_S
    _, pf3, _ = pl.cost(cfg, P, tag={"probe_every": 10, "etas": [1, 2]})
    assert pf3 > pf
    # an optimizer with a measured host cost a step (SLBI) is its floor
    slbi = TrainConfig(model="vgg16_bn", epochs=12, batch_size=128, optimizer="slbi")
    sgd = slbi.replace(optimizer="sgd")
    steps = 12 * (45_000 // 128)
    assert pl.cost(slbi, P, first=False)[2] >= steps * pl.MEASURED_OPT_STEP_MS["slbi"] / 1e3
    assert pl.cost(sgd, P, first=False)[2] < pl.cost(slbi, P, first=False)[2] / 2


def test_cli_plan_prints_and_writes_json(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["plan", "--profile", "smoke", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "pending" in text and "estimated" in text
    d = json.loads(out.read_text())
    assert d["profile"] == "smoke" and d["runs"] and FIELDS <= set(d["runs"][0])
    assert d["total"]["runs"] == len(d["runs"]) and d["total"]["pending"] == len(d["runs"])


def test_budgeted_runner_stops_within_budget_and_resumes(monkeypatch):
    P = get_profile("smoke")
    # every run is estimated at 1 s; a 2.5 s budget launches a few, not all
    monkeypatch.setattr(pl, "cost", lambda cfg, P, tag=None, tflops=0, step_ms=0,
                        first=True: (0.01, 0.001, 1.0))
    monkeypatch.setattr(pl, "_update_ratio", lambda ratio, took, est, n: 1.0)
    monkeypatch.setattr(pl, "POST_RESERVE_S", 0.0)
    # the runner's clock moves 1 s per run trained and stands still otherwise,
    # so that a loaded machine's planning time does not change what fits
    import types
    from cifar_lib import experiments as E
    now = [0.0]
    real_train = E.train_one

    def train_one(*a, **kw):
        now[0] += 1.0
        return real_train(*a, **kw)
    monkeypatch.setattr(E, "train_one", train_one)
    monkeypatch.setattr(pl, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    logs = []
    first = pl.run_budget(P, budget_min=2.5 / 60, only_groups=("core",), log=logs.append)
    assert first["ran"] == 2 and first["pending"] >= 1
    done_after_first = sum(j.done for j in pl.plan(P) if j.group == "core")
    assert done_after_first == first["ran"]
    second = pl.run_budget(P, budget_min=30, only_groups=("core",), log=logs.append)
    assert second["ran"] == first["pending"] and second["pending"] == 0
    ran = [r["key"] for r in first["runs"] + second["runs"]]
    assert len(ran) == len(set(ran))  # nothing trained twice
    third = pl.run_budget(P, budget_min=30, only_groups=("core",), log=logs.append)
    assert third["ran"] == 0
    assert all(j.done for j in pl.plan(P) if j.group == "core")
    # each notebook's work: the recorded wall times of its runs, on this machine
    rows = {r["notebook"]: r for r in pl.work_by_notebook(P)}
    arch_jobs = [j for j in pl.plan(P) if j.group in ("core", "zoo") and j.done]
    arch = rows["01_architectures"]
    assert arch["done"] == len(arch_jobs) >= len(ran) and arch["devices"] == ["cpu"]
    assert arch["train_s"] == pytest.approx(sum(j.took_s for j in arch_jobs))
    assert arch["train_s"] > 0
    assert rows["04_batchnorm"]["done"] == 0 and rows["04_batchnorm"]["measure_s"] is None
    table = pl.device_work_table(P)
    assert list(table["notebook"])[-1] == "all" and "not recorded" in set(table["measurements (min)"])


def test_runner_records_how_long_a_measurement_took(monkeypatch):
    from types import SimpleNamespace
    from cifar_lib.experiments import Measurement
    P = get_profile("smoke")
    monkeypatch.setattr(pl, "MEASURED_MIN_S", 0.0)
    calls = []
    m = Measurement("BatchNorm surfaces (notebook 04)", "04_batchnorm", lambda r: True,
                    lambda P, split, log: calls.append(1))
    monkeypatch.setattr(pl, "_post_steps", lambda jobs: [(m, [SimpleNamespace(done=True)])])
    out = pl.run_budget(P, budget_min=0.0, only_groups=("core",), log=lambda m: None)
    assert calls == [1] and out["posted"] == [m.name]
    row = {r["notebook"]: r for r in pl.work_by_notebook(P)}["04_batchnorm"]
    assert row["measure_s"] is not None and row["devices"] == ["cpu"]


def test_a_measurement_that_retrains_runs_counts_only_its_own_time(monkeypatch):
    """Runs a measurement trains again (their weights were not on the
    machine) are their runs' training, not the measurement's time (the
    README's per-notebook minutes would count them twice)."""
    import types
    from types import SimpleNamespace
    from cifar_lib import experiments as E
    from cifar_lib.experiments import Measurement
    P = get_profile("smoke")
    now = [100.0]
    monkeypatch.setattr(pl, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))

    def measure(P, split, log):   # 40 s of retraining inside 45 s of measuring
        now[0] += 45.0
        E._TRAINED_S[0] += 40.0
    m = Measurement("DessiLBI lambda sweep (notebook 05)", "05_dessilbi", lambda r: True,
                    measure)
    monkeypatch.setattr(pl, "_post_steps", lambda jobs: [(m, [SimpleNamespace(done=True)])])
    logs = []
    pl.run_budget(P, budget_min=0.0, only_groups=("core",), log=logs.append)
    assert pl._measure_times(P)[m.name]["seconds"] == 5.0
    assert any("done in 5 s (and 40 s retraining runs whose weights were not here)" in x
               for x in logs)


def test_plan_jobs_carry_their_experiment_and_run():
    from cifar_lib.studies import experiments
    P = get_profile("smoke")
    jobs = pl.plan(P, costs=False)
    assert all(j.exp.name == j.experiment and j.run.cfg is j.cfg and j.run.tag == j.tag
               and j.exp.group_of(j.run) == j.group and j.run.label == j.label
               for j in jobs)
    # every run of every (core-set) experiment is a job, or shares one
    keys = {json.dumps([j.cfg.to_dict(), j.tag], sort_keys=True) for j in jobs}
    for e in experiments(extended=False):
        for r in e.runs(P):
            assert json.dumps([r.cfg.to_dict(), r.tag], sort_keys=True) in keys, (e, r.label)
    # each measurement follows the jobs of its own experiment that it needs
    posts = pl._post_steps(jobs)
    names = [m.name for m, _ in posts]
    assert len(names) == len(set(names)) >= 3
    for m, mine in posts:
        owner = [e for e in experiments() if m in e.measurements]
        assert len(owner) == 1, m.name
        assert mine and all(j.exp is owner[0] and m.needs(j.run) for j in mine)
        assert [j for j in jobs if j.exp is owner[0] and m.needs(j.run)] == mine
    by_notebook = {m.notebook: m for m, _ in posts}
    assert {"03_visualization", "04_batchnorm", "05_dessilbi"} <= set(by_notebook)
    surf = [mine for m, mine in posts if m.notebook == "04_batchnorm"][0]
    assert {j.cfg.optimizer for j in surf} == {"adam"}


def test_cli_run_help_names_groups(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "--budget-min" in out and "ablations" in out


class _FakeRunner:
    """A plan of fake jobs of ``est`` s each, trained on a fake clock, with
    one measurement over the jobs it ``needs``; ``grows``: once the first
    three are done, the grid grows by one (a run the measurement needs)."""

    def __init__(self, monkeypatch, n=3, est=5.0, grows=False, fails=False, first=None):
        from types import SimpleNamespace as NS
        from cifar_lib.experiments import Measurement
        self.done, self.now, self.measured = [], [0.0], []

        def measure(P, split, log):
            if fails:
                raise ValueError("not ready")
            self.measured.append(list(self.done))
        self.m = Measurement("m", "03_visualization", lambda r: r.needed, measure)
        exp = NS(measurements=[self.m])

        def job(key, needed=True, waits=False, est=est):
            return NS(key=key, done=key in self.done, group="core", exp=exp, est_s=est,
                      run=NS(waits=waits, needed=needed), label=key, experiment="e",
                      cfg=NS(seed=0), row=lambda: {"key": key})

        def fake_plan(P, *a, **k):
            jobs = [job("first", needed=False, est=first)] if first else []
            jobs += [job(f"lr-{i}") for i in range(n)]
            if grows and {f"lr-{i}" for i in range(n)} <= set(self.done):
                jobs.append(job("lr-top"))  # the top of the grid won: it grows
            return jobs + [job("other", needed=False)]

        def fake_train(j, P, split, claim, log):
            self.done.append(j.key)
            self.now[0] += j.est_s
            return j.est_s

        monkeypatch.setattr(pl, "plan", fake_plan)
        monkeypatch.setattr(pl, "_train_job", fake_train)
        monkeypatch.setattr(pl, "_update_ratio", lambda ratio, took, e, n: 1.0)
        monkeypatch.setattr(pl, "MEASURED_MIN_S", 1e9)  # nothing written to results/
        monkeypatch.setattr(pl, "time", NS(perf_counter=lambda: self.now[0]))
        monkeypatch.setattr("cifar_lib.experiments.profile_split", lambda P, root=None: None)

    def run(self, budget_s):
        return pl.run_budget(get_profile("smoke"), budget_min=budget_s / 60,
                             log=lambda m: None)


def test_budget_keeps_time_for_a_measurement_it_can_reach(monkeypatch):
    # 90 s: the measurement's three 5 s runs and its minute fit, so a first
    # run of 40 s that it does not need is left for a later call
    f = _FakeRunner(monkeypatch, first=40.0)
    out = f.run(90)
    assert f.done == ["lr-0", "lr-1", "lr-2", "other"]
    assert f.measured == [["lr-0", "lr-1", "lr-2"]] and out["posted"] == ["m"]
    assert [r["key"] for r in out["left"]] == ["first"]


def test_a_short_call_keeps_nothing_back_for_a_measurement_it_cannot_reach(monkeypatch):
    # 30 s cannot hold the measurement's runs and its minute: the runs that
    # fit are trained instead of the call standing idle (the H200 call that
    # trained one run of 3.3 minutes)
    f = _FakeRunner(monkeypatch, n=8)
    out = f.run(30)
    assert len(f.done) == 6 and f.measured == [] and out["posted"] == []


def test_a_measurement_waits_for_a_rate_grid_that_grew(monkeypatch):
    # the runs it needed when the call began are done, but the grid grew:
    # it measures after the new grid point, not before (notebook 03's
    # figures failed so on the H200: "the rate grids ... are not complete")
    f = _FakeRunner(monkeypatch, grows=True)
    out = f.run(600)
    assert f.measured and "lr-top" in f.measured[0] and out["posted"] == ["m"]


def test_a_failing_measurement_is_named_and_training_goes_on(monkeypatch, capsys):
    f = _FakeRunner(monkeypatch, fails=True)
    out = f.run(600)
    assert set(f.done) == {"lr-0", "lr-1", "lr-2", "other"}
    assert out["measure_failed"] == ["m"] and out["posted"] == []
    monkeypatch.setattr(pl, "run_budget", lambda *a, **k: {"measure_failed": ["m"]})
    assert main(["run", "--profile", "smoke"]) == 1
    assert "measurement(s) failed: m" in capsys.readouterr().err


def test_a_models_warm_up_is_paid_by_its_first_run_in_this_process():
    """The plan puts the warm-up on its first run of a model; a call that
    starts after that run pays it on the model's first run of the call."""
    from cifar_lib.engine import TrainConfig
    cfg = TrainConfig(model="resnet18")
    ctx = pl._Ctx(None, None, [], [], lambda: 0.0, print, list, [])
    later = pl.Job("e", "x", cfg, "core", est_s=10.0, warmup_s=4.0, first=False)
    plan_first = pl.Job("e", "y", cfg, "core", est_s=14.0, warmup_s=4.0, first=True)
    assert pl._process_est(later, ctx) == 14.0 and pl._process_est(plan_first, ctx) == 14.0
    ctx.warm.add(pl._arch(cfg))
    assert pl._process_est(later, ctx) == 10.0 and pl._process_est(plan_first, ctx) == 10.0
    # the plan's jobs carry the warm-up of their model, and its first one includes it
    jobs = [j for j in pl.plan(get_profile("full")) if j.cfg.model == "resnet18"]
    assert jobs[0].first and not jobs[1].first and jobs[1].warmup_s > 0
    assert jobs[0].est_s - jobs[0].warmup_s == pytest.approx(
        pl.cost(jobs[0].cfg, get_profile("full"), jobs[0].tag, first=False)[2])

"""Several workers for one profile (issue 27): balanced shards, claims that
keep two workers off one run and free themselves when a worker dies, the
local executor against a serial run, and the Slurm job array (built with
submitit, submitted to a fake sbatch, and run with its debug executor)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest

from cifar_lib import executors as X
from cifar_lib import plan as pl
from cifar_lib import store
from cifar_lib.profiles import get_profile

GROUPS = ("core",)
CHEAP = ("lenet", "cnn3", "vgg_a_bn", "fastnet")   # the quickest core runs


def _cheap(P) -> list[str]:
    return [j.key for j in pl.plan(P) if j.group in GROUPS and j.cfg.model in CHEAP]


@pytest.fixture
def smoke(tmp_path, monkeypatch):
    """The smoke profile writing under a folder of this test."""
    monkeypatch.setenv("CIFAR_LIB_SCRATCH", str(tmp_path / "smoke"))
    return get_profile("smoke")


def _job(key="k1", est=1.0):
    return SimpleNamespace(key=key, est_s=est, label=key, experiment="x", cfg=None, tag=None)


def test_shards_balance_longest_first_and_keep_priority_order():
    jobs = [_job(f"j{i}", est) for i, est in enumerate([1, 9, 2, 8, 3, 7])]
    parts = X.shards(jobs, 2)
    loads = [sum(j.est_s for j in p) for p in parts]
    assert sorted(j.key for p in parts for j in p) == sorted(j.key for j in jobs)
    assert abs(loads[0] - loads[1]) <= 2          # 15 and 15
    for p in parts:                                # plan order within a shard
        assert [j.key for j in p] == sorted((j.key for j in p), key=lambda k: int(k[1:]))
    assert X.shards(jobs[:1], 3)[1:] == [[], []]
    with pytest.raises(ValueError, match="--workers"):
        X.shards(jobs, 0)


def _holder(results, key: str) -> subprocess.Popen:
    """A process that takes the claim of ``key`` and holds it."""
    code = textwrap.dedent(f"""
        import time
        from cifar_lib.claims import claimed
        with claimed({str(results)!r}, {key!r}, {{"run": "a run"}}) as mine:
            print("mine" if mine else "busy", flush=True)
            time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "mine"
    return p


def test_claims_race_and_a_dead_workers_claim_is_taken_over(tmp_path):
    other = _holder(tmp_path, "run1")
    try:
        with X.claimed(tmp_path, "run1") as mine:
            assert mine is False                      # held by the other worker
        who = json.loads((tmp_path / X.CLAIMS / "run1.json").read_text())
        assert who["pid"] == other.pid                # who holds it, while it does
        os.kill(other.pid, signal.SIGKILL)            # the worker dies mid-run
        other.wait(10)
        with X.claimed(tmp_path, "run1") as mine:
            assert mine is True                       # its claim is free again
            with X.claimed(tmp_path, "run1") as again:  # and held now: not twice
                assert again is False
    finally:
        other.kill()


def test_a_claimed_run_already_stored_is_not_trained_again(smoke, monkeypatch):
    job = next(j for j in pl.plan(smoke) if j.cfg.model == "lenet")
    monkeypatch.setattr(pl, "_stored", lambda P, j: True)
    trained = []
    monkeypatch.setattr("cifar_lib.experiments.train_one",
                        lambda *a, **k: trained.append(a))
    assert pl._train_job(job, smoke, None, True, lambda m: None) is None
    assert trained == []


def _records(P) -> dict:
    return {r["run"]: r for r in store.runs(P.results)}


def test_local_workers_train_each_pending_run_once_as_a_serial_run_does(
        tmp_path, monkeypatch):
    monkeypatch.setattr(pl, "_post_steps", lambda jobs: [])   # runs only
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # every worker the same torch threads
    monkeypatch.setenv("CIFAR_LIB_SCRATCH", str(tmp_path / "serial"))
    serial = get_profile("smoke")
    keys = _cheap(serial)
    # serial: one worker process (the same torch threads as each of two)
    X.run_parallel(serial, workers=1, budget_min=30, keys=keys, log=lambda m: None)
    monkeypatch.setenv("CIFAR_LIB_SCRATCH", str(tmp_path / "parallel"))
    par = get_profile("smoke")
    t0 = time.perf_counter()
    out = X.run_parallel(par, workers=2, budget_min=30, keys=keys, log=lambda m: None)
    assert out["exit_codes"] == [0, 0] and out["still_pending"] == 0
    a, b = _records(serial), _records(par)
    assert sorted(a) == sorted(b) and len(b) == out["trained"]   # one record each
    for name in a:
        assert a[name]["metrics"]["test_acc"] == b[name]["metrics"]["test_acc"], name
        assert [e["train_loss"] for e in a[name]["history"]] == pytest.approx(
            [e["train_loss"] for e in b[name]["history"]], rel=1e-5), name
    assert time.perf_counter() - t0 < 600
    # a relaunch finds nothing to do
    again = X.run_parallel(par, workers=2, budget_min=30, keys=keys, log=lambda m: None)
    assert again["trained"] == 0 and again["exit_codes"] == []


def test_a_killed_worker_is_completed_by_a_relaunch(smoke, monkeypatch):
    monkeypatch.setattr(pl, "_post_steps", lambda jobs: [])   # runs only
    keys = _cheap(smoke)
    cmd = X.worker_command(smoke, keys, 30, False, None, 0)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in p.stdout:              # kill it as it trains its first run
        if line.startswith("[worker 0] training "):
            p.kill()
            break
    p.wait(30)
    done_before = sum(j.done for j in pl.plan(smoke) if j.key in keys)
    assert done_before < len(keys)
    out = X.run_parallel(smoke, workers=1, budget_min=30, keys=keys, log=lambda m: None)
    assert out["still_pending"] == 0 and out["exit_codes"] == [0]
    assert all(j.done for j in pl.plan(smoke) if j.key in keys)


def test_slurm_job_array_is_built_with_its_options(smoke, monkeypatch, tmp_path):
    submitit = pytest.importorskip("submitit")
    from submitit.slurm import slurm as S
    scripts, ids = [], iter(range(1000, 1100))

    def fake_sbatch(self, path):
        scripts.append(path.read_text())
        return ["echo", f"Submitted batch job {next(ids)}"]
    monkeypatch.setattr(S.SlurmExecutor, "affinity", classmethod(lambda cls: 2))
    monkeypatch.setattr(S.SlurmExecutor, "_make_submission_command", fake_sbatch)
    jobs = [j for j in pl.plan(smoke) if j.group in GROUPS]
    parts = X.shards(jobs, 2)
    array, final = X.run_slurm(smoke, parts, 20, opts={"partition": "gpu", "time_min": 30,
                                                       "gpus_per_task": 1},
                               log=lambda m: None)
    assert len(array) == 2 and len(scripts) == 2
    head = scripts[0]
    for option in ("--array=0-1%2", "--partition=gpu", "--time=30", "--gpus-per-node=1",
                   "--nodes=1", "--ntasks-per-node=1"):
        assert option in head, option
    assert "submitit.core._submit" in head
    assert "--dependency=afterany:1000_0:1000_1" in scripts[1]      # the final job
    tasks = [submitit.core.utils.DelayedSubmission.load(j.paths.submitted_pickle)
             for j in array]
    assert [t.function for t in tasks] == [X.work, X.work]
    assert sorted(k for t in tasks for k in t.args[1]) == sorted(j.key for j in jobs)
    last = submitit.core.utils.DelayedSubmission.load(final.paths.submitted_pickle)
    assert last.function is X.measure_all


def test_slurm_tasks_run_with_the_debug_executor(smoke):
    pytest.importorskip("submitit")
    jobs = [j for j in pl.plan(smoke) if j.group in GROUPS][:2]
    array, final = X.run_slurm(smoke, X.shards(jobs, 2), 20, debug=True, log=lambda m: None)
    outs = [j.result() for j in array]
    assert sum(o["ran"] for o in outs) == 2
    final.result()
    done = {j.key for j in pl.plan(smoke) if j.done}
    assert {j.key for j in jobs} <= done


def test_a_plain_runner_leaves_a_run_another_runner_holds(smoke, monkeypatch):
    """Two plain `run` commands at once on one results/ share the work: the
    runner takes each run's claim by default and skips one held elsewhere."""
    monkeypatch.setattr(pl, "_post_steps", lambda jobs: [])
    jobs = [j for j in pl.plan(smoke) if j.group in GROUPS and not j.run.waits]
    held, free = jobs[0], jobs[1]
    trained = []
    monkeypatch.setattr("cifar_lib.experiments.train_one",
                        lambda exp, run, *a, **k: trained.append(run.cfg.to_dict()))
    other = _holder(smoke.results, held.key)
    try:
        pl.run_budget(smoke, budget_min=60, keys=[held.key, free.key], log=lambda m: None)
    finally:
        other.kill()
    assert held.cfg.to_dict() not in trained       # the other runner's
    assert free.cfg.to_dict() in trained           # and the free one trained here


def test_runs_that_wait_for_a_rate_grid_train_in_the_same_call(smoke, monkeypatch):
    """A run whose rate is chosen from a grid waits while the grid trains;
    once the workers have stored the grid, the same call trains it (at its
    chosen rate, under its own key) before measuring."""
    state = {"grid": False, "done": set()}

    def fake_plan(P, extended=False, *a, **k):
        jobs = [_job("grid-1"), _job("grid-2"),
                _job("zoo-chosen" if state["grid"] else "zoo-centre")]
        for j in jobs:
            j.done, j.group = j.key in state["done"], "core"
            j.run = SimpleNamespace(waits=j.key == "zoo-centre")
        return jobs

    rounds, order = [], []

    def fake_local(P, parts, budget_min, extended, root, log):
        keys = sorted(j.key for p in parts for j in p)
        rounds.append(keys)
        order.append("train")
        state["done"] |= set(keys)
        state["grid"] = True
        return [0 for p in parts if p]

    monkeypatch.setattr(pl, "plan", fake_plan)
    monkeypatch.setattr(X, "run_local", fake_local)
    monkeypatch.setattr(X, "measure_all", lambda *a, **k: order.append("measure") or {})
    out = X.run_parallel(smoke, workers=2, budget_min=30, log=lambda m: None)
    assert rounds == [["grid-1", "grid-2"], ["zoo-chosen"]]   # the waiting run: round 2
    assert order == ["train", "train", "measure"]
    assert out["trained"] == 3 and out["still_pending"] == 0


def test_cpu_workers_share_the_cores_unless_told(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert (X.cpu_threads(2), X.cpu_threads(3), X.cpu_threads(16)) == (4, 2, 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert X.cpu_threads(2) == 3

"""Spread a profile's pending runs over several workers: local processes
(one per GPU) or a Slurm job array (through submitit).

The runs of a profile are independent jobs named by their config hash, so
no scheduler of our own is needed. :func:`shards` splits the plan's pending
runs into balanced shards (longest first, by the plan's estimates); each
worker is one process that trains its shard in order with the budgeted
runner (paying for data loading and cuDNN warm-up once). Before training a
run a worker takes its claim, an OS file lock under
``results/.claims/`` (:func:`claimed`): two workers never train the same
run, and the claim of a worker that died is free again (the OS drops its
lock), so a relaunch takes the run over and resumes it from its
``.last.pt``. Records are written as always, so a relaunch skips finished
runs. The post-training measurements run once, after the workers, in the
launching process (local) or in one job that waits for the array (Slurm).

    cifar-lib run --profile full --executor local --workers 4
    cifar-lib run --profile full --executor slurm --workers 8 \\
        --partition gpu --time-min 60 --gpus-per-task 1

submitit is needed only for Slurm (``pip install cifar-lib[cluster]``).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from cifar_lib.claims import CLAIMS, claimed  # noqa: F401  (re-exported)
from cifar_lib.profiles import Profile, get_profile


# ---------------------------------------------------------------- claims
# A claim is an OS file lock (cifar_lib.claims); the plan's runner takes it.

# ---------------------------------------------------------------- shards


def shards(jobs: list, n: int) -> list[list]:
    """``jobs`` in ``n`` shards of about equal estimated time: longest
    first, each to the shard with the least so far; within a shard, the
    plan's priority order."""
    if n < 1:
        raise ValueError(f"--workers must be at least 1 (got {n})")
    order = {id(j): i for i, j in enumerate(jobs)}
    parts: list[list] = [[] for _ in range(n)]
    load = [0.0] * n
    for j in sorted(jobs, key=lambda j: -j.est_s):
        k = load.index(min(load))
        parts[k].append(j)
        load[k] += j.est_s
    return [sorted(p, key=lambda j: order[id(j)]) for p in parts]


def work(profile: str, keys: list[str], budget_min: float, extended: bool = False,
         root=None, worker: int = 0) -> dict:
    """One worker: train the runs of ``keys`` (its shard) in priority order,
    each under its claim, within ``budget_min``; no measurements."""
    from cifar_lib.plan import run_budget

    def log(text):
        print(f"[worker {worker}] {text}", flush=True)
    return run_budget(profile, budget_min, extended, root, log=log, keys=keys,
                      claim=True, measure=False)


def measure_all(profile: str, budget_min: float, extended: bool = False, root=None,
                only_groups=None) -> dict:
    """The final step: every measurement whose runs (of ``only_groups``)
    are all done, as the serial runner would make them."""
    from cifar_lib.plan import run_budget
    return run_budget(profile, budget_min, extended, root, keys=[], measure=True,
                      only_groups=only_groups)


# ---------------------------------------------------------------- executors


def _gpus() -> int:
    try:
        import torch
        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001  (no torch build with CUDA: CPU workers)
        return 0


def worker_command(P: Profile, keys: list[str], budget_min: float, extended: bool,
                   root, worker: int) -> list[str]:
    """The command line of one local worker process."""
    cmd = [sys.executable, "-m", "cifar_lib.executors", "--profile", P.name,
           "--budget-min", str(budget_min), "--worker", str(worker)]
    if extended:
        cmd.append("--extended")
    if root:
        cmd += ["--data-root", str(root)]
    return cmd + ["--keys", *keys]


def cpu_threads(workers: int) -> int:
    """Threads of each CPU worker: ``$OMP_NUM_THREADS`` where it is set,
    else the machine's cores shared out over ``workers``."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def run_local(P: Profile, parts: list[list], budget_min: float, extended: bool = False,
              root=None, log=print) -> list[int]:
    """One process per non-empty shard, each on its own GPU when there are
    GPUs (``CUDA_VISIBLE_DEVICES``); returns their exit codes."""
    gpus, procs = _gpus(), []
    for i, part in enumerate(parts):
        if not part:
            continue
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        else:  # CPU workers share the cores out instead of each taking all
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(cpu_threads(len(parts)))
        log(f"[run] worker {i}: {len(part)} runs, est "
            f"{sum(j.est_s for j in part) / 60:.1f} min"
            + (f", GPU {i % gpus}" if gpus else ""))
        procs.append(subprocess.Popen(
            worker_command(P, [j.key for j in part], budget_min, extended, root, i),
            env=env))
    return [p.wait() for p in procs]


def slurm_executor(folder: Path, workers: int, opts: dict, debug: bool = False):
    """A submitit executor for the job array (``debug``: submitit's
    in-process DebugExecutor, which runs each task when its result is
    asked for), with the Slurm options of ``opts``."""
    try:
        import submitit
    except ImportError as e:
        raise RuntimeError("the slurm executor needs submitit: pip install "
                           "'cifar-lib[cluster]' (or pip install submitit)") from e
    if debug:
        ex = submitit.DebugExecutor(folder)
    else:
        try:
            ex = submitit.AutoExecutor(folder, cluster="slurm")
        except RuntimeError as e:  # no srun on this machine
            raise RuntimeError(f"no Slurm cluster here ({e}); use --executor local") from e
    params = {"timeout_min": int(opts.get("time_min", 60)), "nodes": 1,
              "tasks_per_node": 1, "gpus_per_node": int(opts.get("gpus_per_task", 1)),
              "cpus_per_task": int(opts.get("cpus_per_task", 8)),
              "slurm_array_parallelism": workers}
    if opts.get("partition"):
        params["slurm_partition"] = opts["partition"]
    if debug:  # DebugExecutor knows only the generic options
        params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
    ex.update_parameters(**params)
    return ex


def run_slurm(P: Profile, parts: list[list], budget_min: float, extended: bool = False,
              root=None, opts: dict | None = None, log=print, debug: bool = False,
              only_groups=None):
    """Submit one job array (a task per non-empty shard) and a final job
    that measures once the array has ended; returns (array jobs, final job)."""
    opts = opts or {}
    folder = P.root / "slurm" / time.strftime("%Y%m%d-%H%M%S")
    ex = slurm_executor(folder, len(parts), opts, debug)
    tasks = [(P.name, [j.key for j in part], budget_min, extended, root, i)
             for i, part in enumerate(parts) if part]
    with ex.batch():
        array = [ex.submit(work, *t) for t in tasks]
    if not debug:
        ids = ":".join(j.job_id for j in array)
        ex.update_parameters(slurm_additional_parameters={"dependency": f"afterany:{ids}"},
                             slurm_array_parallelism=1)
    final = ex.submit(measure_all, P.name, budget_min, extended, root, only_groups)
    log(f"[run] submitted {len(array)} array tasks and a final measuring job "
        f"(logs in {folder})")
    return array, final


def run_parallel(profile=None, workers: int = 2, executor: str = "local",
                 budget_min: float = 9.0, extended: bool = False, root=None,
                 only_groups=None, slurm: dict | None = None, log=print,
                 keys=None) -> dict:
    """Train the profile's pending runs (of ``only_groups``; ``keys``: only
    these plan keys) with ``workers`` workers, then measure once (local:
    here, after the workers; Slurm: a final job)."""
    from cifar_lib.plan import plan
    P = get_profile(profile)
    def ready(seen=frozenset()):
        return [j for j in plan(P, extended) if not j.done and j.key not in seen
                and not j.run.waits  # its rate grid is not stored yet: a later round
                and (not only_groups or j.group in only_groups)
                and (keys is None or j.key in set(keys))]

    pending = ready()
    parts = shards(pending, workers)
    log(f"[run] {len(pending)} pending runs in {sum(bool(p) for p in parts)} shards "
        f"({executor})")
    if executor == "slurm":
        run_slurm(P, parts, budget_min, extended, root, slurm, log, only_groups=only_groups)
        return {"profile": P.name, "submitted": len(pending)}
    if executor != "local":
        raise ValueError(f"unknown executor {executor!r}; choose local or slurm")
    t0 = time.perf_counter()

    def left() -> float:
        return max(budget_min - (time.perf_counter() - t0) / 60, 0.0)

    codes = run_local(P, parts, budget_min, extended, root, log)
    seen = {j.key for j in pending}
    while keys is None and not any(codes) and left() > 0:
        # a rate grid finished: the runs that waited for it now have their
        # rate (and their own keys); train them in the same call
        more = ready(seen)
        if not more:
            break
        seen |= {j.key for j in more}
        pending += more
        log(f"[run] {len(more)} runs whose rate grid is now stored")
        codes += run_local(P, shards(more, workers), left(), extended, root, log)
    out = _measure_with_all_cores(workers, lambda: measure_all(P.name, left(), extended,
                                                                root, only_groups))
    now = {j.key for j in plan(P, extended, costs=False) if j.done}
    out.update(workers=len(codes), exit_codes=codes,
               trained=sum(j.key in now for j in pending),
               still_pending=sum(j.key not in now for j in pending),
               minutes=round((time.perf_counter() - t0) / 60, 2))
    log(f"[run] {out['trained']} of {len(pending)} pending runs trained by "
        f"{len(codes)} workers in {out['minutes']} min")
    if any(codes):
        log(f"[run] {sum(c != 0 for c in codes)} worker(s) failed (exit codes {codes}); "
            "run the same command again: finished runs are kept, the rest resume")
    return out


def _measure_with_all_cores(workers: int, measure):
    """Run ``measure()`` (the measurements after the workers) with the
    threads the CPU workers had between them, as they have finished."""
    if _gpus():
        return measure()
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(min(os.cpu_count() or 1, cpu_threads(workers) * max(1, workers)))
    try:
        return measure()
    finally:
        torch.set_num_threads(before)


def main(argv=None) -> int:
    """``python -m cifar_lib.executors``: one local worker (what
    :func:`run_local` starts)."""
    import argparse
    ap = argparse.ArgumentParser(prog="python -m cifar_lib.executors")
    ap.add_argument("--profile", required=True)
    ap.add_argument("--budget-min", type=float, required=True)
    ap.add_argument("--worker", type=int, default=0)
    ap.add_argument("--extended", action="store_true")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--keys", nargs="*", default=[])
    a = ap.parse_args(argv)
    work(a.profile, a.keys, a.budget_min, a.extended, a.data_root, a.worker)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

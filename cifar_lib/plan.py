"""What a profile's main job trains, what it costs, and a budgeted runner.

``plan(profile)`` lists every run the notebooks of a profile would launch,
de-duplicated where experiments share a run, in priority order (section 1's
core models and ablations, then the BatchNorm study, DessiLBI, the rest of
the zoo, and with ``extended=True`` the heaviest variants), each with its
forward GFLOPs per image, training PFLOPs and an estimated time at a stated
throughput. ``run_budget(profile, budget_min)`` trains the pending runs in
that order until the next one would pass the budget, saving each as it
completes, and runs the post-training measurements that need a run's
weights (CAMs and calibration, surfaces, pruning) right after the training
that produced them, so that the notebooks then render from results/ alone.

    python -m cifar_lib plan --profile full [--json plan.json]
    python -m cifar_lib run --profile full --budget-min 9

The plan iterates over every study's experiments
(``cifar_lib.studies.experiments()``) and names none: each experiment says
its notebook, its priority group and the measurements that follow its
runs. It also registers the report value ``run_status``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from typing import Callable

from cifar_lib import store
from cifar_lib.engine import TrainConfig, stale
from cifar_lib.profiles import Profile, get_profile
from cifar_lib.registry import PLANNER, PRIORITY, register_table, register_values

# Throughput the estimates assume: one H100, bf16 autocast, channels_last,
# eager mode, batch 512, measured by benchmarks/plan_rates.py (2-epoch runs,
# results/benchmarks/rates.json). Models measured there use their own rate;
# the others DEFAULT_TFLOPS (override with --tflops / --step-ms).
MEASURED_TFLOPS = {"resnet18": 150.8, "vgg_a": 86.1, "fastnet": 78.9,
                   "densenet121": 35.3, "mobilenetv2": 10.6}
DEFAULT_TFLOPS = 60.0     # effective training TFLOP/s of an unmeasured net
DEFAULT_STEP_MS = 3.4     # floor per optimizer step (LeNet: launch-bound)
# Launch-bound families take longer a step than their FLOPs say: CANet-tiny
# took 3.7 s an epoch (42 ms a step at batch 512) in its full-profile run.
MEASURED_STEP_MS = {"canet_tiny": 42.0}
# Optimizers whose step costs more host time than the network's FLOPs say:
# SLBI (DessiLBI's Gamma/Z updates per group, on top of SGD) took 3.5 s an
# epoch for VGG-16-BN at batch 128 on an H200 (9.9 ms a step; the plan had
# said 1.3 s), results/dessilbi/vgg16_bn-s0-179830996e.json.
MEASURED_OPT_STEP_MS = {"slbi": 9.9}
RUN_OVERHEAD_S = 1.0      # building the model, the test set
# The first run of a model in a process pays for cudnn's kernel selection
# and warm-up: its first epoch's time beyond a steady one, measured (s);
# unmeasured families: WARMUP_EPOCHS epochs' time, at most WARMUP_MAX_S.
MEASURED_WARMUP_S = {"fastnet": 5.5, "resnet18": 4.9, "vgg_a": 1.8, "lenet": 0.8,
                     "densenet121": 21.8, "mobilenetv2": 27.3, "canet_tiny": 3.0}
WARMUP_EPOCHS = 5.0
WARMUP_MAX_S = 25.0
# Time kept back for each post-training measurement still to come (the
# notebook-03 figures took about a minute on an H100, t-SNE included).
POST_RESERVE_S = 60.0

# A post-training measurement that takes less found its outputs on disk.
MEASURED_MIN_S = 2.0


@dataclass
class Job:
    """One run of the plan (a config trained once, whoever needs it)."""

    experiment: str
    label: str
    cfg: TrainConfig
    group: str
    tag: dict | None = None
    exp: object = None            # the Experiment
    run: object = None            # its Run
    also: list = field(default_factory=list)   # other experiments sharing it
    gflops_forward: float = 0.0
    images: int = 0
    train_pflops: float = 0.0
    est_s: float = 0.0
    done: bool = False
    took_s: float | None = None   # a done run's recorded wall time
    device: str | None = None     # and the device it ran on
    key: str = ""                 # the run's identity in the plan (config, tag, sizes)
    warmup_s: float = 0.0         # its model's warm-up, paid by its first run in a process
    first: bool = False           # est_s includes it (the plan's first run of the model)

    def row(self) -> dict:
        c = self.cfg
        return {"experiment": self.experiment, "label": self.label, "group": self.group,
                "model": c.model, "model_kw": c.model_kw, "epochs": c.epochs,
                "images": self.images, "batch_size": c.batch_size, "seed": c.seed,
                "gflops_forward": round(self.gflops_forward, 4),
                "train_pflops": round(self.train_pflops, 4),
                "est_s": round(self.est_s, 1), "done": self.done,
                "also": self.also, "key": self.key}


@functools.lru_cache(maxsize=None)
def forward_gflops(model: str, model_kw_json: str = "{}") -> float:
    """Forward GFLOPs of one 32x32 image (2 per multiply-add)."""
    from cifar_lib.models import create_model
    from cifar_lib.models.summary import count_flops
    return count_flops(create_model(model, **json.loads(model_kw_json))) / 1e9


def _measured(table: dict, model: str, default: float) -> float:
    """The model's entry, else its family's (the mean of the measured members
    of its file), else ``default``."""
    if model in table:
        return table[model]
    from cifar_lib.models import model_family
    fam = [v for m, v in table.items() if model_family(m) == model_family(model)]
    return sum(fam) / len(fam) if fam else default


def model_tflops(model: str, default: float = DEFAULT_TFLOPS) -> float:
    """The model's measured training TFLOP/s (or its family's, or ``default``)."""
    return _measured(MEASURED_TFLOPS, model, default)


def profile_images(P: Profile) -> tuple[int, int, int]:
    """(train, val, test) images a profile's runs see."""
    n_test = P.test_size or 10_000
    if P.data == "synthetic":
        return P.train_size, P.val_size, n_test
    return (P.train_size or 50_000 - P.val_size), P.val_size, n_test


def cost(cfg: TrainConfig, P: Profile, tag: dict | None = None,
         tflops: float = DEFAULT_TFLOPS, step_ms: float = DEFAULT_STEP_MS,
         first: bool = True):
    """(forward GFLOPs/image, training PFLOPs, estimated seconds) of a run.

    Training counts 3 forward passes per image (forward and backward), each
    validation (every ``val_every`` epochs and the last; once, after
    training, in the lean loop) and the final test 1 per test-time view (2
    with flip-TTA, 3 times that with translated views). Probes of the
    BatchNorm study (``tag``) add their float32 forward-backward passes.
    An epoch takes its FLOPs at the model's rate, or ``step_ms`` a step (the
    model's or the optimizer's measured step, where longer) if that is
    longer; the ``first`` run of a model also pays its warm-up.
    """
    n_train, n_val, n_test = profile_images(P)
    g = forward_gflops(cfg.model, json.dumps(cfg.model_kw, sort_keys=True))
    tta = (2 if cfg.tta_flip else 1) * (3 if cfg.tta_translate else 1)
    steps_per_epoch = n_train // cfg.batch_size
    train = 3 * g * n_train * cfg.epochs
    validations = -(-cfg.epochs // cfg.val_every) if cfg.val_every else 1
    evals = g * tta * (n_val * validations + n_test)
    probe = 0.0
    if tag and tag.get("probe_every"):
        probes = cfg.epochs * steps_per_epoch // tag["probe_every"]
        probe = probes * (len(tag.get("etas", ())) + 1) * 3 * g * cfg.batch_size * 2
    pflops = (train + evals + probe) / 1e6
    rate = model_tflops(cfg.model, tflops) * 1e12 / 1e9  # GFLOP/s
    floor = max(step_ms, _measured(MEASURED_STEP_MS, cfg.model, step_ms),
                MEASURED_OPT_STEP_MS.get(cfg.optimizer, 0.0))
    epoch_s = max(3 * g * n_train / rate, steps_per_epoch * floor / 1e3)
    secs = cfg.epochs * epoch_s + (probe + evals) / rate + RUN_OVERHEAD_S
    if first:
        secs += _measured(MEASURED_WARMUP_S, cfg.model,
                          min(WARMUP_EPOCHS * epoch_s, WARMUP_MAX_S))
    return g, pflops, secs


def _runs(extended: bool, P: Profile) -> list:
    """(experiment, run) of every study's experiments, in priority order
    (stable within a group: the studies' order)."""
    from cifar_lib.studies import experiments
    pairs = [(e, r) for e in experiments(extended) for r in e.runs(P)]
    return sorted(pairs, key=lambda p: PRIORITY.index(p[0].group_of(p[1])))


def _done_records(P: Profile) -> dict[str, dict]:
    """Every finished run on disk by its identity (config, tag, data sizes)."""
    return {_key(r["config"], r.get("tag"), r.get("data", {})): r
            for r in store.runs(P.results)
            if r.get("status") in ("ok", "diverged", "failed") and stale(r) is None}


_key = store.identity  # a run before its data is loaded (config, tag, split sizes)


def plan(profile=None, extended: bool = False, tflops: float = DEFAULT_TFLOPS,
         step_ms: float = DEFAULT_STEP_MS, costs: bool = True) -> list[Job]:
    """Every run of the profile's main job, once each, in priority order
    (``costs=False``: without FLOPs and estimates, which take a while)."""
    with store.pinned():  # the experiments read results/ once between them
        return _plan(get_profile(profile), extended, tflops, step_ms, costs)


def _arch(cfg: TrainConfig) -> tuple:
    """What a warm-up is paid for: the model, its options and the batch."""
    return cfg.model, json.dumps(cfg.model_kw, sort_keys=True), cfg.batch_size


def _plan(P: Profile, extended: bool, tflops: float, step_ms: float, costs: bool) -> list[Job]:
    n_train, n_val, n_test = profile_images(P)
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    done = _done_records(P)
    jobs: dict[str, Job] = {}
    seen_models = set()
    for exp, r in _runs(extended, P):
        cfg, tag = r.cfg, r.tag
        key = _key(cfg.to_dict(), tag, sizes)
        if key in jobs:
            if exp.name not in jobs[key].also and exp.name != jobs[key].experiment:
                jobs[key].also.append(exp.name)
            continue
        arch = _arch(cfg)
        first = arch not in seen_models
        g, pf, cold = cost(cfg, P, tag, tflops, step_ms) if costs else (0.0, 0.0, 0.0)
        steady = cost(cfg, P, tag, tflops, step_ms, first=False)[2] if costs else 0.0
        secs, warm = (cold if first else steady), cold - steady
        seen_models.add(arch)
        jobs[key] = Job(exp.name, r.label, cfg, exp.group_of(r), tag, exp, r, [], g,
                        n_train, pf, secs, key in done,
                        key=hashlib.sha1(key.encode()).hexdigest()[:16],
                        warmup_s=warm, first=first)
        if key in done:
            jobs[key].took_s = done[key].get("metrics", {}).get("wall_time")
            jobs[key].device = done[key].get("env", {}).get("device_name")
    return list(jobs.values())



PLANNER["jobs"] = plan  # what report.py reads which runs are done from

def totals(jobs: list[Job]) -> dict:
    """Run counts, PFLOPs and estimated minutes, overall and still pending."""
    pend = [j for j in jobs if not j.done]
    return {"runs": len(jobs), "done": len(jobs) - len(pend), "pending": len(pend),
            "train_pflops": round(sum(j.train_pflops for j in jobs), 2),
            "est_min": round(sum(j.est_s for j in jobs) / 60, 1),
            "pending_est_min": round(sum(j.est_s for j in pend) / 60, 1),
            "by_group": {g: round(sum(j.est_s for j in jobs if j.group == g) / 60, 2)
                         for g in PRIORITY if any(j.group == g for j in jobs)}}


def format_plan(jobs: list[Job], P: Profile, tflops: float, step_ms: float) -> str:
    """The plan as a text table with totals."""
    lines = [f"{'':1} {'group':9} {'experiment':24} {'label':34} {'model':16} "
             f"{'ep':>3} {'images':>6} {'seed':>4} {'GF/img':>7} {'PFLOP':>7} {'est s':>6}"]
    for j in jobs:
        lines.append(f"{'x' if j.done else '.'} {j.group:9} {j.experiment[:24]:24} "
                     f"{j.label[:34]:34} {j.cfg.model[:16]:16} {j.cfg.epochs:>3} "
                     f"{j.images:>6} {j.cfg.seed:>4} {j.gflops_forward:>7.3f} "
                     f"{j.train_pflops:>7.2f} {j.est_s:>6.1f}")
    t = totals(jobs)
    lines += ["", f"profile {P.name}: {t['runs']} runs ({t['done']} done, "
              f"{t['pending']} pending), {t['train_pflops']} PFLOPs; estimated "
              f"{t['est_min']} min at {tflops:g} TFLOP/s and {step_ms:g} ms/step "
              f"(pending: {t['pending_est_min']} min)",
              "by group (min): " + ", ".join(f"{g} {m}" for g, m in t["by_group"].items()),
              "x: done (a finished record is in results/), .: pending"]
    return "\n".join(lines)


# ---------------------------------------------------------------- the budgeted runner


def _post_steps(jobs: list[Job]) -> list[tuple]:
    """(measurement, its jobs) of every measurement of the planned
    experiments, in the order its experiment first appears."""
    out, seen = [], set()
    for j in jobs:
        for m in j.exp.measurements:
            if id(m) not in seen:
                seen.add(id(m))
                mine = [k for k in jobs if k.exp is j.exp and m.needs(k.run)]
                out.append((m, mine))
    return out


def run_budget(profile=None, budget_min: float = 9.0, extended: bool = False,
               root=None, tflops: float = DEFAULT_TFLOPS, step_ms: float = DEFAULT_STEP_MS,
               log=print, only_groups=None, keys=None, claim: bool = True,
               measure: bool = True) -> dict:
    """Train pending runs in priority order within ``budget_min`` minutes.

    A run is launched only when its estimate (scaled by how the runs so far
    compared with theirs) fits in the time left, less ``POST_RESERVE_S``
    for each measurement still to come; each is saved when it
    completes, so a second call continues where this one stopped. The
    post-training measurements run as soon as the runs they need are done
    (``measure=False``: never; a parallel launch measures once at the end).
    ``keys``: only the jobs with these keys (a worker's shard); ``claim``
    (default): take each run's claim first and leave a run that another
    runner holds or has finished (:func:`cifar_lib.executors.claimed`), so
    that two runners started at once on one results/ share the work instead
    of training the same runs twice. Returns what ran and what is left.
    """
    from cifar_lib.experiments import profile_split
    P = get_profile(profile)
    t0, budget = time.perf_counter(), budget_min * 60
    jobs = plan(P, extended, tflops, step_ms)
    if only_groups:
        jobs = [j for j in jobs if j.group in only_groups]
    posts = [(m, mine) for m, mine in _post_steps(jobs) if mine] if measure else []
    if keys is not None:
        jobs = [j for j in jobs if j.key in set(keys)]
    split = profile_split(P, root)
    ran, skipped, posted = [], [], []
    _RATIO[0] = 1.0

    def left():
        return budget - (time.perf_counter() - t0)

    def current():  # the plan as results/ stand now (a grid may have grown)
        return [j for j in plan(P, extended, costs=False)
                if not only_groups or j.group in only_groups]

    ctx = _Ctx(P, split, posts, posted, left, log, current, failed=[])
    _measure_ready(ctx)
    waited = _train_jobs(jobs, ctx, claim, ran, skipped)
    seen = {j.key for j in jobs if not j.run.waits}
    while keys is None and (ran or waited):
        # a rate grid finished: its waiting runs now have their rate, or the
        # grid grew beyond an end that won (a new run; they wait again, or a
        # measurement waits for it). Waiting runs are listed again each
        # round; a round needs a new run.
        jobs = [j for j in plan(P, extended, tflops, step_ms)
                if j.key not in seen and (not only_groups or j.group in only_groups)]
        fresh = [j for j in jobs if not j.run.waits]
        if not fresh:
            break
        seen |= {j.key for j in fresh}
        waited = _train_jobs(jobs, ctx, claim, ran, skipped)
    summary = {"profile": P.name, "ran": len(ran), "pending": len(skipped) + len(waited),
               "minutes": round((time.perf_counter() - t0) / 60, 2),
               "estimate_ratio": round(_RATIO[0], 3), "runs": ran,
               "posted": posted, "measure_failed": ctx.failed,
               "left": [j.row() for j in skipped + waited]}
    log(f"[run] {len(ran)} runs trained in {summary['minutes']} min; "
        f"{len(skipped)} pending (call again to continue)"
        + (f", {len(waited)} waiting for a rate grid" if waited else "")
        + f"; measured/estimated time {_RATIO[0]:.2f}")
    return summary


_RATIO = [1.0]  # measured / estimated time of the runs so far (this process)


@dataclass
class _Ctx:
    """What the runner's steps share: the profile, the split, the
    measurements (``posts``) and those made (``posted``) or failed, the
    clock ``left()``, the log and ``current()``, the plan as it stands."""

    P: Profile
    split: object
    posts: list
    posted: list
    left: Callable[[], float]
    log: Callable
    current: Callable[[], list]
    failed: list
    trained: set = field(default_factory=set)  # keys trained in this call
    warm: set = field(default_factory=set)     # models (_arch) warmed up in this process

    def done(self, job) -> bool:
        return job.done or job.key in self.trained


def _reserve(ctx: _Ctx, ratio: float) -> float:
    """Time kept back for the measurements this call can still reach: one
    whose pending runs (at the measured/estimated ratio) and its own
    reserve fit in the time left. One that cannot be reached keeps
    nothing back, so a short call trains what fits."""
    left, n = ctx.left(), 0
    for m, mine in ctx.posts:
        if m.name in ctx.posted or m.name in ctx.failed:
            continue
        need = sum(k.est_s * ratio for k in mine if not ctx.done(k))
        n += need + POST_RESERVE_S <= left
    return POST_RESERVE_S * n


def _process_est(j, ctx: _Ctx) -> float:
    """A job's estimate in this process: its model's warm-up is paid by the
    first run of the model here, whichever run of the plan that is (the
    plan puts it on the plan's first run; a call that starts mid-plan pays
    it again, and measured against an estimate without it, that run made
    the later estimates of a short call 1.8 times too long)."""
    warmup = getattr(j, "warmup_s", 0.0)
    plain = j.est_s - (warmup if getattr(j, "first", False) else 0.0)
    cold = hasattr(j.cfg, "model") and _arch(j.cfg) not in ctx.warm
    return plain + (warmup if cold else 0.0)


def _train_jobs(jobs, ctx: _Ctx, claim, ran, skipped) -> list:
    """Train ``jobs`` within the time ``ctx.left()``; return those that wait
    for a rate grid."""
    waited = []
    for j in jobs:
        if j.done:
            continue
        if j.run.waits:
            waited.append(j)
            continue
        ratio = _RATIO[0]
        base = _process_est(j, ctx)
        est = base * ratio
        if est + _reserve(ctx, ratio) > ctx.left():
            skipped.append(j)
            continue
        ctx.log(f"[run] {j.group}/{j.experiment}: {j.label} (seed {j.cfg.seed}), "
                f"est {est:.0f} s, {ctx.left() / 60:.1f} min left")
        took = _train_job(j, ctx.P, ctx.split, claim, ctx.log)
        if took is None:
            continue
        ran.append({**j.row(), "took_s": round(took, 1)})
        ctx.trained.add(j.key)
        if hasattr(j.cfg, "model"):  # (a test's stand-in job has none)
            ctx.warm.add(_arch(j.cfg))
        _RATIO[0] = _update_ratio(ratio, took, base, len(ran))
        _measure_ready(ctx)
    return waited


def _train_job(j: Job, P: Profile, split, claim: bool, log) -> float | None:
    """Train one job (its seconds); None when another worker holds its
    claim or finished it meanwhile."""
    from contextlib import nullcontext
    from cifar_lib.claims import claimed
    from cifar_lib.experiments import train_one
    about = {"run": j.label, "experiment": j.experiment}
    with claimed(P.results, j.key, about) if claim else nullcontext(True) as mine:
        if mine and claim and _stored(P, j):
            mine = False
        if not mine:
            log(f"[run] {j.label} (seed {j.cfg.seed}): claimed by another worker or done")
            return None
        s = time.perf_counter()
        train_one(j.exp, j.run, P, split, log=log)
        j.done = True
        return time.perf_counter() - s


def _stored(P: Profile, j: Job) -> bool:
    """Whether a finished record of the job's run is on disk now."""
    n_train, n_val, n_test = profile_images(P)
    found = store.find_run(P.results, j.cfg.to_dict(), j.tag,
                           {"train": n_train, "val": n_val, "test": n_test})
    return found is not None and found[1].get("status") in ("ok", "diverged", "failed")


def _measure_ready(ctx: _Ctx) -> None:
    """Run each measurement whose runs are all done (once). Its runs are
    read again from the plan as it stands before it measures: a rate grid
    that grew, or runs that waited for it, are runs it needs too. A
    measurement that fails is logged and named in ``ctx.failed``; training
    goes on (the CLI then exits non-zero)."""
    for i, (m, mine) in enumerate(ctx.posts):
        if m.name in ctx.posted or m.name in ctx.failed or not all(map(ctx.done, mine)):
            continue
        now = [k for k in ctx.current() if m in k.exp.measurements and m.needs(k.run)]
        if not all(ctx.done(k) and not k.run.waits for k in now):
            ctx.posts[i] = (m, now)  # it waits for these now
            continue
        ctx.log(f"[run] {m.name}: measuring ({ctx.left() / 60:.1f} min left)")
        from cifar_lib.experiments import trained_seconds
        s, trained = time.perf_counter(), trained_seconds()
        try:
            m.measure(ctx.P, ctx.split, log=ctx.log)
        except (ValueError, RuntimeError, OSError) as e:
            ctx.failed.append(m.name)
            ctx.log(f"[run] {m.name}: FAILED, training goes on: {e}")
            continue
        ctx.posted.append(m.name)
        # runs it trained again (their weights were not on this machine)
        # count as their runs' training, not as this measurement's time
        retrained = trained_seconds() - trained
        took = time.perf_counter() - s - retrained
        ctx.log(f"[run] {m.name}: done in {took:.0f} s" + (
            f" (and {retrained:.0f} s retraining runs whose weights were not here)"
            if retrained >= 1 else ""))
        if took >= MEASURED_MIN_S:  # it measured (else it found its results)
            _save_measure_time(ctx.P, m.name, took)


def _measure_times_path(P: Profile):
    return P.results / "summaries" / "measure_times.json"


def _measure_times(P: Profile) -> dict:
    """name -> {seconds, device} of the post-training measurements run kept."""
    return store.read(_measure_times_path(P)) or {}


def _save_measure_time(P: Profile, name: str, seconds: float) -> None:
    """Keep how long a post-training measurement took, and where."""
    from cifar_lib.experiments import environment
    times = _measure_times(P)
    times[name] = {"seconds": round(seconds, 1), "device": environment()["device_name"]}
    store.write(times, _measure_times_path(P))


def work_by_notebook(profile=None, extended: bool = False) -> list[dict]:
    """Per notebook (in order), the work of its runs and measurements on the
    device they ran on: runs done of all, their recorded wall time (s), the
    measurements' times as ``run`` kept them (``steps`` of them; None: none
    is recorded), the estimate (s) of pending runs,
    and the devices."""
    P = get_profile(profile)
    jobs = plan(P, extended)
    measured = _measure_times(P)
    posts = {m.name: m.notebook for m, _ in _post_steps(jobs)}
    rows = []
    for nb in sorted({j.exp.notebook for j in jobs} | set(posts.values())):
        mine = [j for j in jobs if j.exp.notebook == nb]
        done = [j for j in mine if j.done]
        steps = [n for n, where in posts.items() if where == nb]
        meas = [measured[n] for n in steps if n in measured]
        rows.append({"notebook": nb, "done": len(done), "runs": len(mine), "steps": len(steps),
                     "train_s": sum(j.took_s or 0 for j in done),
                     "measure_s": sum(m["seconds"] for m in meas) if meas or not steps
                     else None,
                     "pending_s": sum(j.est_s for j in mine if not j.done),
                     "devices": sorted({j.device for j in done if j.device}
                                       | {m["device"] for m in meas})})
    return rows


@register_table("device_work")
def device_work_table(profile: Profile):
    """README: each notebook's work in the profile on the device it ran on
    (:func:`work_by_notebook`); None before any run is done."""
    import pandas as pd
    rows = work_by_notebook(profile)
    if not any(r["done"] for r in rows):
        return None

    def minutes(s):
        return "not recorded" if s is None else f"{s / 60:.1f}"
    out = [{"notebook": f"{r['notebook']}.ipynb",
            "runs done": f"{r['done']} of {r['runs']}" if r["runs"] else "none of its own",
            "training (min)": minutes(r["train_s"]),
            "measurements (min)": minutes(r["measure_s"]) if r["steps"] else "none",
            "pending runs, estimated (min)": minutes(r["pending_s"]),
            "device": ", ".join(r["devices"]) or "n/a"} for r in rows]
    out.append({"notebook": "all", "runs done": f"{sum(r['done'] for r in rows)} of "
                f"{sum(r['runs'] for r in rows)}",
                "training (min)": minutes(sum(r["train_s"] for r in rows)),
                "measurements (min)": minutes(sum(r["measure_s"] or 0 for r in rows)),
                "pending runs, estimated (min)": minutes(sum(r["pending_s"] for r in rows)),
                "device": ""})
    return pd.DataFrame(out)


def _update_ratio(ratio: float, took: float, est: float, n: int) -> float:
    """Running mean of measured/estimated time (the first run counts half:
    it pays for warm-up)."""
    r = took / max(est, 1e-3)
    w = 0.5 if n == 1 else 1.0
    return ratio + w * (r - ratio) / (n if n > 1 else 1) if math.isfinite(r) else ratio


def status_line(profile=None) -> str:
    """One line for the top of a report: which runs of the profile are in
    results/ (and whether the extended set contributed)."""
    P = get_profile(profile)
    jobs = plan(P, costs=False)
    done = [j for j in jobs if j.done]
    ext = [j for j in plan(P, extended=True, costs=False) if j.group == "extended" and j.done]
    also = (f", and so are {len(ext)} run{'s' * (len(ext) != 1)} of the opt-in extended set "
            "(`--extended`)" if ext else "")
    if len(done) == len(jobs):
        return f"All {len(jobs)} runs of the {P.name} profile are in results/{also}." \
            + _damaged_note(P)
    pending = sorted({j.group for j in jobs if not j.done}, key=PRIORITY.index)
    line = (f"The {P.name} profile has not finished: {len(done)} of its {len(jobs)} "
            f"runs are in results/{also}; run groups with runs still pending (what "
            f"`python -m cifar_lib run --profile {P.name} --groups` takes): "
            f"{', '.join(f'`{g}`' for g in pending)}. Sections whose runs are pending say "
            "so below")
    if P.name == "full":
        line += ("; the [cpu-profile report](runs/cpu/report.md) shows the whole "
                 "study at small scale")
    return line + "." + _damaged_note(P)


def _damaged_note(P: Profile) -> str:
    """A sentence naming the result files that could not be read (their
    rows are left out until the run is trained again), or nothing."""
    import os
    bad = store.damaged(P.results)
    if not bad:
        return ""
    names = ", ".join(f"`{os.path.relpath(p, P.root)}`" for p in sorted(bad))
    return (f" {len(bad)} result file{'s' * (len(bad) != 1)} could not be read and "
            f"{'are' if len(bad) != 1 else 'is'} left out: {names} (see the warning "
            "that names the problem; training the run again moves the file aside).")


@register_values
def values(profile: Profile) -> dict:
    """The report values of the plan: report.md's status line (``run_status``,
    :func:`status_line`). Here rather than in a study, since the plan
    imports the studies."""
    return {"run_status": status_line(profile)}


def load_studies() -> None:
    """Register every study's report figures, tables and values (and this
    module's ``run_status``): what an entry point calls before it looks a
    report block or an experiment up by name."""
    import cifar_lib.studies  # noqa: F401

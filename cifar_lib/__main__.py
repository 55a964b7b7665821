"""Command line: train one config or named experiments, run the notebooks.

Installed (pip install -e .) it is also the cifar-lib command.

    python -m cifar_lib train --model resnet18 --epochs 30 --set lr=0.05 [--out DIR]
    python -m cifar_lib experiment architectures ablation_optimizers --profile full
    python -m cifar_lib plan --profile full [--json plan.json] [--extended]
    python -m cifar_lib run --profile full --budget-min 9 [--extended]
    python -m cifar_lib notebooks --profile cpu [--only 00 01]
    python -m cifar_lib report --profile cpu
    python -m cifar_lib list models|experiments
"""
# Building the parser imports nothing heavy (no torch, no studies): the sets
# that options choose from are loaded the first time a value is checked
# against them or a command's --help lists them.
from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
from pathlib import Path

from cifar_lib.profiles import PROFILES, check_count, get_profile, scratch_root

# Groups of the plan, in the order the budgeted runner trains them (the same
# tuple as cifar_lib.plan.PRIORITY; tests check that they agree).
PRIORITY = ("batchnorm", "dessilbi", "core", "ablations", "long", "zoo", "extended")


class _Lazy:
    """The choices of an option, computed on first use (membership, listing)."""

    def __init__(self, load):
        self._load, self._items = load, None

    def _get(self) -> list:
        if self._items is None:
            self._items = list(self._load())
        return self._items

    def __contains__(self, item) -> bool:
        return item in self._get()

    def __iter__(self):
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help that loads an option's lazy choices only when its text shows them."""

    def _expand_help(self, action):
        if isinstance(action.choices, _Lazy) and "%(choices)" not in (action.help or ""):
            action = copy.copy(action)
            action.choices = None
        return super()._expand_help(action)


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _train(args) -> int:
    from cifar_lib import store
    from cifar_lib.engine import TrainConfig
    from cifar_lib.experiments import profile_split, run

    P = get_profile(args.profile)
    # a one-off run: into a scratch folder, never the profile's committed one
    P = P.with_(root=Path(args.out).absolute() if args.out else scratch_root(P.name))
    if args.train_size is not None:
        top = P.max_train_size
        check_count("--train-size", args.train_size, 1, top,
                    f" for the {P.name} profile" if top else "")
        P = P.with_(train_size=args.train_size)
    fields = {"model": args.model, "epochs": P.epochs if args.epochs is None else args.epochs,
              "batch_size": P.batch_size, "seed": args.seed}
    for item in args.set:
        key, _, val = item.partition("=")
        fields[key] = _value(val)
    cfg = TrainConfig.from_dict(fields)
    rec = run(cfg, profile_split(P, args.data_root), args.experiment, P,
              force=args.force, log=print)
    weights = f", weights {P.root / rec['weights']}" if rec.get("weights") else ""
    print(f"run saved in {P.root}: record "
          f"{store.run_path(P.results, args.experiment, rec['run'])}{weights}")
    print(json.dumps({"run": rec["run"], "status": rec["status"], **rec["metrics"]}, indent=1))
    return 0 if rec["status"] == "ok" else 3


def _experiment(args) -> int:
    from cifar_lib.experiments import (profile_split, results_frame, run_experiment,
                                       summarize)
    from cifar_lib.profiles import get_profile
    from cifar_lib.studies import experiment

    P = get_profile(args.profile)
    split = profile_split(P, args.data_root)
    for name in args.names:
        exp = experiment(name)
        df = results_frame(run_experiment(exp, P, split, force=args.force, log=print))
        print(f"\n== {name} ({P.name})")
        print(summarize(df).to_string(index=False))
    return 0


def _plan(args) -> int:
    from cifar_lib import plan as pl
    from cifar_lib.profiles import get_profile

    P = get_profile(args.profile)
    _rate_defaults(args)
    jobs = pl.plan(P, args.extended, args.tflops, args.step_ms)
    print(pl.format_plan(jobs, P, args.tflops, args.step_ms))
    if args.json:
        from cifar_lib.experiments import write_json
        write_json({"profile": P.name, "extended": args.extended,
                    "tflops": args.tflops, "step_ms": args.step_ms,
                    "runs": [j.row() for j in jobs], "total": pl.totals(jobs)},
                   Path(args.json))
        print(f"wrote {args.json}")
    return 0


def _run(args) -> int:
    from cifar_lib import plan as pl

    _rate_defaults(args)
    if args.executor:
        from cifar_lib.executors import run_parallel
        slurm = {"partition": args.partition, "time_min": args.time_min,
                 "gpus_per_task": args.gpus_per_task, "cpus_per_task": args.cpus_per_task}
        out = run_parallel(args.profile, args.workers, args.executor, args.budget_min,
                           args.extended, args.data_root, args.groups, slurm)
    else:
        out = pl.run_budget(args.profile, args.budget_min, args.extended, args.data_root,
                            args.tflops, args.step_ms, only_groups=args.groups)
    if args.json:
        from cifar_lib.experiments import write_json
        write_json(out, Path(args.json))
    if out.get("measure_failed"):
        print(f"error: measurement(s) failed: {', '.join(out['measure_failed'])} "
              "(the log says why; the runs trained are kept; run again once fixed)",
              file=sys.stderr)
        return 1
    return 0


def _notebooks(args) -> int:
    import os
    from cifar_lib.notebooks import run_notebooks
    if args.no_train:  # the kernels inherit it: a missing run raises instead of training
        os.environ["CIFAR_LIB_NO_TRAIN"] = "1"
    run_notebooks(args.profile, only=args.only)
    return 0


def _report(args) -> int:
    from cifar_lib.plan import load_studies
    from cifar_lib.report import refresh_readme, refresh_report
    load_studies()
    print(refresh_report(args.profile))
    print(refresh_readme())
    return 0


def _list(args) -> int:
    if args.what == "models":
        from cifar_lib.models import list_models
        print("\n".join(list_models()))
    else:
        from cifar_lib.studies import experiments
        print("\n".join(sorted(e.name for e in experiments())))
    return 0


def _model_name(text: str) -> str:
    """argparse type of ``--model``: a registered name, else the library's
    message (with its did-you-mean hint)."""
    from cifar_lib.models import _check_name
    try:
        _check_name(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _models() -> list[str]:
    from cifar_lib.models import list_models
    return list_models(aliases=True)


def _experiments() -> list[str]:
    from cifar_lib.studies import experiments
    return sorted(e.name for e in experiments())


def _notebook_names() -> list[str]:
    from cifar_lib.notebooks import notebooks
    nbs = notebooks()
    return [p.name[:2] for p in nbs] + [p.stem for p in nbs]


def _fixed_sets() -> dict[str, _Lazy]:
    """The fixed sets the options choose from: models, experiments, notebooks
    (each loaded when first needed)."""
    return {"models": _Lazy(_models), "experiments": _Lazy(_experiments),
            "notebooks": _Lazy(_notebook_names)}


# Counts and sizes given on the command line: (option, attribute, low, high);
# checked before anything runs ("--epochs must be >= 1 (got 0)"). The
# training size's bound depends on the profile: checked in _train.
_COUNTS = (("--epochs", "epochs", 1, None), ("--seed", "seed", 0, 2**32 - 1))
_POSITIVE = (("--budget-min", "budget_min"), ("--tflops", "tflops"))


def check_args(args) -> None:
    """ValueError for a count or size out of its range (message names the
    option, the range and the value)."""
    for option, attr, low, high in _COUNTS:
        value = getattr(args, attr, None)
        if value is not None:
            check_count(option, value, low, high)
    for option, attr in _POSITIVE:
        value = getattr(args, attr, None)
        if value is not None and not value > 0:
            raise ValueError(f"{option} must be > 0 (got {value})")
    step = getattr(args, "step_ms", None)
    if step is not None and not step >= 0:
        raise ValueError(f"--step-ms must be >= 0 (got {step})")


def _rate_defaults(args) -> None:
    from cifar_lib.plan import DEFAULT_STEP_MS, DEFAULT_TFLOPS
    if args.tflops is None:
        args.tflops = DEFAULT_TFLOPS
    if args.step_ms is None:
        args.step_ms = DEFAULT_STEP_MS


def _common(p) -> None:
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help="default: $CIFAR_LIB_PROFILE, else full with CUDA, else cpu")
    p.add_argument("--data-root", default=None, help="CIFAR-10 folder (default: $CIFAR10_ROOT)")
    p.add_argument("--force", action="store_true", help="retrain runs found on disk")


def _rates(p) -> None:
    p.add_argument("--extended", action="store_true",
                   help="include the opt-in extended set (heaviest variants)")
    p.add_argument("--tflops", type=float, default=None,
                   help="effective training TFLOP/s the estimate assumes "
                        "(default: measured on one H100)")
    p.add_argument("--step-ms", type=float, default=None,
                   help="floor per optimizer step in ms (launch-bound small nets; "
                        "default: measured on one H100)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write JSON here")


def _all_train() -> str:
    """What 'all training images' is in each profile of real data."""
    tops = [f"{P.max_train_size} in {P.name}" for P in map(get_profile, PROFILES)
            if P.max_train_size]
    return ", ".join(tops)


def _add_train(sub, sets: dict) -> None:
    p = sub.add_parser("train", help="train one config")
    _common(p)
    p.add_argument("--model", default="fastnet", type=_model_name, choices=sets["models"],
                   metavar="NAME", help="a registered model (see: list models); "
                                        "default: fastnet")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs, >= 1 (default: the profile's)")
    p.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default: 0)")
    p.add_argument("--experiment", default="manual",
                   help="the run is saved in OUT/results/<experiment>/ (default: manual)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output root of the run (its results/ and weights/); default: "
                        "runs/scratch/<profile>/ (ignored by git; under "
                        "$CIFAR_LIB_SCRATCH/train/ when set), so a one-off run changes "
                        "no committed file")
    p.add_argument("--train-size", type=int, default=None,
                   help="training images kept, from 1 to all: " + _all_train() +
                        " (default: the profile's)")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="TrainConfig fields, values as JSON "
                        "(e.g. lr=0.05 model_kw='{\"width\":0.5}')")
    p.set_defaults(fn=_train)


def _add_runs(sub, sets: dict) -> None:
    p = sub.add_parser("experiment", help="run named experiments")
    _common(p)
    p.add_argument("names", nargs="+", choices=sets["experiments"], metavar="NAME",
                   help="named experiments: %(choices)s")
    p.set_defaults(fn=_experiment)

    p = sub.add_parser("plan", help="list every run of a profile: cost, estimate, "
                                    "done/pending")
    p.add_argument("--profile", choices=PROFILES, default=None, help="default: as train")
    _rates(p)
    p.set_defaults(fn=_plan)

    p = sub.add_parser("run", help="train a profile's pending runs in priority order "
                                   "within a time budget (call again to continue)")
    p.add_argument("--profile", choices=PROFILES, default=None, help="default: as train")
    p.add_argument("--data-root", default=None, help="default: $CIFAR10_ROOT")
    p.add_argument("--budget-min", type=float, default=9.0,
                   help="stop launching runs that would end after this many minutes")
    p.add_argument("--groups", nargs="*", default=None, choices=PRIORITY,
                   help="train only these groups of the plan (default: all, in this order)")
    _rates(p)
    _executor_options(p)
    p.set_defaults(fn=_run)


def _positive(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 (got {text})")
    return n


def _executor_options(p) -> None:
    g = p.add_argument_group("several workers (see cifar_lib/executors.py)")
    g.add_argument("--executor", choices=("local", "slurm"), default=None,
                   help="spread the pending runs over --workers processes: local (one "
                        "per GPU of this machine) or a Slurm job array (needs submitit: "
                        "pip install 'cifar-lib[cluster]'); default: one process")
    g.add_argument("--workers", type=_positive, default=2,
                   help="workers (shards balanced by the plan's estimates; default 2)")
    g.add_argument("--partition", default=None, help="Slurm partition")
    g.add_argument("--time-min", type=_positive, default=60,
                   help="Slurm time limit per task in minutes (default 60)")
    g.add_argument("--gpus-per-task", type=_positive, default=1,
                   help="GPUs per Slurm task (default 1)")
    g.add_argument("--cpus-per-task", type=_positive, default=8,
                   help="CPUs per Slurm task (default 8)")


def _add_outputs(sub, sets: dict) -> None:
    p = sub.add_parser("notebooks", help="execute the notebooks in order, refresh the report")
    p.add_argument("--profile", choices=PROFILES, default=None, help="default: as train")
    p.add_argument("--only", nargs="*", default=None, choices=sets["notebooks"],
                   metavar="NN", help="notebooks by number or name, e.g. 00 02")
    p.add_argument("--no-train", action="store_true",
                   help="render from results/ only: a notebook that would train fails "
                        "(and keeps its previous executed copy)")
    p.set_defaults(fn=_notebooks)

    p = sub.add_parser("report", help="refresh the profile's report from its results")
    p.add_argument("--profile", choices=PROFILES, default=None, help="default: as train")
    p.set_defaults(fn=_report)

    p = sub.add_parser("list", help="list models or experiments")
    p.add_argument("what", choices=("models", "experiments"), help="what to list")
    p.set_defaults(fn=_list)


def build_parser(prog: str = "python -m cifar_lib") -> argparse.ArgumentParser:
    """The command line's parser (``python -m cifar_lib`` or ``cifar-lib``)."""
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=_Formatter)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND",
                            parser_class=functools.partial(argparse.ArgumentParser,
                                                           formatter_class=_Formatter))
    sets = _fixed_sets()
    _add_train(sub, sets)
    _add_runs(sub, sets)
    _add_outputs(sub, sets)
    return ap


def main(argv=None) -> int:
    """Entry point of ``python -m cifar_lib`` and of the ``cifar-lib`` command."""
    prog = "cifar-lib" if Path(sys.argv[0]).name == "cifar-lib" else "python -m cifar_lib"
    args = build_parser(prog).parse_args(argv)
    try:
        check_args(args)
        return args.fn(args)
    except (ValueError, OSError, RuntimeError) as e:  # OSError: full disk, read-only
        print(f"error: {error_text(e)}", file=sys.stderr)
        return 2


def error_text(e: BaseException) -> str:
    """An error's message for the one ``error:`` line: an OSError's without
    its ``[Errno N]`` prefix (with the file it names, if any)."""
    if isinstance(e, OSError) and e.errno is not None and e.strerror:
        return e.strerror + (f": {e.filename}" if e.filename else "")
    return str(e) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())

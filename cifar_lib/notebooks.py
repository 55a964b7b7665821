"""Execute the study notebooks in order with papermill, then refresh the report.

The full profile executes the notebooks in place (the committed record);
other profiles write executed copies to ``<profile root>/notebooks/``.
Each main job appends its wall time per notebook to
``<profile root>/results/notebook_times.json`` (a run that finds its results
on disk is much faster than the first, which trains).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from cifar_lib.profiles import REPO, Profile, get_profile

NOTEBOOK_DIR = REPO / "notebooks"


def notebooks(only=None) -> list[Path]:
    """The numbered notebooks (``00_*.ipynb`` ...), optionally by prefix."""
    nbs = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        nbs = [p for p in nbs if any(p.name.startswith(o) for o in only)]
        if not nbs:
            raise ValueError(f"no notebook starts with {only}; have "
                             f"{[p.name for p in notebooks()]}")
    return nbs


def execute(nb: Path, profile: Profile, out: Path, timeout: int | None = None) -> float:
    """Run one notebook headless with ``profile``; return its wall time in s."""
    import papermill as pm
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {"CIFAR_LIB_PROFILE": profile.name, "CIFAR_LIB_PROGRESS": "0",
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    if profile.name == "smoke":  # the kernel writes where this profile points
        env["CIFAR_LIB_SCRATCH"] = str(profile.root)
    for var in ("CIFAR10_ROOT", "CIFAR_LIB_CACHE"):  # the kernel starts in notebooks/
        if os.environ.get(var):
            env[var] = os.path.abspath(os.environ[var])
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(nb), str(out), parameters={"profile": profile.name},
                            cwd=str(NOTEBOOK_DIR), kernel_name="python3",
                            progress_bar=False, execution_timeout=timeout)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return time.perf_counter() - t0


def run_notebooks(profile=None, only=None, timeout: int | None = None) -> dict:
    """Execute the notebooks in order and refresh the profile's report."""
    import datetime as _dt

    from cifar_lib.experiments import environment, write_json
    from cifar_lib.report import refresh_readme, refresh_report
    import json

    P = get_profile(profile)
    out_dir = NOTEBOOK_DIR if P.name == "full" else P.root / "notebooks"
    times_path = P.results / "notebook_times.json"
    log = json.loads(times_path.read_text()) if times_path.is_file() else {"runs": []}
    entry = {"started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
             "device": environment()["device_name"], "times": {}}
    log["runs"].append(entry)
    for nb in notebooks(only):
        print(f"[{P.name}] {nb.name} ...", flush=True)
        entry["times"][nb.stem] = round(execute(nb, P, out_dir / nb.name, timeout), 1)
        print(f"[{P.name}] {nb.name} done in {entry['times'][nb.stem]:.0f} s", flush=True)
        write_json(log, times_path)
    print(f"report: {refresh_report(P)}")
    if P.name != "smoke":  # README quotes the cpu and full profiles only
        print(f"readme: {refresh_readme()}")
    return entry["times"]

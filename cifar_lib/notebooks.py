"""Execute the study notebooks in order with papermill, then refresh the report.

The full profile executes the notebooks in place (the committed record);
other profiles write executed copies to ``<profile root>/notebooks/``.

A notebook runs into a temporary file (``<out dir>/.running/<name>``) that
replaces the executed notebook only when every cell succeeded, with volatile
metadata stripped (times, durations, versions, absolute paths), so that a
re-run whose results are on disk rewrites the same bytes. A notebook that
fails or is interrupted leaves the previous executed notebook as it was; its
partial copy, with papermill's marking of the failing cell, is kept in
``<profile root>/notebooks/failed/<name>`` (ignored by git), the failure is
appended to ``results/notebook_times.json`` under ``failures``, and
:class:`NotebookFailed` (or the KeyboardInterrupt) stops the main job.

The main job records a notebook's wall time in ``results/notebook_times.json``
only when the notebook trained (wrote or changed a run record under
``results/<experiment>/``) or has no time recorded yet: re-running a profile
whose results exist changes no file.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import time
from pathlib import Path

from cifar_lib.profiles import REPO, Profile, get_profile

NOTEBOOK_DIR = REPO / "notebooks"
INJECTED_ID = "injected-parameters"  # papermill gives this cell a random id
_VOLATILE = ("start_time", "end_time", "duration")


class NotebookFailed(RuntimeError):
    """A notebook stopped with an error; the message names the notebook, the
    failing cell and where its executed copy was kept."""

    def __init__(self, message: str, record: dict):
        super().__init__(message)
        self.record = record


def notebooks(only=None) -> list[Path]:
    """The numbered notebooks (``00_*.ipynb`` ...), optionally by prefix."""
    nbs = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if only:
        nbs = [p for p in nbs if any(p.name.startswith(o) for o in only)]
        if not nbs:
            raise ValueError(f"no notebook starts with {only}; have "
                             f"{[p.name for p in notebooks()]}")
    return nbs


def failed_dir(profile: Profile) -> Path:
    """Where the executed copies of failed notebooks are kept (git-ignored)."""
    return profile.root / "notebooks" / "failed"


def _inside(path, base) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(base))


def shown_path(path: Path, root: Path | None = None) -> str:
    """``path`` as it may appear in a committed file: relative to the repo,
    else to ``root``, else its name (never the clone's absolute path)."""
    for base in (REPO, root):
        if base is not None and _inside(path, base):
            real = Path(os.path.realpath(path))
            return real.relative_to(os.path.realpath(base)).as_posix()
    return Path(path).name


# ---------------------------------------------------------------- clean-up


def _scrub(text, prefixes):
    """``text`` (str or list of str) with absolute path prefixes removed."""
    if isinstance(text, list):
        return [_scrub(t, prefixes) for t in text]
    if not isinstance(text, str):
        return text
    for p in prefixes:
        text = re.sub(re.escape(p) + r"(/|\b)", lambda m: "" if m.group(1) else ".", text)
    return text


def _scrub_outputs(cell, prefixes) -> None:
    for out in cell.get("outputs", []):
        if "text" in out:
            out["text"] = _scrub(out["text"], prefixes)
        for mime, value in out.get("data", {}).items():
            if mime.startswith("text/"):
                out["data"][mime] = _scrub(value, prefixes)
        if "traceback" in out:
            out["traceback"] = _scrub(out["traceback"], prefixes)
            out["evalue"] = _scrub(out.get("evalue", ""), prefixes)


def clean_notebook(nb, source: Path, out: Path, root: Path | None = None,
                   keep_stderr: bool = False):
    """Strip what changes between two runs with the same results: papermill's
    times and versions, cell execution stamps, Python's patch version,
    absolute paths in metadata and outputs, and (unless ``keep_stderr``) the
    stderr stream, where training logs its progress and times (a run that
    trains prints them, one that loads its results does not; the run records
    keep what was trained). The injected parameters cell gets a fixed id; the
    others keep the source notebook's ids."""
    pm = nb.metadata.get("papermill", {})
    for key in (*_VOLATILE, "version"):
        pm.pop(key, None)
    pm["input_path"], pm["output_path"] = shown_path(source, root), shown_path(out, root)
    nb.metadata.get("language_info", {}).pop("version", None)
    bases = [REPO] + ([root] if root is not None and not _inside(root, REPO) else [])
    prefixes = sorted({str(p) for base in bases
                       for p in (Path(base), Path(os.path.realpath(base)))},
                      key=len, reverse=True)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for key in _VOLATILE:
            cell.metadata.get("papermill", {}).pop(key, None)
        if INJECTED_ID in cell.metadata.get("tags", []):
            cell["id"] = INJECTED_ID
        if "outputs" in cell and not keep_stderr:
            cell["outputs"] = [o for o in cell["outputs"] if o.get("name") != "stderr"]
        _scrub_outputs(cell, prefixes)
    return nb


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty: another notebook of this folder is running
        pass


def _write_if_changed(nb, tmp: Path, out: Path) -> None:
    """Write ``nb`` to ``tmp`` and move it over ``out`` unless the bytes are
    the same (then ``out`` keeps its mtime)."""
    import nbformat
    nbformat.write(nb, str(tmp))
    if out.is_file() and out.read_bytes() == tmp.read_bytes():
        tmp.unlink()
    else:
        os.replace(tmp, out)


# ---------------------------------------------------------------- failures


def _failed_cell(nb) -> tuple[int | None, str | None]:
    """(index, error) of the cell papermill marked as failed or running."""
    for i, cell in enumerate(nb.cells if nb is not None else []):
        status = cell.metadata.get("papermill", {}).get("status")
        if status in ("failed", "running"):
            errors = [f"{o.get('ename')}: {o.get('evalue')}" for o in cell.get("outputs", [])
                      if o.get("output_type") == "error"]
            return cell.get("execution_count") or i, (errors[-1] if errors else None)
    return None, None


def _keep_failed(nb_path: Path, profile: Profile, tmp: Path, exc: BaseException) -> dict:
    """Move the partial copy to failed/, append the failure to the times log,
    return its record."""
    import nbformat
    from cifar_lib.experiments import write_json
    kept = failed_dir(profile) / nb_path.name
    nb = None
    if tmp.is_file():
        try:
            nb = clean_notebook(nbformat.read(str(tmp), 4), nb_path, kept, profile.root,
                                keep_stderr=True)
        except Exception:  # a half-written autosave: keep it as it is
            nb = None
        kept.parent.mkdir(parents=True, exist_ok=True)
        if nb is not None:
            nbformat.write(nb, str(tmp))
        os.replace(tmp, kept)
    _remove_if_empty(tmp.parent)
    cell, error = _failed_cell(nb)
    if hasattr(exc, "ename"):  # papermill's error names the cell and the exception
        cell, error = exc.exec_count, f"{exc.ename}: {exc.evalue}"
    elif error is None:
        error = f"{type(exc).__name__}: {exc}".rstrip(": ")
    record = {"notebook": nb_path.stem, "cell": cell, "error": error,
              "failed_copy": shown_path(kept, profile.root) if kept.is_file() else None,
              "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    path = profile.results / "notebook_times.json"
    log = json.loads(path.read_text()) if path.is_file() else {"runs": []}
    log.setdefault("failures", []).append(record)
    write_json(log, path)
    return record


def _failure_message(record: dict, profile: Profile, out: Path) -> str:
    where = (f"its executed copy with the failing cell marked is "
             f"{failed_dir(profile) / Path(record['failed_copy']).name}"
             if record["failed_copy"] else "no executed copy was written")
    before = (f"the previous executed notebook {out} was left as it was" if out.is_file()
              else f"nothing was written to {out}")
    return (f"notebook {record['notebook']} failed at cell {record['cell']} "
            f"({record['error']}); {where}; {before} "
            f"(failure recorded in {profile.results / 'notebook_times.json'})")


# ---------------------------------------------------------------- execution


def _kernel_env(profile: Profile) -> dict:
    env = {"CIFAR_LIB_PROFILE": profile.name, "CIFAR_LIB_PROGRESS": "0",
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    if profile.name == "smoke":  # the kernel writes where this profile points
        env["CIFAR_LIB_SCRATCH"] = str(profile.root)
    for var in ("CIFAR10_ROOT", "CIFAR_LIB_CACHE"):  # the kernel starts in notebooks/
        if os.environ.get(var):
            env[var] = os.path.abspath(os.environ[var])
    return env


def _papermill(nb: Path, profile: Profile, out: Path, timeout) -> None:
    import papermill as pm
    env = _kernel_env(profile)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
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


def execute(nb: Path, profile: Profile, out: Path, timeout: int | None = None) -> float:
    """Run one notebook headless with ``profile`` into ``out``; return its
    wall time in s. ``out`` is replaced only on success (module doc)."""
    import nbformat
    nb, out = Path(nb), Path(out)
    tmp = out.parent / ".running" / out.name
    tmp.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        _papermill(nb, profile, tmp, timeout)
    except BaseException as e:  # an interrupt too: keep the old notebook, say where
        record = _keep_failed(nb, profile, tmp, e)
        message = _failure_message(record, profile, out)
        if isinstance(e, Exception):
            raise NotebookFailed(message, record) from e
        print(f"[{profile.name}] interrupted: {message}", flush=True)
        raise
    finally:
        seconds = time.perf_counter() - t0
    clean = clean_notebook(nbformat.read(str(tmp), 4), nb, out, profile.root)
    _write_if_changed(clean, tmp, out)
    _remove_if_empty(tmp.parent)
    return seconds


def run_records(results: Path) -> dict[str, str]:
    """sha1 of every run record (``results/<experiment>/*.json``) by path."""
    return {p.relative_to(results).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(results.glob("*/*.json")) if p.parent.name != "summaries"}


def run_notebooks(profile=None, only=None, timeout: int | None = None) -> dict:
    """Execute the notebooks in order and refresh the profile's report.

    Returns the times recorded by this call (notebook -> s): those of the
    notebooks that trained, or ran for the first time on this device."""
    from cifar_lib.experiments import environment, write_json
    from cifar_lib.plan import load_studies
    from cifar_lib.report import refresh_readme, refresh_report

    load_studies()  # the report's tables and values
    P = get_profile(profile)
    out_dir = NOTEBOOK_DIR if P.name == "full" else P.root / "notebooks"
    times_path = P.results / "notebook_times.json"
    device = environment()["device_name"]
    entry = {"started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
             "device": device, "times": {}}
    for nb in notebooks(only):
        print(f"[{P.name}] {nb.name} ...", flush=True)
        before = run_records(P.results)
        seconds = round(execute(nb, P, out_dir / nb.name, timeout), 1)
        trained = run_records(P.results) != before
        log = json.loads(times_path.read_text()) if times_path.is_file() else {"runs": []}
        known = any(nb.stem in r["times"] for r in log["runs"] if r.get("device") == device)
        print(f"[{P.name}] {nb.name} done in {seconds:.0f} s"
              + ("" if trained else " (nothing trained)"), flush=True)
        if trained or not known:
            entry["times"][nb.stem] = seconds
            log["runs"] = [r for r in log["runs"] if (r.get("started"), r.get("device"))
                           != (entry["started"], device)] + [entry]  # this job's, updated
            write_json(log, times_path)
    print(f"report: {refresh_report(P)}")
    if P.name != "smoke":  # README quotes the cpu and full profiles only
        print(f"readme: {refresh_readme()}")
    return entry["times"]

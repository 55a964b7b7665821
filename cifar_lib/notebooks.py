"""Execute the study notebooks in order with papermill, then refresh the report.

The committed notebooks in ``notebooks/`` are sources only: one cell tagged
``parameters`` (``profile = None``: the environment decides), no outputs.
Every profile writes its executed copies under its own folder
(:func:`executed_dir`): ``runs/cpu/notebooks/``, ``runs/full/notebooks/``,
``<scratch>/notebooks/`` for smoke; never over the sources.

One job at a time per profile: :func:`run_notebooks` holds the profile
root's lock (:func:`cifar_lib.lock.output_lock`), and a second job is told
which one is running. While a notebook runs, the main job prints each run
as it starts and ends (the kernel's "training ..." and "done ..." lines),
with the time spent in the notebook and, when this device has run it
before, about how long is left.

A notebook runs into a temporary file (``<out dir>/.running/<job>/<name>``,
one folder per job, so two jobs never share it) that
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
import os
import re
import secrets
import sys
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


def executed_dir(profile: Profile) -> Path:
    """Where ``profile`` writes its executed notebooks: ``<root>/notebooks/``,
    or ``runs/<name>/notebooks/`` for a profile whose root is the repository
    (full), so that the committed sources in ``notebooks/`` are never
    overwritten."""
    out = profile.root / "notebooks"
    if os.path.realpath(out) == os.path.realpath(NOTEBOOK_DIR):
        out = REPO / "runs" / profile.name / "notebooks"
    return out


def failed_dir(profile: Profile) -> Path:
    """Where the executed copies of failed notebooks are kept (git-ignored)."""
    return executed_dir(profile) / "failed"


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


def source_problems(nb) -> list[str]:
    """What keeps ``nb`` from being a clean committed source: not exactly one
    cell tagged ``parameters``, an injected parameters cell (papermill's
    "# Parameters"), outputs or execution counts, papermill's metadata."""
    problems = []
    params = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    if len(params) != 1:
        problems.append(f"{len(params)} cells tagged 'parameters' (need exactly one)")
    injected = [i for i, c in enumerate(nb.cells)
                if INJECTED_ID in c.metadata.get("tags", []) or c.get("id") == INJECTED_ID
                or c.source.lstrip().startswith("# Parameters")]
    if injected:
        problems.append(f"injected parameters cell(s) at {injected}")
    ran = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
           and (c.get("outputs") or c.get("execution_count") is not None)]
    if ran:
        problems.append(f"outputs or execution counts in cell(s) {ran}")
    if "papermill" in nb.metadata or any("papermill" in c.metadata for c in nb.cells):
        problems.append("papermill metadata")
    return problems


def strip_source(nb):
    """``nb`` as a committed source (see :func:`source_problems`): injected
    parameters cells removed, no outputs or execution counts, no papermill
    or execution metadata, no empty tag lists. Cell sources are untouched."""
    nb.cells = [c for c in nb.cells if INJECTED_ID not in c.metadata.get("tags", [])
                and c.get("id") != INJECTED_ID]
    for cell in nb.cells:
        for key in ("papermill", "execution"):
            cell.metadata.pop(key, None)
        if cell.metadata.get("tags") == []:
            del cell.metadata["tags"]
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("papermill", None)
    nb.metadata["language_info"] = {"name": nb.metadata.get("language_info", {})
                                    .get("name", "python")}
    return nb


def _remove_if_empty(*folders: Path) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty: another job's notebook is running there
            return


def _running_dir(out: Path) -> Path:
    """This call's own folder for its notebook in progress: ``<out
    dir>/.running/<pid>-<token>/`` (git ignores ``.running/``)."""
    return out.parent / ".running" / f"{os.getpid()}-{secrets.token_hex(4)}"


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
    _remove_if_empty(tmp.parent, tmp.parent.parent)
    cell, error = _failed_cell(nb)
    if hasattr(exc, "ename"):  # papermill's error names the cell and the exception
        cell, error = exc.exec_count, f"{exc.ename}: {exc.evalue}"
    elif error is None:
        error = f"{type(exc).__name__}: {exc}".rstrip(": ")
    record = {"notebook": nb_path.stem, "cell": cell, "error": error,
              "failed_copy": shown_path(kept, profile.root) if kept.is_file() else None,
              "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    path = profile.results / "notebook_times.json"
    log = _times_log(path)
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


# What a kernel process says on its own stderr (not a cell's output) that is
# noise for this job: the kernel's transport warning and the interrupt that
# the kernel's shutdown delivers after a notebook that succeeded.
KERNEL_NOISE = ("Kernel is running over TCP without encryption",
                "KeyboardInterrupt caught in kernel")


def _clock(seconds: float) -> str:
    m, s = divmod(int(max(seconds, 0)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """A file-like sink for one stream of the kernel (papermill's
    ``stdout_file`` / ``stderr_file``): shows the lines where a run starts or
    ends ("training ...", "done ...", "...: retraining, ...") with the time
    spent in the notebook and, given ``expected`` (its time on this device
    last time, s), about how long is left."""

    SHOWN = re.compile(r"^(training |done )|^\S+: retraining, ")

    def __init__(self, label: str, expected: float | None = None, t0: float | None = None):
        self.label, self.expected = label, expected
        self.t0 = time.perf_counter() if t0 is None else t0
        self._buf = ""

    def write(self, text: str) -> int:
        self._buf += text
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            self.line(line)
        return len(text)

    def flush(self) -> None:
        pass

    def line(self, line: str) -> None:
        line = line.strip()
        if not self.SHOWN.search(line):
            return
        spent = time.perf_counter() - self.t0
        left = (f", about {_clock(self.expected - spent)} left"
                if self.expected and self.expected > spent else "")
        print(f"[{self.label} {_clock(spent)}{left}] {line}", file=sys.stdout, flush=True)


def _kernel_manager(log):
    """A kernel manager whose kernel writes its own stdout and stderr to the
    file ``log`` (read back by :func:`_show_kernel_log`)."""
    from jupyter_client.manager import AsyncKernelManager

    class LoggedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            kw.setdefault("stdout", log)
            kw.setdefault("stderr", log)
            return await super().start_kernel(**kw)
    return LoggedKernelManager


def _show_kernel_log(path: Path) -> None:
    """Pass on what the kernel process said on its own, less the known noise."""
    try:
        text = path.read_text(errors="replace")
        path.unlink()
    except OSError:
        return
    for line in text.splitlines():
        if line.strip() and not any(n in line for n in KERNEL_NOISE):
            print(f"[kernel] {line}", file=sys.stderr, flush=True)


def _papermill(nb: Path, profile: Profile, out: Path, timeout,
               expected: float | None = None) -> None:
    import papermill as pm
    env = _kernel_env(profile)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    label = f"{profile.name} {Path(nb).stem}"
    log_path = out.parent / f"{out.stem}.kernel.log"
    try:
        with open(log_path, "w") as log:
            pm.execute_notebook(str(nb), str(out), parameters={"profile": profile.name},
                                cwd=str(NOTEBOOK_DIR), kernel_name="python3",
                                progress_bar=False, execution_timeout=timeout,
                                stdout_file=Progress(label, expected),
                                stderr_file=Progress(label, expected),
                                kernel_manager_class=_kernel_manager(log))
    finally:
        _show_kernel_log(log_path)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute(nb: Path, profile: Profile, out: Path, timeout: int | None = None,
            expected: float | None = None) -> float:
    """Run one notebook headless with ``profile`` into ``out``; return its
    wall time in s. ``out`` is replaced only on success (module doc).
    ``expected``: its wall time last time (s), for the estimate of the time
    left printed with each run."""
    import nbformat
    nb, out = Path(nb), Path(out)
    tmp = _running_dir(out) / out.name
    tmp.parent.mkdir(parents=True)
    t0 = time.perf_counter()
    try:
        _papermill(nb, profile, tmp, timeout, expected=expected)
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
    _remove_if_empty(tmp.parent, tmp.parent.parent)
    return seconds


def _times_log(path) -> dict:
    """The notebook-time log (a copy: it is updated and written back)."""
    import copy
    from cifar_lib import store
    log = store.read(path)
    return copy.deepcopy(log) if isinstance(log, dict) and "runs" in log else {"runs": []}


def run_records(results: Path) -> dict[str, str]:
    """sha1 of every run record (``results/<experiment>/*.json``) by path."""
    return {p.relative_to(results).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(results.glob("*/*.json")) if p.parent.name != "summaries"}


def run_notebooks(profile=None, only=None, timeout: int | None = None) -> dict:
    """Execute the notebooks in order and refresh the profile's report.

    Returns the times recorded by this call (notebook -> s): those of the
    notebooks that trained, or ran for the first time on this device.
    Holds the profile root's lock throughout: a second job for the same
    profile stops at once with :class:`cifar_lib.lock.FolderBusy`."""
    from cifar_lib.lock import output_lock
    from cifar_lib.plan import load_studies

    nbs = notebooks(only)
    P = get_profile(profile)
    with output_lock(P.root):  # one job per profile at a time
        load_studies()  # the report's tables and values
        return _run_locked(P, nbs, timeout)


def _last_time(log: dict, stem: str, device: str) -> float | None:
    """The latest recorded wall time of notebook ``stem`` on ``device``."""
    times = [r["times"][stem] for r in log.get("runs", [])
             if r.get("device") == device and stem in r.get("times", {})]
    return times[-1] if times else None


def _run_locked(P: Profile, nbs: list[Path], timeout) -> dict:
    from cifar_lib.experiments import environment, write_json
    from cifar_lib.report import refresh_readme, refresh_report

    out_dir = executed_dir(P)
    times_path = P.results / "notebook_times.json"
    device = environment()["device_name"]
    entry = {"started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
             "device": device, "times": {}}
    for nb in nbs:
        log = _times_log(times_path)
        last = _last_time(log, nb.stem, device)
        print(f"[{P.name}] {nb.name} ..." + (f" (took {_clock(last)} last time on this "
                                             f"device)" if last else ""), flush=True)
        before = run_records(P.results)
        seconds = round(execute(nb, P, out_dir / nb.name, timeout, expected=last), 1)
        trained = run_records(P.results) != before
        log = _times_log(times_path)
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

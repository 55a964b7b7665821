"""Two jobs at once on one output folder: the second is told which job
holds it (pid, since when) and stops before touching anything; a job that
dies frees the folder; the notebook kernels of a job share their job's lock;
two notebook executions never share a temporary folder. And what the main
job shows while a notebook runs."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

from cifar_lib import lock
from cifar_lib import notebooks as nbs
from cifar_lib.__main__ import main
from cifar_lib.lock import FolderBusy, output_lock
from cifar_lib.profiles import REPO, get_profile

# Takes the lock of argv[2] and holds it until its stdin closes. Loads
# cifar_lib.lock without the package's __init__ (no torch): a quick process.
HOLDER = """
import sys, types
pkg = types.ModuleType("cifar_lib")
pkg.__path__ = [sys.argv[1]]
sys.modules["cifar_lib"] = pkg
from cifar_lib.lock import output_lock, FolderBusy
try:
    with output_lock(sys.argv[2]):
        print("held", flush=True)
        sys.stdin.read()
except FolderBusy as e:
    print(f"busy: {e}", flush=True)
"""


def start_holder(folder: Path, env: dict | None = None) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(REPO / "cifar_lib"),
                             str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    return proc


@contextmanager
def held_by_another_job(folder: Path):
    proc = start_holder(folder)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            proc.wait(timeout=30)


def test_second_job_is_told_who_holds_the_folder(tmp_path):
    folder = tmp_path / "runs" / "cpu"
    with held_by_another_job(folder) as other:
        with pytest.raises(FolderBusy) as e:
            with output_lock(folder):
                pytest.fail("entered a folder another job holds")
        msg = str(e.value)
        assert msg.startswith(f"another job is using {folder} (pid {other.pid}) since ")
        assert re.search(r"since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d; wait for it or stop it", msg)
        assert e.value.holder["pid"] == other.pid
    with output_lock(folder):  # free again once the other job ended
        assert lock.holder(folder)["pid"] == os.getpid()
    assert lock.holder(folder) is None


def test_folder_inside_the_repository_is_named_relative_to_it():
    msg = lock.busy_message(REPO / "runs" / "cpu", {"pid": 42, "started": None})
    assert msg.startswith("another job is using runs/cpu (pid 42) since an unknown time")


def test_main_job_refuses_to_start_while_another_runs(monkeypatch, capsys):
    P = get_profile("smoke")
    monkeypatch.setattr(nbs, "execute", lambda *a, **k: pytest.fail("a notebook ran"))
    with held_by_another_job(P.root) as other:
        assert main(["notebooks", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert f"error: another job is using {P.root} (pid {other.pid}) since" in err
    assert "wait for it or stop it" in err


def test_a_job_killed_outright_frees_its_folder(tmp_path):
    proc = start_holder(tmp_path)
    assert proc.stdout.readline().strip() == "held"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with output_lock(tmp_path):  # no stale lock to clear by hand
        assert lock.holder(tmp_path)["pid"] == os.getpid()


def test_waiting_for_the_other_job(tmp_path):
    with held_by_another_job(tmp_path) as other:
        threading.Timer(0.5, other.stdin.close).start()
        t0 = time.perf_counter()
        with output_lock(tmp_path, wait=30):
            assert time.perf_counter() - t0 >= 0.3


def test_threads_of_one_process_are_two_jobs_and_nesting_is_one(tmp_path):
    results = []

    def other_thread():
        try:
            with output_lock(tmp_path):
                results.append("entered")
        except FolderBusy as e:
            results.append(str(e))

    with output_lock(tmp_path):
        with output_lock(tmp_path):  # nested in the same thread: re-entrant
            pass
        assert lock.holder(tmp_path)["pid"] == os.getpid()  # still held
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
    assert len(results) == 1 and results[0].startswith("another job is using")


def test_the_jobs_own_kernels_share_its_lock(tmp_path):
    """A child process (a notebook kernel) inherits the lock through the
    environment; a process that merely copies a stale or forged token does not."""
    with output_lock(tmp_path):
        assert lock.ENV in os.environ
        child = start_holder(tmp_path)  # inherits os.environ
        assert child.stdout.readline().strip() == "held"
        child.stdin.close()
        assert child.wait(timeout=30) == 0
        assert lock.holder(tmp_path)["pid"] == os.getpid(), "the child took it over"
        for env in ({k: v for k, v in os.environ.items() if k != lock.ENV},
                    {**os.environ, lock.ENV: '{"%s": "forged"}' % os.path.realpath(tmp_path)}):
            other = start_holder(tmp_path, env=env)
            out, _ = other.communicate(timeout=30)
            assert out.startswith("busy: another job is using"), out
    assert lock.ENV not in os.environ


# ---------------------------------------------------------------- execution


def fake_papermill(tmp_dirs: list, pause: float = 0.3):
    """Stands in for a kernel: writes the source as the executed copy, slowly."""
    def run(nb, profile, out, timeout, **kw):
        tmp_dirs.append(Path(out).parent)
        time.sleep(pause)
        nbformat.write(nbformat.read(str(nb), 4), str(out))
    return run


def test_two_executions_into_one_folder_at_once(tmp_path, monkeypatch):
    """Two jobs without the lock (e.g. two profiles' scratch folders set
    to one place): each notebook runs in a folder of its own."""
    from test_faults_notebooks import write_probe
    src = write_probe(tmp_path / "src" / "07_probe.ipynb")
    P = get_profile("smoke")
    tmp_dirs, errors = [], []
    monkeypatch.setattr(nbs, "_papermill", fake_papermill(tmp_dirs))
    out = nbs.executed_dir(P) / src.name

    def job():
        try:
            nbs.execute(src, P, out)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(set(tmp_dirs)) == 2 and all(d.parent.name == ".running" for d in tmp_dirs)
    assert nbformat.read(str(out), 4).cells[0].source == "profile = None"
    assert not (out.parent / ".running").exists()


def test_executed_copies_never_overwrite_the_sources():
    for name in ("smoke", "cpu", "full"):
        P = get_profile(name)
        out = nbs.executed_dir(P)
        assert os.path.realpath(out) != os.path.realpath(nbs.NOTEBOOK_DIR)
        assert nbs.failed_dir(P).parent == out
    assert nbs.executed_dir(get_profile("full")) == REPO / "runs" / "full" / "notebooks"
    assert nbs.executed_dir(get_profile("cpu")) == REPO / "runs" / "cpu" / "notebooks"


# ---------------------------------------------------------------- what the job shows


def test_progress_shows_each_run_with_the_time_left(capsys):
    show = nbs.Progress("cpu 01_architectures", expected=600.0, t0=time.perf_counter() - 90)
    show.write("some cell output\ntraining core/resnet18-s0-ab (resnet18, 4 e")
    show.write("pochs)\nepoch noise\n")
    show.write("done core/resnet18-s0-ab: ok, test acc 0.6100, 80 s\n")
    show.write("architectures/x: retraining, its weights are missing\n")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3, lines
    assert re.fullmatch(r"\[cpu 01_architectures 1:3\d, about 8:\d\d left\] training "
                        r"core/resnet18-s0-ab \(resnet18, 4 epochs\)", lines[0]), lines[0]
    assert lines[1].endswith("] done core/resnet18-s0-ab: ok, test acc 0.6100, 80 s")
    assert "retraining" in lines[2]
    # no estimate once past the last time, or without one
    nbs.Progress("cpu 02", expected=10.0, t0=time.perf_counter() - 60).write("done a/b: ok\n")
    nbs.Progress("cpu 02").write("training a/b (x, 1 epochs)\n")
    later = capsys.readouterr().out
    assert "left" not in later and later.count("\n") == 2


def test_kernel_noise_is_dropped_and_the_rest_passed_on(tmp_path, capsys):
    log = tmp_path / "k.kernel.log"
    log.write_text("[IPKernelApp] WARNING | Kernel is running over TCP without encryption. "
                   "All communication ...\n"
                   "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.\n"
                   "Segmentation fault in libfoo\n")
    nbs._show_kernel_log(log)
    err = capsys.readouterr().err
    assert err == "[kernel] Segmentation fault in libfoo\n"
    assert not log.exists()

"""Faults on the one atomic writer (cifar_lib.fsutil.atomic_write): two
writers of the same file at once (threads, processes, torch.save as the
engine's checkpoints do) and a full disk. A target is always one whole
write, the original error passes on, and no temp file stays behind."""
from __future__ import annotations

import errno
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from cifar_lib import fsutil
from cifar_lib.fsutil import atomic_write
from conftest import REPO


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def slow_writer(payload: dict, pause: threading.Event | None = None):
    """Writes ``payload`` as JSON in two halves (waiting in between), so that
    writers of the same target overlap."""
    text = json.dumps(payload)

    def write(tmp: Path) -> None:
        with open(tmp, "w") as f:
            f.write(text[: len(text) // 2])
            f.flush()
            if pause is not None:
                pause.wait(0.01)
            f.write(text[len(text) // 2:])
    return write


def test_temp_names_are_unique_and_beside_the_target(tmp_path):
    target = tmp_path / "run.last.pt"
    names = {fsutil.temp_name(target) for _ in range(100)}
    assert len(names) == 100
    for name in names:
        assert name.parent == tmp_path and name.name.endswith(".tmp")
        assert name.name.startswith(".run.last.pt.")
        assert not name.match("*.pt") and not name.match("*.json")


def test_two_threads_writing_the_same_target(tmp_path):
    target = tmp_path / "rec.json"
    errors, pause = [], threading.Event()

    def writer(k: int) -> None:
        try:
            for i in range(40):
                atomic_write(target, slow_writer({"writer": k, "i": i, "pad": "x" * 5000},
                                                 pause))
        except BaseException as e:  # noqa: BLE001 - any error fails the test
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):  # a reader never sees half a write
        if target.exists():
            assert len(json.loads(target.read_text())["pad"]) == 5000
    for t in threads:
        t.join()
    assert not errors, errors
    assert json.loads(target.read_text())["i"] == 39
    assert leftovers(tmp_path) == []


def test_two_torch_saves_of_the_same_checkpoint_at_once(tmp_path):
    """The crash of two runs of one config at once: both save the resume
    state ``.last.pt`` through the atomic writer."""
    target = tmp_path / "run.last.pt"
    errors = []

    def saver(k: int) -> None:
        try:
            for i in range(10):
                state = {"k": k, "i": i, "w": torch.full((256, 256), float(k))}
                atomic_write(target, lambda tmp: torch.save(state, tmp))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=saver, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    state = torch.load(target, weights_only=True)
    assert state["i"] == 9 and bool((state["w"] == state["k"]).all())
    assert leftovers(tmp_path) == []


# Loads fsutil.py on its own (no torch, no package import): a quick process.
WRITER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("fsutil", sys.argv[1])
fsutil = importlib.util.module_from_spec(spec); spec.loader.exec_module(fsutil)
k, target = sys.argv[2], sys.argv[3]
for i in range(150):
    text = json.dumps({"writer": k, "i": i, "pad": "y" * 20000})
    fsutil.atomic_write(target, lambda tmp: tmp.write_text(text))
"""


def test_two_processes_writing_the_same_target(tmp_path):
    target = tmp_path / "rec.json"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER,
                               str(REPO / "cifar_lib" / "fsutil.py"), str(k), str(target)],
                              stderr=subprocess.PIPE, text=True) for k in range(2)]
    reads = 0
    while any(p.poll() is None for p in procs):
        if target.exists():
            json.loads(target.read_text())  # always one whole write
            reads += 1
    errs = [p.stderr.read() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert json.loads(target.read_text())["i"] == 149
    assert leftovers(tmp_path) == []


def full_disk(after: bytes = b"partial"):
    """A writer that gets half its bytes out, then finds the disk full."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(after)
            raise OSError(errno.ENOSPC, "No space left on device")
    return write


def test_full_disk_keeps_the_old_target_and_raises_the_original_error(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("the old report")
    with pytest.raises(OSError) as e:
        atomic_write(target, full_disk())
    assert e.value.errno == errno.ENOSPC
    assert target.read_text() == "the old report"
    assert leftovers(tmp_path) == []
    # a new target on a full disk: none appears at all
    with pytest.raises(OSError, match="No space left"):
        atomic_write(tmp_path / "new.json", full_disk())
    assert not (tmp_path / "new.json").exists() and leftovers(tmp_path) == []


def test_a_failing_clean_up_never_masks_the_original_error(tmp_path, monkeypatch):
    target = tmp_path / "fig.png"
    target.write_bytes(b"old")

    def unlink(self, missing_ok=False):
        raise PermissionError(errno.EACCES, "clean-up refused")
    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(OSError) as e:
        atomic_write(target, full_disk())
    assert e.value.errno == errno.ENOSPC and "No space left" in str(e.value)
    assert target.read_bytes() == b"old"


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_or_failing_writer_leaves_nothing(tmp_path, error):
    target = tmp_path / "w.pt"
    target.write_bytes(b"old weights")

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise error("stop")
    with pytest.raises(error):
        atomic_write(target, write)
    assert target.read_bytes() == b"old weights" and leftovers(tmp_path) == []

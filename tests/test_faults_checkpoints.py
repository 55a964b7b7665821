"""Faults on checkpoints: a full disk (or read-only folder) while fit writes
the kept weights or the resume state, and damaged or foreign .pt files.

A failed weights write is an OSError that names the target, says the disk
is full or not writable, and where the trained weights were kept instead
(a file in the temp folder that loads with weights_only=True); nothing
half-written stays at the target. A failed resume-state write only warns.
A damaged checkpoint's error never suggests loading it unsafely."""
from __future__ import annotations

import errno
import pickle
import re
import shutil
import tempfile
import warnings
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from cifar_lib.engine import (CheckpointError, fit, load_checkpoint, make_loaders,
                              read_checkpoint, save_checkpoint, unsaved_path)
from cifar_lib.models import create_model
from conftest import TINY_MODEL, tiny_config

# What torch's zip writer raises when the disk fills up under it.
ZIP_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 123 vs 456"


@pytest.fixture(autouse=True)
def own_tempdir(tmp_path, monkeypatch):
    """tempfile.gettempdir() (where unsaved weights are kept) in the test's folder."""
    folder = tmp_path / "systmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def failing_save(monkeypatch, error, fails=lambda path: True):
    """torch.save that writes part of the file, then raises ``error``, for
    the paths ``fails`` picks (the others are written as usual)."""
    real = torch.save

    def save(obj, f, *a, **kw):
        if isinstance(f, (str, Path)) and fails(Path(f)):
            Path(f).write_bytes(b"PK\x03\x04" + b"\0" * 64)  # the start of a zip
            raise error
        return real(obj, f, *a, **kw)
    monkeypatch.setattr(torch, "save", save)


def in_folder(folder: Path):
    return lambda path: path.parent == folder


def tiny_model():
    torch.manual_seed(0)
    return create_model(TINY_MODEL["model"], **TINY_MODEL["model_kw"])


def train(split, tmp_path, epochs=1, **kw):
    cfg = tiny_config(epochs=epochs)
    ckpt = tmp_path / "weights" / "exp" / "cnn3-s0-abc.pt"
    return fit(tiny_model(), make_loaders(split, cfg, "cpu"), cfg, ckpt_path=ckpt,
               **kw), ckpt


def no_leftovers(folder: Path) -> None:
    assert [p.name for p in folder.iterdir()] == [], list(folder.iterdir())


@pytest.mark.parametrize("error, code, says", [
    (RuntimeError(ZIP_FULL), errno.EIO, "the disk is full or not writable"),
    (OSError(errno.ENOSPC, "No space left on device"), errno.ENOSPC, "the disk is full"),
    (PermissionError(errno.EACCES, "Permission denied"), errno.EACCES, "not writable"),
])
def test_a_failed_weights_write_keeps_the_run(small_split, tmp_path, monkeypatch,
                                              own_tempdir, error, code, says):
    folder = tmp_path / "weights" / "exp"
    failing_save(monkeypatch, error, in_folder(folder))
    with pytest.raises(OSError) as e:
        train(small_split, tmp_path)
    ckpt, keep = folder / "cnn3-s0-abc.pt", unsaved_path(folder / "cnn3-s0-abc.pt")
    msg = str(e.value)
    assert e.value.errno == code
    assert f"could not write the checkpoint {ckpt}" in msg and says in msg
    assert f"the trained weights are kept in {keep}" in msg
    assert keep.parent == own_tempdir and keep.name == "cifar_lib-unsaved-cnn3-s0-abc.pt"
    assert "inline_container" not in msg.split(";")[0] or code == errno.EIO
    assert e.value.__cause__ is error  # the original error is chained, not masked
    no_leftovers(folder)  # nothing half-written at the target, no temp file
    saved = torch.load(keep, map_location="cpu", weights_only=True)
    assert saved["model_name"] == "cnn3" and saved["epoch"] == 1
    assert saved["result"]["status"] == "ok" and len(saved["result"]["history"]) == 1
    assert saved["result"]["metrics"]["test_acc"] is not None
    model = load_checkpoint(keep)  # the library loads it as any checkpoint
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved["model"].items())


def test_zip_writer_failure_on_a_full_disk_is_enospc(small_split, tmp_path, monkeypatch):
    folder = tmp_path / "weights" / "exp"
    failing_save(monkeypatch, RuntimeError(ZIP_FULL), in_folder(folder))
    Usage = namedtuple("Usage", "total used free")
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(4 << 20, 4 << 20, 0)
                        if Path(p) == folder else real(p))
    with pytest.raises(OSError) as e:
        train(small_split, tmp_path)
    assert e.value.errno == errno.ENOSPC
    assert re.search(r"the disk is full \(the checkpoint needs about [\d.]+ MB; the disk "
                     r"holds 4.0 MB\)", str(e.value))
    assert "unexpected pos" not in str(e.value)  # torch's text only in the chained cause
    assert isinstance(e.value.__cause__, RuntimeError)


def test_when_the_fallback_fails_too_it_says_so(small_split, tmp_path, monkeypatch,
                                                 own_tempdir):
    error = OSError(errno.ENOSPC, "No space left on device")
    failing_save(monkeypatch, error)  # every folder is full
    with pytest.raises(OSError) as e:
        train(small_split, tmp_path)
    msg = str(e.value)
    assert e.value.errno == errno.ENOSPC and e.value.__cause__ is error
    assert "could not be kept in" in msg and "either" in msg and "lost" in msg
    no_leftovers(tmp_path / "weights" / "exp")
    no_leftovers(own_tempdir)


def test_a_failed_resume_state_write_warns_once_and_trains_on(small_split, tmp_path,
                                                              monkeypatch):
    failing_save(monkeypatch, RuntimeError(ZIP_FULL), lambda p: ".last.pt" in p.name)
    with pytest.warns(RuntimeWarning) as caught:
        out, ckpt = train(small_split, tmp_path, epochs=3, save_every=0)
    said = [str(w.message) for w in caught if "resume state" in str(w.message)]
    assert len(said) == 1, said  # two failed writes, one warning
    assert "training goes on" in said[0] and ".last.pt" in said[0]
    assert out["status"] == "ok" and out["metrics"]["epochs_run"] == 3
    assert read_checkpoint(ckpt)["epoch"] in (1, 2, 3)  # the kept weights are written
    assert sorted(p.name for p in ckpt.parent.iterdir()) == [ckpt.name]


def test_save_checkpoint_on_a_full_disk(tmp_path, monkeypatch):
    failing_save(monkeypatch, RuntimeError(ZIP_FULL))
    path = tmp_path / "m.pt"
    with pytest.raises(OSError, match=f"could not write the checkpoint {path}: the disk "
                                      "is full or not writable"):
        save_checkpoint(path, tiny_model())
    assert list(tmp_path.iterdir()) == [tmp_path / "systmp"]


# ---------------------------------------------------------- damaged checkpoints


class Thing:
    """An arbitrary object: never in a checkpoint of the library."""


def unsafe_advice(msg: str) -> bool:
    low = msg.lower()
    return "weights_only" in low or "trust" in low or "safe_globals" in low


def check_damaged(path: Path) -> str:
    for load in (read_checkpoint, load_checkpoint):
        with pytest.raises(CheckpointError) as e:
            load(path)
        msg = str(e.value)
        assert f"checkpoint {path} is unreadable: it is damaged or not a checkpoint " \
               "of cifar_lib" in msg
        assert "delete it and train the run again (force=True" in msg
        assert not unsafe_advice(msg), msg
        assert e.value.__cause__ is None and e.value.__suppress_context__
    return msg


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "run.pt"
    save_checkpoint(path, tiny_model(), tiny_config())
    path.write_bytes(path.read_bytes()[:300])
    assert "truncated or is not a torch checkpoint" in check_damaged(path)


@pytest.mark.parametrize("write", [
    lambda p: torch.save({"model": {}, "thing": Thing()}, p),  # torch's zip format
    lambda p: p.write_bytes(pickle.dumps(Thing())),           # a bare pickle
    lambda p: p.write_text("not a checkpoint"),
    lambda p: p.write_bytes(b""),
], ids=["torch-save", "pickle", "text", "empty"])
def test_a_file_that_is_no_checkpoint(tmp_path, write):
    path = tmp_path / "run.pt"
    write(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note on the pickle protocol
        msg = check_damaged(path)
    if "Thing" in msg:
        assert "Thing) that no checkpoint of cifar_lib holds" in msg


def test_a_damaged_resume_state_says_what_to_do(small_split, tmp_path):
    ckpt = tmp_path / "weights" / "exp" / "cnn3-s0-abc.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.with_suffix(".last.pt").write_bytes(b"PK\x03\x04 half a zip")
    with pytest.raises(CheckpointError, match="resume=False") as e:
        train(small_split, tmp_path)
    assert not unsafe_advice(str(e.value))

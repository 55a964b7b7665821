"""Fault injection on runs: interrupted rebuilds, damaged or missing weights
and records. After each fault the next call resumes or retrains, says so,
and ends with a record whose weights match it; nothing half-written stays."""
from __future__ import annotations

import json

import pytest

from cifar_lib import experiments as E
from cifar_lib.engine import read_checkpoint
from cifar_lib.profiles import get_profile
from conftest import tiny_config


@pytest.fixture
def smoke():
    return get_profile("smoke")


def _stop_at(n):
    def cb(epoch, **_):
        if epoch == n:
            raise KeyboardInterrupt
    return cb


def _no_leftovers(P):
    assert not list(P.root.rglob("*.tmp"))


def test_interrupted_rebuild_is_never_used_as_finished(smoke, small_split):
    cfg = tiny_config(epochs=3)
    rec = E.run(cfg, small_split, "exp", smoke)
    ck = smoke.root / rec["weights"]
    assert rec["weights_sha256"] == E._sha256(ck)
    ck.unlink()  # a fresh clone: the record is there, the weights are not
    # a rebuild for the weights is interrupted after its first epoch
    with pytest.raises(KeyboardInterrupt):
        E.run(cfg, small_split, "exp", smoke, need_weights=True,
              callbacks=(_stop_at(1),), save_every=0)
    assert not ck.exists() and ck.with_suffix(".last.pt").is_file()
    _no_leftovers(smoke)
    # the record does not vouch for anything on disk: loading says why
    with pytest.raises(FileNotFoundError, match="not on this machine"):
        E.load_model(rec, smoke)
    msgs = []
    again = E.run(cfg, small_split, "exp", smoke, need_weights=True, log=msgs.append)
    assert any("retraining" in m for m in msgs) and any("resuming" in m for m in msgs)
    assert not ck.with_suffix(".last.pt").exists()
    assert again["weights_sha256"] == E._sha256(ck)  # the record matches its weights
    assert E.weights_problem(again, smoke) is None
    assert again["metrics"]["epochs_run"] == 3
    E.load_model(again, smoke)


def test_weights_that_do_not_match_their_record_are_retrained(smoke, small_split):
    cfg = tiny_config(epochs=1)
    rec = E.run(cfg, small_split, "exp", smoke)
    ck = smoke.root / rec["weights"]
    other = E.run(cfg.replace(seed=5), small_split, "exp", smoke)
    ck.write_bytes((smoke.root / other["weights"]).read_bytes())  # stale weights
    assert "does not match" in E.weights_problem(rec, smoke)
    msgs = []
    again = E.run(cfg, small_split, "exp", smoke, need_weights=True, log=msgs.append)
    assert any("sha256" in m for m in msgs)
    assert E.weights_problem(again, smoke) is None


def test_truncated_checkpoint_is_retrained(smoke, small_split):
    cfg = tiny_config(epochs=1)
    rec = E.run(cfg, small_split, "exp", smoke)
    ck = smoke.root / rec["weights"]
    ck.write_bytes(ck.read_bytes()[:100])
    with pytest.raises(FileNotFoundError, match="does not match"):
        E.load_model(rec, smoke)
    model = E.trained_model(cfg, small_split, "exp", smoke)
    assert model is not None and read_checkpoint(ck)["epoch"] >= 1


def test_deleted_resume_state_trains_from_scratch(smoke, small_split):
    cfg = tiny_config(epochs=3)
    with pytest.raises(KeyboardInterrupt):
        E.run(cfg, small_split, "exp", smoke, callbacks=(_stop_at(1),), save_every=0)
    last = next(smoke.weights.rglob("*.last.pt"))
    last.unlink()
    ran = []
    rec = E.run(cfg, small_split, "exp", smoke,
                callbacks=(lambda epoch, **_: ran.append(epoch),))
    assert ran == [0, 1, 2] and rec["status"] == "ok"


def test_damaged_record_is_trained_again(smoke, small_split):
    cfg = tiny_config(epochs=1)
    rec = E.run(cfg, small_split, "exp", smoke)
    path = smoke.results / "exp" / f"{rec['run']}.json"
    path.write_text(path.read_text()[:50])  # a half-written record
    again = E.run(cfg, small_split, "exp", smoke)
    assert json.loads(path.read_text())["run"] == again["run"]
    assert E.weights_problem(again, smoke) is None


def test_record_whose_weights_are_missing(smoke, small_split):
    cfg = tiny_config(epochs=1)
    rec = E.run(cfg, small_split, "exp", smoke)
    (smoke.root / rec["weights"]).unlink()
    # tables need no weights: the record is used as it is
    assert E.run(cfg, small_split, "exp", smoke, log=lambda m: None)["run"] == rec["run"]
    with pytest.raises(FileNotFoundError, match="retrain"):
        E.load_model(rec, smoke)
    model = E.trained_model(cfg, small_split, "exp", smoke)
    assert sum(p.numel() for p in model.parameters()) > 0


def test_no_train_mode_refuses_to_train(smoke, small_split, monkeypatch):
    cfg = tiny_config(epochs=1)
    rec = E.run(cfg, small_split, "exp", smoke)
    monkeypatch.setenv("CIFAR_LIB_NO_TRAIN", "1")
    assert E.run(cfg, small_split, "exp", smoke)["run"] == rec["run"]  # on disk: fine
    with pytest.raises(RuntimeError, match="training is off"):
        E.run(cfg.replace(seed=9), small_split, "exp", smoke)

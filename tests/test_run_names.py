"""Committed runs keep their names: a refactor must not change the hash of
a run whose recipe is unchanged (issue 13), or every result would retrain."""
import json
from types import SimpleNamespace

import pytest

from cifar_lib import store
from cifar_lib.engine import TrainConfig
from cifar_lib.experiments import run_name
from cifar_lib.profiles import REPO

ROOTS = [REPO / "results", REPO / "runs" / "cpu" / "results"]


def committed_records() -> list:
    out = []
    for root in ROOTS:
        for path in sorted(root.rglob("*.json")):
            try:
                rec = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(rec, dict) and "config" in rec and "run" in rec:
                out.append((path, rec))
    return out


def test_committed_records_resolve_to_their_names():
    """Every record whose config loads as it was written (today's fields)
    resolves to its run name; records of older code (a field added since,
    e.g. ``norm_bias_decay``, or one that no longer validates) are counted
    and must stay a minority."""
    recs = committed_records()
    if not recs:
        pytest.skip("no run records committed here")
    older, wrong = [], []
    for path, rec in recs:
        try:
            cfg = TrainConfig.from_dict(rec["config"])
        except (ValueError, TypeError):  # no longer validates
            older.append(path)
            continue
        if cfg.to_dict() != rec["config"]:  # written before a field was added
            older.append(path)
            continue
        if run_name(cfg, rec["data"], rec.get("tag")) != rec["run"]:
            wrong.append(path.relative_to(REPO).as_posix())
    assert not wrong, f"{len(wrong)} records no longer resolve to their run: {wrong[:5]}"
    assert len(older) < len(recs) / 2, f"{len(older)} of {len(recs)} records are older"


def test_run_name_hashes_the_stored_config():
    """The hash itself is unchanged: every record, old ones included, is
    named by its stored config, data and tag."""
    for path, rec in committed_records():
        cfg = SimpleNamespace(to_dict=lambda c=rec["config"]: c,
                              model=rec["config"]["model"], seed=rec["config"]["seed"])
        assert run_name(cfg, rec["data"], rec.get("tag")) == rec["run"], path
        assert store.run_key(rec["config"], rec["data"], rec.get("tag")) == rec["run"], path


def test_file_names_are_run_names():
    for path, rec in committed_records():
        assert path.stem == rec["run"], path
        assert path == store.run_path(path.parents[1], rec["experiment"], rec["run"]), path


def test_the_store_reads_every_committed_record():
    """None is damaged (a record the store would leave out of every table)."""
    for root in ROOTS:
        want = sorted(str(p) for p, _ in committed_records() if root in p.parents)
        got = sorted(str(store.run_path(root, r["experiment"], r["run"]))
                     for r in store.runs(root))
        assert got == want, root
        assert store.damaged(root) == {}, root

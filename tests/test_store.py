"""The store (cifar_lib/store.py): keys, the tolerant reader, the atomic
writer that moves a damaged file aside, measurements, the writability
check, a failed record write after training, and the migration of the
earlier measurement layouts."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path

import pytest

from cifar_lib import experiments as E
from cifar_lib import migrate as M
from cifar_lib import store
from cifar_lib.profiles import REPO, get_profile
from conftest import tiny_config

CONFIG = {"model": "cnn3", "seed": 0, "lr": 0.1, "model_kw": {"filters": [8, 16]}}
DATA = {"source": "synthetic", "train": 10, "val": 2, "test": 2, "split_seed": 0}


@pytest.fixture
def P(tmp_path):
    """The smoke profile rooted in this test's temp folder."""
    return get_profile("smoke").with_(root=tmp_path / "smoke")


def no_training(*a, **kw):
    raise AssertionError("fit was called")


def run_record(cfg=None, data=DATA, tag=None, experiment="exp", **over) -> dict:
    """A run record as experiments.run writes one (no history)."""
    cfg = cfg or CONFIG
    rec = {"experiment": experiment, "run": store.run_key(cfg, data, tag), "label": "x",
           "status": "ok", "config": cfg, "data": data,
           "created": "2025-01-01T00:00:00+00:00",
           "metrics": {"test_acc": 0.5, "best_val_acc": 0.6, "epochs_run": 1}}
    if tag is not None:
        rec["tag"] = tag
    rec.update(over)
    return rec


# ---------------------------------------------------------------- keys


def test_run_key_is_stable():
    """The hash of committed runs: a changed one would retrain every result."""
    assert store.run_key(CONFIG, DATA) == "cnn3-s0-63b37c0dc6"
    assert store.run_key(CONFIG, DATA, {"probe": 1}) == "cnn3-s0-0462a47a19"
    # the hash: sha1 of the sorted JSON of config, data (and tag), 10 hex digits
    ident = json.dumps({"config": CONFIG, "data": DATA}, sort_keys=True).encode()
    assert store.run_key(CONFIG, DATA) == f"cnn3-s0-{hashlib.sha1(ident).hexdigest()[:10]}"
    # key order does not matter, an empty tag is no tag, anything else changes it
    shuffled = dict(reversed(list(CONFIG.items())))
    assert store.run_key(shuffled, dict(reversed(list(DATA.items())))) == \
        store.run_key(CONFIG, DATA)
    assert store.run_key(CONFIG, DATA, {}) == store.run_key(CONFIG, DATA, None)
    assert store.run_key({**CONFIG, "lr": 0.2}, DATA) != store.run_key(CONFIG, DATA)
    assert store.run_key(CONFIG, {**DATA, "train": 11}) != store.run_key(CONFIG, DATA)
    assert store.run_key({**CONFIG, "seed": 3}, DATA).startswith("cnn3-s3-")
    # experiments.run_name is the same key of a TrainConfig
    cfg = tiny_config(seed=2)
    assert E.run_name(cfg, DATA, {"a": 1}) == store.run_key(cfg.to_dict(), DATA, {"a": 1})


def test_same_run_matches_config_tag_and_the_data_given():
    rec = run_record(tag={"probe": 1})
    assert store.same_run(rec, CONFIG, {"probe": 1}, DATA)
    assert store.same_run(rec, CONFIG, {"probe": 1}, None)             # any data
    assert store.same_run(rec, CONFIG, {"probe": 1}, {"train": 10})    # these sizes
    assert not store.same_run(rec, CONFIG, {"probe": 1}, {"train": 11})
    assert not store.same_run(rec, CONFIG, None, DATA)
    assert not store.same_run(rec, {**CONFIG, "lr": 1.0}, {"probe": 1}, DATA)


# ---------------------------------------------------------------- reading


def test_damaged_json_is_named_listed_and_left_out(P, capsys):
    good = run_record()
    store.write(good, store.run_path(P.results, "exp", good["run"]))
    bad = P.results / "exp" / "broken.json"
    bad.write_text('{"config": ')
    assert store.read(bad) is None
    err = capsys.readouterr().err
    assert str(bad) in err and "cannot read" in err and "JSONDecodeError" in err
    assert list(store.damaged(P.results)) == [str(bad)]
    assert store.damaged(P.results / "other") == {}
    assert [r["run"] for r in store.runs(P.results)] == [good["run"]]
    assert [r["run"] for r in store.runs(P.results, "exp")] == [good["run"]]
    # named once, not at every read
    assert store.read(bad) is None and capsys.readouterr().err == ""
    # mended: read again, and no longer listed
    bad.write_text(json.dumps({"note": "fine now"}))
    assert store.read(bad) == {"note": "fine now"} and store.damaged(P.results) == {}
    assert store.read(P.results / "exp" / "missing.json") is None  # absent: no warning
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("metric,value", [("test_acc", "high"), ("best_val_acc", True),
                                          ("wall_time", [1.0])])
def test_a_record_whose_metric_is_not_a_number_is_damaged(P, capsys, metric, value):
    rec = run_record()
    rec["metrics"][metric] = value
    path = store.run_path(P.results, "exp", rec["run"])
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(rec))   # as a hand edit would leave it
    assert store.read(path) is None
    err = capsys.readouterr().err
    assert str(path) in err and f"{metric!r} is {value!r}, not a number" in err
    assert str(path) in store.damaged(P.results)
    assert store.runs(P.results) == []
    assert store.find_run(P.results, CONFIG, None, DATA, "exp") is None
    # the tables see no such record, rather than crashing on it
    exp = E.Experiment("exp", "00_x", "0", "core",
                       lambda prof: [E.Run("x", E.TrainConfig.from_dict(CONFIG))])
    assert E.records(exp, P) == []


def test_numbers_and_nulls_are_fine_metrics(P):
    rec = run_record(metrics={"test_acc": None, "best_val_acc": 1, "params": 12})
    path = store.write(rec, store.run_path(P.results, "exp", rec["run"]))
    assert store.read(path) == rec and store.damaged(P.results) == {}
    # not a run record (a summary): the metric check does not apply
    other = store.write({"metrics": {"test_acc": "high"}}, P.results / "summaries" / "s.json")
    assert store.read(other) == {"metrics": {"test_acc": "high"}}


def test_read_caches_until_the_file_changes(P):
    path = store.write({"a": 1}, P.results / "x.json")
    first = store.read(path)
    assert store.read(path) is first          # not parsed again
    store.write({"a": 22}, path)
    assert store.read(path) == {"a": 22}


def test_runs_are_oldest_first_and_find_run_takes_the_newest(P):
    old = run_record(experiment="a", created="2025-01-01T00:00:00+00:00")
    new = run_record(experiment="b", created="2025-02-01T00:00:00+00:00", label="new")
    other = run_record(cfg={**CONFIG, "seed": 1}, experiment="a",
                       created="2024-01-01T00:00:00+00:00")
    for rec in (new, old, other):
        store.write(rec, store.run_path(P.results, rec["experiment"], rec["run"]))
    (P.results / "a" / "measurements").mkdir()
    store.save_measurement(P.results, "a", store.measurement_key("m", 1, []), {"x": 1})
    got = store.runs(P.results)
    assert [(r["experiment"], r["config"]["seed"]) for r in got] == [("a", 1), ("a", 0),
                                                                     ("b", 0)]
    assert len(store.runs(P.results, "a")) == 2   # measurements are not runs
    # full data: the experiment's own folder first, else any folder
    path, rec = store.find_run(P.results, CONFIG, None, DATA, "a")
    assert path == store.run_path(P.results, "a", old["run"]) and rec == old
    path, rec = store.find_run(P.results, CONFIG, None, DATA, "c")
    assert rec["experiment"] in ("a", "b")
    # sizes only: the newest of any folder
    path, rec = store.find_run(P.results, CONFIG, None, {"train": 10}, None)
    assert rec == new and path == store.run_path(P.results, "b", new["run"])
    assert store.find_run(P.results, CONFIG, {"t": 1}, DATA, "a") is None


# ---------------------------------------------------------------- writing


def test_write_moves_a_damaged_file_aside(P, capsys):
    path = P.results / "exp" / "r.json"
    path.parent.mkdir(parents=True)
    path.write_text("{ half a record")
    assert store.read(path) is None
    capsys.readouterr()
    store.write({"fresh": True}, path)
    aside = path.with_name("r.json.damaged")
    assert aside.read_text() == "{ half a record"        # kept, not overwritten
    assert store.read(path) == {"fresh": True} and store.damaged(P.results) == {}
    assert "moved the damaged" in capsys.readouterr().err
    # a healthy file is simply replaced (nothing more is moved aside)
    store.write({"fresh": 2}, path)
    assert store.read(path) == {"fresh": 2} and aside.read_text() == "{ half a record"
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json", "r.json.damaged"]


def test_write_is_atomic_and_json_safe(P, monkeypatch):
    path = store.write({"a": float("nan"), "b": (1, float("inf"))}, P.results / "w.json")
    assert json.loads(path.read_text()) == {"a": None, "b": [1, None]}

    def full(self, *a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError, match="No space"):
        store.write({"a": 2}, path)
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"a": None, "b": [1, None]}  # untouched
    assert [p.name for p in path.parent.iterdir()] == ["w.json"]        # no temp file


# ---------------------------------------------------------------- measurements


def test_measurement_round_trip_and_stale_keys(P):
    runs = {"SLBI": ["r1"], "SGD": ["r2"]}
    key = store.measurement_key("pruning", 1, runs, {"fractions": [0.5]})
    assert key == {"measurement": "pruning", "version": 1, "runs": runs,
                   "settings": {"fractions": [0.5]}}
    assert store.load_measurement(P.results, "dessilbi", key) is None
    data = {"seeds": [{"acc": 0.5, "curve": [1.0, float("nan")]}]}
    path = store.save_measurement(P.results, "dessilbi", key, data)
    assert path == store.measurement_path(P.results, "dessilbi", key)
    assert path.parent == P.results / "dessilbi" / "measurements"
    assert path.name.startswith("pruning-") and len(path.stem) == len("pruning-") + 10
    assert store.load_measurement(P.results, "dessilbi", key) == \
        {"seeds": [{"acc": 0.5, "curve": [1.0, None]}]}
    # same key, rebuilt: found; anything changed: not found
    assert store.load_measurement(P.results, "dessilbi", store.measurement_key(
        "pruning", 1, {"SLBI": ["r1"], "SGD": ["r2"]}, {"fractions": [0.5]})) is not None
    for other in (store.measurement_key("pruning", 1, {"SLBI": ["r1"], "SGD": ["r3"]},
                                        {"fractions": [0.5]}),
                  store.measurement_key("pruning", 1, {"SLBI": ["r1"]}, {"fractions": [0.5]}),
                  store.measurement_key("pruning", 2, runs, {"fractions": [0.5]}),
                  store.measurement_key("pruning", 1, runs, {"fractions": [0.25]}),
                  store.measurement_key("pruning", 1, runs),
                  store.measurement_key("surface", 1, runs, {"fractions": [0.5]})):
        assert store.measurement_path(P.results, "dessilbi", other) != path
        assert store.load_measurement(P.results, "dessilbi", other) is None
    assert store.load_measurement(P.results, "batchnorm", key) is None  # another experiment
    # a file at the path whose stored key differs is not the measurement
    store.write({"key": {**key, "version": 0}, "data": data}, path)
    assert store.load_measurement(P.results, "dessilbi", key) is None


# ---------------------------------------------------------------- cannot write


def test_check_writable_gives_a_clear_error(P, monkeypatch):
    folder = P.results / "exp"
    store.check_writable(folder)
    assert folder.is_dir() and list(folder.iterdir()) == []   # the probe is gone
    real = Path.write_text

    def refuse(self, *a, **kw):
        if self.name.startswith(".write-test"):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *a, **kw)
    monkeypatch.setattr(Path, "write_text", refuse)
    with pytest.raises(PermissionError, match=rf"cannot write results to {folder} "
                                              r"\(Permission denied\); make it writable"):
        store.check_writable(folder)


def test_check_writable_on_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):   # root writes anyway
            pytest.skip("running as root: a read-only folder is writable here")
        with pytest.raises(PermissionError, match=f"cannot write results to {folder}"):
            store.check_writable(folder)
    finally:
        folder.chmod(0o755)


def test_run_checks_the_folders_before_training(P, small_split, monkeypatch):
    real = Path.write_text

    def refuse(self, *a, **kw):
        if self.name.startswith(".write-test") and "weights" in self.parts:
            raise PermissionError(errno.EROFS, "Read-only file system", str(self))
        return real(self, *a, **kw)
    monkeypatch.setattr(Path, "write_text", refuse)
    monkeypatch.setattr(E, "fit", no_training)
    with pytest.raises(PermissionError, match=f"cannot write results to {P.weights / 'exp'}"):
        E.run(tiny_config(), small_split, "exp", P)


def test_a_record_that_cannot_be_written_is_kept_and_named(P, small_split, monkeypatch,
                                                           tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    real = store.write

    def disk_full(obj, path):
        if Path(path).is_relative_to(P.results):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, path)
    monkeypatch.setattr(store, "write", disk_full)
    cfg = tiny_config()
    name = E.run_name(cfg, small_split.describe())
    with pytest.raises(OSError) as info:
        E.run(cfg, small_split, "exp", P, label="tiny")
    e = info.value
    keep = tmp_path / "tmp" / f"cifar_lib-unsaved-{name}.json"
    assert e.errno == errno.ENOSPC
    msg = str(e)
    assert f"run {name} trained" in msg and "No space left on device" in msg
    assert f"the record is kept in {keep}" in msg
    assert str(store.run_path(P.results, "exp", name)) in msg
    assert str(P.weights / "exp" / f"{name}.pt") in msg
    kept = json.loads(keep.read_text())
    assert kept["run"] == name and kept["label"] == "tiny" and kept["config"] == cfg.to_dict()
    assert 0 <= kept["metrics"]["test_acc"] <= 1
    assert not store.run_path(P.results, "exp", name).exists()
    # nowhere to keep it either: said so
    monkeypatch.setattr(store, "write", lambda obj, path: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OSError, match="the record could not be kept either"):
        E.run(cfg, small_split, "exp", P, force=True)


# ---------------------------------------------------------------- migration


def _old_layouts(P):
    """The three earlier layouts under ``P.results`` with tiny contents, as
    the code before the store wrote them; returns what each holds."""
    from cifar_lib.studies import batchnorm, dessilbi
    from cifar_lib.studies.classification import measures as vis
    R = P.results
    S = batchnorm.sizes(P)
    surfaces = {}
    for run in ("vgg_a-s0-0000000001", "vgg_a_bn-s0-0000000002"):
        rec = {"run": run, "model": run.split("-")[0], "options": batchnorm.surface_options(S),
               "alphas": [-1.0, 0.0, 1.0], "line": [3.0, 1.0, 3.5],
               "line_batch": [3.0, 1.0, 3.5], "xs": [-1.0, 1.0],
               "grid": [[2.0, 2.5], [2.2, 2.4]]}
        surfaces[run] = rec
        store.write(rec, R / "batchnorm" / "surfaces" / f"{run}-1a2b3c4d.json")
    D = dessilbi.sizes(P)
    pruning_runs = {"SLBI": ["vgg16_bn-s0-000000000a"], "SGD": ["vgg16_bn-s0-000000000b"]}
    old_key = {"version": 1, "runs": pruning_runs,
               "settings": dict(fractions=list(D.fractions), panels=list(D.panels),
                                bn_batches=D.bn_batches, finetune_steps=D.finetune_steps,
                                finetune_fraction=D.finetune_fraction,
                                finetune_lr=D.finetune_lr, show_layer=D.show_layer)}
    pruning = {"seeds": [{"seed": 0, "base": {"SLBI": 0.5, "SGD": 0.4}, "rows": []}]}
    store.write({"key": old_key, **pruning}, R / "dessilbi_measure.json")
    vis_runs = {"fastnet": "fastnet-s0-000000000c", "resnet18": "resnet18-s0-000000000d",
                "canet_tiny": "canet_tiny-s0-000000000e"}
    calibration = {m: {"acc": 0.5, "ece": 0.1} for m in vis_runs}
    store.write({"runs": vis_runs, "figures": list(vis.VIS_FIGURES)},
                R / "summaries" / "vis.json")
    store.write(calibration, R / "summaries" / "calibration.json")
    return surfaces, (pruning_runs, pruning), (vis_runs, calibration)


def test_migrate_moves_each_old_layout_into_the_store(P, monkeypatch):
    from cifar_lib.studies import batchnorm, dessilbi
    from cifar_lib.studies.classification import measures as vis
    surfaces, (pruning_runs, pruning), (vis_runs, calibration) = _old_layouts(P)
    R = P.results
    moved = M.migrate(R)
    assert sorted(p.name for p in moved) == sorted(
        [f"{r}-1a2b3c4d.json" for r in surfaces] + ["dessilbi_measure.json", "vis.json",
                                                    "calibration.json"])
    assert not any(p.exists() for p in moved)
    assert not (R / "batchnorm" / "surfaces").exists()     # the emptied folder too
    # surfaces: under the key the study computes for the run and its sizes
    S = batchnorm.sizes(get_profile("smoke"))
    for run, rec in surfaces.items():
        assert rec["options"] == batchnorm.surface_options(S)
        assert store.load_measurement(R, "batchnorm", batchnorm.surface_key(run, S)) == rec
    # pruning: the key the study computes for those runs (records need only names)
    key = dessilbi.measure_key(P, {lbl: [{"run": r} for r in runs]
                                   for lbl, runs in pruning_runs.items()})
    assert store.load_measurement(R, "dessilbi", key) == pruning   # "key" not in the data
    # notebook 03: the key vis_key computes for those runs, at the version stored then
    from types import SimpleNamespace
    from cifar_lib.engine import TrainConfig
    cfgs = {lbl: TrainConfig(model=lbl) for lbl in vis_runs}   # each model's chosen run
    fake = [{"label": lbl, "run": run, "status": "ok", "config": cfgs[lbl].to_dict()}
            for lbl, run in vis_runs.items()]
    monkeypatch.setattr(vis, "records", lambda exp, prof: fake)
    monkeypatch.setattr(vis, "vis_runs", lambda prof: {
        lbl: SimpleNamespace(label=lbl, cfg=c) for lbl, c in cfgs.items()})
    monkeypatch.setattr(vis, "VIS_VERSION", M.VIS_VERSION)
    got = store.load_measurement(R, "architectures", vis.vis_key(P))
    assert got == {"figures": list(vis.VIS_FIGURES), "calibration": calibration}
    # each item is readable and named by its key
    items = sorted(R.glob("*/measurements/*.json"))
    assert len(items) == 4 and store.damaged(R) == {}
    for path in items:
        item = store.read(path)
        assert path == store.measurement_path(R, path.parts[-3], item["key"])
    # a second run finds nothing to do and changes nothing
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in R.rglob("*") if p.is_file()}
    assert M.migrate(R) == []
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns)
            for p in R.rglob("*") if p.is_file()} == before


def test_migrate_leaves_a_calibration_without_a_stamp(P):
    store.write({"resnet18": {"ece": 0.1}}, P.results / "summaries" / "calibration.json")
    assert M.migrate(P.results) == []
    assert (P.results / "summaries" / "calibration.json").is_file()
    assert M.migrate(P.root / "nothing-here") == []


def test_migrate_cli_names_each_folder(P, capsys):
    _old_layouts(P)
    assert M.main(["--results", str(P.results)]) == 0
    assert f"{P.results}: 5 file(s) moved into the store" in capsys.readouterr().out


# ---------------------------------------------------------------- the committed results

ROOTS = [REPO / "results", REPO / "runs" / "cpu" / "results"]


@pytest.mark.parametrize("root", ROOTS, ids=["full", "cpu"])
def test_committed_measurements_are_store_items_and_no_old_layout_remains(root):
    if not root.is_dir():
        pytest.skip(f"no {root} here")
    for path in sorted(root.glob("*/measurements/*.json")):
        item = store.read(path)
        assert isinstance(item, dict) and set(item) == {"key", "data"}, path
        assert path == store.measurement_path(root, path.parts[-3], item["key"]), path
        assert store.load_measurement(root, path.parts[-3], item["key"]) is not None
    assert store.damaged(root) == {}
    assert not list(root.glob("**/surfaces")), "old surfaces folder"
    assert not (root / "dessilbi_measure.json").exists()
    assert not (root / "summaries" / "vis.json").exists()


def test_the_cpu_profiles_measurements_are_found_by_the_studies(monkeypatch):
    """Migrated under the keys the current code computes from the cpu
    profile's committed runs."""
    from cifar_lib.studies import batchnorm, dessilbi
    from cifar_lib.studies.classification import measures as vis
    P = get_profile("cpu")
    if not (P.results / "batchnorm" / "measurements").is_dir():
        pytest.skip("no cpu-profile results committed here")
    # both networks, and BN stopped at the epoch that matches VGG-A's final loss
    assert set(batchnorm.load_surfaces(P)) == set(batchnorm.MODELS) | {batchnorm.MATCHED}
    assert dessilbi.measured(P) is not None
    # notebook 03's item names the current runs (at the version it was stored with)
    items = [store.read(p) for p in (P.results / "architectures" / "measurements").glob("vis-*")]
    assert items
    monkeypatch.setattr(vis, "VIS_VERSION", items[-1]["key"]["version"])
    if not any(it["key"] == vis.vis_key(P) for it in items):
        # stale only while the runs it measures are pending (a recipe change)
        from cifar_lib import plan as pl
        pending = [j for j in pl.plan(P, costs=False)
                   if not j.done and j.experiment == "architectures"]
        assert pending, "notebook 03's measurement is stale though its runs are all done"


def test_pinned_memo_computes_once_per_listing_and_every_time_outside():
    calls = []

    def make():
        calls.append(1)
        return len(calls)

    assert store.memo("k", make) == 1 and store.memo("k", make) == 2   # outside: each time
    with store.pinned():
        assert store.memo("k", make) == 3
        with store.pinned():                                          # nested: the outer one
            assert store.memo("k", make) == 3
        assert store.memo("other", make) == 4
    assert store.memo("k", make) == 5                                 # dropped after

"""The full profile's exact run list, one step each, on the CPU with tiny data.

A GPU run of the full profile can then only fail for GPU reasons: every
model (at its full size), optimizer, schedule, loss, augmentation, weight
average, probe and pruning path the plan launches is exercised here, and so
are the post-training measurements' drawing paths on the full-size models.
Runs that differ only in numbers (seed, lr, decay, epochs) share a path and
are exercised once.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from cifar_lib import landscape as L
from cifar_lib import plan as pl
from cifar_lib import slbi
from cifar_lib.data import split_data, synthetic_cifar
from cifar_lib.engine import fit, make_loaders
from cifar_lib.losses import make_loss
from cifar_lib.models import create_model
from cifar_lib.profiles import get_profile

# One path per combination of what changes the code that runs.
PATH_FIELDS = ("model", "model_kw", "optimizer", "optim_kw", "scheduler", "loss",
               "augment", "normalize", "l1", "grad_clip", "ema", "swa_start",
               "tta_flip", "keep")


def _path(job) -> str:
    c = job.cfg.to_dict()
    key = {k: c[k] for k in PATH_FIELDS}
    key["smoothing"] = c["label_smoothing"] > 0
    key["probes"] = bool(job.tag and job.tag.get("probe_every"))
    for k in ("l1", "grad_clip", "ema", "swa_start"):
        key[k] = bool(key[k])
    return json.dumps(key, sort_keys=True)


def full_paths(extended: bool = False):
    jobs = pl.plan(get_profile("full"), extended=extended)
    out = {}
    for j in jobs:
        out.setdefault(_path(j), j)
    return list(out.values())


@pytest.fixture(scope="module")
def tiny():
    """8 training images: batches of 4, two steps an epoch."""
    return split_data(synthetic_cifar(n_train=12, n_test=4, seed=3), val_size=4, seed=0)


JOBS = full_paths()


@pytest.mark.parametrize("job", JOBS, ids=[f"{j.group}-{j.cfg.model}-{i}"
                                            for i, j in enumerate(JOBS)])
def test_every_full_profile_path_trains_a_step(job, tiny):
    cfg = job.cfg.replace(epochs=1, batch_size=4, warmup_epochs=min(job.cfg.warmup_epochs, 1.0),
                          amp=False, whiten_bias_epochs=min(job.cfg.whiten_bias_epochs, 1))
    torch.manual_seed(0)
    model = create_model(cfg.model, **cfg.model_kw)  # the full-size network
    hooks = []
    if job.tag and job.tag.get("probe_every"):  # the BatchNorm study's probes
        opts = {**job.tag, "probe_every": 1}
        hooks.append(L.Recorder(make_loss(cfg.loss, cfg.label_smoothing, **cfg.loss_kw),
                                **opts))
    out = fit(model, make_loaders(tiny, cfg, "cpu"), cfg, hooks=hooks, max_loss=math.inf)
    assert out["status"] == "ok" and out["metrics"]["epochs_run"] == 1
    assert out["metrics"]["test_acc"] is not None
    if hooks:
        res = hooks[0].result()
        assert res["probes"]["step"], "the probe path did not run"
        # the surfaces of notebook 04, in both BatchNorm modes
        batches = L.fixed_batches(*tiny.train, 4, tiny.mean, tiny.std, "cpu")
        d = L.filter_normalized_direction(model)
        for bn_train in (True, False):
            z = L.loss_surface(model, batches, [d], [[0.0], [0.5]], bn_train=bn_train)
            assert len(z) == 2
    if cfg.optimizer == "slbi":  # the pruning paths of notebook 05
        entry = out["history"][-1].get("slbi_entry")
        assert entry, "SLBI recorded no path"
        layer = next(iter(slbi.conv_layers(model)))
        for by in ("magnitude", "bn", "path"):
            slbi.prune_filters(model, 0.5, layer, by=by, entry=entry).undo()
        cut = slbi.prune_indices(model, slbi.outside(entry))
        loaders = make_loaders(tiny, cfg, "cpu")
        slbi.recalibrate_bn(model, loaders.train, batches=1)
        slbi.finetune(model, loaders.train, steps=1, pruning=cut)


def test_the_plan_paths_cover_every_group():
    assert {j.group for j in JOBS} == {"core", "ablations", "batchnorm", "dessilbi", "zoo"}
    assert {j.cfg.optimizer for j in JOBS} >= {"sgd", "adam", "adamw", "signsgd",
                                              "adamw_sgd", "slbi"}


def test_notebook_03_drawing_on_the_full_size_models(tmp_path, tiny, monkeypatch):
    """Notebook 03's measurement on the full profile's (untrained) models:
    every figure drawn, the calibration stored; a second call loads no model."""
    from cifar_lib import store
    from cifar_lib.studies import classification as cls
    from cifar_lib.studies.classification import measures
    P = get_profile("full").with_(root=tmp_path)  # figures go to the temp folder
    split = split_data(synthetic_cifar(n_train=40, n_test=64, seed=4), val_size=8, seed=0)
    models = {}
    for name in cls.VIS_MODELS + (cls.ATTENTION_MODEL,):
        torch.manual_seed(0)
        m = create_model(name)
        if hasattr(m, "data_init"):
            m.data_init(torch.randn(16, 3, 32, 32))
        models[name] = m.eval()
    # the trained models and their runs' key stand-ins (no records here)
    key = store.measurement_key("vis", measures.VIS_VERSION, {n: f"{n}-run" for n in models},
                                {"figures": list(cls.VIS_FIGURES)})
    monkeypatch.setattr(measures, "vis_key", lambda profile: key)
    monkeypatch.setattr(measures, "vis_models", lambda profile, split, labels=(), force=False:
                        {lbl: models[lbl] for lbl in labels})
    data = cls.measure(P, split, device="cpu")
    rows = data["calibration"]
    assert set(rows) == set(models) and all(0 <= r["ece"] <= 1 for r in rows.values())
    assert store.load_measurement(P.results, "architectures", key) == data
    drawn = {p.name for p in P.figures.glob("*.png")}
    assert set(cls.VIS_FIGURES) <= drawn
    monkeypatch.setattr(measures, "vis_models", lambda *a, **k: pytest.fail("measured again"))
    assert cls.measure(P, split) == data and cls.vis_measured(P) == data

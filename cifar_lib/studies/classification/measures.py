"""Section 1's measurements after training: the data summary, model costs,
and notebook 03's figures and calibration of the trained networks (stored
under results/summaries/ and figures/, so that the notebooks and the
report render without the weights).
"""
from __future__ import annotations

import json

from cifar_lib.experiments import write_json
from cifar_lib.profiles import Profile
from cifar_lib.studies.classification import plots
from cifar_lib.studies.classification.runs import (ATTENTION_MODEL, VIS_MODELS, arch_models,
                                                   arch_recipe, architectures, records)


def read(profile: Profile, *parts):
    """A stored JSON result under the profile's results/, or None."""
    path = profile.results.joinpath(*parts)
    return json.loads(path.read_text()) if path.is_file() else None


def data_summary(split) -> dict:
    """Split sizes, class counts and train statistics (for 00_data)."""
    import torch
    k = split.num_classes
    counts = {name: torch.bincount(y, minlength=k).tolist()
              for name, (_, y) in (("train", split.train), ("val", split.val),
                                   ("test", split.test))}
    return {"source": split.source, "classes": list(split.classes),
            "sizes": {n: int(sum(c)) for n, c in counts.items()},
            "class_counts": counts, "mean": list(split.mean), "std": list(split.std)}


def save_data_summary(split, profile: Profile) -> dict:
    """Write :func:`data_summary` to results/summaries/data.json.

    Used by notebook 00 (report section 1.1).
    """
    summary = data_summary(split)
    write_json(summary, profile.results / "summaries" / "data.json")
    return summary


def save_arch_costs(profile: Profile) -> dict:
    """Parameters and forward MFLOPs (32x32 input) of each compared model,
    to results/summaries/arch_costs.json.

    Used by notebook 01 (report section 1.2)."""
    from cifar_lib.models import count_params, create_model
    from cifar_lib.models.summary import count_flops
    costs = {}
    for label, model, kw in arch_models(profile):
        net = create_model(model, **kw)
        costs[label] = {"params": count_params(net), "mflops": count_flops(net) / 1e6}
    write_json(costs, profile.results / "summaries" / "arch_costs.json")
    return costs


def vis_models(profile: Profile, split, labels=VIS_MODELS, force: bool = False) -> dict:
    """Trained models of the architecture comparison (first seed), by label.

    Runs (or checkpoints) that are missing are trained, as notebook 01 would.
    """
    from cifar_lib.experiments import trained_model
    specs = {label: cfg for label, cfg in architectures(profile)
             if cfg.seed == profile.seeds[0]}
    missing = [lbl for lbl in labels if lbl not in specs]
    if missing:
        raise ValueError(f"{missing} are not in the {profile.name} architecture list; "
                         f"choose from {sorted(specs)}")
    return {lbl: trained_model(specs[lbl], split, "architectures", profile, label=lbl,
                               force=force)
            for lbl in labels}


VIS_FIGURES = ("vis_filters.png", "vis_weights.png", "vis_feature_maps.png",
               "vis_attention.png", "vis_attention_weights.png", "vis_cam_correct.png",
               "vis_cam_wrong.png", "vis_confusion.png", "vis_per_class.png",
               "vis_mistakes.png", "vis_reliability.png", "vis_embedding.png")
VIS_STAMP = ("summaries", "vis.json")


def _vis_runs(profile: Profile) -> dict | None:
    """Run names of the models notebook 03 draws (first seed), or None
    while one of them has no finished record."""
    want = set(VIS_MODELS) | {ATTENTION_MODEL}
    runs = {r["label"]: r["run"] for r in records(profile, "architectures")
            if r["label"] in want and r["config"]["seed"] == profile.seeds[0]
            and r["status"] == "ok"}
    return runs if set(runs) == want else None


def vis_stored(profile: Profile) -> bool:
    """Whether notebook 03's figures and calibration are on disk for the
    current runs of its models (then nothing needs their weights)."""
    stamp = read(profile, *VIS_STAMP)
    runs = _vis_runs(profile)
    return bool(stamp and runs and stamp.get("runs") == runs
                and all((profile.figures / f).is_file() for f in VIS_FIGURES)
                and read(profile, "summaries", "calibration.json") is not None)


def measure(profile: Profile, split, *, force: bool = False, device=None, log=None) -> dict:
    """Notebook 03 (report section 1.4): filters, feature maps, attention,
    CAMs, errors, calibration and embedding of the trained ResNet-18,
    FastNet and CANet-tiny, saved to figures/ and results/summaries/.

    Skipped when they are stored for the current runs (no weights needed);
    otherwise the models are loaded (trained when their weights are not on
    this machine). The budgeted runner calls it right after those runs.

    Used by notebook 03 (report section 1.4).
    """
    from cifar_lib import analysis, viz
    if not force and vis_stored(profile):
        return read(profile, *VIS_STAMP)
    models = vis_models(profile, split, VIS_MODELS + (ATTENTION_MODEL,))
    test = test_loader(profile, split)
    if device is not None:
        models = {k: m.to(device) for k, m in models.items()}
    viz.setup()
    outs = {name: analysis.predictions(m, test) for name, m in models.items()}
    plots.draw_inside(profile, models, test, split)
    plots.draw_cams(profile, models, outs, test, split)
    plots.draw_errors(profile, outs, split)
    save_calibration(profile, plots.draw_calibration(profile, outs))
    plots.draw_embedding(profile, models["resnet18"], test, split)
    stamp = {"runs": _vis_runs(profile), "figures": list(VIS_FIGURES)}
    write_json(stamp, profile.results.joinpath(*VIS_STAMP))
    return stamp


def test_loader(profile: Profile, split):
    """The test split as the architecture runs saw it (normalised, in order)."""
    from cifar_lib.engine import make_loaders
    return make_loaders(split, arch_recipe(profile, "cnn3", {})).test


def save_calibration(profile: Profile, rows: dict) -> None:
    """Write per-model test accuracy and ECE to results/summaries/calibration.json."""
    write_json(rows, profile.results / "summaries" / "calibration.json")



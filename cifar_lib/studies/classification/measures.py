"""Section 1's measurements: the data summary, model costs, and notebook
03's figures and calibration of the trained networks, a measurement of the
``architectures`` experiment stored through :mod:`cifar_lib.store` (so
that the notebooks and the report render without the weights).
"""
from __future__ import annotations

from cifar_lib import store
from cifar_lib.experiments import records
from cifar_lib.profiles import Profile
from cifar_lib.studies.classification import plots
from cifar_lib.studies.classification.runs import (ARCHITECTURES, ATTENTION_MODEL,
                                                   VIS_MODELS, arch_models, arch_recipe)

VIS_VERSION = 1   # bump when measure() changes what it stores or draws


def read(profile: Profile, *parts):
    """A stored summary under the profile's results/ (None: absent or damaged)."""
    return store.read(profile.results.joinpath(*parts))


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
    store.write(summary, profile.results / "summaries" / "data.json")
    return summary


def save_arch_costs(profile: Profile) -> dict:
    """Parameters and forward MFLOPs (32x32 input) of each compared model,
    in results/summaries/arch_costs.json (computed for the models missing
    there: no weights or data needed, so the report can do it).

    Used by notebook 01 (report section 1.2)."""
    from cifar_lib.models import count_params, create_model
    from cifar_lib.models.summary import count_flops
    path = profile.results / "summaries" / "arch_costs.json"
    costs = store.read(path) or {}
    missing = [(lbl, m, kw) for lbl, m, kw in arch_models(profile) if lbl not in costs]
    for label, model, kw in missing:
        net = create_model(model, **kw)
        costs[label] = {"params": count_params(net), "mflops": count_flops(net) / 1e6}
    if missing:
        store.write(costs, path)
    return costs


def vis_models(profile: Profile, split, labels=VIS_MODELS, force: bool = False) -> dict:
    """Trained models of the architecture comparison (first seed), by label.

    Runs (or checkpoints) that are missing are trained, as notebook 01 would.
    """
    from cifar_lib.experiments import load_model, train_one
    runs = {r.label: r for r in ARCHITECTURES.runs(profile) if r.cfg.seed == profile.seeds[0]}
    missing = [lbl for lbl in labels if lbl not in runs]
    if missing:
        raise ValueError(f"{missing} are not in the {profile.name} architecture list; "
                         f"choose from {sorted(runs)}")
    return {lbl: load_model(train_one(ARCHITECTURES, runs[lbl], profile, split,
                                      force=force, need_weights=True), profile)
            for lbl in labels}


VIS_FIGURES = ("vis_filters.png", "vis_weights.png", "vis_feature_maps.png",
               "vis_attention.png", "vis_attention_weights.png", "vis_cam_correct.png",
               "vis_cam_wrong.png", "vis_confusion.png", "vis_per_class.png",
               "vis_mistakes.png", "vis_reliability.png", "vis_embedding.png")


def _needs(r) -> bool:
    """The runs notebook 03 draws: its models' first seed."""
    return r.label in set(VIS_MODELS) | {ATTENTION_MODEL} and r.cfg.seed == 0


def vis_key(profile: Profile) -> dict | None:
    """The store key of notebook 03's measurement for the current runs of
    its models (first seed), or None while one has no finished record."""
    want = set(VIS_MODELS) | {ATTENTION_MODEL}
    runs = {r["label"]: r["run"] for r in records(ARCHITECTURES, profile)
            if r["label"] in want and r["config"]["seed"] == profile.seeds[0]
            and r["status"] == "ok"}
    if set(runs) != want:
        return None
    return store.measurement_key("vis", VIS_VERSION, runs, {"figures": list(VIS_FIGURES)})


def vis_measured(profile: Profile) -> dict | None:
    """Notebook 03's stored measurement of the current runs ({"figures",
    "calibration"}), or None while it is not made (or its figures are gone)."""
    key = vis_key(profile)
    data = key and store.load_measurement(profile.results, ARCHITECTURES.name, key)
    if data and all((profile.figures / f).is_file() for f in data["figures"]):
        return data
    return None


@ARCHITECTURES.measurement("visualisation (notebook 03)", "03_visualization", needs=_needs)
def measure(profile: Profile, split, *, force: bool = False, device=None, log=None) -> dict:
    """Notebook 03 (report section 1.4): filters, feature maps, attention,
    CAMs, errors, calibration and embedding of the trained ResNet-18,
    FastNet and CANet-tiny, saved to figures/ and to the store.

    Skipped when they are stored for the current runs (no weights needed);
    otherwise the models are loaded (trained when their weights are not on
    this machine). The budgeted runner calls it right after those runs.

    Used by notebook 03 (report section 1.4).
    """
    from cifar_lib import analysis, viz
    done = None if force else vis_measured(profile)
    if done is not None:
        return done
    models = vis_models(profile, split, VIS_MODELS + (ATTENTION_MODEL,))
    test = test_loader(profile, split)
    if device is not None:
        models = {k: m.to(device) for k, m in models.items()}
    viz.setup()
    outs = {name: analysis.predictions(m, test) for name, m in models.items()}
    plots.draw_inside(profile, models, test, split)
    plots.draw_cams(profile, models, outs, test, split)
    plots.draw_errors(profile, outs, split)
    calibration = plots.draw_calibration(profile, outs)
    plots.draw_embedding(profile, models["resnet18"], test, split)
    data = {"figures": list(VIS_FIGURES), "calibration": calibration}
    store.save_measurement(profile.results, ARCHITECTURES.name, vis_key(profile), data)
    return data


def test_loader(profile: Profile, split):
    """The test split as the architecture runs saw it (normalised, in order)."""
    from cifar_lib.engine import make_loaders
    return make_loaders(split, arch_recipe(profile, "cnn3", {})).test

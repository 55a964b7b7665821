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

VIS_VERSION = 2   # bump when measure() changes what it stores (1: calibration only)


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


def vis_runs(profile: Profile) -> dict:
    """The architecture comparison's run of each model that notebook 03
    looks inside: its first seed at its chosen rate (a core model's grid
    point with the best validation accuracy), by label; a core model whose
    grid is still incomplete is left out."""
    from cifar_lib.studies.classification.runs import arch_grid, choose, store_id
    grids, out = arch_grid(profile), {}
    for r in ARCHITECTURES.runs(profile):
        if r.cfg.seed != profile.seeds[0]:
            continue
        if r.label in grids:
            best, final = choose(profile, grids[r.label])
            if not final or store_id(r.cfg) != store_id(best):
                continue
        out[r.label] = r
    return out


def vis_models(profile: Profile, split, labels=VIS_MODELS, force: bool = False) -> dict:
    """Trained models of the architecture comparison (first seed, chosen
    rate: :func:`vis_runs`), by label.

    Runs (or checkpoints) that are missing are trained, as notebook 01 would.
    """
    from cifar_lib.experiments import load_model, train_one
    runs = vis_runs(profile)
    waiting = [lbl for lbl in labels if lbl in arch_grid_labels(profile) and lbl not in runs]
    if waiting:
        raise ValueError(f"the rate grids of {waiting} are not complete in the "
                         f"{profile.name} profile; train them first (notebook 01)")
    missing = [lbl for lbl in labels if lbl not in runs]
    if missing:
        raise ValueError(f"{missing} are not in the {profile.name} architecture list; "
                         f"choose from {sorted(runs)}")
    return {lbl: load_model(train_one(ARCHITECTURES, runs[lbl], profile, split,
                                      force=force, need_weights=True), profile)
            for lbl in labels}


def arch_grid_labels(profile: Profile) -> set:
    """The models with their own rate grid (the core models of the list)."""
    from cifar_lib.studies.classification.runs import ARCH_CORE, sizes
    return {label for label, _, _ in sizes(profile).arch_models if label in ARCH_CORE}


# Notebook 03's figures, each drawn from the stored measurement
# (``plots.DRAW``; ``values`` registers them as report figures).
VIS_FIGURES = tuple(plots.DRAW)


def _needs(r) -> bool:
    """The runs notebook 03 draws: its models' first seed."""
    return r.label in set(VIS_MODELS) | {ATTENTION_MODEL} and r.cfg.seed == 0


def vis_key(profile: Profile) -> dict | None:
    """The store key of notebook 03's measurement for the current runs of
    its models (first seed), or None while one has no finished record."""
    from cifar_lib.studies.classification.runs import store_id
    want = set(VIS_MODELS) | {ATTENTION_MODEL}
    chosen = {store_id(r.cfg): lbl for lbl, r in vis_runs(profile).items() if lbl in want}
    runs = {chosen[k]: r["run"] for r in records(ARCHITECTURES, profile)
            if (k := store.identity(r["config"], r.get("tag"), {})) in chosen
            and r["status"] == "ok"}
    if set(runs) != want:
        return None
    return store.measurement_key("vis", VIS_VERSION, runs, {"figures": list(VIS_FIGURES)})


def vis_measured(profile: Profile) -> dict | None:
    """Notebook 03's stored measurement of the current runs (what each of
    its figures shows, and "calibration"; see ``plots.vis_data``), or None
    while it is not made (or made by an earlier version, which stored the
    calibration only)."""
    key = vis_key(profile)
    return (key and store.load_measurement(profile.results, ARCHITECTURES.name, key)) or None


def draw_vis_figures(profile: Profile) -> list:
    """Save notebook 03's figures to figures/ from the stored measurement,
    through the registered figure functions (as ``report`` does)."""
    from cifar_lib import viz
    return [viz.figure(name, profile, show=False, quiet=True) for name in VIS_FIGURES]


@ARCHITECTURES.measurement("visualisation (notebook 03)", "03_visualization", needs=_needs)
def measure(profile: Profile, split, *, force: bool = False, device=None, log=None) -> dict:
    """Notebook 03 (report section 1.4): filters, weights, feature maps,
    attention, CAMs, errors, calibration and embedding of the trained
    ResNet-18, FastNet and CANet-tiny, stored (what each figure shows, in
    under 1.5 MB) and drawn from the store to figures/.

    When they are stored for the current runs, the figures are only drawn
    again (no weights needed); otherwise the models are loaded (trained
    when their weights are not on this machine). The budgeted runner calls
    it right after those runs.

    Used by notebook 03 (report section 1.4).
    """
    data = None if force else vis_measured(profile)
    if data is None:
        models = vis_models(profile, split, VIS_MODELS + (ATTENTION_MODEL,))
        if device is not None:
            models = {k: m.to(device) for k, m in models.items()}
        data = {"figures": list(VIS_FIGURES),
                **plots.vis_data(models, test_loader(profile, split), split)}
        store.save_measurement(profile.results, ARCHITECTURES.name, vis_key(profile), data)
        data = vis_measured(profile) or data  # as stored (what the figures are drawn from)
    draw_vis_figures(profile)
    return data


def test_loader(profile: Profile, split):
    """The test split as the architecture runs saw it (normalised, in order)."""
    from cifar_lib.engine import make_loaders
    return make_loaders(split, arch_recipe(profile, "cnn3", {})).test

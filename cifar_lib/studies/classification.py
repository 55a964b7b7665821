"""Section 1 of the report: data, architectures, ablations (notebooks 00-03).

Each named experiment maps a profile to (label, config) pairs; sizes come
from the profile so the same experiment runs at smoke, cpu and full scale.
Tables and values for report.md are read back from results/ on disk.
"""
from __future__ import annotations

import json

from cifar_lib.engine import TrainConfig
from cifar_lib.experiments import (experiment_configs, load_results, results_frame,
                                   summarize, write_json)
from cifar_lib.profiles import Profile
from cifar_lib.registry import register_experiment, register_table, register_value

# FastNet width and ablation epochs per profile (full: sized with
# `python -m cifar_lib plan` so the whole study fits about 15 minutes on an H100).
FAST_WIDTH = {"smoke": 0.125, "cpu": 0.5, "full": 1.0}
FAST_EPOCHS = {"smoke": 1, "cpu": 4, "full": 6}
# Batch sizes of the batch-size ablation per profile (plus the baseline's).
BATCH_SIZES = {"smoke": (32, 64), "cpu": (32, 64, 128, 256), "full": (128, 256, 512, 1024)}
# EMA decay per profile (few steps on cpu/smoke need a short horizon).
EMA_DECAY = {"smoke": 0.9, "cpu": 0.98, "full": 0.999}


def fast_recipe(profile: Profile, **over) -> TrainConfig:
    """The quick-ablation baseline: FastNet, Nesterov SGD, label smoothing
    0.2, flip-TTA, one warm-up epoch then linear decay.

    Used by notebook 02 (report section 1.3)."""
    epochs = FAST_EPOCHS.get(profile.name, profile.epochs)
    cfg = dict(model="fastnet", model_kw={"width": FAST_WIDTH.get(profile.name, 1.0)},
               optimizer="sgd", lr=0.8, momentum=0.9, nesterov=True,
               weight_decay=5e-4, scheduler="linear",
               warmup_epochs=min(1.0, epochs / 4), label_smoothing=0.2,
               epochs=epochs, batch_size=profile.batch_size, augment="crop_flip",
               tta_flip=True)
    cfg.update(over)
    return TrainConfig(**cfg)


def _seeded(profile: Profile, variants: dict[str, TrainConfig]):
    return [(label, cfg.replace(seed=s)) for label, cfg in variants.items()
            for s in profile.seeds]


@register_experiment("baseline")
def baseline(profile: Profile):
    """The FastNet recipe over the profile's seeds."""
    return _seeded(profile, {"fastnet": fast_recipe(profile)})


# ---------------------------------------------------------------- architectures

# (label, model, options) per profile; the full profile adds the whole zoo.
ARCH_SMOKE = [("lenet", "lenet", {}), ("cnn3", "cnn3", {}),
              ("fastnet", "fastnet", {"width": 0.125}),
              ("vgg_a", "vgg_a", {"width": 0.125}), ("vgg_a_bn", "vgg_a_bn", {"width": 0.125}),
              ("resnet18", "resnet18", {}), ("canet_tiny", "canet_tiny", {})]
ARCH_CPU = [("lenet", "lenet", {}), ("cnn3", "cnn3", {}), ("cnn3_64", "cnn3_64", {}),
            ("fastnet", "fastnet", {"width": 0.5}), ("resnet_s2", "resnet_s2", {}),
            ("vgg_a", "vgg_a", {}), ("vgg_a_bn", "vgg_a_bn", {}),
            ("resnet18", "resnet18", {}), ("canet_tiny", "canet_tiny", {})]
# Every architecture of the earlier course reports, in the full profile's
# 20-minute set (one seed each except the core models); WRN-28-10 with fewer
# epochs. The heaviest variants are in the opt-in extended set (EXTENDED).
# Cheap models first: the budgeted runner trains in this order.
ARCH_FULL = [(m, m, {}) for m in (
    "lenet", "cnn3", "fastnet", "vgg_a", "vgg_a_bn", "resnet18", "canet_tiny",
    "shufflenetv2", "cnn3_64", "resnet_s2", "resnet_s3", "canet_light", "mobilenetv2",
    "resnext29_2x32d", "preactresnet18", "dpn26", "canet_base", "resnet34", "dla",
    "resnet50", "densenet121", "wrn28_10")]
# Full profile: the core models train the profile's 8 epochs with 2 seeds,
# the rest of the zoo 4 epochs with one (WRN-28-10, 10 GFLOPs: 2); the table
# shows each model's epochs, and the extended set trains the zoo at 8.
ZOO_EPOCHS = 4
ARCH_EPOCHS = {"wrn28_10": 2}
# Models trained with every seed of the full profile; the rest with one.
ARCH_CORE = {"lenet", "cnn3", "fastnet", "vgg_a", "vgg_a_bn", "resnet18"}
# Models the visualisation notebook (03) loads from this experiment.
VIS_MODELS = ("resnet18", "fastnet")
ATTENTION_MODEL = "canet_tiny"


def arch_recipe(profile: Profile, model: str, model_kw: dict, seed: int = 0,
                epochs: int | None = None) -> TrainConfig:
    """One recipe for every architecture: Nesterov SGD, lr 0.05 per 128
    images, weight decay 5e-4 (not on norm weights and biases), warm-up then
    cosine, crop+flip.

    Used by notebook 01 (report section 1.2)."""
    bs = profile.batch_size
    epochs = epochs or profile.epochs
    return TrainConfig(model=model, model_kw=model_kw, optimizer="sgd",
                       lr=0.05 * bs / 128, momentum=0.9, nesterov=True,
                       weight_decay=5e-4, scheduler="cosine",
                       warmup_epochs=min(1.0, epochs / 4),
                       epochs=epochs, batch_size=bs, augment="crop_flip",
                       seed=seed)


def arch_models(profile: Profile) -> list[tuple[str, str, dict]]:
    """(label, model, options) trained by the architecture comparison.

    Used by notebook 01 (report section 1.2).
    """
    if profile.name == "smoke":
        return ARCH_SMOKE
    if profile.name == "cpu":
        return ARCH_CPU
    return ARCH_FULL


def _arch_epochs(profile: Profile, label: str) -> int | None:
    if profile.name != "full" or label in ARCH_CORE:
        return None
    return ARCH_EPOCHS.get(label, ZOO_EPOCHS)


@register_experiment("architectures")
def architectures(profile: Profile):
    """Every model of the profile's list with one shared recipe."""
    out = []
    for label, model, kw in arch_models(profile):
        seeds = profile.seeds if label in ARCH_CORE else profile.seeds[:1]
        out += [(label, arch_recipe(profile, model, kw, s, _arch_epochs(profile, label)))
                for s in seeds]
    return out


# The opt-in extended set of the full profile (`plan --extended`,
# `run --extended`): the heaviest variants, longer schedules, a third seed.
EXTENDED_MODELS = ("resnext29_8x64d", "canet_pro", "resnext29_32x4d", "resnext29_2x64d",
                   "resnext50_2x40d", "resnext50_8x14d", "resnext50_32x4d", "wrn16_8")
EXTENDED_SEEDS = (2,)


@register_experiment("architectures_extended")
def architectures_extended(profile: Profile):
    """Heavy models, the zoo at the core's epochs, and a third seed of the core."""
    out = [(m, arch_recipe(profile, m, {}, 0)) for m in EXTENDED_MODELS]
    out += [(label, arch_recipe(profile, model, kw, 0)) for label, model, kw
            in arch_models(profile) if label not in ARCH_CORE]
    out += [(label, arch_recipe(profile, model, kw, s))
            for label, model, kw in arch_models(profile) if label in ARCH_CORE
            for s in EXTENDED_SEEDS]
    return out


EXTENDED = ("architectures_extended",)


# ---------------------------------------------------------------- ablations


def ablations(profile: Profile) -> dict[str, dict[str, TrainConfig]]:
    """Each ablation: variants of the FastNet baseline changing one factor."""
    base = fast_recipe(profile)
    lr = base.lr
    return {
        "optimizers": {
            "SGD + Nesterov momentum (baseline)": base,
            "Adam": base.replace(optimizer="adam", lr=2e-3, weight_decay=0.0),
            "AdamW": base.replace(optimizer="adamw", lr=2e-3, weight_decay=0.05),
            "sign-SGD (signum)": base.replace(optimizer="signsgd", lr=1e-3, weight_decay=0.0),
            "AdamW then SGD at 50%": base.replace(
                optimizer="adamw_sgd", lr=2e-3, weight_decay=5e-4,
                optim_kw={"switch_at": 0.5, "sgd_lr_scale": lr / 2e-3}),
        },
        "schedulers": {
            "warm-up + linear decay (baseline)": base,
            "constant": base.replace(scheduler="constant", warmup_epochs=0.0),
            "step (x0.1 every third)": base.replace(scheduler="step", warmup_epochs=0.0),
            "plateau (x0.1, patience 1)": base.replace(
                scheduler="plateau", warmup_epochs=0.0, sched_kw={"patience": 1}),
            "cosine": base.replace(scheduler="cosine", warmup_epochs=0.0),
            "exponential (x0.7 per epoch)": base.replace(
                scheduler="exponential", warmup_epochs=0.0, sched_kw={"gamma": 0.7}),
            "one-cycle": base.replace(scheduler="onecycle", warmup_epochs=0.0),
        },
        "losses": {
            "label smoothing 0.2 (baseline)": base,
            "cross-entropy": base.replace(label_smoothing=0.0),
            "focal (gamma 2)": base.replace(loss="focal", label_smoothing=0.0),
            "MSE on one-hot": base.replace(loss="mse", label_smoothing=0.0),
        },
        "activations": {
            "GELU (baseline)": base,
            **{name: base.replace(model_kw={**base.model_kw, "act": a})
               for name, a in (("ReLU", "relu"), ("LeakyReLU (0.1)", "leaky_relu"),
                               ("ELU", "elu"))},
        },
        "regularisation": {
            "weight decay 5e-4 (baseline)": base,
            "no weight decay": base.replace(weight_decay=0.0),
            "L1 5e-6": base.replace(l1=5e-6),
            "dropout 0.2": base.replace(model_kw={**base.model_kw, "dropout": 0.2}),
            "gradient clipping at norm 1": base.replace(grad_clip=1.0),
            "SWA over the last 25%": base.replace(swa_start=0.75),
            "EMA of weights": base.replace(ema=EMA_DECAY.get(profile.name, 0.999)),
        },
        "augmentation": {
            "none": base.replace(augment="none"),
            "flip": base.replace(augment="flip"),
            "crop + flip (baseline)": base,
            "crop + flip + erasing": base.replace(augment="crop_flip_erase"),
            "crop + flip + mixup": base.replace(augment="crop_flip_mixup"),
            "crop + flip + cutmix": base.replace(augment="crop_flip_cutmix"),
            "crop + flip + rotation (15 degrees)": base.replace(augment="crop_flip_rotate"),
            "crop + flip, no normalisation": base.replace(normalize=False),
        },
        "lr_grid": {
            f"Adam lr={v:g}, {s}": base.replace(
                optimizer="adam", lr=v, weight_decay=0.0, scheduler=s,
                warmup_epochs=0.0, sched_kw={"step_size": max(1, base.epochs // 2)} if s == "step" else {})
            for v in (1e-2, 1e-3, 1e-4) for s in ("step", "constant")
        },
        "batch_size": {
            f"batch {b}{' (baseline)' if b == base.batch_size else ''}": base.replace(batch_size=b)
            for b in sorted(set(BATCH_SIZES.get(profile.name, ())) | {base.batch_size})
        },
    }


ABLATIONS = ("optimizers", "schedulers", "losses", "activations", "regularisation",
             "augmentation", "lr_grid", "batch_size")
# The experiment (and report table) of each ablation, spelled out so that
# every name report.md uses can be found in the code.
ABLATION_EXPERIMENTS = {
    "optimizers": "ablation_optimizers", "schedulers": "ablation_schedulers",
    "losses": "ablation_losses", "activations": "ablation_activations",
    "regularisation": "ablation_regularisation", "augmentation": "ablation_augmentation",
    "lr_grid": "ablation_lr_grid", "batch_size": "ablation_batch_size",
    "stem": "ablation_stem"}


def _register_ablation(name: str):
    @register_experiment(ABLATION_EXPERIMENTS[name])
    def spec(profile: Profile):
        return _seeded(profile, ablations(profile)[name])
    spec.__doc__ = f"Ablation of {name.replace('_', ' ')} on the FastNet baseline."


for _name in ABLATIONS:
    _register_ablation(_name)


def stem_variants(profile: Profile) -> dict[str, TrainConfig]:
    """ResNet-18 with the CIFAR stem (3x3, stride 1) against the ImageNet stem
    (7x7 stride 2 and a max-pool, course report E), all else equal."""
    base = arch_recipe(profile, "resnet18", {})
    return {"CIFAR stem 3x3 (baseline)": base,
            "ImageNet stem 7x7/2 + max-pool": base.replace(model_kw={"stem": "imagenet"})}


@register_experiment("ablation_stem")
def ablation_stem(profile: Profile):
    """One-factor ablation of the ResNet-18 stem over the profile's seeds."""
    return _seeded(profile, stem_variants(profile))


# ---------------------------------------------------------------- reading results


def records(name: str, profile: Profile) -> list[dict]:
    """Records of a named experiment's current configs, in spec order.

    Runs on disk whose config is no longer in the spec are left out; where a
    config was run twice (e.g. on two data sources) the newest is used.

    Used by notebooks 01, 02 (report sections 1.2, 1.3).
    """
    by_config = {}
    for rec in load_results(name, profile):
        by_config[json.dumps(rec["config"], sort_keys=True)] = rec
    out = []
    for label, cfg in experiment_configs(name, profile):
        rec = by_config.get(json.dumps(cfg.to_dict(), sort_keys=True))
        if rec is not None:
            out.append({**rec, "label": label})
    return out


def first_seed(recs: list[dict]) -> list[dict]:
    """One record per label: the lowest seed's (for learning-curve plots).

    Used by notebooks 01, 02 (report sections 1.2, 1.3).
    """
    out: dict[str, dict] = {}
    for r in sorted(recs, key=lambda r: r["config"]["seed"]):
        out.setdefault(r["label"], r)
    return list(out.values())


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


# ---------------------------------------------------------------- notebook 03


VIS_FIGURES = ("vis_filters.png", "vis_weights.png", "vis_feature_maps.png",
               "vis_attention.png", "vis_attention_weights.png", "vis_cam_correct.png",
               "vis_cam_wrong.png", "vis_confusion.png", "vis_per_class.png",
               "vis_mistakes.png", "vis_reliability.png", "vis_embedding.png")
VIS_STAMP = ("summaries", "vis.json")


def _vis_runs(profile: Profile) -> dict | None:
    """Run names of the models notebook 03 draws (first seed), or None
    while one of them has no finished record."""
    want = set(VIS_MODELS) | {ATTENTION_MODEL}
    runs = {r["label"]: r["run"] for r in records("architectures", profile)
            if r["label"] in want and r["config"]["seed"] == profile.seeds[0]
            and r["status"] == "ok"}
    return runs if set(runs) == want else None


def vis_stored(profile: Profile) -> bool:
    """Whether notebook 03's figures and calibration are on disk for the
    current runs of its models (then nothing needs their weights)."""
    stamp = _read(profile, *VIS_STAMP)
    runs = _vis_runs(profile)
    return bool(stamp and runs and stamp.get("runs") == runs
                and all((profile.figures / f).is_file() for f in VIS_FIGURES)
                and _read(profile, "summaries", "calibration.json") is not None)


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
        return _read(profile, *VIS_STAMP)
    models = vis_models(profile, split, VIS_MODELS + (ATTENTION_MODEL,))
    test = test_loader(profile, split)
    if device is not None:
        models = {k: m.to(device) for k, m in models.items()}
    viz.setup()
    outs = {name: analysis.predictions(m, test) for name, m in models.items()}
    draw_inside(profile, models, test, split)
    draw_cams(profile, models, outs, test, split)
    draw_errors(profile, outs, split)
    draw_calibration(profile, outs)
    draw_embedding(profile, models["resnet18"], test, split)
    stamp = {"runs": _vis_runs(profile), "figures": list(VIS_FIGURES)}
    write_json(stamp, profile.results.joinpath(*VIS_STAMP))
    return stamp


def draw_inside(profile: Profile, models: dict, test, split) -> None:
    """First-layer filters, weight distributions and feature maps of
    ResNet-18; CANet's attention maps and weights."""
    import torch
    from cifar_lib import analysis, viz
    net, images = models["resnet18"], split.test[0]
    x, _ = next(iter(test))
    viz.save(viz.filter_grid(analysis.first_conv(net)), profile, "vis_filters.png", show=False)
    viz.save(viz.weight_distributions(analysis.conv_weights(net)), profile,
             "vis_weights.png", show=False)
    maps = analysis.feature_maps(net, x[:1], n_layers=4)
    viz.save(viz.feature_map_grid(maps, images[0]), profile, "vis_feature_maps.png", show=False)
    canet = models[ATTENTION_MODEL].eval()
    with torch.no_grad():
        canet(x)
    att = canet.attention_maps()
    viz.save(viz.attention_maps(images[:6], att, n=6), profile, "vis_attention.png", show=False)
    viz.save(viz.attention_weights(att), profile, "vis_attention_weights.png", show=False)


def _pair_titles(split, y, pred, idx) -> list[str]:
    return [f"{split.classes[int(y[i])]}->{split.classes[int(pred[i])]}" for i in idx]


def draw_cams(profile: Profile, models: dict, outs: dict, test, split) -> None:
    """Grad-CAM panels for correct and wrong predictions of ResNet-18."""
    from cifar_lib import analysis, viz
    ref, images = outs["resnet18"], split.test[0]
    cam_models = {name: models[name] for name in VIS_MODELS}
    for kind, pick in (("correct", ref["pred"] == ref["y"]), ("wrong", ref["pred"] != ref["y"])):
        idx = pick.nonzero().flatten()[:8]
        preds = {name: outs[name]["pred"][idx] for name in cam_models}
        panels = analysis.cam_panels(cam_models, test.prepare(test.x[idx.to(test.x.device)]), preds)
        titles = _pair_titles(split, ref["y"], ref["pred"], idx)
        viz.save(viz.cam_grid(images[idx], panels, titles), profile, f"vis_cam_{kind}.png",
                 show=False)


def draw_errors(profile: Profile, outs: dict, split) -> None:
    """Confusion matrix and most confident mistakes of ResNet-18, per-class
    accuracy of every model."""
    from cifar_lib import analysis, viz
    ref, k = outs["resnet18"], split.num_classes
    viz.save(viz.confusion_plot(analysis.confusion(ref["pred"], ref["y"], k), split.classes),
             profile, "vis_confusion.png", show=False)
    acc = {name: analysis.per_class_accuracy(analysis.confusion(o["pred"], o["y"], k))
           for name, o in outs.items()}
    viz.save(viz.per_class_bars(acc, split.classes), profile, "vis_per_class.png", show=False)
    worst = analysis.confident_mistakes(ref, n=10)
    titles = [f"{t} {ref['probs'][i].max():.2f}"
              for t, i in zip(_pair_titles(split, ref["y"], ref["pred"], worst), worst)]
    fig = viz.image_grid(split.test[0][worst], titles, ncols=5, size=1.5)
    fig.suptitle("ResNet-18: its most confident mistakes (true->predicted, confidence)")
    viz.save(fig, profile, "vis_mistakes.png", show=False)


def draw_calibration(profile: Profile, outs: dict) -> None:
    """Reliability diagrams; accuracy, ECE and mean confidence per model."""
    from cifar_lib import analysis, viz
    rel = {name: analysis.reliability(o["probs"], o["y"]) for name, o in outs.items()}
    viz.save(viz.reliability_plot(rel), profile, "vis_reliability.png", show=False)
    save_calibration(profile, {name: {"acc": float((o["pred"] == o["y"]).float().mean()),
                                      "ece": rel[name]["ece"],
                                      "confidence": float(o["probs"].max(1).values.mean())}
                               for name, o in outs.items()})


def draw_embedding(profile: Profile, net, test, split) -> None:
    """t-SNE of ResNet-18's penultimate features on 2,000 test images."""
    from cifar_lib import analysis, viz
    feats, labels = analysis.penultimate(net, test, limit=2000)
    z = analysis.embed_2d(feats, "tsne")
    viz.save(viz.embedding_plot(z, labels, split.classes,
                                "ResNet-18 penultimate features (t-SNE)"),
             profile, "vis_embedding.png", show=False)


def show(profile: Profile, *names: str):
    """Stored figures as Markdown image links (relative to the executed
    notebook, which sits beside the profile's figures/).

    Used by notebook 03 (report section 1.4)."""
    from IPython.display import Markdown
    return Markdown("\n\n".join(f"![{n}](../figures/{n})" for n in names))


def test_loader(profile: Profile, split):
    """The test split as the architecture runs saw it (normalised, in order)."""
    from cifar_lib.engine import make_loaders
    return make_loaders(split, arch_recipe(profile, "cnn3", {})).test


def save_calibration(profile: Profile, rows: dict) -> None:
    """Write per-model test accuracy and ECE to results/summaries/calibration.json."""
    write_json(rows, profile.results / "summaries" / "calibration.json")


@register_table("calibration")
def calibration_table(profile: Profile):
    """Used by notebook 03 (report section 1.4)."""
    import pandas as pd
    s = _read(profile, "summaries", "calibration.json")
    if not s:
        return None
    return pd.DataFrame([{"model": k, "test acc (%)": f"{100 * v['acc']:.1f}",
                          "ECE (15 bins)": f"{v['ece']:.3f}",
                          "mean confidence": f"{v['confidence']:.3f}"}
                         for k, v in s.items()])


def _pm(mean, std, scale=100.0, digits=1):
    if mean != mean or mean is None:
        return "n/a"
    if std != std or std is None:
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def summary_table(recs: list[dict]):
    """Per label: test accuracy mean ± std (%), seeds, val acc, time, status.

    Used by notebook 02 (report section 1.3).
    """
    import pandas as pd
    if not recs:
        return None
    s = summarize(results_frame(recs), by="label",
                  metrics=("test_acc", "best_val_acc", "train_time", "images_per_s"))
    return pd.DataFrame({
        "variant": s["label"],
        "test acc (%)": [_pm(m, d) for m, d in zip(s["test_acc_mean"], s["test_acc_std"])],
        "val acc (%)": [_pm(m, d) for m, d in zip(s["best_val_acc_mean"], s["best_val_acc_std"])],
        "seeds": s["runs"],
        "train time (s)": [f"{t:.0f}" for t in s["train_time_mean"]],
        "diverged": s["diverged"],
    })


def arch_summary(profile: Profile):
    """Architecture table data: accuracy, parameters, FLOPs, time, images/s.

    Used by notebook 01 (report section 1.2).
    """
    import pandas as pd
    recs = records("architectures", profile)
    if not recs:
        return None
    df = results_frame(recs)
    s = summarize(df, by="label",
                  metrics=("test_acc", "train_time", "images_per_s", "params", "epochs"))
    costs = _read(profile, "summaries", "arch_costs.json") or {}
    s["mflops"] = [costs.get(lbl, {}).get("mflops") for lbl in s["label"]]
    s["params"] = s.pop("params_mean").astype(int)
    return pd.DataFrame(s)


@register_table("architectures")
def arch_table(profile: Profile):
    """Used by notebook 01 (report section 1.2)."""
    s = arch_summary(profile)
    if s is None:
        return None
    import pandas as pd
    s = s.sort_values("test_acc_mean", ascending=False)
    return pd.DataFrame({
        "model": s["label"],
        "test acc (%)": [_pm(m, d) for m, d in zip(s["test_acc_mean"], s["test_acc_std"])],
        "seeds": s["runs"],
        "epochs": s["epochs_mean"].astype(int),
        "params (M)": [f"{p / 1e6:.3g}" for p in s["params"]],
        "MFLOPs": ["n/a" if f is None else f"{f:.0f}" for f in s["mflops"]],
        "train time (s)": [f"{t:.0f}" for t in s["train_time_mean"]],
        "images/s": [f"{v:,.0f}" for v in s["images_per_s_mean"]],
        "diverged": s["diverged"],
    })


def lr_grid_table(recs: list[dict]):
    """Mean test accuracy (%) of the lr grid: rows learning rate, columns schedule.

    Used by notebook 02 (report section 1.3).
    """
    df = results_frame(recs)
    df["test acc (%)"] = 100 * df["test_acc"].astype(float)
    return df.pivot_table(index="lr", columns="scheduler", values="test acc (%)",
                          aggfunc="mean").sort_index(ascending=False)


def _register_ablation_table(experiment: str):
    @register_table(experiment)
    def table(profile: Profile):
        return summary_table(records(experiment, profile))


for _experiment in ABLATION_EXPERIMENTS.values():
    _register_ablation_table(_experiment)


# ---------------------------------------------------------------- data summary


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


def _read(profile: Profile, *parts):
    path = profile.results.joinpath(*parts)
    return json.loads(path.read_text()) if path.is_file() else None


@register_table("data")
def data_table(profile: Profile):
    """Used by notebook 00 (report section 1.1)."""
    import pandas as pd
    s = _read(profile, "summaries", "data.json")
    if s is None:
        return None
    rows = [{"split": n, "images": f"{s['sizes'][n]:,}",
             "per class (min-max)": f"{min(c)}-{max(c)}"}
            for n, c in s["class_counts"].items()]
    return pd.DataFrame(rows)


@register_table("data_stats")
def data_stats_table(profile: Profile):
    """Used by notebook 00 (report section 1.1)."""
    import pandas as pd
    from cifar_lib.data import CIFAR10_MEAN, CIFAR10_STD
    s = _read(profile, "summaries", "data.json")
    if s is None:
        return None
    return pd.DataFrame({"channel": ["red", "green", "blue"],
                         "mean (train split)": [f"{v:.4f}" for v in s["mean"]],
                         "std (train split)": [f"{v:.4f}" for v in s["std"]],
                         "mean (original CIFAR-10)": [f"{v:.4f}" for v in CIFAR10_MEAN],
                         "std (original CIFAR-10)": [f"{v:.4f}" for v in CIFAR10_STD]})


@register_value("data_source")
def data_source(profile: Profile):
    s = _read(profile, "summaries", "data.json")
    return None if s is None else s["source"]


@register_table("benchmarks")
def benchmarks_table(profile: Profile):
    """README: the speed record against airbench94 and the pipeline against
    a DataLoader with PIL transforms (results/benchmarks.json, written by
    benchmarks/summarize.py from the GPU runs)."""
    import pandas as pd
    b = _read(profile, "benchmarks.json")
    if not b:
        return None
    race, rows = b["airbench_race"], []
    ab = race["airbench94"]
    rows.append({"measure": "airbench94 (9.9 epochs), median of 5",
                 "time (s)": f"{ab['time_s']['median']:.2f} ({ab['time_s']['min']:.2f}-{ab['time_s']['max']:.2f})",
                 "test acc (%)": _pm(ab["test_acc"]["median"], None, digits=2),
                 "ratio": "1 (reference)"})
    for name, v in race["fastnet"].items():
        rows.append({"measure": f"FastNet, this engine, {name}, median of 5",
                     "time (s)": f"{v['time_s']['median']:.2f} ({v['time_s']['min']:.2f}-{v['time_s']['max']:.2f})",
                     "test acc (%)": _pm(v["test_acc"]["median"], None, digits=2),
                     "ratio": f"{v['time_s']['median'] / ab['time_s']['median']:.2f}x airbench's time"})
    for model, t in b["throughput"].items():
        rows.append({"measure": f"{model} training images/s: ours vs DataLoader+PIL "
                                f"({t['workers']} workers), batch {t['batch_size']}",
                     "time (s)": f"{t['ours_images_per_s']:,.0f} vs {t['dataloader_pil_images_per_s']:,.0f} img/s",
                     "test acc (%)": "",
                     "ratio": f"{t['ratio']:.2f}x"})
    df = pd.DataFrame(rows)
    df.columns = ["measure", "time (s) or throughput", "test acc (%)", "ratio"]
    return df


@register_value("benchmark_device")
def benchmark_device(profile: Profile):
    b = _read(profile, "benchmarks.json")
    return None if not b else f"{b['device']}, torch {b['torch']}, {b['data']}"


@register_value("best_model")
def best_model(profile: Profile):
    s = arch_summary(profile)
    if s is None:
        return None
    best = s.sort_values("test_acc_mean", ascending=False).iloc[0]
    return f"{best['label']} ({_pm(best['test_acc_mean'], best['test_acc_std'])}% test accuracy)"


@register_value("arch_weak")
def arch_weak(profile: Profile):
    """Architectures whose mean test accuracy stays below 50% (report 1.2)."""
    s = arch_summary(profile)
    if s is None:
        return None
    weak = s[s["test_acc_mean"] < 0.5]
    if not len(weak):
        return "none"
    return ", ".join(f"{r['label']} ({_pm(r['test_acc_mean'], r['test_acc_std'])}%)"
                     for _, r in weak.iterrows())


@register_value("baseline_acc")
def baseline_acc(profile: Profile):
    recs = records("ablation_optimizers", profile)
    base = [r for r in recs if "(baseline)" in r["label"]]
    if not base:
        return None
    s = summarize(results_frame(base), metrics=("test_acc",))
    return _pm(s["test_acc_mean"][0], s["test_acc_std"][0])


@register_value("profile")
def profile_note(profile: Profile):
    s = _read(profile, "summaries", "data.json")
    if s is None:
        return f"profile `{profile.name}` (no data summary yet)"
    n = s["sizes"]
    return (f"profile `{profile.name}`: {s['source']}, {n['train']:,} training / "
            f"{n['val']:,} validation / {n['test']:,} test images")


@register_table("headline")
def headline_table(profile: Profile):
    """README's headline: best architecture and the FastNet baseline."""
    import pandas as pd
    rows = []
    for what, name, pick in (("best architecture, shared recipe", "architectures", None),
                             ("FastNet ablation baseline", "ablation_optimizers", "(baseline)")):
        recs = [r for r in records(name, profile) if pick is None or pick in r["label"]]
        if not recs:
            continue
        s = summarize(results_frame(recs), by="label",
                      metrics=("test_acc", "train_time", "params", "epochs"))
        best = s.sort_values("test_acc_mean", ascending=False).iloc[0]
        rec = next(r for r in recs if r["label"] == best["label"])
        rows.append({"result": what, "model": rec["config"]["model"],
                     "test acc (%)": _pm(best["test_acc_mean"], best["test_acc_std"]),
                     "seeds": int(best["runs"]), "epochs": int(best["epochs_mean"]),
                     "train time (s)": f"{best['train_time_mean']:.0f}",
                     "data": rec["data"]["source"], "device": rec["env"]["device_name"]})
    return pd.DataFrame(rows) if rows else None

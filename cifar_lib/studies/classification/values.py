"""Section 1's report tables and values, read back from results/ on disk."""
from __future__ import annotations

from cifar_lib.experiments import loaded_split, records, results_frame, summarize
from cifar_lib.profiles import Profile
from cifar_lib.registry import register_figure, register_table, register_values
from cifar_lib.studies.classification.measures import read, save_arch_costs, vis_measured
from cifar_lib.studies.classification.runs import ABLATION, ARCHITECTURES, first_seed


@register_table("calibration")
def calibration_table(profile: Profile):
    """Used by notebook 03 (report section 1.4)."""
    import pandas as pd
    data = vis_measured(profile)
    if not data:
        return None
    s = data["calibration"]
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
    recs = records(ARCHITECTURES, profile)
    if not recs:
        return None
    df = results_frame(recs)
    s = summarize(df, by="label",
                  metrics=("test_acc", "train_time", "images_per_s", "params", "epochs"))
    costs = save_arch_costs(profile)
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


def _register_ablation_table(experiment):
    @register_table(experiment.name)
    def table(profile: Profile):
        return summary_table(records(experiment, profile))


for _experiment in ABLATION.values():
    _register_ablation_table(_experiment)


@register_table("data")
def data_table(profile: Profile):
    """Used by notebook 00 (report section 1.1)."""
    import pandas as pd
    s = read(profile, "summaries", "data.json")
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
    s = read(profile, "summaries", "data.json")
    if s is None:
        return None
    return pd.DataFrame({"channel": ["red", "green", "blue"],
                         "mean (train split)": [f"{v:.4f}" for v in s["mean"]],
                         "std (train split)": [f"{v:.4f}" for v in s["std"]],
                         "mean (original CIFAR-10)": [f"{v:.4f}" for v in CIFAR10_MEAN],
                         "std (original CIFAR-10)": [f"{v:.4f}" for v in CIFAR10_STD]})


def data_source(profile: Profile):
    s = read(profile, "summaries", "data.json")
    return None if s is None else s["source"]


@register_table("benchmarks")
def benchmarks_table(profile: Profile):
    """README: the speed record against airbench94 and the pipeline against
    a DataLoader with PIL transforms (results/benchmarks.json, written by
    benchmarks/summarize.py from the GPU runs)."""
    import pandas as pd
    b = read(profile, "benchmarks.json")
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


def benchmark_device(profile: Profile):
    b = read(profile, "benchmarks.json")
    return None if not b else f"{b['device']}, torch {b['torch']}, {b['data']}"


def best_model(profile: Profile):
    s = arch_summary(profile)
    if s is None:
        return None
    best = s.sort_values("test_acc_mean", ascending=False).iloc[0]
    return f"{best['label']} ({_pm(best['test_acc_mean'], best['test_acc_std'])}% test accuracy)"


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


def baseline_acc(profile: Profile):
    recs = records(ABLATION["optimizers"], profile)
    base = [r for r in recs if "(baseline)" in r["label"]]
    if not base:
        return None
    s = summarize(results_frame(base), metrics=("test_acc",))
    return _pm(s["test_acc_mean"][0], s["test_acc_std"][0])


def profile_note(profile: Profile):
    s = read(profile, "summaries", "data.json")
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
    for what, exp, pick in (("best architecture, shared recipe", ARCHITECTURES, None),
                            ("FastNet ablation baseline", ABLATION["optimizers"], "(baseline)")):
        recs = [r for r in records(exp, profile) if pick is None or pick in r["label"]]
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


@register_values
def values(profile: Profile) -> dict:
    """Section 1's report values (None where the results are not on disk).

    Used by report.md's sections 1.1-1.3 and the README."""
    return {"profile": profile_note(profile), "data_source": data_source(profile),
            "best_model": best_model(profile), "arch_weak": arch_weak(profile),
            "baseline_acc": baseline_acc(profile),
            "benchmark_device": benchmark_device(profile)}


# ---------------------------------------------------------------- figures
# Drawn from stored results by ``report`` and by the notebooks'
# ``viz.figure(name, P)``; None while their results are missing.


@register_figure("data_class_balance.png")
def fig_class_balance(profile: Profile):
    from cifar_lib import viz
    s = read(profile, "summaries", "data.json")
    return None if s is None else viz.class_balance(s["class_counts"], s["classes"])


@register_figure("data_samples.png")
def fig_samples(profile: Profile):
    from cifar_lib import analysis, viz
    split = loaded_split(profile)
    if split is None:
        return None
    x, y = split.train
    idx = analysis.per_class_indices(y, 10)
    names = [split.classes[int(k)] for k in y[idx]]
    return viz.image_grid(x[idx], names, ncols=10)


@register_figure("data_pixel_hist.png")
def fig_pixel_hist(profile: Profile):
    from cifar_lib import viz
    split = loaded_split(profile)
    return None if split is None else viz.channel_histograms(split.train[0][:10000])


@register_figure("data_augmentations.png")
def fig_augmentations(profile: Profile):
    from cifar_lib import analysis, viz
    split = loaded_split(profile)
    return None if split is None else viz.image_rows(analysis.augmentation_examples(split, n=8))


@register_figure("arch_acc_vs_params.png")
def fig_acc_vs_params(profile: Profile):
    from cifar_lib import viz
    s = arch_summary(profile)
    return None if s is None else viz.accuracy_vs_params(s)


@register_figure("arch_curves.png")
def fig_arch_curves(profile: Profile):
    from cifar_lib import viz
    recs = records(ARCHITECTURES, profile)
    return viz.learning_curves(first_seed(recs)) if recs else None


@register_figure("arch_lr.png")
def fig_arch_lr(profile: Profile):
    from cifar_lib import viz
    recs = records(ARCHITECTURES, profile)
    return viz.lr_curves(first_seed(recs)) if recs else None


# (ablation, figure, title) of the learning-curve figures of section 1.3
ABLATION_FIGURES = (
    ("optimizers", "abl_optimizers.png", "Optimizers (FastNet)"),
    ("schedulers", "abl_schedulers.png", "Learning-rate schedules (FastNet)"),
    ("losses", "abl_losses.png", "Losses (FastNet)"),
    ("activations", "abl_activations.png", "Activations (FastNet)"),
    ("regularisation", "abl_regularisation.png", "Regularisation (FastNet)"),
    ("augmentation", "abl_augmentation.png", "Augmentation and normalisation (FastNet)"),
    ("lr_grid", "abl_lr_grid_curves.png", "Learning rate x schedule grid (FastNet)"),
    ("batch_size", "abl_batch_size.png", "Batch size (FastNet)"),
    ("stem", "abl_stem.png", "Stem (ResNet-18)"))


def _register_curves(key: str, name: str, title: str) -> None:
    @register_figure(name)
    def fig(profile: Profile):
        from cifar_lib import viz
        recs = records(ABLATION[key], profile)
        return viz.learning_curves(first_seed(recs), title=title) if recs else None


for _key, _name, _title in ABLATION_FIGURES:
    _register_curves(_key, _name, _title)


@register_figure("abl_lr_grid.png")
def fig_lr_grid(profile: Profile):
    from cifar_lib import viz
    recs = records(ABLATION["lr_grid"], profile)
    if not recs:
        return None
    return viz.heatmap(lr_grid_table(recs), "schedule", "Adam learning rate",
                       "test accuracy (%)")


# notebook 03's figures
# Drawn from notebook 03's stored measurement (``measures.vis_measured``:
# what each figure shows, so no weights are needed); None while it is not
# made for the current runs. ``measures.measure`` saves them through these.
from cifar_lib.studies.classification import plots as _plots  # noqa: E402


def _register_vis(name: str, draw) -> None:
    @register_figure(name)
    def fig(profile: Profile):
        data = vis_measured(profile)
        return None if data is None else draw(data)


for _name, _draw in _plots.DRAW.items():
    _register_vis(_name, _draw)

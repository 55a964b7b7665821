"""The study's named experiments and the tables read back from results."""
import pytest

import json

from cifar_lib import studies
from cifar_lib.experiments import Experiment, Run, records, run
from cifar_lib.profiles import PROFILES, REPO, get_profile
from cifar_lib.registry import PRIORITY
from cifar_lib.studies import classification as study
from cifar_lib.studies.classification import runs as section1  # what the package leaves out


def pairs_of(name, P):
    """(label, config) of every run of the experiment ``name``."""
    return [(r.label, r.cfg) for r in studies.experiment(name).runs(P)]


@pytest.mark.parametrize("profile", PROFILES)
def test_every_experiment_builds_valid_configs(profile):
    P = get_profile(profile)
    for exp in studies.experiments():
        assert isinstance(exp, Experiment) and studies.experiment(exp.name) is exp
        assert exp.group in PRIORITY and (REPO / "notebooks" / f"{exp.notebook}.ipynb").is_file()
        runs = exp.runs(P)
        assert runs and all(isinstance(r, Run) for r in runs), exp.name
        assert all(exp.group_of(r) in PRIORITY for r in runs)
        keys = [(r.label, r.cfg.seed, r.cfg.lr) for r in runs]
        assert len(keys) == len(set(keys)), f"{exp.name} repeats a (label, seed, lr)"
        idents = [json.dumps([r.cfg.to_dict(), r.tag], sort_keys=True) for r in runs]
        assert len(idents) == len(set(idents)), f"{exp.name} repeats a run"
        extra = section1.EXTENDED_SEEDS if exp.name in section1.EXTENDED else ()
        if exp.name in ("baseline", "long_budget"):  # two seeds in every profile
            extra = (0, 1)
        if exp.name == "batchnorm":  # three seeds in the cpu profile
            extra = (0, 1, 2)
        assert {r.cfg.seed for r in runs} <= set(P.seeds) | set(extra)


def test_experiments_are_listed_once_and_found_by_name():
    names = [e.name for e in studies.experiments()]
    assert len(names) == len(set(names))
    core = [e.name for e in studies.experiments(extended=False)]
    old = {e.name for e in section1.OLD_ABLATION.values()}
    assert set(names) - set(core) == {"architectures_extended"} | old
    assert set(section1.EXTENDED) == {"architectures_extended"}
    assert {"architectures", "baseline", "batchnorm", "dessilbi"} <= set(core)
    assert study.ABLATION["losses"].name == "ablation_losses"
    assert {e.name for e in study.ABLATION.values()} == set(study.ABLATION_EXPERIMENTS.values())
    assert study.experiment("ablation_losses") is study.ABLATION["losses"]
    assert study.BASELINE.name == "baseline" and study.ARCHITECTURES.name == "architectures"
    assert study.ARCHITECTURES_EXTENDED.extended and not study.ARCHITECTURES.extended
    with pytest.raises(ValueError, match="unknown experiment 'batchnrom'; did you mean "
                                         "'batchnorm'"):
        studies.experiment("batchnrom")
    with pytest.raises(ValueError, match="unknown experiment 'batchnorm'.*choose one of "
                                         "architectures"):
        study.experiment("batchnorm")   # a section's own experiments only
    # architecture runs: the core models in the core group, the rest in the zoo
    P = get_profile("full")
    groups = {r.label: study.ARCHITECTURES.group_of(r) for r in study.ARCHITECTURES.runs(P)}
    assert {lbl for lbl, g in groups.items() if g == "core"} == set(study.ARCH_CORE)
    assert set(groups.values()) == {"core", "zoo"}


@pytest.mark.parametrize("profile", PROFILES)
def test_each_ablation_changes_one_thing_from_one_baseline(profile):
    P = get_profile(profile)
    base = study.ablation_recipe(P).to_dict()
    ablations = {**section1.ablations(P), "optimizers": section1.optimizer_variants(P)}
    for name, variants in ablations.items():
        assert len(variants) >= 2, name
        if name != "lr_grid":
            baselines = [k for k, cfg in variants.items() if cfg.to_dict() == base]
            assert len(baselines) == 1 and "(baseline)" in baselines[0], name
        for label, cfg in variants.items():
            d = cfg.to_dict()
            # norm_bias_decay leaves the stored config with the decay
            changed = {k for k in set(d) | set(base) if base.get(k) != d.get(k)} - \
                {"norm_bias_decay"}
            # the optimizer's own settings go with it (its units, its bias rate)
            allowed = {"optimizers": {"optimizer", "lr", "weight_decay", "optim_kw",
                                      "decoupled", "norm_bias_lr"},
                       "lr_grid": {"optimizer", "lr", "weight_decay", "optim_kw", "decoupled",
                                   "norm_bias_lr", "scheduler", "sched_kw"},
                       # plateau reads each epoch's validation loss: it alone
                       # validates every epoch (validation changes no weight)
                       "schedulers": {"scheduler", "sched_kw", "warmup_epochs", "val_every"},
                       "losses": {"loss", "label_smoothing"}, "activations": {"model_kw"},
                       "regularisation": {"weight_decay", "l1", "model_kw", "grad_clip_quantile",
                                          "lookahead", "swa_start", "ema"},
                       "augmentation": {"augment", "normalize"},
                       "batch_size": {"batch_size"}}[name]
            assert changed <= allowed, (name, label, changed)
            assert len(changed - {"optim_kw", "decoupled", "norm_bias_lr", "sched_kw", "val_every",
                                  "weight_decay", "lr", "label_smoothing", "warmup_epochs"}
                       ) <= 1 or name == "lr_grid", (name, label, changed)


def test_full_architectures_and_the_extended_set_cover_the_whole_zoo():
    from cifar_lib.models import list_models
    full = get_profile("full")
    labels = {label for label, _ in pairs_of("architectures", full)}
    ext = {label for label, _ in pairs_of("architectures_extended", full)}
    missing = set(list_models()) - labels - ext
    # only variants that no course report ran are outside both sets
    assert missing <= {"cnn3_128", "shufflenetv2_0_5", "vgg11", "vgg11_bn", "vgg16",
                       "vgg16_bn"}, missing
    core = [cfg for label, cfg in pairs_of("architectures", full) if label == "resnet18"]
    # the rate grid (first seed; grown past an end that won, as the stored
    # runs say) and the other seeds at the chosen rate
    grid = section1.arch_grid(full)["resnet18"]
    assert len(grid) >= len(section1.LR_FACTORS)
    assert len(core) == len(grid) + len(full.seeds) - 1


def test_records_tables_and_values_from_disk(tmp_path, small_split):
    P = get_profile("smoke").with_(root=tmp_path)
    exp = study.ABLATION["losses"]
    pairs = pairs_of("ablation_losses", P)[:2]
    for label, cfg in pairs:
        run(cfg.replace(seed=7), small_split, "ablation_losses", P, label=label)
    # the runs above changed the seed, so it is not the spec's config: left out
    assert records(exp, P) == []
    for label, cfg in pairs:
        run(cfg, small_split, "ablation_losses", P, label=label)
    recs = records(exp, P)
    assert [r["label"] for r in recs] == [label for label, _ in pairs]
    table = study.summary_table(recs)
    assert list(table["variant"]) == [label for label, _ in pairs]
    assert table["test acc (%)"].str.match(r"^\d+\.\d$").all()
    assert (table["seeds"] == 1).all()
    from cifar_lib.report import TABLES
    # the report's table: "per seed" lists the seeds; no seed failed, no "failed" column
    shown = TABLES["ablation_losses"](P)
    assert shown.equals(table.drop(columns=["seeds", "failed"]))
    failing = table.assign(failed=[0, 1])
    assert list(study.report_columns(failing)) == [c for c in table if c != "seeds"]


def test_data_summary_round_trip(tmp_path, small_split):
    P = get_profile("smoke").with_(root=tmp_path)
    s = study.save_data_summary(small_split, P)
    assert s["sizes"]["train"] == len(small_split.train[1])
    assert sum(s["class_counts"]["val"]) == len(small_split.val[1])
    table = study.data_table(P)
    assert list(table["split"]) == ["train", "val", "test"]
    assert study.values(P)["data_source"] == "synthetic"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_study_has_the_same_parts(profile, tmp_path):
    """Sizes, experiments, records and values, with the same signatures."""
    import dataclasses

    from cifar_lib.studies import batchnorm, classification, dessilbi
    P = get_profile(profile).with_(root=tmp_path)
    listed = []
    for mod in (classification, batchnorm, dessilbi):
        S = mod.sizes(P)
        assert dataclasses.is_dataclass(S) and type(S).__dataclass_params__.frozen, mod
        assert isinstance(mod.EXPERIMENTS, tuple) and mod.EXPERIMENTS, mod
        for exp in mod.EXPERIMENTS:
            assert isinstance(exp, Experiment) and exp.runs(P), (mod, exp)
            assert records(exp, P) == []  # nothing on disk here
            listed.append(exp)
        got = mod.values(P)
        assert isinstance(got, dict) and got, mod
    assert listed == studies.experiments()
    assert batchnorm.records(P) == [] and dessilbi.finished(P) == []
    assert dessilbi.measured(P) is None and batchnorm.load_surfaces(P) == {}
    assert classification.vis_measured(P) is None


def test_size_tables_match_the_profiles():
    """The classification sizes of the committed profiles (their runs' names
    depend on them)."""
    full = study.sizes(get_profile("full"))
    assert (full.fast_width, full.fast_epochs, full.ema_decay) == (1.0, 6, 0.99)
    assert full.arch_epochs_of("wrn28_10") == 2 and full.arch_epochs_of("dla") == 4
    assert full.arch_epochs_of("resnet18") == full.epochs
    cpu = study.sizes(get_profile("cpu"))
    assert cpu.arch_epochs_of("dla") == cpu.epochs and cpu.batch_sizes == (32, 64, 128, 256)


def test_the_cpu_profile_names_its_narrow_models_and_the_stem_row_matches_resnet18():
    """The cpu profile trains FastNet, VGG-A (both) and ResNet-18 at a
    quarter width: section 1.2 says so from the model list, the stem
    ablation's two rows are that ResNet-18 with either stem, and the full
    profile's models keep their published widths (and their run names)."""
    from cifar_lib.models import create_model
    from cifar_lib.studies.classification.values import arch_widths
    cpu, full = get_profile("cpu"), get_profile("full")
    text = arch_widths(cpu)
    assert "FastNet, VGG-A, VGG-A + BN, ResNet-18 at width 0.25" in text
    assert arch_widths(full) == "Every model runs at its published width."
    stem = section1.stem_variants(cpu)
    assert [c.model_kw for c in stem.values()] == [{"width": 0.25},
                                                   {"width": 0.25, "stem": "imagenet"}]
    assert [c.model_kw for c in section1.stem_variants(full).values()] == [
        {}, {"stem": "imagenet"}]
    narrow = create_model("resnet18", width=0.25)
    assert sum(p.numel() for p in narrow.parameters()) == 701_466
    assert sum(p.numel() for p in create_model("resnet18").parameters()) == 11_173_962

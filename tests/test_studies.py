"""The study's named experiments and the tables read back from results."""
import pytest

from cifar_lib.experiments import EXPERIMENTS, experiment_configs, run
from cifar_lib.profiles import PROFILES, get_profile
from cifar_lib.studies import classification as study


@pytest.mark.parametrize("profile", PROFILES)
def test_every_experiment_builds_valid_configs(profile):
    P = get_profile(profile)
    experiment_configs("baseline", P)  # loads the registry
    for name in EXPERIMENTS:
        pairs = experiment_configs(name, P)
        assert pairs, name
        keys = [(label, cfg.seed) for label, cfg in pairs]
        assert len(keys) == len(set(keys)), f"{name} repeats a (label, seed)"
        extra = study.EXTENDED_SEEDS if name in study.EXTENDED else ()
        assert {cfg.seed for _, cfg in pairs} <= set(P.seeds) | set(extra)


@pytest.mark.parametrize("profile", PROFILES)
def test_each_ablation_changes_one_thing_from_one_baseline(profile):
    P = get_profile(profile)
    base = study.fast_recipe(P).to_dict()
    for name, variants in study.ablations(P).items():
        assert len(variants) >= 2, name
        if name != "lr_grid":
            baselines = [k for k, cfg in variants.items() if cfg.to_dict() == base]
            assert len(baselines) == 1 and "(baseline)" in baselines[0], name
        for label, cfg in variants.items():
            changed = {k for k, v in cfg.to_dict().items() if base[k] != v}
            assert changed <= {"optimizer", "lr", "weight_decay", "optim_kw", "scheduler",
                               "warmup_epochs", "sched_kw", "loss", "label_smoothing",
                               "model_kw", "l1", "grad_clip", "swa_start", "ema",
                               "augment", "normalize", "batch_size"}, (name, label)


def test_full_architectures_and_the_extended_set_cover_the_whole_zoo():
    from cifar_lib.models import list_models
    labels = {label for label, _ in experiment_configs("architectures", "full")}
    ext = {label for label, _ in experiment_configs("architectures_extended", "full")}
    missing = set(list_models()) - labels - ext
    # only variants that no course report ran are outside both sets
    assert missing <= {"cnn3_128", "shufflenetv2_0_5", "vgg11", "vgg11_bn", "vgg16",
                       "vgg16_bn"}, missing
    core = [cfg for label, cfg in experiment_configs("architectures", "full") if label == "resnet18"]
    assert len(core) == len(get_profile("full").seeds)


def test_records_tables_and_values_from_disk(tmp_path, small_split):
    P = get_profile("smoke").with_(root=tmp_path)
    pairs = experiment_configs("ablation_losses", P)[:2]
    for label, cfg in pairs:
        run(cfg.replace(seed=7), small_split, "ablation_losses", P, label=label)
    # the runs above changed the seed, so it is not the spec's config: left out
    assert study.records(P, "ablation_losses") == []
    for label, cfg in pairs:
        run(cfg, small_split, "ablation_losses", P, label=label)
    recs = study.records(P, "ablation_losses")
    assert [r["label"] for r in recs] == [label for label, _ in pairs]
    table = study.summary_table(recs)
    assert list(table["variant"]) == [label for label, _ in pairs]
    assert table["test acc (%)"].str.match(r"^\d+\.\d$").all()
    assert (table["seeds"] == 1).all()
    from cifar_lib.report import TABLES
    assert TABLES["ablation_losses"](P).equals(table)


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
    """Sizes, configs, records and values, with the same signatures."""
    import dataclasses

    from cifar_lib.studies import batchnorm, classification, dessilbi
    P = get_profile(profile).with_(root=tmp_path)
    for mod in (classification, batchnorm, dessilbi):
        S = mod.sizes(P)
        assert dataclasses.is_dataclass(S) and type(S).__dataclass_params__.frozen, mod
        runs = mod.configs(P)
        assert isinstance(runs, dict) and runs, mod
        for name, pairs in runs.items():
            assert experiment_configs(name, P) == pairs, (mod, name)
            assert mod.records(P, name) == []  # nothing on disk here
        got = mod.values(P)
        assert isinstance(got, dict) and got, mod


def test_size_tables_match_the_profiles():
    """The classification sizes of the committed profiles (their runs' names
    depend on them)."""
    full = study.sizes("full")
    assert (full.fast_width, full.fast_epochs, full.ema_decay) == (1.0, 6, 0.999)
    assert full.arch_epochs_of("wrn28_10") == 2 and full.arch_epochs_of("dla") == 4
    assert full.arch_epochs_of("resnet18") == full.epochs
    cpu = study.sizes("cpu")
    assert cpu.arch_epochs_of("dla") == cpu.epochs and cpu.batch_sizes == (32, 64, 128, 256)

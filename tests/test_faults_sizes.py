"""Bad sizes and counts, where they enter: the command line and Profile.

Zero or negative epochs, training sizes, batch sizes, seeds... are refused
with a message that names the option or field, its valid range and the
value, before anything loads data or trains (never silently replaced by the
profile's default, never read as "all but N images")."""
from __future__ import annotations

import pytest

from cifar_lib import experiments
from cifar_lib.__main__ import main
from cifar_lib.profiles import CIFAR10_TRAIN, PROFILES, Profile, get_profile


@pytest.fixture
def no_training(monkeypatch):
    """Captures what `train` would train on, and trains nothing."""
    seen = {}

    def run(cfg, split, experiment, profile, **kw):
        seen.update(cfg=cfg, profile=profile)
        return {"run": "stub", "status": "ok", "metrics": {}}
    monkeypatch.setattr(experiments, "run", run)
    monkeypatch.setattr(experiments, "profile_split", lambda P, root=None: None)
    return seen


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "--epochs must be >= 1 (got 0)"),
    (["--epochs", "-3"], "--epochs must be >= 1 (got -3)"),
    (["--seed", "-1"], "--seed must be between 0 and 4294967295 (got -1)"),
    (["--epochs", "1", "--train-size", "-5"],
     "--train-size must be between 1 and 48000 for the cpu profile (got -5)"),
    (["--epochs", "1", "--train-size", "0"],
     "--train-size must be between 1 and 48000 for the cpu profile (got 0)"),
    (["--train-size", "48001"],
     "--train-size must be between 1 and 48000 for the cpu profile (got 48001)"),
])
def test_train_refuses_bad_counts(args, message, no_training, capsys):
    assert main(["train", "--profile", "cpu", "--model", "cnn3", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert not no_training, "nothing may train"


def test_train_size_bound_follows_the_profile(no_training, capsys):
    assert main(["train", "--profile", "full", "--model", "cnn3",
                 "--train-size", "45001"]) == 2
    assert ("--train-size must be between 1 and 45000 for the full profile (got 45001)"
            in capsys.readouterr().err)
    # synthetic data has no upper bound, only the lower one
    assert main(["train", "--profile", "smoke", "--model", "cnn3", "--train-size", "0"]) == 2
    assert "--train-size must be >= 1 (got 0)" in capsys.readouterr().err
    assert not no_training


def test_train_keeps_the_values_given(no_training, capsys):
    assert main(["train", "--profile", "cpu", "--model", "cnn3", "--epochs", "1",
                 "--train-size", "48000"]) == 0
    assert no_training["cfg"].epochs == 1 and no_training["profile"].train_size == 48000
    assert main(["train", "--profile", "cpu", "--model", "cnn3"]) == 0
    P = get_profile("cpu")
    assert no_training["cfg"].epochs == P.epochs
    assert no_training["profile"].train_size == P.train_size


@pytest.mark.parametrize("args, message", [
    (["run", "--budget-min", "0"], "--budget-min must be > 0 (got 0.0)"),
    (["run", "--budget-min", "-2"], "--budget-min must be > 0 (got -2.0)"),
    (["plan", "--tflops", "0"], "--tflops must be > 0 (got 0.0)"),
    (["plan", "--step-ms", "-1"], "--step-ms must be >= 0 (got -1.0)"),
])
def test_plan_and_run_refuse_bad_rates(args, message, capsys):
    assert main([*args, "--profile", "smoke"]) == 2
    assert message in capsys.readouterr().err


def test_non_integer_counts_are_argparse_errors(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--profile", "smoke", "--epochs", "1.5"])
    assert e.value.code == 2
    assert "argument --epochs: invalid int value: '1.5'" in capsys.readouterr().err


def test_help_says_what_all_training_images_are(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "48000 in cpu" in out and "45000 in full" in out
    assert "45000 = all" not in out


# ---------------------------------------------------------------- Profile


@pytest.mark.parametrize("field, value, message", [
    ("train_size", -5, "train_size must be between 1 and 48000 for the cpu profile, "
                       "or None for all (got -5)"),
    ("train_size", 0, "train_size must be between 1 and 48000"),
    ("train_size", 48001, "(got 48001)"),
    ("train_size", 2.5, "train_size must be an integer between 1 and 48000"),
    ("val_size", 0, "val_size must be between 1 and 49999 for the cpu profile (got 0)"),
    ("test_size", 0, "test_size must be between 1 and 10000"),
    ("test_size", 10001, "(got 10001)"),
    ("epochs", 0, "epochs must be >= 1 for the cpu profile (got 0)"),
    ("epochs", True, "epochs must be an integer >= 1"),
    ("batch_size", -64, "batch_size must be >= 1 for the cpu profile (got -64)"),
    ("seeds", (), "seeds must be a non-empty tuple"),
    ("seeds", (0, -1), "each seed must be between 0 and 4294967295 for the cpu profile "
                       "(got -1)"),
    ("data", "imagenet", "data must be one of synthetic, cifar10"),
])
def test_profile_refuses_bad_sizes(field, value, message):
    with pytest.raises(ValueError) as e:
        get_profile("cpu").with_(**{field: value})
    assert message in str(e.value)


def test_profile_bounds_follow_the_validation_size():
    P = get_profile("cpu").with_(val_size=10_000, train_size=40_000)
    assert P.max_train_size == CIFAR10_TRAIN - 10_000 == 40_000
    with pytest.raises(ValueError, match="between 1 and 40000"):
        P.with_(train_size=40_001)
    with pytest.raises(ValueError, match="between 1 and 40000"):  # a new val_size too
        get_profile("cpu").with_(val_size=10_000, train_size=45_000)


def test_profile_synthetic_sizes_have_no_upper_bound_but_must_be_given():
    S = get_profile("smoke")
    assert S.with_(train_size=100_000).train_size == 100_000
    with pytest.raises(ValueError, match="train_size must be an integer >= 1 for the smoke"):
        S.with_(train_size=None)


def test_profile_normalises_what_it_accepts(tmp_path):
    import numpy as np
    P = get_profile("cpu").with_(seeds=[0, 1], root=str(tmp_path),
                                 train_size=np.int64(100))
    assert P.seeds == (0, 1) and P.root == tmp_path
    assert type(P.train_size) is int and P.train_size == 100
    hash(P)  # still usable as a cache key


def test_every_shipped_profile_is_valid():
    for name in PROFILES:
        assert isinstance(get_profile(name), Profile)

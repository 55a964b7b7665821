"""The command line (`python -m cifar_lib ...`), mostly called in-process."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from cifar_lib.__main__ import main
from cifar_lib.models import list_models
from cifar_lib.profiles import get_profile, scratch_root
from conftest import REPO

TINY = ['model_kw={"filters": [8, 16, 16]}', 'augment="none"', "lr=0.05"]


def summary_of(out: str) -> dict:
    """The JSON summary `train` prints after its log lines."""
    return json.loads(out[out.index("{"):])


def test_list_models(capsys):
    assert main(["list", "models"]) == 0
    names = capsys.readouterr().out.split()
    assert names == list_models() and "cnn3" in names and "fastnet" in names


def test_list_experiments(capsys):
    assert main(["list", "experiments"]) == 0
    names = capsys.readouterr().out.split()
    for name in ("architectures", "baseline", "ablation_optimizers", "ablation_batch_size",
                 "batchnorm", "dessilbi"):
        assert name in names  # each study registers its experiments


def test_module_entry_point(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "cifar_lib", "list", "models"],
                         capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "cnn3" in out.stdout.split()


def test_train_on_smoke(capsys):
    code = main(["train", "--profile", "smoke", "--model", "cnn3", "--experiment", "cli",
                 "--set", *TINY])
    out = capsys.readouterr().out
    assert code == 0
    summary = summary_of(out)
    assert summary["status"] == "ok" and summary["epochs_run"] == 1
    assert summary["test_acc"] > 0.15
    P = get_profile("smoke")
    out_root = scratch_root("smoke")  # a one-off run: never the profile's own folder
    assert f"run saved in {out_root}: record {out_root / 'results' / 'cli'}" in out
    assert not (P.results / "cli").exists()
    rec = json.loads((out_root / "results" / "cli" / f"{summary['run']}.json").read_text())
    assert rec["config"]["lr"] == 0.05 and rec["config"]["model_kw"] == {"filters": [8, 16, 16]}
    assert rec["config"]["batch_size"] == P.batch_size and rec["config"]["epochs"] == P.epochs
    assert rec["data"]["train"] == P.train_size
    assert "cnn3 epoch 1/1" in out  # logs each epoch
    # the same command again loads the run (no epoch log), --force retrains
    assert main(["train", "--profile", "smoke", "--model", "cnn3", "--experiment", "cli",
                 "--set", *TINY]) == 0
    assert "epoch 1/1" not in capsys.readouterr().out
    assert main(["train", "--profile", "smoke", "--model", "cnn3", "--experiment", "cli",
                 "--force", "--set", *TINY]) == 0
    assert "epoch 1/1" in capsys.readouterr().out


def test_train_profile_from_environment(monkeypatch, capsys):
    monkeypatch.setenv("CIFAR_LIB_PROFILE", "smoke")
    assert main(["train", "--model", "cnn3", "--epochs", "1", "--seed", "3",
                 "--set", *TINY]) == 0
    summary = summary_of(capsys.readouterr().out)
    assert summary["run"].startswith("cnn3-s3-")


def test_diverged_run_exit_code(capsys):
    assert main(["train", "--profile", "smoke", "--model", "cnn3",
                 "--set", *TINY[:2], "lr=1e6"]) == 3
    assert '"status": "diverged"' in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--set", "lr=abc"], "bad config value lr='abc'; expected float"),
    (["--set", "lr"], "bad config value lr=''"),
    (["--set", "epochs=0"], "bad config value epochs=0"),
    (["--set", "learning_rate=0.1"], "unknown config field 'learning_rate'"),
    (["--set", "epoch=3"], "unknown config field 'epoch' (did you mean 'epochs'?)"),
    (["--set", 'augment="rotate"'], "unknown augmentation preset 'rotate'"),
    (["--set", "scheduler=\"cyclic\""], "unknown scheduler 'cyclic'"),
])
def test_bad_values_exit_2(args, message, capsys):
    assert main(["train", "--profile", "smoke", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_a_read_only_results_folder_is_one_error_line(monkeypatch, capsys):
    from cifar_lib import store

    def read_only(folder):
        raise PermissionError(f"cannot write results to {folder} (Permission denied); "
                              "make it writable or choose another output root")
    monkeypatch.setattr(store, "check_writable", read_only)
    assert main(["train", "--profile", "smoke", "--model", "cnn3", "--set", *TINY]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot write results to ")
    assert "Traceback" not in captured.err + captured.out


def test_a_full_disk_while_writing_weights_is_one_error_line(monkeypatch, capsys,
                                                             tmp_path):
    import errno
    import tempfile

    import torch
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    real = torch.save

    def full(obj, f, *a, **kw):
        if "weights" in str(f):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, *a, **kw)
    monkeypatch.setattr(torch, "save", full)
    assert main(["train", "--profile", "smoke", "--model", "cnn3", "--set", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: could not write the checkpoint ")
    assert "[Errno" not in err[0] and "the disk is full" in err[0]
    kept = list(tmp_path.glob("cifar_lib-unsaved-cnn3-*.pt"))
    assert len(kept) == 1 and f"kept in {kept[0]}" in err[0]


def test_unknown_model_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--profile", "smoke", "--model", "resnet9000"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --model: unknown model 'resnet9000'" in err
    assert "did you mean" in err and "registered models:" in err


def _actions(parser, command: str) -> dict:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices[command]._actions}


def test_options_with_a_fixed_set_have_choices():
    from cifar_lib.__main__ import PRIORITY, build_parser
    from cifar_lib.plan import PRIORITY as PLAN_PRIORITY
    from cifar_lib.profiles import PROFILES
    from cifar_lib.studies import experiments
    ap = build_parser()
    assert set(_actions(ap, "train")["model"].choices) == set(list_models(aliases=True))
    assert set(_actions(ap, "experiment")["names"].choices) == {e.name for e in experiments()}
    assert "00" in _actions(ap, "notebooks")["only"].choices
    assert _actions(ap, "run")["groups"].choices == PRIORITY == PLAN_PRIORITY
    for command in ("train", "experiment", "plan", "run", "notebooks", "report"):
        assert tuple(_actions(ap, command)["profile"].choices) == tuple(PROFILES)


def test_every_option_has_help():
    from cifar_lib.__main__ import build_parser
    ap = build_parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    for command, parser in sub.choices.items():
        for action in parser._actions:
            assert action.help, f"{command} {action.dest} has no --help text"


def test_unknown_experiment_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["experiment", "--profile", "smoke", "ablation_nothing"])
    assert e.value.code == 2
    assert "invalid choice: 'ablation_nothing'" in capsys.readouterr().err


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "train" in capsys.readouterr().out


def test_bad_profile_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--profile", "huge"])
    assert e.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_missing_data_exit_2(capsys, tmp_path):
    # the cpu profile reads real CIFAR-10 (downloads are disabled in conftest):
    # an empty root is a clear error
    assert main(["train", "--profile", "cpu", "--data-root", str(tmp_path / "none"),
                 "--model", "cnn3"]) == 2
    err = capsys.readouterr().err
    assert "could not be loaded from" in err and "CIFAR10_ROOT" in err
    # a missing root is named as such (and not created)
    assert "does not exist" in err or "doe" in err
    assert not (tmp_path / "none").exists()


def test_help_is_plain_text(capsys):
    from cifar_lib.__main__ import build_parser
    ap = build_parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    for text in [ap.format_help()] + [p.format_help() for p in sub.choices.values()]:
        assert "``" not in text and "`" not in text, text


# Builds the parser and prints every help but `experiment --help` (which
# lists the experiments, so loads the studies) with the package's
# __init__ (which imports the whole library) left out.
PARSER_ONLY = """
import sys, types
pkg = types.ModuleType("cifar_lib")
pkg.__path__ = [sys.argv[1]]
sys.modules["cifar_lib"] = pkg
from cifar_lib.__main__ import build_parser
import argparse
ap = build_parser()
ap.format_help()
sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
for name, p in sub.choices.items():
    if name != "experiment":
        p.format_help()
heavy = ("torch", "numpy", "pandas", "papermill", "cifar_lib.plan", "cifar_lib.models",
         "cifar_lib.studies", "cifar_lib.registry", "cifar_lib.notebooks")
print(sorted(m for m in heavy if m in sys.modules))
"""


def test_building_the_parser_imports_nothing_heavy():
    """--help is quick: the sets options choose from load on first use."""
    out = subprocess.run([sys.executable, "-c", PARSER_ONLY, str(REPO / "cifar_lib")],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout

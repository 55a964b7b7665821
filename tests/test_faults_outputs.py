"""Faults of where outputs go: a one-off run (the CLI's train command, or a
library user's own profile) never writes into the committed runs/cpu/ or
results/ folders; the profiles' own roots stay where the report reads them."""
from __future__ import annotations

import pytest

from cifar_lib import experiments
from cifar_lib.__main__ import main
from cifar_lib.profiles import REPO, get_profile, scratch_root


def test_profiles_keep_their_committed_roots():
    assert get_profile("cpu").root == REPO / "runs" / "cpu"
    assert get_profile("full").root == REPO


@pytest.mark.parametrize("name", ["cpu", "full", "smoke"])
def test_a_profile_writing_elsewhere(name, tmp_path):
    P = get_profile(name)
    mine = get_profile(name, root="runs/scratch/mine")
    assert mine.root == REPO / "runs" / "scratch" / "mine"  # from the repository root
    assert mine.results == mine.root / "results" and mine.weights == mine.root / "weights"
    assert mine.with_(root=P.root) == P  # only the root differs
    assert P.with_(root="runs/scratch/mine") == mine
    assert get_profile(P, root=tmp_path).root == tmp_path
    assert get_profile(P) is P


def test_scratch_root(monkeypatch, tmp_path):
    monkeypatch.delenv("CIFAR_LIB_SCRATCH")
    assert scratch_root("cpu") == REPO / "runs" / "scratch" / "cpu"
    monkeypatch.setenv("CIFAR_LIB_SCRATCH", str(tmp_path / "s"))
    assert scratch_root("cpu") == tmp_path / "s" / "train" / "cpu"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CIFAR_LIB_SCRATCH", "rel")  # relative: from where it was set
    assert scratch_root("full") == tmp_path / "rel" / "train" / "full"
    assert get_profile("smoke").root == tmp_path / "rel"


@pytest.fixture
def trained(monkeypatch):
    """experiments.run and the data split replaced: the profile the CLI's
    train command would write with."""
    seen = []

    def run(cfg, split, experiment, profile, **kw):
        seen.append(profile)
        return {"run": "r1", "status": "ok", "metrics": {}, "weights": "weights/x/r1.pt"}
    monkeypatch.setattr(experiments, "run", run)
    monkeypatch.setattr(experiments, "profile_split", lambda P, root=None: None)
    return seen


@pytest.mark.parametrize("name", ["cpu", "full"])
def test_cli_train_writes_to_scratch_by_default(name, trained, capsys):
    assert main(["train", "--profile", name, "--model", "cnn3"]) == 0
    (P,) = trained
    assert P.root == scratch_root(name) and P.name == name
    assert P.root != get_profile(name).root
    assert f"run saved in {P.root}: record {P.root / 'results' / 'manual' / 'r1.json'}, " \
           f"weights {P.root / 'weights' / 'x' / 'r1.pt'}" in capsys.readouterr().out


def test_cli_train_out(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--profile", "cpu", "--model", "cnn3", "--out", "mine"]) == 0
    assert main(["train", "--profile", "cpu", "--model", "cnn3", "--out",
                 str(tmp_path / "abs")]) == 0
    # a relative --out is taken from the working directory, as on any command line
    assert [P.root for P in trained] == [tmp_path / "mine", tmp_path / "abs"]
    assert trained[0].train_size == get_profile("cpu").train_size

"""The report's figures: every figure block of report.md is drawn by a
registered function (or by notebook 03's measurement); each one draws from
a tiny run set (or says its results are missing); the plan names no study
and the registry keeps no experiment tables."""
from __future__ import annotations

import ast
import copy
import re

import matplotlib
import pytest

import cifar_lib.studies  # noqa: F401  (registers the figures)
from cifar_lib import experiments as E
from cifar_lib import registry, report, store, viz
from cifar_lib.profiles import REPO, get_profile
from cifar_lib.registry import FIGURES
from cifar_lib.studies import classification, experiments
from conftest import tiny_config

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

FIGURE_BLOCK = re.compile(r"<!-- BEGIN figure:(\S+?)(?: \||\s*-->)")


def report_figures() -> set[str]:
    return set(FIGURE_BLOCK.findall(report.TEMPLATE.read_text()))


def test_every_figure_of_the_report_is_drawn_by_a_registered_function():
    names = report_figures()
    assert len(names) >= 28
    missing = sorted(n for n in names
                     if n not in FIGURES and n not in classification.VIS_FIGURES)
    assert not missing, f"figure blocks no registered function draws: {missing}"
    assert all(callable(fn) for fn in FIGURES.values())
    # and nothing is registered that the report does not show
    assert set(FIGURES) <= names, sorted(set(FIGURES) - names)


# ---------------------------------------------------------------- a tiny run set


@pytest.fixture(scope="module")
def templates(tmp_path_factory, small_split):
    """Records of three real tiny runs: a plain one, one recorded step by step
    (as the BatchNorm study records its runs) and one trained with SLBI."""
    from cifar_lib.studies import batchnorm
    P = get_profile("smoke").with_(root=tmp_path_factory.mktemp("templates"))
    probed = next(r for r in batchnorm.BATCHNORM.runs(P) if r.tag["probe_every"])
    plain = E.run(tiny_config(epochs=2), small_split, "t", P, device="cpu")
    steps = E.run(tiny_config(epochs=2), small_split, "t", P,
                  tag=probed.tag, hooks=probed.make_hooks(), device="cpu")
    slbi = E.run(tiny_config(epochs=2, optimizer="slbi", keep="last", optim_kw=dict(
        nu=1.0, lambda_conv=0.5, lambda_linear=0.5, relative=True, z_lr_floor=0.1)),
        small_split, "t", P, device="cpu")
    return {"plain": plain, "steps": steps, "slbi": slbi}


def store_runs(P, templates, which=lambda exp, runs: runs):
    """A record of each run ``which`` picks of every (core) experiment of the
    profile, made from the template of its kind (no training)."""
    n = 0
    for exp in experiments(extended=False):
        for i, r in enumerate(which(exp, exp.runs(P))):
            kind = "steps" if r.tag else "slbi" if r.cfg.optimizer == "slbi" else "plain"
            rec = copy.deepcopy(templates[kind])
            rec.update(experiment=exp.name, label=r.label, config=r.cfg.to_dict(),
                       run=store.run_key(r.cfg.to_dict(), rec["data"], r.tag),
                       created=f"2025-01-01T00:00:{i % 60:02d}+00:00")
            rec["metrics"]["test_acc"] = 0.3 + 0.01 * (i % 10)
            rec.pop("tag", None)
            if r.tag:
                rec["tag"] = r.tag
            store.write(rec, store.run_path(P.results, exp.name, rec["run"]))
            n += 1
    return n


def draw_all(P, names=None) -> dict:
    """Each registered figure function's result for ``P`` (of ``names``)."""
    import matplotlib.pyplot as plt
    out = {}
    for name in sorted(names or FIGURES):
        out[name] = FIGURES[name](P)
        assert out[name] is None or isinstance(out[name], Figure), name
    plt.close("all")
    return out


# Figures that need a measurement made with the weights (not in a run set).
MEASURED = {"bn_surface_1d.png", "bn_surface_2d.png", "slbi_pruning.png",
            "slbi_filters.png", *classification.VIS_FIGURES}
# Figures of the data itself (the synthetic split is always at hand).
DATA = {"data_samples.png", "data_pixel_hist.png", "data_augmentations.png"}


def test_without_results_every_figure_is_none(tmp_path):
    P = get_profile("smoke").with_(root=tmp_path)
    drawn = draw_all(P, set(FIGURES) - DATA)
    assert all(f is None for f in drawn.values()), [n for n, f in drawn.items() if f]


def test_a_partial_run_set_draws_or_says_so(tmp_path, templates, monkeypatch):
    """The first run of each experiment (a budget run stopped early): every
    figure draws or returns None, and the report saves those it drew."""
    P = get_profile("smoke").with_(root=tmp_path)
    assert store_runs(P, templates, lambda exp, runs: runs[:1]) == len(experiments(False))
    drawn = draw_all(P, set(FIGURES) - DATA)
    assert drawn["arch_curves.png"] is not None and drawn["abl_losses.png"] is not None
    assert drawn["bn_surface_1d.png"] is None and drawn["slbi_pruning.png"] is None
    # report.draw_figures (on a few, to keep it quick): drawn ones saved, others not
    few = {"arch_curves.png", "abl_losses.png", "bn_surface_1d.png", "slbi_pruning.png"}
    for name in set(FIGURES) - few:
        monkeypatch.delitem(FIGURES, name)
    out = report.draw_figures(P, log=None)
    # sections that wait for their other runs hold their figures back too
    # (drawn, abl_losses.png would stand on one run of eight)
    assert out == {"arch_curves.png": "drawn", "abl_losses.png": "section pending",
                   "bn_surface_1d.png": "section pending", "slbi_pruning.png": "section pending"}
    assert sorted(p.name for p in P.figures.iterdir()) == ["arch_curves.png"]


def test_every_figure_draws_from_a_tiny_run_set(tmp_path, templates, small_split):
    """Every run of every experiment stored: only the figures of measurements
    made with the weights are missing."""
    P = get_profile("smoke").with_(root=tmp_path)
    assert store_runs(P, templates) > 20
    classification.save_data_summary(small_split, P)
    drawn = draw_all(P)
    missing = sorted(n for n, f in drawn.items() if f is None and n not in MEASURED)
    assert not missing, f"not drawn although their runs are stored: {missing}"


def test_viz_figure_names_an_unknown_figure_and_a_missing_result(tmp_path, capsys):
    P = get_profile("smoke").with_(root=tmp_path)
    with pytest.raises(KeyError, match="no figure 'arch_curve.png' is registered"):
        viz.figure("arch_curve.png", P)
    assert viz.figure("arch_curves.png", P, show=False) is None
    assert "arch_curves.png: its results are not stored yet" in capsys.readouterr().out
    assert viz.figure("arch_curves.png", P, show=False, quiet=True) is None
    assert capsys.readouterr().out == ""


# ---------------------------------------------------------------- the plan names no study


STUDY_WORDS = re.compile(r"classification|batchnorm|dessilbi|course_reports|"
                         r"ARCH_CORE|ARCHITECTURES|ABLATION|VIS_MODELS|VIS_FIGURES|"
                         r"\b\d\d_[a-z]+", re.I)


def _code_words(path) -> list[str]:
    """Identifiers, attributes, imported names and string literals of a
    module (docstrings and comments left out)."""
    tree = ast.parse(path.read_text())
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef,
                                 ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)}
    words = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            words += [getattr(node, "module", None) or ""] + [a.name for a in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docs:
            words.append(node.value)
    return words


def test_plan_names_no_study():
    named = sorted({w for w in _code_words(REPO / "cifar_lib" / "plan.py")
                    if STUDY_WORDS.search(w)})
    assert not named, f"plan.py names studies: {named}"


def test_the_word_check_sees_study_names():
    words = _code_words(REPO / "cifar_lib" / "studies" / "batchnorm" / "runs.py")
    assert {"Experiment", "batchnorm", "04_batchnorm", "BATCHNORM"} <= set(words)
    assert not any("The BatchNorm study's runs" in w for w in words)  # its docstring
    assert any(STUDY_WORDS.search(w) for w in words)


def test_registry_has_no_experiment_tables():
    for name in ("EXPERIMENTS", "TRAINERS", "TAGS", "register_experiment"):
        assert not hasattr(registry, name), name
    source = (REPO / "cifar_lib" / "registry.py").read_text()
    assert not re.search(r"\b(EXPERIMENTS|TRAINERS|TAGS)\s*[:=]", source)
    # sections with no full-profile result first (the GPU issue's order)
    assert registry.PRIORITY[:3] == ("batchnorm", "dessilbi", "core")
    from cifar_lib import plan
    assert plan.PRIORITY is registry.PRIORITY
    assert all(e.group in registry.PRIORITY for e in experiments())

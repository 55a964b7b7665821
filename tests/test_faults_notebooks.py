"""Faults injected into the main job (``python -m cifar_lib notebooks``) on
the smoke profile: a cell that raises, an interrupt, a truncated data cache;
and two runs in a row that must leave every output byte-identical.

A tiny probe notebook (train one small run, draw one figure) stands in for the
study notebooks so that each kernel start costs seconds, not minutes; the
study notebooks themselves are checked the same way in test_notebooks.py.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from cifar_lib import notebooks as nbs
from cifar_lib.__main__ import main
from cifar_lib.profiles import REPO, get_profile

PROBE = [
    ("profile = None", ["parameters"]),
    ("import os\n"
     "import matplotlib.pyplot as plt\n"
     "import cifar_lib as cl\n"
     "from cifar_lib import viz\n"
     "P = cl.get_profile(profile)\n"
     "print(P.name)", []),
    ("if os.environ.get('CIFAR_LIB_TEST_FAULT'):\n"
     "    raise ValueError('injected fault')\n"
     "split = cl.split_data(cl.synthetic_cifar(n_train=160, n_test=40, seed=0), val_size=40)\n"
     "cfg = cl.TrainConfig(model='cnn3', model_kw={'filters': [4, 8, 8]}, lr=0.05,\n"
     "                     batch_size=40, epochs=1, augment='none', scheduler='constant',\n"
     "                     weight_decay=0.0, amp=False)\n"
     "rec = cl.run(cfg, split, 'probe', P)\n"
     "rec['status'], round(rec['metrics']['test_acc'], 4)", []),
    ("fig, ax = plt.subplots()\n"
     "ax.plot([e['train_loss'] for e in rec['history']], 'o', label='train loss')\n"
     "ax.legend()\n"
     "viz.save(fig, P, 'probe.png')", []),
]


def write_probe(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    for i, (src, tags) in enumerate(PROBE):
        cell = nbformat.v4.new_code_cell(src, metadata={"tags": tags})
        cell["id"] = f"probe-{i}"
        nb.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """The smoke profile (in this test's scratch folder) whose main job runs
    only the probe notebook; the report refresh is stubbed (tested elsewhere)."""
    from cifar_lib import report
    path = write_probe(tmp_path / "src" / "07_probe.ipynb")
    monkeypatch.setattr(nbs, "notebooks", lambda only=None: [path])
    P = get_profile("smoke")
    monkeypatch.setattr(report, "refresh_report", lambda profile=None: P.report)
    return P, path, P.root / "notebooks" / path.name


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root`` but the job lock's (``.running/``, ignored by git)."""
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))
            if p.is_file() and ".running" not in p.relative_to(root).parts}


def outputs_text(nb) -> str:
    return json.dumps([c.get("outputs", []) for c in nb.cells])


def test_two_main_job_runs_in_a_row_leave_outputs_identical(probe, capfd):
    P, src, out = probe
    assert main(["notebooks", "--profile", "smoke"]) == 0
    said = capfd.readouterr()  # the kernel's own stderr too (file descriptors)
    assert re.search(r"\[smoke 07_probe \d+:\d\d\] training probe/cnn3-s0-\w+ "
                     r"\(cnn3, 1 epochs\)", said.out), said.out
    assert re.search(r"\] done probe/cnn3-s0-\w+: ok", said.out), said.out
    for noise in nbs.KERNEL_NOISE:
        assert noise not in said.out + said.err
    times = json.loads((P.results / "notebook_times.json").read_text())
    assert list(times["runs"][-1]["times"]) == ["07_probe"]  # it trained: timed
    first = snapshot(P.root)
    assert {"notebooks/07_probe.ipynb", "figures/probe.png"} <= set(first)
    assert any(k.startswith("results/probe/") for k in first)

    nb = nbformat.read(str(out), 4)
    text = out.read_text()
    for noise in ("start_time", "end_time", "duration", "iopub", "Matplotlib"):
        assert noise not in text, noise
    assert str(REPO) not in text and str(P.root) not in text, "absolute path in notebook"
    assert "FigurePath('figures/probe.png')" in outputs_text(nb)
    assert [c["id"] for c in nb.cells] == ["probe-0", nbs.INJECTED_ID, "probe-1",
                                           "probe-2", "probe-3"]
    assert nb.metadata.papermill["input_path"] == "07_probe.ipynb"
    assert not (out.parent / ".running").exists()

    assert main(["notebooks", "--profile", "smoke"]) == 0
    said = capfd.readouterr()
    assert "(nothing trained)" in said.out and "took 0:" in said.out  # last time's
    for noise in nbs.KERNEL_NOISE:
        assert noise not in said.out + said.err
    second = snapshot(P.root)
    changed = [k for k in first if first[k][0] != second.get(k, (None,))[0]]
    assert not changed and set(second) == set(first), changed
    touched = [k for k in first if first[k][1] != second[k][1]]
    assert not touched, f"rewritten with the same bytes: {touched}"


def test_failing_cell_keeps_the_executed_notebook_and_records_the_failure(
        probe, monkeypatch, capsys):
    P, src, out = probe
    out.parent.mkdir(parents=True)
    out.write_text('{"old": "executed notebook"}')
    monkeypatch.setenv("CIFAR_LIB_TEST_FAULT", "1")  # the kernel inherits it
    assert main(["notebooks", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    kept = nbs.failed_dir(P) / "07_probe.ipynb"
    assert "notebook 07_probe failed at cell" in err and "ValueError: injected fault" in err
    assert str(kept) in err
    assert out.read_text() == '{"old": "executed notebook"}', "old notebook replaced"
    assert not (out.parent / ".running").exists()

    failed = nbformat.read(str(kept), 4)
    marked = [c for c in failed.cells if c.metadata.get("papermill", {}).get("status") == "failed"]
    assert len(marked) == 1 and "injected fault" in marked[0].source
    assert marked[0].outputs[-1]["ename"] == "ValueError"
    assert failed.metadata.papermill["exception"] is True

    log = json.loads((P.results / "notebook_times.json").read_text())
    (fail,) = log["failures"]
    assert fail["notebook"] == "07_probe" and fail["error"] == "ValueError: injected fault"
    assert fail["cell"] == marked[0].execution_count
    assert fail["failed_copy"] == "notebooks/failed/07_probe.ipynb"
    assert not log["runs"], "a failed notebook records no time"
    assert not (P.results / "probe").exists()


def test_interrupt_keeps_the_executed_notebook_and_records_it(probe, monkeypatch, capsys):
    """Ctrl-C while a cell runs: papermill has autosaved a partial notebook."""
    P, src, out = probe
    out.parent.mkdir(parents=True)
    out.write_text("old")

    def interrupted(nb, profile, tmp, timeout, **kw):
        partial = nbformat.read(str(nb), 4)
        partial.cells[2].metadata["papermill"] = {"status": "running"}
        partial.cells[2]["execution_count"] = 3
        nbformat.write(partial, str(tmp))
        raise KeyboardInterrupt
    monkeypatch.setattr(nbs, "_papermill", interrupted)
    with pytest.raises(KeyboardInterrupt):
        nbs.run_notebooks("smoke")
    said = capsys.readouterr().out
    assert "interrupted: notebook 07_probe failed at cell 3 (KeyboardInterrupt)" in said
    assert out.read_text() == "old"
    kept = nbs.failed_dir(P) / "07_probe.ipynb"
    assert nbformat.read(str(kept), 4).cells[2].metadata.papermill["status"] == "running"
    (fail,) = json.loads((P.results / "notebook_times.json").read_text())["failures"]
    assert (fail["cell"], fail["error"]) == (3, "KeyboardInterrupt")
    assert not (out.parent / ".running").exists()


def test_truncated_cache_is_rebuilt_for_a_profile(tmp_path):
    """A cache cut short (disk full, killed copy) next to an intact source."""
    from test_data import write_image_folder

    from cifar_lib import experiments
    from cifar_lib.data import cache_dir
    root = write_image_folder(tmp_path / "imgs")
    P = get_profile("cpu").with_(root=tmp_path / "cpu", train_size=10, val_size=10,
                                 test_size=10)
    first = experiments.profile_split(P, root)
    (cache,) = cache_dir().glob("*.pt")
    cache.write_bytes(cache.read_bytes()[:1000])
    experiments._split.cache_clear()
    with pytest.warns(UserWarning, match="unreadable.*rebuilding it from the source"):
        again = experiments.profile_split(P, root)
    assert again.describe() == first.describe()
    assert again.train[0].equal(first.train[0]) and again.test[1].equal(first.test[1])
    experiments._split.cache_clear()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt cache reads cleanly
        experiments.profile_split(P, root)


def test_strip_source_leaves_only_the_parameters_cell(probe):
    """What the full profile once wrote over a committed notebook (the
    injected "# Parameters" cell, outputs, papermill's metadata) is found,
    and stripping it leaves the cell sources as they were."""
    P, src, out = probe
    assert main(["notebooks", "--profile", "smoke"]) == 0
    executed = nbformat.read(str(out), 4)
    problems = nbs.source_problems(executed)
    assert any("injected" in p for p in problems) and any("outputs" in p for p in problems)
    stripped = nbs.strip_source(executed)
    assert nbs.source_problems(stripped) == []
    assert [c.source for c in stripped.cells] == [c.source for c in nbformat.read(str(src), 4).cells]
    assert nbformat.read(str(src), 4).cells[0].source == "profile = None", "source untouched"

"""Every notebook runs top to bottom in the smoke profile; the report renders."""
import json
import re

import nbformat
import pytest

from cifar_lib import notebooks as nbs
from cifar_lib.profiles import get_profile
from cifar_lib.report import check_report, refresh_report

NOTEBOOKS = nbs.notebooks()


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Run all notebooks once, in order, into one smoke scratch root
    (03 reuses 01's runs); {name: (seconds, output path, error or None)}."""
    root = tmp_path_factory.mktemp("smoke")
    P = get_profile("smoke").with_(root=root)
    out = {}
    for path in NOTEBOOKS:
        dest = root / "notebooks" / path.name
        try:
            out[path.stem] = (nbs.execute(path, P, dest, timeout=600), dest, None)
        except Exception as e:  # papermill's error names the failing cell
            out[path.stem] = (None, dest, e)
    return P, out


def _ran_with_profile(nb) -> str | None:
    return nb.metadata.get("papermill", {}).get("parameters", {}).get("profile")


def test_notebooks_are_numbered_and_clean():
    """Every committed notebook is a source: exactly one cell tagged
    ``parameters`` whose default follows the environment (``profile =
    None``), no injected parameters cell, no outputs (module doc of
    cifar_lib.notebooks); executed copies live under each profile's folder."""
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(len(NOTEBOOKS))]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, 4)
        assert nbs.source_problems(nb) == [], f"{path.name}: {nbs.source_problems(nb)}"
        (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert re.match(r"profile = None\b", params.source), params.source
        assert 'profile = "' not in "".join(c.source for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_profile(path, executed):
    _, results = executed
    seconds, out, error = results[path.stem]
    assert error is None, f"{path.name} failed: {error}"
    nb = nbformat.read(out, 4)
    assert _ran_with_profile(nb) == "smoke"
    assert out.stat().st_size < 2_000_000, "images belong in figures/, not the notebook"
    print(f"{path.name}: {seconds:.0f} s")


def test_smoke_report_embeds_what_the_notebooks_drew(executed):
    P, results = executed
    assert all(err is None for _, _, err in results.values())
    path = refresh_report(P)
    assert path == P.report and path.is_file()
    assert check_report(path, P) == []
    text = path.read_text()
    drawn = sorted(p.name for p in P.figures.glob("*.png"))
    assert len(drawn) >= 30, drawn
    missing = [name for name in drawn if f"figures/{name}" not in text]
    assert not missing, f"figures drawn but not in report.md: {missing}"
    assert "is not drawn yet" not in text
    assert "No results yet" not in text  # every table of every section filled
    assert "Pending in" not in text and "-->n/a<!--" not in text  # no section waits
    summary = json.loads((P.results / "summaries" / "data.json").read_text())
    assert summary["sizes"]["train"] == P.train_size


def test_executed_notebooks_carry_no_clone_paths_or_run_times(executed):
    """What the main job commits must not change with the clone's folder or
    the clock: no absolute paths, no papermill or kernel time stamps, the
    source notebook's cell ids."""
    from cifar_lib.profiles import REPO
    P, results = executed
    for path in NOTEBOOKS:
        _, out, error = results[path.stem]
        if error is not None:
            continue  # reported by test_notebook_runs_in_smoke_profile
        text = out.read_text()
        for absolute in {str(REPO), str(P.root), str(P.root.resolve())}:
            assert absolute not in text, f"{path.name} holds {absolute}"
        assert "PosixPath(" not in text, f"{path.name} prints a full path"
        for noise in ('"start_time"', '"end_time"', '"duration"', "iopub.", "shell.execute"):
            assert noise not in text, f"{path.name} keeps {noise}"
        source_ids = [c["id"] for c in nbformat.read(path, 4).cells]
        ids = [c["id"] for c in nbformat.read(out, 4).cells]
        assert [i for i in ids if i != nbs.INJECTED_ID] == source_ids
        assert ids.count(nbs.INJECTED_ID) == 1


def test_rerunning_the_main_job_changes_no_file(executed):
    """With every result on disk, the main job (here 00 and 01) rewrites the
    same bytes: executed notebooks, figures, results, times and report."""
    import os
    P, results = executed
    if any(results[k][2] is not None for k in ("00_data", "01_architectures")):
        pytest.skip("a notebook failed; see test_notebook_runs_in_smoke_profile")
    from cifar_lib.experiments import environment, write_json
    times = P.results / "notebook_times.json"
    if not times.is_file():  # the fixture ran the notebooks without the main job
        write_json({"runs": [{"started": "earlier", "device": environment()["device_name"],
                              "times": {"00_data": 1.0, "01_architectures": 2.0}}]}, times)
    refresh_report(P)

    def snap():  # all but the job lock's folder (.running/, ignored by git)
        return {p.relative_to(P.root).as_posix(): p.read_bytes()
                for p in sorted(P.root.rglob("*"))
                if p.is_file() and ".running" not in p.relative_to(P.root).parts}
    before = snap()
    mtimes = {k: os.stat(P.root / k).st_mtime_ns for k in before}
    assert nbs.run_notebooks(P, only=["00", "01"]) == {}, "no time recorded: nothing trained"
    after = snap()
    assert set(after) == set(before), sorted(set(after) ^ set(before))
    changed = [k for k in before if after[k] != before[k]]
    assert not changed, f"changed by a re-run: {changed}"
    figures = [k for k in before if k.startswith("figures/")]
    assert figures and all(os.stat(P.root / k).st_mtime_ns == mtimes[k] for k in figures)


def test_library_names_the_notebooks_and_readme_use():
    """``cl.summary`` (README) exists; an unknown model offers only listed names."""
    import cifar_lib as cl
    from cifar_lib.models import list_models, model_aliases
    s = cl.summary(cl.create_model("cnn3", filters=[4, 8, 8]))
    assert s.params == cl.count_params(cl.create_model("cnn3", filters=[4, 8, 8]))
    with pytest.raises(ValueError) as e:
        cl.create_model("resnet19")
    offered = str(e.value).split("registered models: ")[1].split(", ")
    assert offered == list_models()
    assert not set(model_aliases()) & set(offered)  # e.g. canet: listed as canet_base
    assert "did you mean resnet18" in str(e.value)

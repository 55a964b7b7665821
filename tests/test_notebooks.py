"""Every notebook runs top to bottom in the smoke profile; the report renders."""
import json

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
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(len(NOTEBOOKS))]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, 4)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, f"{path.name} needs one cell tagged 'parameters'"
        assert "profile = None" in params[0].source
        if _ran_with_profile(nb) != "full":  # only the full-profile record keeps outputs
            outputs = [c for c in nb.cells if c.cell_type == "code" and c.outputs]
            assert not outputs, f"{path.name} is committed with outputs"


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
    summary = json.loads((P.results / "summaries" / "data.json").read_text())
    assert summary["sizes"]["train"] == P.train_size

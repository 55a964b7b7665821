"""Every notebook runs top to bottom in the smoke profile; the report renders."""
import json
import os

import nbformat
import pytest

from cifar_lib import notebooks as nbs
from cifar_lib.profiles import get_profile
from cifar_lib.report import check_report, refresh_report

NOTEBOOKS = nbs.notebooks()


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One scratch root shared by the notebooks (03 reuses 01's runs)."""
    root = tmp_path_factory.mktemp("smoke")
    old = os.environ.get("CIFAR_LIB_SCRATCH")
    os.environ["CIFAR_LIB_SCRATCH"] = str(root)
    yield get_profile("smoke")
    if old is None:
        os.environ.pop("CIFAR_LIB_SCRATCH")
    else:
        os.environ["CIFAR_LIB_SCRATCH"] = old


def test_notebooks_are_numbered_and_clean():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(len(NOTEBOOKS))]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, 4)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, f"{path.name} needs one cell tagged 'parameters'"
        assert "profile = None" in params[0].source
        if os.environ.get("CIFAR_LIB_ALLOW_OUTPUTS") != "1":
            outputs = [c for c in nb.cells if c.cell_type == "code" and c.outputs]
            assert not outputs, f"{path.name} is committed with outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_profile(path, smoke, tmp_path):
    out = tmp_path / path.name
    seconds = nbs.execute(path, smoke, out, timeout=600)
    nb = nbformat.read(out, 4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    assert out.stat().st_size < 2_000_000, "images belong in figures/, not the notebook"
    print(f"{path.name}: {seconds:.0f} s")


def test_smoke_report_embeds_what_the_notebooks_drew(smoke):
    if not smoke.figures.is_dir():
        pytest.skip("runs after the notebook tests")
    path = refresh_report(smoke)
    assert path == smoke.report and path.is_file()
    assert check_report(path, smoke) == []
    text = path.read_text()
    drawn = sorted(p.name for p in smoke.figures.glob("*.png"))
    assert drawn, "the smoke notebooks drew no figures"
    missing = [name for name in drawn if f"figures/{name}" not in text]
    assert not missing, f"figures drawn but not in report.md: {missing}"
    assert "No results yet" not in text.split("## 2.")[0]
    summary = json.loads((smoke.results / "summaries" / "data.json").read_text())
    assert summary["sizes"]["train"] == smoke.train_size

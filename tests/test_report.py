"""report.md blocks: rendering, refreshing, and the committed reports' checks."""
import pandas as pd
import pytest

from cifar_lib import report
from cifar_lib.profiles import REPO, get_profile


@pytest.fixture
def prof(tmp_path):
    return get_profile("smoke").with_(root=tmp_path)


@pytest.fixture
def registered():
    report.TABLES["_t"] = lambda P: pd.DataFrame({"a": [1, 2], "b|c": [0.5, "x|y"]})
    report.TABLES["_empty"] = lambda P: None
    report.VALUES["_v"] = lambda P: "42.0"
    yield
    for reg, key in ((report.TABLES, "_t"), (report.TABLES, "_empty"), (report.VALUES, "_v")):
        reg.pop(key)


def test_markdown_table_escapes_pipes_and_formats_floats():
    md = report.markdown_table(pd.DataFrame({"x": [0.123456, float("nan")], "y|z": ["a|b", 3]}))
    assert md.splitlines() == ["| x | y\\|z |", "|---|---|", "| 0.1235 | a\\|b |", "|  | 3 |"]


def test_refresh_fills_blocks_and_links_existing_figures(prof, registered, tmp_path):
    (prof.figures).mkdir(parents=True)
    (prof.figures / "here.png").write_bytes(b"png")
    template = tmp_path / "template.md"
    template.write_text(
        "x <!-- BEGIN value:_v -->old<!-- END value:_v --> y\n"
        "<!-- BEGIN table:_t -->\nstale\n<!-- END table:_t -->\n"
        "<!-- BEGIN table:_empty -->\n<!-- END table:_empty -->\n"
        "<!-- BEGIN figure:here.png | A caption -->\n<!-- END figure:here.png -->\n"
        "<!-- BEGIN figure:gone.png -->\n<!-- END figure:gone.png -->\n")
    out = report.refresh_report(prof, template)
    text = out.read_text()
    assert out == prof.report
    assert "x <!-- BEGIN value:_v -->42.0<!-- END value:_v --> y" in text
    assert "| a | b\\|c |\n|---|---|\n| 1 | 0.5 |\n| 2 | x\\|y |" in text
    assert "No results yet" in text
    assert "![A caption](figures/here.png)" in text
    assert "`gone.png` is not drawn yet" in text
    assert report.check_report(out, prof) == []
    # refreshing again is a fixed point
    assert report.refresh_text(text, prof, out.parent) == text


def test_check_report_finds_missing_images_and_stale_blocks(prof, registered):
    prof.root.mkdir(parents=True, exist_ok=True)
    path = prof.report
    path.write_text("![x](figures/nope.png)\n<!-- BEGIN value:_v -->41<!-- END value:_v -->\n")
    problems = report.check_report(path, prof)
    assert any("nope.png does not exist" in p for p in problems)
    assert any("value:_v is stale" in p for p in problems)


def test_unknown_block_name_is_a_clear_error(prof):
    with pytest.raises(KeyError, match="no registered function"):
        report.render_block("table", "no_such_table", None, prof, prof.root)


@pytest.mark.parametrize("name,path", [("full", REPO / "report.md"),
                                       ("cpu", REPO / "runs" / "cpu" / "report.md"),
                                       ("full", REPO / "README.md")])
def test_committed_reports_match_their_results(name, path):
    """Every image link exists and every block equals a fresh render."""
    if not path.is_file():
        pytest.skip(f"no {name}-profile report committed")
    assert report.check_report(path, get_profile(name)) == []


@pytest.mark.parametrize("name", ["full", "cpu"])
def test_checkpoints_on_disk_match_the_manifest(name):
    """Every checkpoint kept under a profile is listed with its size and sha256."""
    import hashlib
    import json
    P = get_profile(name)
    files = sorted(P.weights.rglob("*.pt"))
    files = [f for f in files if not f.name.endswith(".last.pt")]
    if not files:
        pytest.skip(f"no {name}-profile checkpoints here")
    manifest = json.loads((P.weights / "manifest.json").read_text())
    for f in files:
        entry = manifest[str(f.relative_to(P.root))]
        assert entry["bytes"] == f.stat().st_size
        assert entry["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()

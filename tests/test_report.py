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
    report.VALUE_SOURCES["_test"] = lambda P: {"_v": "42.0", "_none": None}
    yield
    for reg, key in ((report.TABLES, "_t"), (report.TABLES, "_empty"),
                     (report.VALUE_SOURCES, "_test")):
        reg.pop(key)


def test_values_merge_the_sources_and_refuse_a_name_given_twice(prof, registered):
    assert report.values(prof)["_v"] == "42.0"
    assert report.render_block("value", "_none", None, prof, prof.root) == "n/a"
    with pytest.raises(KeyError, match="value:_nope is in no study"):
        report.render_block("value", "_nope", None, prof, prof.root)
    report.VALUE_SOURCES["_again"] = lambda P: {"_v": "1"}
    try:
        with pytest.raises(ValueError, match=r"\['_v'\] are given twice"):
            report.values(prof)
    finally:
        report.VALUE_SOURCES.pop("_again")


def test_markdown_table_escapes_pipes_and_formats_floats():
    md = report.markdown_table(pd.DataFrame({"x": [0.123456, float("nan")], "y|z": ["a|b", 3]}))
    assert md.splitlines() == ["| x | y\\|z |", "|---|---|", "| 0.1235 | a\\|b |", "|  | 3 |"]
    # one number of decimals per column where at most 2 are needed
    md = report.markdown_table(pd.DataFrame({"acc": [33.6, 33.0, 100.0], "v": [16.7, 15.93, 2.0],
                                             "m": [0.4418, 10.61, 2.0], "n": [1.0, 2.0, 3.0]}))
    assert md.splitlines()[2:] == ["| 33.6 | 16.70 | 0.4418 | 1 |", "| 33.0 | 15.93 | 10.61 | 2 |",
                                   "| 100.0 | 2.00 | 2 | 3 |"]


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
    drew = []
    real = report.draw_figures
    report.draw_figures = lambda P, **kw: drew.append(P)   # every registered figure
    try:
        assert report.refresh_report(prof, template, figures=False) == prof.report
        assert drew == []
        out = report.refresh_report(prof, template)
    finally:
        report.draw_figures = real
    assert drew == [prof]
    text = out.read_text()
    assert out == prof.report
    assert "x <!-- BEGIN value:_v -->42.0<!-- END value:_v --> y" in text
    assert "| a | b\\|c |\n|---|---|\n| 1 | 0.5 |\n| 2 | x\\|y |" in text
    assert "No results yet" in text
    assert "![A caption](figures/here.png)" in text
    assert "`gone.png` is not drawn yet" in text
    assert report.check_report(out, prof, template) == []
    # refreshing again is a fixed point
    assert report.refresh_text(text, prof, out.parent) == text


def test_check_report_finds_missing_images_and_stale_blocks(prof, registered):
    prof.root.mkdir(parents=True, exist_ok=True)
    path = prof.report
    text = "![x](figures/nope.png)\n<!-- BEGIN value:_v -->41<!-- END value:_v -->\n"
    path.write_text(text)
    template = prof.root / "template.md"
    template.write_text(text)
    problems = report.check_report(path, prof, template)
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
    # README.md is its own template (refreshed in place)
    template = path if path.name == "README.md" else report.TEMPLATE
    assert report.check_report(path, get_profile(name), template) == []


def test_committed_full_report_says_no_n_a():
    """A section still missing results is one line, never a sentence with "n/a"."""
    text = (REPO / "report.md").read_text()
    assert not [m.group(2) for m in report.BLOCK.finditer(text)
                if m.group(1) == "value" and m.group(4) == report.MISSING]


SECTIONED = ("intro <!-- BEGIN value:_v --><!-- END value:_v -->\n\n"
             "## 2. Done: it's here\n"
             "<!-- BEGIN section:done | exp_a -->\n"
             "Has <!-- BEGIN value:_v --><!-- END value:_v -->.\n"
             "<!-- END section:done -->\n\n"
             "## 3. Not yet: the rest\n"
             "<!-- BEGIN section:later | exp_b exp_c:x,y -->\n"
             "Lacks <!-- BEGIN value:_none --><!-- END value:_none -->.\n"
             "<!-- END section:later -->\n\n"
             "## 4. Empty tables\n"
             "<!-- BEGIN section:empty | exp_b -->\n"
             "<!-- BEGIN table:_empty -->\n<!-- END table:_empty -->\n"
             "<!-- END section:empty -->\n")


class _Job:
    def __init__(self, experiment, label, done, est_s=30.0, also=(), group="core"):
        self.experiment, self.label, self.done = experiment, label, done
        self.est_s, self.also, self.group = est_s, list(also), group


def test_pending_sections_collapse_to_one_line_linking_the_cpu_report(prof, registered,
                                                                      monkeypatch):
    jobs = [_Job("exp_a", "a", True), _Job("exp_b", "b", False), _Job("exp_b", "b2", True),
            _Job("exp_c", "x", False, group="zoo"), _Job("exp_c", "z", False)]
    monkeypatch.setattr(report, "planned_runs", lambda P: jobs)
    full = prof.with_(name="full")
    text = report.refresh_text(SECTIONED, full, full.root)
    body = {m.group(1): m.group(3) for m in report.SECTION.finditer(text)}
    # a section with its results renders in full
    assert body["done"] == "\nHas <!-- BEGIN value:_v -->42.0<!-- END value:_v -->.\n"
    # a section missing a value is one line: what is pending (exp_b's runs,
    # exp_c's labelled x or y but not z), the estimate, the cpu report's section
    later = body["later"].strip()
    assert "\n" not in later and "Lacks" not in later
    assert later.startswith("*Pending in the full profile: 2 of its 3 runs have not trained "
                            "yet (about 1.0 min on an H100 by the plan; `python -m cifar_lib "
                            "run --profile full --groups core zoo` trains them).")
    assert "report.md#3-not-yet-the-rest) shows it at reduced scale.*" in later
    # tables that are all empty collapse too; no "n/a", no empty-table line
    assert body["empty"].strip().startswith("*Pending in the full profile: 1 of its 2 runs")
    assert "#4-empty-tables)" in body["empty"]
    assert "n/a" not in text and "No results yet" not in text
    # the markers stay, and refreshing the template again gives the same text
    assert len(body) == 3
    assert report.refresh_text(SECTIONED, full, full.root) == text
    # a section with every value filled still collapses while one of its
    # runs is pending: no table or reading stands on part of its runs
    jobs.append(_Job("exp_a", "a2", False))
    text = report.refresh_text(SECTIONED, full, full.root)
    done = {m.group(1): m.group(3) for m in report.SECTION.finditer(text)}["done"]
    assert done.strip().startswith("*Pending in the full profile: 1 of its 2 runs has not "
                                   "trained yet")
    assert "--groups core` trains it)" in done


def test_cpu_profile_pending_section_has_no_link(registered, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "planned_runs", lambda P: [])
    cpu = get_profile("cpu").with_(root=tmp_path)
    text = report.refresh_text(SECTIONED, cpu, cpu.root)
    assert "*Pending in the cpu profile: its runs are in results/ but its measurements" in text
    assert "cpu-profile report" not in text


def test_optional_block_is_left_out_where_its_tables_are_empty(prof, registered, monkeypatch):
    """A part only some profiles have results for (the old baseline's
    ablations) renders in full where they exist and to nothing, heading
    included, where they do not: no placeholder table, no pending line."""
    monkeypatch.setattr(report, "planned_runs", lambda P: [])
    text = ("# Top\n\n<!-- BEGIN optional:extra -->\n## Extra\n\n"
            "Reading: <!-- BEGIN value:_v --><!-- END value:_v -->.\n\n"
            "<!-- BEGIN table:{} -->\n<!-- END table:{} -->\n"
            "<!-- END optional:extra -->\n## Next\n")
    shown = report.refresh_text(text.format("_t", "_t"), prof, prof.root)
    assert "## Extra" in shown and "| 1 | 0.5 |" in shown and "Reading: " in shown
    left_out = report.refresh_text(text.format("_empty", "_empty"), prof, prof.root)
    assert left_out == ("# Top\n\n<!-- BEGIN optional:extra -->\n<!-- END optional:extra -->"
                        "\n## Next\n")
    # refreshing again finds the markers and gives the same text
    assert report.refresh_text(left_out, prof, prof.root) == left_out
    assert report.refresh_text(shown, prof, prof.root) == shown


def test_figures_are_numbered_by_the_captions_shown():
    """A pending section takes its captions with it: the figures after it
    are numbered on (no gap), and so is every reference to them."""
    text = ("*Figure 1.1. a.*\n\nsee Figure 1.9 and Figure 2.3\n\n*Figure 1.9. b.*\n"
            "*Figure 1.10. c.*\n*Figure 2.3. d (unlike Figure 1.10).*\n")
    assert report.number_figures(text) == (
        "*Figure 1.1. a.*\n\nsee Figure 1.2 and Figure 2.1\n\n*Figure 1.2. b.*\n"
        "*Figure 1.3. c.*\n*Figure 2.1. d (unlike Figure 1.3).*\n")
    # a reference whose caption is not shown keeps its number; numbered text stays
    assert report.number_figures("Figure 1.5, *Figure 1.1. x*") == "Figure 1.5, *Figure 1.1. x*"
    assert report.number_figures(report.number_figures(text)) == report.number_figures(text)
    assert report.number_figures("*Figure A.3. x*\n*Figure A.7. y*") == \
        "*Figure A.1. x*\n*Figure A.2. y*"


@pytest.mark.parametrize("path", [REPO / "report.md", REPO / "runs" / "cpu" / "report.md"])
def test_committed_reports_number_their_figures_without_gaps(path):
    import re
    seen = [(c, int(n)) for c, n in re.findall(r"^\*Figure (\d+|[A-Z])\.(\d+)\.",
                                               path.read_text(), re.M)]
    for chapter in {c for c, _ in seen}:
        nums = [n for c, n in seen if c == chapter]
        assert nums == list(range(1, len(nums) + 1)), (path.name, chapter, nums)


def test_anchor_is_githubs():
    assert report.anchor("1.3 Training choices, one factor at a time") == \
        "13-training-choices-one-factor-at-a-time"
    assert report.anchor("The training budget's effect") == "the-training-budgets-effect"
    assert report.anchor("3. DessiLBI: structural sparsity") == "3-dessilbi-structural-sparsity"


@pytest.mark.parametrize("path", [REPO / "report.md", REPO / "runs" / "cpu" / "report.md"])
def test_no_value_marker_starts_a_line(path):
    """A line that starts with ``<!--`` opens an HTML block under CommonMark
    (which GitHub follows): the sentence around a value would break there,
    and its Markdown would not render. Each value sits inside its line."""
    starts = [n for n, line in enumerate(path.read_text().splitlines(), 1)
              if line.lstrip().lstrip("-*+ ").startswith("<!-- BEGIN value:")]  # list items too
    assert not starts, f"{path.name}: value markers start lines {starts}"


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


# ---------------------------------------------------------------- notebook times


def test_times_table_latest_is_per_notebook(prof):
    """Only notebooks that trained are recorded by a run: a notebook missing
    from the last run keeps its latest recorded time."""
    import json
    prof.results.mkdir(parents=True)
    (prof.results / "notebook_times.json").write_text(json.dumps({"runs": [
        {"started": "a", "device": "cpu", "times": {"00_data": 60, "01_arch": 600}},
        {"started": "b", "device": "cpu", "times": {"01_arch": 300}}],
        "failures": [{"notebook": "02_x", "cell": 3, "error": "ValueError: x"}]}))
    df = report.notebook_times(prof)
    rows = {r["notebook"]: r for r in df.to_dict("records")}
    assert rows["00_data.ipynb"]["latest (min)"] == "1.0"
    assert rows["01_arch.ipynb"]["latest (min)"] == "5.0"
    assert rows["01_arch.ipynb"]["longest (min)"] == "10.0"
    assert rows["all"]["latest (min)"] == "6.0"
    assert "02_x.ipynb" not in rows  # a failure has no time


# ---------------------------------------------------------------- figures


def _mpl():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _record(name, losses, status="ok", diverged_at=None):
    h = [{"epoch": i + 1, "train_loss": l, "val_loss": 1.1 * l, "train_acc": 0.1 + 0.05 * i,
          "val_acc": 0.1 + 0.04 * i, "lr": 0.1} for i, l in enumerate(losses)]
    return {"run": name, "history": h, "status": status, "diverged_at": diverged_at}


def _inside(inner, outer, tol=1.0) -> bool:
    return (inner.x0 >= outer.x0 - tol and inner.y0 >= outer.y0 - tol
            and inner.x1 <= outer.x1 + tol and inner.y1 <= outer.y1 + tol)


def test_saved_figures_are_reproducible_and_carry_no_metadata(prof):
    from cifar_lib import viz
    plt = _mpl()
    for name in ("a.png", "b.pdf", "c.svg"):
        blobs = []
        for _ in range(2):
            fig, ax = plt.subplots()
            ax.plot([0, 1], [1, 0], label="line")
            ax.legend()
            path = viz.save(fig, prof, name, show=False)
            blobs.append(path.read_bytes())
        assert blobs[0] == blobs[1], f"{name} differs between two saves"
        assert b"Matplotlib" not in blobs[0] and b"matplotlib.org" not in blobs[0], name
        assert b"CreationDate" not in blobs[0], name
    assert sorted(p.name for p in prof.figures.iterdir()) == ["a.png", "b.pdf", "c.svg"]
    # a save with the same bytes leaves the file (and its mtime) alone
    before = (prof.figures / "a.png").stat().st_mtime_ns
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0], label="line")
    ax.legend()
    viz.save(fig, prof, "a.png", show=False)
    assert (prof.figures / "a.png").stat().st_mtime_ns == before


def test_saved_figure_path_prints_without_the_clone_path(prof):
    from cifar_lib import viz
    plt = _mpl()
    path = viz.save(plt.figure(), prof, "x.png", show=False)
    assert path.is_file() and str(path) == str(prof.figures / "x.png")  # opens as usual
    assert repr(path) == "FigurePath('figures/x.png')"
    inside = viz.FigurePath(REPO / "runs" / "cpu" / "figures" / "arch_lr.png")
    assert repr(inside) == "FigurePath('runs/cpu/figures/arch_lr.png')"
    assert str(REPO) not in repr(inside) and str(prof.root) not in repr(path)


def test_learning_curves_keep_legend_and_title_inside_the_figure():
    from cifar_lib import viz
    _mpl()
    recs = [_record(f"model{i}", [2.3 - 0.2 * j - 0.05 * i for j in range(4)])
            for i in range(9)]
    fig = viz.learning_curves(recs, title="Architectures")
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    (legend,) = fig.legends
    box = legend.get_window_extent(r)
    assert _inside(box, fig.bbox), f"legend {box} outside the figure {fig.bbox}"
    title = fig._suptitle.get_window_extent(r)
    assert _inside(title, fig.bbox) and not title.overlaps(box)
    for ax in fig.axes:
        assert not ax.get_window_extent(r).overlaps(box), "legend covers a panel"


def test_curves_of_runs_validated_once_draw_that_value_beside_the_training_curve():
    """The lean loop validates once, after training: loss and accuracy side
    by side, the validation value an open diamond at the last epoch on the
    training curve's axes (runs set apart), a run that validates every
    epoch a dashed line; the legend says which is which."""
    from cifar_lib import viz
    _mpl()
    recs = [_record(f"m{i}", [2.3, 2.0, 1.7, 1.4]) for i in range(3)]
    for r in recs[:2]:          # the lean loop: validation after the last epoch only
        for e in r["history"][:-1]:
            e.pop("val_loss"), e.pop("val_acc")
    fig = viz.learning_curves(recs)
    loss, acc = fig.axes
    assert (loss.get_ylabel(), acc.get_ylabel()) == ("loss", "accuracy (%)")
    diamonds = [ln for ln in acc.get_lines() if ln.get_marker() == "D"]
    xs = [ln.get_xdata()[0] for ln in diamonds]
    assert len(xs) == 2 and len(set(xs)) == 2 and max(abs(x - 4) for x in xs) < 0.5
    dashed = [ln for ln in acc.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and list(dashed[0].get_xdata()) == [1, 2, 3, 4]  # the third run
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"training, per epoch", "validation, every epoch",
            "validation, once after training"} <= set(names)
    fig.canvas.draw()
    ticks = [t.get_text() for t in acc.get_xticklabels() if t.get_text()]
    assert "1.5" not in ticks and "2" in ticks                     # whole epochs
    # every run validated every epoch: the four panels as before
    assert len(viz.learning_curves([_record("m", [2.3, 2.0, 1.7])]).axes) == 4


def test_point_labels_of_the_accuracy_figure_do_not_overlap():
    import pandas as pd
    from cifar_lib import viz
    _mpl()
    df = pd.DataFrame({"label": ["cnn3", "fastnet", "vgg_a_bn", "resnet_s2", "lenet",
                                 "CNN 64-128-256 + FC head"],
                       "params": [114e3, 127e3, 613e3, 692e3, 62e3, 2.6e6],
                       "test_acc_mean": [0.586, 0.589, 0.536, 0.531, 0.365, 0.55],
                       "test_acc_std": [float("nan")] * 6})
    fig = viz.accuracy_vs_params(df)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(r) for t in fig.axes[0].texts]
    assert len(boxes) == 6
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    frame = fig.axes[0].get_window_extent(r)    # the long label at the right end stays inside
    assert all(viz._within(b, frame) for b in boxes)


@pytest.mark.parametrize("losses", [[2.3, 2.0, 1.7, 1.4], [2.3, 0.5, 0.1, 0.02]])
def test_loss_axes_show_at_least_three_labelled_ticks(losses):
    from cifar_lib import viz
    _mpl()
    fig = viz.learning_curves([_record("m", losses)])
    fig.canvas.draw()
    for ax in fig.axes[:2]:  # train and validation loss
        lo, hi = ax.get_ylim()
        labels = [t.get_text() for t in ax.get_yticklabels()
                  if lo <= t.get_position()[1] <= hi and t.get_text()]
        assert len(labels) >= 3, (ax.get_yscale(), labels)
        assert not any("^" in t for t in labels), "plain numbers, not 10^x"


def test_run_diverging_in_its_first_epoch_is_drawn_and_labelled():
    from cifar_lib import viz
    _mpl()
    recs = [_record("ok", [2.3, 2.0]),
            _record("boom", [], "diverged", {"epoch": 0, "step": 3})]
    fig = viz.learning_curves(recs)
    fig.canvas.draw()
    colour = "C1"
    for ax in fig.axes:
        marks = [ln for ln in ax.get_lines() if ln.get_marker() == "x"
                 and ln.get_color() == colour]
        assert marks, f"no mark for the diverged run on {ax.get_ylabel()}"
        x, y = marks[0].get_xydata()[0]
        assert x == 1 and y == y, "at epoch 1, a finite point"
        assert ax.get_xlim()[0] < 1 < ax.get_xlim()[1] + 1e-9
        assert any("diverged in epoch 1" in t.get_text() for t in ax.texts)
    assert "boom (diverged)" in [t.get_text() for t in fig.legends[0].get_texts()]


def _boxes_apart(texts, r):
    boxes = [t.get_window_extent(r) for t in texts if t.get_text()]
    return all(not a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_cam_grid_row_labels_and_titles_are_readable():
    import torch
    from cifar_lib import viz
    _mpl()
    imgs = torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8)
    maps = {f"{m} {k}": torch.rand(8, 32, 32) for m in ("resnet18", "fastnet")
            for k in ("gradcam", "gradcam++")}
    titles = ["airplane->airplane", "automobile->truck"] * 4
    fig = viz.cam_grid(imgs, maps, titles)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.images]
    rows = [ax.yaxis.label for ax in axes if ax.get_ylabel()]
    assert len(rows) == 2 * (1 + len(maps))       # 8 images: two blocks of at most 5
    assert fig.get_figwidth() < 10
    assert all(t.get_fontsize() >= 8 for t in rows)
    assert _boxes_apart(rows, r), "row labels overlap"
    heads = [ax.title for ax in axes if ax.get_title()]
    assert len(heads) == 8 and all(t.get_fontsize() >= 8 for t in heads)
    assert _boxes_apart(heads, r), "titles overlap"
    for t in rows + heads:
        assert _inside(t.get_window_extent(r), fig.bbox)


def test_image_grid_suptitle_names_the_model_without_covering_titles():
    import torch
    from cifar_lib import viz
    _mpl()
    imgs = torch.randint(0, 255, (10, 3, 32, 32), dtype=torch.uint8)
    titles = ["automobile->truck 0.99"] * 10
    fig = viz.image_grid(imgs, titles, ncols=5, size=1.5,
                         suptitle="ResNet-18: most confident mistakes")
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    sup = fig._suptitle.get_window_extent(r)
    assert fig._suptitle.get_text().startswith("ResNet-18")
    assert _inside(sup, fig.bbox)
    heads = [ax.title for ax in fig.axes if ax.get_title()]
    assert not any(sup.overlaps(t.get_window_extent(r)) for t in heads)
    assert _boxes_apart(heads, r), "titles overlap"


def test_sample_grid_names_each_class_row_once_at_a_readable_size():
    import torch
    from cifar_lib import viz
    _mpl()
    imgs = torch.randint(0, 255, (20, 3, 32, 32), dtype=torch.uint8)
    names = ["cat"] * 10 + ["dog"] * 10
    fig = viz.image_grid(imgs, names, ncols=10, row_labels=["cat", "dog"])
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["cat", "dog"]
    assert not any(ax.get_title() for ax in fig.axes)            # no title per image
    assert all(ax.yaxis.label.get_fontsize() >= 10 for ax in fig.axes if ax.get_ylabel())

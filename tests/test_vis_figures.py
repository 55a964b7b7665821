"""Notebook 03's figures drawn from its stored measurement (no weights):
the stored data is JSON-safe and small, each registered figure draws from
it (None without it), the same bytes every time, and again after its PNGs
are gone. Tiny random models stand in for the trained ones."""
import io
import json

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from cifar_lib import store, viz  # noqa: E402
from cifar_lib.data import split_data, synthetic_cifar  # noqa: E402
from cifar_lib.models import create_model  # noqa: E402
from cifar_lib.profiles import get_profile  # noqa: E402
from cifar_lib.registry import FIGURES  # noqa: E402
from cifar_lib.studies.classification import measures, plots  # noqa: E402
from cifar_lib.studies.classification.runs import ATTENTION_MODEL, VIS_MODELS  # noqa: E402

KEY = store.measurement_key("vis", measures.VIS_VERSION,
                            {"resnet18": "r", "fastnet": "f", "canet_tiny": "c"},
                            {"figures": list(measures.VIS_FIGURES)})


@pytest.fixture(scope="module")
def vsplit():
    return split_data(synthetic_cifar(n_train=120, n_test=64, seed=3), val_size=20, seed=0)


def tiny_models() -> dict:
    """Small random stand-ins: CNNs for the CAM models, CANet-tiny for attention."""
    torch.manual_seed(0)
    models = {name: create_model("cnn3", filters=[8, 16, 16]) for name in VIS_MODELS}
    models[ATTENTION_MODEL] = create_model(ATTENTION_MODEL)
    return {k: m.eval() for k, m in models.items()}


@pytest.fixture(scope="module")
def data(vsplit):
    test = measures.test_loader(get_profile("smoke"), vsplit)
    return {"figures": list(measures.VIS_FIGURES),
            **plots.vis_data(tiny_models(), test, vsplit)}


@pytest.fixture
def prof(tmp_path, monkeypatch):
    """A smoke profile in a temp folder whose vis runs are 'finished' (KEY)."""
    monkeypatch.setattr(measures, "vis_key", lambda P: KEY)
    return get_profile("smoke").with_(root=tmp_path)


def png(fig, dpi: int = 40) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight",
                metadata={"Software": None})
    matplotlib.pyplot.close(fig)
    return buf.getvalue()


def test_stored_data_is_json_safe_small_and_complete(data, vsplit):
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text) == data  # only JSON types: nothing changes on the way back
    assert len(json.dumps(data, indent=1)) < 1_500_000
    assert set(measures.VIS_FIGURES) <= set(FIGURES)  # every one registered
    assert len(data["filters"]["weights"]) == 8  # the stand-in's 8 first-layer filters
    for s in data["weights"]["layers"].values():
        assert len(s["values"]) == min(s["n"], 1000)
    assert set(data["calibration"]) == set(VIS_MODELS) | {ATTENTION_MODEL}
    assert len(data["embedding"]["x"]) == len(data["embedding"]["labels"]) == 64


def test_correct_cams_show_one_image_per_class(data):
    cams = data["cam_correct"]
    if cams is None:
        pytest.skip("the random stand-in got no test image right")
    true = [t.split("->")[0] for t in cams["titles"]]
    assert [t.split("->")[1] for t in cams["titles"]] == true
    assert len(set(true)) == len(true)


def test_each_figure_draws_from_the_stored_item_the_same_bytes_twice(prof, data):
    """None while the item is missing (or of the first version); then a
    Figure, whose PNG is the same bytes when drawn again."""
    for name in measures.VIS_FIGURES:
        assert FIGURES[name](prof) is None, name
    old = store.measurement_key("vis", 1, KEY["runs"], KEY["settings"])
    store.save_measurement(prof.results, "architectures", old, {"figures": [], "calibration": {}})
    assert measures.vis_measured(prof) is None  # an item of the first version is not used
    store.save_measurement(prof.results, "architectures", KEY, data)
    assert measures.vis_measured(prof) == data
    for name in measures.VIS_FIGURES:
        fig = FIGURES[name](prof)
        if fig is None:
            assert name == "vis_cam_correct.png" and data["cam_correct"] is None
            continue
        assert isinstance(fig, matplotlib.figure.Figure), name
        if name == "vis_filters.png":
            assert "first-layer filters" in fig._suptitle.get_text()
        assert png(fig) == png(FIGURES[name](prof)), name


def test_measure_then_redraw_without_pngs_gives_the_same_files(prof, vsplit, data,
                                                               monkeypatch):
    """measure stores and draws through the registered figures; the PNGs
    drawn again from the store alone are the same files (small ones here)."""
    monkeypatch.setattr(viz, "DPI", 30)
    monkeypatch.setattr(measures, "vis_models", lambda P, split, labels: tiny_models())
    measured = {k: v for k, v in data.items() if k != "figures"}
    monkeypatch.setattr(plots, "vis_data", lambda models, test, split: measured)
    out = measures.measure(prof, vsplit)
    assert set(out["calibration"]) == set(VIS_MODELS) | {ATTENTION_MODEL}
    drawn = {p.name: p.read_bytes() for p in prof.figures.glob("vis_*.png")}
    assert set(measures.VIS_FIGURES) - set(drawn) <= {"vis_cam_correct.png"}
    for name in drawn:
        (prof.figures / name).unlink()
    assert measures.vis_measured(prof) is not None  # the PNGs are not needed
    for name in drawn:
        assert viz.figure(name, prof, show=False).read_bytes() == drawn[name], name
    # stored: measuring again loads no model, only draws the figures again
    monkeypatch.setattr(measures, "vis_models", lambda *a: pytest.fail("loaded models"))
    monkeypatch.setattr(measures, "draw_vis_figures", lambda P: drawn_again.append(P))
    drawn_again = []
    assert measures.measure(prof, vsplit) == out and drawn_again == [prof]
    from cifar_lib.studies.classification.values import calibration_table
    # each row names its model and, once its rate is chosen, the run
    names = list(calibration_table(prof)["model"])
    from cifar_lib.models import display_name
    assert [n.split(" (")[0] for n in names] == [display_name(k) for k in out["calibration"]]
    assert any(n.startswith("CANet tiny (section 1.2's run: lr ") and n.endswith(", seed 0)")
               for n in names)


def test_layers_are_named_in_words_with_stages_and_blocks_from_one():
    """Figures name a module by stage and block (from 1) and its kind, not
    by its path in the model; the names every staged net of the library
    gives its modules all read as words."""
    assert viz.layer_words("layers.1.0.conv2") == "stage 2 block 1\nconv 2"
    assert viz.layer_words("layers.1.0.conv2", short=True) == "2.1 conv 2"
    assert viz.layer_words("layers.2.1.bn1") == "stage 3 block 2\nBN 1"
    assert viz.layer_words("layers.3.1.act2") == "stage 4 block 2\nactivation 2"
    assert viz.layer_words("layers.3.1.act2", short=True) == "4.2 act 2"
    assert viz.layer_words("layers.2.0.shortcut.0", short=True) == "3.1 shortcut conv"
    assert viz.layer_words("layers.0.2") == "stage 1 block 3"
    assert (viz.layer_words("stem.0"), viz.layer_words("fc")) == ("stem conv", "classifier")
    assert viz.layer_words("features.3") == "features.3"  # not a staged net: as it is
    net = create_model("resnet18", width=0.125)
    names = [n for n, m in net.named_modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert not any("layers." in viz.layer_words(n) or "." in viz.layer_words(n, short=True)
                   .split(" ", 1)[-1] for n in names)


def test_cam_panels_name_the_other_models_class_and_the_figure_writes_it(prof, data):
    """Each CAM panel set keeps the class FastNet's maps explain (the titles
    give ResNet-18's); the wrong-prediction figure writes it on each of its
    maps, and the caption says so; a measurement stored before says 'not shown'."""
    from cifar_lib.studies.classification.values import inside_observations
    cams = data["cam_wrong"]
    assert set(cams["preds"]) == set(VIS_MODELS) - {plots.REF}
    assert all(len(p) == len(cams["titles"]) for p in cams["preds"].values())
    store.save_measurement(prof.results, "architectures", KEY, data)
    fig = FIGURES["vis_cam_wrong.png"](prof)
    written = [t.get_text() for ax in fig.axes for t in ax.texts]
    matplotlib.pyplot.close(fig)
    # on both of FastNet's map rows (Grad-CAM, Grad-CAM++), one per image
    assert sorted(written) == sorted(2 * ["→ " + c for c in cams["preds"]["fastnet"]])
    assert inside_observations(prof)["vis_cam_other_preds"].startswith(", written at the foot")
    old = {**data, "cam_wrong": {k: v for k, v in cams.items() if k != "preds"}}
    store.save_measurement(prof.results, "architectures", KEY, old)
    assert inside_observations(prof)["vis_cam_other_preds"] == " (not shown)"
    if data["cam_correct"]:
        assert inside_observations(prof)["vis_cam_correct_preds"].startswith(" FastNet's maps")
        old["cam_correct"] = {k: v for k, v in data["cam_correct"].items() if k != "preds"}
        store.save_measurement(prof.results, "architectures", KEY, old)
    assert inside_observations(prof)["vis_cam_correct_preds"] == ""
    fig = FIGURES["vis_cam_wrong.png"](prof)      # an old measurement still draws
    assert not [t for ax in fig.axes for t in ax.texts]
    matplotlib.pyplot.close(fig)

"""Inspection helpers (analysis) and their plots (viz) on tiny models."""
import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from cifar_lib import analysis, viz  # noqa: E402
from cifar_lib.data import DeviceLoader, split_data, synthetic_cifar  # noqa: E402
from cifar_lib.models import create_model  # noqa: E402


@pytest.fixture(scope="module")
def split():
    return split_data(synthetic_cifar(300, 100), val_size=50)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return create_model("cnn3").eval()


def test_spatial_layers_in_execution_order_and_cam_layer(net):
    x = torch.randn(2, 3, 32, 32)
    layers = analysis.spatial_layers(net, x)
    names = list(layers)
    assert names[0] == "features.0" and all(n.startswith("features") for n in names)
    assert analysis.cam_layer(net, x) is layers[names[-1]]
    maps = analysis.feature_maps(net, x, n_layers=3)
    assert list(maps)[0] == names[0] and list(maps)[-1] == names[-1]
    assert maps[names[0]].shape == (2, 32, 32, 32)


def test_capture_inputs_and_outputs_then_removes_hooks(net):
    x = torch.randn(1, 3, 32, 32)
    fc = net.classifier[-1]
    with analysis.capture(net, {"in": fc}, inputs=True) as st_in, \
            analysis.capture(net, {"out": fc}) as st_out:
        y = net(x)
    assert st_in["in"].shape == (1, 2048)
    assert torch.equal(st_out["out"], y.detach())
    assert not fc._forward_hooks and not fc._forward_pre_hooks


def test_first_conv_and_conv_weights(net):
    assert analysis.first_conv(net).shape == (32, 3, 3, 3)
    w = analysis.conv_weights(net)
    assert list(w)[-1] == "classifier.1" and len(w) == 4


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_cams_are_normalised_maps_for_explicit_targets(net, method):
    x = torch.randn(3, 3, 32, 32)
    maps = analysis.cams(net, x, targets=[0, 1, 2], method=method)
    assert maps.shape == (3, 32, 32)
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    with pytest.raises(ValueError, match="unknown CAM method"):
        analysis.cams(net, x, [0, 0, 0], method="nope")


def test_confusion_per_class_and_reliability_by_hand():
    y = torch.tensor([0, 0, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 0])
    cm = analysis.confusion(pred, y, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert np.allclose(analysis.per_class_accuracy(cm), [0.5, 1.0, 0.0])
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    labels = torch.tensor([0, 1, 1, 0])
    rel = analysis.reliability(probs, labels, bins=2)
    # bin [0, .5): none; bin [.5, 1]: confidences .9 .6 .7 .55, correct 1 0 1 0
    assert rel["count"].tolist() == [0, 4]
    assert rel["acc"][1] == pytest.approx(0.5)
    assert rel["ece"] == pytest.approx(abs(0.5 - np.mean([0.9, 0.6, 0.7, 0.55])))


def test_predictions_mistakes_and_penultimate(net, split):
    loader = DeviceLoader(*split.test, 40, mean=split.mean, std=split.std)
    out = analysis.predictions(net, loader)
    assert out["probs"].shape == (100, 10)
    assert torch.allclose(out["probs"].sum(1), torch.ones(100), atol=1e-5)
    idx = analysis.confident_mistakes(out, n=5)
    conf = out["probs"].max(1).values[idx]
    assert (out["pred"][idx] != out["y"][idx]).all()
    assert (conf[:-1] >= conf[1:]).all()
    feats, ys = analysis.penultimate(net, loader, limit=60)
    assert feats.shape == (60, 2048) and ys.shape == (60,)
    z = analysis.embed_2d(feats, "pca")
    assert z.shape == (60, 2)


def test_per_class_indices_and_augmentation_examples(split):
    y = split.train[1]
    idx = analysis.per_class_indices(y, 3)
    assert y[idx].tolist() == [k for k in range(10) for _ in range(3)]
    ex = analysis.augmentation_examples(split, n=4)
    assert list(ex) == ["original", "translate 2 px (baseline)", "alternating flip, epoch 1",
                        "alternating flip, epoch 2", "crop, pad 4 (old baseline)",
                        "rotation (15 degrees)", "erasing (12 px)", "mixup (alpha 1)",
                        "cutmix (alpha 1)"]
    orig = split.train[0][:4].float() / 255
    assert torch.allclose(ex["original"], orig, atol=1e-5)
    # the alternating flip: each image mirrored in exactly one of two epochs
    one, two = ex["alternating flip, epoch 1"], ex["alternating flip, epoch 2"]
    for i in range(4):
        kept = [torch.allclose(e[i], orig[i], atol=1e-5) for e in (one, two)]
        mirrored = [torch.allclose(e[i], orig[i].flip(2), atol=1e-5) for e in (one, two)]
        assert sorted(kept) == [False, True] or orig[i].equal(orig[i].flip(2))
        assert kept[0] == mirrored[1] and kept[1] == mirrored[0]
    for v in ex.values():
        assert v.shape == (4, 3, 32, 32) and v.min() >= 0 and v.max() <= 1


def test_plots_return_figures_and_save(tmp_path, net, split):
    from cifar_lib.profiles import get_profile
    P = get_profile("smoke").with_(root=tmp_path)
    rec = {"run": "r", "label": "a", "status": "diverged",
           "history": [{"epoch": 1, "train_loss": 2.0, "val_loss": None,
                        "train_acc": 0.2, "val_acc": 0.1, "lr": 0.1}]}
    figs = {
        "curves.png": viz.learning_curves([rec, {**rec, "status": "ok", "label": "b"}]),
        "lr.png": viz.lr_curves([rec]),
        "filters.png": viz.filter_grid(analysis.first_conv(net)),
        "channels.png": viz.filter_channels(analysis.first_conv(net), top=4),
        "weights.png": viz.weight_distributions(analysis.conv_weights(net)),
        "conf.png": viz.confusion_plot(np.eye(10, dtype=int) * 3, split.classes),
        "grid.png": viz.image_grid(split.train[0][:6], list("abcdef"), ncols=3),
    }
    for name, fig in figs.items():
        path = viz.save(fig, P, name)
        assert path.is_file() and path.stat().st_size > 1000
    legend = [t.get_text() for t in figs["curves.png"].legends[0].texts]
    assert legend == ["a (diverged)", "b"]
    # the strongest filters first, one row per input colour, one shared scale
    w = np.asarray(analysis.first_conv(net), dtype=float)
    axes = figs["channels.png"].axes[:-1]             # the last is the colour bar
    assert len(axes) == 4 * w.shape[1]
    norms = np.sqrt((w.reshape(len(w), -1) ** 2).sum(1))
    shown = [float(ax.get_title().split("\n")[1]) for ax in axes if ax.get_title()]
    assert shown == sorted(shown, reverse=True) and abs(shown[0] - norms.max()) < 0.01
    assert len({ax.images[0].get_clim() for ax in axes}) == 1


def test_compact_summaries_round_trip_through_json():
    import json
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    packed = json.loads(json.dumps(analysis.pack_uint8(a)))
    assert packed["shape"] == [2, 3, 4] and np.array_equal(analysis.unpack_uint8(packed), a)
    assert analysis.to_uint8([-1.0, 0.0, 0.5, 1.0, 2.0]).tolist() == [0, 0, 128, 255, 255]
    assert analysis.rounded([[0.123456, 12345.67]]) == [[0.1235, 12350.0]]
    v = np.random.default_rng(0).normal(size=50_000)
    s = analysis.quantile_summary(v, k=101)
    assert s["n"] == 50_000 and len(s["values"]) == 101
    assert s["values"][0] == pytest.approx(v.min(), rel=1e-3)
    assert s["values"][50] == pytest.approx(np.median(v), abs=1e-3)
    # a sample's range: the extremes of 20,000 draws, not of all 50,000 values
    tails = analysis.quantile_summary(v, k=101, sample=20_000)["values"]
    assert v.min() < tails[0] < tails[-1] < v.max()
    assert analysis.quantile_summary([3.0, 1.0], k=10) == {"n": 2, "values": [1.0, 3.0]}


def test_top_channels_and_first_of_each_class():
    fm = torch.zeros(4, 2, 2)
    fm[2] = torch.tensor([[1.0, 3.0], [2.0, 5.0]])
    fm[1] = 0.5
    channels, maps = analysis.top_channels(fm, k=2)
    assert channels == [2, 1] and maps.dtype == np.uint8
    assert maps[0].tolist() == [[0, 128], [64, 255]]  # scaled from its min to its max
    y = torch.tensor([1, 0, 1, 2, 0, 2])
    ok = torch.tensor([True, False, True, False, True, True])
    assert analysis.first_per_class(ok, y, 4).tolist() == [4, 0, 5]  # class 3: none

"""Notebook 03's figures (report section 1.4): what the trained ResNet-18,
FastNet and CANet-tiny learned, drawn from their predictions on the test
split and saved to figures/ (see ``measures.measure``).
"""
from __future__ import annotations

from cifar_lib.profiles import Profile
from cifar_lib.studies.classification.runs import ATTENTION_MODEL, VIS_MODELS


def draw_inside(profile: Profile, models: dict, test, split) -> None:
    """First-layer filters, weight distributions and feature maps of
    ResNet-18; CANet's attention maps and weights."""
    import torch
    from cifar_lib import analysis, viz
    net, images = models["resnet18"], split.test[0]
    x, _ = next(iter(test))
    viz.save(viz.filter_grid(analysis.first_conv(net)), profile, "vis_filters.png", show=False)
    viz.save(viz.weight_distributions(analysis.conv_weights(net)), profile,
             "vis_weights.png", show=False)
    maps = analysis.feature_maps(net, x[:1], n_layers=4)
    viz.save(viz.feature_map_grid(maps, images[0]), profile, "vis_feature_maps.png", show=False)
    canet = models[ATTENTION_MODEL].eval()
    with torch.no_grad():
        canet(x)
    att = canet.attention_maps()
    viz.save(viz.attention_maps(images[:6], att, n=6), profile, "vis_attention.png", show=False)
    viz.save(viz.attention_weights(att), profile, "vis_attention_weights.png", show=False)


def _pair_titles(split, y, pred, idx) -> list[str]:
    return [f"{split.classes[int(y[i])]}->{split.classes[int(pred[i])]}" for i in idx]


def draw_cams(profile: Profile, models: dict, outs: dict, test, split) -> None:
    """Grad-CAM panels for correct and wrong predictions of ResNet-18."""
    from cifar_lib import analysis, viz
    ref, images = outs["resnet18"], split.test[0]
    cam_models = {name: models[name] for name in VIS_MODELS}
    for kind, pick in (("correct", ref["pred"] == ref["y"]), ("wrong", ref["pred"] != ref["y"])):
        idx = pick.nonzero().flatten()[:8]
        preds = {name: outs[name]["pred"][idx] for name in cam_models}
        panels = analysis.cam_panels(cam_models, test.prepare(test.x[idx.to(test.x.device)]), preds)
        titles = _pair_titles(split, ref["y"], ref["pred"], idx)
        viz.save(viz.cam_grid(images[idx], panels, titles), profile, f"vis_cam_{kind}.png",
                 show=False)


def draw_errors(profile: Profile, outs: dict, split) -> None:
    """Confusion matrix and most confident mistakes of ResNet-18, per-class
    accuracy of every model."""
    from cifar_lib import analysis, viz
    ref, k = outs["resnet18"], split.num_classes
    viz.save(viz.confusion_plot(analysis.confusion(ref["pred"], ref["y"], k), split.classes),
             profile, "vis_confusion.png", show=False)
    acc = {name: analysis.per_class_accuracy(analysis.confusion(o["pred"], o["y"], k))
           for name, o in outs.items()}
    viz.save(viz.per_class_bars(acc, split.classes), profile, "vis_per_class.png", show=False)
    worst = analysis.confident_mistakes(ref, n=10)
    titles = [f"{t} {ref['probs'][i].max():.2f}"
              for t, i in zip(_pair_titles(split, ref["y"], ref["pred"], worst), worst)]
    fig = viz.image_grid(split.test[0][worst], titles, ncols=5, size=1.5)
    fig.suptitle("ResNet-18: its most confident mistakes (true->predicted, confidence)")
    viz.save(fig, profile, "vis_mistakes.png", show=False)


def draw_calibration(profile: Profile, outs: dict) -> dict:
    """Reliability diagrams; returns accuracy, ECE and mean confidence per
    model (``measures.measure`` stores them)."""
    from cifar_lib import analysis, viz
    rel = {name: analysis.reliability(o["probs"], o["y"]) for name, o in outs.items()}
    viz.save(viz.reliability_plot(rel), profile, "vis_reliability.png", show=False)
    return {name: {"acc": float((o["pred"] == o["y"]).float().mean()),
                   "ece": rel[name]["ece"],
                   "confidence": float(o["probs"].max(1).values.mean())}
            for name, o in outs.items()}


def draw_embedding(profile: Profile, net, test, split) -> None:
    """t-SNE of ResNet-18's penultimate features on 2,000 test images."""
    from cifar_lib import analysis, viz
    feats, labels = analysis.penultimate(net, test, limit=2000)
    z = analysis.embed_2d(feats, "tsne")
    viz.save(viz.embedding_plot(z, labels, split.classes,
                                "ResNet-18 penultimate features (t-SNE)"),
             profile, "vis_embedding.png", show=False)


def show(profile: Profile, *names: str):
    """Stored figures as Markdown image links (relative to the executed
    notebook, which sits beside the profile's figures/).

    Used by notebook 03 (report section 1.4)."""
    from IPython.display import Markdown
    return Markdown("\n\n".join(f"![{n}](../figures/{n})" for n in names))



"""Notebook 03's figures (report section 1.4): what the trained ResNet-18,
FastNet and CANet-tiny learned, from their predictions on the test split.

In two halves, so that the report draws them again without the weights:

* :func:`vis_data` looks at the trained models once and returns what each
  figure shows, small and JSON-safe: images and maps as base64 uint8 arrays
  (``analysis.pack_uint8``), plotted numbers as lists rounded to 4
  significant digits, each weight or attention distribution as 1,000
  quantiles (under 1 MB for the cpu profile's models);
  ``measures.measure`` stores it;
* :data:`DRAW` maps each figure's name to a function that draws it from
  that stored dict; ``values`` registers them as report figures, and
  ``measure`` saves them through ``viz.figure`` (the one drawing path).
"""
from __future__ import annotations

from cifar_lib.profiles import Profile
from cifar_lib.studies.classification.runs import ATTENTION_MODEL, VIS_MODELS

REF = "resnet18"   # the model whose filters, errors and features are shown
N_ATTENTION = 6    # images of the attention figure
N_WRONG = 8        # wrong predictions with CAMs
N_MISTAKES = 10    # most confident mistakes shown
N_EMBED = 2000     # test images in the embedding


# ---------------------------------------------------------------- measuring


def _images(split, idx) -> dict:
    """Test images ``idx`` (N x 3 x 32 x 32 uint8), packed."""
    from cifar_lib import analysis
    return analysis.pack_uint8(split.test[0][idx].numpy())


def _pair_titles(split, y, pred, idx) -> list[str]:
    return [f"{split.classes[int(y[i])]}->{split.classes[int(pred[i])]}" for i in idx]


def inside_data(net, x, split) -> dict:
    """ResNet-18's first-layer filters, a summary of each layer's weights,
    and the most active channels of four layers for the first test image
    (``x``: the first test batch, normalised)."""
    from cifar_lib import analysis as A
    from cifar_lib.viz import VIOLIN_SAMPLE
    maps = A.feature_maps(net, x[:1], n_layers=4)
    layers = {}
    for name, fm in maps.items():
        channels, scaled = A.top_channels(fm[0], 8)
        layers[name] = {"channels": channels, "maps": A.pack_uint8(scaled)}
    return {"filters": {"model": REF, "weights": A.rounded(A.first_conv(net))},
            "weights": {"model": REF, "layers": {n: A.quantile_summary(w, sample=VIOLIN_SAMPLE)
                                                 for n, w in A.conv_weights(net).items()}},
            "feature_maps": {"model": REF, "image": _images(split, 0), "layers": layers}}


def attention_data(canet, x, split) -> dict:
    """CANet's spatial attention maps of the first test images, and the
    distributions of its spatial and channel attention weights over ``x``."""
    import torch
    from cifar_lib import analysis as A
    canet.eval()
    with torch.no_grad():
        canet(x)
    att = canet.attention_maps()
    maps = {m["block"]: A.pack_uint8(A.to_uint8(m["spatial"][:N_ATTENTION, 0].cpu()))
            for m in att}
    return {"attention": {"model": ATTENTION_MODEL,
                          "images": _images(split, slice(0, N_ATTENTION)), "maps": maps},
            "attention_weights": {
                "model": ATTENTION_MODEL,
                "spatial": {m["block"]: A.quantile_summary(m["spatial"].cpu()) for m in att},
                "channel": {m["block"]: A.quantile_summary(m["channel"].cpu()) for m in att}}}


def _cam_panels(models: dict, outs: dict, test, split, idx) -> dict | None:
    """Images ``idx``, their titles, and each CAM model's maps of them."""
    from cifar_lib import analysis as A
    if not len(idx):
        return None
    ref = outs[REF]
    cam_models = {name: models[name] for name in VIS_MODELS}
    preds = {name: outs[name]["pred"][idx] for name in cam_models}
    panels = A.cam_panels(cam_models, test.prepare(test.x[idx.to(test.x.device)]), preds)
    return {"images": _images(split, idx),
            "titles": _pair_titles(split, ref["y"], ref["pred"], idx),
            "maps": {k: A.pack_uint8(A.to_uint8(v)) for k, v in panels.items()},
            # the class each other model's maps explain (the titles give REF's)
            "preds": {name: [split.classes[int(c)] for c in p]
                      for name, p in preds.items() if name != REF}}


def cam_data(models: dict, outs: dict, test, split) -> dict:
    """Grad-CAM panels of ResNet-18's correct predictions (the first test
    image of each class it gets right) and of its first wrong ones."""
    from cifar_lib import analysis as A
    ref = outs[REF]
    correct = A.first_per_class(ref["pred"] == ref["y"], ref["y"], split.num_classes)
    wrong = (ref["pred"] != ref["y"]).nonzero().flatten()[:N_WRONG]
    return {"cam_correct": _cam_panels(models, outs, test, split, correct),
            "cam_wrong": _cam_panels(models, outs, test, split, wrong)}


def error_data(outs: dict, split) -> dict:
    """ResNet-18's confusion matrix and most confident mistakes; every
    model's per-class accuracy."""
    from cifar_lib import analysis as A
    ref, k = outs[REF], split.num_classes
    worst = A.confident_mistakes(ref, n=N_MISTAKES)
    titles = [f"{t} {ref['probs'][i].max():.2f}"
              for t, i in zip(_pair_titles(split, ref["y"], ref["pred"], worst), worst)]
    return {"confusion": {"model": REF,
                          "matrix": A.confusion(ref["pred"], ref["y"], k).tolist()},
            "per_class": {name: A.rounded(A.per_class_accuracy(A.confusion(o["pred"], o["y"], k)))
                          for name, o in outs.items()},
            "mistakes": {"model": REF, "images": _images(split, worst), "titles": titles}}


def calibration_data(outs: dict) -> dict:
    """Reliability bins of every model, and its accuracy, ECE and mean
    confidence (the calibration table)."""
    from cifar_lib import analysis as A
    rel = {name: A.reliability(o["probs"], o["y"]) for name, o in outs.items()}
    return {"reliability": {name: {"count": r["count"].astype(int).tolist(),
                                   "conf": A.rounded(r["conf"]), "acc": A.rounded(r["acc"]),
                                   "ece": r["ece"]} for name, r in rel.items()},
            "calibration": {name: {"acc": float((o["pred"] == o["y"]).float().mean()),
                                   "ece": rel[name]["ece"],
                                   "confidence": float(o["probs"].max(1).values.mean())}
                            for name, o in outs.items()}}


def embedding_data(net, test) -> dict:
    """t-SNE (after PCA to 50 dimensions) of ResNet-18's penultimate
    features of the first 2,000 test images."""
    from cifar_lib import analysis as A
    feats, labels = A.penultimate(net, test, limit=N_EMBED)
    z = A.embed_2d(feats, "tsne")
    return {"embedding": {"model": REF, "method": "t-SNE", "x": A.rounded(z[:, 0]),
                          "y": A.rounded(z[:, 1]), "labels": labels.tolist()}}


def vis_data(models: dict, test, split) -> dict:
    """Everything notebook 03's figures show, and the calibration numbers,
    from the trained ``models`` (ResNet-18, FastNet, CANet-tiny by label) on
    the ``test`` loader (normalised, in order) of ``split``."""
    from cifar_lib import analysis
    outs = {name: analysis.predictions(m, test) for name, m in models.items()}
    x, _ = next(iter(test))
    return {"classes": list(split.classes),
            **inside_data(models[REF], x, split),
            **attention_data(models[ATTENTION_MODEL], x, split),
            **cam_data(models, outs, test, split),
            **error_data(outs, split),
            **calibration_data(outs),
            **embedding_data(models[REF], test)}


# ---------------------------------------------------------------- drawing
# Each takes the stored dict (``vis_data``, read back from the store) and
# returns a Figure, or None when its part is empty.


def _unpack(packed, scale: bool = False):
    """A packed uint8 array; divided by 255 (maps in [0, 1]) with ``scale``."""
    from cifar_lib import analysis
    a = analysis.unpack_uint8(packed)
    return a / 255 if scale else a


def draw_filters(d: dict):
    from cifar_lib import viz
    w = d["filters"]["weights"]
    return viz.filter_channels(
        w, top=16, title=f"ResNet-18: the 16 first-layer filters with the largest norm "
        f"(of {len(w)}), one column each (number, norm)\nrows: its weights on the red, "
        "green and blue input; red positive, blue negative, one scale")


def draw_weights(d: dict):
    from cifar_lib import viz
    return viz.weight_distributions(d["weights"]["layers"])


def draw_feature_maps(d: dict):
    from cifar_lib import viz
    f = d["feature_maps"]
    return viz.feature_map_grid({n: _unpack(v["maps"]) for n, v in f["layers"].items()},
                                _unpack(f["image"]),
                                {n: v["channels"] for n, v in f["layers"].items()})


def draw_attention(d: dict):
    from cifar_lib import viz
    a = d["attention"]
    return viz.attention_maps(_unpack(a["images"]),
                              {b: _unpack(m, scale=True) for b, m in a["maps"].items()})


def draw_attention_weights(d: dict):
    from cifar_lib import viz
    return viz.attention_weights(d["attention_weights"]["spatial"],
                                 d["attention_weights"]["channel"])


def _named(d: dict) -> dict:
    """A dict keyed by model name (or "model method", as the CAM maps are)
    re-keyed with the report's names: "ResNet-18", "ResNet-18, Grad-CAM++"."""
    from cifar_lib.models import display_name
    methods = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}
    out = {}
    for k, v in d.items():
        model, _, method = k.partition(" ")
        out[display_name(model) + (f", {methods.get(method, method)}" if method else "")] = v
    return out


def _draw_cams(kind: str):
    def draw(d: dict):
        from cifar_lib import viz
        c = d[f"cam_{kind}"]
        if not c:
            return None
        return viz.cam_grid(_unpack(c["images"]),
                            {k: _unpack(m, scale=True) for k, m in _named(c["maps"]).items()},
                            c["titles"], preds=_named(c.get("preds", {})))
    draw.__name__ = draw.__qualname__ = f"draw_cam_{kind}"
    return draw


def draw_confusion(d: dict):
    from cifar_lib import viz
    return viz.confusion_plot(d["confusion"]["matrix"], d["classes"])


def draw_per_class(d: dict):
    from cifar_lib import viz
    return viz.per_class_bars(_named(d["per_class"]), d["classes"])


def draw_mistakes(d: dict):
    from cifar_lib import viz
    m = d["mistakes"]
    if not m["titles"]:
        return None
    fig = viz.image_grid(_unpack(m["images"]), m["titles"], ncols=5, size=1.5)
    fig.suptitle("ResNet-18: its most confident mistakes (true->predicted, confidence)")
    return fig


def draw_reliability(d: dict):
    from cifar_lib import viz
    return viz.reliability_plot(_named(d["reliability"]))


def draw_embedding(d: dict):
    import numpy as np
    from cifar_lib import viz
    e = d["embedding"]
    return viz.embedding_plot(np.column_stack([e["x"], e["y"]]), np.asarray(e["labels"]),
                              d["classes"], "ResNet-18 penultimate features (t-SNE)")


# Notebook 03's figures, in its order, each drawn from the stored dict.
DRAW = {"vis_filters.png": draw_filters, "vis_weights.png": draw_weights,
        "vis_feature_maps.png": draw_feature_maps, "vis_attention.png": draw_attention,
        "vis_attention_weights.png": draw_attention_weights,
        "vis_cam_correct.png": _draw_cams("correct"), "vis_cam_wrong.png": _draw_cams("wrong"),
        "vis_confusion.png": draw_confusion, "vis_per_class.png": draw_per_class,
        "vis_mistakes.png": draw_mistakes, "vis_reliability.png": draw_reliability,
        "vis_embedding.png": draw_embedding}


def show(profile: Profile, *names: str):
    """Stored figures as Markdown image links (relative to the executed
    notebook, which sits beside the profile's figures/).

    Used by notebook 03 (report section 1.4)."""
    from IPython.display import Markdown
    return Markdown("\n\n".join(f"![{n}](../figures/{n})" for n in names))

"""Looking inside trained networks: activations, CAMs, errors, calibration.

Every function takes a model and tensors (or a loader) and returns tensors,
arrays or DataFrames; ``viz`` draws them.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn

from cifar_lib.engine import predict


@contextmanager
def capture(model: nn.Module, layers: dict[str, nn.Module], inputs: bool = False):
    """Record the output (or input) of each named layer during forward passes."""
    store: dict[str, torch.Tensor] = {}
    hooks = []
    for name, layer in layers.items():
        if inputs:
            hooks.append(layer.register_forward_pre_hook(
                lambda m, a, name=name: store.__setitem__(name, a[0].detach())))
        else:
            hooks.append(layer.register_forward_hook(
                lambda m, a, out, name=name: store.__setitem__(name, out.detach())))
    try:
        yield store
    finally:
        for h in hooks:
            h.remove()


def spatial_layers(model: nn.Module, x: torch.Tensor) -> dict[str, nn.Module]:
    """Leaf modules whose output is a feature map (N x C x H x W, H > 1), in
    execution order."""
    order: list[tuple[str, nn.Module]] = []
    names = {m: n for n, m in model.named_modules()}
    hooks = [m.register_forward_hook(
        lambda m, a, out: order.append((names[m], m))
        if torch.is_tensor(out) and out.dim() == 4 and out.shape[-1] > 1 else None)
        for m in model.modules() if not list(m.children())]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(x[:1])
    model.train(was_training)
    for h in hooks:
        h.remove()
    seen, out = set(), {}
    for name, m in order:
        if name not in seen:
            seen.add(name)
            out[name] = m
    return out


def cam_layer(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """The last feature-map layer: the usual target layer for Grad-CAM."""
    layers = spatial_layers(model, x)
    if not layers:
        raise ValueError("the model has no layer with a spatial output")
    return list(layers.values())[-1]


def feature_maps(model: nn.Module, x: torch.Tensor, n_layers: int = 4) -> dict:
    """Feature maps of ``n_layers`` layers spread from input to output."""
    layers = spatial_layers(model, x)
    names = list(layers)
    pick = [names[round(i)] for i in np.linspace(0, len(names) - 1, n_layers)]
    model.eval()
    with capture(model, {n: layers[n] for n in pick}) as store, torch.no_grad():
        model(x)
    return {n: store[n].float().cpu() for n in pick}


def conv_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Weights of every conv and linear layer, by module name (on the CPU)."""
    return {n: m.weight.detach().float().cpu() for n, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))}


def first_conv(model: nn.Module) -> torch.Tensor:
    """Weights of the first convolution with 3 input channels (K x 3 x k x k)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == 3:
            return m.weight.detach().float().cpu()
    raise ValueError("the model has no convolution on the RGB input")


def cams(model: nn.Module, x: torch.Tensor, targets, method: str = "gradcam",
         layer: nn.Module | None = None) -> np.ndarray:
    """Class activation maps (N x H x W in [0, 1]) for explicit class targets.

    ``method``: gradcam, gradcam++, layercam, eigencam (pytorch-grad-cam).
    """
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    methods = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus,
               "layercam": LayerCAM, "eigencam": EigenCAM}
    if method not in methods:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {', '.join(methods)}")
    layer = layer or cam_layer(model, x)
    model.eval()
    with methods[method](model=model, target_layers=[layer]) as cam:
        return cam(input_tensor=x,
                   targets=[ClassifierOutputTarget(int(t)) for t in targets])


def confusion(pred: torch.Tensor, y: torch.Tensor, k: int) -> np.ndarray:
    """k x k counts: rows are true classes, columns predictions."""
    idx = y.cpu().long() * k + pred.cpu().long()
    return torch.bincount(idx, minlength=k * k).view(k, k).numpy()


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix."""
    return cm.diagonal() / cm.sum(1).clip(min=1)


def reliability(probs: torch.Tensor, y: torch.Tensor, bins: int = 15) -> dict:
    """Confidence-binned accuracy and the expected calibration error (ECE)."""
    conf, pred = probs.max(1)
    correct = (pred == y).float()
    edges = torch.linspace(0, 1, bins + 1)
    which = torch.bucketize(conf.cpu(), edges[1:-1])
    count = torch.bincount(which, minlength=bins).float()
    acc = torch.bincount(which, correct.cpu(), minlength=bins) / count.clamp(min=1)
    mean_conf = torch.bincount(which, conf.cpu(), minlength=bins) / count.clamp(min=1)
    ece = float(((count / len(y)) * (acc - mean_conf).abs()).sum())
    return {"edges": edges.numpy(), "count": count.numpy(), "acc": acc.numpy(),
            "conf": mean_conf.numpy(), "ece": ece}


def predictions(model: nn.Module, loader, tta_flip: bool = False) -> dict:
    """Logits, probabilities, predictions and labels over a loader (CPU)."""
    logits, y = predict(model, loader, tta_flip)
    logits, y = logits.cpu(), y.cpu()
    probs = logits.softmax(1)
    return {"logits": logits, "probs": probs, "pred": probs.argmax(1), "y": y}


def confident_mistakes(out: dict, n: int = 8) -> torch.Tensor:
    """Indices of the ``n`` wrong predictions made with the highest confidence."""
    conf = out["probs"].max(1).values
    wrong = (out["pred"] != out["y"]).nonzero().flatten()
    return wrong[conf[wrong].argsort(descending=True)[:n]]


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last ``nn.Linear`` (the classifier's output layer)."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer")
    return layers[-1]


def penultimate(model: nn.Module, loader, limit: int = 2000):
    """Inputs of the last linear layer (features) and labels, up to ``limit``."""
    last = last_linear(model)
    feats, ys, n = [], [], 0
    model.eval()
    with capture(model, {"fc": last}, inputs=True) as store, torch.no_grad():
        for x, y in loader:
            model(x)
            feats.append(store["fc"].float().flatten(1).cpu())
            ys.append(y.cpu())
            n += len(y)
            if n >= limit:
                break
    return torch.cat(feats)[:limit].numpy(), torch.cat(ys)[:limit].numpy()


def embed_2d(features: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """2-D embedding of features by PCA or t-SNE (after PCA to 50 dims)."""
    from sklearn.decomposition import PCA
    z = PCA(n_components=min(50, *features.shape), random_state=seed).fit_transform(features)
    if method == "pca":
        return z[:, :2]
    if method != "tsne":
        raise ValueError(f"unknown embedding {method!r}; choose pca or tsne")
    from sklearn.manifold import TSNE
    perplexity = min(30.0, (len(z) - 1) / 3)
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z)


def per_class_indices(y: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the first ``n`` examples of each class, class by class.

    Used by notebook 00 (report section 1.1).
    """
    return torch.cat([(y == k).nonzero().flatten()[:n] for k in range(int(y.max()) + 1)])


def augmentation_examples(split, n: int = 8, seed: int = 0) -> dict:
    """The same ``n`` training images under each augmentation of section
    1.3, in [0, 1]: the baseline's (a translation by up to 2 pixels and the
    alternating flip, shown in two consecutive epochs), the old baseline's
    crop with 4-pixel padding, and the added ones.

    Used by notebook 00 (report section 1.1).
    """
    from cifar_lib import augment as A
    from cifar_lib.viz import denormalize
    x, y = split.train[0][:n], split.train[1][:n]
    mean = torch.tensor(split.mean).view(1, 3, 1, 1)
    std = torch.tensor(split.std).view(1, 3, 1, 1)
    xn = (x.float() / 255 - mean) / std
    t = torch.nn.functional.one_hot(y, split.num_classes).float()
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    flipped = torch.rand(n, generator=g) < 0.5   # the alternating flip's first epoch
    out = {"original": xn,
           "translate 2 px (baseline)": A.random_crop(xn, 2, g),
           "alternating flip, epoch 1": A.flip_where(xn, A.alt_flip_mask(flipped, 0)),
           "alternating flip, epoch 2": A.flip_where(xn, A.alt_flip_mask(flipped, 1)),
           "crop, pad 4 (old baseline)": A.random_crop(xn, 4, g),
           "rotation (15 degrees)": A.random_rotate(xn, 15.0, g),
           "erasing (12 px)": A.random_erase(xn, 1.0, 12, g),
           "mixup (alpha 1)": A.mixup(xn, t, 1.0, g, rng)[0],
           "cutmix (alpha 1)": A.cutmix(xn, t, 1.0, g, rng)[0]}
    return {k: denormalize(v, split.mean, split.std) for k, v in out.items()}


def cam_panels(models: dict, x: torch.Tensor, preds: dict,
               methods=("gradcam", "gradcam++")) -> dict:
    """CAMs of each model and method for images ``x``, each model explaining
    its own predicted class: {"<model> <method>": N x H x W}."""
    return {f"{name} {method}": cams(model, x, preds[name], method)
            for name, model in models.items() for method in methods}


# ------------------------------------------------ compact summaries to store
# What notebook 03's measurement keeps of the trained networks (JSON-safe,
# small), so that its figures are drawn again without the weights.


def rounded(x, digits: int = 4) -> list:
    """``x`` (array-like) as nested lists of floats rounded to ``digits``
    significant digits."""
    a = np.asarray(x, dtype=float)
    flat = np.array([float(f"{v:.{digits}g}") for v in a.ravel()]).reshape(a.shape)
    return flat.tolist()


def quantile_summary(x, k: int = 1000, digits: int = 4, sample: int | None = None) -> dict:
    """``k`` quantiles of ``x`` evenly spaced from its minimum to its maximum
    (all values, sorted, when there are at most ``k``), rounded, and ``n``,
    how many values they stand for: enough to draw its violin again.

    ``sample``: span instead the range a random sample of that many values
    would (from its 1/(2 sample) to its 1 - 1/(2 sample) quantile), so that
    a few outliers among millions of values do not stretch the axis."""
    v = np.asarray(x, dtype=float).ravel()
    if len(v) <= k:
        return {"n": int(len(v)), "values": rounded(np.sort(v), digits)}
    tail = 0.5 / sample if sample and len(v) > sample else 0.0
    return {"n": int(len(v)), "values": rounded(np.quantile(v, np.linspace(tail, 1 - tail, k)),
                                                digits)}


def to_uint8(x, lo=0.0, hi=1.0) -> np.ndarray:
    """Values in [lo, hi] scaled to 0-255 (rounded, clipped) as uint8."""
    a = (np.asarray(x, dtype=float) - lo) / max(hi - lo, 1e-12)
    return np.rint(255 * a.clip(0, 1)).astype(np.uint8)


def pack_uint8(a) -> dict:
    """A uint8 array as ``{"shape", "uint8"}``, its bytes in base64: a JSON
    string of 4 characters per 3 values (a list would take one indented line
    per value in the store's files)."""
    import base64
    a = np.ascontiguousarray(a, dtype=np.uint8)
    return {"shape": list(a.shape), "uint8": base64.b64encode(a.tobytes()).decode("ascii")}


def unpack_uint8(d: dict) -> np.ndarray:
    """The array :func:`pack_uint8` stored."""
    import base64
    return np.frombuffer(base64.b64decode(d["uint8"]), dtype=np.uint8).reshape(d["shape"])


def top_channels(fm: torch.Tensor, k: int = 8) -> tuple[list[int], np.ndarray]:
    """The ``k`` channels of one feature map (C x H x W) with the highest mean
    activation, and those channels each scaled to 0-255 from its own minimum
    to maximum (uint8, k x H x W; what a colour map shows of it)."""
    top = fm.flatten(1).mean(1).argsort(descending=True)[:k]
    maps = fm[top].float().cpu().numpy()
    lo = maps.min(axis=(1, 2), keepdims=True)
    hi = maps.max(axis=(1, 2), keepdims=True)
    return [int(c) for c in top], to_uint8((maps - lo) / np.maximum(hi - lo, 1e-12))


def first_per_class(mask: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Index of the first example of each class (0..k-1) where ``mask`` is
    true, class by class; classes without one are skipped."""
    idx = [(mask & (y == c)).nonzero().flatten()[:1] for c in range(k)]
    return torch.cat(idx) if idx else torch.zeros(0, dtype=torch.long)

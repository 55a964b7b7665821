"""DessiLBI (Split LBI) optimizer, its regularisation path, filter pruning.

Fu, Liu, Xu, Xie, Zhang, Sun, Yao (ICML 2020), "DessiLBI: Exploring
Structural Sparsity of Deep Networks via Differential Inclusion Paths".
Each conv and linear weight W gets an augmented variable Gamma, coupled to
W by the loss term ||W - Gamma||^2 / (2 nu), and a sub-gradient variable Z.
One step with learning rate alpha::

    W     <- W - alpha*kappa*(grad L(W) + (W - Gamma)/nu)   (SGD momentum, wd on grad L)
    Z     <- Z + (alpha_z/nu)*(W - Gamma)                    (W before the step)
    Gamma <- kappa * Prox(Z)

Prox is group soft-thresholding per output filter for conv weights,
``Z_g * max(0, 1 - lambda/||Z_g||)``, and element-wise soft-thresholding
for linear weights. Gamma starts at zero and gains filters/weights along
the training path ("inverse scale space": strong, stable ones first); the
epoch at which each conv filter enters is recorded and orders filter pruning.
Other parameters (biases, BatchNorm) take a plain SGD step; 1-D ones get
no weight decay unless ``norm_bias_decay`` (the reference skips them too).

Thresholds. With ``relative=True`` each layer's threshold is lambda times
the layer's median filter norm (conv) or median |weight| (linear) at
construction, i.e. at initialisation. Before a filter enters, Z_g is about
the time integral of ``alpha/nu * W_g``, so a relative lambda is a point of
the path's time ``sum(alpha_z)/nu`` at which a filter that kept its initial
norm and direction would enter, the same for every layer whatever its
initial scale (Xavier init gives channel-doubling convs smaller filters).
With ``relative=False`` lambda is absolute, as in the authors' code (1).

Path time. ``alpha_z = max(alpha, z_lr_min)``: a floor on the learning
rate of the Z update keeps the path moving after a schedule that decays
to zero (the reference's step schedule never reaches zero); 0 keeps
``alpha_z = alpha``.

Steps use ``torch._foreach_*`` ops (one call per group and operation);
``foreach=False`` runs the per-tensor loop, which gives the same result.

An Adam-based variant is not provided: rescaling only the loss gradient per
coordinate while the coupling and Z keep their SGD scale changes the path's
time and would need its own lambda and nu.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn as nn

from cifar_lib.optim import closure_loss, decay_groups, trainable
from cifar_lib.registry import register_optimizer

KINDS = ("conv", "linear", "other")


# ---------------------------------------------------------------- proximal maps


def prox_group(z: torch.Tensor, lam) -> torch.Tensor:
    """Group soft-thresholding per output filter: ``z_g * max(0, 1 - lam/||z_g||)``."""
    norms = z.flatten(1).norm(dim=1)
    scale = (1 - lam / norms.clamp_min(torch.finfo(z.dtype).tiny)).clamp_min(0)
    return z * scale.view(-1, *[1] * (z.dim() - 1))


def prox_l1(z: torch.Tensor, lam) -> torch.Tensor:
    """Element-wise soft-thresholding: ``sign(z) * max(|z| - lam, 0)``."""
    return z.sign() * (z.abs() - lam).clamp_min(0)


def _kind(group: dict, p: torch.Tensor) -> str:
    kind = group.get("kind", "auto")
    if kind == "auto":  # a plain list of parameters: decide by shape
        return "conv" if p.dim() == 4 else "linear" if p.dim() == 2 else "other"
    return kind


@torch.no_grad()
def layer_scale(w: torch.Tensor, kind: str) -> float:
    """The scale a relative threshold multiplies: median filter norm (conv)
    or median |weight| (linear)."""
    v = w.detach().float().flatten(1).norm(dim=1) if kind == "conv" else w.detach().abs()
    return float(v.flatten().median())


# ---------------------------------------------------------------- optimizer


class SLBI(torch.optim.Optimizer):
    """Split LBI with SGD momentum; conv filters and linear weights get a path.

    Param groups may carry ``kind`` ("conv", "linear", "other"; default
    "auto": 4-D weights are conv, 2-D linear, the rest other), ``lam`` (the
    threshold of that group), ``relative`` (lam times each layer's scale at
    construction, see :func:`layer_scale`), ``z_lr_min`` (floor on the Z
    update's learning rate), ``weight_decay`` and ``names`` (one label per
    parameter, used by :meth:`support` and :meth:`entry_epochs`).
    :func:`slbi_groups` builds them from a model. The state (Z, Gamma,
    momentum, each layer's threshold, filter entry epochs) is tensors only,
    so it round-trips through ``torch.load(weights_only=True)``.
    """

    def __init__(self, params, lr: float = 0.1, kappa: float = 1.0,
                 nu: float = 100.0, lam: float = 1.0, momentum: float = 0.9,
                 weight_decay: float = 0.0, nesterov: bool = False,
                 relative: bool = False, z_lr_min: float = 0.0, foreach: bool = True):
        for name, ok in (("lr", lr > 0), ("kappa", kappa > 0), ("nu", nu > 0),
                         ("lam", lam >= 0), ("momentum", 0 <= momentum < 1),
                         ("weight_decay", weight_decay >= 0), ("z_lr_min", z_lr_min >= 0)):
            if not ok:
                raise ValueError(f"SLBI: bad value {name}={locals()[name]!r}")
        super().__init__(params, dict(lr=lr, kappa=kappa, nu=nu, lam=lam,
                                      momentum=momentum, weight_decay=weight_decay,
                                      nesterov=nesterov, relative=relative,
                                      z_lr_min=z_lr_min, kind="auto", names=[]))
        self.foreach = foreach
        for group in self.param_groups:
            for p in group["params"]:
                kind = _kind(group, p)
                if kind not in KINDS:
                    raise ValueError(f"SLBI: unknown group kind {kind!r}; use {KINDS}")
                if kind != "other":
                    self._init_path(p, kind, group)

    def _init_path(self, p, kind: str, group: dict) -> None:
        st = self.state[p]   # Gamma and Z start at zero
        st["z"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        st["gamma"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        scale = layer_scale(p, kind) if group["relative"] else 1.0
        st["lam"] = torch.tensor(group["lam"] * scale, device=p.device)
        if kind == "conv":  # epoch each filter entered the path, -1: not yet
            st["entry"] = torch.full((p.shape[0],), -1, dtype=torch.long, device=p.device)

    def thresholds(self) -> dict[str, float]:
        """The threshold on ||Z_g|| (conv) or |Z_ij| (linear) of every layer."""
        return {name: float(st["lam"]) for name, _, _, st in self._path_params()}

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            for kind in KINDS:
                params = [p for p in group["params"]
                          if p.grad is not None and _kind(group, p) == kind]
                if params:
                    (self._update if self.foreach else self._update_loop)(group, kind, params)
        return loss

    def _direction(self, group: dict, params: list) -> list:
        """Momentum directions (as torch.optim.SGD, dampening 0), foreach ops."""
        mom, wd = group["momentum"], group["weight_decay"]
        grads = [p.grad for p in params]
        d = torch._foreach_add(grads, params, alpha=wd) if wd else grads
        if not mom:
            return d
        old = [i for i, p in enumerate(params) if "momentum_buffer" in self.state[p]]
        for i, p in enumerate(params):
            if "momentum_buffer" not in self.state[p]:
                self.state[p]["momentum_buffer"] = d[i].clone()
        if old:
            bufs = [self.state[params[i]]["momentum_buffer"] for i in old]
            torch._foreach_mul_(bufs, mom)
            torch._foreach_add_(bufs, [d[i] for i in old])
        bufs = [self.state[p]["momentum_buffer"] for p in params]
        return torch._foreach_add(d, bufs, alpha=mom) if group["nesterov"] else bufs

    def _update(self, group: dict, kind: str, params: list) -> None:
        lr, kappa, nu = group["lr"], group["kappa"], group["nu"]
        d = self._direction(group, params)
        if kind == "other":
            torch._foreach_add_(params, d, alpha=-lr)
            return
        states = [self.state[p] for p in params]
        zs, gammas = [st["z"] for st in states], [st["gamma"] for st in states]
        diff = torch._foreach_sub(params, gammas)                 # W_k - Gamma_k
        torch._foreach_add_(params, d, alpha=-lr * kappa)
        torch._foreach_add_(params, diff, alpha=-lr * kappa / nu)
        torch._foreach_add_(zs, diff, alpha=max(lr, group["z_lr_min"]) / nu)
        prox = prox_group if kind == "conv" else prox_l1
        for st in states:
            st["gamma"].copy_(prox(st["z"], st.get("lam", group["lam"])).mul_(kappa))

    def _update_loop(self, group: dict, kind: str, params: list) -> None:
        """The same update as :meth:`_update`, one tensor at a time."""
        lr, kappa, nu = group["lr"], group["kappa"], group["nu"]
        mom, wd = group["momentum"], group["weight_decay"]
        for p in params:
            st = self.state[p]
            d = p.grad.add(p, alpha=wd) if wd else p.grad
            if mom:
                if "momentum_buffer" not in st:
                    st["momentum_buffer"] = d.clone()
                else:
                    st["momentum_buffer"].mul_(mom).add_(d)
                buf = st["momentum_buffer"]
                d = d.add(buf, alpha=mom) if group["nesterov"] else buf
            if kind == "other":
                p.add_(d, alpha=-lr)
                continue
            diff = p - st["gamma"]
            p.add_(d, alpha=-lr * kappa).add_(diff, alpha=-lr * kappa / nu)
            st["z"].add_(diff, alpha=max(lr, group["z_lr_min"]) / nu)
            prox = prox_group if kind == "conv" else prox_l1
            st["gamma"].copy_(prox(st["z"], st.get("lam", group["lam"])).mul_(kappa))

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        for st in self.state.values():  # torch casts state to the weight's dtype
            if "entry" in st:
                st["entry"] = st["entry"].round().long()

    # ------------------------------------------------------------ the path

    def _path_params(self):
        """(name, kind, param, state) for every weight with a Gamma."""
        for gi, group in enumerate(self.param_groups):
            names = group.get("names") or []
            for i, p in enumerate(group["params"]):
                kind = _kind(group, p)
                if kind != "other":
                    name = names[i] if i < len(names) else f"group{gi}.{i}"
                    yield name, kind, p, self.state[p]

    def gammas(self) -> dict[str, torch.Tensor]:
        """Gamma of every conv/linear weight, by layer name."""
        return {name: st["gamma"] for name, _, _, st in self._path_params()}

    @torch.no_grad()
    def support_masks(self) -> dict[str, torch.Tensor]:
        """Boolean masks of Gamma's support: per filter (conv), per weight (linear)."""
        return {name: (st["gamma"].flatten(1).abs().amax(1) > 0) if kind == "conv"
                else st["gamma"] != 0 for name, kind, _, st in self._path_params()}

    def support(self) -> dict[str, int]:
        """Filters (conv) or weights (linear) in Gamma's support, by layer."""
        masks = self.support_masks()
        counts = torch.stack([m.sum() for m in masks.values()]).tolist() if masks else []
        return dict(zip(masks, counts))

    def sizes(self) -> dict[str, int]:
        """Filters (conv) or weights (linear) per layer: the support's maximum."""
        return {name: p.shape[0] if kind == "conv" else p.numel()
                for name, kind, p, _ in self._path_params()}

    @torch.no_grad()
    def epoch_end(self, epoch: int, last: bool = False) -> dict:
        """Record ``epoch + 1`` (1-based, as in the history) for filters just
        entered; return what the engine adds to the epoch's record.

        Every epoch: ``slbi_support`` and ``slbi_sizes`` ({layer: count});
        after the last epoch also ``slbi_entry`` ({conv layer: [entry epoch
        per filter]}, -1 for never).
        """
        for name, kind, p, st in self._path_params():
            if kind == "conv":
                inside = st["gamma"].flatten(1).abs().amax(1) > 0
                st["entry"] = torch.where((st["entry"] < 0) & inside,
                                          torch.full_like(st["entry"], epoch + 1), st["entry"])
        out = {"slbi_support": self.support(), "slbi_sizes": self.sizes()}
        if last:
            out["slbi_entry"] = self.entry_epochs()
        return out

    def entry_epochs(self) -> dict[str, list[int]]:
        """Per conv layer, the epoch each filter entered Gamma's support (-1: never)."""
        return {name: st["entry"].tolist() for name, kind, _, st in self._path_params()
                if kind == "conv"}


def slbi_groups(model: nn.Module, lambda_conv: float, lambda_linear: float,
                norm_bias_decay: bool = True) -> list[dict]:
    """Param groups for :class:`SLBI`: conv weights, linear weights, the rest.

    With ``norm_bias_decay=False`` the rest's 1-D parameters (biases,
    norm scales and shifts) form a group without weight decay.
    """
    conv, lin, taken = {}, {}, set()
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if not isinstance(w, nn.Parameter) or not w.requires_grad:
            continue
        if isinstance(m, nn.Conv2d):
            conv[name] = w
        elif isinstance(m, nn.Linear):
            lin[name] = w
        else:
            continue
        taken.add(id(w))
    other = [p for p in trainable(model) if id(p) not in taken]
    flat = [] if norm_bias_decay else [p for p in other if p.dim() < 2]
    groups = [dict(params=list(conv.values()), names=list(conv), kind="conv", lam=lambda_conv),
              dict(params=list(lin.values()), names=list(lin), kind="linear", lam=lambda_linear),
              dict(params=[p for p in other if not any(p is q for q in flat)],
                   names=[], kind="other", lam=0.0),
              dict(params=flat, names=[], kind="other", lam=0.0, weight_decay=0.0)]
    return [g for g in groups if g["params"]]


@register_optimizer("slbi")
def _slbi(model, lr, momentum, weight_decay, nesterov, total_steps, kappa=1.0,
          nu=None, mu=None, lambda_conv=1.0, lambda_linear=0.01, relative=False,
          z_lr_floor=0.0, norm_bias_decay=False, **kw):
    """DessiLBI over ``model``: ``optim_kw`` takes kappa, nu (or mu), lambda_conv,
    lambda_linear, relative (thresholds times each layer's initial scale) and
    z_lr_floor (the Z update's learning rate is at least this times ``lr``)."""
    if kw:
        raise ValueError(f"slbi takes no option(s) {sorted(kw)}; valid: kappa, nu "
                         "(alias mu), lambda_conv, lambda_linear, relative, z_lr_floor")
    if nu is not None and mu is not None:
        raise ValueError("slbi: give nu or its alias mu, not both")
    nu = nu if nu is not None else mu if mu is not None else 100.0
    return SLBI(slbi_groups(model, lambda_conv, lambda_linear, norm_bias_decay), lr=lr,
                kappa=kappa, nu=nu, momentum=momentum, weight_decay=weight_decay,
                nesterov=nesterov and momentum > 0, relative=bool(relative),
                z_lr_min=z_lr_floor * lr)


def entry_from_record(record: dict) -> dict[str, list[int]]:
    """The filter entry epochs a run's history kept (see :meth:`SLBI.epoch_end`)."""
    for rec in reversed(record.get("history", [])):
        if "slbi_entry" in rec:
            return rec["slbi_entry"]
    raise ValueError(f"run {record.get('run')} has no 'slbi_entry' in its history; train "
                     "it to the end with optimizer='slbi'")


# ---------------------------------------------------------------- pruning

ORDERS = ("magnitude", "bn", "path")


def conv_layers(model: nn.Module) -> dict[str, nn.Conv2d]:
    """The model's conv layers by module name, in order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def _norm_after(model: nn.Module) -> dict[str, nn.Module]:
    """For each conv, the first BatchNorm2d after it (before the next conv) that fits."""
    pairs, last = {}, None
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            last = (name, m)
        elif isinstance(m, nn.BatchNorm2d) and last is not None:
            if m.num_features == last[1].out_channels:
                pairs[last[0]] = m
            last = None
    return pairs


def filter_norms(conv: nn.Conv2d) -> torch.Tensor:
    """L2 norm of each output filter of a conv layer."""
    return conv.weight.detach().flatten(1).norm(dim=1).float().cpu()


def bn_scales(model: nn.Module, layer: str) -> torch.Tensor:
    """|gamma| of the BatchNorm after conv ``layer`` (network slimming's importance)."""
    bn = _norm_after(model).get(layer)
    if bn is None or bn.weight is None:
        raise ValueError(f"conv layer {layer!r} has no affine BatchNorm2d after it; "
                         "use by='magnitude' or by='path'")
    return bn.weight.detach().abs().float().cpu()


def prune_order(model: nn.Module, layer: str, by: str = "magnitude",
                entry: dict | None = None) -> list[int]:
    """Filters of ``layer``, the first to prune first.

    ``by="magnitude"``: smallest filter L2 norm first. ``by="bn"``: smallest
    |scale| of the following BatchNorm first (Liu et al. 2017, network
    slimming; filter norms carry no scale information in a BN network).
    ``by="path"``: latest to enter Gamma's support first (never-entered
    before all), ties broken by the smaller filter norm; ``entry`` maps
    layers to entry epochs (:meth:`SLBI.entry_epochs` or :func:`entry_from_record`).
    """
    convs = conv_layers(model)
    if layer not in convs:
        raise ValueError(f"no conv layer {layer!r}; conv layers: {', '.join(convs)}")
    if by not in ORDERS:
        raise ValueError(f"unknown pruning order {by!r}; use one of {ORDERS}")
    norms = filter_norms(convs[layer]).tolist()
    if by == "magnitude":
        return sorted(range(len(norms)), key=lambda i: norms[i])
    if by == "bn":
        scales = bn_scales(model, layer).tolist()
        return sorted(range(len(scales)), key=lambda i: scales[i])
    if entry is None or layer not in entry:
        raise ValueError(f"path pruning needs the entry epochs of {layer!r} "
                         "(optimizer.entry_epochs() or entry_from_record(record))")
    ent = [int(e) for e in entry[layer]]
    if len(ent) != len(norms):
        raise ValueError(f"entry epochs of {layer!r} list {len(ent)} filters, "
                         f"the layer has {len(norms)}")
    late = [math.inf if e < 0 else e for e in ent]
    return sorted(range(len(norms)), key=lambda i: (-late[i], norms[i]))


class Pruning:
    """Filters zeroed by :func:`prune_filters`; :meth:`undo` restores them exactly.

    ``pruned`` maps each layer to the filter indices removed. Usable as a
    context manager: the weights come back when the block ends.
    :meth:`reapply` zeroes the pruned entries again (after a fine-tuning step).
    """

    def __init__(self, saved: list[tuple[torch.Tensor, torch.Tensor, list]], pruned: dict):
        self._saved, self.pruned = saved, pruned

    @torch.no_grad()
    def undo(self) -> None:
        for t, copy, _ in self._saved:
            t.copy_(copy)
        self._saved = []

    @torch.no_grad()
    def reapply(self) -> None:
        for t, _, idx in self._saved:
            t[idx] = 0

    def keep_mask(self, layer: str, n: int) -> torch.Tensor:
        """Boolean mask of the filters of ``layer`` (``n`` of them) still kept."""
        mask = torch.ones(n, dtype=torch.bool)
        mask[self.pruned.get(layer, [])] = False
        return mask

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.undo()


@torch.no_grad()
def prune_indices(model: nn.Module, pruned: dict[str, list[int]]) -> Pruning:
    """Zero the given output filters ({conv layer: [filter index]}).

    A pruned filter's output channel becomes exactly zero: its conv weight and
    bias are zeroed, and the scale and shift of the BatchNorm right after it,
    as if the channel were removed. ``undo()`` puts back the original weights.
    """
    convs, norms = conv_layers(model), _norm_after(model)
    saved, out = [], {}
    for layer, idx in pruned.items():
        if layer not in convs:
            raise ValueError(f"no conv layer {layer!r}; conv layers: {', '.join(convs)}")
        idx = sorted(int(i) for i in idx)
        out[layer] = idx
        if not idx:
            continue
        conv, bn = convs[layer], norms.get(layer)
        tensors = [conv.weight, conv.bias] + ([bn.weight, bn.bias] if bn is not None else [])
        for t in tensors:
            if t is not None:
                saved.append((t, t.detach().clone(), idx))
                t[idx] = 0
    return Pruning(saved, out)


def prune_filters(model: nn.Module, fraction: float,
                  layers: str | Iterable[str] | None = None, by: str = "magnitude",
                  entry: dict | None = None) -> Pruning:
    """Zero ``fraction`` of the filters of each layer in ``layers`` (default: all
    convs) in the order of :func:`prune_order`; see :func:`prune_indices`."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    layers = list(conv_layers(model)) if layers is None else \
        [layers] if isinstance(layers, str) else list(layers)
    pruned = {}
    for layer in layers:
        order = prune_order(model, layer, by, entry)
        pruned[layer] = order[:int(round(fraction * len(order)))]
    return prune_indices(model, pruned)


def outside(entry: dict, layers: Iterable[str] | None = None) -> dict[str, list[int]]:
    """The filters of ``layers`` (default: all) that never entered Gamma's support."""
    layers = list(entry) if layers is None else list(layers)
    return {layer: [i for i, e in enumerate(entry[layer]) if e < 0] for layer in layers}


# ---------------------------------------------------------------- after pruning


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader, batches: int) -> nn.Module:
    """Recompute every BatchNorm's running statistics from ``batches`` training
    batches (a cumulative average), then put the model back in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    moms = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for _, (x, _y) in zip(range(batches), loader):
        model(x)
    for m, mom in zip(bns, moms):
        m.momentum = mom
    return model.eval()


def finetune(model: nn.Module, loader, steps: int, pruning: Pruning | None = None,
             lr: float = 0.01, weight_decay: float = 5e-4) -> nn.Module:
    """A short fine-tune: SGD momentum 0.9, cosine from ``lr`` to 0 over
    ``steps`` batches, no decay of 1-D parameters; the pruned filters of
    ``pruning`` are zeroed again after every step. Returns the model in eval mode."""
    opt = torch.optim.SGD(decay_groups(model, weight_decay), lr=lr, momentum=0.9)
    dev = next(model.parameters()).device
    model.train()
    done = 0
    while done < steps:
        for x, y in loader:
            if done == steps:
                break
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * done / steps))
            with torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
                loss = nn.functional.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if pruning is not None:
                pruning.reapply()
            done += 1
    return model.eval()

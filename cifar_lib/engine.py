"""Training engine: one config dataclass, fit/evaluate, checkpoints.

``fit(model, loaders, cfg)`` trains with bf16 autocast and channels_last on
CUDA (fp32 on CPU), keeps losses and accuracies on the device (one host sync
per epoch, plus a divergence check every ``check_every`` steps), keeps the
best weights by validation accuracy, writes checkpoints atomically, resumes
an interrupted run, and stops cleanly when the loss turns NaN/inf or blows
up past ``max_loss``, recording the run as diverged with its history so far.
"""
from __future__ import annotations

import difflib
import errno
import functools
import json
import math
import os
import pickle
import re
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.swa_utils import update_bn

from cifar_lib.augment import augment_dict, resolve_augment
from cifar_lib.data import DeviceLoader, Split
from cifar_lib.fsutil import atomic_write
from cifar_lib.losses import make_loss
from cifar_lib.models import create_model, model_options
from cifar_lib.health import failure
from cifar_lib.optim import (FP16_UNSAFE, FP32State, GradClip, Lookahead, LRSchedule,
                             check_schedule, make_ema, make_optimizer, make_swa, trainable)
from cifar_lib.registry import OPTIMIZERS
from cifar_lib import slbi  # noqa: F401  (registers the "slbi" optimizer)


# Types a TrainConfig field accepts, by its annotation.
_KINDS = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,),
          "float | None": (int, float, type(None)), "dict": (dict, type(None)),
          "dict | str": (dict, str, type(None)), "bool | str": (bool, str)}


# torch.compile's modes ("reduce-overhead": CUDA graphs of the compiled model)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compiled(model: nn.Module, how: bool | str) -> nn.Module:
    """``model`` under torch.compile: ``how`` False (eager), True (the
    default mode) or one of :data:`COMPILE_MODES`."""
    if not how:
        return model
    return torch.compile(model, mode=None if how is True else how)


@dataclass
class TrainConfig:
    """Everything that defines one training run (stored with its result)."""

    model: str = "fastnet"
    model_kw: dict = field(default_factory=dict)   # e.g. {"width": 0.5}
    optimizer: str = "sgd"        # sgd, adam, adamw, signsgd, adamw_sgd, slbi
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    norm_bias_decay: bool = False  # weight decay on norm weights and biases too (1-D params)
    optim_kw: dict = field(default_factory=dict)   # e.g. {"switch_at": 0.5}
    scheduler: str = "cosine"     # constant, step, exponential, cosine, linear, onecycle, plateau
    sched_kw: dict = field(default_factory=dict)   # e.g. {"step_size": 10, "gamma": 0.1}
    warmup_epochs: float = 0.0    # linear warm-up, multiplies any schedule
    loss: str = "cross_entropy"   # cross_entropy, focal, mse
    label_smoothing: float = 0.0
    loss_kw: dict = field(default_factory=dict)    # e.g. {"gamma": 2.0}
    epochs: int = 10
    batch_size: int = 256
    augment: dict | str = "crop_flip"  # preset name or Augment fields
    normalize: bool = True        # standardise inputs with train statistics
    l1: float = 0.0               # L1 penalty on conv/linear weights
    grad_clip: float = 0.0        # max global gradient norm (0: off)
    ema: float = 0.0              # EMA decay of weights, evaluated instead (0: off)
    swa_start: float = 0.0        # fraction of epochs after which SWA averages (0: off)
    swa_lr: float | None = None   # constant lr during SWA (None: lr / 10)
    tta_flip: bool = False        # evaluate on image and its mirror image
    seed: int = 0
    amp: bool = True              # bf16 autocast (CUDA only)
    channels_last: bool = True    # NHWC memory format (CUDA only)
    compile: bool | str = False   # torch.compile the model (True, or a mode: COMPILE_MODES)
    keep: str = "best"            # weights kept and tested: "best" (by val acc) or "last"
    # The fields below are left out of to_dict() at their defaults (_QUIET), so
    # configs from before they existed keep their run names.
    decoupled: bool = False       # lr, weight_decay per 1024 images, decoupled (see optim_args)
    norm_bias_lr: float = 1.0     # lr multiplier of norm-layer biases (decay step kept)
    last_epoch_frac: float = 1.0  # part of the last epoch trained (9.9 epochs: 10 and 0.9)
    lookahead: int = 0            # Lookahead every N steps, final weights its average (0: off)
    lookahead_decay: float = 0.95  # its per-step decay; rho = decay**N * (t/T)**pow
    lookahead_pow: float = 3.0
    whiten_bias_epochs: int = 0   # epochs the whitening stem's bias trains, then frozen (0: off)
    tta_translate: int = 0        # also average views shifted +-N pixels (with tta_flip: 6)
    epoch_aug: bool = False       # augment a whole epoch at once (fewer ops per step)
    val_every: int = 1            # validate every N epochs; 0: once, after training (lean loop)
    fp16: bool = False            # network in fp16, BN in fp32, fp16 inputs (CUDA only)
    grad_clip_quantile: float = 0.0  # clip at this quantile of the norms so far (AutoClip; 0: off)

    def __post_init__(self):
        for f in fields(self):  # e.g. lr="abc" from the command line
            kinds, v = _KINDS.get(f.type), getattr(self, f.name)
            if kinds and (not isinstance(v, kinds) or
                          isinstance(v, bool) and bool not in kinds):
                raise ValueError(f"bad config value {f.name}={v!r}; expected {f.type}")
            if float in kinds and isinstance(v, int):  # lr=1 and lr=1.0: one run
                setattr(self, f.name, float(v))
        self.augment = augment_dict(self.augment)
        for key in ("model_kw", "optim_kw", "sched_kw", "loss_kw"):
            setattr(self, key, dict(getattr(self, key) or {}))
        options = [o for o in model_options(self.model) if o != "num_classes"]
        bad_kw = set(self.model_kw) - set(options)
        if bad_kw:
            raise ValueError(f"model {self.model!r} has no option(s) {sorted(bad_kw)}; "
                             f"valid: {', '.join(options)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of "
                             f"{', '.join(sorted(OPTIMIZERS))}")
        check_schedule(self.scheduler, self.sched_kw)
        if "label_smoothing" in self.loss_kw:
            raise ValueError("set label smoothing with the field label_smoothing, "
                             "not in loss_kw")
        make_loss(self.loss, self.label_smoothing, **self.loss_kw)  # names, options
        checks = [("epochs", self.epochs >= 1), ("batch_size", self.batch_size >= 1),
                  ("lr", self.lr > 0), ("label_smoothing", 0 <= self.label_smoothing < 1),
                  ("grad_clip", self.grad_clip >= 0), ("ema", 0 <= self.ema < 1),
                  ("swa_start", 0 <= self.swa_start < 1), ("l1", self.l1 >= 0),
                  ("weight_decay", self.weight_decay >= 0),
                  ("momentum", 0 <= self.momentum < 1),
                  ("swa_lr", self.swa_lr is None or self.swa_lr > 0),
                  ("warmup_epochs", 0 <= self.warmup_epochs <= self.epochs),
                  ("keep", self.keep in ("best", "last")),
                  ("compile", isinstance(self.compile, bool) or self.compile in COMPILE_MODES)]
        for name, ok in checks:
            if not ok:
                raise ValueError(f"bad config value {name}={getattr(self, name)!r}")
        self._check_recipe_fields()

    def _check_recipe_fields(self) -> None:
        """Ranges of the fields added for the airbench-style recipe."""
        checks = [
            ("norm_bias_lr", self.norm_bias_lr > 0, "a positive multiplier"),
            ("last_epoch_frac", 0 < self.last_epoch_frac <= 1, "a fraction in (0, 1]"),
            ("lookahead", self.lookahead >= 0, "steps between updates, >= 0 (0: off)"),
            ("lookahead_decay", 0 < self.lookahead_decay <= 1, "a decay in (0, 1]"),
            ("lookahead_pow", self.lookahead_pow >= 0, "a power >= 0"),
            ("whiten_bias_epochs", 0 <= self.whiten_bias_epochs <= self.epochs,
             f"epochs in [0, epochs={self.epochs}] (0: never frozen)"),
            ("tta_translate", 0 <= self.tta_translate <= 8, "pixels in [0, 8]"),
            ("val_every", self.val_every >= 0, "epochs >= 0 (0: after training only)"),
            ("val_every", self.val_every or self.keep == "last",
             "val_every=0 only with keep='last' (best-by-validation needs "
             "validation each epoch)"),
            ("val_every", self.val_every or self.scheduler != "plateau",
             "val_every=0 not with the plateau schedule (it reads each "
             "epoch's validation loss)"),
            ("grad_clip_quantile", 0 <= self.grad_clip_quantile <= 1,
             "a quantile in [0, 1] (0: off)"),
            ("grad_clip_quantile", not (self.grad_clip_quantile and self.grad_clip),
             f"0 with grad_clip={self.grad_clip} (one clipping rule at a time)"),
            ("decoupled", not self.decoupled or self.optimizer == "sgd",
             f"decoupled=True only with optimizer 'sgd' (got {self.optimizer!r})"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"bad config value {name}={getattr(self, name)!r}; "
                                 f"expected {expected}")

    def to_dict(self) -> dict:
        """A JSON-safe dict (tuples become lists).

        ``norm_bias_decay`` is left out where it changes nothing (no weight
        decay), and each field of :data:`_QUIET` while at its default, so
        runs keep the names they had before those fields existed.
        """
        d = json.loads(json.dumps(asdict(self)))
        if not self.weight_decay:
            d.pop("norm_bias_decay")
        for name, default in _QUIET.items():
            if d[name] == default:
                d.pop(name)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        _check_field_names(d)
        if "norm_bias_decay" not in d and d.get("weight_decay", 5e-4):
            d = {**d, "norm_bias_decay": True}  # records from before the field
        return cls(**d)

    def replace(self, **kw) -> "TrainConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **kw)


class UnknownFieldError(ValueError, TypeError):
    """A config field that does not exist (``TrainConfig(epoch=3)``): a
    ValueError like the other config checks, and a TypeError like any
    unexpected keyword argument."""


_FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))


def _check_field_names(names) -> None:
    """UnknownFieldError naming each unknown field, its closest valid name
    and the valid names."""
    bad = sorted(n for n in names if n not in _FIELD_NAMES)
    if not bad:
        return
    parts = []
    for name in bad:
        near = difflib.get_close_matches(str(name), _FIELD_NAMES, n=1)
        parts.append(repr(name) + (f" (did you mean {near[0]!r}?)" if near else ""))
    raise UnknownFieldError(f"unknown config field{'s' if len(bad) > 1 else ''} "
                            f"{', '.join(parts)}; valid: {', '.join(sorted(_FIELD_NAMES))}")


def _checked_init(init):
    """The dataclass's generated ``__init__`` behind a check of the keyword
    names (a clear error instead of "unexpected keyword argument"); its
    signature stays the generated one (``__wrapped__``)."""
    @functools.wraps(init)
    def __init__(self, *args, **kw):
        _check_field_names(kw)
        init(self, *args, **kw)
    return __init__


TrainConfig.__init__ = _checked_init(TrainConfig.__init__)


# Fields stored in a config's dict only when they differ from these defaults.
_QUIET = {"decoupled": False, "norm_bias_lr": 1.0, "last_epoch_frac": 1.0,
          "lookahead": 0, "lookahead_decay": 0.95, "lookahead_pow": 3.0,
          "whiten_bias_epochs": 0, "tta_translate": 0, "epoch_aug": False,
          "val_every": 1, "fp16": False, "grad_clip_quantile": 0.0}


class Loaders(NamedTuple):
    train: DeviceLoader
    val: DeviceLoader
    test: DeviceLoader


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# True makes the CUDA-only paths (autocast, channels_last, fp16) run on the
# CPU too: benchmarks/step_ops.py counts a CUDA step's operations that way.
EMULATE_CUDA = False


def gpu_path(device: torch.device) -> bool:
    """Whether the CUDA-only paths apply on ``device``."""
    return device.type == "cuda" or EMULATE_CUDA


def make_loaders(split: Split, cfg: TrainConfig, device=None) -> Loaders:
    """Device-resident train/val/test loaders for ``split`` as ``cfg`` asks."""
    dev = torch.device(device) if device else default_device()
    kw = dict(device=dev, num_classes=split.num_classes,
              channels_last=cfg.channels_last and gpu_path(dev))
    if cfg.normalize:
        kw.update(mean=split.mean, std=split.std)
    if cfg.fp16 and gpu_path(dev):
        kw.update(dtype=torch.float16)
    eval_bs = max(cfg.batch_size, 500)
    return Loaders(
        DeviceLoader(*split.train, cfg.batch_size, train=True, epoch_aug=cfg.epoch_aug,
                     augment=resolve_augment(cfg.augment), seed=cfg.seed, **kw),
        DeviceLoader(*split.val, eval_bs, **kw),
        DeviceLoader(*split.test, eval_bs, **kw))


# ---------------------------------------------------------------- checkpoints


class CheckpointError(RuntimeError):
    """A checkpoint that is unreadable or does not fit the model."""


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temp file beside ``path``, then rename over it."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _retrain_advice(path: Path) -> str:
    """What to do about a damaged or foreign checkpoint (never to switch the
    safe load off: torch's own advice for that is left out of messages)."""
    if path.name.endswith(".last.pt"):
        return ("it is only a resume state: delete it (the run then starts from its "
                "first epoch) or pass resume=False")
    return "delete it and train the run again (force=True, or --force on the command line)"


def _unreadable_reason(e: BaseException) -> str:
    """Why torch.load(weights_only=True) refused a file, in a few words and
    without torch's advice text (which suggests weights_only=False)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it holds a Python object ({found.group(1)}) that no checkpoint of cifar_lib holds"
    if isinstance(e, pickle.UnpicklingError) or "weights_only" in text.lower() \
            or "WeightsUnpickler" in text:
        return "it is not a torch checkpoint of tensors and plain containers"
    if isinstance(e, EOFError) or "zip archive" in text or "central directory" in text:
        return "it is truncated or is not a torch checkpoint"
    first = text.strip().splitlines()[0][:160] if text.strip() else ""
    return f"it is not a torch checkpoint ({type(e).__name__}{': ' + first if first else ''})"


def read_checkpoint(path: Path) -> dict:
    """torch.load with weights_only=True, as a clear error when unreadable:
    the message names the file, says it is damaged or not a checkpoint of
    this library and what to do (never to load it unsafely)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train the run first "
                              "(or rebuild it with force=True)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:  # permissions, I/O: the file itself may be fine
        raise CheckpointError(f"checkpoint {path} cannot be read ({e.strerror or e}); "
                              "check the file's permissions and disk") from e
    except Exception as e:  # zip/pickle errors come in many types
        err = CheckpointError(f"checkpoint {path} is unreadable: it is damaged or not a "
                              f"checkpoint of cifar_lib ({_unreadable_reason(e)}); "
                              f"{_retrain_advice(path)}")
        err.torch_error = e  # for debugging; not chained: its text says to load unsafely
        raise err from None


# ------------------------------------------------------- writing checkpoints


def _nbytes(obj) -> int:
    """Bytes of the tensors in a (nested) checkpoint object."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    return 0


def _why_not_written(e: BaseException, path: Path, obj) -> tuple[int, str]:
    """(errno, reason) of a failed torch.save of ``obj`` to ``path``: an
    OSError's own; torch's zip writer raises a RuntimeError without one
    ("unexpected pos ..."), read as a full disk when the free space is below
    the checkpoint's size."""
    code = getattr(e, "errno", None)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return code, "the disk is full"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return code, f"the folder is not writable ({e.strerror or e})"
    if isinstance(e, OSError):
        return code or errno.EIO, f"the disk is full or not writable ({e.strerror or e})"
    need = _nbytes(obj)
    try:  # (the failed write may still hold its space: torch's writer is alive)
        disk = shutil.disk_usage(path.parent)
    except OSError:
        disk = None
    if disk is not None and disk.free < need + 2**20:
        return errno.ENOSPC, (f"the disk is full (the checkpoint needs about "
                              f"{need / 2**20:.1f} MB; the disk holds "
                              f"{disk.total / 2**20:.1f} MB)")
    if not os.access(path.parent, os.W_OK):
        return errno.EACCES, "the folder is not writable"
    first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
    return errno.EIO, f"the disk is full or not writable (torch's writer: {first})"


def unsaved_path(path) -> Path:
    """Where weights that could not be written to ``path`` are kept instead."""
    return Path(tempfile.gettempdir()) / f"cifar_lib-unsaved-{Path(path).stem}.pt"


def _save_or_keep(obj: dict, path: Path, extra: dict | None = None) -> None:
    """atomic_save ``obj`` to ``path``; when that fails, keep it (with
    ``extra``) in :func:`unsaved_path` and raise an OSError that names both
    and chains the original error. Nothing half-written stays at ``path``."""
    try:
        atomic_save(obj, path)
        return
    except (OSError, RuntimeError) as e:
        code, why = _why_not_written(e, path, obj)
        keep = unsaved_path(path)
        try:
            atomic_save({**obj, **(extra or {})}, keep)
            kept = (f"the trained weights are kept in {keep} instead (load them with "
                    f"cifar_lib.load_checkpoint({str(keep)!r}); copy the file to {path} "
                    "once there is room)")
        except (OSError, RuntimeError) as e2:
            kept = (f"they could not be kept in {keep} either "
                    f"({_why_not_written(e2, keep, obj)[1]}): the trained weights are lost")
        raise OSError(code, f"could not write the checkpoint {path}: {why}; {kept}") from e


def check_state(model: nn.Module, state: dict, path) -> None:
    """Raise CheckpointError naming every key/shape that does not match."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or extra or shapes:
        parts = [f"missing {missing[:5]}" if missing else "",
                 f"unexpected {extra[:5]}" if extra else "",
                 f"shape mismatch {shapes[:5]}" if shapes else ""]
        raise CheckpointError(
            f"checkpoint {path} does not match the model "
            f"({'; '.join(p for p in parts if p)}); load it into the model it was "
            "saved from (see its 'model_name' and 'model_kw')")


def save_checkpoint(path, model: nn.Module, cfg: TrainConfig | None = None,
                    **meta) -> None:
    """Weights plus what is needed to rebuild the model, written atomically."""
    obj = {"model": model.state_dict(), **meta}
    if cfg is not None:
        obj.update(model_name=cfg.model, model_kw=cfg.model_kw, config=cfg.to_dict())
    path = Path(path)
    try:
        atomic_save(obj, path)
    except (OSError, RuntimeError) as e:  # torch's zip writer: "unexpected pos ..."
        code, why = _why_not_written(e, path, obj)
        raise OSError(code, f"could not write the checkpoint {path}: {why}; the model "
                      "in memory is unchanged: save it elsewhere") from e


def load_checkpoint(path, model: nn.Module | None = None) -> nn.Module:
    """Load weights into ``model`` (or a model rebuilt from the checkpoint)."""
    ck = read_checkpoint(path)
    if model is None:
        if "model_name" not in ck:
            raise CheckpointError(f"checkpoint {path} does not name its model; "
                                  "pass the model to load it into")
        model = create_model(ck["model_name"], num_classes=ck.get("num_classes", 10),
                             **ck.get("model_kw", {}))
    check_state(model, ck["model"], path)
    model.load_state_dict(ck["model"])
    return model


# ---------------------------------------------------------------- evaluation


def _labels(y: torch.Tensor) -> torch.Tensor:
    return y if y.dtype == torch.long else y.argmax(1)


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16,
                          enabled=amp and gpu_path(device))


def _amp(cfg: TrainConfig) -> bool:
    """bf16 autocast, unless the network itself runs in fp16."""
    return cfg.amp and not cfg.fp16


def _views(model: nn.Module, x: torch.Tensor, flip: bool) -> torch.Tensor:
    out = model(x).float()
    if flip:
        out = (out + model(x.flip(3)).float()) / 2
    return out


def tta_logits(model: nn.Module, x: torch.Tensor, flip: bool = False,
               translate: int = 0) -> torch.Tensor:
    """Logits averaged over test-time views: the image (and its mirror with
    ``flip``); with ``translate``, half weight on the mean of the views
    shifted by ``translate`` pixels up-left and down-right (reflect
    padding). airbench94's six views are ``flip=True, translate=1``."""
    out = _views(model, x, flip)
    if translate:
        h, w, t = x.shape[-2], x.shape[-1], translate
        xp = F.pad(x, (t, t, t, t), mode="reflect")
        moved = (_views(model, xp[..., :h, :w], flip) +
                 _views(model, xp[..., 2 * t:, 2 * t:], flip)) / 2
        out = (out + moved) / 2
    return out


@torch.no_grad()
def predict(model: nn.Module, loader: DeviceLoader, tta_flip: bool = False,
            amp: bool = True, tta_translate: int = 0):
    """Logits (float32) and labels of every example in ``loader``."""
    model.eval()
    outs, ys = [], []
    for x, y in loader:
        with _autocast(loader.device, amp):
            out = tta_logits(model, x, tta_flip, tta_translate)
        outs.append(out)
        ys.append(y)
    return torch.cat(outs), torch.cat(ys)


def evaluate(model: nn.Module, loader: DeviceLoader, tta_flip: bool = False,
             amp: bool = True, tta_translate: int = 0) -> dict:
    """Cross-entropy loss and accuracy over ``loader`` (one host sync)."""
    logits, y = predict(model, loader, tta_flip, amp, tta_translate)
    loss = F.cross_entropy(logits, y)
    acc = (logits.argmax(1) == y).float().mean()
    loss, acc = torch.stack([loss, acc]).tolist()
    return {"loss": loss if math.isfinite(loss) else None, "acc": acc}


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Sum of absolute conv and linear weights."""
    ws = [m.weight for m in model.modules()
          if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.requires_grad]
    return torch.stack([w.abs().sum() for w in ws]).sum()


# ---------------------------------------------------------------- training


def _progress(enabled):
    """Progress bar on: argument, else $CIFAR_LIB_PROGRESS, else Jupyter or a TTY."""
    if enabled is None:
        env = os.environ.get("CIFAR_LIB_PROGRESS")
        if env is not None:
            return env not in ("0", "", "false")
        return "ipykernel" in sys.modules or sys.stderr.isatty()
    return enabled


def _snapshot(model: nn.Module) -> dict:
    """A copy of the state dict on the model's device (no host copy)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Averager:
    """The weight averages a config asks for: an EMA (evaluated instead of
    the model), SWA from epoch ``swa_epoch`` on, and/or Lookahead (whose
    average the model takes at the end of training)."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, total_steps: int = 1):
        self.ema = make_ema(model, cfg.ema) if cfg.ema else None
        self.swa_epoch = math.ceil(cfg.swa_start * cfg.epochs) if cfg.swa_start else None
        self.swa = make_swa(model) if self.swa_epoch is not None else None
        self.lookahead = (Lookahead(model, cfg.lookahead, total_steps, cfg.lookahead_decay,
                                    cfg.lookahead_pow) if cfg.lookahead else None)

    def eval_model(self, model: nn.Module) -> nn.Module:
        return self.ema.module if self.ema is not None else model

    def step(self, model: nn.Module, t: int = 0) -> None:
        """After optimizer step ``t`` (counting from 1 over the run)."""
        if self.ema is not None:
            self.ema.update(model)
        if self.lookahead is not None:
            self.lookahead.step(t)

    def train_end(self) -> None:
        """After the last step: the model takes the Lookahead average."""
        if self.lookahead is not None:
            self.lookahead.finish()

    def epoch_end(self, model: nn.Module, epoch: int) -> None:
        if self.swa is not None and epoch >= self.swa_epoch:
            self.swa.update_parameters(model)

    def _averages(self):
        return (("ema", self.ema), ("swa", self.swa), ("lookahead", self.lookahead))

    def state_dict(self) -> dict:
        return {k: a.state_dict() for k, a in self._averages() if a is not None}

    def load_state_dict(self, state: dict) -> None:
        for key, avg in self._averages():
            if avg is not None:
                avg.load_state_dict(state[key])


class Checkpointer:
    """Where a run's weights and resume state go.

    The kept weights stay in device memory during training and are written
    once, at the end, to ``path``; the whole training state goes to
    ``<path>.last.pt`` at most every ``every`` seconds (0: after every
    epoch), and is removed when the run ends.
    """

    def __init__(self, path, every: float = 120.0):
        self.path = Path(path) if path else None
        self.last = self.path.with_suffix(".last.pt") if self.path else None
        self.every = every
        self.saved_at = time.perf_counter()
        self.warned = False  # a failed resume-state write warns once

    def resume_state(self, cfg: TrainConfig) -> dict | None:
        if self.last is None or not self.last.is_file():
            return None
        last = read_checkpoint(self.last)
        if last.get("config") != cfg.to_dict():
            raise CheckpointError(f"{self.last} was written by another config; "
                                  "delete it or pass resume=False")
        return last

    def maybe_save(self, state_fn: Callable[[], dict], final: bool) -> None:
        """Write the resume state when it is due. It is only a resume aid: a
        failed write (full disk, ...) warns once and training goes on."""
        if self.last is None or final:
            return
        if time.perf_counter() - self.saved_at >= self.every:
            state = state_fn()
            try:
                atomic_save(state, self.last)
            except (OSError, RuntimeError) as e:
                if not self.warned:
                    self.warned = True
                    warnings.warn(
                        f"could not write the resume state {self.last}: "
                        f"{_why_not_written(e, self.last, state)[1]}; training goes on "
                        "without it (an interrupted run would start again from an "
                        "earlier state)", RuntimeWarning, stacklevel=3)
            self.saved_at = time.perf_counter()

    def finish(self, kept: dict | None, extra: dict | None = None) -> None:
        """Write the kept weights (if any) and drop the resume state. When
        the weights cannot be written, they (with ``extra``: the run's
        history and metrics) are kept in :func:`unsaved_path` and an OSError
        says where; the resume state is then left in place."""
        if self.path is None:
            return
        if kept is not None:
            _save_or_keep(kept, self.path, extra)
        if self.last.exists():
            self.last.unlink()


class EpochStats(NamedTuple):
    """An epoch's mean train loss and accuracy: floats, or (``sync=False``)
    the loss sum and correct count still on the device."""
    loss: float | torch.Tensor
    acc: float | torch.Tensor
    seen: int
    diverged_step: int | None


def train_epoch(net, model, loaders: Loaders, cfg: TrainConfig, opt, sched, loss_fn,
                avg: Averager, hooks: tuple, epoch: int, check_every: int,
                max_loss: float, steps: int | None = None,
                sync: bool = True, clip: GradClip | None = None) -> EpochStats:
    """One pass over the training set (its first ``steps`` batches); losses
    stay on the device except at every ``check_every``-th step's divergence
    check and the epoch's end; with ``sync=False`` nothing is read back
    (each step's loss, logits and labels are kept, and summed up once at
    the epoch's end: no operation per step for the metrics). ``clip``
    clips the gradients (made from ``cfg`` when not given)."""
    dev, per_epoch = loaders.train.device, len(loaders.train)
    steps = per_epoch if steps is None else steps
    before = [h.before_step for h in hooks if hasattr(h, "before_step")]
    after = [h.after_backward for h in hooks if hasattr(h, "after_backward")]
    if clip is None and (cfg.grad_clip or cfg.grad_clip_quantile):
        clip = make_clip(cfg, steps, dev)
    params = trainable(model)
    model.train()
    loss_sum = torch.zeros((), device=dev) if sync else None
    correct = torch.zeros((), device=dev, dtype=torch.long) if sync else None
    kept = []  # sync=False: (loss, logits, labels) of each step
    # CUDA graphs reuse their output buffers at the next replay: an output
    # kept past its step is copied (one op per step, under that mode only)
    graphs = cfg.compile == "reduce-overhead"
    seen, step = 0, -1
    for step, (x, y) in enumerate(loaders.train):
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        for fn in before:
            fn(model, x, y, epoch * per_epoch + step)
        with _autocast(dev, _amp(cfg)):
            out = net(x)
            loss = loss_fn(out, y)
            if cfg.l1:
                loss = loss + cfg.l1 * l1_penalty(model)
        _clear_grads(opt)
        _backward(loss, params)
        for fn in after:
            fn(model, loss, epoch * per_epoch + step)
        if clip is not None:
            clip(params)
        opt.step()
        sched.step()
        avg.step(model, epoch * per_epoch + step + 1)
        seen += len(x)
        if not sync:  # references only (the graph's buffers are freed)
            kept.append((loss, out.detach().clone() if graphs else out, y))
            if step + 1 == steps:
                break
            continue
        loss_sum += loss.detach().float() * len(x)
        correct += (out.argmax(1) == _labels(y)).sum()
        if step + 1 == steps:
            break
        if (step + 1) % check_every == 0 and not loss_sum < max_loss * seen:
            break
    if not sync:
        return EpochStats(*_summed(kept), seen, None)
    loss_v, correct_v = torch.stack([loss_sum, correct.float()]).tolist()
    loss_v /= max(seen, 1)
    bad = None if loss_v < max_loss else step  # NaN, inf or blown up
    return EpochStats(loss_v, correct_v / max(seen, 1), seen, bad)


@torch.no_grad()
def _summed(kept: list) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed train loss (each step's mean loss times its batch size)
    and the correct count of an epoch's ``(loss, logits, labels)``, on the
    device: a few operations per epoch."""
    if not kept:
        return torch.zeros(()), torch.zeros((), dtype=torch.long)
    sizes = sorted({len(y) for _, _, y in kept})
    loss_sum = sum(torch.stack([loss for loss, _, y in kept if len(y) == n]).float().sum() * n
                   for n in sizes)
    hits = torch.cat([out for _, out, _ in kept]).argmax(1) == \
        _labels(torch.cat([y for _, _, y in kept]))
    return loss_sum, hits.sum()


def _backward(loss: torch.Tensor, params: list) -> None:
    """``loss.backward()`` for the gradients of ``params`` (their ``.grad``,
    which must be None before): the same gradients, without the detach
    that accumulating each one into its ``.grad`` costs (one operation per
    parameter, 15 of FastNet's)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    for p, g in zip(params, grads):
        p.grad = g


def make_clip(cfg: TrainConfig, total_steps: int, device) -> GradClip | None:
    """The gradient clipping ``cfg`` asks for (fixed or AutoClip), or None."""
    if not (cfg.grad_clip or cfg.grad_clip_quantile):
        return None
    return GradClip(cfg.grad_clip, cfg.grad_clip_quantile, total_steps, device)


class _SmoothedCE:
    """Cross-entropy with label smoothing for integer labels, the numbers
    of ``F.cross_entropy(logits, y, label_smoothing=eps)`` (its own
    formula, term by term: the same loss and gradients, bit for bit) in
    fewer operations: torch's masks the ignored labels, which a training
    batch does not have. Other targets go to ``fallback``."""

    def __init__(self, eps: float, fallback: Callable):
        self.eps, self.fallback, self.sizes = eps, fallback, {}

    def __call__(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.dtype != torch.long or logits.dim() != 2:
            return self.fallback(logits, y)
        if torch.is_autocast_enabled(logits.device.type):
            logits = logits.float()  # as autocast runs cross_entropy: in float32
        logp = F.log_softmax(logits, 1)
        key = (len(y), logits.device)
        if key not in self.sizes:  # minus the count torch divides by, on the device
            self.sizes[key] = torch.full((), -len(y), dtype=torch.long, device=logits.device)
        smooth = logp.sum(1).sum() / self.sizes[key]  # torch's -(sum) / count
        return F.nll_loss(logp, y) * (1 - self.eps) + smooth * (self.eps / logits.shape[1])


def train_loss(cfg: TrainConfig) -> Callable:
    """The loss of the training steps: ``cfg``'s (:func:`make_loss`), in
    fewer operations for cross-entropy with label smoothing."""
    loss_fn = make_loss(cfg.loss, cfg.label_smoothing, **cfg.loss_kw)
    if cfg.loss == "cross_entropy" and cfg.label_smoothing:
        return _SmoothedCE(cfg.label_smoothing, loss_fn)
    return loss_fn


def _clear_grads(opt) -> None:
    """``opt.zero_grad(set_to_none=True)`` without its profiler marks (two
    dispatched operations a step)."""
    for group in opt.param_groups:
        for p in group["params"]:
            p.grad = None
    for p in getattr(opt, "model_params", ()):  # FP32State: the network's own
        p.grad = None


def run_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps of a run: ``epochs - 1`` whole epochs, then
    ``last_epoch_frac`` of one (rounded up), as airbench's ``ceil(9.9 *
    steps_per_epoch)``."""
    last = math.ceil(cfg.last_epoch_frac * steps_per_epoch)
    return (cfg.epochs - 1) * steps_per_epoch + last


def epoch_steps(cfg: TrainConfig, steps_per_epoch: int, epoch: int) -> int:
    """Steps taken in ``epoch`` (fewer in a fractional last epoch)."""
    if epoch + 1 < cfg.epochs:
        return steps_per_epoch
    return run_steps(cfg, steps_per_epoch) - (cfg.epochs - 1) * steps_per_epoch


def optim_args(cfg: TrainConfig, batch_size: int) -> tuple[float, float]:
    """The (lr, weight decay) handed to the optimizer.

    As set, unless ``cfg.decoupled``. Then, as in airbench94, ``lr`` is the
    step per 1024 images in units of the Nesterov step's steady-state gain
    ``1 + 1 / (1 - momentum)``, and ``weight_decay`` the decay per 1024
    images, independent of the lr. airbench sums the loss over the batch
    and gives SGD ``lr / (1024 * gain)`` and a decay of ``weight_decay *
    batch / (1024 * gain) / that lr``; with the mean loss used here the same
    steps come from ``lr * batch / (1024 * gain)`` and ``weight_decay /
    lr`` (the decay step, lr times decay, is then ``weight_decay * batch /
    (1024 * gain)`` in both).
    """
    if not cfg.decoupled:
        return cfg.lr, cfg.weight_decay
    gain = 1 + 1 / (1 - cfg.momentum)
    return cfg.lr * batch_size / (1024 * gain), cfg.weight_decay / cfg.lr


def _half_net(model: nn.Module) -> None:
    """The network in fp16 with its norm layers in fp32 (airbench94)."""
    model.half()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._NormBase):
            m.float()


def _whiten_bias(model: nn.Module, cfg: TrainConfig):
    """The bias ``whiten_bias_epochs`` freezes (a clear error if none)."""
    bias = getattr(model, "whiten_bias", None)
    if not isinstance(bias, torch.Tensor):
        raise ValueError(f"whiten_bias_epochs={cfg.whiten_bias_epochs} needs a model "
                         f"with a whitening stem bias (e.g. fastnet); {cfg.model!r} "
                         "has none: set whiten_bias_epochs=0")
    return bias


def _setup(model: nn.Module, loaders: Loaders, cfg: TrainConfig):
    """Model on the device; optimizer and schedule for the whole run."""
    dev = loaders.train.device
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels
    torch.manual_seed(cfg.seed)
    model.to(dev)
    if cfg.fp16 and gpu_path(dev):
        _half_net(model)
    if loaders.train.channels_last:
        model.to(memory_format=torch.channels_last)
    if hasattr(model, "data_init"):  # data-dependent init (whitening stem)
        model.data_init(loaders.train.prepare(loaders.train.x[:5000]))
    if cfg.whiten_bias_epochs:
        _whiten_bias(model, cfg)
    steps = len(loaders.train)
    if steps == 0:
        raise ValueError(f"the training set ({len(loaders.train.y)} images) is "
                         f"smaller than one batch ({cfg.batch_size})")
    total = run_steps(cfg, steps)
    lr, wd = optim_args(cfg, loaders.train.batch_size)
    opt = make_optimizer(cfg.optimizer, model, lr=lr, momentum=cfg.momentum,
                         weight_decay=wd, nesterov=cfg.nesterov,
                         total_steps=total, norm_bias_decay=cfg.norm_bias_decay,
                         norm_bias_lr=cfg.norm_bias_lr, **cfg.optim_kw)
    swa_epoch = math.ceil(cfg.swa_start * cfg.epochs) if cfg.swa_start else None
    swa_lr = cfg.swa_lr if cfg.swa_lr is not None else cfg.lr / 10
    sched = LRSchedule(opt, cfg.scheduler, total, steps,
                       warmup_steps=round(cfg.warmup_epochs * steps),
                       hold_from=None if swa_epoch is None else swa_epoch * steps,
                       hold_factor=swa_lr / cfg.lr, **cfg.sched_kw)
    if cfg.fp16 and gpu_path(dev) and cfg.optimizer in FP16_UNSAFE:
        opt = FP32State(opt)  # the schedule keeps the inner optimizer (same groups)
    return opt, sched


def _new_state() -> dict:
    return {"epoch": 0, "history": [], "best_val": -1.0, "best_epoch": None,
            "kept_epoch": None, "kept_val": None, "train_time": 0.0, "images": 0,
            "wall_time": 0.0}


class _Pending:
    """The lean loop's (``val_every=0``) train losses and accuracies: kept
    on the device, epoch by epoch, and read back all at once (one sync)."""

    def __init__(self):
        self.items = []  # (epoch record, EpochStats of device tensors)

    def add(self, rec: dict, ep: EpochStats) -> None:
        self.items.append((rec, ep))

    def read(self) -> None:
        """Fill in the records' ``train_loss`` and ``train_acc``."""
        if not self.items:
            return
        rows = torch.stack([torch.stack([e.loss, e.acc.float()])
                            for _, e in self.items]).tolist()
        for (rec, e), (loss, correct) in zip(self.items, rows):
            rec["train_loss"], rec["train_acc"] = loss / e.seen, correct / e.seen
        self.items = []


def fit(model: nn.Module, loaders: Loaders, cfg: TrainConfig, *,
        ckpt_path=None, resume: bool = True, progress: bool | None = None,
        callbacks: tuple[Callable, ...] = (), hooks: tuple = (),
        check_every: int = 50, max_loss: float = 1e4, save_every: float = 120.0,
        log: Callable[[str], None] | None = None) -> dict:
    """Train ``model`` as ``cfg`` says; return history, metrics and status.

    The model ends with the weights ``cfg.keep`` names (its best by
    validation accuracy, or its last), tested. With ``ckpt_path`` they are
    written there at the end (disk full: to :func:`unsaved_path`, and an
    OSError); the whole state to ``<ckpt>.last.pt`` at most every ``save_every``
    s (0: each epoch; a failed write warns), and a run finding it resumes.
    Times (``train_time``, ``wall_time``) cover the whole run, resumes
    included; ``train_wall_time``, this call's until training ended (device
    synchronised). Validation runs every ``cfg.val_every`` epochs and after
    the last; with 0, nothing is read from the device until training ends
    (:func:`_lean_end`).

    Each callback is called after an epoch as ``cb(epoch=, model=,
    optimizer=, record=)`` and may return a dict to add to the epoch record;
    so may the optimizer's ``epoch_end(epoch, last)``. Each hook may have
    ``before_step(model, x, y, step)`` (before the forward pass) and
    ``after_backward(model, loss, step)`` (gradients in place), ``step``
    counting from the start of training; hooks may sync, the loop does not.
    A mean train loss that is NaN/inf or above ``max_loss`` (checked every
    ``check_every`` steps and at each epoch's end) stops the run as diverged.
    """
    from tqdm.auto import tqdm

    entered = time.perf_counter()
    ckpt = Checkpointer(ckpt_path, save_every)  # kept: the weights cfg.keep names
    opt, sched, avg, clip, st, kept = _start(model, loaders, cfg, ckpt, resume, log)
    loss_fn = train_loss(cfg)
    net, eval_model = compiled(model, cfg.compile), avg.eval_model(model)
    meta = {"model_name": cfg.model, "model_kw": cfg.model_kw, "config": cfg.to_dict(),
            "num_classes": loaders.train.num_classes}
    pending = _Pending() if cfg.val_every == 0 else None  # the lean loop's

    def keep(state, epoch, val_acc):
        nonlocal kept
        kept = {"model": state, **meta, "epoch": epoch, "val_acc": val_acc}
        st["kept_epoch"], st["kept_val"] = epoch, val_acc

    def full_state():
        if pending is not None:
            pending.read()
        return {"model": model.state_dict(), "optimizer": opt.state_dict(),
                "schedule": sched.state_dict(), "config": cfg.to_dict(),
                "averages": avg.state_dict(), "state": st, "kept": kept,
                **({"clip": clip.state_dict()} if clip is not None else {})}

    status, diverged_at = "ok", None
    wall0 = time.perf_counter() - st["wall_time"]
    bar = tqdm(range(st["epoch"], cfg.epochs), disable=not _progress(progress),
               desc=cfg.model, leave=False)
    loop = _Loop(model, eval_model, loaders, cfg, opt, sched, avg, st, pending,
                 callbacks, keep, bar, log, wall0, time.perf_counter(), st["train_time"])
    for epoch in bar:
        lr0, t0 = _epoch_start(loop, epoch)
        ep = train_epoch(net, model, loaders, cfg, opt, sched, loss_fn, avg, hooks,
                         epoch, check_every, max_loss,
                         epoch_steps(cfg, len(loaders.train), epoch), pending is None,
                         clip)
        if ep.diverged_step is not None:
            status, diverged_at = "diverged", _diverged(cfg, ep, epoch, log)
            break
        if epoch + 1 == cfg.epochs:
            avg.train_end()
        st["train_time"] += time.perf_counter() - t0
        st["images"] += ep.seen
        _epoch_done(loop, epoch, ep, lr0, t0)
        ckpt.maybe_save(full_state, final=epoch + 1 == cfg.epochs)
    bar.close()
    if pending is not None:
        status, diverged_at = _lean_end(loop, max_loss)
    trained = _synced(loaders.train.device) - entered
    swa_val = _after_training(loop) if status == "ok" else None  # may keep weights
    return _finish(loop, kept, ckpt, clip, status, diverged_at, trained, swa_val)


def _finish(loop: _Loop, kept, ckpt, clip, status: str, diverged_at, trained: float,
            swa_val) -> dict:
    """After the epochs and the last validation: the kept weights tested, a
    run that never learned marked failed, the metrics and the kept weights
    written."""
    cfg, st, model, log = loop.cfg, loop.st, loop.model, loop.log
    test = _test_kept(model, kept, loop.loaders, cfg)
    failed = failure(st["history"], loop.loaders.train.num_classes) if status == "ok" else None
    if failed is not None:
        status = "failed"
        if log:
            log(f"{cfg.model}: the run never learned ({failed}); recorded as failed")
    metrics = _metrics(st, cfg, swa_val, test, model, time.perf_counter() - loop.wall0)
    return _write_kept(ckpt, kept, {
        "status": status, "diverged_at": diverged_at, "failure": failed,
        "history": st["history"], "metrics": {**metrics, **_acted(loop.opt, loop.sched, clip),
                                              **_fp32_state(loop.opt)},
        "train_wall_time": trained})


def _fp32_state(opt) -> dict:
    """The mark of a run whose optimizer kept its state in fp32 over an
    fp16 network (:class:`FP32State`); nothing otherwise."""
    return {"optimizer_state": "fp32"} if isinstance(opt, FP32State) else {}


def stale(rec: dict) -> str | None:
    """Why a stored run must be trained again although its config is
    unchanged (None: it stands): runs of an Adam-family optimizer over an
    fp16 network on a GPU made before :class:`FP32State` (their fp16 state
    underflowed; every one diverged in its first epoch on the H200)."""
    c, m = rec.get("config") or {}, rec.get("metrics") or {}
    if (c.get("fp16") and c.get("optimizer") in FP16_UNSAFE
            and (rec.get("env") or {}).get("device") == "cuda"
            and m.get("optimizer_state") != "fp32"):
        return (f"its {c['optimizer']} state was kept in fp16, where it underflows "
                "(fixed: the state is fp32 now)")
    return None


def _acted(opt, sched: LRSchedule, clip: GradClip | None) -> dict:
    """How often the mechanisms of a run acted (None: not in this run):
    the fraction of steps whose gradient clipping changed (read from the
    device now, once), the plateau schedule's cuts of the rate, and the
    step at which ``adamw_sgd`` switched to SGD (None if it never did)."""
    return {"clip_frac": clip.fraction() if clip is not None else None,
            "lr_cuts": getattr(sched, "cuts", None) if sched.name == "plateau" else None,
            "switch_step": getattr(opt, "switched_at", None)}


def _write_kept(ckpt: Checkpointer, kept: dict | None, out: dict) -> dict:
    """Write the kept weights (a host copy) where ``ckpt`` says and return
    ``out``, fit's result; when the write fails, the weights and ``out`` are
    kept in :func:`unsaved_path` (see :meth:`Checkpointer.finish`)."""
    if ckpt.path is not None:  # no copies to the host without a checkpoint
        ckpt.finish(None if kept is None else
                    {**kept, "model": {k: v.cpu() for k, v in kept["model"].items()}},
                    extra={"result": json.loads(json.dumps(out, default=str))})
    return out


@dataclass
class _Loop:
    """What the epochs of one :func:`fit` call share."""
    model: nn.Module
    eval_model: nn.Module
    loaders: Loaders
    cfg: TrainConfig
    opt: torch.optim.Optimizer
    sched: LRSchedule
    avg: Averager
    st: dict
    pending: _Pending | None
    callbacks: tuple
    keep: Callable
    bar: object
    log: Callable | None
    wall0: float
    loop0: float   # when the epochs began
    train0: float  # train time before them (a resumed run's)


def _epoch_start(loop: _Loop, epoch: int) -> tuple[float, float]:
    """Before an epoch: the loader's epoch, the whitening bias's freeze;
    returns the lr the epoch starts with and the time."""
    loop.loaders.train.set_epoch(epoch)
    cfg = loop.cfg
    if cfg.whiten_bias_epochs:
        _whiten_bias(loop.model, cfg).requires_grad_(epoch < cfg.whiten_bias_epochs)
    return loop.sched.lr, time.perf_counter()


def _epoch_done(loop: _Loop, epoch: int, ep: EpochStats, lr0: float, t0: float) -> None:
    """After an epoch's steps: its record (validated every ``val_every``
    epochs and after the last; in the lean loop only stored, to be filled
    in when training ends), the kept weights, the progress bar."""
    cfg, st, pending = loop.cfg, loop.st, loop.pending
    validate = pending is None and ((epoch + 1) % cfg.val_every == 0
                                    or epoch + 1 == cfg.epochs)
    rec = _end_epoch(loop.model, loop.eval_model, loop.loaders, cfg, loop.opt,
                     loop.sched, loop.avg, epoch, ep, lr0, t0, validate)
    st["history"].append(_call_back(loop.callbacks, rec, epoch, loop.model, loop.opt))
    st["epoch"] = epoch + 1
    st["wall_time"] = time.perf_counter() - loop.wall0
    if pending is not None:
        pending.add(rec, ep)
        return
    acc = rec["val_acc"]
    best = acc is not None and acc > st["best_val"]
    if best:
        st["best_val"], st["best_epoch"] = acc, epoch + 1
    if best and cfg.keep == "best" or cfg.keep == "last":
        loop.keep(_snapshot(loop.eval_model), epoch + 1, acc)
    _show_epoch(loop.bar, loop.log, cfg, rec)


def _synced(device: torch.device) -> float:
    """``time.perf_counter()`` once the device has finished its work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _lean_end(loop: _Loop, max_loss: float) -> tuple[str, dict | None]:
    """The lean loop's (``val_every=0``) end: nothing was read from the
    device while it trained (no validation, no snapshot, no divergence
    check); now the epochs' train metrics are read, all at once (the run's
    one sync), the training timed, and a run whose mean loss went NaN, inf
    or above ``max_loss`` in some epoch recorded as diverged there."""
    st, cfg, log = loop.st, loop.cfg, loop.log
    loop.pending.read()
    st["train_time"] = loop.train0 + time.perf_counter() - loop.loop0
    for i, rec in enumerate(st["history"]):
        if not rec["train_loss"] < max_loss:  # NaN, inf or blown up
            if log:
                log(f"{cfg.model}: loss became {rec['train_loss']} in epoch {i}; "
                    "the run is recorded as diverged")
            del st["history"][i:]
            st["epoch"] = i
            return "diverged", {"epoch": i, "step": None}
    for rec in st["history"]:
        if log:
            log(f"{cfg.model} epoch {rec['epoch']}/{cfg.epochs} loss "
                f"{rec['train_loss']:.4f} train {rec['train_acc']:.4f}")
    return "ok", None


def _after_training(loop: _Loop):
    """A finished run's last validation (lean loop) and SWA average; returns
    the SWA's validation accuracy (None without SWA)."""
    if loop.pending is not None:
        _lean_validate(loop)
    return _finish_swa(loop.avg, loop.loaders, loop.cfg, loop.st, loop.keep)


def _lean_validate(loop: _Loop) -> None:
    """The lean loop's one validation, after training: the last record's
    val metrics; the last weights are kept."""
    st, cfg = loop.st, loop.cfg
    if not st["history"]:
        return
    val = evaluate(loop.eval_model, loop.loaders.val, cfg.tta_flip, _amp(cfg),
                   cfg.tta_translate)
    st["history"][-1].update(val_loss=val["loss"], val_acc=val["acc"])
    st["best_val"], st["best_epoch"] = val["acc"], st["epoch"]
    loop.keep(_snapshot(loop.eval_model), st["epoch"], val["acc"])


def _start(model, loaders: Loaders, cfg: TrainConfig, ckpt: Checkpointer,
           resume: bool, log) -> tuple:
    """Optimizer, schedule, averages, loop state and kept weights of a run:
    new, or restored from its ``.last.pt`` when ``resume`` finds one."""
    opt, sched = _setup(model, loaders, cfg)
    total = run_steps(cfg, len(loaders.train))
    avg = Averager(model, cfg, total)
    clip = make_clip(cfg, total, loaders.train.device)
    last = ckpt.resume_state(cfg) if resume else None
    if last is None:
        return opt, sched, avg, clip, _new_state(), None
    check_state(model, last["model"], ckpt.last)
    st, kept = _restore(last, model, opt, sched, avg, loaders.train.device)
    if clip is not None and "clip" in last:
        clip.load_state_dict(last["clip"])
    if log:
        log(f"{cfg.model}: resuming from {ckpt.last.name} at epoch {st['epoch']}")
    return opt, sched, avg, clip, st, kept


def _restore(last: dict, model, opt, sched, avg: Averager, device) -> tuple[dict, dict | None]:
    """Load a ``.last.pt`` resume state; return the loop state and the kept
    weights (moved to ``device``)."""
    model.load_state_dict(last["model"])
    opt.load_state_dict(last["optimizer"])
    sched.load_state_dict(last["schedule"])
    avg.load_state_dict(last["averages"])
    st, kept = {**_new_state(), **last["state"]}, last.get("kept")
    if kept is not None:
        kept = {"model": {k: v.to(device) for k, v in kept["model"].items()},
                **{k: v for k, v in kept.items() if k != "model"}}
    return st, kept


def _diverged(cfg: TrainConfig, ep, epoch: int, log) -> dict:
    """Where a run diverged (and say so)."""
    if log:
        log(f"{cfg.model}: loss became {ep.loss} at epoch {epoch} "
            f"step {ep.diverged_step}; stopping, the run is recorded as diverged")
    return {"epoch": epoch, "step": ep.diverged_step}


def _end_epoch(model, eval_model, loaders: Loaders, cfg: TrainConfig, opt, sched,
               avg: Averager, epoch: int, ep, lr0: float, t0: float,
               validate: bool = True) -> dict:
    """After an epoch's steps: the optimizer's and averages' epoch end, the
    validation metrics (None when not ``validate``), then the plateau
    schedule; returns the epoch's record (with what the optimizer adds to
    it; train metrics None while still on the device)."""
    last = epoch + 1 == cfg.epochs
    extra = opt.epoch_end(epoch, last) if hasattr(opt, "epoch_end") else None
    avg.epoch_end(model, epoch)
    val = {"loss": None, "acc": None}
    if validate:
        val = evaluate(eval_model, loaders.val, cfg.tta_flip, _amp(cfg), cfg.tta_translate)
    sched.epoch_end(val["loss"])
    on_host = isinstance(ep.loss, float)
    return {"epoch": epoch + 1, "train_loss": ep.loss if on_host else None,
            "train_acc": ep.acc if on_host else None,
            "val_loss": val["loss"], "val_acc": val["acc"], "lr": lr0,
            "time": time.perf_counter() - t0, **(extra or {})}


def _show_epoch(bar, log, cfg: TrainConfig, rec: dict) -> None:
    """An epoch's numbers on the progress bar and in the log."""
    val = "-" if rec["val_acc"] is None else f"{rec['val_acc']:.4f}"
    bar.set_postfix(loss=f"{rec['train_loss']:.3f}", val=val[:5])
    if log:
        log(f"{cfg.model} epoch {rec['epoch']}/{cfg.epochs} loss {rec['train_loss']:.4f} "
            f"train {rec['train_acc']:.4f} val {val} lr {rec['lr']:.2e}")


def _call_back(callbacks, rec: dict, epoch: int, model, opt) -> dict:
    """The epoch record with what each callback adds to it."""
    for cb in callbacks:
        rec.update(cb(epoch=epoch, model=model, optimizer=opt, record=rec) or {})
    return rec


def _test_kept(model, kept: dict | None, loaders: Loaders, cfg: TrainConfig) -> dict | None:
    """Load the kept weights into ``model`` and test them."""
    if kept is None:
        return None
    model.load_state_dict(kept["model"])
    return evaluate(model, loaders.test, cfg.tta_flip, _amp(cfg), cfg.tta_translate)


def _finish_swa(avg: Averager, loaders: Loaders, cfg: TrainConfig, st: dict, keep):
    """BN statistics and validation of the SWA average; keep it if it wins."""
    swa = avg.swa
    if swa is None or swa.n_averaged.item() == 0 or st["best_epoch"] is None:
        return None
    update_bn(loaders.train, swa.module)
    swa_val = evaluate(swa.module, loaders.val, cfg.tta_flip, _amp(cfg),
                       cfg.tta_translate)["acc"]
    if swa_val >= st["best_val"]:
        st["best_val"], st["best_epoch"] = swa_val, "swa"
    if swa_val >= st["best_val"] or cfg.keep == "last":  # the average is the last model
        keep(_snapshot(swa.module), "swa", swa_val)
    return swa_val


def _metrics(st: dict, cfg: TrainConfig, swa_val, test, model, wall: float) -> dict:
    return {
        "best_val_acc": st["best_val"] if st["best_epoch"] is not None else None,
        "best_epoch": st["best_epoch"], "swa_val_acc": swa_val,
        "kept": cfg.keep, "kept_epoch": st["kept_epoch"], "kept_val_acc": st["kept_val"],
        "test_acc": test["acc"] if test else None,
        "test_loss": test["loss"] if test else None,
        "epochs_run": st["epoch"], "train_time": st["train_time"], "wall_time": wall,
        "images_per_s": st["images"] / st["train_time"] if st["train_time"] else None,
        "params": sum(p.numel() for p in model.parameters()),
    }

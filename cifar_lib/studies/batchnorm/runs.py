"""The BatchNorm study's runs: sizes per profile, the recipe, and the one
experiment, :data:`BATCHNORM`, whose runs carry their recording options
(tag) and step recorders (hooks); ``experiments.records(BATCHNORM, P)``
finds them on disk.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

from cifar_lib import landscape as L
from cifar_lib.engine import TrainConfig
from cifar_lib.experiments import Experiment, Run
from cifar_lib.losses import make_loss
from cifar_lib.profiles import Profile

EXPERIMENT = "batchnorm"
MODELS = ("vgg_a", "vgg_a_bn")
LABELS = {"vgg_a": "VGG-A", "vgg_a_bn": "VGG-A + BN"}
COLORS = {"vgg_a": "tab:green", "vgg_a_bn": "tab:red"}
COURSE_LRS = (1e-3, 2e-3, 1e-4, 5e-4)  # the course's loss-landscape sweep


# ---------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """Everything the study varies with the profile."""

    width: float                # VGG-A channel multiplier (1: the course's 9.75M net)
    epochs: int                 # epochs of every run
    batch_size: int             # the course's 128 (smoke: the profile's)
    lrs: tuple = COURSE_LRS     # Adam learning rates of the loss landscape
    adam_lr: float = 1e-3       # the course's setting (curves, probes, surfaces)
    sgd_lr: float = 0.1         # SGD learning rate (curves, probes); both nets train
    momentum: float = 0.9       # of SGD
    probe_every: int = 25       # steps between probes
    probe_scales: tuple = (0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4)  # multiples of the update
    keep_every: int = 1         # per-step records kept every this many steps
    surface_images: int = 5120  # training images of the surfaces (full batches only)
    surface_points: int = 41    # points of the 1-D surface over [-span, span]
    surface_grid: int = 21      # points per side of the 2-D surface
    surface_span: float = 1.0   # extent along each filter-normalised direction
    seeds: tuple = (0,)         # every run once per seed (init and batch order)

    @property
    def seed(self) -> int:
        """The first seed: its runs are the ones the figures draw, and it
        seeds the surfaces' random directions (the same for every run)."""
        return self.seeds[0]

    def replace(self, **kw) -> "Sizes":
        """A copy with some sizes changed (tests, one-off smaller runs)."""
        return replace(self, **kw)


# The study's sizes per profile (smoke: seconds; cpu: minutes; full: H100).
SIZES = {
    "smoke": Sizes(width=1 / 16, epochs=2, batch_size=64, probe_every=3,
                   probe_scales=(0.5, 2, 4), surface_images=256, surface_points=9,
                   surface_grid=5),
    # SGD lr 0.02: at 0.1 the plain net barely learns on 5k images in 8
    # epochs (train loss 1.83, val acc 28% in a check run; 0.02: 1.57, 41%;
    # with BN 0.68, 50%). At full scale both nets train at 0.1.
    # Three seeds: the averages and the verdict of section 2 are means over
    # seeds, with the number of seeds in which BN comes out smoother. The
    # 2-D surfaces take 17 x 17 points (9 x 9 drew polygons) on 512 images.
    # 6 epochs and 512 surface images (8 and 1,024 before) keep the cpu
    # profile within about 80 minutes on 2 cores: the study's 30 runs and
    # surfaces took 66 of its 435 core-minutes.
    "cpu": Sizes(width=0.25, epochs=6, batch_size=128, probe_every=8, sgd_lr=0.02,
                 probe_scales=(0.5, 1, 2, 3, 4), surface_images=512,
                 surface_points=21, surface_grid=17, seeds=(0, 1, 2)),
    # full: 6 epochs of 45k images (351 steps each, 2,106 per run). A probe
    # is 9 float32 forward-backward passes and a trial optimizer step, so
    # probing every 25 steps adds about 36% passes to the four probed runs.
    # SGD lr 0.1 trains both nets here (4-epoch check on an H100: train loss
    # 1.10 without BN, 1.12 with). Sized with `python -m cifar_lib plan` to
    # about 2.5 minutes on an H100 for the ten runs and their probes, plus
    # the surfaces (41 + 41 + 441 points on 5,120 images per model). Keeping
    # every 2nd step's records keeps each run's JSON small (1,053 of 2,106).
    "full": Sizes(width=1.0, epochs=6, batch_size=128, probe_every=25, keep_every=2),
}


def sizes(profile: Profile) -> Sizes:
    """The study's sizes for a profile (another profile: full's).

    Used by notebook 04 (report section 2).
    """
    return SIZES.get(profile.name, SIZES["full"])


# ---------------------------------------------------------------- runs


@dataclass(frozen=True)
class Spec:
    """One training run of the study."""

    model: str
    setting: str   # "adam" (the course's optimizer) or "sgd"
    lr: float
    probed: bool   # probes along the optimizer's update
    seed: int = 0

    @property
    def label(self) -> str:
        opt = "Adam" if self.setting == "adam" else "SGD"
        return f"{LABELS[self.model]}, {opt} lr={self.lr:g}"


def specs(S: Sizes) -> list[Spec]:
    """Every run: for each seed (first seed first), both models x (Adam at
    each lr, SGD at ``S.sgd_lr``)."""
    lrs = tuple(S.lrs) + ((S.adam_lr,) if S.adam_lr not in S.lrs else ())
    out = []
    for seed in S.seeds:
        for m in MODELS:
            out += [Spec(m, "adam", lr, lr == S.adam_lr, seed) for lr in lrs]
            out.append(Spec(m, "sgd", S.sgd_lr, True, seed))
    return out


def config(spec: Spec, S: Sizes) -> TrainConfig:
    """The recipe: no augmentation, no weight decay, constant lr (the course's);
    the run ends with (and tests) its last weights, which the surfaces use."""
    opt = dict(optimizer="adam") if spec.setting == "adam" else \
        dict(optimizer="sgd", momentum=S.momentum, nesterov=False)
    return TrainConfig(model=spec.model, model_kw={"width": S.width}, lr=spec.lr,
                       weight_decay=0.0, scheduler="constant", epochs=S.epochs,
                       batch_size=S.batch_size, augment="none", seed=spec.seed,
                       keep="last", **opt)


PROBE_DIRECTION = "update"  # probes follow the optimizer's own step


def recording(spec: Spec, S: Sizes) -> dict:
    """The run's :class:`~cifar_lib.landscape.Recorder` options (its tag).

    A probed run probes along its optimizer's update, at ``probe_scales``
    times that update (``direction`` in the tag); a run without probes has
    no ``direction``, so its tag and name are those of earlier versions.
    """
    if not spec.probed:
        return {"probe_every": 0, "etas": [], "keep_every": S.keep_every}
    return {"probe_every": S.probe_every, "etas": [float(s) for s in S.probe_scales],
            "keep_every": S.keep_every, "direction": PROBE_DIRECTION}


def run_setting(run: dict) -> str:
    """``adam`` or ``sgd``: the optimizer a run record trained with."""
    return "adam" if run["config"]["optimizer"] == "adam" else "sgd"


def _recorders(cfg: TrainConfig, opts: dict) -> list:
    """A fresh step recorder with the run's recording options."""
    recorder = L.Recorder(make_loss(cfg.loss, cfg.label_smoothing, **cfg.loss_kw), **opts)
    assert recorder.options() == opts  # the tag says what is recorded
    return [recorder]


def _runs(profile: Profile) -> list[Run]:
    """Every run in :func:`specs` order, each recorded step by step (its
    recording options are its tag)."""
    S, out = sizes(profile), []
    for spec in specs(S):
        cfg, opts = config(spec, S), recording(spec, S)
        out.append(Run(spec.label, cfg, tag=opts,
                       hooks=functools.partial(_recorders, cfg, opts)))
    return out


BATCHNORM = Experiment(EXPERIMENT, "04_batchnorm", "2", "batchnorm", _runs)


def matched_run(S: Sizes, seed: int, epochs: int) -> Run:
    """VGG-A + BN at the course's setting stopped after ``epochs`` epochs,
    when its training loss is about VGG-A's final one: the surfaces compare
    the two networks at matched training loss (its epochs are chosen from
    the stored runs by :func:`~cifar_lib.studies.batchnorm.measures.matched_epochs`;
    the surface measurement trains it, it is not one of :data:`BATCHNORM`'s
    runs)."""
    spec = Spec("vgg_a_bn", "adam", S.adam_lr, False, seed)
    cfg, opts = config(spec, S).replace(epochs=epochs), recording(spec, S)
    return Run(f"{spec.label}, {epochs} epochs (matched loss)", cfg, tag=opts,
               hooks=functools.partial(_recorders, cfg, opts))


def seeds_of(runs: list[dict]) -> list[int]:
    """The seeds of the records, in order of first appearance."""
    return list(dict.fromkeys(r["config"]["seed"] for r in runs))


def of_seed(runs: list[dict], seed: int | None = None) -> list[dict]:
    """The records of one seed (None: the first seed among them)."""
    if seed is None:
        seeds = seeds_of(runs)
        seed = seeds[0] if seeds else 0
    return [r for r in runs if r["config"]["seed"] == seed]


def pick(runs: list[dict], model: str, setting: str, lr: float | None = None,
         seed: int | None = None):
    """The first record of ``model`` trained with ``setting`` (at ``lr``,
    with ``seed``)."""
    for r in runs:
        c = r["config"]
        if c["model"] == model and run_setting(r) == setting \
                and (lr is None or math.isclose(c["lr"], lr)) \
                and (seed is None or c["seed"] == seed):
            return r
    return None


def setting_lr(setting: str, S: Sizes) -> float:
    """The learning rate of the curves and probes of a setting."""
    return S.adam_lr if setting == "adam" else S.sgd_lr


def lr_list(S: Sizes) -> str:
    """The Adam learning rates of the loss landscape, ascending, e.g.
    '0.0001, 0.0005, 0.001, 0.002' (runs keep :data:`COURSE_LRS`' order)."""
    return ", ".join(f"{lr:g}" for lr in sorted(S.lrs))


def setting_name(setting: str, S: Sizes) -> str:
    """A setting as titles and tables name it, e.g. ``Adam lr=0.001``."""
    return f"Adam lr={S.adam_lr:g}" if setting == "adam" else f"SGD lr={S.sgd_lr:g}"


def diverged_step(run: dict) -> int | None:
    """The step at which a diverged run broke down: its first non-finite
    loss, else the step at which its loss passed fit's ``max_loss``."""
    if run["status"] != "diverged":
        return None
    st = run.get("steps", {})
    first = st.get("first_nonfinite")
    return first if first is not None else st.get("last_step")

"""The BatchNorm study's figures (notebook 04): each takes the run records
(or the stored surfaces) and the study's sizes and returns a Figure."""
from __future__ import annotations

import numpy as np

from cifar_lib.studies.batchnorm.measures import (
    CHANCE, CHANCE_TOL, MATCHED, Band, at_chance, loss_band, matched_widths,
    relative_band, to_array, total_steps)
from cifar_lib.studies.batchnorm.runs import (
    COLORS, LABELS, MODELS, Sizes, diverged_step, lr_list, pick, setting_lr,
    setting_name)


def _log_ticks(lo: float, hi: float) -> tuple[float, ...]:
    """Tick multiples of 10^k for a log axis from ``lo`` to ``hi``: 1, 2, 5,
    and 1, 1.5, 2, 3, 5, 7 when the axis spans less than 1.3 decades (else
    such an axis shows two labels or fewer)."""
    lo, hi = sorted((lo, hi))
    if lo > 0 and np.log10(hi / lo) < 1.3:
        return (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    return (1.0, 2.0, 5.0)


def _plain_log(ax, axis="y"):
    """Log scale with ticks at 1, 2, 5 x 10^k (finer on an axis of about a
    decade, see :func:`_log_ticks`) written as plain numbers."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    class _Locator(LogLocator):
        def tick_values(self, vmin, vmax):
            self.set_params(subs=_log_ticks(vmin, vmax))
            return super().tick_values(vmin, vmax)

    getattr(ax, f"set_{axis}scale")("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(_Locator(subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def _diverged_note(ax, r, x, y):
    ax.plot([x], [y], "x", color=COLORS[r["config"]["model"]], ms=10, mew=2)
    ax.annotate(f"{LABELS[r['config']['model']]} diverged\n"
                f"(step {diverged_step(r)})", (x, y),
                textcoords="offset points", xytext=(6, -22), fontsize=8,
                color=COLORS[r["config"]["model"]])


def plot_curves(runs: list[dict], S: Sizes):
    """Train/val loss and accuracy per epoch, Adam (course) and SGD.

    Used by notebook 04 (report section 2).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), squeeze=False, layout="constrained")
    for row, setting in enumerate(("adam", "sgd")):
        for m in MODELS:
            r = pick(runs, m, setting, setting_lr(setting, S))
            if r is None:
                continue
            h, c = r["history"], COLORS[m]
            ep = [e["epoch"] for e in h]
            for col, key in enumerate(("loss", "acc")):
                ax = axes[row, col]
                scale = 100 if key == "acc" else 1
                for split_, ls in (("train", "-"), ("val", "--")):
                    ax.plot(ep, [np.nan if e[f"{split_}_{key}"] is None
                                 else scale * e[f"{split_}_{key}"] for e in h],
                            ls, color=c, marker="o", ms=3,
                            label=f"{LABELS[m]} {split_}")
                if r["status"] == "diverged":
                    x = r["diverged_at"]["epoch"] + 1
                    y = ax.get_ylim()[1] if h else (2.3 if key == "loss" else 10)
                    _diverged_note(ax, r, x, y)
        axes[row, 0].set_ylabel("cross-entropy loss (log scale)")
        _plain_log(axes[row, 0])
        axes[row, 1].set_ylabel("accuracy (%)")
        for ax in axes[row]:
            ax.set_title(setting_name(setting, S))
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _figure_legend(fig, axes.flat)     # one legend below the panels, not one per panel
    return fig


def _draw_band(ax, band: Band | None, model: str):
    """A model's min-max band; where it ends early, a dotted line and why."""
    if band is None:
        return
    label = LABELS[model] + (f" (band ends: {band.ends})" if band.ends else "")
    ax.fill_between(band.steps, band.lo, band.hi, color=COLORS[model], alpha=0.45,
                    lw=0, label=label)
    if band.ends and len(band.steps):
        ax.axvline(band.steps[-1], color=COLORS[model], ls=":", lw=1.2)


def _mark_phases(ax, total: int, chance: list[tuple[float, float]], first=True):
    """The boundary between the early and late phases (dashed) and the
    stretches at chance, left out of the averages (grey)."""
    if total:
        ax.axvline(total / 2, color="0.4", ls="--", lw=0.8,
                   label="early | late" if first else None)
    for i, (a, b) in enumerate(_union(chance)):
        ax.axvspan(a, b, color="0.6", alpha=0.25, lw=0,
                   label=f"at chance (loss ≥ {(1 - CHANCE_TOL) * CHANCE:.2f}), "
                   "left out" if first and i == 0 else None)


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping (first, last) stretches merged, so that stretches of two
    networks draw one even shade rather than a darker overlap."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _stretches(steps, bad) -> list[tuple[float, float]]:
    """(first, last) step of each run of True in ``bad``."""
    out, start = [], None
    for s, b in zip(steps, bad):
        if b and start is None:
            start = s
        if not b and start is not None:
            out.append((start, s))
            start = None
    if start is not None:
        out.append((start, steps[-1]))
    return out


def plot_loss_landscape(runs: list[dict], S: Sizes):
    """The course's figure: per-step training loss, min-max band across lrs.

    A band stops at the first step where one of its runs has no finite loss
    (see :func:`loss_band`); the legend says which run ended it.

    Used by notebook 04 (report section 2).
    """
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 4.5))
    chance = []
    for m in MODELS:
        band = loss_band(runs, m)
        _draw_band(ax, band, m)
        if band is not None and len(band.steps):
            chance += _stretches(band.steps, at_chance(band.hi))
    _mark_phases(ax, max((total_steps(r) for r in runs), default=0), chance)
    ax.set(xlabel="training step", ylabel="training loss (cross-entropy)",
           title=f"Loss landscape: min-max over Adam learning rates {lr_list(S)}")
    ax.legend()
    fig.tight_layout()
    return fig


def _smooth(v: np.ndarray, n: int) -> np.ndarray:
    """Moving average over ``n`` points (edges averaged over fewer)."""
    if n <= 1 or len(v) < 2:
        return v
    k = np.ones(n)
    return np.convolve(v, k, "same") / np.convolve(np.ones(len(v)), k, "same")


def plot_loss_band_views(runs: list[dict], S: Sizes):
    """The course's band without the training speed in it.

    Left: band width over the mean loss at each step, (max - min) / mean
    over the Adam learning rates (faint: per step; line: moving average).
    Right: band width against the mean loss, so that the networks are
    compared where their loss is the same, not at the same step (faint:
    per step; line: mean per loss bin over the levels both pass through).

    Used by notebook 04 (report section 2).
    """
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    bands = {m: loss_band(runs, m) for m in MODELS}
    for m, b in bands.items():
        if b is None or not len(b.steps):
            continue
        c, rel = COLORS[m], relative_band(b)
        axes[0].plot(b.steps, rel, color=c, alpha=0.2, lw=0.6)
        axes[0].plot(b.steps, _smooth(rel, max(1, len(rel) // 40)), color=c,
                     lw=1.6, label=LABELS[m])
        axes[1].plot(b.mean, b.hi - b.lo, ".", color=c, alpha=0.2, ms=2,
                     label=f"{LABELS[m]} (per step)")
    if all(b is not None and len(b.steps) for b in bands.values()):
        m = matched_widths(bands["vgg_a"], bands["vgg_a_bn"])
        if m is not None:
            edges, wp, wb = m
            mid = np.sqrt(edges[1:] * edges[:-1])
            for model, w in (("vgg_a", wp), ("vgg_a_bn", wb)):
                axes[1].plot(mid, w, "o-", color=COLORS[model], lw=1.6,
                             label=f"{LABELS[model]} (mean per loss bin)")
    axes[0].set(xlabel="training step", ylabel="band width relative to the mean loss",
                title="band width relative to the loss, (max − min) / mean")
    axes[1].set(xlabel="mean training loss over the learning rates\n(log scale; "
                "training goes left to right)", ylabel="band width (max − min of the loss)",
                title="band width at matched loss")
    for ax in axes:
        _plain_log(ax)
        ax.legend(fontsize=9)
    _plain_log(axes[1], "x")
    axes[1].invert_xaxis()
    fig.suptitle("Loss landscape without the training speed: Adam learning rates "
                 + lr_list(S), fontsize=12)
    fig.tight_layout()
    return fig


# The probe figure's rows: what each measures, its formula in short (the
# panel title) and its axis label in words.
_PROBE_ROWS = (("loss landscape", "loss at w + ηu, range over η",
                "loss at w + ηu\n(band: min to max over η)"),
               ("gradient predictiveness", "‖∇L(w + ηu) − ∇L(w)‖, range over η",
                "‖∇L(w + ηu) − ∇L(w)‖\n(band: min to max over η)"),
               ("effective β-smoothness", "max over η of ‖∇L(w + ηu) − ∇L(w)‖ / ‖ηu‖",
                "effective β"))


def _figure_legend(fig, axes, ncol: int = 4):
    """One legend below the panels for every labelled artist of ``axes``
    (each label once, the networks first), so that no legend covers a band."""
    seen: dict = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    if not seen:
        return
    nets = [LABELS[m] for m in MODELS]     # the networks first, then the markings
    order = sorted(seen, key=lambda lab: lab not in nets)
    fig.legend([seen[lab] for lab in order], order, loc="outside lower center",
               ncol=min(ncol, len(seen)), frameon=False)


def plot_probes(runs: list[dict], S: Sizes):
    """The paper's Fig. 4: loss range, gradient predictiveness and beta per
    probe, along the update each run's optimizer takes.

    One row per measure (top: loss range, middle: gradient change, bottom:
    effective beta), one column per optimizer (left: Adam at the course's
    learning rate, right: SGD with momentum); one legend below the panels.

    Used by notebook 04 (report section 2)."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(3, 2, figsize=(10.5, 10.5), sharex="col", squeeze=False,
                             layout="constrained")
    for col, setting in enumerate(("adam", "sgd")):
        pair = [pick(runs, m, setting, setting_lr(setting, S)) for m in MODELS]
        if all(r is not None and r["probes"]["step"] for r in pair):
            st = pair[0]["probes"]["step"]
            bad = np.zeros(len(st), bool)
            for r in pair:
                loss = dict(zip(r["probes"]["step"], to_array(r["probes"]["loss"])))
                bad |= at_chance([loss.get(s, np.nan) for s in st])
            for ax in axes[:, col]:
                _mark_phases(ax, max(total_steps(r) for r in pair), _stretches(st, bad))
        for m in MODELS:
            r = pick(runs, m, setting, setting_lr(setting, S))
            if r is None or not r["probes"]["step"]:
                continue
            p, c = r["probes"], COLORS[m]
            st = np.asarray(p["step"])
            kw = dict(color=c, alpha=0.45, lw=0, label=LABELS[m])
            lo, hi = to_array(p["loss_min"]), to_array(p["loss_max"])
            axes[0, col].fill_between(st, lo, hi, **kw)
            lo, hi = to_array(p["gdist_min"]), to_array(p["gdist_max"])
            axes[1, col].fill_between(st, lo, hi, **kw)
            axes[2, col].plot(st, to_array(p["beta"]), color=c, lw=1.4, label=LABELS[m])
            if r["status"] == "diverged":
                for ax in axes[:, col]:
                    ax.axvline(diverged_step(r), color=c, ls=":",
                               label=f"{LABELS[m]} diverged ({setting_name(setting, S)})")
        name = setting_name(setting, S)
        for ax, (t, formula, yl) in zip(axes[:, col], _PROBE_ROWS):
            ax.set_title(f"{t} ({name})\n{formula}", fontsize=11)
            ax.set_ylabel(yl)
        axes[-1, col].set_xlabel("training step")
        for ax in axes[:, col]:  # log: the first probes, at chance, sit decades above
            _plain_log(ax)
    _figure_legend(fig, axes.flat)
    fig.suptitle("Probes along the optimizer's update u (Adam's step, SGD's momentum "
                 f"step),\nη = [{min(S.probe_scales):g}, {max(S.probe_scales):g}] "
                 f"times u, every {S.probe_every} steps")
    return fig


def plot_last_grad(runs: list[dict], S: Sizes):
    """Last layer's gradient per step: min-max band across the Adam lrs.

    Left: its norm; right: its change between consecutive steps; one legend
    below the panels, off the bands.

    Used by notebook 04 (report section 2).
    """
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
    for m in MODELS:
        for ax, key in zip(axes, ("last_grad", "last_grad_change")):
            _draw_band(ax, loss_band(runs, m, key=key), m)
    # words on the axes, the formula (g_t: the last layer's gradient at step t,
    # L2 norm) in the titles
    axes[0].set(ylabel="gradient norm of the\nlast layer's weights",
                title=r"last-layer gradient norm, $\Vert g_t\Vert$")
    axes[1].set(ylabel="change of the last layer's\ngradient between steps",
                title=r"change between steps, $\Vert g_t - g_{t-1}\Vert$")
    for ax in axes:
        ax.set_xlabel("training step")
        _plain_log(ax)
    _figure_legend(fig, axes, ncol=2)
    fig.suptitle("min-max over Adam learning rates " + lr_list(S))
    return fig


def _name(m: str, s: dict) -> str:
    """A surface's network, e.g. 'VGG-A + BN after 3 epochs (matched loss)'."""
    if m == MATCHED:
        e = s.get("matched_epoch")
        return f"VGG-A + BN after {e} epoch{'' if e == 1 else 's'}, matched loss"
    return f"{LABELS[m]}, final"


def plot_surface_1d(surfs: dict):
    """Loss along one filter-normalised direction, both models; BN with its
    running statistics (solid) and with batch statistics (dashed).

    Used by notebook 04 (report section 2)."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for m, s in surfs.items():
        if m != MATCHED:
            ax.plot(s["alphas"], to_array(s["line"]), "o-", ms=3, color=COLORS[m],
                    label=f"{_name(m, s)} (eval: running statistics)")
        if m == MATCHED:
            ax.plot(s["alphas"], to_array(s["line"]), "^:", ms=3,
                    color=COLORS["vgg_a_bn"], label=f"{_name(m, s)} (eval)")
            continue
        if "line_batch" in s and m != "vgg_a":  # without BN both lines are one
            ax.plot(s["alphas"], to_array(s["line_batch"]), "s--", ms=3, color=COLORS[m],
                    alpha=0.7, label=f"{_name(m, s)} (batch statistics)")
    ax.set(xlabel="step along the filter-normalised direction (alpha)",
           ylabel="training loss (cross-entropy, log scale)",
           title="1-D loss surface around the trained weights")
    _plain_log(ax)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_surface_2d(surfs: dict):
    """Contours of the loss on a filter-normalised plane, one colour scale
    (BN on its running statistics, evaluation mode), the star at the
    trained weights.

    Two panels per row, so that the figure fits a page (about 10 inches
    wide): with three surfaces the colour bar and the star's legend take
    the fourth slot, with one or two the colour bar sits at the right.

    Used by notebook 04 (report section 2)."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.lines import Line2D
    grids = {m: np.ma.masked_invalid(to_array(np.ravel(s["grid"])).reshape(
        len(s["xs"]), len(s["xs"]))) for m, s in surfs.items()}
    lo = min(float(g.min()) for g in grids.values())
    hi = max(float(g.max()) for g in grids.values())
    lo = max(lo, 1e-4)
    levels = np.geomspace(lo, max(hi, lo * 1.01), 16)
    n = len(grids)
    ncol = min(n, 2)
    nrow = -(-n // ncol)
    spare = nrow * ncol > n                     # a free slot for the colour bar
    fig = plt.figure(figsize=(10 if ncol == 2 else 5.8, 4.7 * nrow + 0.3),
                     layout="constrained")
    outer = fig.add_gridspec(nrow, ncol + (0 if spare else 1),
                             width_ratios=[1] * ncol + ([] if spare else [0.08]))
    axes = [fig.add_subplot(outer[k // ncol, k % ncol]) for k in range(n)]
    cs = None
    for ax, (m, g) in zip(axes, grids.items()):
        xs = surfs[m]["xs"]
        cs = ax.contourf(xs, xs, g.T, levels=levels, norm=LogNorm(lo, levels[-1]),
                         cmap="viridis", extend="both")
        ax.contour(xs, xs, g.T, levels=levels, colors="k", linewidths=0.3)
        ax.plot([0], [0], "r*", ms=12, mec="w", mew=0.6, label="trained weights")
        ticks = np.linspace(xs[0], xs[-1], 5)
        ax.set(title=f"{_name(m, surfs[m])}\n(eval mode)", xlabel="direction 1 (alpha)",
               ylabel="direction 2 (beta)", aspect="equal",
               xticks=ticks, yticks=ticks)
    if cs is None:
        return fig
    label = "training loss (cross-entropy, log scale)"
    star = Line2D([], [], ls="none", marker="*", color="r", mec="w", mew=0.6, ms=12)
    if spare:   # the fourth slot: the colour bar beside the star's legend
        slot = outer[nrow - 1, ncol - 1].subgridspec(1, 3, width_ratios=(0.35, 0.09, 1))
        cax = fig.add_subplot(slot[0, 1])
        keyax = fig.add_subplot(slot[0, 2])
        keyax.axis("off")
        keyax.legend([star], ["trained weights"], loc="center left",
                     bbox_to_anchor=(0.3, 0.5), frameon=False, borderaxespad=0)
    else:       # the colour bar in its own column, the star's legend below
        cax = fig.add_subplot(outer[:, ncol])
        fig.legend([star], ["trained weights"], loc="outside lower center",
                   frameon=False)
    ticks = round_ticks(lo, levels[-1])
    cb = fig.colorbar(cs, cax=cax, ticks=ticks, label=label)
    cb.ax.set_yticklabels([f"{v:g}" for v in ticks])
    cb.ax.minorticks_off()
    return fig


def round_ticks(lo: float, hi: float, most: int = 8) -> list[float]:
    """Round values for a log colour bar over [lo, hi]: the powers of ten,
    or 1 and 3, or 1, 2 and 5 times each, whichever gives the most ticks
    up to ``most`` (over many decades, every few powers of ten); the ends
    where none gives two."""
    import math
    powers = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    best: list[float] = []
    for steps in ((1,), (1, 3), (1, 2, 5)):
        out = [float(f"{m * 10.0 ** k:g}") for k in powers for m in steps
               if lo <= m * 10.0 ** k <= hi]
        if len(best) < len(out) <= most:
            best = out
    if len(best) >= 2:
        return best
    tens = [float(f"{10.0 ** k:g}") for k in powers if lo <= 10.0 ** k <= hi]
    if len(tens) > most:  # a range of many decades: every other one, or fewer
        return tens[::math.ceil(len(tens) / most)]
    return [float(f"{lo:.3g}"), float(f"{hi:.3g}")]

"""Plotting helpers: each returns a matplotlib Figure; ``save`` writes it.

Figures go to the profile's figures/ folder at 150 dpi; in a notebook a
small JPEG copy is shown inline so that the .ipynb stays light.
"""
from __future__ import annotations

import io
import os
import re
import sys
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt

from cifar_lib.fsutil import atomic_write
from cifar_lib.profiles import REPO, Profile, get_profile

DPI = 150
INLINE_DPI = 72
INLINE_WIDTH = 560  # pixels, longest side of the inline copy


def setup() -> None:
    """Seaborn's whitegrid theme and readable default sizes.

    Used by notebooks 00, 01, 02, 04, 05 (report sections 1.1, 1.2, 1.3, 2, 3).
    """
    import seaborn as sns
    sns.set_theme(style="whitegrid", context="notebook")
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.bbox": "tight",
                                "axes.titlesize": "medium"})


# Metadata that would make two saves of the same figure differ (version, date).
NO_METADATA = {"png": {"Software": None},
               "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
               "svg": {"Creator": None, "Date": None},
               "eps": {"Creator": None}, "ps": {"Creator": None}}


class FigurePath(type(Path())):
    """The path of a saved figure; shown relative to the repository (or as
    ``figures/<name>`` outside it), so notebook outputs carry no absolute
    path of the clone. ``str()`` and ``open()`` use the full path."""

    def __repr__(self) -> str:
        repo = Path(os.path.realpath(REPO))
        real = Path(os.path.realpath(self))
        shown = (real.relative_to(repo) if real.is_relative_to(repo)
                 else Path(*real.parts[-2:]))
        return f"FigurePath('{shown.as_posix()}')"


def figure(name: str, profile: Profile, show: bool = True,
           quiet: bool = False) -> FigurePath | None:
    """Draw the registered report figure ``name`` from the profile's stored
    results and save it to figures/ (the same function ``report`` calls);
    None, with a note, while its results are missing.

    Used by notebooks 00, 01, 02, 04, 05 (report sections 1.1-1.3, 2, 3)."""
    from cifar_lib.registry import FIGURES, STUDIES_HINT
    if name not in FIGURES:
        raise KeyError(f"no figure {name!r} is registered (known: "
                       f"{', '.join(sorted(FIGURES))}); {STUDIES_HINT}")
    setup()
    fig = FIGURES[name](profile)
    if fig is None:
        if not quiet:
            print(f"{name}: its results are not stored yet for the {profile.name} profile")
        return None
    return save(fig, profile, name, show=show)


def _write_figure(fig, path: Path) -> None:
    """Save ``fig`` to ``path`` reproducibly (no date or version in the file,
    fixed SVG ids), atomically, and only when its bytes change."""
    fmt = path.suffix.lstrip(".").lower() or "png"
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "cifar_lib"}):
        fig.savefig(buf, format=fmt, dpi=DPI, bbox_inches="tight",
                    metadata=NO_METADATA.get(fmt))
    data = buf.getvalue()
    if not (path.is_file() and path.read_bytes() == data):
        atomic_write(path, lambda tmp: tmp.write_bytes(data))


def save(fig, profile: Profile | str | None, name: str, show: bool = True) -> FigurePath:
    """Write ``fig`` to ``<profile>/figures/<name>``, show a small copy, close it.

    The file is the same bytes for the same figure (a re-run leaves it as it
    was); legends and titles outside the axes are kept (tight bounding box).

    Used by notebooks 00, 01, 02, 04, 05 (report sections 1.1, 1.2, 1.3, 2, 3)."""
    P = get_profile(profile)
    path = FigurePath(P.figures / name)
    _write_figure(fig, path)
    if show and "ipykernel" in sys.modules:
        from IPython.display import Image, display
        from PIL import Image as PILImage
        png, jpg = io.BytesIO(), io.BytesIO()
        fig.savefig(png, format="png", dpi=INLINE_DPI, bbox_inches="tight")
        img = PILImage.open(png).convert("RGB")
        img.thumbnail((INLINE_WIDTH, INLINE_WIDTH))
        img.save(jpg, format="JPEG", quality=60)
        display(Image(data=jpg.getvalue(), format="jpeg"))
    plt.close(fig)
    return path


def _to_hwc(img) -> "np.ndarray":
    """C x H x W tensor (uint8, or float in [0, 1]) -> H x W x C array."""
    import numpy as np
    a = img.detach().cpu().float().numpy() if hasattr(img, "detach") else np.asarray(img, float)
    if a.max() > 1.5:
        a = a / 255
    return a.transpose(1, 2, 0).clip(0, 1)


def denormalize(x, mean, std):
    """Undo input standardisation: back to [0, 1] images."""
    import torch
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x * s + m).clamp(0, 1)


def _bare(ax) -> None:
    """An image panel without ticks or frame that can still carry a row
    label (``ax.axis("off")`` would hide the label too)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)


def image_grid(images, titles=None, ncols: int = 10, size: float = 1.1, suptitle=None,
               row_labels=None):
    """A grid of images (N x 3 x H x W) with optional titles and an optional
    ``suptitle`` over the grid (e.g. which model's mistakes are shown);
    ``row_labels`` (one per row, e.g. the class of a row of samples) name
    the rows on the left at a readable size instead of a title per image.

    Used by notebook 00 (report section 1.1)."""
    n = len(images)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size + (1.3 if row_labels else 0),
                                                    nrows * size * (1.0 if row_labels else 1.15)),
                             squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.flat):
        _bare(ax)
        if i < n:
            ax.imshow(_to_hwc(images[i]), interpolation="nearest")
            if titles is not None and not row_labels:
                ax.set_title(_two_lines(titles[i]) if "->" in str(titles[i]) else str(titles[i]),
                             fontsize=7 if size < 1.4 else 8.5)
    for r, label in enumerate(row_labels or []):
        _row_label(axes[r, 0], label, 11)
    if suptitle:
        fig.suptitle(suptitle, fontsize="large")
    return fig


def grouped_bars(groups: dict, classes, ylabel: str, legend: str):
    """One group of bars per class, one bar per entry of ``groups`` (name -> values)."""
    import numpy as np
    fig, ax = plt.subplots(figsize=(9, 3.2))
    w = 0.8 / len(groups)
    x = np.arange(len(classes))
    for i, (name, values) in enumerate(groups.items()):
        ax.bar(x + i * w, np.asarray(values, dtype=float), w, label=name)
    ax.set_xticks(x + w * (len(groups) - 1) / 2, classes, rotation=30)
    ax.set_xlabel("class")
    ax.set_ylabel(ylabel)
    ax.legend(title=legend, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8,
              title_fontsize=8)
    fig.tight_layout()
    return fig


def class_balance(counts: dict, classes):
    """Grouped bars: images per class in each split.

    Used by notebook 00 (report section 1.1).
    """
    return grouped_bars({f"{name} ({int(sum(c)):,})": c for name, c in counts.items()},
                        classes, "images per class", "split (total)")


def channel_histograms(x):
    """Pixel-intensity histograms of the R, G and B channels of uint8 images.

    Used by notebook 00 (report section 1.1).
    """
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for c, colour in enumerate(("red", "green", "blue")):  # outlines: none hides another
        v = x[:, c].flatten().float()
        ax.hist(v.numpy(), bins=64, range=(0, 255), density=True, histtype="step", lw=1.6,
                color=colour, label=f"{colour} (mean {v.mean():.0f})")
    ax.set_xlabel("pixel intensity (0-255)")
    ax.set_ylabel("density")
    ax.legend(title="channel")
    return fig


def _diverged(rec) -> bool:
    return rec.get("status") == "diverged"


def readable_log_axis(ax, values, axis: str = "y", decades: float = 1.0) -> None:
    """A log scale with plain-number ticks at 1-2-5 steps where ``values``
    span more than ``decades`` decades; a linear axis (more ticks) otherwise,
    so that the axis never shows only one or two labels."""
    import numpy as np
    from matplotlib import ticker
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) == 0 or v.max() / v.min() <= 10 ** decades:
        return
    getattr(ax, f"set_{axis}scale")("log")
    a = ax.yaxis if axis == "y" else ax.xaxis
    a.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    a.set_major_formatter(ticker.FuncFormatter(lambda t, _: f"{t:g}"))
    a.set_minor_formatter(ticker.NullFormatter())


def _mark_divergence(ax, rec, ep, vals, color) -> None:
    """An x where a diverged run stopped: at its last finite value, or, when
    it diverged before finishing an epoch, at the top edge with a label."""
    import math
    finite = [(e, v) for e, v in zip(ep, vals) if v is not None and math.isfinite(v)]
    if finite:
        ax.plot(*finite[-1], "x", color=color, ms=9, mew=2)
        return
    epoch = (rec.get("diverged_at") or {}).get("epoch", len(ep)) + 1  # 1-based, as plotted
    where = ax.get_xaxis_transform()  # x in epochs, y as a fraction of the axes
    ax.plot([epoch], [0.93], "x", color=color, ms=10, mew=2, transform=where, clip_on=False)
    ax.annotate(f"diverged in epoch {epoch}", (epoch, 0.93), xycoords=where,
                xytext=(6, -3), textcoords="offset points", color=color, fontsize=8,
                va="top")
    lo, hi = ax.get_xlim()
    ax.set_xlim(min(lo, epoch - 0.5), max(hi, epoch + 0.5))


def learning_curves(records, labels=None, title=None):
    """Train/val loss and accuracy per epoch; a diverged run ends in an x
    (drawn at the top, labelled, when it diverged in its first epoch).

    Runs validated every epoch: four panels, two by two (train and
    validation loss on top, accuracy below), so that a page shows them at a
    readable size. Where some run validated once, after training (the lean
    loop), loss and accuracy side by side instead, that value beside its
    training curve (:func:`_curves_validated_once`). Loss axes are
    logarithmic only where the losses span more than a decade (with
    plain-number ticks); the legend sits below the panels, inside the
    figure (constrained layout); more than ten runs take colours from tab20.

    Used by notebooks 01, 02 (report sections 1.2, 1.3)."""
    from matplotlib.ticker import MaxNLocator
    colours = [f"C{i}" for i in range(10)] if len(records) <= 10 else \
        [plt.get_cmap("tab20")(i % 20) for i in range(len(records))]
    if any(_validated_once(r) for r in records):
        return _curves_validated_once(records, labels, title, colours)
    fig, grid = plt.subplots(2, 2, figsize=(10, 7.6), layout="constrained", sharex=True)
    axes = list(grid.flat)  # loss (train, validation) on top, accuracy below
    keys = [("train_loss", "train loss"), ("val_loss", "validation loss"),
            ("train_acc", "train accuracy (%)"), ("val_acc", "validation accuracy (%)")]
    series = {k: [] for k, _ in keys}
    diverged = []
    for i, rec in enumerate(records):
        label = labels[i] if labels else rec.get("label", rec["run"])
        label = f"{label} (diverged)" if _diverged(rec) else label
        h = rec["history"]
        ep = [e["epoch"] for e in h]
        for ax, (k, _) in zip(axes, keys):
            scale = 100.0 if k.endswith("acc") else 1.0     # accuracy in %, as the tables
            vals = [float("nan") if e.get(k) is None else scale * e[k] for e in h]
            series[k] += vals
            ax.plot(ep, vals, marker="." if len(ep) < 15 else None,
                    label=label if ax is axes[0] else None, color=colours[i])
            if _diverged(rec):
                diverged.append((ax, rec, ep, vals, colours[i]))
    for i, (ax, (k, name)) in enumerate(zip(axes, keys)):
        if i >= 2:
            ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        if k.endswith("loss"):
            readable_log_axis(ax, series[k])
    for args in diverged:  # after autoscaling, so a mark at the edge stays visible
        _mark_divergence(*args)
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs (shared x)
    fig.legend(loc="outside lower center", ncol=min(len(records), 4), fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def _validated_once(rec: dict) -> bool:
    """Whether a run trained several epochs but validated once, after
    training (the lean loop)."""
    h = rec["history"]
    return len(h) > 1 and sum(e.get("val_loss") is not None for e in h) <= 1 \
        and sum(e.get("train_loss") is not None for e in h) > 1


def _curves_validated_once(records, labels, title, colours):
    """:func:`learning_curves` where some runs validated once, after
    training (the lean loop): loss and accuracy side by side, the training
    curve per epoch as a line, a validation value measured once as an open
    diamond at the last epoch (runs set slightly apart, so that no diamond
    hides another) and one measured every epoch as a dashed line, on the
    same axes."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), layout="constrained", sharex=True)
    losses, diverged, every = [], [], False
    for i, rec in enumerate(records):
        label = labels[i] if labels else rec.get("label", rec["run"])
        label = f"{label} (diverged)" if _diverged(rec) else label
        h, colour = rec["history"], colours[i]
        ep = [e["epoch"] for e in h]
        apart = 0.08 * (i - (len(records) - 1) / 2) if len(records) > 1 else 0.0
        for ax, (train, val) in zip(axes, (("train_loss", "val_loss"), ("train_acc", "val_acc"))):
            scale = 100.0 if train.endswith("acc") else 1.0
            vals = [float("nan") if e.get(train) is None else scale * e[train] for e in h]
            ax.plot(ep, vals, marker="." if len(ep) < 15 else None, color=colour,
                    label=label if ax is axes[0] else None)
            once = [(e["epoch"], scale * e[val]) for e in h if e.get(val) is not None]
            if len(once) > 1:       # validated every epoch (e.g. the plateau schedule)
                ax.plot(*zip(*once), "--", color=colour)
                every = True
            elif once:
                ax.plot([once[-1][0] + apart], [once[-1][1]], "D", mfc="none", mec=colour,
                        mew=1.5, ms=7)
            if train == "train_loss":
                losses += vals + [v for _, v in once]
            if _diverged(rec):
                diverged.append((ax, rec, ep, vals, colour))
    axes[0].set_ylabel("loss")
    axes[1].set_ylabel("accuracy (%)")
    for ax in axes:
        ax.set_xlabel("epoch")
    readable_log_axis(axes[0], losses)
    for args in diverged:  # after autoscaling, so a mark at the edge stays visible
        _mark_divergence(*args)
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs (shared x)
    key = {"training, per epoch": Line2D([], [], color="k", marker="."),
           "validation, every epoch": Line2D([], [], color="k", ls="--"),
           "validation, once after training": Line2D([], [], ls="none", marker="D",
                                                     mfc="none", mec="k", mew=1.5, ms=7)}
    if not every:
        del key["validation, every epoch"]
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles + list(key.values()), names + list(key),
               loc="outside lower center", ncol=min(len(records) + len(key), 4), fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def seed_dots(rows, title=None, xlabel="test accuracy (%)", band=None):
    """One row per variant: every seed's test accuracy as a dot (failed
    seeds as an x at their value), the mean over the seeds that learned as
    a bar, the baseline's mean as a dashed line. ``rows``: (label, [(status,
    accuracy in %)], is_baseline), in display order. ``band`` (points): a
    shaded band of that half-width around the baseline, the seed noise a
    difference must exceed (a row whose bar sits inside it is a tie).

    Used by report section 1.3 (notebook 02 shows the curves)."""
    n = len(rows)
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * n + 1.2), layout="constrained")
    base = None
    for i, (label, seeds, is_base) in enumerate(rows):
        y = n - 1 - i
        ok = [v for st, v in seeds if st == "ok" and v == v]
        bad = [v for st, v in seeds if st != "ok" and v == v]
        colour = "C3" if is_base else "C0"
        if ok:
            mean = sum(ok) / len(ok)
            ax.plot([mean, mean], [y - 0.3, y + 0.3], color=colour, lw=2.5)
            if is_base:
                base = mean
        ax.scatter(ok, [y] * len(ok), color=colour, s=28, zorder=3)
        if bad:
            ax.scatter(bad, [y] * len(bad), color="0.4", marker="x", s=36, zorder=3,
                       label="failed seed" if not ax.get_legend_handles_labels()[1] else None)
    if base is not None:
        ax.axvline(base, color="C3", ls="--", lw=1, alpha=0.7)
        if band:
            ax.axvspan(base - band, base + band, color="C3", alpha=0.1, lw=0,
                       label=f"baseline \u00b1 {band:.1f} points: the largest gap "
                             "between two seeds of one setting")
    ax.set_yticks(range(n))
    ax.set_yticklabels([r[0] for r in rows][::-1], fontsize=9)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    ax.set_ylim(-0.6, n - 0.4)
    if ax.get_legend_handles_labels()[1]:  # below the axes: it hides no dot
        fig.legend(loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=11)
    return fig


def lr_curves(records, labels=None):
    """Learning rate each epoch starts with, one line per run.

    Used by notebook 01 (report section 1.2).
    """
    fig, ax = plt.subplots(figsize=(6.5, 3.9), layout="constrained")
    lines: dict[tuple, list[str]] = {}  # runs with the same schedule share a line
    for i, rec in enumerate(records):
        h = rec["history"]
        key = (tuple(e["epoch"] for e in h), tuple(round(e["lr"], 12) for e in h))
        lines.setdefault(key, []).append(labels[i] if labels else rec.get("label", rec["run"]))
    for (ep, lr), names in lines.items():
        ax.plot(ep, lr, marker=".", label=", ".join(names))
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate (start of epoch)")
    readable_log_axis(ax, [e["lr"] for rec in records for e in rec["history"]])
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(loc="outside lower center", fontsize=8)
    return fig


def accuracy_vs_params(summary, x="params", y="test_acc_mean", err="test_acc_std",
                       label="label"):
    """Test accuracy (mean +- std over seeds) against parameters, log x-axis.

    Used by notebook 01 (report section 1.2).
    """
    fig, ax = plt.subplots(figsize=(7, 4.2))
    notes = []
    for i, row in enumerate(summary.itertuples(index=False)):
        r = row._asdict()
        e = r.get(err)
        ax.errorbar(r[x], 100 * r[y], yerr=None if e != e or e is None else 100 * e,
                    fmt="o", color=f"C{i % 10}", label=r[label], capsize=3)
        # in its point's colour (darkened to read as text), so that a label
        # placed between two points still says which one it names
        notes.append(ax.annotate(r[label], (r[x], 100 * r[y]), fontsize=7,
                                 color=_darker(f"C{i % 10}"), xytext=(4, 4),
                                 textcoords="offset points"))
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("test accuracy (%)")
    _unstack_labels(fig, notes)   # every point carries its name: no legend to cover them
    return fig


def _unstack_labels(fig, notes) -> None:
    """Move each point label that overlaps a label placed before it, or
    another point's marker, or runs past the axes' frame, to the first free
    spot of a few around its point (right, below, left); inside the frame
    where any spot is free there."""
    from matplotlib.transforms import Bbox
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    dots = [n.axes.transData.transform(n.xy) for n in notes]
    # another point's marker with a margin around it: a label that touches
    # it would seem to name that point
    marks = [Bbox.from_extents(x - 9, y - 9, x + 9, y + 9) for x, y in dots]
    placed = []
    for i, note in enumerate(notes):
        others = placed + [m for j, m in enumerate(marks) if j != i]
        frame = note.axes.get_window_extent(r)
        free = lambda b: not any(b.overlaps(o) for o in others)  # noqa: E731
        spots = ((4, 4), (4, -10), (-4, 4), (-4, -10), (4, 12), (4, -18), (-4, 12), (-4, -18))
        # a free spot inside the frame, else any free spot, else the first
        tries = [(ok, off) for ok in (lambda b: _within(b, frame) and free(b), free)
                 for off in spots] + [(lambda b: True, spots[0])]
        for ok, off in tries:
            note.set_position(off)
            note.set_horizontalalignment("left" if off[0] > 0 else "right")
            if ok(note.get_window_extent(r)):
                break
        placed.append(note.get_window_extent(r))


def _darker(color, by: float = 0.75):
    """``color`` with its RGB scaled by ``by`` (text on a white background)."""
    from matplotlib.colors import to_rgb
    return tuple(by * c for c in to_rgb(color))


def _within(box, frame) -> bool:
    """Whether ``box`` lies inside ``frame`` (display coordinates)."""
    return (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0
            and box.y1 <= frame.y1)


def filter_channels(w, top: int = 16, title: str | None = None):
    """The ``top`` first-layer filters with the largest norm (K x C x k x k),
    one column each, one row per input channel (red, green, blue), on one
    diverging scale (red positive, blue negative, white zero), so that edge
    and colour-opponent detectors read as patterns and weak filters as
    faint; each column names the filter and its norm.

    Used by notebook 03 (report section 1.4)."""
    import numpy as np
    w = np.asarray(w, dtype=float)
    norms = np.sqrt((w.reshape(len(w), -1) ** 2).sum(1))
    order = np.argsort(-norms)[:top]
    lim = float(np.abs(w[order]).max()) or 1.0
    names = ["red", "green", "blue"] if w.shape[1] == 3 else \
        [f"input {c}" for c in range(w.shape[1])]
    fig, axes = plt.subplots(w.shape[1], len(order), squeeze=False, layout="constrained",
                             figsize=(0.62 * len(order) + 1.2, 0.68 * w.shape[1] + 0.9))
    for j, f in enumerate(order):
        for c in range(w.shape[1]):
            ax = axes[c, j]
            im = ax.imshow(w[f, c], cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(names[c], fontsize=10)
        axes[0, j].set_title(f"#{f}\n{norms[f]:.2f}", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8, label="weight")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def filter_grid(w, ncols: int = 16, title: str | None = None):
    """First-layer filters (K x 3 x k x k, array or nested lists) as RGB
    images, each scaled to [0, 1] from its own minimum to maximum."""
    import numpy as np
    w = np.asarray(w, dtype=float)
    flat = w.reshape(len(w), -1)
    lo = flat.min(1).reshape(-1, 1, 1, 1)
    hi = flat.max(1).reshape(-1, 1, 1, 1)
    return image_grid((w - lo) / (hi - lo + 1e-12), ncols=ncols, size=0.7, suptitle=title)


# Violins smooth (Scott's rule) as if drawn from this many values at most,
# the sample the weight violins were once drawn from.
VIOLIN_SAMPLE = 20000


def _violins(ax, dists, cap: int | None = None) -> None:
    """One violin (median marked) per distribution: an array of values, or a
    summary ``{"n", "values"}`` (``analysis.quantile_summary``) smoothed as
    a violin of its ``n`` values (at most ``cap``) would be."""
    import numpy as np
    from matplotlib import cbook
    stats = []
    for d in dists:
        values = np.asarray(d["values"] if isinstance(d, dict) else d, dtype=float).ravel()
        n = d["n"] if isinstance(d, dict) else len(values)
        n = min(n, cap) if cap else n
        stats += cbook.violin_stats([values], ("GaussianKDE", max(n, 2) ** -0.2))
    ax.violin(stats, showextrema=False, showmedians=True)


_LEAF = {"conv": "conv", "bn": "BN", "act": "activation"}
_PARTS = {"shortcut.0": "shortcut conv", "shortcut.1": "shortcut BN"}
_STEM = ("conv", "BN", "act", "max-pool")  # models.layers.make_stem's order


def layer_words(name: str, short: bool = False) -> str:
    """A module path as the figures name it, stages and blocks counted from 1
    (the library's staged nets: stem ``stem.k``, blocks ``layers.i.j``):
    'layers.1.0.conv2' -> 'stage 2 block 1\nconv 2' (short: '2.1 conv 2'),
    'layers.2.0.shortcut.0' -> '... shortcut conv', 'stem.0' -> 'stem conv',
    'fc' -> 'classifier'; any other path as it is."""
    m = re.fullmatch(r"layers\.(\d+)\.(\d+)(?:\.(.+))?", name)
    if m:
        i, j, rest = int(m[1]) + 1, int(m[2]) + 1, m[3]
        where = f"{i}.{j}" if short else f"stage {i} block {j}"
        if not rest:
            return where
        leaf = re.fullmatch(r"(conv|bn|act)(\d*)", rest)
        kind = "act" if short and leaf and leaf[1] == "act" else leaf and _LEAF[leaf[1]]
        what = f"{kind} {leaf[2]}".strip() if leaf else _PARTS.get(rest, rest)
        return f"{where}{' ' if short else chr(10)}{what}"
    m = re.fullmatch(r"stem\.(\d)", name)
    if m and int(m[1]) < len(_STEM):
        return f"stem {_STEM[int(m[1])]}"
    return {"fc": "classifier"}.get(name, name)


def weight_distributions(weights: dict):
    """Violin plot of the weights of every layer, input to output: layer
    name -> its values, or a summary ``{"n", "values"}`` of them."""
    names = list(weights)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names)), 3.6))
    _violins(ax, [weights[n] for n in names], cap=VIOLIN_SAMPLE)
    ax.set_xticks(range(1, len(names) + 1), [layer_words(n, short=True) for n in names],
                  rotation=90, fontsize=8)
    ax.set_xlabel("layer (stage.block, from the input side)")
    ax.set_ylabel("weight value")
    return fig


def feature_map_grid(maps: dict, image, channels: dict):
    """For one input: the image (top row, once), then per layer a row of
    chosen channels, ``maps`` layer -> k x H x W array (each channel on its
    own colour scale), ``channels`` layer -> the k channel numbers; the
    layer's name labels its row on the left."""
    import numpy as np
    k = max(len(c) for c in channels.values())
    fig, axes = plt.subplots(1 + len(maps), k, figsize=(2.4 + k * 1.1, (1 + len(maps)) * 1.3),
                             squeeze=False, layout="constrained")
    for ax in axes.flat:
        _bare(ax)
    axes[0, 0].imshow(_to_hwc(image))
    _row_label(axes[0, 0], "input")
    for r, (name, fm) in enumerate(maps.items(), start=1):
        _row_label(axes[r, 0], layer_words(name))
        for c, ch in enumerate(channels[name]):
            axes[r, c].imshow(np.asarray(fm[c]), cmap="viridis")
            axes[r, c].set_title(f"ch {int(ch)}", fontsize=9)
    fig.suptitle("feature maps: the most active channels per layer (colour: activation, "
                 "each map on its own scale)", fontsize=10)
    return fig


def _two_lines(text: str) -> str:
    """'dog->cat' as 'dog\n→ cat'; 'resnet18 gradcam++' as 'resnet18\ngradcam++'."""
    text = str(text)
    if "->" in text:
        return "\n→ ".join(part.strip() for part in text.split("->", 1))
    return text.replace(" ", "\n", 1) if "\n" not in text else text


def _row_label(ax, text: str, fontsize: float = 9) -> None:
    """A horizontal label left of a row of images (no overlap with the next row)."""
    ax.set_ylabel(_two_lines(text), rotation=0, ha="right", va="center",
                  fontsize=fontsize, labelpad=6)


def cam_grid(images, maps: dict, titles, per_row: int = 5, preds: dict | None = None):
    """Rows: input, then each CAM method overlaid on it; one column per image,
    at most ``per_row`` images side by side (more go to a further block of
    rows below), so that the figure keeps a page's width and its labels stay
    readable there.

    Titles ('true->predicted') and row labels ('model, method') are set on two
    lines at a readable size; every block repeats its row labels.
    ``preds``: {model: class per image} for models whose maps explain a class
    the title does not give; it is written at the foot of each of their maps,
    bold where it is the true class."""
    import math
    n = len(images)
    per = 1 + len(maps)
    blocks, cols = math.ceil(n / per_row), min(n, per_row)
    fig, axes = plt.subplots(per * blocks, cols, figsize=(2.2 + cols * 1.45, per * blocks * 1.5),
                             squeeze=False, layout="constrained")
    for j in range(n):
        top, c = (j // cols) * per, j % cols
        img = _to_hwc(images[j])
        axes[top, c].imshow(img)
        axes[top, c].set_title(_two_lines(titles[j]), fontsize=9)
        for i, (row, cam) in enumerate(maps.items(), start=1):
            axes[top + i, c].imshow(img)
            im = axes[top + i, c].imshow(cam[j], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            said = (preds or {}).get(row.split(", ")[0])
            if said is not None:
                right = said[j] == titles[j].split("->")[0]
                axes[top + i, c].text(0.04, 0.04, f"→ {said[j]}", fontsize=8,
                                      fontweight="bold" if right else "normal",
                                      transform=axes[top + i, c].transAxes, color="white",
                                      bbox=dict(facecolor="black", alpha=0.6, lw=0, pad=1.5))
    for b in range(blocks):
        _row_label(axes[b * per, 0], "input")
        for i, method in enumerate(maps, start=1):
            _row_label(axes[b * per + i, 0], method)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        if not ax.images:
            ax.set_axis_off()
    fig.colorbar(im, ax=axes, shrink=0.3, label="CAM weight (0-1)")
    fig.get_layout_engine().set(rect=(0.015, 0, 0.985, 1))  # room for the row labels
    return fig


def confusion_plot(cm, classes, normalize: bool = True):
    """Confusion matrix heat map (rows true, columns predicted)."""
    import numpy as np
    import seaborn as sns
    cm = np.asarray(cm)
    data = cm / cm.sum(1, keepdims=True).clip(min=1) if normalize else cm
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    sns.heatmap(100 * data if normalize else data, annot=True, fmt=".0f", cmap="Blues",
                xticklabels=classes, yticklabels=classes, ax=ax,
                cbar_kws={"label": "% of true class" if normalize else "images"})
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    return fig


def per_class_bars(acc: dict, classes):
    """Per-class accuracy, one group of bars per class, one bar per model."""
    import numpy as np
    return grouped_bars({name: 100 * np.asarray(a) for name, a in acc.items()},
                        classes, "test accuracy (%)", "model")


def reliability_plot(rels: dict):
    """Reliability diagrams (accuracy against confidence) with each model's
    ECE: model -> {"count", "conf", "acc" (per bin), "ece"}."""
    import numpy as np
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    for name, r in rels.items():
        keep = np.asarray(r["count"]) > 0
        ax.plot(np.asarray(r["conf"])[keep], np.asarray(r["acc"])[keep], "o-",
                label=f"{name} (ECE {r['ece']:.3f})")
    ax.set_xlabel("confidence (mean max-softmax in bin)")
    ax.set_ylabel("accuracy in bin")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return fig


def embedding_plot(z, y, classes, title="penultimate features"):
    """2-D embedding (N x 2) coloured by class (labels ``y``)."""
    import numpy as np
    z, y = np.asarray(z, dtype=float), np.asarray(y)
    fig, ax = plt.subplots(figsize=(7, 5), layout="constrained")
    for k, name in enumerate(classes):
        m = y == k
        ax.scatter(z[m, 0], z[m, 1], s=5, alpha=0.7, label=name)
    ax.set_xlabel("component 1")
    ax.set_ylabel("component 2")
    ax.set_title(title)
    # beside the points, not over them
    ax.legend(markerscale=3, fontsize=9, title="class", loc="center left",
              bbox_to_anchor=(1.02, 0.5))
    return fig


def heatmap(table, xlabel: str, ylabel: str, cbar: str, fmt: str = ".1f", failed=None):
    """A labelled heat map of a 2-D DataFrame. ``failed``: a DataFrame of
    the same shape whose non-empty cells are drawn grey, hatched and
    labelled with that text instead (a cell whose every run failed: its
    value is no result, so it takes no colour).

    Used by notebook 02 (report section 1.3).
    """
    import seaborn as sns
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * table.shape[1], 1 + 0.6 * table.shape[0]))
    mask = None if failed is None else failed.notna() & (failed != "")
    sns.heatmap(table, annot=True, fmt=fmt, cmap="viridis", ax=ax, mask=mask,
                cbar_kws={"label": cbar})
    if mask is not None:
        for i in range(table.shape[0]):
            for j in range(table.shape[1]):
                if mask.iat[i, j]:
                    ax.add_patch(plt.Rectangle((j, i), 1, 1, facecolor="0.85",
                                               hatch="//", edgecolor="0.6", lw=0))
                    ax.text(j + 0.5, i + 0.5, failed.iat[i, j], ha="center",
                            va="center", fontsize=9, color="0.2")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fig


def image_rows(rows: dict, size: float = 1.1):
    """One row of images per entry, labelled with its key.

    Used by notebook 00 (report section 1.1).
    """
    names = list(rows)
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(names), n, figsize=(n * size, len(names) * size), squeeze=False)
    for r, name in enumerate(names):
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(rows[name]):
                ax.imshow(_to_hwc(rows[name][c]), interpolation="nearest")
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    return fig


def attention_maps(images, maps: dict):
    """CANet spatial attention: one row per image (N x 3 x H x W), the image
    then one column per block (block -> N x H x W array in [0, 1]), so that
    a page's width holds the blocks at a readable size."""
    import numpy as np
    n, cols = len(images), 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(0.6 + cols * 1.0, n * 1.05 + 0.6), squeeze=False,
                             layout="constrained")
    for j in range(n):
        axes[j, 0].imshow(_to_hwc(images[j]))
        for i, m in enumerate(maps.values(), start=1):
            im = axes[j, i].imshow(np.asarray(m[j]), cmap="magma", vmin=0, vmax=1)
    axes[0, 0].set_title("input", fontsize=9)
    for i, block in enumerate(maps, start=1):
        axes[0, i].set_title(layer_words(block).replace(" block", "\nblock"), fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.6, label="spatial attention weight")
    return fig


def attention_weights(spatial: dict, channel: dict):
    """Distributions of spatial and channel attention weights per block:
    block -> values, or a summary ``{"n", "values"}`` of them."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharey=True)
    names = [layer_words(b, short=True) for b in spatial]   # 'layers.1.0' as '2.1'
    for ax, dists, title in ((axes[0], spatial, "spatial attention"),
                             (axes[1], channel, "channel attention (SE)")):
        _violins(ax, list(dists.values()))
        ax.set_xticks(range(1, len(names) + 1), names, fontsize=10)
        ax.set_xlabel("residual block (stage.block, from the input side)")
        ax.set_title(title)
    axes[0].set_ylabel("attention weight (sigmoid output)")
    fig.tight_layout()
    return fig

"""Plotting helpers: each returns a matplotlib Figure; ``save`` writes it.

Figures go to the profile's figures/ folder at 150 dpi; in a notebook a
small copy is shown inline so that the .ipynb stays light.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt

from cifar_lib.profiles import Profile, get_profile

DPI = 150
INLINE_DPI = 60


def setup() -> None:
    """Seaborn's whitegrid theme and readable default sizes."""
    import seaborn as sns
    sns.set_theme(style="whitegrid", context="notebook")
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.bbox": "tight",
                                "axes.titlesize": "medium"})


def save(fig, profile: Profile | str | None, name: str, show: bool = True) -> Path:
    """Write ``fig`` to ``<profile>/figures/<name>``, show a small copy, close it."""
    P = profile if isinstance(profile, Profile) else get_profile(profile)
    path = P.figures / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    if show and "ipykernel" in sys.modules:
        from IPython.display import Image, display
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=INLINE_DPI, bbox_inches="tight")
        display(Image(data=buf.getvalue()))
    plt.close(fig)
    return path

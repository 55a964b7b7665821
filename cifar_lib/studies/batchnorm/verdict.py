"""The BatchNorm study's verdict: does BN smooth the landscape here, as
Santurkar et al. 2018 find, measure by measure?

Pure functions of numbers, so that every sentence that states a direction
("smaller", "agrees") computes it from the numbers it cites, and a test can
flip a number and see the sentence flip. A :class:`Pair` is one measure's
mean over seeds for VGG-A and VGG-A + BN (lower is smoother for every
measure here) with the seeds in which BN's value is the lower; a
:class:`Measure` holds its pairs per phase of training and the same measure
under controls (per unit of distance, at matched loss, ...) that can
explain a disagreement. ``values.py`` builds them from the records.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

TOL = 0.05        # ratios within 5% of 1 count as "about the same"
PAPER = "Santurkar et al."


@dataclass(frozen=True)
class Pair:
    """A measure's value without and with BN (means over seeds), and in how
    many of the seeds BN's value is the lower."""

    plain: float
    bn: float
    wins: int = 1
    seeds: int = 1

    @property
    def ratio(self) -> float:
        """VGG-A over VGG-A + BN: above 1, BN is smoother."""
        return self.plain / self.bn if self.bn else math.inf


def pair(per_seed) -> Pair | None:
    """A :class:`Pair` from (plain, BN) per seed (None: no seed has both)."""
    ok = [(a, b) for a, b in per_seed if a is not None and b is not None
          and math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0]
    if not ok:
        return None
    return Pair(sum(a for a, _ in ok) / len(ok), sum(b for _, b in ok) / len(ok),
                sum(b < a for a, b in ok), len(ok))


def direction(p: Pair | None) -> int:
    """+1: BN smoother (lower), -1: BN rougher, 0: within :data:`TOL` (or
    no data)."""
    if p is None:
        return 0
    r = p.ratio
    return 1 if r > 1 + TOL else -1 if r < 1 / (1 + TOL) else 0


def _x(r: float) -> str:
    return f"{r:.0f}" if r >= 10 else f"{r:.2g}"


def said(p: Pair | None, less: str = "smaller", more: str = "larger") -> str:
    """How BN's value compares, with the numbers it is computed from, e.g.
    '1.9x smaller with BN (0.158 vs 0.295; lower in 3 of 3 seeds)'."""
    if p is None:
        return "not measured"
    d = direction(p)
    word = ("about the same" if d == 0 else
            f"{_x(p.ratio)}x {less}" if d > 0 else f"{_x(1 / p.ratio)}x {more}")
    seeds = f"; lower with BN in {p.wins} of {p.seeds} seeds" if p.seeds > 1 else ""
    return f"{word} with BN ({p.bn:.3g} vs {p.plain:.3g}{seeds})"


@dataclass(frozen=True)
class Measure:
    """One measure of smoothness: its pairs per phase and under controls."""

    key: str                     # e.g. "adam_loss_range"
    name: str                    # e.g. "the loss range along Adam's step"
    phases: dict                 # phase -> Pair | None ("early"/"late", or "end")
    controls: tuple = ()         # (control name, {phase: Pair | None}), ...
    less: str = "smaller"
    more: str = "larger"
    label: str = ""              # short name for tables (default: ``name``)

    def measured(self) -> bool:
        return any(p is not None for p in self.phases.values())


def verdict(m: Measure) -> str:
    """``agrees``, ``disagrees``, ``mixed``, ``no difference`` or ``not
    measured``: the directions of the measure's phases."""
    ds = {direction(p) for p in m.phases.values() if p is not None}
    if not ds:
        return "not measured"
    if ds == {1}:
        return "agrees"
    if ds == {-1}:
        return "disagrees"
    if ds == {0}:
        return "no difference"
    return "mixed"


def _phases(m: Measure, phases: dict) -> str:
    parts = [f"{ph} {said(p, m.less, m.more)}" if len(phases) > 1 or ph != "end"
             else said(p, m.less, m.more) for ph, p in phases.items()]
    return "; ".join(parts)


def _not_agreeing(m: Measure) -> list[str]:
    return [ph for ph, p in m.phases.items() if p is not None and direction(p) < 1]


def explaining_control(m: Measure) -> str | None:
    """The first control under which every phase that does not agree
    agrees (None: the measure agrees, or no control does that)."""
    bad = _not_agreeing(m)
    if not bad:
        return None
    for name, phases in m.controls:
        if all(direction(phases.get(ph)) == 1 for ph in bad):
            return name
    return None


def unmeasured(m: Measure) -> str:
    """The sentence of a measure the finished runs give no value for: every
    step it compares had a network at chance (those steps are left out)."""
    return (f"{m.name[0].upper()}{m.name[1:]}: no value in this profile, since at every "
            "step it compares one of the networks sits at chance.")


def sentence(m: Measure) -> str:
    """The measure's verdict in one or two sentences, every direction
    computed from the numbers cited."""
    v = verdict(m)
    if v == "not measured":
        return f"{m.name[0].upper()}{m.name[1:]}: not measured yet."
    head = {"agrees": f"agrees with {PAPER}",
            "disagrees": f"disagrees with {PAPER}",
            "mixed": f"agrees with {PAPER} only in part",
            "no difference": "shows no difference"}[v]
    out = f"{m.name[0].upper()}{m.name[1:]} {head}: {_phases(m, m.phases)}."
    if not m.controls:
        return out
    why = explaining_control(m)
    if v == "agrees":
        name, phases = m.controls[0]
        holds = all(direction(p) == 1 for p in phases.values() if p is not None)
        return (out + f" {name[0].upper()}{name[1:]} it "
                + ("still agrees" if holds else "no longer agrees everywhere")
                + f" ({_phases(m, phases)}).")
    if why is not None:
        phases = dict(m.controls)[why]
        return out + (f" The control that explains it: {why} BN is smoother "
                      f"({_phases(m, phases)}).")
    tried = "; ".join(f"{name}: {_phases(m, ph)}" for name, ph in m.controls)
    return out + f" No control here reverses it ({tried})."


def _short(m: Measure) -> str:
    """The measure's name with its ratios, e.g. 'the loss range along
    Adam's step (early 1.9x smaller, late 2.2x smaller)'."""
    bits = []
    for ph, p in m.phases.items():
        if p is None:
            continue
        word = said(p, m.less, m.more).split(" with BN")[0]
        bits.append(word if ph == "end" else f"{ph} {word}")
    return f"{m.name} ({', '.join(bits)})"


def summary(measures: list[Measure]) -> str | None:
    """The verdict paragraph: how many measures say BN smoothed the
    landscape, and which ones for and against (None: nothing measured)."""
    ms = [m for m in measures if m.measured()]
    if not ms:
        return None
    groups = {v: [m for m in ms if verdict(m) == v]
              for v in ("agrees", "mixed", "disagrees", "no difference")}
    n_for, n_against = len(groups["agrees"]), len(groups["disagrees"])
    lead = ("BatchNorm smoothed the landscape here" if n_for > n_against else
            "BatchNorm did not smooth the landscape here" if n_against > n_for else
            "Whether BatchNorm smoothed the landscape here is undecided")
    n = {v: len(g) for v, g in groups.items()}
    verb = lambda k, one, many: f"{k} {one if k == 1 else many}"  # noqa: E731
    out = (f"{lead}: {n_for} of {len(ms)} measures agree with {PAPER} (BN "
           f"smoother in every phase), {verb(n_against, 'disagrees', 'disagree')} and "
           f"{verb(n['mixed'], 'agrees', 'agree')} only in part"
           + (f", {verb(n['no difference'], 'shows', 'show')} no difference"
              if n["no difference"] else "") + ".")
    for v, label in (("agrees", "For"), ("mixed", "In part"),
                     ("disagrees", "Against"), ("no difference", "Even")):
        if groups[v]:
            items = []
            for m in groups[v]:
                why = explaining_control(m)
                items.append(_short(m) + (f", BN smoother {why}" if why else ""))
            out += f" {label}: " + "; ".join(items) + "."
    return out


def counts(measures: list[Measure]) -> dict[str, int]:
    """How many measured measures reach each verdict."""
    out: dict[str, int] = {}
    for m in measures:
        if m.measured():
            out[verdict(m)] = out.get(verdict(m), 0) + 1
    return out

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

A pair says BN is smoother (or rougher) only when the means differ by more
than :data:`TOL` and most seeds go the same way; when the means differ but
most seeds do not follow them, the seeds split (:func:`call`), and that
phase counts for neither side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

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


def mean_direction(p: Pair | None) -> int:
    """The direction of the means alone: +1 BN lower by more than
    :data:`TOL`, -1 higher, 0 within it (or no data)."""
    if p is None:
        return 0
    r = p.ratio
    return 1 if r > 1 + TOL else -1 if r < 1 / (1 + TOL) else 0


def backed(p: Pair | None) -> bool:
    """Whether most seeds go the way the means do (always, for one seed or
    means within :data:`TOL`)."""
    d = mean_direction(p)
    if p is None or d == 0 or p.seeds == 1:
        return True
    going = p.wins if d > 0 else p.seeds - p.wins
    return 2 * going > p.seeds


def call(p: Pair | None) -> str:
    """``smoother``, ``rougher``, ``even`` (means within :data:`TOL`),
    ``split`` (the means differ but most seeds do not go their way) or
    ``not measured``."""
    if p is None:
        return "not measured"
    d = mean_direction(p)
    if d == 0:
        return "even"
    if not backed(p):
        return "split"
    return "smoother" if d > 0 else "rougher"


def direction(p: Pair | None) -> int:
    """+1: BN smoother (lower, in most seeds), -1: BN rougher, 0: within
    :data:`TOL`, seeds split, or no data."""
    return {"smoother": 1, "rougher": -1}.get(call(p), 0)


def _x(r: float) -> str:
    return f"{r:.0f}" if r >= 10 else f"{r:.2g}"


def plural(n: int, one: str, many: str | None = None) -> str:
    """``n`` with the word in the singular or the plural, e.g. '1 seed'."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def said(p: Pair | None, less: str = "smaller", more: str = "larger") -> str:
    """How BN's value compares, with the numbers it is computed from, e.g.
    '1.9x smaller with BN (0.158 vs 0.295; lower in 3 of 3 seeds)'; where
    the seeds split, '1.2x smaller with BN on average (...; but lower with
    BN in only 1 of 3 seeds)'."""
    if p is None:
        return "not measured"
    d = mean_direction(p)
    word = ("about the same" if d == 0 else
            f"{_x(p.ratio)}x {less}" if d > 0 else f"{_x(1 / p.ratio)}x {more}")
    if p.seeds == 1:
        return f"{word} with BN ({p.bn:.3g} vs {p.plain:.3g})"
    if backed(p):
        return (f"{word} with BN ({p.bn:.3g} vs {p.plain:.3g}; lower with BN in "
                f"{p.wins} of {p.seeds} seeds)")
    only = "only " if d > 0 else ""
    return (f"{word} with BN on average ({p.bn:.3g} vs {p.plain:.3g}; but lower "
            f"with BN in {only}{p.wins} of {p.seeds} seeds)")


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
    view: str = "as measured"    # what ``phases`` are, as the table names them
    notes: dict = field(default_factory=dict)  # phase -> caveat, e.g. few probes

    def measured(self) -> bool:
        return any(p is not None for p in self.phases.values())


# A measure's verdict from the calls of its phases (see :func:`verdict`).
VERDICTS = ("agrees", "mixed", "disagrees in part", "disagrees", "no difference")


def verdict(m: Measure) -> str:
    """``agrees`` (BN smoother in every phase), ``disagrees`` (rougher in
    every phase), ``mixed`` (smoother in some phases only), ``disagrees in
    part`` (rougher in some phases, smoother in none), ``no difference``
    (every phase even or split between the seeds) or ``not measured``."""
    cs = [call(p) for p in m.phases.values() if p is not None]
    if not cs:
        return "not measured"
    if all(c == "smoother" for c in cs):
        return "agrees"
    if all(c == "rougher" for c in cs):
        return "disagrees"
    if "smoother" in cs:
        return "mixed"
    if "rougher" in cs:
        return "disagrees in part"
    return "no difference"


def _split(m: Measure) -> bool:
    return any(call(p) == "split" for p in m.phases.values())


def _phases(m: Measure, phases: dict, notes: bool = True) -> str:
    """Each phase's comparison, with its caveat (``notes``: the measure's
    own phases; its controls rest on the same data, said once)."""
    parts = []
    for ph, p in phases.items():
        text = said(p, m.less, m.more)
        if len(phases) > 1 or ph != "end":
            text = f"{ph} {text}"
        if notes and ph in m.notes:
            text += f", {m.notes[ph]}"
        parts.append(text)
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


def _head(m: Measure) -> str:
    return {"agrees": f"agrees with {PAPER}",
            "disagrees": f"disagrees with {PAPER}",
            "mixed": f"agrees with {PAPER} only in part",
            "disagrees in part": f"disagrees with {PAPER} in part and agrees nowhere",
            "no difference": "shows no consistent difference (the seeds split)"
            if _split(m) else "shows no difference"}[verdict(m)]


def sentence(m: Measure) -> str:
    """The measure's verdict in one or two sentences, every direction
    computed from the numbers cited."""
    v = verdict(m)
    if v == "not measured":
        return f"{m.name[0].upper()}{m.name[1:]}: not measured yet."
    out = f"{m.name[0].upper()}{m.name[1:]} {_head(m)}: {_phases(m, m.phases)}."
    if not m.controls:
        return out
    why = explaining_control(m)
    if v == "agrees":
        name, phases = m.controls[0]
        holds = all(direction(p) == 1 for p in phases.values() if p is not None)
        return (out + f" {name[0].upper()}{name[1:]} it "
                + ("still agrees" if holds else "no longer agrees everywhere")
                + f" ({_phases(m, phases, False)}).")
    if why is not None:
        phases = dict(m.controls)[why]
        return out + (f" The control that explains it: {why} BN is smoother "
                      f"({_phases(m, phases, False)}).")
    tried = "; ".join(f"{name}: {_phases(m, ph, False)}" for name, ph in m.controls)
    return out + f" No control here reverses it ({tried})."


def _short(m: Measure) -> str:
    """The measure's name with its ratios, e.g. 'the loss range along
    Adam's step (early 1.9x smaller, late 2.2x smaller)'; a phase whose
    seeds split says so, one with a caveat is marked."""
    bits = []
    for ph, p in m.phases.items():
        if p is None:
            continue
        word = said(p, m.less, m.more).split(" with BN")[0]
        if call(p) == "split":
            word += (f" on average but lower with BN in {'only ' if p.ratio > 1 else ''}"
                     f"{p.wins} of {p.seeds} seeds")
        if ph in m.notes:
            word += " on few probes"
        bits.append(word if ph == "end" else f"{ph} {word}")
    return f"{m.name} ({', '.join(bits)})"


def _verb(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _groups(measures: list[Measure]) -> dict[str, list[Measure]]:
    ms = [m for m in measures if m.measured()]
    return {v: [m for m in ms if verdict(m) == v] for v in VERDICTS}


def _counts_said(groups: dict, total: int) -> str:
    """'3 of 9 measures agree with Santurkar et al. (...), 3 disagree, ...'."""
    n = {v: len(g) for v, g in groups.items()}
    agree = "agrees" if n["agrees"] == 1 else "agree"
    rest = [_verb(n[v], one, many) + tail for v, one, many, tail in (
        ("disagrees", "disagrees", "disagree", ""),
        ("mixed", "agrees", "agree", " only in part"),
        ("disagrees in part", "disagrees", "disagree", " in part"),
        ("no difference", "shows", "show", " no consistent difference")) if n[v]]
    out = (f"{n['agrees']} of {plural(total, 'measure')} {agree} with {PAPER} (BN "
           f"smoother in every phase, in most seeds)")
    if not rest:
        return out
    return out + ", " + (", ".join(rest[:-1]) + " and " if len(rest) > 1 else "") + rest[-1]


def _lead(groups: dict) -> str:
    """``yes``: most measures agree, ``no``: most disagree; else
    ``leans yes`` or ``leans no`` (more agree than disagree, or fewer) or
    ``undecided`` (as many)."""
    a, d = len(groups["agrees"]), len(groups["disagrees"])
    total = sum(len(g) for g in groups.values())
    if 2 * a > total:
        return "yes"
    if 2 * d > total:
        return "no"
    return "leans yes" if a > d else "leans no" if d > a else "undecided"


def summary(measures: list[Measure]) -> str | None:
    """The verdict: how many measures say BN smoothed the landscape (a
    sentence), then one Markdown list item per side (for, in part, against,
    neither), naming its measures (None: nothing measured)."""
    groups = _groups(measures)
    total = sum(len(g) for g in groups.values())
    if not total:
        return None
    undecided = "Whether BatchNorm smoothed the landscape here is undecided"
    lead = {"yes": "BatchNorm smoothed the landscape here",
            "no": "BatchNorm did not smooth the landscape here",
            "leans yes": f"{undecided}, more measures agreeing than disagreeing",
            "leans no": f"{undecided}, more measures disagreeing than agreeing",
            "undecided": undecided}[_lead(groups)]
    out = f"{lead}: {_counts_said(groups, total)}."
    for v, label in (("agrees", "For"), ("mixed", "In part"),
                     ("disagrees in part", "Against in part"),
                     ("disagrees", "Against"), ("no difference", "Neither way")):
        if groups[v]:
            items = []
            for m in groups[v]:
                why = explaining_control(m)
                items.append(_short(m) + (f", BN smoother {why}" if why else ""))
            out += f"\n- **{label}:** " + "; ".join(items) + "."
    return out


def short_summary(measures: list[Measure]) -> str | None:
    """The verdict in two sentences (the report's summary table): the
    answer with the counts, and the measures for and against by their
    table labels (None: nothing measured)."""
    groups = _groups(measures)
    total = sum(len(g) for g in groups.values())
    if not total:
        return None
    lead = {"yes": "Yes", "no": "No", "leans yes": "Undecided, leaning yes",
            "leans no": "Undecided, leaning no", "undecided": "Undecided"}[_lead(groups)]
    out = f"{lead}: {_counts_said(groups, total)}."
    sides = [f"{side}: " + ", ".join(m.label or m.name for m in groups[v])
             for v, side in (("agrees", "for"), ("disagrees", "against"))
             if groups[v]]
    if sides:
        text = "; ".join(sides)
        out += f" {text[0].upper()}{text[1:]} (details in section 2)."
    return out


def counts(measures: list[Measure]) -> dict[str, int]:
    """How many measured measures reach each verdict."""
    out: dict[str, int] = {}
    for m in measures:
        if m.measured():
            out[verdict(m)] = out.get(verdict(m), 0) + 1
    return out

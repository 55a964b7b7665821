"""report.md: blocks between markers refreshed from results/, figure checks.

``refresh_report`` first draws every registered figure whose results are
stored (``@register_figure``: a function of the profile returning a
Figure, the same one a notebook cell shows with ``viz.figure``), then
refreshes every block. The report is prose with generated blocks::

    <!-- BEGIN table:architectures -->  ...  <!-- END table:architectures -->
    <!-- BEGIN figure:arch_curves.png | Learning curves -->  ...  <!-- END figure:arch_curves.png -->
    <!-- BEGIN value:best_test_acc -->93.1<!-- END value:best_test_acc -->

A table block is filled by the function registered under its name
(``@register_table`` of :mod:`cifar_lib.registry`, taking the profile); a
value block by the entry of that name in a study's ``values(profile)``
dict (``@register_values``; :func:`values` merges them). The study modules
register theirs, so the entry points that refresh a report import
``cifar_lib.studies`` first. A name ending
in ``@<profile>`` (``table:headline@cpu``) is rendered for that profile
rather than the report's (README.md uses this); a figure
block embeds ``figures/<name>`` when the profile has drawn it and says it
is pending otherwise.

A section block wraps the body of a report section and names the
experiments it reads::

    <!-- BEGIN section:batchnorm | batchnorm -->  ...  <!-- END section:batchnorm -->

When any run of those experiments is still to train, any value of its
body is missing, or every table and figure in it is empty, the section
collapses to one line naming how many of those
experiments' runs are pending and linking the same section of the cpu
report: a report never says "n/a".

An optional block wraps a part that only some profiles have results for
(runs that are read, never planned, such as the old baseline's)::

    <!-- BEGIN optional:old_baseline -->  ...  <!-- END optional:old_baseline -->

Where every table and figure in it is empty, it renders to nothing (its
markers stay, invisible), heading included, rather than to a placeholder.

The template is ``cifar_lib/report_template.md`` (edit the prose there);
the full profile writes the top-level report.md from it, other profiles
``<root>/report.md``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from cifar_lib import store
from cifar_lib.fsutil import atomic_write
from cifar_lib.profiles import REPO, Profile, get_profile
from cifar_lib.registry import (FIGURES, PLANNER, STUDIES_HINT, TABLES,  # noqa: F401
                                VALUE_SOURCES, register_table, register_values)

TEMPLATE = REPO / "cifar_lib" / "report_template.md"
BLOCK = re.compile(r"<!-- BEGIN (table|figure|value):(\S+?)(?: \| (.*?))? -->"
                   r"(.*?)<!-- END \1:\2 -->", re.S)
SECTION = re.compile(r"<!-- BEGIN section:(\S+?)(?: \| (.*?))? -->(.*?)"
                     r"<!-- END section:\1 -->", re.S)
OPTIONAL = re.compile(r"<!-- BEGIN optional:(\S+?) -->(.*?)<!-- END optional:\1 -->", re.S)
HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.M)
EMPTY_TABLE = "*No results yet for this table"
NOT_DRAWN = "*Figure `"
MISSING = "n/a"
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
CAPTION = re.compile(r"^\*Figure (\d+|[A-Z])\.(\d+)\.", re.M)
FIGURE_REF = re.compile(r"\bFigure (\d+|[A-Z])\.(\d+)\b")


def _decimals(values) -> int | None:
    """The one number of decimals a column of floats is shown with: the most
    its values need at 4 significant digits, where that is at most 2 (so
    33.0 stands beside 33.6 rather than '33'); None (each value at 4
    significant digits) for a column that needs more or holds a value too
    large or small for fixed decimals."""
    need = 0
    for v in values:
        if not isinstance(v, float) or v != v:
            continue
        text = f"{v:.4g}"
        if "e" in text:
            return None
        need = max(need, len(text.partition(".")[2]))
    return need if need <= 2 else None


def markdown_table(df) -> str:
    """A DataFrame as a GitHub Markdown table (cells as shown by str; the
    floats of a column with one number of decimals, :func:`_decimals`)."""
    def cell(v, d=None):
        if isinstance(v, float):
            return "" if v != v else f"{v:.{d}f}" if d is not None else f"{v:.4g}"
        # "62.0 ± 0.1" stays on one line when the column wraps
        return str(v).replace("|", "\\|").replace(" ± ", "\u00a0±\u00a0")
    digits = [_decimals(df[c].tolist()) for c in df.columns]
    head = "| " + " | ".join(cell(str(c)) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v, d) for v, d in zip(row, digits)) + " |"
            for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


@register_table("notebook_times")
def notebook_times(profile: Profile):
    """Wall time per notebook of the profile's main-job runs: the longest
    recorded (a first run, which trains) and the latest recorded. The main
    job records a time only when a notebook trained (or ran for the first
    time), so a re-run that finds its results changes neither column."""
    import pandas as pd
    from cifar_lib import store
    log = store.read(profile.results / "notebook_times.json")
    if not isinstance(log, dict):
        return None
    runs = [r for r in log.get("runs", []) if r.get("times")]
    if not runs:
        return None
    names = list(dict.fromkeys(k for r in runs for k in r["times"]))
    longest = {k: max(r["times"].get(k, 0) for r in runs) for k in names}
    latest = {k: next(r["times"][k] for r in reversed(runs) if k in r["times"])
              for k in names}
    rows = [{"notebook": f"{k}.ipynb", "longest (min)": f"{longest[k] / 60:.1f}",
             "latest (min)": f"{latest[k] / 60:.1f}"} for k in names]
    rows.append({"notebook": "all", "longest (min)": f"{sum(longest.values()) / 60:.1f}",
                 "latest (min)": f"{sum(latest.values()) / 60:.1f}"})
    device = {r["device"] for r in runs}
    return pd.DataFrame(rows).assign(device=", ".join(sorted(device)))


def values(profile: Profile | str | None = None) -> dict:
    """Every report value of ``profile``: the studies' ``values()`` merged.

    A name two studies both give is an error (it could not be found by grep
    in one place).
    """
    P = get_profile(profile)
    out: dict = {}
    for source, fn in VALUE_SOURCES.items():
        got = fn(P)
        twice = sorted(set(got) & set(out))
        if twice:
            raise ValueError(f"report values {twice} are given twice (again by {source})")
        out.update(got)
    return out


def render_block(kind: str, name: str, arg: str | None, profile: Profile,
                 out_dir: Path, cache: dict | None = None) -> str:
    """The Markdown a block holds for ``profile``, links relative to ``out_dir``.

    ``cache`` (profile name -> :func:`values`) lets a document with many
    value blocks compute each profile's values once.
    """
    if "@" in name:
        name, other = name.split("@", 1)
        profile = get_profile(other)
    if kind == "figure":
        path = profile.figures / name
        if path.is_file():
            return f"![{arg or name}]({Path(os.path.relpath(path, out_dir)).as_posix()})"
        return f"{NOT_DRAWN}{name}` is not drawn yet for the {profile.name} profile.*"
    if kind == "value":
        cache = {} if cache is None else cache
        if profile.name not in cache:
            cache[profile.name] = values(profile)
        known = cache[profile.name]
        if name not in known:
            raise KeyError(f"report block value:{name} is in no study's values() "
                           f"(known: {', '.join(sorted(known))}); {STUDIES_HINT}")
        return "n/a" if known[name] is None else str(known[name])
    if name not in TABLES:
        raise KeyError(f"report block table:{name} has no registered function "
                       f"(known: {', '.join(sorted(TABLES))}); {STUDIES_HINT}")
    out = TABLES[name](profile)
    if out is None or len(out) == 0:
        return f"*No results yet for this table in the {profile.name} profile.*"
    return markdown_table(out)


def _blocks(text: str, profile: Profile, out_dir: Path, cache: dict) -> str:
    """``text`` with every table, figure and value block re-rendered, and
    every optional block with no results emptied."""
    out, at = [], 0
    for m in OPTIONAL.finditer(text):
        out.append(_plain_blocks(text[at:m.start()], profile, out_dir, cache))
        body = _plain_blocks(m.group(2), profile, out_dir, cache)
        if section_pending(body):
            body = "\n"
        out.append(f"<!-- BEGIN optional:{m.group(1)} -->{body}<!-- END optional:{m.group(1)} -->")
        at = m.end()
    out.append(_plain_blocks(text[at:], profile, out_dir, cache))
    return "".join(out)


def _plain_blocks(text: str, profile: Profile, out_dir: Path, cache: dict) -> str:
    def sub(m):
        kind, name, arg = m.group(1), m.group(2), m.group(3)
        body = render_block(kind, name, arg, profile, out_dir, cache)
        head = f"<!-- BEGIN {kind}:{name}{' | ' + arg if arg else ''} -->"
        sep = "" if kind == "value" else "\n"
        return f"{head}{sep}{body}{sep}<!-- END {kind}:{name} -->"
    return BLOCK.sub(sub, text)


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading (lower case, punctuation
    dropped, spaces to hyphens)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def section_pending(body: str) -> bool:
    """Whether a rendered section body still lacks its results: a value
    block without a value, or tables and figures that are all empty."""
    blocks = BLOCK.findall(body)
    if any(kind == "value" and text == MISSING for kind, _, _, text in blocks):
        return True
    shown = [text.strip() for kind, _, _, text in blocks if kind != "value"]
    return bool(shown) and all(t.startswith((EMPTY_TABLE, NOT_DRAWN)) for t in shown)


def planned_runs(profile: Profile) -> list:
    """The profile's plan (:func:`cifar_lib.plan.plan`, registered by
    cifar_lib.plan, which the CLI and the notebooks load): which runs are
    done; none known without it."""
    fn = PLANNER.get("jobs")
    return fn(profile) if fn else []


def section_jobs(profile: Profile, experiments: list[str], cache: dict) -> tuple:
    """(the planned runs of a section's experiments, those not done yet);
    an entry ``experiment:label,label`` takes only those runs."""
    if "plan" not in cache:
        cache["plan"] = planned_runs(profile)
    key = ("section", tuple(experiments))
    if key not in cache:
        cache[key] = _section_jobs(cache["plan"], experiments)
    return cache[key]


def _section_jobs(plan: list, experiments: list[str]) -> tuple:
    want = dict((e.split(":") + [""])[:2] for e in experiments)

    def mine(j):
        return any(e in want and (not want[e] or j.label in want[e].split(","))
                   for e in [j.experiment, *j.also])
    jobs = [j for j in plan if mine(j)]
    return jobs, [j for j in jobs if not j.done]


def pending_line(profile: Profile, experiments: list[str], heading: str | None,
                 out_dir: Path, cache: dict) -> str:
    """The one line a pending section collapses to: how many runs of its
    experiments are still to train (and the plan's estimate) and, outside
    the cpu profile, a link to the same section of the cpu report."""
    jobs, todo = section_jobs(profile, experiments, cache)
    if todo:
        mins = sum(j.est_s for j in todo) / 60
        what = ("its one run has not trained yet" if len(jobs) == 1 else
                f"none of its {len(jobs)} runs has trained yet" if len(todo) == len(jobs) else
                f"{len(todo)} of its {len(jobs)} runs "
                f"{'has' if len(todo) == 1 else 'have'} not trained yet")
        # the command that trains them: the run groups they are in
        groups = " ".join(dict.fromkeys(j.group for j in todo))
        command = f"`python -m cifar_lib run --profile {profile.name} --groups {groups}`"
        what += (f" (about {mins:.1f} min on an H100 by the plan; {command} trains "
                 f"{'it' if len(todo) == 1 else 'them'})" if profile.name == "full"
                 else f" ({command} trains {'it' if len(todo) == 1 else 'them'})")
    else:
        what = "its runs are in results/ but its measurements have not been made yet"
    line = f"*Pending in the {profile.name} profile: {what}."
    if profile.name != "cpu" and heading:
        cpu = get_profile("cpu").report
        link = Path(os.path.relpath(cpu, out_dir)).as_posix()
        line += f" The [same section of the cpu-profile report]({link}#{anchor(heading)}) " \
                "shows it at reduced scale."
    return line + "*"


def refresh_text(text: str, profile: Profile, out_dir: Path) -> str:
    """``text`` with every block re-rendered and every section whose runs
    or results are missing collapsed to one line (:func:`pending_line`), so
    that no table or reading stands on part of its runs."""
    with store.pinned():  # the tables read results/ once between them
        return _refresh_text(text, profile, out_dir)


def _refresh_text(text: str, profile: Profile, out_dir: Path) -> str:
    cache: dict = {}
    out, at = [], 0
    for m in SECTION.finditer(text):
        out.append(_blocks(text[at:m.start()], profile, out_dir, cache))
        name, arg, body = m.group(1), m.group(2), m.group(3)
        rendered = _blocks(body, profile, out_dir, cache)
        if section_pending(rendered) or section_jobs(profile, (arg or name).split(), cache)[1]:
            heads = HEADING.findall(text[:m.start()])
            rendered = "\n" + pending_line(profile, (arg or name).split(), heads[-1] if heads
                                            else None, out_dir, cache) + "\n"
        out.append(f"<!-- BEGIN section:{name}{' | ' + arg if arg else ''} -->{rendered}"
                   f"<!-- END section:{name} -->")
        at = m.end()
    out.append(_blocks(text[at:], profile, out_dir, cache))
    return number_figures("".join(out))


def number_figures(text: str) -> str:
    """``text`` with its figures numbered by the captions it shows
    (``*Figure 1.16. ...`` at the start of a line), consecutively within each
    section number (or appendix letter), and every "Figure N.M" in it renumbered to match: the
    template numbers every figure of the whole study, and a section that
    collapsed to its pending line takes its captions with it, which would
    leave a gap (1.7, then 1.16). A reference to a figure whose caption is
    not shown keeps its number."""
    new, count = {}, {}
    for m in CAPTION.finditer(text):
        count[m.group(1)] = count.get(m.group(1), 0) + 1
        new[m.groups()] = f"{m.group(1)}.{count[m.group(1)]}"
    return FIGURE_REF.sub(lambda m: f"Figure {new.get(m.groups(), m.group(1) + '.' + m.group(2))}",
                          text)


def pending_figures(profile: Profile, template: Path = TEMPLATE) -> set[str]:
    """The figures the report shows only inside sections that collapse
    while some of their runs are pending: drawn now, they would stand on
    part of their runs (the DessiLBI figures from one run of eight)."""
    text, cache = Path(template).read_text(), {}
    held, shown, at = set(), set(), 0
    for m in SECTION.finditer(text):
        shown |= {b[1] for b in BLOCK.findall(text[at:m.start()]) if b[0] == "figure"}
        names = {b[1] for b in BLOCK.findall(m.group(3)) if b[0] == "figure"}
        pending = section_jobs(profile, (m.group(2) or m.group(1)).split(), cache)[1]
        (held if pending else shown).update(names)
        at = m.end()
    shown |= {b[1] for b in BLOCK.findall(text[at:]) if b[0] == "figure"}
    return held - shown


def draw_figures(profile: Profile, log=print) -> dict[str, str]:
    """Draw every registered figure from the profile's stored results into
    its figures/ folder (unchanged bytes are not rewritten); returns what
    happened to each: ``drawn``, ``no results yet``, or ``section
    pending`` for one the report shows only in a section whose runs are
    not all done (:func:`pending_figures`; not drawn)."""
    from cifar_lib import viz
    import matplotlib.pyplot as plt
    held, out = pending_figures(profile), {}
    for name in sorted(FIGURES):
        if name in held:
            out[name] = "section pending"
            continue
        path = viz.figure(name, profile, show=False, quiet=True)
        out[name] = "drawn" if path else "no results yet"
    plt.close("all")
    missing = [n for n, v in out.items() if v == "no results yet"]
    if log:
        log(f"figures: {sum(v == 'drawn' for v in out.values())} of {len(out)} drawn in "
            f"{profile.figures}" + (f"; no results yet for {', '.join(missing)}"
                                    if missing else "")
            + (f"; {len(held & set(out))} wait for their section's runs" if held else ""))
    return out


def refresh_report(profile=None, template: Path = TEMPLATE, figures: bool = True) -> Path:
    """Draw the profile's figures (``figures``) and write its report from
    the template; return the report's path."""
    P = get_profile(profile)
    if figures:
        draw_figures(P)
    out = P.report
    text = refresh_text(Path(template).read_text(), P, out.parent)
    return atomic_write(out, lambda tmp: tmp.write_text(text))


def refresh_readme(path: Path = REPO / "README.md") -> Path:
    """Refresh README.md's blocks (each names its profile with ``@``)."""
    text = refresh_text(path.read_text(), get_profile("full"), path.parent)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def check_report(path: Path, profile=None, template: Path = TEMPLATE) -> list[str]:
    """Problems in a written report: missing images, stale blocks (the
    report differs from the template rendered for the profile now)."""
    P = get_profile(profile)
    path = Path(path)
    text = path.read_text()
    problems = [f"image {link} does not exist"
                for link in IMAGE.findall(text)
                if not link.startswith("http") and not (path.parent / link).is_file()]
    want = refresh_text(Path(template).read_text(), P, path.parent)
    if want != text:
        have = {(m.group(1), m.group(2)): m.group(0) for m in BLOCK.finditer(text)}
        have.update({("section", m.group(1)): m.group(0) for m in SECTION.finditer(text)})
        fresh = {(m.group(1), m.group(2)): m.group(0) for m in BLOCK.finditer(want)}
        fresh.update({("section", m.group(1)): m.group(0) for m in SECTION.finditer(want)})
        stale = [f"{k}:{n}" for (k, n), v in fresh.items() if have.get((k, n)) != v]
        hint = f"; run `python -m cifar_lib report --profile {P.name}`"
        problems += ([f"block {b} is stale{hint}" for b in stale] or
                     [f"{path} differs from {Path(template).name} rendered now{hint}"])
    return problems

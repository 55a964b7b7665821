"""Beside the earlier course reports: their quoted numbers next to our runs.

``cifar_lib/reference/course_reports.json`` keeps what course reports A-E
reported (as quoted, original CIFAR-10, their recipes and epochs, one run
each, not verified by us) and, per setting, the run of ours that matches it:
an experiment and label (or, for a row whose label carries the profile's sizes, its
schedule), or a model and options found in any experiment of
the profile. The report table ``course_reports`` puts both side by side,
ours read from results/ (mean ± std over seeds); a setting we have not run
in the profile says so. :func:`report_b_recipe` is course report B's recipe
as a :class:`TrainConfig`.

Unlike the other studies this one trains nothing: it has no ``Sizes`` and
no ``configs`` (no named experiment of its own). It reads the other
studies' runs through :func:`cifar_lib.experiments.records`,
and gives the table ``course_reports`` and :func:`values`.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

from cifar_lib.augment import describe
from cifar_lib.engine import TrainConfig
from cifar_lib.experiments import records
from cifar_lib.optim import optimizer_name
from cifar_lib.profiles import Profile
from cifar_lib.registry import register_table, register_values
from cifar_lib.studies import batchnorm, classification, dessilbi

DATA = Path(__file__).resolve().parent.parent / "reference" / "course_reports.json"
THEIR_DATA = "original CIFAR-10"
# Experiments that also run an experiment's labels (the opt-in extended set
# of the architecture comparison: heavy models, longer runs, a third seed).
ALSO = {"architectures": ("architectures_extended",)}
METRICS = ("test acc", "test error", "best val acc")
# Experiments whose rows take a rate chosen on validation from a grid.
TUNED = ("architectures", "ablation_optimizers")


@functools.lru_cache(maxsize=1)
def reference() -> dict:
    """The quoted reports and settings (checked: metric, report, key)."""
    ref = json.loads(DATA.read_text())
    for s in ref["settings"]:
        ours = s["ours"]
        if s["metric"] not in METRICS or s["report"] not in ref["reports"] or \
                not ({"experiment", "label"} <= set(ours) or
                     {"experiment", "scheduler"} <= set(ours) or "model" in ours):
            raise ValueError(f"bad course-report setting in {DATA.name}: {s}")
    return ref


def settings() -> list[dict]:
    """Each setting with the report's epochs and recipe filled in."""
    ref = reference()
    out = []
    for s in ref["settings"]:
        rep = ref["reports"][s["report"]]
        out.append({"epochs": rep["epochs"], "recipe": rep["recipe"], **s})
    return out


def report_b_recipe(model: str, epochs: int = 70, batch_size: int = 256,
                    **over) -> TrainConfig:
    """Course report B's recipe: AdamW, then SGD (momentum 0.9) for the last
    20% of steps; ExponentialLR 0.96 per epoch from 1e-3; label smoothing
    0.1; weight decay 1e-3 on every parameter; crop, flip and erasing.

    The report quotes one learning rate for both phases, so SGD continues
    at the scheduled rate (``sgd_lr_scale`` 1, plain momentum).
    """
    cfg = dict(model=model, optimizer="adamw_sgd", lr=1e-3, momentum=0.9,
               nesterov=False, weight_decay=1e-3, norm_bias_decay=True,
               optim_kw={"switch_at": 0.8, "sgd_lr_scale": 1.0},
               scheduler="exponential", sched_kw={"gamma": 0.96}, warmup_epochs=0.0,
               label_smoothing=0.1, epochs=epochs, batch_size=batch_size,
               augment="crop_flip_erase")
    cfg.update(over)
    return TrainConfig(**cfg)


# ---------------------------------------------------------------- our runs


class _Runs:
    """Our runs of one profile, looked up by a setting's key (cached)."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self._configs: dict[str, list] = {}
        self._records: dict[str, list] = {}
        self.source: dict[str, str] = {}   # run -> the experiment of the latest find

    def configs(self, name: str) -> list:
        if name not in self._configs:
            exp = _registered().get(name)
            self._configs[name] = ([(r.label, r.cfg) for r in exp.runs(self.profile)]
                                   if exp else [])
        return self._configs[name]

    def records(self, name: str) -> list[dict]:
        """The experiment's records; where a rate was chosen on validation
        (a grid), the runs at the chosen rate only."""
        if name not in self._records:
            from cifar_lib.studies.classification.values import at_chosen, with_every_seed
            recs = (with_every_seed(records(_registered()[name], self.profile), self.profile)
                    if self.configs(name) else [])
            self._records[name] = at_chosen(recs)[0] if name in TUNED else recs
        return self._records[name]

    def candidates(self, key: dict) -> dict[str, set[str]]:
        """Experiment -> labels of the profile's spec that run the setting."""
        if "label" in key:
            names = [key["experiment"], *ALSO.get(key["experiment"], ())]
            match = lambda lbl, c: lbl == key["label"]  # noqa: E731
        elif "scheduler" in key:  # a row whose label carries the profile's sizes
            names = [key["experiment"]]
            match = lambda lbl, c: c.scheduler == key["scheduler"]  # noqa: E731
        else:
            names = [key["experiment"]] if "experiment" in key else sorted(_registered())
            # the model with those options at any width (the cpu profile
            # trains some models narrower; the params column shows it)
            match = lambda lbl, c: (c.model == key["model"]  # noqa: E731
                                    and {k: v for k, v in c.model_kw.items() if k != "width"}
                                    == key.get("model_kw", {}))
        found = {n: {lbl for lbl, c in self.configs(n) if match(lbl, c)} for n in names}
        return {n: labels for n, labels in found.items() if labels}

    def find(self, key: dict) -> tuple[list[dict], list[str]]:
        """(records of the setting, experiments whose spec has it).

        Runs of the setting in several experiments (e.g. a third seed in the
        extended set) are pooled by recipe; the longest-trained recipe is
        the one shown, over all its seeds.
        """
        where = self.candidates(key)
        runs: dict[str, dict] = {}
        for n, labels in where.items():     # the main set before the extended one
            for r in self.records(n):
                if r["label"] in labels and r["run"] not in runs:
                    runs[r["run"]] = r
                    # this setting's experiment (a shared run, e.g. the ablation
                    # baseline, is named by the setting that asked for it)
                    self.source[r["run"]] = n
        groups: dict[str, list[dict]] = {}
        for r in runs.values():
            recipe = {k: v for k, v in r["config"].items() if k != "seed"}
            groups.setdefault(json.dumps(recipe, sort_keys=True), []).append(r)
        best = max(groups.values(), default=[],
                   key=lambda g: (g[0]["config"]["epochs"], len(g)))
        return sorted(best, key=lambda r: r["config"]["seed"]), list(where)


def _opt_in() -> tuple[str, ...]:
    """Experiments a plain profile run leaves out (the extended set)."""
    return tuple(name for name, e in _registered().items() if e.extended)


def _registered() -> dict:
    """The other studies' experiments by name."""
    return {e.name: e for study in (classification, batchnorm, dessilbi)
            for e in study.EXPERIMENTS}


def _pct(v: float) -> str:
    return f"{v:g}"


def theirs_cell(s: dict) -> str:
    """The quoted number, as accuracy (%), with the report's own metric."""
    if s["metric"] == "test error":
        return f"{100 - s['value']:.2f} (error {s['value']:.2f})"
    if s["metric"] == "best val acc":
        return f"{_pct(s['value'])} (best val acc)"
    return _pct(s["value"])


# A model option as the recipes say it (others as key=value).
MODEL_KW_WORDS = {"act": {"relu": "ReLU", "leaky_relu": "LeakyReLU 0.1", "elu": "ELU",
                          "gelu": "GELU", "silu": "SiLU"},
                  "stem": {"imagenet": "ImageNet stem", "cifar": "CIFAR stem"}}


def recipe_parts(cfg: dict) -> dict[str, str]:
    """One of our configs in words, by ingredient (model, optimizer, schedule,
    weight decay, loss, label smoothing, augmentation, normalisation, batch);
    an ingredient at its plain default (none, cross-entropy, normalised) is
    left out."""
    from cifar_lib.models import display_name
    mkw = dict(cfg["model_kw"])
    width = mkw.pop("width", 1.0)
    mkw.pop("whiten", None)          # FastNet's whitening variant: a detail of the network
    kw = ", ".join(MODEL_KW_WORDS.get(k, {}).get(v, f"{k}={v}") for k, v in mkw.items())
    aug = describe(cfg["augment"])
    parts = {"model": display_name(cfg["model"]) + (f" x{width:g}" if width != 1 else "")
             + (f" ({kw})" if kw else ""),
             "optimizer": f"{optimizer_name(cfg['optimizer'])} lr {cfg['lr']:g}",
             "schedule": cfg["scheduler"],
             "wd": f"wd {cfg['weight_decay']:g}" if cfg["weight_decay"] else None,
             "loss": cfg["loss"] if cfg["loss"] != "cross_entropy" else None,
             "smoothing": f"label smoothing {cfg['label_smoothing']:g}"
             if cfg["label_smoothing"] else None,
             "augment": aug if aug != "none" else "no augmentation",
             "normalize": None if cfg["normalize"] else "no normalisation",
             "batch": f"batch {cfg['batch_size']}"}
    return {k: v for k, v in parts.items() if v is not None}


def recipe_words(cfg: dict) -> str:
    """A short description of one of our configs (model, optimiser, schedule)."""
    return ", ".join(recipe_parts(cfg).values())


# The ingredients of :func:`recipe_parts`, in the order they are said, and
# how one left out reads where another recipe has it.
INGREDIENTS = ("model", "optimizer", "schedule", "wd", "loss", "smoothing", "augment",
               "normalize", "batch")
INGREDIENT_NAMES = {"model": "network", "optimizer": "optimizer",
                    "schedule": "schedule", "wd": "weight decay", "loss": "loss",
                    "smoothing": "label smoothing", "augment": "augmentation",
                    "normalize": "normalisation", "batch": "batch size"}
DEFAULT_WORDS = {"wd": "no weight decay", "loss": "cross-entropy",
                 "smoothing": "no label smoothing", "normalize": "normalised"}


def common_recipe(parts: list[dict]) -> dict[str, str | None]:
    """The ingredients more than half of the recipes share: their words, or
    None where that majority leaves the ingredient at its default; an
    ingredient without such a majority is not in the result (each row
    says its own)."""
    out = {}
    for key in INGREDIENTS:
        said = [p.get(key) for p in parts]
        best = max(dict.fromkeys(said), key=said.count)
        if 2 * said.count(best) > len(said):
            out[key] = best
    return out


def recipe_change(parts: dict, common: dict, said: str = "") -> str:
    """A recipe's own words where it differs from the ``common`` one or
    the common one leaves an ingredient to each row ('' if nothing),
    without words ``said`` already holds (a row's label)."""
    words = [parts.get(k) or DEFAULT_WORDS[k] for k in INGREDIENTS
             if k not in common or parts.get(k) != common[k]]
    def bare(text):  # 'Adam lr=0.01' says 'Adam lr 0.01'
        return text.lower().replace("=", "").replace(" ", "")
    return ", ".join(w for w in words if bare(w) not in bare(said))


def common_words(common: dict) -> str:
    """The common recipe as the text says it, and what each row gives."""
    said = ", ".join(v for k, v in common.items() if v)
    own = [INGREDIENT_NAMES[k] for k in INGREDIENTS if k not in common]
    return (said + "; " if said else "") + (
        f"each row gives its {', '.join(own)} and any other change" if own
        else "each row gives any change")


def run_words(experiment: str, label: str) -> str:
    """One of our runs as the report names it: the comparison (and report
    section) and the row, e.g. 'optimizers (1.3): Adam', 'architectures
    (1.2): CNN 64-128-256'."""
    from cifar_lib.models import MODELS, display_name
    from cifar_lib.studies.classification.runs import factor_name
    exp = _registered().get(experiment)
    name = (factor_name(experiment.removeprefix("ablation_"))
            if experiment.startswith("ablation_") else
            {"batchnorm": "BatchNorm",
             "architectures_extended": "architectures, opt-in extended set"}
            .get(experiment, experiment.replace("_", " ")))
    # the report shows no run of the opt-in extended set: no section to name
    where = f" ({exp.section})" if exp is not None and not exp.extended else ""
    return f"{name}{where}: {display_name(label) if label in MODELS else label}"


# ---------------------------------------------------------------- comparison


def comparison(profile: Profile) -> list[dict]:
    """Per setting: the quoted number (as accuracy, %) and ours from the
    profile's runs (mean and std over seeds, %; None when not run)."""
    from cifar_lib.experiments import results_frame, summarize
    runs, out = _Runs(profile), []
    for s in settings():
        recs, planned = runs.find(s["ours"])
        frame = results_frame(recs) if recs else None  # statuses judged by today's rule
        status = [] if frame is None else list(frame["status"])
        theirs = 100 - s["value"] if s["metric"] == "test error" else s["value"]
        row = {**s, "theirs_acc": theirs, "planned_in": planned, "runs": status.count("ok"),
               "ours_mean": None, "ours_std": None, "our_run": _key_words(s["ours"]),
               "not_learned": sorted(x for x in status if x != "ok")}
        if planned:  # not run yet: name the run the plan has
            labels = sorted(runs.candidates(s["ours"])[planned[0]])
            row["our_run"] = run_words(planned[0], labels[0])
        if row["runs"]:  # summarize's means leave out the runs that did not learn
            metric = "best_val_acc" if s["metric"] == "best val acc" else "test_acc"
            g = summarize(frame, by="label", metrics=(metric, "train_time"))
            std = g[f"{metric}_std"][0]
            cfg = recs[0]["config"]
            row.update(ours_mean=100 * float(g[f"{metric}_mean"][0]),
                       ours_std=None if std != std else 100 * float(std),
                       train_time=float(g["train_time_mean"][0]),
                       our_epochs=cfg["epochs"], our_recipe=recipe_words(cfg),
                       our_params=recs[0]["metrics"].get("params"),
                       our_run=run_words(runs.source.get(recs[0]["run"], recs[0]["experiment"]),
                                         recs[0]["label"]),
                       our_parts=recipe_parts(cfg),
                       source=", ".join(sorted({r["data"]["source"] for r in recs})),
                       train_images=recs[0]["data"].get("train"),
                       width=float((cfg.get("model_kw") or {}).get("width", 1.0)))
        out.append(row)
    return out


def _not_learned(row: dict) -> str:
    """'1 diverged', '2 failed', ...: our runs of a row left out of its mean."""
    bad = row.get("not_learned") or []
    return ", ".join(f"{bad.count(s)} {s}" for s in dict.fromkeys(bad))


def _ours_cell(row: dict, profile: Profile) -> str:
    bad = _not_learned(row)
    if row["ours_mean"] is None and bad:
        return f"no run learned ({bad})"
    if bad:
        return f"{_ours_value(row, profile)} ({bad}, left out)"
    return _ours_value(row, profile)


def _ours_value(row: dict, profile: Profile) -> str:
    if row["ours_mean"] is None:
        if not row["planned_in"]:
            return f"not run (not in the {profile.name} profile)"
        if all(n in _opt_in() for n in row["planned_in"]):
            return "not run (opt-in: the extended set)"
        return "not run"
    if row["ours_std"] is None:
        return f"{row['ours_mean']:.1f}"
    # one more decimal where the spread would print as 0.0 (as section 1's tables)
    d = 2 if round(row["ours_std"], 1) == 0 else 1
    return f"{row['ours_mean']:.{d}f} ± {row['ours_std']:.{d}f}"


def _params_cell(row: dict) -> str:
    fmt = lambda p: "-" if not p else f"{p / 1e6:.3g}"  # noqa: E731
    return f"{fmt(row.get('params'))} / {fmt(row.get('our_params'))}"


@register_table("course_reports")
def course_reports_table(profile: Profile):
    """Theirs (quoted) beside ours (from results/) for every shared setting."""
    import pandas as pd
    rows, comp = [], comparison(profile)
    for r in comp:
        ran = r["ours_mean"] is not None
        rows.append({
            "reported by": f"course report {r['report']}", "setting": r["setting"],
            "their recipe": r["recipe"], "theirs (%)": theirs_cell(r),
            "ours (%)": _ours_cell(r, profile),
            "epochs theirs / ours": f"{r['epochs'] or 'not stated'} / "
                                    f"{r['our_epochs'] if ran else '-'}",
            "params (M) theirs / ours": _params_cell(r),
            "our run": r["our_run"],
            "our recipe": r["our_recipe"] if ran else "-",
            "seeds": r["runs"],
            "our train time (s)": f"{r['train_time']:.0f}" if ran else "-",
            "data theirs / ours": f"{THEIR_DATA} / {r['source'] if ran else '-'}"})
    df = pd.DataFrame(rows)
    ours = {r["source"] for r in comp if r["ours_mean"] is not None}
    # one data set on each side (the text names both): no column repeating it
    return df.drop(columns="data theirs / ours") if len(ours) <= 1 else df


def _by_report(profile: Profile) -> dict[str, list[dict]]:
    """:func:`comparison`'s rows per course report, A to E."""
    out: dict = {}
    for r in comparison(profile):
        out.setdefault(r["report"], []).append(r)
    return dict(sorted(out.items()))


def report_recipes(rows: list[dict]) -> tuple[str, dict | None]:
    """(the recipe most of a course report's rows state, the recipe most of
    our runs of its rows share, per ingredient; None if none ran)."""
    said = [r["recipe"] for r in rows]
    theirs = max(dict.fromkeys(said), key=said.count)
    ran = [r["our_parts"] for r in rows if r["ours_mean"] is not None]
    return theirs, common_recipe(ran) if ran else None


def report_table(rows: list[dict], profile: Profile):
    """One course report's settings, theirs beside ours, each recipe said
    once above the table (:func:`report_recipes`): a row names only how
    its recipe differs (theirs in the setting cell, ours in its column)."""
    import pandas as pd
    theirs, ours = report_recipes(rows)
    out = []
    for r in rows:
        ran = r["ours_mean"] is not None
        out.append({
            "setting": r["setting"] + _their_change(r["recipe"], theirs),
            "theirs (%)": theirs_cell(r), "ours (%)": _ours_cell(r, profile),
            "epochs theirs / ours": f"{r['epochs'] or 'not stated'} / "
                                    f"{r['our_epochs'] if ran else '-'}",
            "params (M) theirs / ours": _params_cell(r),
            "our run; its recipe where it differs": _run_cell(r, ours),
            "seeds": r["runs"],
            "our train time (s)": f"{r['train_time']:.0f}" if ran else "-",
            "our data": r["source"] if ran else "-"})
    df = pd.DataFrame(out)
    # one data set (the text names it): no column repeating it
    return df.drop(columns="our data") if df["our data"].nunique() <= 1 + ("-" in
                                                                         set(df["our data"])) \
        else df


def _run_cell(row: dict, common: dict | None) -> str:
    """Our run's name and, once it ran, how its recipe differs from the
    report's common one (words its name already says left out)."""
    change = (recipe_change(row["our_parts"], common, row["our_run"])
              if row["ours_mean"] is not None else "")
    return row["our_run"] + (f"; {change}" if change else "")


def _their_change(recipe: str, common: str) -> str:
    """How a row's stated recipe differs from the report's common one, as
    the setting cell appends it ('' if it does not)."""
    if recipe == common:
        return ""
    if recipe.startswith(common):
        return f" (their recipe adds {recipe[len(common):].lstrip(', ')})"
    theirs, usual = recipe.split("; "), common.split("; ")
    changed = [(t, u) for t, u in zip(theirs, usual) if t != u]
    if len(theirs) == len(usual) and len(changed) < len(theirs):
        # one part differs (the network, say): that part, not the whole recipe again
        return (" (their recipe: " + "; ".join(f"{t} in place of {u}" for t, u in changed)
                + ", the rest as above)")
    return f" (their recipe: {recipe})"


# Per course report: its appendix table and the value stating both recipes
# above it (spelled out: report.md's names are found in the code).
REPORT_BLOCKS = {"A": ("course_reports_a", "course_report_a_recipes"),
                 "B": ("course_reports_b", "course_report_b_recipes"),
                 "C": ("course_reports_c", "course_report_c_recipes"),
                 "D": ("course_reports_d", "course_report_d_recipes"),
                 "E": ("course_reports_e", "course_report_e_recipes")}


def _register_report_table(report: str):
    @register_table(REPORT_BLOCKS[report][0])
    def table(profile: Profile):
        rows = _by_report(profile).get(report)
        return report_table(rows, profile) if rows else None
    table.__doc__ = f"Course report {report}'s settings beside ours (report appendix)."


if set(REPORT_BLOCKS) != set(reference()["reports"]):
    raise ValueError(f"{DATA.name} quotes reports {sorted(reference()['reports'])}; "
                     f"the appendix has blocks for {sorted(REPORT_BLOCKS)}")
for _report in REPORT_BLOCKS:
    _register_report_table(_report)


def _span(values) -> str:
    """A range of numbers as text: one value, or low to high."""
    lo, hi = min(values), max(values)
    return f"{lo:.1f}" if abs(hi - lo) < 0.05 else f"{lo:.1f} to {hi:.1f}"


@register_table("course_reports_condensed")
def course_reports_condensed(profile: Profile):
    """One row per earlier course report: how many of its settings we ran,
    the range of its numbers and ours over those settings, and the median
    gap (ours minus theirs); the appendix lists every setting."""
    import statistics
    import pandas as pd
    rows = []
    by_report: dict = {}
    for r in comparison(profile):
        by_report.setdefault(r["report"], []).append(r)
    for report, rs in sorted(by_report.items()):
        ran = [r for r in rs if r["ours_mean"] is not None]
        said = [r for r in (ran or rs) if r["epochs"]]
        eps = sorted({r["epochs"] for r in said})
        rows.append({
            "course report": report,
            "settings we ran": f"{len(ran)} of {len(rs)}",
            "theirs (%)": _span([r["theirs_acc"] for r in ran]) if ran else "-",
            "ours (%)": _span([r["ours_mean"] for r in ran]) if ran else "-",
            "ours - theirs, median (points)":
                f"{statistics.median(r['ours_mean'] - r['theirs_acc'] for r in ran):+.1f}"
                if ran else "-",
            "epochs theirs / ours": (f"{_span(eps).replace('.0', '')}" if eps else "not stated")
            + (f" ({len(said)} of {len(ran or rs)} settings; the rest not stated)"
               if eps and len(said) < len(ran or rs) else "")
            + " / " + (_span([r["our_epochs"] for r in ran]).replace(".0", "") if ran else "-")})
    return pd.DataFrame(rows)


def _key_words(key: dict) -> str:
    from cifar_lib.models import display_name
    if "label" in key:
        return run_words(key["experiment"], key["label"])
    if "scheduler" in key:
        return run_words(key["experiment"], f"the {key['scheduler']} schedule")
    kw = ", ".join(f"{k}={v}" for k, v in key.get("model_kw", {}).items())
    return f"{display_name(key['model'])}{f' ({kw})' if kw else ''} in any comparison"


def _ran(profile: Profile) -> list[dict]:
    return [r for r in comparison(profile) if r["ours_mean"] is not None]


@register_values
def values(profile: Profile) -> dict:
    """The report values of the comparison, by name (None where no setting
    of ours ran in the profile).

    ``course_reports_matched``: how many shared settings have a run of ours;
    ``course_reports_below``: settings where our mean is below the quoted
    number, ``course_reports_below_fewer_epochs`` those of them we trained
    fewer epochs; ``course_reports_our_epochs`` / ``_their_epochs``: the
    epochs of our matched runs (one number or a range) / stated by the
    reports; ``course_reports_our_data``: the data source(s) of our runs;
    ``course_reports_our_images``: their training images (and narrower
    networks, where any).
    """
    ran = _ran(profile)
    below = [r for r in ran if r["ours_mean"] < r["theirs_acc"]]
    ours = sorted({r["our_epochs"] for r in ran})
    theirs = sorted({s["epochs"] for s in settings() if s["epochs"]})
    return {
        "course_reports_matched": f"{len(ran)} of {len(settings())}",
        "course_reports_below": str(len(below)) if ran else None,
        "course_reports_below_fewer_epochs": str(sum(
            bool(r["epochs"]) and r["our_epochs"] < r["epochs"] for r in below))
        if ran else None,
        "course_reports_our_epochs": None if not ours else str(ours[0])
        if len(ours) == 1 else f"{ours[0]} to {ours[-1]}",
        "course_reports_their_epochs": f"{theirs[0]} to {theirs[-1]}",
        "course_reports_our_data": ", ".join(sorted({r["source"] for r in ran})) or None,
        "course_reports_our_images": _images_words(ran),
        **_recipe_values(profile),
    }


def _recipe_values(profile: Profile) -> dict:
    """Per course report X, ``course_report_x_recipes``: its stated recipe
    and the one most of our matching runs share, said once above its
    appendix table."""
    out = {}
    for report, rows in _by_report(profile).items():
        theirs, ours = report_recipes(rows)
        out[REPORT_BLOCKS[report][1]] = (
            f"Their recipe: {theirs}. Ours: "
            + (f"{common_words(ours)}." if ours else "no run of ours in this profile yet."))
    return out


def _images_words(ran: list[dict]) -> str | None:
    """'with 5,000 training images against its 50,000, and some networks at a
    quarter of their width' (what else differs from the reports' setting)."""
    n = sorted({r["train_images"] for r in ran if r.get("train_images")})
    if not n:
        return None
    text = (f"with {n[0]:,}" if len(n) == 1 else f"with {n[0]:,} to {n[-1]:,}")
    text += " training images against its 50,000"
    widths = sorted({r["width"] for r in ran if r.get("width", 1.0) < 1})
    if widths:
        text += (", and some of our networks at "
                 + " or ".join(f"{w:g}" for w in widths) + " of their published width")
    return text

"""Section 1 of the report: data, architectures, ablations, and what the
trained networks learned (notebooks 00-03).

The study's parts, each in its module:

* ``runs``: :class:`Sizes` per profile, the recipes and the experiments
  (:data:`ARCHITECTURES`, :data:`ABLATION` by factor, :data:`BASELINE`,
  :data:`ARCHITECTURES_EXTENDED`; :data:`EXPERIMENTS` lists them);
* ``measures``: the data summary, model costs, and notebook 03's
  :func:`measure` (a measurement of ``architectures``: figures and
  calibration of the trained networks);
* ``plots``: notebook 03's drawings;
* ``values``: the report's tables, figures and :func:`values`.

Notebooks import the package (``from cifar_lib.studies import
classification as study``), train with ``cl.run_experiment(study.experiment(
name), P, split)`` and draw with ``viz.figure(name, P)``.
"""
from cifar_lib.experiments import find_experiment
from cifar_lib.studies.classification.runs import (  # noqa: F401
    ABLATION, ABLATION_EXPERIMENTS, ABLATIONS, ARCH_CORE, ARCHITECTURES,
    ARCHITECTURES_EXTENDED, ATTENTION_MODEL, BASELINE, FINAL_MODEL, LONG_BUDGET, VIS_MODELS,
    OLD_ABLATION, Sizes, ablation_recipe, arch_models, arch_recipe, choose, fast_recipe, final_recipe,
    first_seed, sizes)
from cifar_lib.studies.classification.measures import (  # noqa: F401
    VIS_FIGURES, measure, save_arch_costs, save_data_summary, vis_measured)
from cifar_lib.studies.classification.plots import show  # noqa: F401
from cifar_lib.studies.classification.values import (  # noqa: F401
    arch_grid_table, arch_summary, arch_table, calibration_table, data_stats_table, data_table,
    final_model_table, headline_table, long_budget_table, lr_grid_table, report_columns,
    summary_table, tuned_table, values)

# The baseline's runs are the ablations' baselines: listed after them, so
# that the plan names each of those runs by its ablation.
EXPERIMENTS = (ARCHITECTURES, *ABLATION.values(), BASELINE, LONG_BUDGET, FINAL_MODEL,
               ARCHITECTURES_EXTENDED, *OLD_ABLATION.values())


def experiment(name: str):
    """The section's experiment called ``name`` (e.g. ``ablation_losses``).

    Used by notebooks 01, 02 (report sections 1.2, 1.3)."""
    return find_experiment(EXPERIMENTS, name)

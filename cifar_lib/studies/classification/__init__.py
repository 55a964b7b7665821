"""Section 1 of the report: data, architectures, ablations, and what the
trained networks learned (notebooks 00-03).

The study's parts, each in its module:

* ``runs``: :class:`Sizes` per profile, the recipes, :func:`configs` (every
  named experiment: ``baseline``, ``architectures``,
  ``architectures_extended``, ``ablation_*``) and :func:`records`;
* ``measures``: the data summary, model costs, and notebook 03's
  :func:`measure` (figures and calibration of the trained networks);
* ``plots``: notebook 03's drawings;
* ``values``: the report tables and :func:`values`.

Notebooks import the package (``from cifar_lib.studies import
classification as study``) and train through ``cl.run_experiment``.
"""
from cifar_lib.studies.classification.runs import (  # noqa: F401
    ABLATION_EXPERIMENTS, ABLATIONS, ARCH_CORE, ARCH_CPU, ARCH_FULL, ARCH_SMOKE,
    ATTENTION_MODEL, EXTENDED, EXTENDED_MODELS, EXTENDED_SEEDS, VIS_MODELS, Sizes,
    ablations, arch_models, arch_recipe, architectures, architectures_extended,
    configs, fast_recipe, first_seed, records, sizes, stem_variants)
from cifar_lib.studies.classification.measures import (  # noqa: F401
    VIS_FIGURES, VIS_STAMP, data_summary, measure, save_arch_costs, save_calibration,
    save_data_summary, test_loader, vis_models, vis_stored)
from cifar_lib.studies.classification.plots import (  # noqa: F401
    draw_calibration, draw_cams, draw_embedding, draw_errors, draw_inside, show)
from cifar_lib.studies.classification.values import (  # noqa: F401
    arch_summary, arch_table, calibration_table, data_stats_table, data_table,
    headline_table, lr_grid_table, summary_table, values)

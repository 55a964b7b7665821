"""DessiLBI study (report section 3, notebook 05_dessilbi.ipynb).

The same VGG-16-BN (reduced width on CPU) trains with SLBI (DessiLBI) and
with SGD, same recipe and seeds. The SLBI run records Gamma's support per
layer each epoch (the regularisation path) and the epoch each conv filter
entered it. After training, :func:`measure` prunes both networks' filters
(SLBI's in path order; both by BatchNorm |scale| and by filter norm), cuts
the SLBI network to Gamma's support layer by layer, and tries BN-statistics
re-estimation and a short fine-tune after pruning; it stores everything the
tables and figures need as a measurement of the experiment, so the
notebook renders without the weights.

The study's parts, each in its module:

* ``runs``: :class:`Sizes` per profile (:func:`sizes`), the recipe, the
  experiments :data:`DESSILBI` and :data:`SWEEP` (SLBI at more thresholds
  lambda), :func:`finished` and :func:`sweep_finished` (their finished
  runs on disk), grouped per optimizer by :func:`by_label`;
* ``measures``: :func:`measure` / :func:`measured`, :func:`measure_sweep` /
  :func:`sweep_measured`, and the pruning helpers they use; accuracy kept
  is above chance (:func:`kept`);
* ``plots``: the figures (learning curves, path, pruning, filters, sweep);
* ``values``: the report tables, figures, their one-sentence readings and
  :func:`values`.

The notebook imports the package (``from cifar_lib.studies import dessilbi
as study``), trains with ``cl.run_experiment(study.DESSILBI, P, split)``
(and ``study.SWEEP``) and draws with ``viz.figure(name, P)``.
"""
from cifar_lib.studies.dessilbi.runs import (  # noqa: F401
    DESSILBI, EXPERIMENT, FULL_EPOCHS, MEASURE_VERSION, METHODS, SWEEP, SWEEP_VERSION,
    Sizes, by_label, finished, first_seed, path_time, recipe, sizes, sweep_finished,
    sweep_label)
from cifar_lib.studies.dessilbi.measures import (  # noqa: F401
    CHANCE, budget_prune, curves_frame, kept, measure, measure_key, measure_sweep,
    measured, outside_support, panels, sweep_frame, sweep_from_records, sweep_key,
    sweep_measured)
from cifar_lib.studies.dessilbi.plots import (  # noqa: F401
    plot_curves, plot_filters, plot_path, plot_pruning, plot_sweep)
from cifar_lib.studies.dessilbi.values import (  # noqa: F401
    after_table, path_table, pruning_table, runs_table, sweep_table, values)

EXPERIMENTS = (DESSILBI, SWEEP)


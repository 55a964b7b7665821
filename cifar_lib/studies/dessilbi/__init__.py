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
  experiment :data:`DESSILBI`, :func:`finished` (its finished runs on
  disk), grouped per optimizer by :func:`by_label`;
* ``measures``: :func:`measure` and :func:`measured`, and the pruning
  helpers they use;
* ``plots``: the figures (learning curves, path, pruning, filters);
* ``values``: the report tables, figures and :func:`values`.

The notebook imports the package (``from cifar_lib.studies import dessilbi
as study``), trains with ``cl.run_experiment(study.DESSILBI, P, split)``
and draws with ``viz.figure(name, P)``.
"""
from cifar_lib.studies.dessilbi.runs import (  # noqa: F401
    DESSILBI, EXPERIMENT, FULL_EPOCHS, MEASURE_VERSION, METHODS, Sizes, by_label,
    finished, first_seed, path_time, recipe, sizes)
from cifar_lib.studies.dessilbi.measures import (  # noqa: F401
    curves_frame, measure, measure_key, measured, outside_support, panels)
from cifar_lib.studies.dessilbi.plots import (  # noqa: F401
    plot_curves, plot_filters, plot_path, plot_pruning)
from cifar_lib.studies.dessilbi.values import (  # noqa: F401
    after_table, path_table, pruning_table, runs_table, values)

EXPERIMENTS = (DESSILBI,)


"""BatchNorm study (report section 2, notebook 04_batchnorm.ipynb): VGG-A
with and without BatchNorm.

After Santurkar et al. 2018 ("How Does Batch Normalization Help
Optimization?"). Both networks train with the same data, seed and recipe:

* the course's loss landscape: Adam at each of ``COURSE_LRS``, the training
  loss per step, its min-max band across learning rates; the same runs give
  the last layer's gradient per step (kept every ``keep_every`` steps);
* the same band relative to the mean loss over learning rates, and its
  width at matched loss levels, which take out how fast each network
  learns (:func:`relative_band`, :func:`matched_widths`);
* curves at the course's setting (Adam, lr 1e-3) and with SGD with momentum
  at a learning rate at which both networks train;
* the paper's probes (:func:`cifar_lib.landscape.probe`) every
  ``probe_every`` steps of those two settings, along the update the run's
  optimizer takes at that step (for Adam, Adam's step, not lr x gradient);
* filter-normalised 1-D and 2-D loss surfaces around the final weights
  (Li et al. 2018), with BatchNorm on its running statistics (evaluation
  mode), the 1-D one also with batch statistics; :func:`measure` makes
  them after training and keeps them under ``results/``.

Every run is :func:`cifar_lib.experiments.run` with ``keep="last"`` and a
:class:`cifar_lib.landscape.Recorder` hook: the one experiment,
:data:`BATCHNORM`, gives each run its recording options as its tag (joined
to its name) and a fresh recorder as its hook. Surfaces are a measurement
of that experiment, kept in the store. Report tables, figures and values
(``bn_*``) read these.

The study's parts, each in its module:

* ``runs``: :class:`Sizes` per profile (:data:`SIZES`, :func:`sizes`), the
  runs (:func:`specs`, :func:`config`, :func:`recording`) and the
  experiment :data:`BATCHNORM`;
* ``measures``: bands (:func:`loss_band`), probe summaries, the loss
  surfaces (:func:`measure`, :func:`load_surfaces`);
* ``plots``: the figures;
* ``values``: the report tables (each with a one-sentence reading),
  figures, :func:`verdict_measures` and :func:`values`;
* ``verdict``: the verdict per measure and the summary paragraph, pure
  functions of the numbers (every direction computed from the numbers
  cited).

Averages are means over the seeds (:attr:`Sizes.seeds`), per phase of
training (first and second half of the steps), leaving out the steps where
a network sits at chance (:func:`at_chance`). The surfaces compare VGG-A's
final weights with VGG-A + BN stopped at matched training loss
(:func:`matched_run`, made by :func:`measure`).

The notebook imports the package (``from cifar_lib.studies import batchnorm
as study``), trains with ``cl.run_experiment(study.BATCHNORM, P, split)``
and draws with ``viz.figure(name, P)``.
"""
from cifar_lib.studies.batchnorm.runs import (  # noqa: F401
    BATCHNORM, COLORS, COURSE_LRS, EXPERIMENT, LABELS, MODELS, PROBE_DIRECTION, SIZES,
    Sizes, Spec, config, diverged_step, lr_list, matched_run, of_seed, pick, recording,
    run_setting, seeds_of, setting_lr, setting_name, sizes, specs)
from cifar_lib.studies.batchnorm.measures import (  # noqa: F401
    CHANCE, CHANCE_TOL, MATCHED, MATCHED_BINS, PHASES, Band, at_chance, band_means,
    band_phases, end_loss, leaves_chance, load_surfaces, loss_band, matched_epochs,
    matched_means, matched_phases, matched_widths, measure, probe_means, probe_phases,
    probe_summary, relative_band, surface, surface_centre, surface_key, surface_n,
    surface_options, surface_rise, surface_rises, surfaces_by_seed, to_array)
from cifar_lib.studies.batchnorm.plots import (  # noqa: F401
    plot_curves, plot_last_grad, plot_loss_band_views, plot_loss_landscape,
    plot_probes, plot_surface_1d, plot_surface_2d)
from cifar_lib.studies.batchnorm.values import (  # noqa: F401
    measures_table, probe_table, records, runs_table, surface_table, values,
    verdict_measures)
from cifar_lib.studies.batchnorm import verdict  # noqa: F401

EXPERIMENTS = (BATCHNORM,)


"""The study's parts, one package per report section; importing registers
their report figures, tables and values, and :func:`experiments` lists
their experiments.

Every study has the same parts, so that adding or changing one means
reading one shape:

* ``runs``: a commented sizes block with one entry per profile at the top
  (``Sizes``; ``sizes(profile)``), the recipes, and the study's
  experiments: :class:`cifar_lib.experiments.Experiment` objects (name,
  notebook and report section, priority group, ``runs(profile)``);
* ``measures``: post-training measurements, each attached to the
  experiment whose runs it needs (``@EXPERIMENT.measurement(...)``) and
  kept in :mod:`cifar_lib.store`, so that notebooks and the report render
  without the weights;
* ``plots``: drawing functions, each returning a Figure;
* ``values``: the report's figures (``@register_figure``), tables
  (``@register_table``) and ``values(profile) -> {name: str | None}``
  (``@register_values``), all drawn from stored results.

The package exports ``EXPERIMENTS`` and ``experiment(name)``. Notebooks
train with ``cl.run_experiment(study.experiment(name), P, split)`` and draw
with ``viz.figure(name, P)``, the function ``report`` calls.
``course_reports`` trains nothing: it compares the other studies' records
with the course reports' figures, and has only ``values`` and a table.
"""
from cifar_lib.experiments import find_experiment
from cifar_lib.studies import batchnorm, classification, dessilbi  # noqa: F401
from cifar_lib.studies import course_reports, summary  # noqa: F401


def experiments(extended: bool = True) -> list:
    """Every study's experiments (``extended=False``: without the opt-in
    extended set), in the studies' order."""
    return [e for study in (classification, batchnorm, dessilbi)
            for e in study.EXPERIMENTS if extended or not e.extended]


def experiment(name: str):
    """The experiment called ``name``, in any study (a clear error with
    the names there are for any other)."""
    return find_experiment(experiments(), name)

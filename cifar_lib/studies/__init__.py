"""The study's parts, one module (or package) per report section; importing
registers their named experiments, report tables and report values.

Every study has the same parts, so that adding or changing one means
reading one shape:

* ``Sizes``: a frozen dataclass of everything the study varies with the
  profile, and ``sizes(profile) -> Sizes``;
* ``configs(profile) -> {experiment: [(label, TrainConfig), ...]}``: the
  runs, each experiment registered by name (``register_experiment``, with a
  runner and a tag where the runs record more than ``experiments.run``);
* ``records(profile, name) -> [record]``: the runs of those configs found on
  disk, through the one shared lookup ``experiments.experiment_records``;
* ``measure(profile, split, *, force, device, log)`` where the study makes
  post-training measurements (stored under results/, so that notebooks and
  the report render without the weights);
* ``values(profile) -> {name: str | None}`` (``@register_values``): every
  ``value:name`` block of the report the study fills, names spelled out;
  report tables are ``@register_table`` functions;
* plotting in :mod:`cifar_lib.viz` or the study's own ``plots`` module,
  each function taking records or stored measurements and returning a Figure.

Every notebook trains through ``cl.run_experiment(name, P, split, force=)``.
``course_reports`` trains nothing: it compares the other studies' records
with the course reports' figures, and has only ``values`` and a table.
"""
from cifar_lib.studies import batchnorm, classification, dessilbi  # noqa: F401
from cifar_lib.studies import course_reports  # noqa: F401

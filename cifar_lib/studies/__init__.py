"""The study's parts, one module per report section; importing registers
their named experiments, report tables and report values."""
from cifar_lib.studies import batchnorm, classification, dessilbi  # noqa: F401
from cifar_lib.studies import course_reports  # noqa: F401

"""The cascade report (``pipeline.report.table``), run as ``python -m pipeline.report``."""

from pipeline.report.table import *  # noqa: F403
from pipeline.report.table import main  # noqa: F401

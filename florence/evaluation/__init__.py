"""Evaluation: the built-in metric functions (reference implementations; every registered metric:
``florence.get_metric(name)``) and the mmengine metric (names load on first use)."""
from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {"METRIC_FUNCTIONS": ".functions", "TaskMetric": ".task_metric", "format_table": ".task_metric"}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:
    from .functions import METRIC_FUNCTIONS
    from .task_metric import TaskMetric, format_table

"""Evaluation: the built-in metric functions (reference implementations; every registered metric:
``florence.get_metric(name)``) and the mmengine metric."""
from .functions import METRIC_FUNCTIONS
from .task_metric import TaskMetric, format_table

__all__ = ["METRIC_FUNCTIONS", "TaskMetric", "format_table"]

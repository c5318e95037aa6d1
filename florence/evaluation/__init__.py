"""Evaluation: metric functions by name (reference implementations) and the mmengine metric."""
from .functions import METRIC_FUNCTIONS
from .task_metric import TaskMetric, format_table

__all__ = ["METRIC_FUNCTIONS", "TaskMetric", "format_table"]

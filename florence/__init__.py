"""florence: Florence-2 as a framework.

>>> import florence
>>> pipe = florence.pipeline("path/to/Florence-2-base")      # a folder in either layout, or a hub id
>>> pipe("photo.jpg", "<OD>")
>>> florence.list_tasks(), florence.get_task("od")
"""
from .checkpoint import CheckpointError
from .inference import Pipeline, pipeline
from .models import ConfigError, Florence2Config, Florence2ForConditionalGeneration, VisionConfig
from .plugins import hookimpl
from .processing import Florence2Processor, ImageProcessor, Quantizer, build_tokenizer, load_tokenizer
from .task import Task, TaskError, get_metric, get_task, list_metrics, list_tasks

__version__ = "0.1.0"
__all__ = ["CheckpointError", "ConfigError", "Florence2Config", "Florence2ForConditionalGeneration",
           "VisionConfig", "Florence2Processor", "ImageProcessor", "Quantizer", "build_tokenizer",
           "load_tokenizer", "Pipeline", "pipeline", "hookimpl", "Task", "TaskError", "get_metric", "get_task", "list_metrics", "list_tasks"]

"""florence: Florence-2 as a framework.

>>> import florence
>>> pipe = florence.pipeline("path/to/Florence-2-base")      # a folder in either layout, or a hub id
>>> pipe("photo.jpg", "<OD>")
>>> florence.list_tasks(), florence.get_task("od")

The public names below load on first use, so ``import florence`` (and ``florence tasks``) does not
pay for torch models, timm or the metrics' reference implementations until they are needed.
"""
import logging
from typing import TYPE_CHECKING

from ._lazy import lazy_exports

# mmengine and transformers import DeepSpeed whenever it is installed, and DeepSpeed then warns "Setting
# accelerator to CPU" on every machine without a GPU although nothing uses it: that one message is
# dropped (florence's DeepSpeedStrategy logs the accelerator of a run that does use DeepSpeed).
logging.getLogger("DeepSpeed").addFilter(lambda record: not record.getMessage().startswith("Setting accelerator to CPU"))

__version__ = "0.1.0"
_EXPORTS = {
    "CheckpointError": ".models.files", "ConfigError": ".models.config", "Florence2Config": ".models.config",
    "VisionConfig": ".models.config", "Florence2ForConditionalGeneration": ".models.florence2",
    "Florence2Processor": ".processing.processor", "ImageProcessor": ".processing.image",
    "Quantizer": ".processing.quantizer", "build_tokenizer": ".processing.tokenizer",
    "load_tokenizer": ".processing.tokenizer", "Pipeline": ".inference", "pipeline": ".inference",
    "hookimpl": ".plugins", "Task": ".task", "TaskError": ".task", "get_metric": ".task", "get_task": ".task",
    "list_metrics": ".task", "list_tasks": ".task", "to_supervision": ".interop",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:  # what the names are, for readers and type checkers
    from .inference import Pipeline, pipeline
    from .interop import to_supervision
    from .models.config import ConfigError, Florence2Config, VisionConfig
    from .models.files import CheckpointError
    from .models.florence2 import Florence2ForConditionalGeneration
    from .plugins import hookimpl
    from .processing.image import ImageProcessor
    from .processing.processor import Florence2Processor
    from .processing.quantizer import Quantizer
    from .processing.tokenizer import build_tokenizer, load_tokenizer
    from .task import Task, TaskError, get_metric, get_task, list_metrics, list_tasks

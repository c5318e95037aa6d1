"""florence: Florence-2 as a framework.

>>> import florence
>>> model = florence.Florence2ForConditionalGeneration.from_pretrained("path/to/Florence-2-base")
>>> processor = florence.Florence2Processor.from_pretrained("path/to/Florence-2-base")
"""
from .checkpoint import CheckpointError
from .models import ConfigError, Florence2Config, Florence2ForConditionalGeneration, VisionConfig
from .processing import Florence2Processor, ImageProcessor, Quantizer, build_tokenizer, load_tokenizer

__version__ = "0.1.0"
__all__ = ["CheckpointError", "ConfigError", "Florence2Config", "Florence2ForConditionalGeneration",
           "VisionConfig", "Florence2Processor", "ImageProcessor", "Quantizer", "build_tokenizer",
           "load_tokenizer"]

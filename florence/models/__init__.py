"""Florence-2 models."""
from .config import ConfigError, Florence2Config, VisionConfig
from .florence2 import Florence2ForConditionalGeneration, Florence2Output, build_davit

__all__ = ["ConfigError", "Florence2Config", "VisionConfig", "Florence2ForConditionalGeneration",
           "Florence2Output", "build_davit"]

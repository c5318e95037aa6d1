"""Florence-2 models: the model (``florence2.py``), its config (``config.py``), its vision tower
(``tower.py``) and checkpoint files and layouts (``files.py``, ``layouts.py``)."""
from .config import ConfigError, Florence2Config, VisionConfig
from .florence2 import Florence2ForConditionalGeneration, Florence2Output
from .tower import Tower, build_davit, get_tower

__all__ = ["ConfigError", "Florence2Config", "VisionConfig", "Florence2ForConditionalGeneration",
           "Florence2Output", "Tower", "get_tower", "build_davit"]

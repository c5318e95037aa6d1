"""Florence-2 checkpoints under one public name: the files (:mod:`florence.models.files`: find a
folder or hub id, read and write tensors) and the key layouts, Microsoft's hub layout, the
transformers-native one and ours (:mod:`florence.models.layouts`, beside the model). Loading and
saving a model: ``Florence2ForConditionalGeneration.from_pretrained`` / ``save_pretrained``.
"""
from __future__ import annotations

import warnings

from .models.files import CheckpointError, read_state_dict, resolve_folder, write_state_dict
from .models.layouts import LAYOUTS, check_keys, convert_state_dict, detect_layout, load_state_dict_strict

__all__ = ["CheckpointError", "LAYOUTS", "detect_layout", "convert_state_dict", "check_keys", "read_state_dict",
           "write_state_dict", "resolve_folder", "load_state_dict_strict", "load_pretrained", "save_pretrained"]


def load_pretrained(cls, path_or_hub_id, dtype=None, device=None):
    """Deprecated: ``cls.from_pretrained(...)``."""
    warnings.warn("florence.checkpoint.load_pretrained(cls, path) is deprecated: use "
                  "Florence2ForConditionalGeneration.from_pretrained(path)", DeprecationWarning, stacklevel=2)
    return cls.from_pretrained(path_or_hub_id, dtype=dtype, device=device)


def save_pretrained(model, folder, layout: str = "native"):
    """Deprecated: ``model.save_pretrained(folder, layout)``."""
    warnings.warn("florence.checkpoint.save_pretrained(model, folder) is deprecated: use "
                  "model.save_pretrained(folder, layout=...)", DeprecationWarning, stacklevel=2)
    model.save_pretrained(folder, layout=layout)

"""Florence-2 checkpoints under one public name: the files (:mod:`florence.models.files`: find a
folder or hub id, read and write tensors) and the key layouts, Microsoft's hub layout, the
transformers-native one and ours (:mod:`florence.models.layouts`, beside the model). Loading and
saving a model: ``Florence2ForConditionalGeneration.from_pretrained`` / ``save_pretrained``.
"""
from __future__ import annotations

from .models.files import CheckpointError, read_state_dict, resolve_folder, write_state_dict
from .models.layouts import LAYOUTS, check_keys, convert_state_dict, detect_layout, load_state_dict_strict

__all__ = ["CheckpointError", "LAYOUTS", "detect_layout", "convert_state_dict", "check_keys", "read_state_dict",
           "write_state_dict", "resolve_folder", "load_state_dict_strict", "load_pretrained", "save_pretrained"]


def load_pretrained(cls, path_or_hub_id, dtype=None, device=None):
    """``cls.from_pretrained(...)`` (kept for callers of this older name)."""
    return cls.from_pretrained(path_or_hub_id, dtype=dtype, device=device)


def save_pretrained(model, folder, layout: str = "native"):
    """``model.save_pretrained(folder, layout)`` (kept for callers of this older name)."""
    model.save_pretrained(folder, layout=layout)

"""Deprecated name of :mod:`florence.data.writers`, the dataset writers ("export" is the model's way
out: :mod:`florence.deploy`, ``florence export``)."""
import warnings

from .writers import samples_of, write_coco, write_jsonl, write_maestro

__all__ = ["write_jsonl", "write_maestro", "write_coco", "samples_of"]

warnings.warn("florence.data.export is deprecated: the dataset writers are in florence.data.writers "
              "(or florence.data: write_jsonl, write_maestro, write_coco)", DeprecationWarning, stacklevel=2)

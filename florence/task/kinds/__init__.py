"""The output kinds the built-in tasks are instances of, one file each; a plugin may subclass one or
:class:`florence.task.Task` itself."""
from __future__ import annotations

from .boxes import BoxTask
from .open_vocabulary import OpenVocabularyTask
from .polygons import PolygonTask
from .quads import QuadTask
from .text import TextTask

__all__ = ["kind_of"]

_PROTOTYPES = (BoxTask("<BOXES>"), QuadTask("<QUADS>"), PolygonTask("<POLYGONS>"),
               OpenVocabularyTask("<BOXES_OR_POLYGONS>"))


def kind_of(output):
    """For an output given without its task: a task of the built-in kind whose keys it has most of
    (the first of boxes, quads, polygons, open vocabulary on a tie), a text task for anything else."""
    if isinstance(output, dict):
        best = max(_PROTOTYPES, key=lambda t: sum(k in output for k in t.output_keys))
        if any(k in output for k in best.output_keys):
            return best
    return TextTask("<TEXT>")

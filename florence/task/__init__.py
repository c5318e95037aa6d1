"""Tasks: what a Florence-2 task is, the base classes task plugins build on, and the registry.

A task is a value (an object), not a code path: its token (``"<OD>"``), name (``"od"``), prompt,
training-target serialisation, output parser and metric names all live on the object, and the
plugins in ``florence/tasks/`` (or any installed package) register it through the ``florence.tasks``
entry-point group. Nothing outside a task's own file branches on task names.

>>> task = get_task("<OD>")                      # or get_task("od")
>>> task.prompt()
'Locate the objects with category name in the image.'
>>> task.encode_target({"bboxes": [[10, 20, 300, 400]], "labels": ["car"]}, (640, 480))
'car<loc_15><loc_41><loc_468><loc_833>'
>>> task.decode_output("</s><s>car<loc_15><loc_41><loc_468><loc_833></s>", (640, 480))
{'bboxes': [[9.92, 19.92, 299.84, 400.08]], 'labels': ['car']}      # (rounded here)

Annotations (the input of ``encode_target``) have the same structure as the task's output, so a
round trip returns the annotation within one location bin.

Datasets do not know tasks either: a format describes an image in no task's terms
(:class:`ImageAnnotations`: its objects, words and captions) and each task makes its sample from that
(:meth:`Task.from_annotations`, given by ``make=`` where the task is registered). A new task plugin
with a ``make`` trains on every format (and on the synthetic scenes) that has what it reads.

The package, one job per file: ``base.py`` (the :class:`Task` contract, :class:`TaskError`, region
inputs), ``annotations.py`` (what datasets know of an image), ``kinds/`` (the output kinds the
built-in tasks are instances of, one file each: text, boxes, quads, polygons, open vocabulary),
``registry.py`` (:class:`TaskRegistry`: the plugins' tasks and metrics) and ``tokens.py`` (their
special tokens added to a tokenizer and a model).
"""
from .annotations import ImageAnnotations, Region, Word
from .base import QUANTIZER, Grammar, Shape, Task, TaskError, box_or_text, check_classes, region_tokens
from .kinds.boxes import BoxTask
from .kinds.common import WORDS
from .kinds.open_vocabulary import OpenVocabularyTask
from .kinds.polygons import PolygonTask
from .kinds.quads import QuadTask
from .kinds.text import TextTask
from .registry import (REGISTRY, TaskRegistry, get_metric, get_task, list_metrics, list_tasks, plugin_errors,
                       reload_tasks)
from .tokens import add_task_tokens

__all__ = ["ImageAnnotations", "Region", "Word", "Task", "TextTask", "BoxTask", "QuadTask", "PolygonTask",
           "OpenVocabularyTask", "Shape", "TaskError", "TaskRegistry", "REGISTRY",
           "list_tasks", "get_task", "get_metric", "list_metrics", "plugin_errors", "reload_tasks",
           "add_task_tokens", "box_or_text", "region_tokens", "QUANTIZER", "WORDS", "Grammar", "check_classes"]

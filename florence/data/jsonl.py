"""JSON Lines (florence's own, Roboflow's and maestro's) -> florence samples (what every adapter shares:
:mod:`florence.data.records`).

``JsonlDataset`` - generic JSON Lines for custom fine-tuning, one sample a line (image paths
relative to ``img_dir``, default the file's folder)::

    {"image": "a.jpg", "task": "<OD>", "annotation": {"bboxes": [[1, 2, 30, 40]], "labels": ["car"]}}
    {"image": "a.jpg", "task": "<DOCVQA>", "text_input": "Total?", "target": "$12"}
    {"image": "a.jpg", "prefix": "Read the serial number.", "target": "SN 4711"}
    {"image": "a.jpg", "prefix": "<OD>", "suffix": "car<loc_52><loc_333><loc_932><loc_774>"}
    ("target", or maestro's "suffix", is the raw target text, used verbatim; a "prefix" starting with
    a task token selects that task, the rest being its input; any other prefix is a custom prompt,
    used verbatim)
"""
from __future__ import annotations

import os

from ..registry import DATASETS
from ..task import list_tasks
from .records import (BadRecord, _Adapter, _as_record, _item, _records, _task, check_annotation, check_box,
                      check_text)

__all__ = ["JsonlDataset"]


@DATASETS.register_module()
class JsonlDataset(_Adapter):
    """Generic JSON Lines (or a JSON list): one sample a record, any registered task; also the
    maestro / Roboflow export (``{"image", "prefix", "suffix"}`` lines).

    A record has ``image`` (relative to ``img_dir``, default the file's folder; or ``TAR:KEY``, an image
    in a local tar shard, as the data engine names images it read from tars), ``task`` and/or
    ``prefix``, optional ``text_input``, and either ``target`` (or maestro's ``suffix``: the raw
    target text, used verbatim; its parse by the task is the ground truth for evaluation) or
    ``annotation`` (in the task's output format). A ``prefix`` that is or starts with a task token
    (``"<OD>"``, ``"<CAPTION_TO_PHRASE_GROUNDING>a red car"``, as maestro writes them) selects that
    task: its prompt is the task's (the rest of the prefix is the task input) and the sample is
    evaluated with the task's metrics. Any other prefix is a custom prompt, used verbatim; without
    ``task`` such a sample counts as ``prefix_task``.

    ``objects_from_boxes=True`` also gives a sample whose annotation is labelled boxes
    (``{"bboxes", "labels"}``) to the training-only objects head as its image's objects
    (``Florence2Model(objects=...)``, for models trained from scratch, e.g. on the data engine's labels)."""

    def __init__(self, ann_file: str, img_dir: str | None = None, prefix_task: str = "<VQA>",
                 on_bad_record: str = "error", objects_from_boxes: bool = False):
        super().__init__(on_bad_record)
        self.objects_from_boxes = bool(objects_from_boxes)
        root = img_dir if img_dir is not None else os.path.dirname(os.path.abspath(ann_file))
        tokens = sorted((t.token for t in list_tasks()), key=len, reverse=True)  # longest first
        for where, record in _records(ann_file):
            self.add(ann_file, where, lambda: self._sample(_as_record(record), root, prefix_task, tokens))
        self.warn_skipped()

    def _sample(self, record, root, prefix_task, tokens):
        path, size = self.image(root, record["image"])
        token, text_input, prompt = record.get("task"), record.get("text_input"), None
        if "prefix" in record:
            prefix = check_text(record["prefix"], "prefix")
            leading = next((t for t in tokens if prefix.startswith(t)), None) if token is None else None
            if leading is None:
                prompt, token = prefix, token or prefix_task
            else:  # maestro: the task token, then the task's input
                token, rest = leading, prefix[len(leading):].strip()
                if rest and text_input is not None:
                    raise BadRecord("two task inputs", f"prefix {prefix!r:.60} and text_input {text_input!r:.60}")
                text_input = rest or text_input
        if token is None:
            raise BadRecord("no task or prefix")
        if isinstance(text_input, list):
            text_input = check_box(text_input, size)
        item = _item(path, size, token, text_input, None)
        if prompt is not None:
            item["prompt"] = prompt
        target = record.get("target", record.get("suffix"))
        if target is not None:
            item["target_text"] = check_text(target, "target")
            item["annotation"] = _task(token).decode_output(item["target_text"], size)  # for evaluation
        elif "annotation" in record:
            item["annotation"] = check_annotation(record["annotation"], size, _task(token))
        else:
            raise BadRecord("no target (or suffix) or annotation")
        boxes = item["annotation"]
        if self.objects_from_boxes and isinstance(boxes, dict) and "bboxes" in boxes and "labels" in boxes:
            item["objects"] = {"bboxes": boxes["bboxes"], "labels": boxes["labels"]}
        return item

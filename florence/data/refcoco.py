"""RefCOCO / RefCOCO+ / RefCOCOg -> florence samples (see :mod:`florence.data.records` for what every adapter shares).

``RefCoco`` - RefCOCO/RefCOCO+/RefCOCOg: ``refs(unc).p`` (pickle, or the same list as JSON) and the
COCO-style ``instances.json`` (boxes and polygons), one item per sentence per task::

    refs: [{"ref_id": 0, "ann_id": 7, "image_id": 1, "split": "train", "sentences": [{"sent": "left car"}]}]
    instances: {"images": [...], "annotations": [{"id": 7, "image_id": 1, "bbox": [...],
                                                  "segmentation": [[x, y, x, y, x, y, ...]]}]}
    -> <OPEN_VOCABULARY_DETECTION> text_input "left car" -> {"bboxes": [box], "bboxes_labels": ["left car"],
                                                             "polygons": [], "polygons_labels": []}
       <REFERRING_EXPRESSION_SEGMENTATION> text_input "left car" -> {"polygons": [[[x, y, ...]]], "labels": [""]}
"""
from __future__ import annotations

from ..registry import DATASETS
from ..task import ImageAnnotations, Region
from .records import (BadRecord, _Adapter, _Images, _read_json, _read_pickle, _task_items, _tasks,
                      check_polygon, check_text, xywh_box)

__all__ = ["RefCoco"]


@DATASETS.register_module()
class RefCoco(_Adapter):
    """RefCOCO/RefCOCO+/RefCOCOg refs (pickle, as published, or JSON) + instances json -> referring
    expression boxes and polygons, one item per sentence per task, for one ``split`` (None: all).
    Only load pickles you trust (pickle runs code)."""

    TASKS = ("<OPEN_VOCABULARY_DETECTION>", "<REFERRING_EXPRESSION_SEGMENTATION>")  # the default tasks

    def __init__(self, refs_file: str, instances_file: str, img_dir: str, split: str | None = "train",
                 tasks=TASKS, on_bad_record: str = "error"):
        super().__init__(on_bad_record)
        self.tasks = _tasks(tasks, self.TASKS, type(self).__name__)
        refs = _read_json(refs_file) if str(refs_file).endswith(".json") else _read_pickle(refs_file)
        data = _read_json(instances_file)
        images = _Images.coco(self, instances_file, data, img_dir)
        anns = {a.get("id"): a for a in data.get("annotations", [])}
        for i, ref in enumerate(refs):
            if split is not None and ref.get("split") != split:
                continue
            # the referred object, checked once per ref for what the tasks need of it (box, polygon)
            target = self.attempt(refs_file, f"refs[{i}]", lambda: self._target(ref, anns, images))
            if target is None or self.attempt(refs_file, f"refs[{i}]",
                                              lambda: self._items(target, {"sent": "it"})) is None:
                continue
            for j, sentence in enumerate(ref.get("sentences", [])):
                self.add(refs_file, f"refs[{i}].sentences[{j}]", lambda: self._items(target, sentence))
        self.warn_skipped()

    @staticmethod
    def _target(ref, anns, images):
        """(path, size, what the annotation gives of the referred object); a box or polygon the
        annotation gets wrong is recorded, and matters only to a task that needs it."""
        if ref.get("ann_id") not in anns:
            raise BadRecord("unknown annotation id", repr(ref.get("ann_id")))
        ann = anns[ref["ann_id"]]
        image = images(ann["image_id"])
        if image is None:
            return None
        path, size = image
        given, problems = {}, {}
        for name, read in (("box", lambda: xywh_box(ann["bbox"], size) if "bbox" in ann else None),
                           ("polygon", lambda: _polygon(ann.get("segmentation"), size))):
            try:
                given[name] = read()
            except BadRecord as e:
                problems[name] = e
        return path, size, given, problems

    def _items(self, target, sentence):
        """The tasks' items of one sentence: the object it refers to, named by the sentence."""
        path, size, given, problems = target
        text = check_text(sentence["sent"], "sentence")
        referred = Region(label=text, expression=text, problems=problems, **given)
        annotations = ImageAnnotations(objects=[referred], focus=referred)
        return [item for task in self.tasks for item in _task_items(path, size, task, annotations)]


def _polygon(segmentation, size):
    if not isinstance(segmentation, list) or not segmentation:
        raise BadRecord("no polygon segmentation", f"{type(segmentation).__name__}")
    return [check_polygon(p, size) for p in segmentation]

"""COCO instances and captions -> florence samples (see :mod:`florence.data.records` for what every adapter shares).

``CocoDetection`` - COCO instances json (``bbox`` is ``[x, y, w, h]``; crowd annotations skipped)::

    {"images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}],
     "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "bbox": [10, 20, 100, 50], "iscrowd": 0}],
     "categories": [{"id": 3, "name": "car"}]}
    -> <OD> {"bboxes": [[10, 20, 110, 70]], "labels": ["car"]} and <REGION_PROPOSAL> (labels "")
       per image; <REGION_TO_CATEGORY> text_input [10, 20, 110, 70] -> "car" per annotation

``CocoCaptions`` - COCO captions json, one item per caption::

    {"images": [...as above...], "annotations": [{"id": 3, "image_id": 1, "caption": "A car."}]}
    -> <CAPTION> "A car."
"""
from __future__ import annotations

import os
from collections import defaultdict

from ..registry import DATASETS
from ..task import ImageAnnotations, Region
from .records import BadRecord, _Adapter, _Images, _item, _read_json, _tasks, check_text, xywh_box

__all__ = ["CocoDetection", "CocoCaptions"]


@DATASETS.register_module()
class CocoDetection(_Adapter):
    """COCO instances json -> ``<OD>`` / ``<REGION_PROPOSAL>`` (per image) and ``<REGION_TO_CATEGORY>``
    (per annotation). Images without (valid) annotations give no detection item. ``img_dir``
    defaults to the json's folder: Roboflow's COCO export (``train/_annotations.coco.json`` beside
    the images) reads with ``CocoDetection("DATASET/train/_annotations.coco.json")``."""

    TASKS = ("<OD>", "<REGION_PROPOSAL>", "<REGION_TO_CATEGORY>")

    def __init__(self, ann_file: str, img_dir: str | None = None, tasks=("<OD>",), on_bad_record: str = "error"):
        super().__init__(on_bad_record)
        tasks = _tasks(tasks, self.TASKS, type(self).__name__)
        img_dir = img_dir if img_dir is not None else os.path.dirname(os.path.abspath(ann_file))
        data = _read_json(ann_file)
        images = _Images.coco(self, ann_file, data, img_dir)
        names = {c["id"]: c["name"] for c in data.get("categories", [])}
        objects = defaultdict(list)  # image id -> [(box, category name)]
        for i, ann in enumerate(data.get("annotations", [])):
            if not ann.get("iscrowd"):
                found = self.attempt(ann_file, f"annotations[{i}]", lambda: self._object(ann, images, names))
                if found:
                    objects[ann["image_id"]].append(found)
        self.add_per_image(ann_file, tasks, images, objects)
        self.warn_skipped()

    @staticmethod
    def _object(ann, images, names):
        image = images(ann["image_id"])
        if image is None:
            return None  # the image was bad (already counted)
        if ann.get("category_id") not in names:
            raise BadRecord("unknown category", repr(ann.get("category_id")))
        return xywh_box(ann["bbox"], image[1]), names[ann["category_id"]]

    @staticmethod
    def _annotations(objs) -> ImageAnnotations:
        return ImageAnnotations(objects=[Region(box=box, label=name) for box, name in objs])


@DATASETS.register_module()
class CocoCaptions(_Adapter):
    """COCO captions json -> one caption item (``task``, default ``<CAPTION>``) per caption, or with
    ``per_image=True`` (evaluation: CIDEr against all references) one item per image whose
    annotation is the list of its captions."""

    def __init__(self, ann_file: str, img_dir: str, task: str = "<CAPTION>", per_image: bool = False,
                 on_bad_record: str = "error"):
        super().__init__(on_bad_record)
        data = _read_json(ann_file)
        images = _Images.coco(self, ann_file, data, img_dir)
        for i, ann in enumerate(data.get("annotations", [])):
            self.add(ann_file, f"annotations[{i}]", lambda: self._caption(task, ann, images))
        if per_image:
            grouped = {}
            for item in self.items:
                grouped.setdefault(item["image"], dict(item, annotation=[]))["annotation"].append(item["annotation"])
            self.items = list(grouped.values())
        self.warn_skipped()

    @staticmethod
    def _caption(task, ann, images):
        image = images(ann["image_id"])
        if image is None:
            return None
        return _item(*image, task, None, check_text(ann["caption"], "caption"))

"""TextOCR-style OCR -> florence samples (see :mod:`florence.data.records` for what every adapter shares).

``OcrDataset`` - TextOCR-style json; words in reading order (lines top to bottom, left to right);
illegible words (``"."``) left out::

    {"imgs": {"a": {"file_name": "a.jpg", "width": 640, "height": 480}},
     "anns": {"a_1": {"image_id": "a", "utf8_string": "STOP", "points": [x1, y1, ..., x4, y4]}}}
    -> <OCR> "STOP ..." and <OCR_WITH_REGION> {"quad_boxes": [[x1, y1, ..., x4, y4]], "labels": ["STOP"]}
    (``points`` of more than 4 points, or only a ``bbox`` [x, y, w, h], give the enclosing rectangle)
"""
from __future__ import annotations

from collections import defaultdict

from ..registry import DATASETS
from ..task import ImageAnnotations, Word
from .records import _Adapter, _Images, _read_json, _tasks, check_quad, check_text, xywh_box

__all__ = ["OcrDataset", "reading_order"]


def reading_order(boxes) -> list[int]:
    """Indices of ``[x1, y1, x2, y2]`` word boxes in reading order: lines top to bottom (a word joins
    the current line when its vertical centre is above the bottom of the line's first word), each
    line left to right."""
    lines: list[list[int]] = []
    for i in sorted(range(len(boxes)), key=lambda i: boxes[i][1] + boxes[i][3]):
        if lines and (boxes[i][1] + boxes[i][3]) / 2 <= boxes[lines[-1][0]][3]:
            lines[-1].append(i)
        else:
            lines.append([i])
    return [i for line in lines for i in sorted(line, key=lambda i: boxes[i][0])]


@DATASETS.register_module()
class OcrDataset(_Adapter):
    """TextOCR-style json -> ``<OCR>`` (the words joined by spaces) and ``<OCR_WITH_REGION>`` (a quad
    per word), per image, words in reading order. Images without legible words give no item."""

    TASKS = ("<OCR>", "<OCR_WITH_REGION>")
    ILLEGIBLE = "."

    def __init__(self, ann_file: str, img_dir: str, tasks=TASKS, on_bad_record: str = "error"):
        super().__init__(on_bad_record)
        tasks = _tasks(tasks, self.TASKS, type(self).__name__)
        data = _read_json(ann_file)
        if not isinstance(data, dict) or not {"imgs", "anns"} <= data.keys():
            raise ValueError(f"{ann_file}: expected TextOCR-style json with 'imgs' and 'anns'")
        images = _Images(self, ann_file, {k: (f"imgs[{k!r}]", im) for k, im in data["imgs"].items()}, img_dir)
        words = defaultdict(list)  # image id -> [(quad, text)]
        for key, ann in data["anns"].items():
            found = self.attempt(ann_file, f"anns[{key!r}]", lambda: self._word(ann, images))
            if found:
                words[ann["image_id"]].append(found)
        self.add_per_image(ann_file, tasks, images, words)
        self.warn_skipped()

    def _word(self, ann, images):
        image = images(ann["image_id"])
        if image is None or ann.get("utf8_string") == self.ILLEGIBLE:
            return None
        text = check_text(ann.get("utf8_string"), "word")
        if ann.get("points"):
            return check_quad(ann["points"], image[1]), text
        x1, y1, x2, y2 = xywh_box(ann["bbox"], image[1])
        return [x1, y1, x2, y1, x2, y2, x1, y2], text

    @staticmethod
    def _annotations(found) -> ImageAnnotations:
        words = [Word(q, text) for q, text in found]
        return ImageAnnotations(words=[words[i] for i in reading_order([w.box for w in words])])

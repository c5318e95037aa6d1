"""Flickr30k-Entities-style phrase grounding -> florence samples (what every adapter shares:
:mod:`florence.data.records`).

``PhraseGrounding`` - Flickr30k-Entities-style, JSON Lines (``.jsonl``) or a JSON list::

    {"image": "1.jpg", "caption": "A dog runs.", "phrases": [{"phrase": "A dog", "boxes": [[x1, y1, x2, y2]]}]}
    -> <CAPTION_TO_PHRASE_GROUNDING> text_input "A dog runs." -> {"bboxes": [[x1, y1, x2, y2]], "labels": ["A dog"]}
    (one label per box; phrases without boxes are left out; a record with no box gives no item)
"""
from __future__ import annotations

from ..registry import DATASETS
from .records import _Adapter, _as_record, _item, _records, check_box, check_text

__all__ = ["PhraseGrounding"]


@DATASETS.register_module()
class PhraseGrounding(_Adapter):
    """Flickr30k-Entities-style records (JSON Lines or a JSON list) -> ``<CAPTION_TO_PHRASE_GROUNDING>``.
    Image paths are relative to ``img_dir``."""

    TASK = "<CAPTION_TO_PHRASE_GROUNDING>"

    def __init__(self, ann_file: str, img_dir: str, on_bad_record: str = "error"):
        super().__init__(on_bad_record)
        for where, record in _records(ann_file):
            self.add(ann_file, where, lambda: self._grounding(_as_record(record), img_dir))
        self.warn_skipped()

    def _grounding(self, record, img_dir):
        path, size = self.image(img_dir, record["image"])
        caption = check_text(record["caption"], "caption")
        boxes, labels = [], []
        for p in record.get("phrases", []):
            phrase = check_text(p["phrase"], "phrase")
            for box in p.get("boxes", []):
                boxes.append(check_box(box, size))
                labels.append(phrase)
        return _item(path, size, self.TASK, caption, {"bboxes": boxes, "labels": labels}) if boxes else None

"""VQAv2 / TextVQA / DocVQA -> florence samples (see :mod:`florence.data.records` for what every adapter shares).

``VqaDataset`` - VQAv2 (questions json + annotations json) or TextVQA/DocVQA style (one json)::

    {"data_subtype": "train2014", "questions": [{"image_id": 1, "question": "How many?", "question_id": 10}]}
    {"annotations": [{"question_id": 10, "multiple_choice_answer": "2", "answers": [{"answer": "2"}, ...]}]}
    {"data": [{"image_id": "0a1b" or "image": "documents/x.png", "question": "How many?", "answers": ["2", ...]}]}
    -> <VQA> (or <DOCVQA>) text_input "How many?" -> ["2", "2", "3", ...]
    The annotation is the list of all answers: the metrics (VQA accuracy, ANLS) score against every
    answer, and the task trains on the most common one.
"""
from __future__ import annotations

from ..registry import DATASETS
from .records import BadRecord, _Adapter, _item, _read_json, check_text

__all__ = ["VqaDataset"]


@DATASETS.register_module()
class VqaDataset(_Adapter):
    """VQAv2 (``questions_file`` + ``annotations_file``) or TextVQA/DocVQA style (``questions_file``
    holding ``"data"`` with answers) -> ``task`` (``<VQA>`` or ``<DOCVQA>``) items whose annotation is
    the list of all answers.

    ``image_name`` formats a record's file name from ``image_id`` and the json's ``data_subtype``
    (default: ``"COCO_{data_subtype}_{image_id:012d}.jpg"`` for VQAv2, ``"{image_id}.jpg"`` otherwise);
    a record's own ``"image"`` takes precedence."""

    def __init__(self, questions_file: str, annotations_file: str | None = None, img_dir: str = "",
                 task: str = "<VQA>", image_name: str | None = None, on_bad_record: str = "error"):
        super().__init__(on_bad_record)
        data = _read_json(questions_file)
        if "questions" in data:
            if annotations_file is None:
                raise ValueError(f"{questions_file}: VQAv2 questions need their annotations_file")
            answers = {a["question_id"]: a.get("answers") or [a["multiple_choice_answer"]]
                       for a in _read_json(annotations_file)["annotations"]}
            records = [(f"questions[{i}]", q, answers.get(q.get("question_id")))
                       for i, q in enumerate(data["questions"])]
            image_name = image_name or "COCO_{data_subtype}_{image_id:012d}.jpg"
        elif "data" in data:
            records = [(f"data[{i}]", r, r.get("answers")) for i, r in enumerate(data["data"])]
            image_name = image_name or "{image_id}.jpg"
        else:
            raise ValueError(f"{questions_file}: expected VQAv2 'questions' or TextVQA-style 'data'")
        subtype = data.get("data_subtype", "")
        for where, record, record_answers in records:
            self.add(questions_file, where, lambda: self._question(task, record, record_answers, img_dir,
                                                                   image_name, subtype))
        self.warn_skipped()

    def _question(self, task, record, answers, img_dir, image_name, subtype):
        try:
            name = record.get("image") or image_name.format(image_id=record["image_id"], data_subtype=subtype)
        except ValueError as e:
            raise BadRecord("malformed record", f"image name from {image_name!r}: {e}") from None
        path, size = self.image(img_dir, name)
        answers = [a["answer"] if isinstance(a, dict) else a for a in answers or []]
        answers = [a.strip() for a in answers if isinstance(a, str) and a.strip()]
        if not answers:
            raise BadRecord("no answers", f"question {record.get('question_id', '')}")
        return _item(path, size, task, check_text(record["question"], "question"), answers)

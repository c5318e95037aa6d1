"""Dataset adapters: the annotation formats users have on disk -> florence samples.

Each adapter reads its files once, at construction, validates every record, and keeps items in the
format of :class:`~florence.data.SyntheticScenes` (the image as a path), so
:class:`~florence.data.MultiTaskDataset` mixes them unchanged::

    dict(image="/data/coco/train2017/000000000009.jpg", image_size=(640, 480), task="<OD>",
         text_input=None, annotation={"bboxes": [[1.1, 187.7, 612.7, 473.5]], "labels": ["bowl"]})

    train = MultiTaskDataset([dict(type="CocoDetection", ann_file="instances_train2017.json",
                                   img_dir="train2017", tasks=["<OD>", "<REGION_TO_CATEGORY>"]),
                              dict(type="CocoCaptions", ann_file="captions_train2017.json", img_dir="train2017")],
                             weights=[1, 1], image_size=768)

Coordinates are pixels of the original image. The formats, and what each record becomes:

``CocoDetection`` - COCO instances json (``bbox`` is ``[x, y, w, h]``; crowd annotations skipped)::

    {"images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}],
     "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "bbox": [10, 20, 100, 50], "iscrowd": 0}],
     "categories": [{"id": 3, "name": "car"}]}
    -> <OD> {"bboxes": [[10, 20, 110, 70]], "labels": ["car"]} and <REGION_PROPOSAL> (labels "")
       per image; <REGION_TO_CATEGORY> text_input [10, 20, 110, 70] -> "car" per annotation

``CocoCaptions`` - COCO captions json, one item per caption::

    {"images": [...as above...], "annotations": [{"id": 3, "image_id": 1, "caption": "A car."}]}
    -> <CAPTION> "A car."

``RefCoco`` - RefCOCO/RefCOCO+/RefCOCOg: ``refs(unc).p`` (pickle, or the same list as JSON) and the
COCO-style ``instances.json`` (boxes and polygons), one item per sentence per task::

    refs: [{"ref_id": 0, "ann_id": 7, "image_id": 1, "split": "train", "sentences": [{"sent": "left car"}]}]
    instances: {"images": [...], "annotations": [{"id": 7, "image_id": 1, "bbox": [...],
                                                  "segmentation": [[x, y, x, y, x, y, ...]]}]}
    -> <OPEN_VOCABULARY_DETECTION> text_input "left car" -> {"bboxes": [box], "bboxes_labels": ["left car"],
                                                             "polygons": [], "polygons_labels": []}
       <REFERRING_EXPRESSION_SEGMENTATION> text_input "left car" -> {"polygons": [[[x, y, ...]]], "labels": [""]}

``PhraseGrounding`` - Flickr30k-Entities-style, JSON Lines (``.jsonl``) or a JSON list::

    {"image": "1.jpg", "caption": "A dog runs.", "phrases": [{"phrase": "A dog", "boxes": [[x1, y1, x2, y2]]}]}
    -> <CAPTION_TO_PHRASE_GROUNDING> text_input "A dog runs." -> {"bboxes": [[x1, y1, x2, y2]], "labels": ["A dog"]}
    (one label per box; phrases without boxes are left out; a record with no box gives no item)

``VqaDataset`` - VQAv2 (questions json + annotations json) or TextVQA/DocVQA style (one json)::

    {"data_subtype": "train2014", "questions": [{"image_id": 1, "question": "How many?", "question_id": 10}]}
    {"annotations": [{"question_id": 10, "multiple_choice_answer": "2", "answers": [{"answer": "2"}, ...]}]}
    {"data": [{"image_id": "0a1b" or "image": "documents/x.png", "question": "How many?", "answers": ["2", ...]}]}
    -> <VQA> (or <DOCVQA>) text_input "How many?" -> ["2", "2", "3", ...]
    The annotation is the list of all answers: the metrics (VQA accuracy, ANLS) score against every
    answer, and the task trains on the most common one.

``OcrDataset`` - TextOCR-style json; words in reading order (lines top to bottom, left to right);
illegible words (``"."``) left out::

    {"imgs": {"a": {"file_name": "a.jpg", "width": 640, "height": 480}},
     "anns": {"a_1": {"image_id": "a", "utf8_string": "STOP", "points": [x1, y1, ..., x4, y4]}}}
    -> <OCR> "STOP ..." and <OCR_WITH_REGION> {"quad_boxes": [[x1, y1, ..., x4, y4]], "labels": ["STOP"]}
    (``points`` of more than 4 points, or only a ``bbox`` [x, y, w, h], give the enclosing rectangle)

``JsonlDataset`` - generic JSON Lines for custom fine-tuning, one sample a line (image paths
relative to ``img_dir``, default the file's folder)::

    {"image": "a.jpg", "task": "<OD>", "annotation": {"bboxes": [[1, 2, 30, 40]], "labels": ["car"]}}
    {"image": "a.jpg", "task": "<DOCVQA>", "text_input": "Total?", "target": "$12"}
    {"image": "a.jpg", "prefix": "Read the serial number.", "target": "SN 4711"}
    {"image": "a.jpg", "prefix": "<OD>", "suffix": "car<loc_52><loc_333><loc_932><loc_774>"}
    ("target", or maestro's "suffix", is the raw target text, used verbatim; a "prefix" starting with
    a task token selects that task, the rest being its input; any other prefix is a custom prompt,
    used verbatim)

Bad records - a missing image, coordinates that are not finite or lie more than 1 px outside the
image (a smaller overshoot is clipped), empty boxes, polygons of fewer than 3 points or no area,
unknown category / image / annotation ids, empty text, or an annotation the task rejects - are
found at construction. ``on_bad_record="error"`` (default) raises ValueError naming the file, the
record and the reason; ``"skip"`` drops the record and warns once with the counts per reason
(``dataset.skipped``), so a long run never dies on one bad record. Images are not decoded here:
sizes come from the annotation file or the image header.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import warnings
from collections import Counter, defaultdict

from PIL import Image

from ..registry import DATASETS
from ..task import TaskError, get_task, list_tasks

__all__ = ["CocoDetection", "CocoCaptions", "RefCoco", "PhraseGrounding", "VqaDataset", "OcrDataset",
           "JsonlDataset", "BadRecord", "reading_order"]

TOLERANCE = 1.0  # pixels a coordinate may lie outside the image (it is then clipped to the border)
OVD, RES = "<OPEN_VOCABULARY_DETECTION>", "<REFERRING_EXPRESSION_SEGMENTATION>"


# ---- validation: one set of checks for every adapter ----------------------------------------------
class BadRecord(ValueError):
    """A record that cannot become a sample; ``reason`` is the key skipped records are counted by."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason


def _numbers(values, what: str) -> list[float]:
    try:
        coords = [float(v) for v in values]
    except (TypeError, ValueError):
        raise BadRecord(f"malformed {what}", f"{values!r:.100}") from None
    if not all(math.isfinite(v) for v in coords):
        raise BadRecord("non-finite coordinates", f"{what} {coords}")
    return coords


def _clip(coords: list[float], size, what: str) -> list[float]:
    """``x, y, ...`` clipped to the image; beyond the tolerance is an error."""
    w, h = size
    limits = [w if k % 2 == 0 else h for k in range(len(coords))]
    if any(v < -TOLERANCE or v > lim + TOLERANCE for v, lim in zip(coords, limits)):
        raise BadRecord(f"{what} outside the image", f"{coords} in a {w}x{h} image")
    return [min(max(v, 0.0), lim) for v, lim in zip(coords, limits)]


def check_box(box, size) -> list[float]:
    """A valid ``[x1, y1, x2, y2]`` inside the image, clipped."""
    coords = _numbers(box, "box")
    if len(coords) != 4:
        raise BadRecord("malformed box", f"{len(coords)} numbers, not 4")
    x1, y1, x2, y2 = _clip(coords, size, "box")
    if x2 <= x1 or y2 <= y1:
        raise BadRecord("degenerate box", f"{[x1, y1, x2, y2]}")
    return [x1, y1, x2, y2]


def xywh_box(box, size) -> list[float]:
    """A COCO ``[x, y, w, h]`` as a checked ``[x1, y1, x2, y2]``."""
    coords = _numbers(box, "box")
    if len(coords) != 4:
        raise BadRecord("malformed box", f"{len(coords)} numbers, not 4")
    x, y, w, h = coords
    return check_box([x, y, x + w, y + h], size)


def check_polygon(points, size, what: str = "polygon") -> list[float]:
    """A flat ``[x, y, x, y, ...]`` of >= 3 points enclosing a nonzero area, clipped."""
    coords = _numbers(points, what)
    if len(coords) < 6 or len(coords) % 2:
        raise BadRecord(f"degenerate {what}", f"{len(coords)} coordinates; needs >= 3 points")
    coords = _clip(coords, size, what)
    xs, ys = coords[0::2], coords[1::2]
    area = abs(sum(xs[k] * ys[k - 1] - xs[k - 1] * ys[k] for k in range(len(xs)))) / 2
    if area < 1e-6:  # (a float tolerance: collinear points rarely give exactly 0)
        raise BadRecord(f"degenerate {what}", "zero area")
    return coords


def check_quad(points, size) -> list[float]:
    """A text quadrilateral of 4 points; more points (a polygon) become its enclosing rectangle."""
    coords = check_polygon(points, size, "quad")
    if len(coords) == 8:
        return coords
    x1, y1, x2, y2 = min(coords[0::2]), min(coords[1::2]), max(coords[0::2]), max(coords[1::2])
    return [x1, y1, x2, y1, x2, y2, x1, y2]


def check_text(text, what: str = "text") -> str:
    if not isinstance(text, str) or not text.strip():
        raise BadRecord("empty text", f"{what} {text!r:.60}")
    return text.strip()


def check_annotation(annotation, size):
    """A structured annotation of any task with its geometry checked and clipped (``bboxes``,
    ``quad_boxes``, ``polygons``); a text annotation must not be empty."""
    if isinstance(annotation, str):
        return check_text(annotation, "annotation")
    if not isinstance(annotation, dict):
        return annotation  # e.g. a list of answers: the task checks it
    out = dict(annotation)
    if "bboxes" in out:
        out["bboxes"] = [check_box(b, size) for b in out["bboxes"]]
    if "quad_boxes" in out:
        out["quad_boxes"] = [check_polygon(q, size, "quad") for q in out["quad_boxes"]]
    if "polygons" in out:
        out["polygons"] = [[check_polygon(p, size) for p in parts] for parts in out["polygons"]]
    return out


def _task(token):
    try:
        return get_task(token)
    except TaskError:
        raise BadRecord("unknown task", repr(token)) from None


def check_item(item: dict) -> dict:
    """The item's prompt and target are what its task accepts (so ``MultiTaskDataset`` cannot fail
    on it later)."""
    task = _task(item["task"])
    try:
        if "prompt" not in item:
            task.prompt(item["text_input"], item["image_size"])
        if "target_text" not in item:
            task.encode_target(item["annotation"], item["image_size"])
    except TaskError as e:
        raise BadRecord("rejected by the task", str(e)) from None
    return item


def _item(path: str, size, task: str, text_input, annotation) -> dict:
    return dict(image=path, image_size=tuple(size), task=task, text_input=text_input, annotation=annotation)


def _header_size(path: str) -> tuple[int, int]:
    """(w, h) of an image file from its header, after EXIF orientation (as the image loader applies it)."""
    with Image.open(path) as im:
        w, h = im.size
        rotated = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    return (h, w) if rotated else (w, h)


# ---- files ----------------------------------------------------------------------------------------
def _read_json(path: str):
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from None


def _records(path: str) -> list[tuple[str, object]]:
    """``(where, record)`` of a JSON Lines file (``.jsonl``/``.ndjson``; blank lines ignored; a line
    that is not JSON becomes a :class:`BadRecord`) or of a JSON list."""
    if not str(path).endswith((".jsonl", ".ndjson")):
        records = _read_json(path)
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON list of records (or a .jsonl file)")
        return [(f"record {i}", r) for i, r in enumerate(records)]
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    record = BadRecord("malformed JSON", str(e))
                out.append((f"record {len(out)} (line {n})", record))
    return out


def _as_record(record) -> dict:
    if isinstance(record, BadRecord):
        raise record
    if not isinstance(record, dict):
        raise BadRecord("malformed record", f"expected an object, got {type(record).__name__}")
    return record


def _tasks(tasks, allowed) -> list[str]:
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    unknown = [t for t in tasks if t not in allowed]
    if unknown or not tasks:
        raise ValueError(f"tasks must be some of {list(allowed)}, got {tasks}")
    return tasks


# ---- the common part of every adapter -------------------------------------------------------------
class _Adapter:
    """Items validated at construction, and the bad-record policy."""

    def __init__(self, on_bad_record: str = "error"):
        if on_bad_record not in ("error", "skip"):
            raise ValueError(f'on_bad_record must be "error" or "skip", got {on_bad_record!r}')
        self.on_bad_record = on_bad_record
        self.items: list[dict] = []
        self.skipped: Counter = Counter()  # reason -> records skipped
        self._sizes: dict[str, tuple] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return dict(self.items[index])

    def attempt(self, file: str, where: str, build):
        """``build()``; for a bad record, raise naming ``file`` and ``where`` or (skip) return None."""
        try:
            return build()
        except (BadRecord, KeyError, TypeError, AttributeError, IndexError) as e:
            reason = e.reason if isinstance(e, BadRecord) else "malformed record"
            if self.on_bad_record == "error":
                detail = e if isinstance(e, BadRecord) else f"{reason} ({type(e).__name__}: {e})"
                raise ValueError(f"{type(self).__name__}: {file}: {where}: {detail}") from None
            self.skipped[reason] += 1
            return None

    def add(self, file: str, where: str, build) -> None:
        """Keep the item (or list of items, or nothing) ``build()`` makes, each checked by its task."""
        def checked():
            made = build()
            return [check_item(it) for it in ([] if made is None else made if isinstance(made, list) else [made])]
        self.items += self.attempt(file, where, checked) or []

    def add_per_image(self, file: str, tasks, images: "_Images", grouped: dict) -> None:
        """For each task, one item per image with anything in ``grouped`` (image id -> parts),
        built by ``self._items(task, path, size, parts)``, in the file's image order."""
        for task in tasks:
            for image_id in (i for i in images.entries if i in grouped):
                self.add(file, images.entries[image_id][0],
                         lambda: self._items(task, *images(image_id), grouped[image_id]))

    def warn_skipped(self) -> None:
        """One warning for all the records skipped while loading."""
        if self.skipped:
            counts = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
            warnings.warn(f"{type(self).__name__}: skipped {sum(self.skipped.values())} bad records ({counts}); "
                          f"kept {len(self.items)} samples", stacklevel=3)

    def image(self, img_dir: str | None, name: str, size=None) -> tuple[str, tuple]:
        """Path and (w, h) of an existing image; the size from the annotation file, else the header."""
        path = os.path.join(img_dir, name) if img_dir else name
        if path not in self._sizes:
            if not os.path.isfile(path):
                raise BadRecord("missing image", path)
            if size is None:
                try:
                    size = _header_size(path)
                except (OSError, ValueError, SyntaxError) as e:
                    raise BadRecord("unreadable image", f"{path}: {e}") from None
            if not (len(size) == 2 and all(isinstance(v, (int, float)) and v > 0 for v in size)):
                raise BadRecord("bad image size", f"{size!r}")
            self._sizes[path] = tuple(size)
        return path, self._sizes[path]


class _Images:
    """The images of a COCO/TextOCR-style json by id, each checked once, when first used."""

    def __init__(self, adapter: _Adapter, file: str, entries: dict, img_dir: str):
        self.adapter, self.file, self.entries, self.img_dir = adapter, file, entries, img_dir  # id -> (where, entry)
        self.checked: dict = {}

    def __call__(self, image_id):
        """(path, size); None if the image is bad (counted once); BadRecord for an unknown id."""
        if image_id not in self.entries:
            raise BadRecord("unknown image id", repr(image_id))
        if image_id not in self.checked:
            where, im = self.entries[image_id]
            self.checked[image_id] = self.adapter.attempt(self.file, where, lambda: self.adapter.image(
                self.img_dir, im["file_name"], (im["width"], im["height"])))
        return self.checked[image_id]

    @classmethod
    def coco(cls, adapter, file, data, img_dir):
        return cls(adapter, file, {im.get("id"): (f"images[{i}]", im) for i, im in enumerate(data.get("images", []))},
                   img_dir)


# ---- adapters -------------------------------------------------------------------------------------
@DATASETS.register_module()
class CocoDetection(_Adapter):
    """COCO instances json -> ``<OD>`` / ``<REGION_PROPOSAL>`` (per image) and ``<REGION_TO_CATEGORY>``
    (per annotation). Images without (valid) annotations give no detection item. ``img_dir``
    defaults to the json's folder: Roboflow's COCO export (``train/_annotations.coco.json`` beside
    the images) reads with ``CocoDetection("DATASET/train/_annotations.coco.json")``."""

    TASKS = ("<OD>", "<REGION_PROPOSAL>", "<REGION_TO_CATEGORY>")

    def __init__(self, ann_file: str, img_dir: str | None = None, tasks=("<OD>",), on_bad_record: str = "error"):
        super().__init__(on_bad_record)
        tasks = _tasks(tasks, self.TASKS)
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
    def _items(task, path, size, objs):
        if task == "<REGION_TO_CATEGORY>":
            return [_item(path, size, task, box, name) for box, name in objs]
        labels = [name if task == "<OD>" else "" for _, name in objs]
        return _item(path, size, task, None, {"bboxes": [box for box, _ in objs], "labels": labels})


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


@DATASETS.register_module()
class RefCoco(_Adapter):
    """RefCOCO/RefCOCO+/RefCOCOg refs (pickle, as published, or JSON) + instances json -> referring
    expression boxes and polygons, one item per sentence per task, for one ``split`` (None: all).
    Only load pickles you trust (pickle runs code)."""

    TASKS = (OVD, RES)

    def __init__(self, refs_file: str, instances_file: str, img_dir: str, split: str | None = "train",
                 tasks=TASKS, on_bad_record: str = "error"):
        super().__init__(on_bad_record)
        self.tasks = _tasks(tasks, self.TASKS)
        refs = _read_json(refs_file) if str(refs_file).endswith(".json") else _read_pickle(refs_file)
        data = _read_json(instances_file)
        images = _Images.coco(self, instances_file, data, img_dir)
        anns = {a.get("id"): a for a in data.get("annotations", [])}
        for i, ref in enumerate(refs):
            if split is not None and ref.get("split") != split:
                continue
            target = self.attempt(refs_file, f"refs[{i}]", lambda: self._target(ref, anns, images))
            if target is None:
                continue
            for j, sentence in enumerate(ref.get("sentences", [])):
                self.add(refs_file, f"refs[{i}].sentences[{j}]", lambda: self._items(target, sentence))
        self.warn_skipped()

    def _target(self, ref, anns, images):
        """(path, size, box, polygon parts) of the referred object; only what the tasks need is checked."""
        if ref.get("ann_id") not in anns:
            raise BadRecord("unknown annotation id", repr(ref.get("ann_id")))
        ann = anns[ref["ann_id"]]
        image = images(ann["image_id"])
        if image is None:
            return None
        path, size = image
        box = xywh_box(ann["bbox"], size) if OVD in self.tasks else None
        parts = None
        if RES in self.tasks:
            segmentation = ann.get("segmentation")
            if not isinstance(segmentation, list) or not segmentation:
                raise BadRecord("no polygon segmentation", f"{type(segmentation).__name__}")
            parts = [check_polygon(p, size) for p in segmentation]
        return path, size, box, parts

    def _items(self, target, sentence):
        path, size, box, parts = target
        text = check_text(sentence["sent"], "sentence")
        annotations = {OVD: lambda: {"bboxes": [box], "bboxes_labels": [text], "polygons": [], "polygons_labels": []},
                       RES: lambda: {"polygons": [parts], "labels": [""]}}
        return [_item(path, size, task, text, annotations[task]()) for task in self.tasks]


def _read_pickle(path: str):
    with open(path, "rb") as f:
        return pickle.load(f)


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
        tasks = _tasks(tasks, self.TASKS)
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
    def _items(task, path, size, found):
        boxes = [[min(q[0::2]), min(q[1::2]), max(q[0::2]), max(q[1::2])] for q, _ in found]
        ordered = [found[i] for i in reading_order(boxes)]
        if task == "<OCR>":
            return _item(path, size, task, None, " ".join(text for _, text in ordered))
        return _item(path, size, task, None, {"quad_boxes": [q for q, _ in ordered], "labels": [t for _, t in ordered]})


@DATASETS.register_module()
class JsonlDataset(_Adapter):
    """Generic JSON Lines (or a JSON list): one sample a record, any registered task; also the
    maestro / Roboflow export (``{"image", "prefix", "suffix"}`` lines).

    A record has ``image`` (relative to ``img_dir``, default the file's folder), ``task`` and/or
    ``prefix``, optional ``text_input``, and either ``target`` (or maestro's ``suffix``: the raw
    target text, used verbatim; its parse by the task is the ground truth for evaluation) or
    ``annotation`` (in the task's output format). A ``prefix`` that is or starts with a task token
    (``"<OD>"``, ``"<CAPTION_TO_PHRASE_GROUNDING>a red car"``, as maestro writes them) selects that
    task: its prompt is the task's (the rest of the prefix is the task input) and the sample is
    evaluated with the task's metrics. Any other prefix is a custom prompt, used verbatim; without
    ``task`` such a sample counts as ``prefix_task``."""

    def __init__(self, ann_file: str, img_dir: str | None = None, prefix_task: str = "<VQA>",
                 on_bad_record: str = "error"):
        super().__init__(on_bad_record)
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
            item["annotation"] = check_annotation(record["annotation"], size)
        else:
            raise BadRecord("no target (or suffix) or annotation")
        return item

"""What every dataset adapter shares (one module per format beside this one: ``coco``, ``refcoco``,
``grounding``, ``vqa``, ``ocr``, ``jsonl``; :mod:`florence.data.adapters` lists them).

Each adapter reads its files once, at construction, validates every record, and keeps items in the
format of :class:`~florence.data.SyntheticScenes` (the image as a path), so
:class:`~florence.data.MultiTaskDataset` mixes them unchanged::

    dict(image="/data/coco/train2017/000000000009.jpg", image_size=(640, 480), task="<OD>",
         text_input=None, annotation={"bboxes": [[1.1, 187.7, 612.7, 473.5]], "labels": ["bowl"]})

Coordinates are pixels of the original image.

Adapters do not know tasks: a format describes each image as :class:`~florence.task.ImageAnnotations`
(COCO: objects with categories; TextOCR: words; RefCOCO: the referred object, named by its sentence)
and each task asked for makes its items from that (:meth:`~florence.task.Task.from_annotations`; one
item per object for a task about one object), so ``CocoDetection(..., tasks=["<OPEN_VOCABULARY_DETECTION>"])`` (each object by its category)
or a plugin task works without code here. A task that needs what a format lacks (captions from COCO
instances) is a bad record "not what the task needs".

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
from collections import Counter

from PIL import Image

from ..processing.image import open_tar_member, tar_member
from ..task import TaskError, get_task

__all__ = ["BadRecord", "check_annotation", "check_box", "check_item", "check_polygon", "check_quad", "check_text",
           "xywh_box"]

TOLERANCE = 1.0  # pixels a coordinate may lie outside the image (it is then clipped to the border)


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


_GEOMETRY = {  # how a region kind's coordinates are checked and clipped
    "box": check_box,
    "quad": lambda q, size: check_polygon(q, size, "quad"),
    "polygon": lambda parts, size: [check_polygon(p, size) for p in parts],
}
_KEYS = {"bboxes": "box", "quad_boxes": "quad", "polygons": "polygon"}  # the built-in kinds' keys


def check_annotation(annotation, size, task=None):
    """A structured annotation of any task with its geometry checked and clipped (``bboxes``,
    ``quad_boxes``, ``polygons``, and with ``task`` the keys of its ``region_keys`` whose kind is a
    box, quad or polygon); a text annotation must not be empty. A plugin kind's other coordinates
    are left to its ``encode_target``."""
    if isinstance(annotation, str):
        return check_text(annotation, "annotation")
    if not isinstance(annotation, dict):
        return annotation  # e.g. a list of answers: the task checks it
    keys = dict(_KEYS)
    if task is not None:
        keys.update({coords: kind for kind, (coords, _) in task.region_keys.items()})
    out = dict(annotation)
    for key, kind in keys.items():
        if key in out and kind in _GEOMETRY:
            out[key] = [_GEOMETRY[kind](v, size) for v in out[key]]
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


def _header_size(path) -> tuple[int, int]:
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


def _tasks(tasks, defaults, owner: str) -> list[str]:
    """The tokens of ``tasks``: registered tasks that make their samples from image annotations (a
    format's ``defaults`` are those its annotations fully serve); errors begin with ``owner``."""
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    if not tasks:
        raise ValueError(f"{owner}: tasks must name at least one task, e.g. {list(defaults)}")
    found = [_task(t) for t in tasks]
    unable = [t.token for t in found if t.make is None]
    if unable:
        raise ValueError(f"{owner}: tasks {unable} cannot be made from image annotations (registered without "
                         f"make=...); it serves e.g. {list(defaults)}")
    return [t.token for t in found]


def _task_items(path: str, size, task: str, annotations) -> list[dict]:
    """The items ``task`` makes from an image's annotations: one, or one per object for a task about
    one object (an item equal to an earlier one, e.g. a second object of the same name, once)."""
    t = _task(task)
    views = [annotations.about(o) for o in annotations.objects] if t.one_object else [annotations]
    items = []
    try:
        for view in views:
            item = _item(path, size, t.token, *t.from_annotations(view))
            if item not in items:
                items.append(item)
    except TaskError as e:
        raise BadRecord("not what the task needs", str(e)) from None
    return items


def _read_pickle(path: str):
    with open(path, "rb") as f:
        return pickle.load(f)



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
        self._bar = None  # records checked so far, shown when loading takes more than 2 s

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict:  # to dataloader workers: without a progress bar (tqdm does not pickle)
        return {**self.__dict__, "_bar": None}

    def __getitem__(self, index: int) -> dict:
        return dict(self.items[index])

    def attempt(self, file: str, where: str, build):
        """``build()``; for a bad record, raise naming ``file`` and ``where`` or (skip) return None."""
        if self._bar is None:
            from mmengine.dist import get_rank
            from tqdm import tqdm

            self._bar = tqdm(desc=f"{type(self).__name__} {os.path.basename(file)}: records checked", unit=" records",
                             delay=2, mininterval=1, disable=get_rank() != 0)
        self._bar.update()
        try:
            return build()
        except (BadRecord, KeyError, TypeError, AttributeError, IndexError) as e:
            reason = e.reason if isinstance(e, BadRecord) else "malformed record"
            if self.on_bad_record == "error":
                self._bar.close()
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
        """For each task, its items of each image with anything in ``grouped`` (image id -> parts,
        described by ``self._annotations(parts)``), in the file's image order."""
        for task in tasks:
            for image_id in (i for i in images.entries if i in grouped):
                self.add(file, images.entries[image_id][0],
                         lambda: _task_items(*images(image_id), task, self._annotations(grouped[image_id])))

    def warn_skipped(self) -> None:
        """The end of loading: the progress bar closed, one warning for all the records skipped."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.skipped:
            counts = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
            warnings.warn(f"{type(self).__name__}: skipped {sum(self.skipped.values())} bad records ({counts}); "
                          f"kept {len(self.items)} samples", stacklevel=3)

    def image(self, img_dir: str | None, name: str, size=None) -> tuple[str, tuple]:
        """Path and (w, h) of an existing image (a file, or ``TAR:KEY``: an image in a local tar shard,
        :func:`~florence.processing.image.tar_member`); the size from the annotation file, else the header."""
        path = os.path.join(img_dir, name) if img_dir else name
        if path not in self._sizes:
            is_file = os.path.isfile(path)
            try:
                member = None if is_file else tar_member(path)
            except FileNotFoundError as e:
                raise BadRecord("missing image", str(e)) from None
            except ValueError as e:
                raise BadRecord("unreadable image", f"{path}: {e}") from None
            if member is None and not is_file:
                raise BadRecord("missing image", path)
            if size is None:
                try:
                    if member is None:
                        size = _header_size(path)
                    else:
                        with open_tar_member(member) as f:  # its header only, as for a file
                            size = _header_size(f)
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

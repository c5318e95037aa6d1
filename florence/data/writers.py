"""Datasets out: any florence dataset (the adapters', :class:`~florence.data.SyntheticScenes`, or
labels the model made) written in the formats other tools read, images copied beside them.

- :func:`write_jsonl`: florence JSON Lines (``{"image", "task", "text_input", "annotation"}``), which
  :class:`~florence.data.JsonlDataset` reads back exactly;
- :func:`write_maestro`: Roboflow's / maestro's layout, ``FOLDER/<split>/annotations.jsonl`` with
  ``{"image", "prefix", "suffix"}`` lines (the target as location-token text: coordinates kept to
  one location bin);
- :func:`write_coco`: a COCO instances json of the box tasks (``<OD>`` and the like), with a
  ``score`` per annotation where the labels have scores.

A dataset is any sequence of items ``dict(image=path | PIL image | HWC array, image_size=(w, h),
task=..., text_input=..., annotation=...)`` (or ``tasks=[...]`` for several tasks of one image, or a
raw ``target_text`` instead of ``annotation``). Image files are copied (``images="copy"``, default) or
referenced by a path relative to the written file (``"reference"``); in-memory images are saved as PNG.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import write_text
from ..processing.image import open_tar_member, tar_member
from ..processing.quantizer import QUANTIZER
from ..task import get_task

__all__ = ["write_jsonl", "write_maestro", "write_coco", "samples_of"]

def samples_of(dataset):
    """``(index, item, task)`` for every task of every item (an item with ``tasks`` has several)."""
    for index in range(len(dataset)):
        item = dataset[index]
        for task in item.get("tasks") or [item]:
            yield index, item, task


class _Images:
    """Where each item's image goes: copied (or saved) into ``folder``, or referenced relative to it."""

    def __init__(self, folder: Path, mode: str):
        if mode not in ("copy", "reference"):
            raise ValueError(f"images must be 'copy' or 'reference', got {mode!r}")
        self.folder, self.mode, self.done = folder, mode, {}

    def __call__(self, index: int, image) -> str:
        if index in self.done:
            return self.done[index]
        if isinstance(image, (str, os.PathLike)):
            if self.mode == "reference":
                name = os.path.relpath(os.path.abspath(image), self.folder)
            elif not os.path.exists(image) and (member := tar_member(str(image))):  # TAR:KEY: from a tar shard
                name = f"{index:06d}.{member[1].name.rsplit('.', 1)[-1]}"
                with open_tar_member(member) as f:
                    (self.folder / name).write_bytes(f.read())
            else:
                name = f"{index:06d}{Path(image).suffix.lower() or '.png'}"
                shutil.copyfile(image, self.folder / name)
        else:
            name = f"{index:06d}.png"
            (image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))).save(self.folder / name)
        self.done[index] = name
        return name


def _annotation(task: dict, size):
    """The task's annotation (parsed from ``target_text`` when the item only has the raw text)."""
    if task.get("annotation") is not None:
        return task["annotation"]
    return get_task(task["task"]).decode_output(task["target_text"], size)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_jsonl(dataset, out_file, images: str = "copy") -> int:
    """florence JSON Lines of every sample, images beside ``out_file``; returns the number of lines."""
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    place = _Images(out_file.parent, images)
    lines = []
    for index, item, task in samples_of(dataset):
        record = dict(image=place(index, item["image"]), task=task["task"])
        if task.get("text_input") is not None:
            record["text_input"] = task["text_input"]
        if task.get("annotation") is not None:
            record["annotation"] = task["annotation"]
        else:
            record["target"] = task["target_text"]
        lines.append(json.dumps(_jsonable(record)))
    write_text(out_file, "".join(line + "\n" for line in lines))  # whole or not at all (a kill mid-write)
    return len(lines)


def write_maestro(dataset, folder, split: str = "train", images: str = "copy") -> Path:
    """``folder/<split>/annotations.jsonl`` in Roboflow's / maestro's form; returns the file."""
    out = Path(folder) / split
    out.mkdir(parents=True, exist_ok=True)
    place, lines = _Images(out, images), []
    for index, item, task in samples_of(dataset):
        size, token, text_input = tuple(item["image_size"]), task["task"], task.get("text_input")
        given = "" if text_input is None else (text_input if isinstance(text_input, str)
                                               else QUANTIZER.box_tokens(text_input, size))
        target = task.get("target_text") or get_task(token).encode_target(task["annotation"], size)
        lines.append(json.dumps(dict(image=place(index, item["image"]), prefix=token + given, suffix=target)))
    write_text(out / "annotations.jsonl", "".join(line + "\n" for line in lines))
    return out / "annotations.jsonl"


def write_coco(dataset, out_file, images: str = "copy", tasks=("<OD>",)) -> dict:
    """A COCO instances json of the samples of ``tasks`` (tasks whose output is boxes: ``<OD>``,
    ``<DENSE_REGION_CAPTION>``, ``<REGION_PROPOSAL>``, ``<CAPTION_TO_PHRASE_GROUNDING>``,
    ``<OPEN_VOCABULARY_DETECTION>``, a plugin's box task), images beside it; categories are the labels
    in order of first appearance (ids from 1), an annotation carries ``score`` where the sample's
    labels have scores. Returns the json written."""
    chosen = {get_task(t).token: get_task(t) for t in tasks}
    unknown = [t for t, task in chosen.items() if "box" not in task.region_kinds]
    if unknown:
        raise ValueError(f"write_coco writes box tasks (outputs whose regions are boxes: Task.region_kinds), "
                         f"not {unknown}")
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    place = _Images(out_file.parent, images)
    images_out, annotations, categories = {}, [], {}
    for index, item, task in samples_of(dataset):
        if task["task"] not in chosen:
            continue
        (w, h) = size = tuple(item["image_size"])
        if index not in images_out:
            images_out[index] = dict(id=len(images_out) + 1, file_name=place(index, item["image"]), width=w, height=h)
        regions = [r for r in chosen[task["task"]].regions(_annotation(task, size)) if r.kind == "box"]
        for region in regions:
            x1, y1, x2, y2 = (float(v) for v in region.coords)
            category = categories.setdefault(region.label, len(categories) + 1)
            record = dict(id=len(annotations) + 1, image_id=images_out[index]["id"], category_id=category,
                          bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1), iscrowd=0, segmentation=[])
            if region.score is not None:
                record["score"] = float(region.score)
            annotations.append(record)
    coco = dict(images=list(images_out.values()), annotations=annotations,
                categories=[dict(id=i, name=name) for name, i in categories.items()])
    write_text(out_file, json.dumps(coco))
    return coco

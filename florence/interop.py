"""Outputs for other libraries: :func:`to_supervision` gives a ``supervision.Detections`` (Roboflow's
annotators, trackers, dataset tools) of a box, quad or polygon task's output, with florence's
per-object scores as its confidence (supervision's own Florence-2 parser has none)."""
from __future__ import annotations

import numpy as np

__all__ = ["to_supervision"]



def to_supervision(result: dict, task: str | None = None, image_size=None):
    """``supervision.Detections`` of one task's output.

    Args:
        result: what the pipeline returned for an image (``{task: output}``, one task) or the output
            itself (then give ``task``).
        task: the task token, when ``result`` is the output itself.
        image_size: ``(width, height)``, needed for the masks of segmentation tasks.

    Boxes (``<OD>``, ``<DENSE_REGION_CAPTION>``, ``<CAPTION_TO_PHRASE_GROUNDING>``,
    ``<OPEN_VOCABULARY_DETECTION>``, ``<REGION_PROPOSAL>``) keep their labels in
    ``data["class_name"]``; ``<OCR_WITH_REGION>`` gives the quads' enclosing boxes with the quads in
    ``data["xyxyxyxy"]``; segmentation tasks give one mask (and its box) per instance, parts of fewer
    than 3 points left out, as supervision rasterises them. ``confidence`` holds the output's
    ``scores`` when it has them.
    """
    try:
        import supervision as sv
    except ImportError as e:
        raise ImportError("to_supervision needs the supervision package: pip install supervision") from e

    if task is None:
        if not isinstance(result, dict) or len(result) != 1 or not str(next(iter(result))).startswith("<"):
            raise ValueError("give task=, or a result holding exactly one task's output ({'<OD>': {...}})")
        task, result = next(iter(result.items()))
    elif isinstance(result, dict) and task in result:
        result = result[task]
    if not isinstance(result, dict):
        raise ValueError(f"{task} output is {type(result).__name__}, not boxes, quads or polygons")
    from .task import get_task

    kind = get_task(task).output_kind
    scores = result.get("scores")
    keep, masks, data = None, None, {}
    if kind in ("boxes", "open_vocabulary"):
        xyxy = np.asarray(result.get("bboxes", []), dtype=np.float32).reshape(-1, 4)
        if getattr(get_task(task), "labelled", True):  # region proposals have no labels
            labels = result.get("labels" if kind == "boxes" else "bboxes_labels", [])
            data["class_name"] = np.asarray(labels, dtype=str)
    elif kind == "quads":
        quads = np.asarray(result.get("quad_boxes", []), dtype=np.float32).reshape(-1, 4, 2)
        xyxy = np.concatenate([quads.min(1), quads.max(1)], axis=1) if len(quads) else np.zeros((0, 4), np.float32)
        data["class_name"] = np.asarray(result.get("labels", []), dtype=str)
        data["xyxyxyxy"] = quads
    elif kind == "polygons":
        if image_size is None:
            raise ValueError(f"{task}: give image_size=(width, height) for the masks")
        w, h = (int(v) for v in image_size)
        boxes, masks, keep = [], [], []
        for i, instance in enumerate(result.get("polygons", [])):
            parts = [np.reshape(p, (-1, 2)).astype(np.int32) for p in instance]
            parts = [p for p in parts if len(p) >= 3]
            if not parts:
                continue
            mask = np.zeros((h, w), dtype=bool)
            for part in parts:
                mask |= sv.polygon_to_mask(part, (w, h)).astype(bool)
            points = np.concatenate(parts)
            boxes.append([*points.min(0), *points.max(0)])
            masks.append(mask)
            keep.append(i)
        xyxy = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        masks = np.stack(masks) if masks else np.zeros((0, h, w), dtype=bool)
    else:
        raise ValueError(f"to_supervision converts box, quad and polygon tasks, not {task}")
    if len(xyxy) == 0:
        return sv.Detections.empty()
    confidence = None
    if scores is not None:
        confidence = np.asarray(scores if keep is None else [scores[i] for i in keep], dtype=np.float32)
    return sv.Detections(xyxy=xyxy, mask=masks, confidence=confidence, data=data)

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
    from .task import get_task

    task = get_task(task)
    regions = task.regions(result) if isinstance(result, dict) else []
    kinds = {r.kind for r in regions} or set(task.region_kinds[:1])
    if not isinstance(result, dict) or len(kinds) != 1 or not kinds <= {"box", "quad", "polygon"}:
        raise ValueError(f"to_supervision converts box, quad and polygon outputs, not {task.token}'s "
                         f"({type(result).__name__}{', ' + '/'.join(sorted(kinds)) if regions else ''})")
    kind = kinds.pop()
    scores = [r.score for r in regions]
    keep, masks, data = None, None, {}
    if kind == "box":
        xyxy = np.asarray([r.coords for r in regions], dtype=np.float32).reshape(-1, 4)
        if getattr(task, "labelled", True):  # region proposals have no labels
            data["class_name"] = np.asarray([r.label for r in regions], dtype=str)
    elif kind == "quad":
        quads = np.asarray([r.coords for r in regions], dtype=np.float32).reshape(-1, 4, 2)
        xyxy = np.concatenate([quads.min(1), quads.max(1)], axis=1) if len(quads) else np.zeros((0, 4), np.float32)
        data["class_name"] = np.asarray([r.label for r in regions], dtype=str)
        data["xyxyxyxy"] = quads
    else:
        if image_size is None:
            raise ValueError(f"{task.token}: give image_size=(width, height) for the masks")
        w, h = (int(v) for v in image_size)
        boxes, masks, keep = [], [], []
        for i, region in enumerate(regions):
            parts = [np.reshape(p, (-1, 2)).astype(np.int32) for p in region.parts()]
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
    if len(xyxy) == 0:
        return sv.Detections.empty()
    confidence = None
    if all(score is not None for score in scores):
        confidence = np.asarray(scores if keep is None else [scores[i] for i in keep], dtype=np.float32)
    return sv.Detections(xyxy=xyxy, mask=masks, confidence=confidence, data=data)

"""Keeping some of an output's regions, for any task: a score threshold and class-aware non-maximum
suppression, read and written through the task (:meth:`florence.task.Task.regions` /
:meth:`~florence.task.Task.with_regions`), so a plugin's output kind gets them too.

The pipeline's ``score_threshold=`` and ``nms=``, the server's ``score_threshold`` and the data
engine's ``ScoreThreshold`` and ``ClassAwareNMS`` rules are these functions. Text outputs, and
outputs without a score per region, pass through a threshold unchanged.

>>> select({"bboxes": [[0, 0, 9, 9], [1, 1, 9, 9]], "labels": ["cat", "cat"], "scores": [0.9, 0.8]},
...        "<OD>", score_threshold=0.5, nms=0.5)
{'bboxes': [[0, 0, 9, 9]], 'labels': ['cat'], 'scores': [0.9]}
"""
from __future__ import annotations

import math

from .task import get_task

__all__ = ["select", "check_threshold", "above", "nms_indices"]


def check_threshold(value, name: str, low_open: bool = False):
    """``value`` as a float in [0, 1] (``(0, 1]`` with ``low_open``), or None; a ValueError naming
    ``name`` otherwise."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (0 < v <= 1 if low_open else 0 <= v <= 1):
        raise ValueError(f"{name} must be a number in {'(0, 1]' if low_open else '[0, 1]'}, got {value!r}")
    return v


def above(scores, min_score: float) -> list[int]:
    """Indices of the scores at least ``min_score`` (all of them when some item has no score)."""
    if any(s is None for s in scores):
        return list(range(len(scores)))
    return [i for i, s in enumerate(scores) if s >= min_score]


def nms_indices(boxes, labels, scores, iou_threshold: float) -> list[int]:
    """Class-aware NMS (torchvision's ``batched_nms``): of items with the same label overlapping by
    IoU > ``iou_threshold``, the higher-scored stays (the earlier one when some item has no score).
    ``boxes``: (n, 4) pixel boxes. Returns the kept indices in their order."""
    import torch
    from torchvision.ops import batched_nms

    if len(boxes) == 0:
        return []
    if scores is None or any(s is None for s in scores):
        scores = [-i for i in range(len(boxes))]
    names = {name: i for i, name in enumerate(dict.fromkeys(map(str, labels)))}
    kept = batched_nms(torch.as_tensor(boxes, dtype=torch.float64), torch.tensor(scores, dtype=torch.float64),
                       torch.tensor([names[str(name)] for name in labels]), iou_threshold)
    return sorted(kept.tolist())


def select(output, task, *, score_threshold: float | None = None, nms: float | None = None):
    """``task``'s ``output`` with the regions scored below ``score_threshold`` dropped, then
    class-aware NMS at IoU ``nms`` (each off when None). Regions keep their order."""
    score_threshold = check_threshold(score_threshold, "score_threshold")
    nms = check_threshold(nms, "nms", low_open=True)
    if (score_threshold is None and nms is None) or not isinstance(output, dict):
        return output
    task = get_task(task)
    regions = task.regions(output)
    if not regions:
        return output
    if score_threshold is not None:
        regions = [regions[i] for i in above([r.score for r in regions], score_threshold)]
    if nms is not None:
        keep = nms_indices([r.box() for r in regions], [r.label for r in regions], [r.score for r in regions], nms)
        regions = [regions[i] for i in keep]
    return task.with_regions(output, regions)

"""Consensus of several annotators (the data engine's first step: several models' labels of one
image merged into one, spec "Data engine"), by weighted box fusion with votes.

Region items of all annotators with the same label are clustered greedily in order of score: an item
joins the cluster whose fused box overlaps it most (IoU >= ``iou_threshold``), else starts one. A
cluster stays when at least ``min_votes`` different annotators are in it; its box is the score-weighted
mean of its boxes (quads and polygons, which have no mean, keep the best-scored member), its score the
annotators' best scores in it, weighted, summed and divided by the sum of all weights (so an item found
by one of three equal annotators with score 0.9 gets 0.3). Texts (captions, OCR) are voted: the text
most annotators gave verbatim stays when at least ``min_votes`` gave it.

Why not ``ensemble-boxes``' WBF: it returns no vote counts (so "at least k agree" cannot be asked), works on
boxes only, and pulls numba and pandas in; this is one function over the published output formats.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from ..evaluation.functions import box_iou
from ..registry import LABEL_MERGERS
from .filters import _boxes, _items_key

__all__ = ["Consensus", "build_merger"]


@LABEL_MERGERS.register_module()
class Consensus:
    """Merge the outputs of one image and task from several annotators (see the module's text).

    Args:
        min_votes: how many different annotators must agree on an item (or a text).
        iou_threshold: boxes of one label overlapping at least this much are the same object.
        weights: one weight per annotator (default: equal).
    """

    def __init__(self, min_votes: int = 2, iou_threshold: float = 0.55, weights=None):
        self.min_votes, self.iou_threshold = int(min_votes), float(iou_threshold)
        self.weights = None if weights is None else [float(w) for w in weights]
        if self.min_votes < 1 or not 0 < self.iou_threshold <= 1:
            raise ValueError(f"Consensus needs min_votes >= 1 and 0 < iou_threshold <= 1, got {min_votes}, "
                             f"{iou_threshold}")
        if self.weights is not None and (not self.weights or min(self.weights) < 0 or not sum(self.weights) > 0):
            raise ValueError(f"Consensus weights must be numbers >= 0 with a positive sum, got {weights}")

    def __call__(self, outputs: list, task: str):
        """One output from ``outputs`` (one per annotator, ``None`` where one gave nothing), or ``None``
        when nothing reaches ``min_votes``."""
        weights = self.weights or [1.0] * len(outputs)
        if len(weights) != len(outputs):
            raise ValueError(f"Consensus has {len(weights)} weights for {len(outputs)} annotators")
        given = [(a, o) for a, o in enumerate(outputs) if o is not None]
        if not given:
            return None
        if all(isinstance(o, str) for _, o in given):
            text, votes = Counter(o for _, o in given).most_common(1)[0]
            return text if votes >= self.min_votes else None
        keys = {_items_key(o) for _, o in given if _items_key(o) is not None}
        kinds = {key for key, _ in keys}
        if len(kinds) > 1 or not all(isinstance(o, dict) for _, o in given):
            raise ValueError(f"Consensus merges outputs of one kind; the annotators of {task} gave {sorted(kinds)}")
        if not keys:  # every annotator found nothing
            return given[0][1]
        key, label_key = next(iter(keys))
        return self._fuse(given, weights, key, label_key)

    def _fuse(self, given, weights, key, label_key) -> dict:
        items = []  # (score, annotator, label, enclosing box, item)
        for a, output in given:
            found = _items_key(output)
            if found is None:
                continue
            n = len(output[key])
            labels = output.get(found[1]) or [""] * n
            scores = output.get("scores") if len(output.get("scores") or []) == n else [1.0] * n
            for box, label, score, item in zip(_boxes(output, key), labels, scores, output[key]):
                items.append((float(score), a, str(label), box, item))
        items.sort(key=lambda t: -t[0])
        clusters = []  # dict(label, members, box)
        for score, a, label, box, item in items:
            best, best_iou = None, self.iou_threshold
            for c in clusters:
                if c["label"] == label:
                    iou = box_iou(c["box"], box)
                    if iou >= best_iou:
                        best, best_iou = c, iou
            if best is None:
                clusters.append(dict(label=label, members=[(score, a, box, item)], box=box))
                continue
            best["members"].append((score, a, box, item))
            w = np.asarray([s * weights[m] for s, m, _, _ in best["members"]]) + 1e-12
            best["box"] = (np.stack([b for _, _, b, _ in best["members"]]) * w[:, None]).sum(0) / w.sum()
        total, out = sum(weights), []
        for c in clusters:
            best_of = {}
            for s, a, _, _ in c["members"]:
                best_of[a] = max(best_of.get(a, 0.0), s)
            if len(best_of) < self.min_votes:
                continue
            fused = sum(weights[a] * s for a, s in best_of.items()) / total
            item = [float(v) for v in c["box"]] if key == "bboxes" else c["members"][0][3]
            out.append((fused, item, c["label"]))
        out.sort(key=lambda t: -t[0])
        return {key: [i for _, i, _ in out], label_key or "labels": [label for _, _, label in out],
                "scores": [round(s, 4) for s, _, _ in out]}


def build_merger(cfg):
    """A merger from its config entry (``dict(type="Consensus", min_votes=2)``); callables and ``None``
    pass through."""
    return cfg if cfg is None or callable(cfg) else LABEL_MERGERS.build(cfg)

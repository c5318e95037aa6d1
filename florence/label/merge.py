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
from ..task import Shape, get_task
from .filters import regions_of

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
        if not all(isinstance(o, dict) for _, o in given):
            raise ValueError(f"Consensus merges outputs of one kind; the annotators of {task} gave text and regions")
        expected = set(get_task(task).output_keys) | {"scores"}
        foreign = sorted({k for _, o in given for k in o if k not in expected})
        if foreign:
            raise ValueError(f"Consensus merges outputs of one kind; the annotators of {task} gave keys {foreign} "
                             f"its outputs do not have ({sorted(expected)})")
        regions = [(a, regions_of(o, task)) for a, o in given]
        kinds = {r.kind for _, rs in regions for r in rs}
        if len(kinds) > 1:
            raise ValueError(f"Consensus merges outputs of one kind; the annotators of {task} gave {sorted(kinds)}")
        if not kinds:  # every annotator found nothing
            return given[0][1]
        return self._fuse(regions, weights, get_task(task))

    def _fuse(self, regions, weights, task) -> dict:
        items = []  # (score, annotator, label, enclosing box, region)
        for a, rs in regions:
            scored = all(r.score is not None for r in rs)
            for r in rs:
                items.append((float(r.score) if scored else 1.0, a, r.label, np.asarray(r.box()), r))
        items.sort(key=lambda t: -t[0])
        clusters = []  # dict(label, members, box)
        for score, a, label, box, region in items:
            best, best_iou = None, self.iou_threshold
            for c in clusters:
                if c["label"] == label:
                    iou = box_iou(c["box"], box)
                    if iou >= best_iou:
                        best, best_iou = c, iou
            if best is None:
                clusters.append(dict(label=label, members=[(score, a, box, region)], box=box))
                continue
            best["members"].append((score, a, box, region))
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
            first = c["members"][0][3]  # boxes: the fused box; quads and polygons: the best-scored member
            coords = [float(v) for v in c["box"]] if first.kind == "box" else first.coords
            out.append((fused, Shape(first.kind, coords, c["label"], round(fused, 4))))
        out.sort(key=lambda t: -t[0])
        merged = task.with_regions({}, [shape for _, shape in out])
        merged["scores"] = [shape.score for _, shape in out]
        return merged


def build_merger(cfg):
    """A merger from its config entry (``dict(type="Consensus", min_votes=2)``); callables and ``None``
    pass through."""
    return cfg if cfg is None or callable(cfg) else LABEL_MERGERS.build(cfg)

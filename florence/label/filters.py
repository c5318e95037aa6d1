"""Filters of the data engine: each rule takes one task output and returns what is kept (``None``:
drop the sample), as Florence-2's data engine filters its annotations (spec, "Data engine"): regions
below a confidence, overlapping duplicates (class-aware non-maximum suppression), boxes too small or
covering the whole image, and texts naming too many objects or saying too little.

A rule is a config entry (``dict(type="ScoreThreshold", min_score=0.3)``) and can be any callable
``rule(output, task, image_size) -> output | None``; :func:`apply_filters` runs a list of them and
counts, per rule, the items (boxes, quads, polygons) and whole samples each removed.
"""
from __future__ import annotations

import re
import time

import numpy as np

from .._lazy import named
from ..regions import above, nms_indices
from ..registry import LABEL_FILTERS
from ..task import get_task

__all__ = ["ScoreThreshold", "ClassAwareNMS", "MinBoxSize", "WholeImageBoxes", "KnownLabels", "TooManyObjects",
           "TextComplexity", "apply_filters", "build_filters", "content_words"]

def regions_of(output, task) -> list:
    """The regions of ``task``'s ``output`` (:meth:`florence.task.Task.regions`; none for text)."""
    return get_task(task).regions(output) if isinstance(output, dict) else []


def enclosing_boxes(regions) -> np.ndarray:
    """(n, 4) enclosing boxes of regions (boxes, quads, polygons)."""
    return np.asarray([r.box() for r in regions], dtype=np.float64).reshape(-1, 4)


class _RegionRule:
    """A rule that keeps some items of a region output and leaves text outputs alone."""

    def keep(self, boxes, labels, scores, image_size) -> list[int]:
        """The indices of the items to keep, in their order: ``boxes`` (n, 4) enclosing boxes in pixels,
        ``labels`` and ``scores`` per item (``scores`` None when the output has none), ``image_size``
        (width, height)."""
        raise NotImplementedError

    def __call__(self, output, task, image_size):
        regions = regions_of(output, task)
        if not regions:
            return output
        labels = [r.label for r in regions]
        scores = [r.score for r in regions]
        scores = scores if all(x is not None for x in scores) else None
        keep = self.keep(enclosing_boxes(regions), labels, scores, image_size)
        return get_task(task).with_regions(output, [regions[i] for i in keep])


@LABEL_FILTERS.register_module()
class ScoreThreshold(_RegionRule):
    """Drop items whose score is below ``min_score`` (items of an output without scores stay):
    :func:`florence.regions.above`, as the pipeline's ``score_threshold=``."""

    def __init__(self, min_score: float = 0.3):
        self.min_score = float(min_score)

    def keep(self, boxes, labels, scores, image_size):
        return list(range(len(boxes))) if scores is None else above(scores, self.min_score)


@LABEL_FILTERS.register_module()
class ClassAwareNMS(_RegionRule):
    """Non-maximum suppression per label (torchvision's ``batched_nms``): of items with the same
    label overlapping by IoU > ``iou_threshold``, the higher-scored one stays (the first one without
    scores). Kept items stay in their order: :func:`florence.regions.nms_indices`, as the
    pipeline's ``nms=``."""

    def __init__(self, iou_threshold: float = 0.7):
        self.iou_threshold = float(iou_threshold)

    def keep(self, boxes, labels, scores, image_size):
        return nms_indices(boxes, labels, scores, self.iou_threshold)


@LABEL_FILTERS.register_module()
class MinBoxSize(_RegionRule):
    """Drop items whose enclosing box is narrower or lower than ``min_size`` pixels."""

    def __init__(self, min_size: float = 4.0):
        self.min_size = float(min_size)

    def keep(self, boxes, labels, scores, image_size):
        return [i for i, (x1, y1, x2, y2) in enumerate(boxes) if x2 - x1 >= self.min_size and y2 - y1 >= self.min_size]


@LABEL_FILTERS.register_module()
class WholeImageBoxes(_RegionRule):
    """Drop items whose box covers at least ``max_coverage`` of the image (a detector's "the whole
    picture" answer)."""

    def __init__(self, max_coverage: float = 0.95):
        self.max_coverage = float(max_coverage)

    def keep(self, boxes, labels, scores, image_size):
        area = float(image_size[0]) * float(image_size[1])
        return [i for i, (x1, y1, x2, y2) in enumerate(boxes) if (x2 - x1) * (y2 - y1) < self.max_coverage * area]


@LABEL_FILTERS.register_module()
class KnownLabels(_RegionRule):
    """Drop items whose label is not one of ``labels`` (a list, or ``"module:function"`` returning
    one): the ontology a dataset keeps, e.g. the classes a training head knows."""

    def __init__(self, labels):
        if isinstance(labels, str):
            labels = named(labels)()
        self.labels = frozenset(map(str, labels))
        if not self.labels:
            raise ValueError("KnownLabels needs at least one label")

    def keep(self, boxes, labels, scores, image_size):
        return [i for i, name in enumerate(labels) if str(name) in self.labels]


_STOP = frozenset("""a an the and or but of in on at to for with by from as is are was were be been being it its this
that these those there here which who whom whose what while into onto over under near next up down out off than then
also very some any each other another such can could would should will may might has have had do does did not no
image picture photo shows showing shown see seen""".split())


def content_words(text: str) -> int:
    """The default text complexity without spaCy: the number of distinct words of 3+ letters that
    are not stop words (articles, prepositions, auxiliaries, "image", "shows", ...)."""
    return len({w for w in re.findall(r"[a-z]{3,}", text.lower()) if w not in _STOP})


def _spacy_objects_and_complexity(nlp, text: str) -> tuple[int, int]:
    doc = nlp(text)
    objects = len(list(doc.noun_chunks))
    complexity = objects + sum(t.pos_ in ("VERB", "ADJ", "ADV") for t in doc)
    return objects, complexity


def _scorer(scorer):
    """(objects, complexity) of a text: a ``"module:function"`` or callable returning both, else
    spaCy's noun chunks (objects) and noun chunks + verbs, adjectives and adverbs (complexity) when
    ``scorer`` names an installed spaCy pipeline, else content words for both."""
    if callable(scorer):
        return scorer
    if isinstance(scorer, str) and ":" in scorer:
        return named(scorer)
    if scorer:  # a spaCy pipeline name, e.g. "en_core_web_sm"
        import spacy

        nlp = spacy.load(scorer)
        return lambda text: _spacy_objects_and_complexity(nlp, text)
    return lambda text: (content_words(text), content_words(text))


@LABEL_FILTERS.register_module()
class TooManyObjects:
    """Drop the sample when it names more than ``max_objects`` objects: a region output's items, or
    a text's objects (``scorer``: see :class:`TextComplexity`; default: its content words)."""

    def __init__(self, max_objects: int = 50, scorer=None):
        self.max_objects, self.score = int(max_objects), _scorer(scorer)

    def __call__(self, output, task, image_size):
        regions = regions_of(output, task)
        if regions:
            count = len(regions)
        elif isinstance(output, str):
            count = self.score(output)[0]
        else:
            return output
        return None if count > self.max_objects else output


@LABEL_FILTERS.register_module()
class TextComplexity:
    """Drop a text output (a caption) whose complexity is below ``min_complexity``. ``scorer``:
    ``None`` (default: the number of distinct content words, :func:`content_words`), the name of an
    installed spaCy pipeline (``"en_core_web_sm"``: noun chunks + verbs, adjectives and adverbs), or a
    callable / ``"module:function"`` returning ``(objects, complexity)``. Region outputs stay."""

    def __init__(self, min_complexity: int = 3, scorer=None):
        self.min_complexity, self.score = int(min_complexity), _scorer(scorer)

    def __call__(self, output, task, image_size):
        if not isinstance(output, str):
            return output
        return output if self.score(output)[1] >= self.min_complexity else None


def build_filters(cfgs) -> list:
    """Rules from config entries (``dict(type=..., ...)``; callables pass through)."""
    return [c if callable(c) else LABEL_FILTERS.build(c) for c in (cfgs or [])]


def _n_items(output, task) -> int:
    """The number of boxes, quads or polygons of a region output (0 for text)."""
    return len(regions_of(output, task))


def rule_name(rule) -> str:
    """How counts and reports name a rule: its ``name``, else its class."""
    return getattr(rule, "name", type(rule).__name__)


def apply_filters(rules, output, task, image_size, counts: dict, seconds: dict | None = None):
    """``output`` through every rule in turn (``None`` once a rule drops the sample); ``counts``
    (rule name -> {"items": items removed, "samples": samples dropped}) is updated, and ``seconds``
    (rule name -> seconds spent) when given."""
    for rule in rules:
        if output is None:
            return None
        name = rule_name(rule)
        c = counts.setdefault(name, {"items": 0, "samples": 0})
        before = _n_items(output, task)
        started = time.perf_counter()
        output = rule(output, task, image_size)
        if seconds is not None:
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
        if output is None:
            c["samples"] += 1
        else:
            c["items"] += before - _n_items(output, task)
    return output

"""What the output kinds share, for a plugin's own kind too (``docs/extending.md``): annotation checks
(:func:`checked_pairs`), scores of parsed items (:func:`with_scores`), random examples and the
regions view of an output (:func:`region_list`, :func:`put_regions`)."""
from __future__ import annotations

import math
import random

from ...parsing import Item
from ..base import Shape, TaskError

WORDS = ("red", "blue", "green", "square", "circle", "triangle", "cat", "dog", "car", "tree", "sign",
         "person", "house", "boat", "lamp", "chair", "cup", "book", "bird", "flower")


def _text(token: str, value, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise TaskError(f"{token}: annotation must be {what}, got {type(value).__name__}")
    return value


def _label(token: str, label) -> str:
    label = _text(token, label, "a label string")
    if "<" in label:
        raise TaskError(f"{token}: labels must not contain '<' (it starts a special token): {label!r}")
    return label.strip()


def checked_pairs(token: str, annotation, coords_key: str, labels_key: str, n_coords: int | None):
    """Validated (coords, label) pairs from ``{coords_key: [...], labels_key: [...]}``: ``n_coords``
    finite numbers each (``None``: polygon parts), labels without ``<``; TaskError naming the problem."""
    if not isinstance(annotation, dict) or coords_key not in annotation:
        raise TaskError(f"{token}: annotation must be a dict with {coords_key!r} and {labels_key!r}, "
                        f"got {annotation!r:.200}")
    coords = list(annotation[coords_key])
    labels = list(annotation.get(labels_key) or [""] * len(coords))
    if len(labels) != len(coords):
        raise TaskError(f"{token}: {len(coords)} {coords_key} but {len(labels)} {labels_key}")
    for i, c in enumerate(coords):
        flat = _flat(c) if n_coords is not None else [x for part in c for x in _flat(part)]
        if n_coords is not None and len(flat) != n_coords:
            raise TaskError(f"{token}: {coords_key}[{i}] must have {n_coords} numbers, got {len(flat)}")
        if not all(math.isfinite(x) for x in flat):
            raise TaskError(f"{token}: {coords_key}[{i}] has a non-finite coordinate: {c}")
    return list(zip(coords, (_label(token, label) for label in labels)))


def _flat(c) -> list[float]:
    try:
        return [float(x) for x in c]
    except (TypeError, ValueError) as e:
        raise TaskError(f"coordinates must be numbers, got {c!r:.100}") from e


def with_scores(result: dict, items: list[Item]) -> dict:
    """``result`` with ``"scores"``: the parsed items' scores, when every item has one."""
    if items and all(it.score is not None for it in items):
        result["scores"] = [it.score for it in items]
    return result


def random_box(rng: random.Random, size) -> list[float]:
    """A random box ``[x1, y1, x2, y2]`` inside an image of ``size`` (width, height)."""
    w, h = size
    x1, y1 = rng.uniform(0, w * 0.8), rng.uniform(0, h * 0.8)
    return [x1, y1, rng.uniform(x1 + 1, w), rng.uniform(y1 + 1, h)]


def random_polygon(rng: random.Random, size, n: int) -> list[float]:
    """A random regular ``n``-gon ``[x, y, ...]`` inside an image of ``size``."""
    w, h = size
    cx, cy, r = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, 0.25 * min(w, h)
    return [v for k in range(n) for v in (cx + r * math.cos(2 * math.pi * k / n),
                                          cy + r * math.sin(2 * math.pi * k / n))]


def random_phrase(rng: random.Random, n_words: int = 2) -> str:
    """``n_words`` random words of :data:`WORDS`."""
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def _listed(output, key) -> list:
    value = output.get(key) if isinstance(output, dict) else None
    return list(value) if isinstance(value, (list, tuple)) else []


def region_list(output, kind: str, coords_key: str, labels_key: str) -> list[Shape]:
    """The ``kind`` regions of ``output[coords_key]`` with their labels (``""`` where missing) and
    scores (when there is one per region)."""
    coords = _listed(output, coords_key)
    labels = _listed(output, labels_key)
    scores = _listed(output, "scores")
    scores = scores if len(scores) == len(coords) else [None] * len(coords)
    labels = labels + [""] * (len(coords) - len(labels))
    return [Shape(kind, c, "" if label is None else str(label), s) for c, label, s in zip(coords, labels, scores)]


def put_regions(output, regions: list[Shape], keys: dict) -> dict:
    """``output`` with ``keys`` (region kind -> (coordinates key, labels key)) filled from
    ``regions``, and its scores replaced by theirs when it had scores and every region has one."""
    out = dict(output) if isinstance(output, dict) else {}
    for kind, (coords_key, labels_key) in keys.items():
        mine = [r for r in regions if r.kind == kind]
        out[coords_key] = [r.coords for r in mine]
        out[labels_key] = [r.label for r in mine]
    if "scores" in out and all(r.score is not None for r in regions):
        out["scores"] = [r.score for r in regions]
    return out

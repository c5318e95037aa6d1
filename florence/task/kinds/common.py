"""What the output kinds share: checks of annotations, scores of parsed items, random examples."""
from __future__ import annotations

import math
import random

from ...parsing import Item
from ..base import TaskError

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


def _pairs(token: str, annotation, coords_key: str, labels_key: str, n_coords: int | None):
    """Validated (coords, label) pairs from ``{coords_key: [...], labels_key: [...]}``."""
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


def _with_scores(result: dict, items: list[Item]) -> dict:
    if items and all(it.score is not None for it in items):
        result["scores"] = [it.score for it in items]
    return result


def _rand_box(rng: random.Random, size) -> list[float]:
    w, h = size
    x1, y1 = rng.uniform(0, w * 0.8), rng.uniform(0, h * 0.8)
    return [x1, y1, rng.uniform(x1 + 1, w), rng.uniform(y1 + 1, h)]


def _rand_polygon(rng: random.Random, size, n: int) -> list[float]:
    w, h = size
    cx, cy, r = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, 0.25 * min(w, h)
    return [v for k in range(n) for v in (cx + r * math.cos(2 * math.pi * k / n),
                                          cy + r * math.sin(2 * math.pi * k / n))]


def _phrase(rng: random.Random, n_words: int = 2) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))

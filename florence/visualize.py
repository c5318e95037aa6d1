"""Draw task results on images: boxes, quads, polygons and their labels, or the text."""
from __future__ import annotations

import colorsys
import math

from PIL import Image, ImageDraw

__all__ = ["draw_result"]


def _colour(i: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _label(draw: ImageDraw.ImageDraw, xy, text: str, colour):
    if not text:
        return
    x, y = xy
    left, top, right, bottom = draw.textbbox((x, y), text)
    y = max(0, y - (bottom - top) - 4)
    left, top, right, bottom = draw.textbbox((x + 2, y + 2), text)
    draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=colour)
    draw.text((x + 2, y + 2), text, fill="white")


def _points(coords) -> list[tuple[float, float]]:
    """(x, y) pairs of a flat coordinate list; empty if anything is not a finite number."""
    try:
        v = [float(c) for c in coords]
    except (TypeError, ValueError):
        return []
    if not all(math.isfinite(c) for c in v):
        return []
    return [(v[j], v[j + 1]) for j in range(0, len(v) - 1, 2)]


def draw_result(image: Image.Image, result, task=None) -> Image.Image:
    """A copy of ``image`` (RGB) with ``result`` drawn on it: the ``{task_token: output}`` dict the
    pipeline returns, or one task's output (with ``task``; without, the output kind whose keys it
    has: :func:`florence.task.kinds.kind_of`). Regions (:meth:`Task.regions`: boxes, quads,
    polygons) are drawn with their labels, text outputs written in a band at the top; malformed
    coordinates are skipped."""
    from .task import get_task
    from .task.kinds import kind_of

    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    if task is None and isinstance(result, dict) and len(result) == 1 and str(next(iter(result))).startswith("<"):
        task, result = next(iter(result.items()))
    if isinstance(result, str):
        _label(draw, (0, 0), result[:200], (40, 40, 40))
        return canvas
    task = get_task(task) if task is not None else kind_of(result)
    for k, region in enumerate(task.regions(result)):
        colour = _colour(k)
        parts = [pts for pts in map(_points, region.parts()) if len(pts) >= 2]
        if not parts:
            continue
        if region.kind == "box":  # malformed model output may have x2 < x1: draw the box it spans
            if len(parts[0]) != 2:
                continue
            (x1, y1), (x2, y2) = parts[0]
            draw.rectangle((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), outline=colour, width=3)
            _label(draw, (min(x1, x2), min(y1, y2)), region.label, colour)
            continue
        for pts in parts:
            draw.polygon(pts, outline=colour, width=3)
        _label(draw, parts[0][0], region.label, colour)
    return canvas

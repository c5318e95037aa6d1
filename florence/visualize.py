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


def draw_result(image: Image.Image, result) -> Image.Image:
    """A copy of ``image`` (RGB) with ``result`` drawn on it: a task output (or the
    ``{task_token: output}`` dict the pipeline returns). Any output with ``bboxes``,
    ``quad_boxes`` or ``polygons`` (and their labels) is drawn; text outputs are written in a band
    at the top."""
    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    if isinstance(result, dict) and len(result) == 1 and str(next(iter(result))).startswith("<"):
        result = next(iter(result.values()))
    if isinstance(result, str):
        _label(draw, (0, 0), result[:200], (40, 40, 40))
        return canvas
    if not isinstance(result, dict):
        return canvas
    k = 0
    for box, label in zip(result.get("bboxes") or [], result.get("labels", result.get("bboxes_labels")) or []):
        pts = _points(box)
        if len(pts) == 2:  # malformed model output may have x2 < x1: draw the box it spans
            (x1, y1), (x2, y2) = pts
            draw.rectangle((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), outline=_colour(k), width=3)
            _label(draw, (min(x1, x2), min(y1, y2)), str(label), _colour(k))
        k += 1
    for quad, label in zip(result.get("quad_boxes") or [], result.get("labels") or []):
        pts = _points(quad)
        if len(pts) >= 2:
            draw.polygon(pts, outline=_colour(k), width=3)
            _label(draw, pts[0], str(label), _colour(k))
        k += 1
    for parts, label in zip(result.get("polygons") or [], result.get("labels", result.get("polygons_labels")) or []):
        first = None
        for part in parts or []:
            pts = _points(part)
            if len(pts) >= 2:
                draw.polygon(pts, outline=_colour(k), width=3)
                first = first or pts[0]
        if first:
            _label(draw, first, str(label), _colour(k))
        k += 1
    return canvas

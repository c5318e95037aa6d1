"""Draw task results on images: boxes, quads, polygons and their labels, or the text."""
from __future__ import annotations

import colorsys

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
    for box, label in zip(result.get("bboxes", []), result.get("labels", result.get("bboxes_labels", []))):
        draw.rectangle([float(v) for v in box], outline=_colour(k), width=3)
        _label(draw, box[:2], label, _colour(k))
        k += 1
    for quad, label in zip(result.get("quad_boxes", []), result.get("labels", [])):
        pts = [(float(quad[j]), float(quad[j + 1])) for j in range(0, 8, 2)]
        draw.polygon(pts, outline=_colour(k), width=3)
        _label(draw, pts[0], label, _colour(k))
        k += 1
    for parts, label in zip(result.get("polygons", []), result.get("labels", result.get("polygons_labels", []))):
        for part in parts:
            pts = [(float(part[j]), float(part[j + 1])) for j in range(0, len(part) - 1, 2)]
            if len(pts) >= 2:
                draw.polygon(pts, outline=_colour(k), width=3)
        if parts and len(parts[0]) >= 2:
            _label(draw, (parts[0][0], parts[0][1]), label, _colour(k))
        k += 1
    return canvas

"""Location tokens: the one place the coordinate layout is defined.

Coordinates are relative to the ORIGINAL image size (W, H), 1000 bins per axis:

- quantize:   q = clamp(floor(x / (W / 1000)), 0, 999)   (y with H); never ``<loc_1000>``, and
  coordinates outside the image clamp to the border bins;
- dequantize: x = (q + 0.5) * W / 1000, the bin centre (float; Microsoft's behaviour);
- a box is 4 tokens ``x1 y1 x2 y2``; an OCR quad 8 tokens (4 points clockwise from top-left);
  a polygon a run of ``x y`` pairs (an odd trailing value is dropped).

>>> q = Quantizer()
>>> q.quantize_box([10, 20, 300, 400], (640, 480))
[15, 41, 468, 833]
>>> q.box_tokens([10, 20, 300, 400], (640, 480))
'<loc_15><loc_41><loc_468><loc_833>'
"""
from __future__ import annotations

import re

import numpy as np

__all__ = ["Quantizer", "QUANTIZER", "NUM_BINS", "LOC_TOKEN", "loc_token"]

NUM_BINS = 1000
LOC_TOKEN = re.compile(r"<loc_(\d+)>")


def loc_token(q: int) -> str:
    return f"<loc_{int(q)}>"


class Quantizer:
    def __init__(self, num_bins: int = NUM_BINS):
        self.num_bins = num_bins

    def _scale(self, n: int, size) -> np.ndarray:
        w, h = size
        if w <= 0 or h <= 0:
            raise ValueError(f"image size must be positive, got {size}")
        return np.tile(np.asarray([w, h], dtype=np.float64), n) / self.num_bins  # bin width per coordinate

    def quantize(self, coords, size) -> list[int]:
        """Flat ``x, y, x, y, ...`` pixel coordinates -> bin indices (an odd trailing value is dropped)."""
        c = np.asarray(coords, dtype=np.float64).reshape(-1)
        c = c[: len(c) // 2 * 2]
        if not np.isfinite(c).all():
            raise ValueError(f"coordinates must be finite, got {coords}")
        q = np.floor(c / self._scale(len(c) // 2, size))
        return np.clip(q, 0, self.num_bins - 1).astype(np.int64).tolist()

    def dequantize(self, bins, size) -> list[float]:
        """Bin indices -> pixel coordinates at bin centres."""
        b = np.asarray(bins, dtype=np.float64).reshape(-1)
        b = b[: len(b) // 2 * 2]
        return ((b + 0.5) * self._scale(len(b) // 2, size)).tolist()

    # shapes: boxes (4), quads (8), polygons (any even count) share one implementation
    def quantize_box(self, box, size) -> list[int]:
        if len(box) != 4:
            raise ValueError(f"a box has 4 coordinates (x1, y1, x2, y2), got {len(box)}")
        return self.quantize(box, size)

    def quantize_quad(self, quad, size) -> list[int]:
        if len(np.asarray(quad).reshape(-1)) != 8:
            raise ValueError("a quad has 8 coordinates (4 points clockwise from top-left)")
        return self.quantize(quad, size)

    def quantize_polygon(self, polygon, size) -> list[int]:
        return self.quantize(polygon, size)

    def tokens(self, coords, size) -> str:
        """Pixel coordinates -> ``<loc_..>`` text."""
        return "".join(loc_token(q) for q in self.quantize(coords, size))

    def box_tokens(self, box, size) -> str:
        return "".join(loc_token(q) for q in self.quantize_box(box, size))

    def parse(self, text: str) -> list[int]:
        """All location bins in ``text``, in order (out-of-range tokens are skipped, never raised on)."""
        return [int(m) for m in LOC_TOKEN.findall(text) if int(m) < self.num_bins]


#: the published quantizer (1000 bins), shared by the tasks, the parsers, the processor and the writers
QUANTIZER = Quantizer()

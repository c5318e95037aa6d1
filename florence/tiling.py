"""Tiled inference of large images: the model reads every image at one fixed size (768 x 768 for the
published checkpoints), so small text and small objects on a large page are lost in the resize.
``pipe(image, task, tile=dict(size=768, overlap=0.2))`` runs the task on overlapping tiles of
``size`` x ``size`` pixels plus the whole image resized, maps each tile's regions back to the
image, and merges them (:func:`merge`):

1. pieces of one item cut by a tile border (regions touching a border between tiles) join: a box
   or polygon cut in two becomes one, and a text line cut in two joins its texts where the tiles'
   overlap read the same letters (``"THE CA"`` + ``"CAT"`` -> ``"THE CAT"``); a piece two tiles read
   is taken once;
2. duplicates (regions covering one another by ``iou`` of the smaller's area, as SAHI's
   post-processing matches them) are suppressed: a whole item seen inside a tile is kept first,
   then the whole image's, then joined pieces (for read text, joined pieces before the whole
   image's: they were read at full resolution), then lone pieces; higher scores first within each.

A task's regions tile when their coordinates are x, y pairs (boxes, quads, polygon parts).

The grid is SAHI's: tiles start every ``size * (1 - overlap)`` pixels and the last one is flush
with the image's edge. A task opts in through its regions (:meth:`florence.task.Task.regions`), so
a plugin's output kind tiles too; a text task can name the location task it is read from
(``Task.tiled_by``: ``<OCR>`` is ``<OCR_WITH_REGION>``'s lines in reading order).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

from .task import Shape, Task, TaskError

__all__ = ["Tiling", "check_tiling", "windows", "shifted", "merge", "join_text", "reading_order", "tiled_task"]

# a region closer than this fraction of the tile's side to a border between tiles is cut by it
CUT_MARGIN = 0.02


@dataclass(frozen=True)
class Tiling:
    """How a tiled call cuts an image: ``size`` x ``size`` pixel tiles overlapping by ``overlap`` of
    their side, plus the whole image resized when ``whole`` (large items no tile holds)."""
    size: int = 768
    overlap: float = 0.2
    whole: bool = True
    iou: float = 0.5  # duplicates: intersection over the smaller region's area at least this


def check_tiling(tile) -> Tiling | None:
    """A :class:`Tiling` from ``tile``: None (no tiling), a tile size, a dict of :class:`Tiling`'s
    fields or a Tiling; a ValueError naming the bad value otherwise."""
    if tile is None or tile is False:
        return None
    if isinstance(tile, Tiling):
        t = tile
    elif isinstance(tile, dict):
        unknown = set(tile) - {f.name for f in dataclasses.fields(Tiling)}
        if unknown:
            raise ValueError(f"tile= takes size, overlap, whole and iou, got {sorted(unknown)}")
        t = Tiling(**tile)
    elif _number(tile):
        t = Tiling(size=tile)
    else:
        raise ValueError(f"tile= must be a tile size, a dict(size=, overlap=) or None, got {tile!r:.100}")
    if not _number(t.size) or not math.isfinite(t.size) or t.size != int(t.size) or t.size < 16:
        raise ValueError(f"tile size must be a whole number of pixels >= 16, got {t.size!r}")
    if not _number(t.overlap) or not 0 <= t.overlap < 1:
        raise ValueError(f"tile overlap must be a fraction in [0, 1), got {t.overlap!r}")
    if not _number(t.iou) or not 0 < t.iou <= 1:
        raise ValueError(f"tile iou must be in (0, 1], got {t.iou!r}")
    if not isinstance(t.whole, bool):
        raise ValueError(f"tile whole must be True or False, got {t.whole!r}")
    return dataclasses.replace(t, size=int(t.size), overlap=float(t.overlap), iou=float(t.iou))


def _number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def tiled_task(task: Task) -> Task:
    """The task a tiled call of ``task`` runs on each tile: its own, or the one it is read from
    (``task.tiled_by``); a TaskError when tiles cannot be merged for it."""
    from .task import get_task

    run = get_task(task.tiled_by) if task.tiled_by else task
    if not run.region_kinds or run.input_kind == "region":
        why = "asks about one region of the image" if run.input_kind == "region" else "has no regions to merge"
        raise TaskError(f"{task.token} {why}: tile= applies to tasks that locate things in the whole image")
    return run


def _starts(length: int, size: int, step: int) -> list[int]:
    if length <= size:
        return [0]
    return sorted(set(range(0, length - size, step)) | {length - size})


def windows(image_size, tiling: Tiling) -> list[tuple[int, int, int, int]]:
    """The tiles of an image of ``image_size`` (width, height): ``(x1, y1, x2, y2)`` pixel windows,
    row by row; one window of the whole side where the image is no larger than a tile."""
    w, h = image_size
    step = max(1, round(tiling.size * (1 - tiling.overlap)))
    return [(x, y, min(x + tiling.size, w), min(y + tiling.size, h))
            for y in _starts(h, tiling.size, step) for x in _starts(w, tiling.size, step)]


def shifted(shape: Shape, dx: float, dy: float) -> Shape:
    """``shape`` moved by (dx, dy): a tile's region in the image's pixels. Coordinates are x, y pairs
    (boxes, quads, polygon parts); ValueError for a kind whose coordinates are not."""
    def move(flat):
        if len(flat) % 2:
            raise ValueError(f"cannot move a {shape.kind} whose coordinates are not x, y pairs: {flat!r:.100}")
        return [v + (dy if i % 2 else dx) for i, v in enumerate(flat)]

    coords = [move(p) for p in shape.coords] if shape.kind == "polygon" else move(shape.coords)
    return dataclasses.replace(shape, coords=coords)


@dataclass
class _Piece:
    shape: Shape
    box: list  # enclosing box in image pixels
    cut: frozenset  # the sides ("left", "top", "right", "bottom") a border between tiles cuts
    margin: float = 0.0  # how near a border a region is cut by it (pixels)
    rank: int = 0  # which goes first among duplicates (merge's step 2)


def _cut_sides(box, window, image_size) -> tuple[frozenset, float]:
    (x1, y1, x2, y2), (wx1, wy1, wx2, wy2) = box, window
    m = CUT_MARGIN * max(wx2 - wx1, wy2 - wy1)
    sides = {"left": wx1 > 0 and x1 <= wx1 + m, "top": wy1 > 0 and y1 <= wy1 + m,
             "right": wx2 < image_size[0] and x2 >= wx2 - m, "bottom": wy2 < image_size[1] and y2 >= wy2 - m}
    return frozenset(s for s, on in sides.items() if on), m


def _overlap_1d(a1, a2, b1, b2) -> float:
    """Overlap of two intervals over the shorter one's length."""
    inter = min(a2, b2) - max(a1, b1)
    return max(0.0, inter) / max(min(a2 - a1, b2 - b1), 1e-9)


def _ios(a, b) -> float:
    """Intersection of two boxes over the smaller one's area."""
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / max(smaller, 1e-9)


def _iou(a, b) -> float:
    inter = _ios(a, b) * min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(union, 1e-9)


def _joins(a: _Piece, b: _Piece, labels_read: bool) -> bool:
    """Whether ``a`` and ``b`` are two pieces of one item cut by the border between their tiles: of one
    kind (and label, unless read text), touching or overlapping (up to the cut margin apart: tiles
    that do not overlap leave a bin's gap), one cut on the side facing the other, on one line."""
    if a.shape.kind != b.shape.kind or not (labels_read or a.shape.label == b.shape.label):
        return False
    gap = max(a.margin, b.margin)
    if min(a.box[2], b.box[2]) + gap < max(a.box[0], b.box[0]) or \
            min(a.box[3], b.box[3]) + gap < max(a.box[1], b.box[1]):
        return False
    return any(("right" in p.cut and "left" in q.cut and p.box[0] < q.box[0]
                and _overlap_1d(p.box[1], p.box[3], q.box[1], q.box[3]) >= 0.5)  # side by side, one line
               or ("bottom" in p.cut and "top" in q.cut and p.box[1] < q.box[1]
                   and _overlap_1d(p.box[0], p.box[2], q.box[0], q.box[2]) >= 0.5)  # one above the other
               for p, q in ((a, b), (b, a)))


def join_text(a: str, b: str, min_overlap: int = 2) -> str:
    """``a`` then ``b``, read from two tiles that overlap: the longest end of ``a`` (``min_overlap``
    letters or more) that starts ``b`` is read once (``"THE CA"``, ``"CAT"`` -> ``"THE CAT"``);
    without one, a space between them."""
    for k in range(min(len(a), len(b)), min_overlap - 1, -1):
        if a.endswith(b[:k]):
            return a + b[k:]
    return f"{a} {b}".strip()


def _best(p: _Piece) -> float:
    return p.shape.score if p.shape.score is not None else 0.0


def _joined(pieces: list[_Piece], labels_read: bool, iou: float) -> _Piece:
    """One item from pieces of it: one reading of each piece (tiles overlapping in both directions
    read a piece twice: the better-scored stays), then the box or quad enclosing them, a polygon of
    all their parts; the labels joined along the line (texts) or the one label; the highest score
    (SAHI's merge)."""
    once: list[_Piece] = []
    for p in sorted(pieces, key=lambda p: -_best(p)):
        if not any(_iou(o.box, p.box) >= iou for o in once):
            once.append(p)
    x1, y1 = min(p.box[0] for p in once), min(p.box[1] for p in once)
    x2, y2 = max(p.box[2] for p in once), max(p.box[3] for p in once)
    along_x = x2 - x1 >= y2 - y1
    once.sort(key=lambda p: (p.box[0], p.box[1]) if along_x else (p.box[1], p.box[0]))
    first = once[0].shape
    label = first.label
    if labels_read:
        for p in once[1:]:
            label = join_text(label, p.shape.label)
    scores = [p.shape.score for p in once]
    score = None if any(s is None for s in scores) else max(scores)
    if first.kind == "polygon":
        coords = [part for p in once for part in p.shape.coords]
    elif first.kind == "quad":
        coords = [x1, y1, x2, y1, x2, y2, x1, y2]
    else:
        coords = [x1, y1, x2, y2]
    return _Piece(Shape(first.kind, coords, label, score), [x1, y1, x2, y2], frozenset())


def merge(tiles: list[tuple[list[Shape], tuple | None]], image_size, tiling: Tiling = Tiling(),
          labels_read: bool = False) -> list[Shape]:
    """One image's regions from its tiles' (each ``(regions in image pixels, window)``; window None
    for the whole image's): pieces cut by a border between tiles joined, duplicates suppressed (see
    the module), in reading order. ``labels_read``: the labels are text read inside the regions
    (OCR lines), so pieces of one line join their texts and duplicates need not share a label."""
    whole_rank, joined_rank = (2, 1) if labels_read else (1, 2)  # text: the full-resolution reading first
    pieces: list[_Piece] = []
    for regions, window in tiles:
        for shape in regions:
            try:
                box = shape.box()
            except ValueError:
                continue  # a region without points: nothing to place
            if window is None:
                pieces.append(_Piece(shape, box, frozenset(), rank=whole_rank))
            else:
                cut, margin = _cut_sides(box, window, image_size)
                pieces.append(_Piece(shape, box, cut, margin, rank=3 if cut else 0))
    # 1. pieces of one item, cut by the borders between tiles, join (transitively: a long line)
    cut = [p for p in pieces if p.cut]
    group = list(range(len(cut)))

    def root(i):
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for i in range(len(cut)):
        for j in range(i + 1, len(cut)):
            if _joins(cut[i], cut[j], labels_read):
                group[root(i)] = root(j)
    members: dict[int, list[_Piece]] = {}
    for i, p in enumerate(cut):
        members.setdefault(root(i), []).append(p)
    joined = [_joined(ps, labels_read, tiling.iou) for ps in members.values() if len(ps) > 1]
    for p in joined:
        p.rank = joined_rank
    pieces = [p for p in pieces if not p.cut] + joined + [ps[0] for ps in members.values() if len(ps) == 1]
    # 2. duplicates: whole items of tiles, then the whole image's and joined pieces (joined first for
    # read text), then lone pieces; higher scores first within each
    pieces.sort(key=lambda p: (p.rank, -_best(p)))
    kept: list[_Piece] = []
    for p in pieces:
        if not any((labels_read or k.shape.label == p.shape.label) and _ios(k.box, p.box) >= tiling.iou
                   for k in kept):
            kept.append(p)
    return reading_order([k.shape for k in kept])


def reading_order(regions: list[Shape]) -> list[Shape]:
    """``regions`` in reading order: lines top to bottom, each left to right. Regions go in order of
    their vertical centres; one is on the current line when it shares at least half of its height,
    or of the line's first region's, with that first region."""
    boxed = sorted(((r.box(), r) for r in regions), key=lambda br: (br[0][1] + br[0][3]) / 2)
    lines: list[list] = []
    for box, r in boxed:
        first = lines[-1][0][0] if lines else None
        if first is not None and _overlap_1d(first[1], first[3], box[1], box[3]) >= 0.5:
            lines[-1].append((box, r))
        else:
            lines.append([(box, r)])
    return [r for line in lines for _, r in sorted(line, key=lambda br: br[0][0])]

"""Generated text -> structured results: the parsers task plugins share.

The text is the decoder output decoded with special tokens kept (``</s><s>car<loc_52>...</s>``).
Parsers never raise on malformed text: a truncated or garbled tail, out-of-range ``<loc_N>``
(N >= 1000) or stray tokens just yield fewer items. Coordinates are pixels of the original image
at bin centres (floats; the transformers port truncates them to int).

``scores``, where given, holds one log-score per ``<loc_N>`` token of the text, in order (the
pipeline computes them: :func:`florence.generation.location_scores`); an item's score is the exp of
the mean over its location tokens. Scores whose count does not match the text's location tokens
are ignored.

The rules follow the published post-processing:

- boxes: a label (text without ``<``) followed by >= 4 location tokens; every 4 consecutive
  tokens are one box of that label; without labels (region proposals), any run of >= 4. Unlike
  the published parser, a label never starts inside a token (``<loc_1>..<loc_4>cat<loc_5>..``
  gives ``cat``, not ``loc_4>cat``). A box whose corners come inverted (``x2 < x1`` or ``y2 < y1``)
  is returned with its corners ordered, the rectangle the two points span: the published parser
  returns it as generated, an inverted box that no box metric or drawing can use, and dropping it
  would lose an object the model did locate. Well-formed outputs parse exactly as published;
- quads: any text followed by 8 location tokens (OCR with regions), four points kept in the order
  generated (a quad of rotated or mirrored text has no corner order to restore);
- polygons: runs of location / ``<sep>`` / ``<poly>`` / ``</poly>`` tokens; ``<poly>...</poly>``
  groups are instances, ``<sep>`` separates the parts of one instance, an odd trailing
  coordinate is dropped.
"""
from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field

from .processing.quantizer import LOC_TOKEN, NUM_BINS, QUANTIZER

__all__ = ["Item", "clean_text", "parse_boxes", "parse_quads", "parse_polygons"]

_SEQUENCE_MARKERS = re.compile(r"</?s>|<pad>")
_LOC = r"<loc_\d+>"
_LABEL = r"(?:^|(?<=>))([^<]+)"  # text that starts a chunk: never the tail of a token like "loc_4>"
_BOX_LABELLED = re.compile(rf"{_LABEL}((?:{_LOC}){{4,}})")
_BOX_RUN = re.compile(rf"()((?:{_LOC}){{4,}})")
_FOUR = re.compile(rf"(?:{_LOC}){{4}}")
_QUAD = re.compile(rf"(.+?)((?:{_LOC}){{8}})", re.S)
_POLY_TOKEN = rf"(?:{_LOC}|<sep>|<poly>|</poly>)"
_POLY_LABELLED = re.compile(rf"{_LABEL}({_POLY_TOKEN}{{4,}})")
_POLY_RUN = re.compile(rf"()({_POLY_TOKEN}{{4,}})")
_POLY_GROUP = re.compile(r"<poly>(.*?)</poly>")
_POLY_PART = re.compile(rf"((?:{_LOC})+)(?:<sep>|$)")


@dataclass
class Item:
    """One parsed object: its label, its coordinates (a list per part: one for boxes and quads,
    one per polygon part) and its score (None without scores)."""
    label: str
    coords: list = field(default_factory=list)
    score: float | None = None


def clean_text(text: str) -> str:
    """Drop ``<s>``, ``</s>`` and ``<pad>``."""
    return _SEQUENCE_MARKERS.sub("", text)


class _Locations:
    """Where the location tokens of a text are, to read them and their scores by character span."""

    def __init__(self, text: str, scores):
        self.matches = list(LOC_TOKEN.finditer(text))
        self.starts = [m.start() for m in self.matches]
        self.scores = None
        if scores is not None:
            scores = [float(s) for s in scores]
            if len(scores) == len(self.matches):
                self.scores = scores

    def span(self, start: int, end: int) -> range:
        return range(bisect.bisect_left(self.starts, start), bisect.bisect_left(self.starts, end))

    def bins(self, idx: range) -> list[int] | None:
        bins = [int(self.matches[i].group(1)) for i in idx]
        return None if any(b >= NUM_BINS for b in bins) else bins

    def score(self, idx) -> float | None:
        idx = list(idx)
        if self.scores is None or not idx:
            return None
        return math.exp(min(sum(self.scores[i] for i in idx) / len(idx), 0.0))  # log-probs are <= 0


def _chunks(pattern: re.Pattern, text: str):
    """(label, run start, run end) for every label + location-run chunk of ``text``."""
    for m in pattern.finditer(text):
        yield m.group(1).strip(), m.start(2), m.end(2)


def parse_boxes(text: str, image_size, scores=None, labelled: bool = True) -> list[Item]:
    """Boxes ``[x1, y1, x2, y2]`` (``x1 <= x2``, ``y1 <= y2``: inverted corners are ordered) with their
    labels (``""`` when ``labelled=False``)."""
    text = clean_text(text)
    locs, items = _Locations(text, scores), []
    for label, start, end in _chunks(_BOX_LABELLED if labelled else _BOX_RUN, text):
        for box in _FOUR.finditer(text, start, end):
            idx = locs.span(box.start(), box.end())
            bins = locs.bins(idx)
            if bins is not None:
                x1, y1, x2, y2 = QUANTIZER.dequantize(bins, image_size)
                box = [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]
                items.append(Item(label, [box], locs.score(idx)))
    return items


def parse_quads(text: str, image_size, scores=None) -> list[Item]:
    """OCR lines: 8-coordinate quads with their (stripped) text."""
    text = clean_text(text)
    locs, items = _Locations(text, scores), []
    for m in _QUAD.finditer(text):
        idx = locs.span(m.start(2), m.end(2))
        bins = locs.bins(idx)
        if bins is not None:
            items.append(Item(m.group(1).strip(), [QUANTIZER.dequantize(bins, image_size)], locs.score(idx)))
    return items


def parse_polygons(text: str, image_size, scores=None, labelled: bool = False) -> list[Item]:
    """Polygon instances, each a list of parts ``[x, y, x, y, ...]``."""
    text = clean_text(text)
    locs, items = _Locations(text, scores), []
    for label, start, end in _chunks(_POLY_LABELLED if labelled else _POLY_RUN, text):
        run = text[start:end]
        if "<poly>" in run and "</poly>" in run:
            groups = [(start + g.start(1), start + g.end(1)) for g in _POLY_GROUP.finditer(run)]
        else:
            groups = [(start, end)]
        for g_start, g_end in groups:
            parts, used = [], []
            for part in _POLY_PART.finditer(text, g_start, g_end):
                idx = locs.span(part.start(1), part.end(1))
                bins = locs.bins(idx)
                if bins is not None and len(bins) >= 2:
                    parts.append(QUANTIZER.dequantize(bins, image_size))
                    used.extend(idx)
            if parts:
                items.append(Item(label, parts, locs.score(used)))
    return items

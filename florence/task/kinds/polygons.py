"""Polygon outputs (segmentation): ``{'polygons', 'labels'}`` (+ ``'scores'``)."""
from __future__ import annotations

from ...parsing import parse_polygons
from ..base import POLYGON, QUANTIZER, Grammar, Shape, Task, TaskError
from .common import (_flat, checked_pairs, random_phrase, random_box, random_polygon, with_scores, put_regions,
                     region_list)


class PolygonTask(Task):
    """Output ``{'polygons': [[[x, y, ...], ...], ...], 'labels': [...]}``: one entry per instance,
    each a list of parts. Targets write parts separated by ``<sep>``; several instances are
    wrapped in ``<poly>...</poly>``."""
    output_kind = "polygons"
    output_keys = ("polygons", "labels")
    region_kinds = ("polygon",)
    region_keys = {"polygon": ("polygons", "labels")}
    labelled: bool = False

    @property
    def grammar(self) -> Grammar:
        """One polygon, or several each in ``<poly>...</poly>``; labelled: ``label<poly>...</poly>`` items.
        The mask of a region (a region input) stays inside the region."""
        inside = self.input_kind == "region"
        if self.labelled:
            return Grammar(f"(T+P{POLYGON}Q)*E", item_locations=None, inside=inside)
        return Grammar(f"({POLYGON}|(P{POLYGON}Q)+)?E", item_locations=None, inside=inside)

    def regions(self, output) -> list[Shape]:
        return region_list(output, "polygon", *self.region_keys["polygon"])

    def with_regions(self, output, regions):
        return put_regions(output, regions, self.region_keys)

    def encode_target(self, annotation, image_size) -> str:
        pairs = checked_pairs(self.token, annotation, "polygons", "labels", None)
        wrap = len(pairs) > 1 or self.labelled
        out = []
        for parts, label in pairs:
            if not parts or any(len(_flat(p)) < 4 or len(_flat(p)) % 2 for p in parts):
                raise TaskError(f"{self.token}: every polygon part needs an even number (>= 4) of coordinates")
            locs = "<sep>".join(QUANTIZER.tokens(p, image_size) for p in parts)
            out.append((label if self.labelled else "") + (f"<poly>{locs}</poly>" if wrap else locs))
        return "".join(out)

    def decode_output(self, text, image_size, scores=None) -> dict:
        items = parse_polygons(text, image_size, scores, labelled=self.labelled)
        return with_scores({"polygons": [it.coords for it in items], "labels": [it.label for it in items]}, items)

    def example(self, rng, image_size):
        parts = [random_polygon(rng, image_size, rng.randint(3, 8)) for _ in range(rng.randint(1, 2))]
        if self.input_kind == "region":
            text_input = random_box(rng, image_size)
        else:
            text_input = random_phrase(rng) if self.input_kind else None
        return text_input, {"polygons": [parts], "labels": [""]}

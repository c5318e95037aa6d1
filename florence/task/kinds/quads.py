"""Quadrilateral outputs (text regions): ``{'quad_boxes', 'labels'}`` (+ ``'scores'``)."""
from __future__ import annotations

from ...parsing import parse_quads
from ..base import QUANTIZER, Grammar, Shape, Task
from .common import checked_pairs, random_phrase, random_box, with_scores, put_regions, region_list


class QuadTask(Task):
    """Output ``{'quad_boxes': [[x1, y1, ..., x4, y4], ...], 'labels': [...]}`` (+ ``'scores'``)."""
    output_kind = "quads"
    output_keys = ("quad_boxes", "labels")
    region_kinds = ("quad",)
    region_keys = {"quad": ("quad_boxes", "labels")}
    label_locations = 8
    grammar = Grammar("(T+L{8})*E", item_locations=8)  # one quad per line: the parser reads no more

    def regions(self, output) -> list[Shape]:
        return region_list(output, "quad", *self.region_keys["quad"])

    def with_regions(self, output, regions):
        return put_regions(output, regions, self.region_keys)

    def encode_target(self, annotation, image_size) -> str:
        pairs = checked_pairs(self.token, annotation, "quad_boxes", "labels", 8)
        return "".join(label + QUANTIZER.tokens(quad, image_size) for quad, label in pairs)

    def decode_output(self, text, image_size, scores=None) -> dict:
        items = parse_quads(text, image_size, scores)
        return with_scores({"quad_boxes": [it.coords[0] for it in items], "labels": [it.label for it in items]},
                            items)

    def example(self, rng, image_size):
        quads = []
        for _ in range(rng.randint(1, 4)):
            x1, y1, x2, y2 = random_box(rng, image_size)
            quads.append([x1, y1, x2, y1, x2, y2, x1, y2])
        return None, {"quad_boxes": quads, "labels": [random_phrase(rng, rng.randint(1, 3)) for _ in quads]}
